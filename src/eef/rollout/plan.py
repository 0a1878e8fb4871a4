"""What a rollout is asked for and what it gives: starts, settings, ids, seeds and resume.

Sampling seeds are derived from (seed, task, rollout index, step), never from the batch: the same
start with the same seed gives the same episode alone or in any batch, and a rollout restored at
``s_k`` of an earlier rollout continues exactly as that rollout did.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eef.agent.policy import SamplingParams
from eef.envs.replay import Divergence
from eef.errors import EefError
from eef.trajectory import Trajectory
from eef.trajectory_files import read_trajectories


@dataclass(frozen=True)
class Start:
    """Where an episode begins.

    Attributes:
        task_id: the task.
        prefix: a recorded trajectory of the same task whose first ``step`` turns are replayed.
        start_step: the state of ``prefix`` to start from (0 = ``s0``; recorded as the
            trajectory's ``provenance.start_step``).
        index: the number of this rollout among rollouts from the same state (RFT xK).
    """

    task_id: str
    prefix: Trajectory | None = None
    start_step: int = 0
    index: int = 0

    @property
    def key(self) -> str:
        """A stable name of this start (part of the trajectory id)."""
        origin = f"{self.prefix.id}@{self.start_step}" if self.prefix is not None else "s0"
        return f"{self.task_id}:{origin}:r{self.index}"


@dataclass(frozen=True)
class RolloutConfig:
    """How to roll out.

    Attributes:
        sampling: sampling settings of every model call.
        seed: base seed of the per-request seeds.
        source: the provenance source of the policy's turns.
        iteration: the method iteration recorded in provenance.
    """

    sampling: SamplingParams = SamplingParams()
    seed: int = 0
    source: str = "self"
    iteration: int = 0

    def sampling_record(self) -> dict:
        """The sampling settings and seed as a trajectory's provenance records them."""
        return {**self.sampling.as_dict(), "seed": self.seed}


@dataclass
class RolloutResult:
    """What a batch of rollouts produced.

    Attributes:
        trajectories: finished episodes, in the order of their starts.
        diverged: starts whose prefix did not replay faithfully (never rolled out), with where.
        steps: environment steps taken by the policy (replayed steps not counted).
        model_calls: batched policy calls.
        seconds: wall time.
        env_incidents: what the environments counted in their ``metrics`` during these rollouts
            (ScienceWorld: episodes retried after a JVM died, restored states that diverged).
    """

    trajectories: list[Trajectory] = field(default_factory=list)
    diverged: list[tuple[Start, Divergence]] = field(default_factory=list)
    steps: int = 0
    model_calls: int = 0
    seconds: float = 0.0
    env_incidents: Counter = field(default_factory=Counter)


def put_in_start_order(
    result: RolloutResult,
    finished: Sequence[Trajectory],
    starts: Sequence[Start],
    config: RolloutConfig,
    description: str,
) -> None:
    """Set ``result.trajectories`` to ``finished`` (gathered from several processes, in the order
    they ended) in the order of ``starts``, and sort ``result.diverged`` likewise.

    Raises:
        EefError: the episodes and divergences do not account for every start once (two starts
            with one key collapse into one id).
    """
    order = {trajectory_id(config, s): n for n, s in enumerate(starts)}
    by_number = {order[t.id]: t for t in finished}
    if len(by_number) + len(result.diverged) != len(starts):
        raise EefError(
            f"{description}: {len(starts)} starts gave {len(by_number)} episodes and "
            f"{len(result.diverged)} divergences; starts must have distinct keys"
        )
    result.trajectories = [by_number[n] for n in sorted(by_number)]
    result.diverged.sort(key=lambda pair: order[trajectory_id(config, pair[0])])


def trajectory_id(config: RolloutConfig, start: Start) -> str:
    """The id of the trajectory a start produces under ``config`` (stable across reruns)."""
    return f"{config.source}/it{config.iteration}/{start.key}"


def pending(
    path: Path, starts: Sequence[Start], config: RolloutConfig, model: str | None = None
) -> tuple[list[Trajectory], list[Start]]:
    """Resuming into ``path``: the episodes it already holds and the starts still to run.

    A torn last line (a crash mid-append) is ignored; the next append cuts it.

    Raises:
        EefError: an episode of these starts in ``path`` was sampled otherwise, or by another
            model than ``model`` (when given): reusing it would mix two rollouts in one file.
    """
    if path.exists() and not path.is_file():
        raise EefError(f"{path}: exists and is not a file (it should hold trajectories, one per line)")
    done = read_trajectories(path, skip_torn_tail=True) if path.exists() else []
    ids = {trajectory_id(config, s) for s in starts}
    for trajectory in done:
        reason = rollout_mismatch(trajectory, config, model) if trajectory.id in ids else None
        if reason:
            raise EefError(f"{path}: episode {trajectory.id} {reason}; use another output file (or run directory)")
    held = {t.id for t in done}
    return done, [s for s in starts if trajectory_id(config, s) not in held]


def rollout_mismatch(trajectory: Trajectory, config: RolloutConfig, model: str | None = None) -> str | None:
    """How a recorded episode differs from what a rollout under ``config`` (by ``model``, when
    given) would sample, or None when it is that very episode."""
    recorded = trajectory.provenance
    if recorded.sampling != config.sampling_record():
        return f"was sampled with {recorded.sampling}, this rollout uses {config.sampling_record()}"
    if model is not None and recorded.model != model:
        return f"is of model {recorded.model!r}, this rollout uses {model!r}"
    return None


def request_seed(seed: int, iteration: int, start: Start, step: int) -> int:
    """The sampling seed of turn ``step`` of an episode.

    It does not depend on the batch nor on the state the episode started from: a rollout restored
    at ``s_k`` of an earlier rollout draws the same noise from step ``k`` on, so it repeats it
    (and simulations of one task from different expert states share noise at equal steps).
    """
    digest = hashlib.blake2b(
        f"{seed}|{iteration}|{start.task_id}|{start.index}|{step}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF
