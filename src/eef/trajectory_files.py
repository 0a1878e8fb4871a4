"""Files of trajectories: JSONL, one trajectory per line (see :mod:`eef.trajectory`).

:func:`read_trajectories` reports a malformed line with file, line and field (rewards must be
finite numbers: environments set their own scale); :func:`append_trajectories` appends whole
lines and flushes, so a crash loses at most the line being written, which
:func:`read_trajectories` can skip on resume. Only standard JSON is written.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from eef.atomic import write_jsonl_atomic
from eef.errors import DataError
from eef.jsonl import iter_json_lines, json_line
from eef.trajectory import ROLES, Message, Provenance, Trajectory, Turn

# Rewards of the environments whose expert data eef imports (WebShop's score, ScienceWorld's score / 100).
REWARD_RANGE = (0.0, 1.0)
# Free-form values (meta, sampling) deeper than this would overflow the recursion of copying and writing them.
MAX_DEPTH = 64


def require_field(
    record: dict, key: str, kinds: type | tuple[type, ...], path: Path | str, line: int, prefix: str = ""
) -> Any:
    """``record[key]``, checked to be of ``kinds``; a DataError names file, line and field otherwise."""
    if key not in record:
        raise DataError(path, "missing", line=line, field=prefix + key)
    value = record[key]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise DataError(path, f"expected {_kind_name(kinds)}, got a boolean", line=line, field=prefix + key)
    if not isinstance(value, kinds):
        raise DataError(
            path, f"expected {_kind_name(kinds)}, got {type(value).__name__}", line=line, field=prefix + key
        )
    return value


def _kind_name(kinds: type | tuple[type, ...]) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    names = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }
    shown = [k for k in kinds if not (k is int and float in kinds)]  # a number: an integer or a float
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in shown))


def finite_in_range(
    value: int | float,
    path: Path | str,
    line: int,
    field: str,
    low: float = REWARD_RANGE[0],
    high: float = REWARD_RANGE[1],
) -> float:
    """``value`` as a float when it is a finite number in ``[low, high]``; a DataError names the field otherwise."""
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        number = math.inf if value > 0 else -math.inf
    if not (math.isfinite(number) and low <= number <= high):
        within = f" in [{low:g}, {high:g}]" if math.isfinite(low) or math.isfinite(high) else ""
        raise DataError(path, f"must be a finite number{within}, got {number:g}", line=line, field=field)
    return number


def require_reward(
    record: dict, key: str, path: Path | str, line: int, prefix: str = "", high: float = REWARD_RANGE[1]
) -> float:
    """``record[key]`` as a reward: a finite number in ``[0, high]`` (``high`` for formats that score 0-100)."""
    value = require_field(record, key, (int, float), path, line, prefix)
    return finite_in_range(value, path, line, prefix + key, REWARD_RANGE[0], high)


def require_finite(record: dict, key: str, path: Path | str, line: int, prefix: str = "") -> float:
    """``record[key]`` as a finite number (an environment's reward, whatever its scale)."""
    value = require_field(record, key, (int, float), path, line, prefix)
    return finite_in_range(value, path, line, prefix + key, -math.inf, math.inf)


def require_plain_json(value: Any, path: Path | str, line: int, field: str) -> Any:
    """``value`` when standard JSON can hold it: finite numbers, nested at most :data:`MAX_DEPTH` levels."""
    stack = [(value, field, 0)]
    while stack:  # iterative: a recursive walk would overflow on the nesting it is checking
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DataError(path, f"nested deeper than {MAX_DEPTH} levels", line=line, field=field)
        if isinstance(item, float) and not math.isfinite(item):
            raise DataError(path, f"must be a finite number, got {item:g}", line=line, field=where)
        if isinstance(item, dict):
            stack += [(v, f"{where}.{k}", depth + 1) for k, v in item.items()]
        elif isinstance(item, list):
            stack += [(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item)]
    return value


def trajectory_from_dict(record: Any, path: Path | str = "<memory>", line: int = 1) -> Trajectory:
    """Build a :class:`Trajectory` from its JSONL dict, naming the bad field on error."""
    path = Path(path)
    if not isinstance(record, dict):
        raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line=line)
    prompt = []
    for i, m in enumerate(require_field(record, "prompt", list, path, line)):
        where = f"prompt[{i}]."
        if not isinstance(m, dict):
            raise DataError(path, "expected an object", line=line, field=f"prompt[{i}]")
        role = require_field(m, "role", str, path, line, where)
        if role not in ROLES:
            raise DataError(path, f"role {role!r} is not one of {', '.join(ROLES)}", line=line, field=where + "role")
        if "trainable" in m:  # checked, then dropped: the prompt is context (older imports flagged ETO's "OK")
            require_field(m, "trainable", bool, path, line, where)
        prompt.append(Message(role, require_field(m, "content", str, path, line, where)))
    turns = []
    for i, t in enumerate(require_field(record, "turns", list, path, line)):
        where = f"turns[{i}]."
        if not isinstance(t, dict):
            raise DataError(path, "expected an object", line=line, field=f"turns[{i}]")
        turns.append(
            Turn(
                text=require_field(t, "text", str, path, line, where),
                action=require_field(t, "action", str, path, line, where),
                observation=require_field(t, "observation", str, path, line, where),
                reward=require_finite(t, "reward", path, line, where) if "reward" in t else 0.0,
                trainable=require_field(t, "trainable", bool, path, line, where) if "trainable" in t else True,
            )
        )
    prov = require_field(record, "provenance", dict, path, line)
    provenance = Provenance(
        source=require_field(prov, "source", str, path, line, "provenance."),
        iteration=int(require_field(prov, "iteration", int, path, line, "provenance.")) if "iteration" in prov else 0,
        start_step=int(require_field(prov, "start_step", int, path, line, "provenance."))
        if "start_step" in prov
        else 0,
        parent_id=require_field(prov, "parent_id", (str, type(None)), path, line, "provenance.")
        if "parent_id" in prov
        else None,
        model=require_field(prov, "model", (str, type(None)), path, line, "provenance.") if "model" in prov else None,
        sampling=require_plain_json(
            require_field(prov, "sampling", dict, path, line, "provenance."), path, line, "provenance.sampling"
        )
        if "sampling" in prov
        else {},
    )
    if not 0 <= provenance.start_step <= len(turns):
        raise DataError(
            path, f"{provenance.start_step} is outside 0..{len(turns)} turns", line=line, field="provenance.start_step"
        )
    return Trajectory(
        id=require_field(record, "id", str, path, line),
        env=require_field(record, "env", str, path, line),
        task_id=require_field(record, "task_id", str, path, line),
        prompt=tuple(prompt),
        first_observation=require_field(record, "first_observation", str, path, line),
        turns=tuple(turns),
        reward=require_finite(record, "reward", path, line),
        success=require_field(record, "success", bool, path, line),
        terminated=require_field(record, "terminated", bool, path, line),
        provenance=provenance,
        meta=require_plain_json(require_field(record, "meta", dict, path, line), path, line, "meta")
        if "meta" in record
        else {},
    )


def iter_trajectories(path: str | Path, *, skip_torn_tail: bool = False) -> Iterator[Trajectory]:
    """Stream trajectories from a JSONL file.

    Args:
        path: the file.
        skip_torn_tail: ignore a last line without its newline that is not valid JSON (what a
            crash in the middle of :func:`append_trajectories` leaves); used when resuming.

    Raises:
        DataError: a missing file, bad JSON, a missing or mistyped field, or a repeated id.
    """
    seen: set[str] = set()
    for number, record in iter_json_lines(path, skip_torn_tail=skip_torn_tail):
        trajectory = trajectory_from_dict(record, path, number)
        if trajectory.id in seen:
            raise DataError(path, f"id {trajectory.id!r} appears twice", line=number, field="id")
        seen.add(trajectory.id)
        yield trajectory


def read_trajectories(path: str | Path, *, skip_torn_tail: bool = False) -> list[Trajectory]:
    """All trajectories of a JSONL file (see :func:`iter_trajectories`)."""
    return list(iter_trajectories(path, skip_torn_tail=skip_torn_tail))


def _line(trajectory: Trajectory, path: Path) -> str:
    return json_line(trajectory.to_dict(), path)


def write_trajectories(path: str | Path, trajectories: Iterable[Trajectory]) -> int:
    """Write a JSONL file atomically (see :mod:`eef.atomic`); returns the count.

    Raises:
        ValueError: two trajectories share an id (reading the file back would fail).
    """
    seen: set[str] = set()

    def records() -> Iterator[dict[str, Any]]:
        for trajectory in trajectories:
            if trajectory.id in seen:
                raise ValueError(f"trajectory id {trajectory.id!r} appears twice")
            seen.add(trajectory.id)
            yield trajectory.to_dict()

    return write_jsonl_atomic(path, records())


def append_trajectories(path: str | Path, trajectories: Iterable[Trajectory]) -> int:
    """Append whole lines and flush each, so finished episodes survive a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(path)
    count = 0
    with path.open("a", encoding="utf-8") as f:
        for trajectory in trajectories:
            f.write(_line(trajectory, path))
            f.flush()
            count += 1
    return count


def _drop_torn_tail(path: Path) -> None:
    """Make the file end with a newline before appending: a last line without one is cut when a
    crash tore it (not valid JSON) and completed with a newline when it is a whole record."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        start = size
        while start > 0:  # find the start of the last line, reading backwards in blocks
            block = min(65536, start)
            f.seek(start - block)
            newline = f.read(block).rfind(b"\n")
            if newline >= 0:
                start = start - block + newline + 1
                break
            start -= block
        f.seek(start)
        try:
            json.loads(f.read().decode("utf-8"))
            f.write(b"\n")
        except (UnicodeDecodeError, json.JSONDecodeError):
            f.truncate(start)
        except (ValueError, RecursionError):  # whole but unreadable: kept, for the reader to name
            f.write(b"\n")
