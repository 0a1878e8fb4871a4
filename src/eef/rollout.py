"""Batched rollouts: many environments stepped together, one model call per step for all of them.

Every episode starts from ``s0`` of a task or from state ``s_k`` of a recorded trajectory (its
first ``k`` actions are replayed and checked; the recorded turns stay in the agent's context).
Each step gathers the live episodes' conversations into one batch for the policy, parses each
completion into an action and steps its environment; a finished episode hands its slot to the
next start, so the batch stays full.

Sampling seeds are derived from (seed, task, rollout index, step), never from the batch: the same
start with the same seed gives the same episode alone or in any batch, and a rollout restored at
``s_k`` of an earlier rollout continues exactly as that rollout did.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from eef.agent.parse import parse_turn
from eef.agent.policy import GenerationRequest, Policy, SamplingParams
from eef.envs.protocol import TextEnv
from eef.envs.registry import make
from eef.envs.replay import Divergence, replay
from eef.errors import EefError
from eef.progress import progress_bar
from eef.trajectory import Message, Provenance, Trajectory, Turn, conversation, read_trajectories


@dataclass(frozen=True)
class Start:
    """Where an episode begins.

    Attributes:
        task_id: the task.
        prefix: a recorded trajectory of the same task whose first ``step`` turns are replayed.
        step: the state of ``prefix`` to start from (0 = ``s0``).
        index: the number of this rollout among rollouts from the same state (RFT xK).
    """

    task_id: str
    prefix: Trajectory | None = None
    step: int = 0
    index: int = 0

    @property
    def key(self) -> str:
        """A stable name of this start (part of the trajectory id)."""
        origin = f"{self.prefix.id}@{self.step}" if self.prefix is not None else "s0"
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


def trajectory_id(config: RolloutConfig, start: Start) -> str:
    """The id of the trajectory a start produces under ``config`` (stable across reruns)."""
    return f"{config.source}/it{config.iteration}/{start.key}"


def pending(path: Path, starts: Sequence[Start], config: RolloutConfig,
            model: str | None = None) -> tuple[list[Trajectory], list[Start]]:
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
    digest = hashlib.blake2b(f"{seed}|{iteration}|{start.task_id}|{start.index}|{step}".encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def clone_envs(env: TextEnv, count: int, options: dict | None = None) -> list[TextEnv]:
    """``count`` independent environments like ``env``: forks when it can fork (sharing its
    catalog and index), otherwise fresh ones from the registry with the same options."""
    fork = getattr(env, "fork", None)
    return [env] + [fork() if callable(fork) else make(env.name, **(options or {})) for _ in range(count - 1)]


@contextmanager
def cloned_envs(env: TextEnv, count: int, options: dict | None = None) -> Iterator[list[TextEnv]]:
    """:func:`clone_envs` for one stage: the clones (not ``env``) are closed on exit, since a
    ScienceWorld clone holds a JVM."""
    envs = clone_envs(env, count, options)
    try:
        yield envs
    finally:
        for clone in envs[1:]:
            close = getattr(clone, "close", None)
            if callable(close):
                close()


@dataclass
class _Episode:
    start: Start
    prompt: tuple[Message, ...]
    first_observation: str
    turns: list[Turn]


def _begin(env: TextEnv, start: Start, prompt: tuple[Message, ...]) -> _Episode | Divergence:
    if start.prefix is None:
        return _Episode(start, prompt, env.reset(start.task_id), [])
    prefix = start.prefix
    if prefix.task_id != start.task_id or not 0 <= start.step <= len(prefix.turns):
        raise ValueError(f"start {start.key}: state {start.step} is not a state of {prefix.id} ({prefix.task_id})")
    kept = prefix.turns[: start.step]
    replayed = replay(env, start.task_id, [t.action for t in kept], [t.observation for t in kept],
                      expected_first=prefix.first_observation)
    if replayed.divergence is not None:
        return replayed.divergence
    if replayed.last is not None and replayed.last.done:  # e.g. a longer step limit when it was recorded
        return Divergence(start.step - 1, "(episode continues)", "(episode ended)")
    turns = [replace(t, trainable=False) for t in kept]  # methods decide which expert turns train
    return _Episode(start, prompt, prefix.first_observation, turns)


def _messages(episode: _Episode) -> list[dict[str, str]]:
    return [m.as_chat() for m in conversation(episode.prompt, episode.first_observation, episode.turns)]


def rollout(
    envs: Sequence[TextEnv],
    policy: Policy,
    starts: Sequence[Start],
    prompt: tuple[Message, ...],
    config: RolloutConfig = RolloutConfig(),
    *,
    on_trajectory: Callable[[Trajectory], None] | None = None,
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
            (see :mod:`eef.rollout_workers`); where they cannot fork, this process rolls out.
        worker_timeout_s: with workers, how long a worker may send nothing (no finished episode)
            before it is killed and the rollout fails naming it.

    Returns:
        A :class:`RolloutResult`; trajectories are ordered as ``starts``.
    """
    if workers > 1:
        from eef.rollout_workers import rollout_in_workers

        return rollout_in_workers(workers, envs, policy, starts, prompt, config, on_trajectory=on_trajectory,
                                  progress=progress, description=description,
                                  silence_timeout_s=worker_timeout_s)
    began = time.perf_counter()
    result = RolloutResult()
    before = _env_counters(envs)
    finished: dict[int, Trajectory] = {}
    pending = iter(enumerate(starts))
    slots: list[tuple[int, _Episode] | None] = [None] * len(envs)
    bar = progress_bar(len(starts), description, "ep", progress)

    def fill(slot: int) -> None:
        for number, start in pending:
            begun = _begin(envs[slot], start, prompt)
            if isinstance(begun, Divergence):
                result.diverged.append((start, begun))
                bar.update(1)
                continue
            slots[slot] = (number, begun)
            return
        slots[slot] = None

    forget = getattr(policy, "forget", None)  # backends with per-conversation state free it

    def finish(slot: int, reward: float, terminated: bool) -> None:
        number, episode = slots[slot]  # type: ignore[misc]
        if forget is not None:
            forget(f"{description}:{number}")
        trajectory = _trajectory(envs[slot], episode, reward, terminated, policy.name, config)
        finished[number] = trajectory
        if on_trajectory is not None:
            on_trajectory(trajectory)
        bar.update(1)
        fill(slot)

    for slot in range(len(envs)):
        fill(slot)
    while any(slots):
        live = [s for s, occupant in enumerate(slots) if occupant is not None]
        requests = [GenerationRequest(_messages(slots[s][1]),
                                      request_seed(config.seed, config.iteration, slots[s][1].start,
                                                   len(slots[s][1].turns)),
                                      conversation=f"{description}:{slots[s][0]}")
                    for s in live]
        completions = policy.generate(requests, config.sampling)
        result.model_calls += 1
        for slot, completion in zip(live, completions):
            episode = slots[slot][1]
            action = parse_turn(completion.text).action
            step = envs[slot].step(action)
            result.steps += 1
            episode.turns.append(Turn(completion.text, action, step.observation, step.reward, True))
            if step.done:
                finish(slot, step.reward, step.terminated)
        bar.set_postfix(steps_per_s=f"{result.steps / max(time.perf_counter() - began, 1e-9):.1f}", refresh=False)
    bar.close()
    result.trajectories = [finished[n] for n in sorted(finished)]
    result.env_incidents = _env_counters(envs) - before  # keeps the counts that grew
    result.seconds = time.perf_counter() - began
    return result


def _env_counters(envs: Sequence[TextEnv]) -> Counter:
    """The environments' ``metrics`` counters summed (environments without them add nothing)."""
    total: Counter = Counter()
    for env in envs:
        total.update(getattr(env, "metrics", {}))
    return total


def _trajectory(env: TextEnv, episode: _Episode, reward: float, terminated: bool, model: str,
                config: RolloutConfig) -> Trajectory:
    start = episode.start
    provenance = Provenance(
        source=config.source, iteration=config.iteration, start_step=start.step,
        parent_id=start.prefix.id if start.prefix is not None else None, model=model,
        sampling=config.sampling_record(),
    )
    return Trajectory(
        id=trajectory_id(config, start), env=env.name, task_id=start.task_id,
        prompt=episode.prompt, first_observation=episode.first_observation, turns=tuple(episode.turns),
        reward=reward, success=terminated and env.is_success(reward), terminated=terminated,
        provenance=provenance,
    )
