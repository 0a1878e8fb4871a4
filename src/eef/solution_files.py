"""The positive repository on disk: one JSON line per :class:`~eef.methods.Solution`,
``{"state_key", "actions", "iteration", "kind", "trajectory"}``.

Runs written before solutions were records of their own kept those four fields in each
trajectory's ``meta`` (``state`` for the key); such files still read, so those runs resume.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from eef.atomic import write_jsonl_atomic
from eef.errors import DataError
from eef.jsonl import iter_json_lines
from eef.methods import Solution
from eef.trajectory_files import require_field, trajectory_from_dict

# the fields older runs kept in a trajectory's meta, and their types
_EMBEDDED: dict[str, type] = {"state": str, "actions": int, "iteration": int, "kind": str}


def write_solutions(path: str | Path, solutions: Iterable[Solution]) -> int:
    """Write the solutions atomically; returns the count."""
    return write_jsonl_atomic(
        path,
        (
            {
                "state_key": s.state_key,
                "actions": s.actions,
                "iteration": s.iteration,
                "kind": s.kind,
                "trajectory": s.trajectory.to_dict(),
            }
            for s in solutions
        ),
    )


def read_solutions(path: str | Path) -> list[Solution]:
    """The solutions of a file :func:`write_solutions` wrote, or of an older run's repository.

    Raises:
        DataError: a missing file, or a line without a field of either form (naming line and field).
    """
    return [_solution(record, path, line) for line, record in iter_json_lines(path)]


def _solution(record: Any, path: str | Path, line: int) -> Solution:
    if not isinstance(record, dict):
        raise DataError(path, f"expected an object, got {type(record).__name__}", line=line)
    if "trajectory" not in record:  # an older run: a trajectory carrying its solution's fields in meta
        trajectory = trajectory_from_dict(record, path, line)
        fields = {
            key: require_field(trajectory.meta, key, kind, path, line, "meta.") for key, kind in _EMBEDDED.items()
        }
        meta = {key: value for key, value in trajectory.meta.items() if key not in _EMBEDDED}
        return Solution(
            fields["state"], replace(trajectory, meta=meta), fields["actions"], fields["iteration"], fields["kind"]
        )
    return Solution(
        require_field(record, "state_key", str, path, line),
        trajectory_from_dict(require_field(record, "trajectory", dict, path, line), path, line),
        require_field(record, "actions", int, path, line),
        require_field(record, "iteration", int, path, line),
        require_field(record, "kind", str, path, line),
    )
