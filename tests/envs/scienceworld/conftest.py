"""ScienceWorld fixtures: one JVM pool for the session; every JVM test skips if Java is missing."""

import shutil

import pytest

from eef.envs.scienceworld import JvmPool, ScienceWorldEnv

# Task types whose gold sequences are cheap to compute (under about a second each).
QUICK_TASKS = ["find-animal", "chemistry-mix", "lifespan-longest-lived", "power-component", "melt"]


def _require_java() -> None:
    if shutil.which("java") is None:
        pytest.skip("ScienceWorld needs Java on PATH (e.g. apt install openjdk-17-jre-headless)")


@pytest.fixture(scope="session")
def pool():
    _require_java()
    pool = JvmPool(heap_mb=256, envs_per_jvm=16)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def sw_env(pool) -> ScienceWorldEnv:
    """ScienceWorld on a few quick task types, with room for gold sequences longer than ETO's limits."""
    return ScienceWorldEnv(pool, tasks=QUICK_TASKS + ["use-thermometer"], max_steps=200)


@pytest.fixture()
def own_pool():
    """A pool of this test's own, for tests that kill JVMs."""
    _require_java()
    pool = JvmPool(heap_mb=128, envs_per_jvm=4)
    yield pool
    pool.close()
