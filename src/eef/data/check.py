"""Check expert trajectories by replay (``eef data check``).

Each trajectory's actions are replayed in its environment with the same test state restoration
uses (:func:`eef.envs.replay.replay`: the observation after reset and after every action must
match, by the environment's ``observations_match``), then the final reward is compared with the
recorded one. The outcome goes into ``meta["replay"]``::

    {"ok": false, "reason": "observation", "divergence_step": 3, "expected": "...", "seen": "...",
     "recorded_reward": 1.0, "replayed_reward": null}

``ok`` is false for any mismatch; such a trajectory must not be used for state restoration (its
states are not the recorded ones, or its outcome is not). ``divergence_step`` is the index of the
action whose observation differed (-1: the observation after reset). An empty recorded final
observation (ETO's files end with the last action) is not compared. Whether the replayed
episode ended is not compared either: published records do not say whether a failure ran out of
steps, and its states are restorable all the same.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from eef.envs.protocol import TextEnv
from eef.envs.replay import replay
from eef.errors import UnknownNameError
from eef.trajectory import Trajectory

META_KEY = "replay"
REWARD_TOLERANCE = 1e-3  # published rewards are often rounded to a few decimals


@dataclass(frozen=True)
class ReplayCheck:
    """The outcome of replaying one trajectory.

    Attributes:
        ok: every observation, the final reward and the success flag matched.
        reason: '' when ok; else ``env`` (another environment's trajectory), ``task`` (a task the
            environment lacks), ``observation``, ``ended early`` (the episode ended before the
            recorded actions ran out), ``reward`` or ``success`` (the record's success flag is not
            what the environment makes of the reward).
        divergence_step: the action whose observation differed (-1: after reset), or None.
        expected: the recorded observation (or outcome) that was not reproduced.
        seen: what the environment produced instead.
        recorded_reward: the trajectory's final reward.
        replayed_reward: the reward the replay ended with (None when it did not get there).
    """

    ok: bool
    reason: str = ""
    divergence_step: int | None = None
    expected: str | None = None
    seen: str | None = None
    recorded_reward: float = 0.0
    replayed_reward: float | None = None

    def as_meta(self) -> dict[str, Any]:
        """The ``meta["replay"]`` dict."""
        return {
            "ok": self.ok,
            "reason": self.reason,
            "divergence_step": self.divergence_step,
            "expected": self.expected,
            "seen": self.seen,
            "recorded_reward": self.recorded_reward,
            "replayed_reward": self.replayed_reward,
        }


def check_trajectory(
    env: TextEnv, trajectory: Trajectory, *, reward_tolerance: float = REWARD_TOLERANCE
) -> ReplayCheck:
    """Replay ``trajectory`` in ``env`` and compare observations and reward with the record."""
    recorded = trajectory.reward
    if trajectory.env != env.name:
        return ReplayCheck(False, "env", expected=trajectory.env, seen=env.name, recorded_reward=recorded)
    turns = trajectory.turns
    expected = [t.observation for t in turns]
    try:
        result = replay(
            env, trajectory.task_id, [t.action for t in turns], expected, expected_first=trajectory.first_observation
        )
    except UnknownNameError as e:  # a task id the environment does not have; other failures (a JVM that
        # keeps dying) stop the check instead of flagging every trajectory
        return ReplayCheck(False, "task", expected=trajectory.task_id, seen=str(e), recorded_reward=recorded)
    divergence = result.divergence
    # ``turns`` first: with no turns, step -1 is the page after reset, which is always compared.
    unrecorded_end = (
        divergence is not None
        and bool(turns)
        and divergence.step == len(turns) - 1
        and not expected[-1]
        and result.steps == len(turns)
    )
    if divergence is not None and not unrecorded_end:
        reason = "ended early" if divergence.seen == "(episode ended)" else "observation"
        return ReplayCheck(False, reason, divergence.step, divergence.expected, divergence.seen, recorded)
    last = result.last
    reward = last.reward if last is not None else 0.0
    if not math.isclose(reward, recorded, abs_tol=reward_tolerance):
        return ReplayCheck(False, "reward", len(turns) - 1, f"{recorded:g}", f"{reward:g}", recorded, reward)
    success = env.is_success(reward)
    if trajectory.success != success:  # a record whose success flag contradicts its own reward
        seen = f"success {success} (reward {reward:g})"
        return ReplayCheck(False, "success", len(turns) - 1, f"success {trajectory.success}", seen, recorded, reward)
    return ReplayCheck(True, recorded_reward=recorded, replayed_reward=reward)


@dataclass
class CheckSummary:
    """Counts over a checked file.

    Attributes:
        checked: trajectories replayed.
        ok: those that matched.
        reasons: flagged trajectories per reason.
        by_step: observation divergences per step (-1: after reset).
    """

    checked: int = 0
    ok: int = 0
    reasons: Counter = field(default_factory=Counter)
    by_step: Counter = field(default_factory=Counter)

    @property
    def flagged(self) -> int:
        """Trajectories that did not replay faithfully."""
        return self.checked - self.ok

    def add(self, check: ReplayCheck) -> None:
        """Count one trajectory's outcome."""
        self.checked += 1
        self.ok += check.ok
        if not check.ok:
            self.reasons[check.reason] += 1
            if check.reason == "observation":
                self.by_step[check.divergence_step] += 1

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "checked": self.checked,
            "ok": self.ok,
            "flagged": self.flagged,
            "reasons": dict(self.reasons),
            "divergence_steps": {str(k): v for k, v in sorted(self.by_step.items())},
        }


def check_trajectories(
    env: TextEnv,
    trajectories: Iterable[Trajectory],
    summary: CheckSummary,
    *,
    reward_tolerance: float = REWARD_TOLERANCE,
) -> Iterator[Trajectory]:
    """Each trajectory with ``meta["replay"]`` set, counting outcomes into ``summary`` as it goes."""
    for trajectory in trajectories:
        check = check_trajectory(env, trajectory, reward_tolerance=reward_tolerance)
        summary.add(check)
        yield replace(trajectory, meta={**trajectory.meta, META_KEY: check.as_meta()})


def restorable(trajectory: Trajectory) -> bool:
    """Whether a trajectory may be used for state restoration: not flagged by ``eef data check``
    (an unchecked trajectory counts as restorable; the rollout's replay still guards it)."""
    return trajectory.meta.get(META_KEY, {}).get("ok", True) is not False
