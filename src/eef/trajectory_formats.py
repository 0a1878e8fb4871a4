"""Export and import of trajectories in the formats other trainers read.

``sharegpt``: AgentGym's AgentTraj format, one object per trajectory::

    {"item_id": "webshop_6", "conversations": [{"from": "human", "loss": null, "value": "..."},
                                               {"from": "gpt", "loss": true, "value": "..."}, ...]}

Roles map system -> ``system``, user -> ``human``, assistant -> ``gpt``; ``loss`` is true for
trainable assistant messages, false for the other ``gpt`` messages and null for the rest.

``openai``: OpenAI's chat fine-tuning format, ``{"messages": [{"role", "content"}, ...]}`` with
``"weight": 1`` (trainable) or ``0`` on every assistant message.

Both carry extra keys: ``item_id`` (the task id, prefixed ``{env}_`` unless it already is),
``reward``, ``success`` and an ``eef`` block (id, env, task id, prompt length, actions, step
rewards, final observation, provenance, meta), so exporting and importing eef's own files gives
back equal trajectories.

A record without an ``eef`` block (a file made elsewhere) is split by this rule:

* a ``gpt`` message is trainable unless its ``loss`` is false (``weight`` is 0);
* a first ``gpt`` message that only answers the first ``human`` message with ``OK`` (ETO's and
  AgentGym's instruction handshake) belongs to the prompt;
* the prompt is context: none of its messages trains, whatever its flag (as the prompt
  ``build_prompt`` makes with ``system_role`` false: instructions, then an untrained ``OK``);
* the first observation is the last ``human`` message before the first trainable ``gpt`` message
  (before the first ``gpt`` message when none is trainable); everything before it is the prompt;
* after it the conversation must alternate ``gpt``, ``human``: each ``gpt`` message is a turn whose
  action is ``parse_turn(text).action`` and whose observation is the next ``human`` message ('' when
  none follows), trainable as its flag says;
* ``reward`` is the record's (0 when absent, also the last turn's reward; a finite number in
  ``REWARD_RANGE``), ``success`` the record's
  or ``reward >= 1``, ``terminated`` true, and the provenance source the record's ``source`` or the
  given default;
* the id is ``item_id`` (``item_id#2``, ``item_id#3`` ... when it repeats in the file), the task id
  is ``item_id`` too (eef's task ids carry the ``{env}_`` prefix, as AgentGym's item ids do), and
  the environment is the ``env`` argument or ``item_id`` up to its last ``_``. A record without
  ``item_id`` needs ``env`` and is numbered by its line: ``{env}_{line}``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NamedTuple

from eef.agent.parse import parse_turn
from eef.atomic import write_jsonl_atomic
from eef.errors import DataError, UnknownNameError
from eef.jsonl import iter_json_lines
from eef.trajectory import Message, Provenance, Trajectory, Turn
from eef.trajectory_files import require_field, require_reward, trajectory_from_dict


class _Layout(NamedTuple):
    """Where a format keeps the parts of a message."""

    messages: str  # the key of the message list
    role: str
    content: str
    flag: str  # the per-message training flag
    flag_kinds: tuple[type, ...]
    flag_values: tuple[Any, ...]  # besides null (unset: trainable)
    roles: dict[str, str]  # eef role -> the format's name


_SHAREGPT = _Layout(
    "conversations",
    "from",
    "value",
    "loss",
    (bool, type(None)),
    (True, False),
    {"system": "system", "user": "human", "assistant": "gpt"},
)
_OPENAI = _Layout(
    "messages",
    "role",
    "content",
    "weight",
    (int,),
    (0, 1),
    {"system": "system", "user": "user", "assistant": "assistant"},
)


def _extras(trajectory: Trajectory) -> dict[str, Any]:
    """The keys beside the messages: AgentGym's item id, reward and success, and the eef block."""
    prefix = f"{trajectory.env}_"
    block = trajectory.to_dict()
    for key in ("prompt", "first_observation", "reward", "success"):
        del block[key]
    block["prompt_messages"] = len(trajectory.prompt)
    block["turns"] = [{"action": t.action, "reward": t.reward} for t in trajectory.turns]
    block["final_observation"] = trajectory.turns[-1].observation if trajectory.turns else ""
    return {
        "item_id": trajectory.task_id if trajectory.task_id.startswith(prefix) else prefix + trajectory.task_id,
        "reward": trajectory.reward,
        "success": trajectory.success,
        "eef": block,
    }


def to_sharegpt(trajectory: Trajectory) -> dict[str, Any]:
    """The AgentGym (ShareGPT with ``loss``) record of a trajectory."""
    extras = _extras(trajectory)
    conversations = [
        {"from": _SHAREGPT.roles[m.role], "loss": m.trainable if m.role == "assistant" else None, "value": m.content}
        for m in trajectory.messages()
    ]
    return {"item_id": extras.pop("item_id"), "conversations": conversations, **extras}


def to_openai(trajectory: Trajectory) -> dict[str, Any]:
    """The OpenAI chat fine-tuning record of a trajectory (``weight`` on assistant messages)."""
    messages = [
        {"role": m.role, "content": m.content} | ({"weight": int(m.trainable)} if m.role == "assistant" else {})
        for m in trajectory.messages()
    ]
    return {"messages": messages, **_extras(trajectory)}


def from_sharegpt(
    record: Any, path: Path | str = "<memory>", line: int = 1, *, env: str | None = None, source: str = "imported"
) -> Trajectory:
    """A trajectory from an AgentGym (ShareGPT) record; see the module docstring for the rule.

    Args:
        record: the parsed JSON line.
        path: the file, for error messages.
        line: the line, for error messages.
        env: the environment of records without an ``eef`` block (default: from ``item_id``).
        source: the provenance source of records that name none.

    Raises:
        DataError: naming the bad field, e.g. ``conversations[3].from``.
    """
    return _from_record(record, _SHAREGPT, Path(path), line, env, source)


def from_openai(
    record: Any, path: Path | str = "<memory>", line: int = 1, *, env: str | None = None, source: str = "imported"
) -> Trajectory:
    """A trajectory from an OpenAI chat fine-tuning record; arguments as :func:`from_sharegpt`."""
    return _from_record(record, _OPENAI, Path(path), line, env, source)


def _from_record(record: Any, layout: _Layout, path: Path, line: int, env: str | None, source: str) -> Trajectory:
    if not isinstance(record, dict):
        raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line=line)
    names = {theirs: ours for ours, theirs in layout.roles.items()}
    messages = []
    for i, m in enumerate(require_field(record, layout.messages, list, path, line)):
        where = f"{layout.messages}[{i}]"
        if not isinstance(m, dict):
            raise DataError(path, "expected an object", line=line, field=where)
        role = require_field(m, layout.role, str, path, line, where + ".")
        if role not in names:
            raise DataError(
                path, f"{role!r} is not one of {', '.join(names)}", line=line, field=f"{where}.{layout.role}"
            )
        flag = require_field(m, layout.flag, layout.flag_kinds, path, line, where + ".") if layout.flag in m else None
        if flag is not None and flag not in layout.flag_values:
            raise DataError(
                path,
                f"{flag!r} is not one of {', '.join(map(json.dumps, layout.flag_values))}",
                line=line,
                field=f"{where}.{layout.flag}",
            )
        trainable = names[role] == "assistant" and (flag is None or bool(flag))
        messages.append(Message(names[role], require_field(m, layout.content, str, path, line, where + "."), trainable))
    if "eef" in record:
        return _own(record, messages, layout, path, line)
    return _foreign(record, messages, layout, path, line, env, source)


def _exchanges(
    messages: list[Message], start: int, layout: _Layout, path: Path, line: int
) -> list[tuple[Message, str | None]]:
    """(assistant message, the user message after it or None) from ``start``, which must alternate."""
    for i in range(start, len(messages)):
        expected = "assistant" if (i - start) % 2 == 0 else "user"
        if messages[i].role != expected:
            raise DataError(
                path,
                f"expected {layout.roles[expected]!r}: after the first observation, messages "
                f"alternate {layout.roles['assistant']!r} and {layout.roles['user']!r}",
                line=line,
                field=f"{layout.messages}[{i}].{layout.role}",
            )
    observations = [m.content for m in messages[start + 1 :: 2]]
    return [(m, observations[k] if k < len(observations) else None) for k, m in enumerate(messages[start::2])]


def _own(record: dict, messages: list[Message], layout: _Layout, path: Path, line: int) -> Trajectory:
    """A record eef exported: its ``eef`` block holds what the messages do not."""
    block = require_field(record, "eef", dict, path, line)
    n = require_field(block, "prompt_messages", int, path, line, "eef.")
    if not 0 <= n < len(messages) or messages[n].role != "user":
        raise DataError(
            path,
            f"message {n} is not a {layout.roles['user']!r} message (the first observation)",
            line=line,
            field="eef.prompt_messages",
        )
    exchanges = _exchanges(messages, n + 1, layout, path, line)
    extra = require_field(block, "turns", list, path, line, "eef.")
    if len(extra) != len(exchanges) or (exchanges and exchanges[-1][1] is not None):
        raise DataError(
            path,
            f"{len(extra)} turns for a conversation of {len(exchanges)} turns after the prompt "
            f"(it must end with an {layout.roles['assistant']!r} message)",
            line=line,
            field="eef.turns",
        )
    final = require_field(block, "final_observation", str, path, line, "eef.")
    turns = []
    for i, ((message, observation), step) in enumerate(zip(exchanges, extra)):
        if not isinstance(step, dict):
            raise DataError(path, "expected an object", line=line, field=f"eef.turns[{i}]")
        turns.append(
            {
                **step,
                "text": message.content,
                "trainable": message.trainable,
                "observation": final if observation is None else observation,
            }
        )
    full = {
        **block,
        "prompt": [asdict(m) for m in messages[:n]],
        "first_observation": messages[n].content,
        "turns": turns,
        **{key: record[key] for key in ("reward", "success") if key in record},
    }
    try:
        return trajectory_from_dict(full, path, line)
    except DataError as e:  # every field but reward and success came from the eef block
        field = e.field if e.field in ("reward", "success") else f"eef.{e.field}"
        raise DataError(path, e.reason, line=line, field=field) from None


def _is_handshake(messages: list[Message], index: int) -> bool:
    """The first assistant message only acknowledges the instructions (``OK``), as in ETO's files."""
    return (
        messages[index].content.strip().rstrip(".!").lower() == "ok"
        and sum(m.role == "user" for m in messages[:index]) == 1
    )


def _foreign(
    record: dict, messages: list[Message], layout: _Layout, path: Path, line: int, env: str | None, source: str
) -> Trajectory:
    """A record made elsewhere, split by the rule in the module docstring."""
    assistants = [i for i, m in enumerate(messages) if m.role == "assistant"]
    if assistants and _is_handshake(messages, assistants[0]):
        assistants = assistants[1:]  # ETO / AgentGym open with "instructions" -> "OK": prompt, not a turn
    first = next((i for i in assistants if messages[i].trainable), assistants[0] if assistants else len(messages))
    users = [i for i in range(first) if messages[i].role == "user"]
    if not users:
        raise DataError(
            path,
            f"no {layout.roles['user']!r} message before the first {layout.roles['assistant']!r} "
            "message, so no first observation",
            line=line,
            field=layout.messages,
        )
    n = users[-1]
    exchanges = _exchanges(messages, n + 1, layout, path, line)
    if "item_id" in record:
        item_id = require_field(record, "item_id", str, path, line)
    elif env:
        item_id = f"{env}_{line}"
    else:
        raise DataError(path, "missing; pass env to import records without one", line=line, field="item_id")
    if not env and "_" not in item_id:
        raise DataError(path, f"{item_id!r} has no '<env>_' prefix; pass env", line=line, field="item_id")
    reward = require_reward(record, "reward", path, line) if "reward" in record else 0.0
    turns = tuple(
        Turn(
            m.content,
            parse_turn(m.content).action,
            observation or "",
            reward if k == len(exchanges) - 1 else 0.0,
            m.trainable,
        )
        for k, (m, observation) in enumerate(exchanges)
    )
    return Trajectory(
        id=item_id,
        env=env or item_id.rsplit("_", 1)[0],
        task_id=item_id,
        prompt=tuple(replace(m, trainable=False) for m in messages[:n]),
        first_observation=messages[n].content,
        turns=turns,
        reward=reward,
        success=require_field(record, "success", bool, path, line) if "success" in record else reward >= 1.0,
        terminated=True,
        provenance=Provenance(
            (require_field(record, "source", str, path, line) if "source" in record else "") or source
        ),
    )


FORMATS: dict[str, tuple[Callable[[Trajectory], dict], Callable[..., Trajectory]]] = {
    "sharegpt": (to_sharegpt, from_sharegpt),
    "openai": (to_openai, from_openai),
}


def _format(name: str) -> tuple[Callable[[Trajectory], dict], Callable[..., Trajectory]]:
    if name not in FORMATS:
        raise UnknownNameError("format", name, sorted(FORMATS))
    return FORMATS[name]


def export_trajectories(trajectories: Iterable[Trajectory], path: str | Path, format: str) -> int:
    """Write trajectories as ``format`` JSONL atomically (temporary file, then rename); returns the count."""
    to_record = _format(format)[0]
    return write_jsonl_atomic(path, (to_record(t) for t in trajectories))


def import_trajectories(
    path: str | Path, format: str, *, env: str | None = None, source: str = "imported"
) -> list[Trajectory]:
    """Read a ``format`` JSONL file line by line.

    Args:
        path: the file.
        format: ``sharegpt`` or ``openai``.
        env: the environment of records without an ``eef`` block (default: from ``item_id``).
        source: the provenance source of records that name none.

    Raises:
        DataError: a missing or empty file, bad JSON or a bad field (file, line and field named), or
            an eef id that repeats.
        UnknownNameError: an unknown format.
    """
    from_record = _format(format)[1]
    out: list[Trajectory] = []
    seen: set[str] = set()
    for number, record in iter_json_lines(path):
        trajectory = from_record(record, path, number, env=env, source=source)
        if trajectory.id in seen:
            if "eef" in record:
                raise DataError(path, f"id {trajectory.id!r} appears twice", line=number, field="eef.id")
            base = trajectory.id
            trajectory = replace(
                trajectory, id=next(f"{base}#{k}" for k in itertools.count(2) if f"{base}#{k}" not in seen)
            )
        seen.add(trajectory.id)
        out.append(trajectory)
    if not out:
        raise DataError(path, "no records: the file is empty")
    return out
