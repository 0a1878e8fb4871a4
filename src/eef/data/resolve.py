"""Resolve the task of an imported trajectory in an eef environment.

Public expert sets name their tasks in their own ways: a WebShop session index (ETO's ``id``,
AgentGym's ``webshop_6``, the EEF set's ``id``), the instruction on the first page, or a
ScienceWorld task and variation (ETO's ``0_12`` = boil, variation 12; the EEF set's
``task_name`` and ``var_num``). The rule, in order:

1. a record that carries an eef task id (eef's own exports) keeps it when the environment has it;
2. a ScienceWorld task and variation map to ``{task}/{variation}`` (:func:`scienceworld_task_id`);
3. a session index ``i`` maps to ``{env}_{i}`` when the environment has that task and, when the
   first observation shows an instruction, that task's instruction is the same (but for the
   price clause, see 4);
4. otherwise the instruction (lower-cased, spaces collapsed) is looked up among every task's
   instruction; failing that, without WebShop's price clause (``and price lower than X
   dollars``), whose threshold differs between WebShop processes. Several matches take the
   first task id and say so in ``how``.

A record that none of these resolve is reported with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eef.envs.protocol import TextEnv
from eef.errors import UnknownNameError

# ETO's ScienceWorld task numbers (``eval_agent/data/sciworld/taskname2id.json``), as the
# scienceworld package names the tasks; ETO's table has no task 5.
ETO_SCIENCEWORLD_TASKS: dict[int, str] = {
    number: name
    for number, name in enumerate(
        (
            "boil",
            "change-the-state-of-matter-of",
            "freeze",
            "melt",
            "measure-melting-point-known-substance",
            None,
            "use-thermometer",
            "power-component",
            "power-component-renewable-vs-nonrenewable-energy",
            "test-conductivity",
            "test-conductivity-of-unknown-substances",
            "find-animal",
            "find-living-thing",
            "find-non-living-thing",
            "find-plant",
            "grow-fruit",
            "grow-plant",
            "chemistry-mix",
            "chemistry-mix-paint-secondary-color",
            "chemistry-mix-paint-tertiary-color",
            "lifespan-longest-lived",
            "lifespan-longest-lived-then-shortest-lived",
            "lifespan-shortest-lived",
            "identify-life-stages-1",
            "identify-life-stages-2",
            "inclined-plane-determine-angle",
            "inclined-plane-friction-named-surfaces",
            "inclined-plane-friction-unnamed-surfaces",
            "mendelian-genetics-known-plant",
            "mendelian-genetics-unknown-plant",
        )
    )
    if name
}
# Other projects' names of eef environments.
ENV_ALIASES = {"sciworld": "scienceworld"}

_INSTRUCTION = re.compile(r"Instruction:\s*(?:\[SEP\])?\s*(.*?)\s*(?:\[SEP\]|\n|$)")
_PRICE = re.compile(r",?\s*and price lower than ([\d.,]+) dollars\.?$")


def canonical_env(name: str) -> str:
    """eef's name of an environment other projects name differently (``sciworld``)."""
    return ENV_ALIASES.get(name, name)


def scienceworld_task_name(name: str | int) -> str | None:
    """The scienceworld package's name of a task: from ETO's number, or any spelling the
    environment takes (ETO's ``task-5-chemistry-mix-paint-(secondary-color)`` with its
    ``mendellian`` spelling, the package's id or name; see
    :func:`eef.envs.scienceworld.tasks.task_name`); None for a task neither knows.

    >>> scienceworld_task_name("task-9-mendellian-genetics-(known-plant)")
    'mendelian-genetics-known-plant'
    >>> scienceworld_task_name(0)
    'boil'
    """
    if isinstance(name, int):
        return ETO_SCIENCEWORLD_TASKS.get(name)
    from eef.envs.scienceworld.tasks import task_name  # the names live with the environment

    try:
        return task_name(name)
    except UnknownNameError:
        return None


def scienceworld_task_id(task: str | int, variation: int) -> str | None:
    """eef's ``scienceworld`` task id (``boil/12``) of a task in any spelling and a variation.

    >>> scienceworld_task_id("task-1-boil", 12)
    'boil/12'
    """
    from eef.envs.scienceworld.tasks import task_id  # the id format lives with the environment

    name = scienceworld_task_name(task)
    return None if name is None else task_id(name, variation)


def parse_eto_scienceworld_id(value: str) -> tuple[int, int] | None:
    """ETO's ScienceWorld id ``{task number}_{variation}`` as numbers, or None."""
    match = re.fullmatch(r"([0-9]{1,9})_([0-9]{1,9})", value.strip())  # bounded: int() refuses 4300 digits
    return (int(match[1]), int(match[2])) if match else None


def normalize_instruction(text: str) -> str:
    """Lower-cased, spaces collapsed, trailing full stops dropped: how instructions are compared."""
    return " ".join(text.lower().split()).rstrip(".")


def instruction_in(observation: str) -> str | None:
    """The WebShop instruction an observation shows (``Instruction: [SEP] ... [SEP]``), or None."""
    match = _INSTRUCTION.search(observation)
    return normalize_instruction(match[1]) if match and match[1].strip() else None


def without_price(instruction: str) -> str:
    """An instruction without WebShop's price clause."""
    return _PRICE.sub("", instruction)


def price_in(instruction: str) -> float | None:
    """The limit of an instruction's WebShop price clause (``... and price lower than 40.00
    dollars`` -> 40.0), or None when it has none (or the number does not read).

    >>> price_in("i need a red mug, and price lower than 40.00 dollars")
    40.0
    """
    match = _PRICE.search(instruction)
    if not match:
        return None
    try:
        return float(match[1].replace(",", ""))
    except ValueError:
        return None


@dataclass(frozen=True)
class TaskHints:
    """What a record says about its task.

    Attributes:
        env: the environment the record belongs to (None: whatever the target is).
        task_id: an eef task id (eef's own exports).
        session: a WebShop session index.
        scienceworld: a ScienceWorld (task in any spelling, variation).
        unresolvable: why the record's task cannot be resolved at all ('' when it may be).
    """

    env: str | None = None
    task_id: str | None = None
    session: int | None = None
    scienceworld: tuple[str | int, int] | None = None
    unresolvable: str = ""


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving one record.

    Attributes:
        task_id: the task in the target environment, or None.
        how: the rule that resolved it (``task id``, ``session``, ``instruction``, ...).
        reason: why it is unresolved ('' when resolved).
    """

    task_id: str | None
    how: str = ""
    reason: str = ""


class TaskResolver:
    """Resolves records' tasks in one environment; the instruction index is built on first need
    (one ``reset`` per task)."""

    def __init__(self, env: TextEnv):
        self.env = env
        self.task_ids = list(dict.fromkeys(t for split in env.splits() for t in env.task_ids(split)))
        self._known = set(self.task_ids)
        self._exact: dict[str, list[str]] | None = None
        self._loose: dict[str, list[str]] = {}

    def resolve(self, hints: TaskHints, first_observation: str) -> Resolution:
        """Where the record's task is in the environment (see the module docstring)."""
        name = self.env.name
        if hints.unresolvable:
            return Resolution(None, reason=hints.unresolvable)
        if hints.env is not None and canonical_env(hints.env) != name:
            return Resolution(None, reason=f"the record is for environment {hints.env!r}, not {name!r}")
        if hints.task_id is not None:
            if hints.task_id in self._known:
                return Resolution(hints.task_id, "task id")
            return Resolution(None, reason=f"{name} has no task {hints.task_id!r}")
        if hints.scienceworld is not None:
            return self._scienceworld(*hints.scienceworld)
        instruction = instruction_in(first_observation)
        if hints.session is not None:
            task_id = f"{name}_{hints.session}"
            # The price clause is left out of the comparison: its threshold differs between
            # WebShop processes, and the session index is the better evidence of the two.
            if task_id in self._known and (
                instruction is None or without_price(self._instruction_of(task_id)) == without_price(instruction)
            ):
                return Resolution(task_id, "session")
            if instruction is None:
                return Resolution(
                    None, reason=f"{name} has no task {task_id!r} and the first observation shows no instruction"
                )
        if instruction is None:
            return Resolution(None, reason="no session index and no instruction in the first observation")
        return self._by_instruction(instruction)

    def _scienceworld(self, task: str | int, variation: int) -> Resolution:
        task_id = scienceworld_task_id(task, variation)
        if task_id is None:
            return Resolution(None, reason=f"ScienceWorld task number {task} is not in ETO's table")
        if task_id not in self._known:
            return Resolution(None, reason=f"{self.env.name} has no task {task_id!r}")
        return Resolution(task_id, "scienceworld task and variation")

    def _instruction_of(self, task_id: str) -> str:
        self.env.reset(task_id)
        return normalize_instruction(self.env.instruction())

    def _by_instruction(self, instruction: str) -> Resolution:
        if self._exact is None:
            self._exact = {}
            for task_id in self.task_ids:
                text = self._instruction_of(task_id)
                self._exact.setdefault(text, []).append(task_id)
                self._loose.setdefault(without_price(text), []).append(task_id)
        for index, how in ((self._exact, "instruction"), (self._loose, "instruction without price")):
            found = index.get(instruction if index is self._exact else without_price(instruction))
            if found:
                return Resolution(found[0], how if len(found) == 1 else f"{how} (first of {len(found)} tasks)")
        return Resolution(None, reason=f"no {self.env.name} task has the instruction {instruction[:80]!r}")
