"""ScienceWorld's tasks, variation splits and step limits, and eef's task ids (``boil/3``).

The split table is a fact of the ``scienceworld`` 1.2 package: every task's train, dev and test
variations are three consecutive ranges (``getVariationsTrain/Dev/Test``), so they are kept here
as numbers and no JVM is needed to list tasks. ``tests/envs/scienceworld`` checks the table
against the simulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from scienceworld.constants import ID2TASK
from scienceworld.utils import infer_task

from eef.errors import DataError, EefError, UnknownNameError

# task name -> (variations, first dev variation, first test variation); train is 0..dev-1.
SPLIT_TABLE: dict[str, tuple[int, int, int]] = {
    "boil": (30, 14, 21),
    "melt": (30, 14, 21),
    "freeze": (30, 14, 21),
    "change-the-state-of-matter-of": (30, 14, 21),
    "use-thermometer": (540, 270, 405),
    "measure-melting-point-known-substance": (436, 218, 327),
    "measure-melting-point-unknown-substance": (300, 150, 225),
    "power-component": (20, 10, 15),
    "power-component-renewable-vs-nonrenewable-energy": (20, 10, 15),
    "test-conductivity": (900, 450, 675),
    "test-conductivity-of-unknown-substances": (600, 300, 450),
    "find-living-thing": (300, 150, 225),
    "find-non-living-thing": (300, 150, 225),
    "find-plant": (300, 150, 225),
    "find-animal": (300, 150, 225),
    "grow-plant": (126, 62, 93),
    "grow-fruit": (126, 62, 93),
    "chemistry-mix": (32, 16, 24),
    "chemistry-mix-paint-secondary-color": (36, 18, 27),
    "chemistry-mix-paint-tertiary-color": (36, 18, 27),
    "lifespan-longest-lived": (125, 62, 93),
    "lifespan-shortest-lived": (125, 62, 93),
    "lifespan-longest-lived-then-shortest-lived": (125, 62, 93),
    "identify-life-stages-1": (14, 6, 9),
    "identify-life-stages-2": (10, 4, 6),
    "inclined-plane-determine-angle": (168, 84, 126),
    "inclined-plane-friction-named-surfaces": (1386, 692, 1038),
    "inclined-plane-friction-unnamed-surfaces": (162, 80, 120),
    "mendelian-genetics-known-plant": (120, 60, 90),
    "mendelian-genetics-unknown-plant": (480, 240, 360),
}

SPLITS = ("train", "dev", "test")

# Agent turns per task as ETO ran them (its max_steps.json). ETO left out the last six tasks; their
# values are eef's choice, in line with the nearest ETO task (measurement: 120) and with what later
# ScienceWorld agent work used (inclined plane 40, genetics 50).
STEP_LIMITS: dict[str, int] = {
    "boil": 100,
    "melt": 80,
    "freeze": 80,
    "change-the-state-of-matter-of": 80,
    "use-thermometer": 30,
    "measure-melting-point-known-substance": 120,
    "power-component": 20,
    "power-component-renewable-vs-nonrenewable-energy": 30,
    "test-conductivity": 30,
    "test-conductivity-of-unknown-substances": 30,
    "find-living-thing": 15,
    "find-non-living-thing": 15,
    "find-plant": 15,
    "find-animal": 15,
    "grow-plant": 30,
    "grow-fruit": 60,
    "chemistry-mix": 60,
    "chemistry-mix-paint-secondary-color": 15,
    "chemistry-mix-paint-tertiary-color": 30,
    "lifespan-longest-lived": 10,
    "lifespan-shortest-lived": 10,
    "lifespan-longest-lived-then-shortest-lived": 12,
    "identify-life-stages-1": 30,
    "identify-life-stages-2": 30,
    "measure-melting-point-unknown-substance": 120,
    "inclined-plane-determine-angle": 40,
    "inclined-plane-friction-named-surfaces": 40,
    "inclined-plane-friction-unnamed-surfaces": 40,
    "mendelian-genetics-known-plant": 50,
    "mendelian-genetics-unknown-plant": 50,
}

# Tasks whose runs depend on the JVM's identity hashes (plant growth, pollination, heat flow and
# thermometer readings, when a circuit or a phase change completes): measured to diverge between
# JVMs with other histories, plus the two melting-point tasks, which run the same heat simulation.
# eef's JVMs fix the hashes (see :mod:`eef.envs.scienceworld.jvm`), so its own records replay
# exactly; a trajectory recorded by another runner (the package's env, ETO's data) may not, and
# its replay can reach a state that differs before any observation shows it.
STOCHASTIC_TASKS = frozenset(
    {
        "boil",
        "melt",
        "freeze",
        "change-the-state-of-matter-of",
        "use-thermometer",
        "measure-melting-point-known-substance",
        "measure-melting-point-unknown-substance",
        "power-component",
        "power-component-renewable-vs-nonrenewable-energy",
        "grow-fruit",
        "mendelian-genetics-known-plant",
        "mendelian-genetics-unknown-plant",
    }
)

# The package's task order (1-1 boil ... 10-2 mendelian), used to interleave tasks in a split.
TASK_ORDER: tuple[str, ...] = tuple(infer_task(name) for name in ID2TASK.values())


def task_name(name: str) -> str:
    """The simulator's name of a task given by name (``boil``), package id (``1-1``), paper name
    (``Matter Changes of State (Boiling)``) or ETO name (``task-1-boil``).

    Raises:
        UnknownNameError: no such task.
    """
    canonical = infer_task(name.strip())
    if canonical not in SPLIT_TABLE:
        raise UnknownNameError("ScienceWorld task", name, list(TASK_ORDER))
    return canonical


def task_id(name: str, variation: int) -> str:
    """eef's id of a task variation: ``boil/3``."""
    return f"{name}/{variation}"


def parse_task_id(value: str) -> tuple[str, int]:
    """``boil/3`` -> (``boil``, 3), checking that the variation exists.

    Raises:
        UnknownNameError: not a ``task-name/variation`` of a known task and variation.
    """
    name, sep, variation = value.rpartition("/")
    if not sep or not variation.isdigit():
        raise UnknownNameError("ScienceWorld task id (task-name/variation)", value, [f"{TASK_ORDER[0]}/0"])
    name = task_name(name)
    count = SPLIT_TABLE[name][0]
    if int(variation) >= count:
        raise UnknownNameError("ScienceWorld task id", value, [f"{name}/0 .. {name}/{count - 1}"])
    return name, int(variation)


def variations(name: str, split: str) -> range:
    """The variations of task ``name`` in the package's ``split``."""
    count, dev, test = SPLIT_TABLE[name]
    bounds = {"train": (0, dev), "dev": (dev, test), "test": (test, count)}
    if split not in bounds:
        raise UnknownNameError("ScienceWorld split", split, list(SPLITS))
    return range(*bounds[split])


def split_task_ids(names: Iterable[str], split: str) -> list[str]:
    """The task ids of ``split`` for the tasks ``names``, interleaved: the first variation of
    every task, then the second, ... so that any prefix (``--limit N``, ``expert.limit``) covers
    the task types evenly."""
    ranges = [(name, variations(name, split)) for name in names]
    longest = max((len(r) for _, r in ranges), default=0)
    return [task_id(name, r[rank]) for rank in range(longest) for name, r in ranges if rank < len(r)]


def read_index_file(path: str | Path) -> list[str]:
    """Task ids from an ETO-style index file: a JSON list of ``[task name, variation]`` pairs
    (task names in any form :func:`task_name` accepts, e.g. ``task-1-boil``).

    Raises:
        DataError: the file is missing, not JSON, or an entry is not a known task variation.
    """
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(path, f"cannot read: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise DataError(path, f"not JSON: {e.msg}", line=e.lineno) from e
    if not isinstance(entries, list):
        raise DataError(path, "expected a JSON list of [task name, variation] pairs")
    ids = []
    for i, entry in enumerate(entries):
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
            and not isinstance(entry[1], bool)
        ):
            raise DataError(path, f"expected [task name, variation], got {entry!r}", field=f"[{i}]")
        try:
            ids.append(task_id(*parse_task_id(f"{entry[0]}/{entry[1]}")))
        except EefError as e:
            raise DataError(path, str(e), field=f"[{i}]") from e
    return list(dict.fromkeys(ids))


def step_limit(name: str, max_steps: int | None, overrides: Mapping[str, int]) -> int:
    """The agent-turn budget of task ``name``: an override for the task, else ``max_steps`` for
    every task, else ETO's limit (:data:`STEP_LIMITS`)."""
    if name in overrides:
        return overrides[name]
    return max_steps if max_steps is not None else STEP_LIMITS[name]
