"""Rollouts: episodes of a policy in text environments, from ``s0`` or from a recorded state.

:mod:`eef.rollout.plan` says what to roll out (starts, settings, ids, per-request seeds, resume),
:mod:`eef.rollout.serial` steps a batch of environments in this process,
:mod:`eef.rollout.workers` shares a rollout among forked processes, and :func:`rollout` chooses;
:mod:`eef.rollout.cluster` rolls out in Ray actors instead. A :class:`Rollouts` is either engine,
ready to roll out one policy in one environment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from eef.agent.policy import Policy
from eef.envs.protocol import TextEnv
from eef.rollout.envs import clone_envs, cloned_envs
from eef.rollout.plan import RolloutConfig, RolloutResult, Start, pending, request_seed, rollout_mismatch, trajectory_id
from eef.rollout.serial import rollout_in_process
from eef.rollout.workers import can_fork, rollout_in_workers
from eef.trajectory import Message, Trajectory

__all__ = [
    "LocalRollouts",
    "RolloutConfig",
    "RolloutResult",
    "Rollouts",
    "Start",
    "clone_envs",
    "cloned_envs",
    "pending",
    "request_seed",
    "rollout",
    "rollout_mismatch",
    "trajectory_id",
]


def rollout(
    envs: Sequence[TextEnv],
    policy: Policy,
    starts: Sequence[Start],
    prompt: tuple[Message, ...],
    config: RolloutConfig = RolloutConfig(),
    *,
    on_trajectory: Callable[[Trajectory], object] | None = None,
    progress: bool = False,
    description: str = "rollout",
    workers: int = 1,
    worker_timeout_s: float = 1800.0,
) -> RolloutResult:
    """Run one episode per start, ``len(envs)`` at a time, with one policy call per step.

    Args:
        envs: independent environments (see :func:`clone_envs`); their count is the batch width.
        policy: the model.
        starts: where each episode begins.
        prompt: the context before the first observation (see :func:`eef.agent.build_prompt`).
        config: sampling, seed and provenance.
        on_trajectory: called with each finished trajectory as soon as it ends (to save it).
        progress: show a progress bar on stderr.
        description: the progress bar's label.
        workers: forked single-threaded processes that share the starts and the environments
            (see :mod:`eef.rollout.workers`); where they cannot fork, this process rolls out.
        worker_timeout_s: with workers, how long a worker may send nothing (no finished episode)
            before it is killed and the rollout fails naming it.

    Returns:
        A :class:`RolloutResult`; trajectories are ordered as ``starts``.
    """
    workers = min(workers, len(envs), len(starts))
    if workers > 1 and can_fork(envs, policy):
        return rollout_in_workers(
            workers,
            envs,
            policy,
            starts,
            prompt,
            config,
            on_trajectory=on_trajectory,
            progress=progress,
            description=description,
            silence_timeout_s=worker_timeout_s,
        )
    return rollout_in_process(
        envs, policy, starts, prompt, config, on_trajectory=on_trajectory, progress=progress, description=description
    )


class Rollouts(Protocol):
    """An engine ready to roll out one policy in one environment: ``env`` names the environment
    (and answers questions about its tasks), ``model`` is the policy's name in provenance."""

    @property
    def env(self) -> TextEnv: ...

    @property
    def model(self) -> str: ...

    def __call__(
        self,
        starts: Sequence[Start],
        prompt: tuple[Message, ...],
        config: RolloutConfig,
        *,
        on_trajectory: Callable[[Trajectory], object] | None = None,
        progress: bool = False,
        description: str = "rollout",
    ) -> RolloutResult:
        """One episode per start, as :func:`rollout` (trajectories in the order of ``starts``)."""
        ...


@dataclass
class LocalRollouts:
    """The local engine: :func:`rollout` with these environments, policy and workers."""

    envs: Sequence[TextEnv]
    policy: Policy
    workers: int = 1
    worker_timeout_s: float = 1800.0

    @property
    def env(self) -> TextEnv:
        return self.envs[0]

    @property
    def model(self) -> str:
        return self.policy.name

    def __call__(
        self,
        starts: Sequence[Start],
        prompt: tuple[Message, ...],
        config: RolloutConfig,
        *,
        on_trajectory: Callable[[Trajectory], object] | None = None,
        progress: bool = False,
        description: str = "rollout",
    ) -> RolloutResult:
        return rollout(
            self.envs,
            self.policy,
            starts,
            prompt,
            config,
            on_trajectory=on_trajectory,
            progress=progress,
            description=description,
            workers=self.workers,
            worker_timeout_s=self.worker_timeout_s,
        )
