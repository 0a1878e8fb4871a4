"""Batched rollouts in this process: many environments stepped together, one model call per step.

Every episode starts from ``s0`` of a task or from state ``s_k`` of a recorded trajectory (its
first ``k`` actions are replayed and checked; the recorded turns stay in the agent's context).
Each step gathers the live episodes' conversations into one batch for the policy, parses each
completion into an action and steps its environment; a finished episode hands its slot to the
next start, so the batch stays full.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace

from eef.agent.parse import parse_turn
from eef.agent.policy import GenerationRequest, Policy
from eef.envs.protocol import TextEnv
from eef.envs.replay import Divergence, replay
from eef.progress import progress_bar
from eef.rollout.plan import RolloutConfig, RolloutResult, Start, request_seed, trajectory_id
from eef.trajectory import Message, Provenance, Trajectory, Turn, conversation


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
    if prefix.task_id != start.task_id or not 0 <= start.start_step <= len(prefix.turns):
        raise ValueError(
            f"start {start.key}: state {start.start_step} is not a state of {prefix.id} ({prefix.task_id})"
        )
    kept = prefix.turns[: start.start_step]
    replayed = replay(
        env,
        start.task_id,
        [t.action for t in kept],
        [t.observation for t in kept],
        expected_first=prefix.first_observation,
    )
    if replayed.divergence is not None:
        return replayed.divergence
    if replayed.last is not None and replayed.last.done:  # e.g. a longer step limit when it was recorded
        return Divergence(start.start_step - 1, "(episode continues)", "(episode ended)")
    turns = [replace(t, trainable=False) for t in kept]  # methods decide which expert turns train
    return _Episode(start, prompt, prefix.first_observation, turns)


def _messages(episode: _Episode) -> list[dict[str, str]]:
    return [m.as_chat() for m in conversation(episode.prompt, episode.first_observation, episode.turns)]


def rollout_in_process(
    envs: Sequence[TextEnv],
    policy: Policy,
    starts: Sequence[Start],
    prompt: tuple[Message, ...],
    config: RolloutConfig,
    *,
    on_trajectory: Callable[[Trajectory], object] | None = None,
    progress: bool = False,
    description: str = "rollout",
) -> RolloutResult:
    """:func:`eef.rollout.rollout` in this process, ``len(envs)`` episodes at a time."""
    episodes = stream_in_process(envs, policy, starts, prompt, config, progress=progress, description=description)
    while True:
        try:
            trajectory = next(episodes)
        except StopIteration as end:
            return end.value
        if on_trajectory is not None:
            on_trajectory(trajectory)


def stream_in_process(
    envs: Sequence[TextEnv],
    policy: Policy,
    starts: Sequence[Start],
    prompt: tuple[Message, ...],
    config: RolloutConfig,
    *,
    progress: bool = False,
    description: str = "rollout",
) -> Generator[Trajectory, None, RolloutResult]:
    """:func:`rollout_in_process` as a generator: it yields each trajectory as its episode ends and
    returns the :class:`RolloutResult` (for a Ray actor, which streams what it yields)."""
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

    def finish(slot: int, reward: float, terminated: bool) -> Trajectory:
        number, episode = slots[slot]  # type: ignore[misc]
        policy.forget(f"{description}:{number}")
        trajectory = _trajectory(envs[slot], episode, reward, terminated, policy.name, config)
        finished[number] = trajectory
        bar.update(1)
        fill(slot)
        return trajectory

    for slot in range(len(envs)):
        fill(slot)
    while any(slots):
        live = [(s, occupant) for s, occupant in enumerate(slots) if occupant is not None]
        requests = [
            GenerationRequest(
                _messages(episode),
                request_seed(config.seed, config.iteration, episode.start, len(episode.turns)),
                conversation=f"{description}:{number}",
            )
            for _, (number, episode) in live
        ]
        completions = policy.generate(requests, config.sampling)
        result.model_calls += 1
        for (slot, (_, episode)), completion in zip(live, completions):
            action = parse_turn(completion.text).action
            step = envs[slot].step(action)
            result.steps += 1
            episode.turns.append(Turn(completion.text, action, step.observation, step.reward, True))
            if step.done:
                yield finish(slot, step.reward, step.terminated)
        bar.set_postfix(steps_per_s=f"{result.steps / max(time.perf_counter() - began, 1e-9):.1f}", refresh=False)
    bar.close()
    result.trajectories = [finished[n] for n in sorted(finished)]
    result.env_incidents = _env_counters(envs) - before  # keeps the counts that grew
    result.seconds = time.perf_counter() - began
    return result


def _env_counters(envs: Sequence[TextEnv]) -> Counter:
    """The environments' ``metrics`` counters summed."""
    total: Counter = Counter()
    for env in envs:
        total.update(env.metrics)
    return total


def _trajectory(
    env: TextEnv, episode: _Episode, reward: float, terminated: bool, model: str, config: RolloutConfig
) -> Trajectory:
    start = episode.start
    provenance = Provenance(
        source=config.source,
        iteration=config.iteration,
        start_step=start.start_step,
        parent_id=start.prefix.id if start.prefix is not None else None,
        model=model,
        sampling=config.sampling_record(),
    )
    return Trajectory(
        id=trajectory_id(config, start),
        env=env.name,
        task_id=start.task_id,
        prompt=episode.prompt,
        first_observation=episode.first_observation,
        turns=tuple(episode.turns),
        reward=reward,
        success=terminated and env.is_success(reward),
        terminated=terminated,
        provenance=provenance,
    )
