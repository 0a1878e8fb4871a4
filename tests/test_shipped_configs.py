"""The configurations shipped in configs/ read as valid runs: only data a user fetches is missing."""

from pathlib import Path

import pytest
import yaml

from eef.config import ConfigError, load_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_a_shipped_run_configuration_is_valid_but_for_fetched_data(path):
    try:
        config = load_config(path)
    except ConfigError as e:
        problems = [line for line in str(e).splitlines()[1:] if line.strip()]
        assert problems and all("is not a file" in line for line in problems), str(e)
    else:
        assert config.model.base  # a paper setting names its model


@pytest.mark.parametrize("path", sorted((CONFIGS / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_an_accelerate_configuration_names_its_processes(path):
    settings = yaml.safe_load(path.read_text())
    assert settings["num_processes"] >= 1 and settings["mixed_precision"] == "bf16"
    assert path.read_text().startswith("#") and "accelerate launch --config_file" in path.read_text()
