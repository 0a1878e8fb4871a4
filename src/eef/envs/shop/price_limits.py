"""Goal price limits taken from recorded instructions (``webshop``'s ``price_limits`` option).

WebShop draws each goal's price limit without a seed, so a trajectory recorded upstream shows
an instruction whose price clause (``, and price lower than 40.00 dollars``) matches eef's seeded
draw for only part of the goals. A price limits file names the limit each listed task had when
it was recorded; :func:`apply_price_limits` gives those goals that limit, in both the instruction
the pages show and the reward's price check, so the recorded pages replay as they were. Tasks
not listed keep the seeded draw.

The file is a JSON object ``{task id: limit}``: a positive number, or ``null`` for a goal whose
instruction names no price (WebShop's goals on products of $980 or more).
``eef data import`` writes one beside its output (``OUT.price_limits.json``). Several files may
be given (one per teacher): a task the first file lists keeps that file's limit, and the tasks
a later file gives another limit are counted (``conflicts`` in the environment's info).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from eef.envs.shop.catalog import NO_PRICE_LIMIT, Catalog, Goal, price_clause
from eef.errors import DataError, EefError

FILE_SUFFIX = ".price_limits.json"


def price_limits_path(out: str | Path) -> Path:
    """Where ``eef data import`` writes the price limits of its output ``out`` (``OUT.price_limits.json``)."""
    out = Path(out)
    return out.with_name(out.stem + FILE_SUFFIX) if out.suffix in (".jsonl", ".json") else Path(f"{out}{FILE_SUFFIX}")


def limit_value(limit: float | None) -> float:
    """A file's limit as a goal's ``price_upper`` (None: no limit)."""
    return NO_PRICE_LIMIT if limit is None else float(limit)


def read_price_limits(path: str | Path) -> dict[str, float | None]:
    """One price limits file: task id -> limit (None: no price clause).

    Raises:
        DataError: the file cannot be read, is not a JSON object, or a value is not a positive
            finite number or null (the file and the task id named).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "missing (option price_limits names a file eef data import writes)") from None
    except json.JSONDecodeError as e:
        raise DataError(path, f"invalid JSON: {e.msg} (column {e.colno})", line=e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read: {e}") from None
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object {{task id: price limit}}, got {type(data).__name__}")
    limits: dict[str, float | None] = {}
    for task_id, value in data.items():
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0
        ):
            raise DataError(path, f"expected a positive number or null, got {value!r}", field=task_id)
        limits[task_id] = None if value is None else float(value)
    return limits


def _paths(option: Any) -> list[Path]:
    """The ``price_limits`` option as a list of files: one file or a list of them."""
    items = option if isinstance(option, list) else [option]
    if not items or not all(isinstance(p, (str, Path)) and str(p) for p in items):
        raise EefError(f"option price_limits: expected a file or a list of files, got {option!r}")
    return [Path(p) for p in items]


def merge_price_limits(option: Any) -> tuple[dict[str, float | None], int, list[str]]:
    """The limits of every file the option names, the first file's limit kept for a task several list.

    Returns:
        task id -> limit, the number of tasks a later file gives another limit, and the files.
    """
    paths = _paths(option)
    merged: dict[str, float | None] = {}
    conflicts: set[str] = set()
    for path in paths:
        for task_id, limit in read_price_limits(path).items():
            if task_id not in merged:
                merged[task_id] = limit
            elif merged[task_id] != limit:
                conflicts.add(task_id)
    return merged, len(conflicts), [str(p) for p in paths]


def with_limit(goal: Goal, limit: float | None) -> Goal:
    """``goal`` with another price limit: its instruction's price clause and ``price_upper`` follow."""
    clause = price_clause(goal.price_upper)
    base = goal.instruction[: len(goal.instruction) - len(clause)] if clause else goal.instruction
    upper = limit_value(limit)
    return replace(goal, instruction=base + price_clause(upper), price_upper=upper)


def apply_price_limits(catalog: Catalog, option: Any) -> Catalog:
    """Give the goals the files of ``option`` list their recorded price limits (in place; returned).

    ``catalog.info["price_limits"]`` records the files, how many tasks they set and how many a
    later file contradicted (``conflicts``; the first file's limit is kept).

    Raises:
        DataError: a bad file, value, or a task id the catalog lacks (file and task id named).
        EefError: the option is neither a file nor a list of files.
    """
    limits, conflicts, files = merge_price_limits(option)
    goals = list(catalog.goals)
    changed = 0
    for task_id, limit in limits.items():
        index = _goal_index(catalog, task_id, option)
        goal = with_limit(goals[index], limit)
        changed += goal != goals[index]
        goals[index] = goal
    catalog.goals = goals
    catalog.info = {
        **catalog.info,
        "price_limits": {"files": files, "tasks": len(limits), "changed": changed, "conflicts": conflicts},
    }
    return catalog


def _goal_index(catalog: Catalog, task_id: str, option: Any) -> int:
    try:
        return catalog.goal_index(task_id)
    except KeyError:
        last = len(catalog.goals) - 1
        # the file that lists it first
        path = next(p for p in _paths(option) if task_id in read_price_limits(p))
        raise DataError(
            path,
            f"no such task in this environment ({catalog.prefix}_0 .. {catalog.prefix}_{last}); "
            "the environment options (data_dir, goals) must be those of the import",
            field=task_id,
        ) from None


def recorded_limits(items: Mapping[str, float | None]) -> dict[str, float | None]:
    """Limits in a file's order (sorted by task number), for writing."""

    def key(task_id: str) -> tuple[str, int]:
        head, _, tail = task_id.rpartition("_")
        return (head, int(tail) if tail.isdigit() else -1)

    return {task_id: items[task_id] for task_id in sorted(items, key=key)}
