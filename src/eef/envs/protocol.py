"""The text-environment protocol every eef environment implements.

An environment holds a fixed set of tasks (one task = one subtask of the EEF paper: a WebShop
instruction, a ScienceWorld task variation), grouped into named splits and addressed by stable
string ids. An episode is ``reset(task_id)`` followed by ``step(action)`` calls until the result
is ``terminated`` (the task is over: bought, completed, failed) or ``truncated`` (the step budget
ran out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from eef.resources import NOTHING, Closable


@dataclass(frozen=True)
class StepResult:
    """What one ``step`` returns.

    Attributes:
        observation: the text the agent sees next.
        reward: the reward of this step (WebShop: non-zero only on purchase).
        terminated: the task is over (success or not); no further step is allowed.
        truncated: the step budget ran out before the task ended.
        info: environment-specific details (e.g. ``valid`` False for an invalid action).
    """

    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """True when the episode is over for either reason."""
        return self.terminated or self.truncated


@runtime_checkable
class TextEnv(Closable, Protocol):
    """A multi-turn text environment.

    ``max_steps`` is the number of ``step`` calls after which an episode is truncated.
    ``snapshot``/``restore`` may raise ``NotImplementedError`` when ``supports_snapshot`` is False;
    state restoration then goes through :func:`eef.envs.replay`.

    Subclass it (as Gymnasium's ``Env``) to get the defaults of the optional parts: ``close`` and
    ``with env:``; ``process_local = True`` when the environment holds nothing outside this
    process (no JVM, socket or server), so forked rollout workers may step copies of it;
    ``info``, settings to record (``skipped_<what>``: reason -> count of records dropped while
    loading, printed by :func:`skipped_notes`); ``metrics``, counters summed into each stage's record; and the
    agent's default prompt text, ``agent_instruction`` and ``agent_example`` (a tuple of
    (observation, thought, action)).
    """

    name: str
    max_steps: int
    supports_snapshot: bool
    process_local: bool = False
    info: Mapping[str, Any] = NOTHING
    metrics: Mapping[str, int] = NOTHING
    agent_instruction: str | None = None
    agent_example: tuple[tuple[str, str, str], ...] | None = None

    def splits(self) -> list[str]:
        """Names of the task splits, e.g. ``["train", "dev", "test"]``."""
        ...

    def task_ids(self, split: str) -> list[str]:
        """Stable task ids of a split, in a fixed order."""
        ...

    def reset(self, task_id: str) -> str:
        """Start an episode of ``task_id`` and return the first observation."""
        ...

    def step(self, action: str) -> StepResult:
        """Apply one action. An invalid action is answered with an observation, never an exception."""
        ...

    def available_actions(self) -> list[str]:
        """Actions that are valid in the current state, as action strings."""
        ...

    def instruction(self) -> str:
        """The natural-language goal of the current episode."""
        ...

    def is_success(self, reward: float) -> bool:
        """Whether a final reward counts as solving the task."""
        ...

    def observations_match(self, expected: str, seen: str) -> bool:
        """Whether two observations show the same state (used by replay)."""
        ...

    def snapshot(self) -> Any:
        """An opaque copy of the current episode state."""
        ...

    def restore(self, snapshot: Any) -> None:
        """Return to a state taken by :meth:`snapshot`."""
        ...


@runtime_checkable
class SupportsOracle(Protocol):
    """An environment that can name a perfect next action (used by ``eef env verify``)."""

    def oracle_action(self) -> str:
        """The action a perfect agent takes in the current state."""
        ...


@runtime_checkable
class SupportsTaskGroups(Protocol):
    """An environment whose tasks fall into named groups that results are broken down by (the
    generated shop's difficulty tiers, ScienceWorld's task types)."""

    def task_group(self, task_id: str) -> str | None:
        """The group of ``task_id``; None where the task has none."""
        ...


def task_groups(env: TextEnv, task_ids: Iterable[str]) -> dict[str, str]:
    """The group of each of ``task_ids`` that has one (none when ``env`` has no task groups)."""
    if not isinstance(env, SupportsTaskGroups):
        return {}
    return {t: group for t in task_ids if (group := env.task_group(t)) is not None}


@runtime_checkable
class SupportsFork(Protocol):
    """An environment that makes a second one cheaply (sharing read-only data such as a catalog
    or a JVM pool) for parallel episodes; others are built again from the registry."""

    def fork(self) -> TextEnv:
        """Another environment with the same settings and an episode of its own."""
        ...


def skipped_notes(env: TextEnv) -> list[str]:
    """A line per reason the environment skipped records while loading, from ``info``'s
    ``skipped_<what>`` entries: ``webshop: 13 human instructions skipped (names a product not in
    the catalog)``."""
    notes = []
    for key, reasons in env.info.items():
        if key.startswith("skipped_") and isinstance(reasons, Mapping):
            what = key.removeprefix("skipped_").replace("_", " ")
            notes += [f"{env.name}: {count} {what} skipped ({reason})" for reason, count in reasons.items()]
    return notes
