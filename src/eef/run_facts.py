"""What a run ran on, recorded at each start or resume in ``run_facts.json``: eef's version and
source revision, Python, the packages that train, generate and load, the machine, the processes.
A result is reproducible from its configuration and seed only on the same versions; this file says
which they were."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from eef.atomic import write_text_atomic
from eef.errors import DataError
from eef.models.requirements import installed_versions

FACTS_FILE = "run_facts.json"
_MORE_PACKAGES = ("accelerate", "numpy", "vllm")


def run_facts(processes: int) -> dict[str, Any]:
    """The facts of this process's machine and installation (nothing here initialises CUDA: rollout
    workers are forked after it)."""
    packages = installed_versions()
    for name in _MORE_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "revision": source_revision(),
        "python": platform.python_version(),
        "packages": packages,
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "accelerators": accelerator_names(),
        "processes": processes,
    }


def source_revision() -> str | None:
    """``git describe --always --dirty`` of the source tree eef runs from; None when it is not a
    git checkout (an installed wheel)."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux): a CPU run's time, and its results
    through torch's kernels, are comparable only on the same model (docs/benchmarks.md)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accelerator_names() -> list[str]:
    """The names of the NVIDIA GPUs ``nvidia-smi`` lists; none without it."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def record_start(root: Path, processes: int) -> None:
    """Append this start's facts to ``root/run_facts.json`` (written whole: a crash keeps the old file)."""
    starts = read_starts(root)
    write_text_atomic(root / FACTS_FILE, json.dumps({"starts": [*starts, run_facts(processes)]}, indent=1) + "\n")


def read_starts(root: Path) -> list[dict[str, Any]]:
    """The recorded starts of a run, first to last; none before the first.

    Raises:
        DataError: the file is not one eef wrote.
    """
    path = root / FACTS_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_bytes())
    except ValueError as e:
        raise DataError(path, f"not valid JSON: {e}") from None
    starts = data.get("starts") if isinstance(data, dict) else None
    if not isinstance(starts, list) or not all(isinstance(s, dict) for s in starts):
        raise DataError(path, "expected a list of objects", field="starts")
    return starts
