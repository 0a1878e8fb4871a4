"""Real episodes of the built-in shop, successes and failures, to write expert files from."""

import pytest
from expert_files import scripted_runs


@pytest.fixture(scope="session")
def expert_runs(shop_env):
    """Scripted expert episodes of the first 8 training tasks."""
    return scripted_runs(shop_env)
