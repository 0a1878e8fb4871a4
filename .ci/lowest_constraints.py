"""Print pip constraints pinning each of eef's direct dependencies to its declared floor.

    python .ci/lowest_constraints.py > constraints.txt
    pip install -c constraints.txt -e '.[dev]'

torch is left out: the build the Makefile installs (``TORCH_SPEC``, the CPU build) stands in for
every torch (a floor from PyPI would be a multi-GB CUDA build). A dependency without a floor is an error: every range must
say what it was tested with.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

UNPINNED = {"torch"}


def floors(pyproject: Path) -> list[str]:
    """``name==floor`` for each direct dependency of ``pyproject`` (extras excluded)."""
    pins = []
    for line in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.\-]+", line)
        floor = re.search(r">=\s*([^,;\s]+)", line)
        if name is None or floor is None:
            raise SystemExit(f"{pyproject}: dependency {line!r} declares no floor (>=)")
        if name.group(0).lower() not in UNPINNED:
            pins.append(f"{name.group(0)}=={floor.group(1)}")
    return pins


if __name__ == "__main__":
    root = Path(__file__).resolve().parent.parent
    sys.stdout.write("".join(pin + "\n" for pin in floors(root / "pyproject.toml")))
