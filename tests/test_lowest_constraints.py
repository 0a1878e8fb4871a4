"""The lowest-versions pass pins every direct dependency to its declared floor."""

import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("lowest_constraints", ROOT / ".ci" / "lowest_constraints.py")
lowest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lowest)


def test_every_dependency_but_torch_is_pinned_to_its_floor():
    pins = lowest.floors(ROOT / "pyproject.toml")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert len(pins) == len(declared) - 1 and not any(p.startswith("torch") for p in pins)
    assert "transformers==5.4" in pins


def test_a_dependency_without_a_floor_is_refused(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["numpy>=1.26", "httpx<1"]\n')
    with pytest.raises(SystemExit, match="'httpx<1' declares no floor"):
        lowest.floors(tmp_path / "pyproject.toml")
