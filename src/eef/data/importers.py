"""Importers of the public expert trajectory sets (``eef data import --format F PATH``).

Formats (a file is one JSON array or JSON lines; see docs/data.md):

* ``eto``: ETO's SFT files, ``{id, conversations: [{from, value}], reward?, source?}``. WebShop ids
  are session indices, ScienceWorld ids ``{task number}_{variation}``, ALFWorld records carry
  ``game_file`` (eef has no ALFWorld environment, so they are listed as unresolved).
* ``agentgym``: AgentGym's AgentTraj, ``{item_id: "webshop_6", conversations: [{from, loss, value}]}``
  (also eef's own ``sharegpt`` exports).
* ``eef-expert``: the EEF authors' set ``lclan/webshop_expert_trajectories``,
  ``{id, conversations: [{role, content}], info: {reward, llm_name, agent_arch, task_name?, var_num?}}``:
  WebShop rows (reward 0-1, ``id`` taken as the session index) and ScienceWorld rows (``task_name``
  and ``var_num``, score 0-100; a row is ScienceWorld's when it has ``var_num`` or its file's name
  says ``sciworld``, as the set's ScienceWorld files do).
* ``openai``: ``{messages: [{role, content, weight?}], item_id?, reward?}`` (also eef's own exports).

Each record becomes a trajectory by the split rule of :mod:`eef.trajectory_formats` (ETO's
"instructions" -> ``OK`` exchange stays in the prompt); a leading ``Observation:`` is cut from
observations, as eef's environments do not print it. A reward must be a finite number in [0, 1]
([0, 100] for the EEF set's ScienceWorld scores, divided by 100). A record without a reward is taken
as a success (reward 1.0; ETO's and AgentGym's SFT sets hold successful demonstrations only), which
``eef data check`` verifies by replay. The task is resolved by :mod:`eef.data.resolve`; a record
that cannot be resolved is listed with the reason, never dropped silently.

:func:`import_directory` imports every expert file under a directory (a fetched set, walked
recursively; names with spaces are fine): a file whose records are all for another environment
is skipped as a whole, and each file's counts are kept.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from eef.data.fetch import MANIFEST
from eef.data.reader import iter_records
from eef.data.resolve import (
    TaskHints,
    TaskResolver,
    canonical_env,
    instruction_in,
    parse_eto_scienceworld_id,
    price_in,
    without_price,
)
from eef.envs.protocol import TextEnv
from eef.errors import DataError, UnknownNameError
from eef.trajectory import Trajectory
from eef.trajectory_files import require_field, require_plain_json, require_reward
from eef.trajectory_formats import from_openai, from_sharegpt

_OBSERVATION_PREFIX = re.compile(r"^\s*Observation:\s*")
NO_ACTION = "the conversation has no assistant turn after the first observation (no action)"


@dataclass(frozen=True)
class Candidate:
    """A record read but not yet resolved.

    Attributes:
        original_id: the record's own id.
        trajectory: the conversation as a trajectory (task id still the record's).
        hints: what the record says about its task.
        source: who produced it (a model name when the record names one).
        extra: facts kept in ``meta["import"]`` (e.g. the record's ``info``).
    """

    original_id: str
    trajectory: Trajectory
    hints: TaskHints
    source: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def own(self) -> bool:
        """An eef export: its id and task id are already eef's."""
        return self.hints.task_id is not None

    @property
    def id_base(self) -> str:
        """The imported trajectory's id: eef's own, else ``{source}/{record id}``."""
        return self.trajectory.id if self.own else f"{self.source}/{self.original_id}"


@dataclass(frozen=True)
class Unresolved:
    """A record whose task could not be resolved: where it is and why."""

    path: str
    line: int
    id: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (one line of the ``.unresolved.jsonl`` report)."""
        return {"file": self.path, "line": self.line, "id": self.id, "reason": self.reason}


@dataclass
class FileCounts:
    """What one file gave.

    Attributes:
        path: the file.
        records: records read.
        imported: trajectories resolved.
        successes: those of them that succeeded.
        unresolved: records listed as unresolved.
        elsewhere: the environments whose records make up the whole file, when none is the
            target's (the file is then skipped, its records not listed); empty otherwise.
    """

    path: Path
    records: int = 0
    imported: int = 0
    successes: int = 0
    unresolved: int = 0
    elsewhere: tuple[str, ...] = ()


@dataclass
class ImportResult:
    """What an import produced: resolved trajectories, the records left unresolved and each
    file's counts."""

    trajectories: list[Trajectory] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    files: list[FileCounts] = field(default_factory=list)


def _conversation(
    record: dict, key: str, path: Path, line: int, env: str, item_id: str, reward: float, source: str
) -> Trajectory:
    """The trajectory of a message list in either layout: ``{from, value}`` or ``{role, content}``."""
    messages = require_field(record, key, list, path, line)
    sharegpt = not messages or not isinstance(messages[0], dict) or "from" in messages[0]
    body = {"item_id": item_id, "reward": reward, "source": source}
    if sharegpt:
        return from_sharegpt({**body, "conversations": messages}, path, line, env=env)
    try:
        return from_openai({**body, "messages": messages}, path, line, env=env)
    except DataError as e:  # name the record's own key
        field_name = e.field.replace("messages", key, 1) if e.field else e.field
        raise DataError(path, e.reason, line=line, field=field_name) from None


def _reward(record: dict, path: Path, line: int, prefix: str = "", high: float = 1.0) -> float | None:
    """The record's reward scaled to [0, 1], or None when it has none."""
    return require_reward(record, "reward", path, line, prefix, high) / high if "reward" in record else None


def _record_id(record: dict, key: str, path: Path, line: int) -> str:
    return str(require_field(record, key, (int, str), path, line))


def _session(value: str) -> int | None:
    # ASCII and bounded: int() rejects some Unicode digits and strings of over 4300 digits
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def read_eto(record: Any, path: Path, line: int, env: str) -> Candidate:
    """An ETO SFT record (see the module docstring)."""
    record = _object(record, path, line)
    if "game_file" in record:  # ALFWorld, whether or not the record also has an id
        original = (
            _record_id(record, "id", path, line)
            if "id" in record
            else str(require_field(record, "game_file", str, path, line))
        )
        hints = TaskHints(env="alfworld")
    else:
        original = _record_id(record, "id", path, line)
        scienceworld = parse_eto_scienceworld_id(original)
        hints = TaskHints(scienceworld=scienceworld) if scienceworld else TaskHints(session=_session(original))
    source = str(require_field(record, "source", str, path, line)) if "source" in record else "eto"
    reward = _reward(record, path, line)
    trajectory = _conversation(record, "conversations", path, line, env, original, _or_success(reward), source)
    return Candidate(original, trajectory, hints, source, {"reward_assumed": reward is None})


def _or_success(reward: float | None) -> float:
    return 1.0 if reward is None else reward  # a record without a reward is a demonstration: a success


def read_agentgym(record: Any, path: Path, line: int, env: str) -> Candidate:
    """An AgentGym AgentTraj record, or an eef ``sharegpt`` export."""
    record = _object(record, path, line)
    if "eef" in record:  # eef's own export: its task id and environment are eef's
        return _own(from_sharegpt(record, path, line))
    original = str(require_field(record, "item_id", str, path, line))
    reward = _reward(record, path, line)
    trajectory = _conversation(record, "conversations", path, line, env, original, _or_success(reward), "agentgym")
    return Candidate(original, trajectory, _item_hints(original), "agentgym", {"reward_assumed": reward is None})


def _own(trajectory: Trajectory) -> Candidate:
    return Candidate(
        trajectory.id,
        trajectory,
        TaskHints(env=trajectory.env, task_id=trajectory.task_id),
        trajectory.provenance.source,
    )


def _item_hints(item_id: str) -> TaskHints:
    """AgentGym's ``{env}_{index}``: a WebShop index is the session; other environments number
    their own task lists."""
    prefix, _, number = item_id.rpartition("_")
    if not prefix:
        return TaskHints()
    if canonical_env(prefix) == "scienceworld":
        return TaskHints(
            env=prefix,
            unresolvable="AgentGym numbers ScienceWorld items in its own task list, which records no task or variation",
        )
    return TaskHints(env=prefix, session=_session(number))


def read_eef_expert(record: Any, path: Path, line: int, env: str) -> Candidate:
    """A record of the EEF authors' set (see the module docstring)."""
    record = _object(record, path, line)
    original = _record_id(record, "id", path, line)
    info = require_field(record, "info", dict, path, line) if "info" in record else {}
    model = str(require_field(info, "llm_name", str, path, line, "info.")) if "llm_name" in info else "eef-expert"
    scienceworld = "var_num" in info or "sciworld" in path.name.lower()
    scale = 100.0 if scienceworld else 1.0  # ScienceWorld scores run 0-100
    reward = _reward(info, path, line, "info.", scale) if "reward" in info else _reward(record, path, line, "", scale)
    require_plain_json(info, path, line, "info")  # kept in meta: it must stay writable
    if scienceworld:
        hints = _scienceworld_hints(info, path, line)
    else:
        hints = TaskHints(env="webshop", session=_session(original))
    trajectory = _conversation(record, "conversations", path, line, env, original, _or_success(reward), model)
    trajectory = replace(trajectory, provenance=replace(trajectory.provenance, model=model))
    return Candidate(original, trajectory, hints, model, {"info": info, "reward_assumed": reward is None})


def _scienceworld_hints(info: dict, path: Path, line: int) -> TaskHints:
    """A ScienceWorld row's task: ``info.task_name`` and ``info.var_num``; a row of a ScienceWorld
    file that has neither is listed unresolved (its session-like ``id`` must not pick a WebShop task)."""
    if "var_num" not in info and "task_name" not in info:
        return TaskHints(env="scienceworld", unresolvable="the ScienceWorld row has no info.task_name and info.var_num")
    task = require_field(info, "task_name", str, path, line, "info.")
    variation = int(require_field(info, "var_num", int, path, line, "info."))
    return TaskHints(env="scienceworld", scienceworld=(task, variation))


def read_openai(record: Any, path: Path, line: int, env: str) -> Candidate:
    """An OpenAI ``messages`` record, or an eef ``openai`` export."""
    record = _object(record, path, line)
    reward = _reward(record, path, line)
    body = record if reward is not None else {**record, "reward": 1.0}
    trajectory = from_openai(body, path, line, env=env, source="openai")
    if "eef" in record:
        return _own(trajectory)
    original = str(record["item_id"]) if "item_id" in record else str(line)
    hints = _item_hints(original) if "item_id" in record else TaskHints()
    return Candidate(original, trajectory, hints, trajectory.provenance.source, {"reward_assumed": reward is None})


def _object(record: Any, path: Path, line: int) -> dict:
    if not isinstance(record, dict):
        raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line=line)
    return record


# (record, file, line, target environment's name) -> the record read.
RecordReader = Callable[[Any, Path, int, str], Candidate]
READERS: dict[str, RecordReader] = {
    "eto": read_eto,
    "agentgym": read_agentgym,
    "eef-expert": read_eef_expert,
    "openai": read_openai,
}


def _strip_prefix(text: str) -> str:
    return _OBSERVATION_PREFIX.sub("", text, count=1)


def _cleaned(trajectory: Trajectory) -> Trajectory:
    """Observations as eef's environments print them (no ``Observation:`` label)."""
    turns = tuple(replace(t, observation=_strip_prefix(t.observation)) for t in trajectory.turns)
    return replace(trajectory, first_observation=_strip_prefix(trajectory.first_observation), turns=turns)


def import_file(path: str | Path, format: str, env: TextEnv, *, resolver: TaskResolver | None = None) -> ImportResult:
    """Read an expert file and resolve each record's task in ``env``.

    Args:
        path: the file (a JSON array or JSON lines).
        format: one of :data:`READERS`.
        env: the environment the trajectories are for.
        resolver: a resolver over ``env`` to reuse across files (built when None).

    Returns:
        The resolved trajectories (id ``{source}/{record id}``, ``#2``... when repeated; provenance
        naming the source; ``meta["import"]``: format, file, line, record id, the rule that
        resolved it) and the unresolved records with their reasons.

    Raises:
        UnknownNameError: an unknown format.
        DataError: a missing file, bad JSON, a record with a missing, mistyped or out-of-range field,
            a file without records, or one none of whose records resolves (the first one's reason named).
    """
    path = Path(path)
    result, counts = _import_one(path, _reader(format), format, resolver or TaskResolver(env), set())
    _require_some(result, counts.records, path)
    return result


# What a directory import reads: the suffixes of expert files (JSON, JSON lines, gzipped JSON lines).
EXPERT_SUFFIXES = (".json", ".jsonl", ".jsonl.gz")


def expert_files(directory: str | Path) -> list[Path]:
    """The expert files under ``directory``, recursively, in name order: those with an expert
    file's suffix, but not eef's manifest nor anything under a hidden folder (the hub's cache)."""
    directory = Path(directory)
    return [
        path
        for path in sorted(p for p in directory.rglob("*") if p.is_file())
        if path.name.endswith(EXPERT_SUFFIXES)
        and path.name != MANIFEST
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    ]


def import_directory(
    directory: str | Path, format: str, env: TextEnv, *, resolver: TaskResolver | None = None
) -> ImportResult:
    """Import every expert file under ``directory`` (see :func:`expert_files`) into ``env``.

    Files are read in name order into one result, so trajectory ids stay unique across files.
    A file whose records are all for other environments is skipped whole (its counts say which);
    an empty file is skipped too.

    Returns:
        As :func:`import_file`, with ``files`` holding each file's counts.

    Raises:
        UnknownNameError: an unknown format.
        DataError: the directory has no expert files or nothing in it imports; any file's fault, as
            :func:`import_file` raises it (file, line and field named).
    """
    directory = Path(directory)
    read = _reader(format)
    files = expert_files(directory)
    if not files:
        raise DataError(directory, f"no expert files ({', '.join(EXPERT_SUFFIXES)}) in this directory")
    resolver = resolver or TaskResolver(env)
    result = ImportResult()
    seen: set[str] = set()
    for path in files:
        own, counts = _import_one(path, read, format, resolver, seen)
        result.trajectories += own.trajectories
        result.unresolved += [] if counts.elsewhere else own.unresolved  # another environment's file: skipped
        result.files.append(counts)
    if not result.trajectories:
        raise DataError(directory, f"nothing to import for {env.name} in {_describe_skipped(result.files)}")
    return result


def _describe_skipped(files: list[FileCounts]) -> str:
    elsewhere = sorted({e for f in files for e in f.elsewhere})
    other = f"; records for {', '.join(elsewhere)} skipped" if elsewhere else ""
    return f"{len(files)} file{'s' if len(files) > 1 else ''} ({sum(f.records for f in files)} records{other})"


def _reader(format: str) -> RecordReader:
    if format not in READERS:
        raise UnknownNameError("format", format, sorted(READERS))
    return READERS[format]


def _import_one(
    path: Path, read: RecordReader, format: str, resolver: TaskResolver, seen: set[str]
) -> tuple[ImportResult, FileCounts]:
    """One file's trajectories (ids unique against ``seen``, which grows), unresolved records and counts."""
    name = resolver.env.name
    result = ImportResult()
    counts = FileCounts(path)
    elsewhere: list[str] = []
    for line, record in iter_records(path):
        candidate = read(record, path, line, name)
        counts.records += 1
        if candidate.hints.env is not None and canonical_env(candidate.hints.env) != name:
            elsewhere.append(canonical_env(candidate.hints.env))
        outcome = _resolved(candidate, path, line, format, resolver, seen)
        if isinstance(outcome, Unresolved):
            result.unresolved.append(outcome)
        else:
            result.trajectories.append(outcome)
    if counts.records and len(elsewhere) == counts.records:
        counts.elsewhere = tuple(sorted(set(elsewhere)))
    counts.imported, counts.unresolved = len(result.trajectories), len(result.unresolved)
    counts.successes = sum(t.success for t in result.trajectories)
    result.files.append(counts)
    return result, counts


def _resolved(
    candidate: Candidate, path: Path, line: int, format: str, resolver: TaskResolver, seen: set[str]
) -> Trajectory | Unresolved:
    """The record as an imported trajectory (its id added to ``seen``), or why it is unresolved."""
    trajectory = _cleaned(candidate.trajectory)
    if not trajectory.turns:  # nothing to clone or restore; its assumed reward would be a lie
        return Unresolved(str(path), line, candidate.original_id, NO_ACTION)
    resolution = resolver.resolve(candidate.hints, trajectory.first_observation)
    if resolution.task_id is None:
        return Unresolved(str(path), line, candidate.original_id, resolution.reason)
    base = candidate.id_base
    trajectory_id = next(
        i for i in itertools.chain([base], (f"{base}#{k}" for k in itertools.count(2))) if i not in seen
    )
    seen.add(trajectory_id)
    imported = {
        "format": format,
        "file": str(path),
        "line": line,
        "id": candidate.original_id,
        "resolved_by": resolution.how,
        **candidate.extra,
    }
    return replace(
        trajectory,
        id=trajectory_id,
        env=resolver.env.name,
        task_id=resolution.task_id,
        provenance=replace(trajectory.provenance, source=candidate.source),
        meta={**trajectory.meta, "import": imported},
    )


@dataclass
class PriceLimits:
    """The WebShop price limits the imported trajectories were recorded under.

    Attributes:
        limits: task id -> the limit of the price clause on the first page (None: the
            instruction names no price), the first record's for a task several records show.
        conflicts: records whose limit differs from the one kept for their task.
    """

    limits: dict[str, float | None] = field(default_factory=dict)
    conflicts: int = 0


def recorded_price_limits(trajectories: list[Trajectory]) -> PriceLimits:
    """Each task's price limit as its trajectories' first pages show it (``webshop``'s
    ``price_limits`` option reads them, so the recorded pages replay; see
    :mod:`eef.envs.shop.price_limits`). A trajectory whose first page shows no instruction, or
    a price clause whose number does not read as a positive one, says nothing."""
    found = PriceLimits()
    for trajectory in trajectories:
        instruction = instruction_in(trajectory.first_observation)
        if instruction is None:
            continue
        limit = price_in(instruction)
        if (limit is None and without_price(instruction) != instruction) or (limit is not None and limit <= 0):
            continue  # a clause whose number does not read
        if trajectory.task_id not in found.limits:
            found.limits[trajectory.task_id] = limit
        elif found.limits[trajectory.task_id] != limit:
            found.conflicts += 1
    return found


def _require_some(result: ImportResult, records: int, path: Path) -> None:
    """An import that yields nothing is a mistake (wrong file, format or environment), not a result."""
    if not records:
        raise DataError(path, "no records: the file is empty (or an empty array)")
    if not result.trajectories:
        first = result.unresolved[0]
        which = "its only record is" if records == 1 else f"all {records} records are"
        raise DataError(
            path, f"nothing to import: {which} skipped, this first one because {first.reason}", line=first.line
        )
