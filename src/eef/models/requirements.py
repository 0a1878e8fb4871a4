"""Which package versions a checkpoint needs, recorded when it is written and checked when it is loaded.

A checkpoint saved by one transformers release may not load, or may decode differently, under a
release older than eef supports; the record turns that into one clear error naming the package.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from eef.errors import EefError

LOADING_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "peft")  # what loading a checkpoint runs


def checkpoint_requirements() -> list[str]:
    """eef's declared floors of the packages that load a checkpoint (``transformers>=5.4``, ...):
    an older release may not read it; a newer one reads what it wrote, so no cap is recorded.
    Empty when eef runs from a source tree without its package metadata."""
    try:
        declared = [Requirement(line) for line in metadata.requires("eef") or []]
    except metadata.PackageNotFoundError:
        return []
    floors = []
    for requirement in declared:
        if requirement.marker is None and requirement.name.lower() in LOADING_PACKAGES:
            floors += [f"{requirement.name}>={s.version}" for s in requirement.specifier if s.operator == ">="]
    return sorted(floors)


def installed_versions() -> dict[str, str]:
    """The installed versions of eef and of the packages that load a checkpoint."""
    versions = {}
    for name in ("eef", *LOADING_PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def check_requirements(requires: Any, where: Path) -> None:
    """Refuse to go on when an installed package is outside a range ``requires`` lists.

    Raises:
        EefError: naming ``where``, the range and the installed version.
    """
    if not isinstance(requires, list):
        raise EefError(f"{where}: requires: expected a list of requirements, got {type(requires).__name__}")
    for line in requires:
        try:
            requirement = Requirement(str(line))
        except ValueError:
            raise EefError(f"{where}: requires: {line!r} is not a requirement") from None
        try:
            installed = Version(metadata.version(requirement.name))
        except metadata.PackageNotFoundError:
            raise EefError(f"{where}: requires: {requirement} is not installed") from None
        except InvalidVersion:
            continue  # a local build with a version packaging cannot read: nothing to compare
        if not requirement.specifier.contains(installed, prereleases=True):
            raise EefError(
                f"{where}: requires: this checkpoint needs {requirement}; {requirement.name} {installed} is installed"
            )
