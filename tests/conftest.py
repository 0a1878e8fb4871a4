from pathlib import Path

import pytest

import os

# The shared WebShop 1k data lives beside the checkout (never copied into the repository).
CANDIDATES = [os.environ.get("EEF_WEBSHOP_DATA", ""),
              Path(__file__).resolve().parents[2] / "shared" / "data" / "webshop-1k",
              "/work/shared/data/webshop-1k"]


@pytest.fixture(scope="session")
def webshop_1k_dir() -> Path:
    for candidate in CANDIDATES:
        if candidate and (Path(candidate) / "products.jsonl.gz").is_file():
            return Path(candidate)
    pytest.skip(f"WebShop 1k data not found in {CANDIDATES}")


@pytest.fixture(scope="session")
def webshop_env(webshop_1k_dir):
    from eef.envs import make

    return make("webshop", data_dir=str(webshop_1k_dir))


@pytest.fixture(scope="session")
def shop_env():
    from eef.envs import make

    return make("shop")
