"""Restore an intermediate state of a recorded trajectory by replaying its actions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eef.envs.protocol import StepResult, TextEnv


@dataclass(frozen=True)
class Divergence:
    """The first replayed step whose observation differs from the recorded one.

    Attributes:
        step: 0-based index of the action whose observation diverged; -1 for the observation
            after reset.
        expected: the recorded observation.
        seen: the observation the environment produced.
    """

    step: int
    expected: str
    seen: str


@dataclass(frozen=True)
class ReplayResult:
    """Outcome of :func:`replay`.

    Attributes:
        observation: the environment's observation after the last replayed action (or after reset).
        steps: how many actions were applied.
        divergence: the first mismatch, or None when every observation matched.
        last: the last step's result, or None when no action was replayed.
    """

    observation: str
    steps: int
    divergence: Divergence | None
    last: StepResult | None

    @property
    def ok(self) -> bool:
        """True when the replay reproduced every recorded observation."""
        return self.divergence is None


def replay(
    env: TextEnv,
    task_id: str,
    actions: Sequence[str],
    expected_observations: Sequence[str] | None = None,
    *,
    expected_first: str | None = None,
    stop_at_divergence: bool = True,
) -> ReplayResult:
    """Reset ``task_id`` and apply ``actions``, checking each observation against the record.

    ``expected_observations[i]`` is the observation recorded after ``actions[i]``; pass None to
    replay without checking; ``expected_first`` is the recorded observation after reset (checked
    when given). The environment decides what counts as the same observation
    (:meth:`TextEnv.observations_match`), so e.g. ScienceWorld can ignore listing order.

    Returns:
        A :class:`ReplayResult`; the environment is left in the replayed state (or at the
        divergence when ``stop_at_divergence``).
    """
    if expected_observations is not None and len(expected_observations) != len(actions):
        raise ValueError(
            f"replay needs one expected observation per action: {len(actions)} actions, "
            f"{len(expected_observations)} observations"
        )
    observation = env.reset(task_id)
    last: StepResult | None = None
    divergence: Divergence | None = None
    steps = 0
    if expected_first is not None and not env.observations_match(expected_first, observation):
        divergence = Divergence(-1, expected_first, observation)
        if stop_at_divergence:
            return ReplayResult(observation, 0, divergence, None)
    for i, action in enumerate(actions):
        if last is not None and last.done:
            divergence = divergence or Divergence(i, "(episode continues)", "(episode ended)")
            break
        last = env.step(action)
        observation = last.observation
        steps += 1
        if (
            expected_observations is not None
            and divergence is None
            and not env.observations_match(expected_observations[i], last.observation)
        ):
            divergence = Divergence(i, expected_observations[i], last.observation)
            if stop_at_divergence:
                break
    return ReplayResult(observation, steps, divergence, last)
