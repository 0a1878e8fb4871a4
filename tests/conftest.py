import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples every run, so a suite that passed passes again (a random
# search once failed CI on an input it had never drawn before); `--hypothesis-profile explore`
# searches afresh and wider.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", max_examples=2000, database=None)
settings.load_profile("repeatable")

# Modules whose tests train models or run the pipeline: minutes, not seconds (marked slow).
SLOW_MODULES = {
    "test_pipeline.py",
    "test_cli_agent.py",
    "test_trainer.py",
    "test_distributed.py",
    "test_method_registry.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path))
        if path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if "scienceworld" in path.parts:
            item.add_marker(pytest.mark.scienceworld)


# The shared WebShop 1k data lives beside the checkout (never copied into the repository).
CANDIDATES = [
    os.environ.get("EEF_WEBSHOP_DATA", ""),
    Path(__file__).resolve().parents[2] / "shared" / "data" / "webshop-1k",
]


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny untrained Llama for the shop environment, built once per test session."""
    from eef.envs import make
    from eef.models.tiny import TinyModelConfig, create_tiny_model

    config = TinyModelConfig(corpus_tasks=200, layers=2, hidden_size=64, heads=2, intermediate_size=128)
    return create_tiny_model(make("shop"), tmp_path_factory.mktemp("tiny-model"), config)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)
