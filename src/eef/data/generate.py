"""Generate expert trajectories with any policy (``eef expert ENV --policy ...``).

A model expert (an OpenAI-compatible API for GPT-4-class models, a local ``hf`` or ``vllm``
model) plays every task of a split through :func:`eef.rollout.rollout`, concurrently (``len(envs)``
episodes stepped together, one batched policy call per step; the ``openai`` backend keeps
``concurrency`` requests in flight). Every episode is kept, failures included, with the model
name and sampling settings in its provenance and its token counts (and, with prices, its
estimated cost) in ``meta["usage"]``. Episodes are appended as they end, so a restart skips the
finished tasks. A program expert (the oracle, the built-in shop's scripted expert) is played task
by task the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eef.agent.policy import Completion, GenerationRequest, Policy, SamplingParams
from eef.envs.protocol import TextEnv
from eef.progress import progress_bar
from eef.rollout import RolloutConfig, Start, pending, rollout, trajectory_id
from eef.trajectory import Message, Trajectory
from eef.trajectory_files import append_trajectories, read_trajectories

DESCRIPTION = "expert"  # the rollout's progress label; it also names the rollout's conversations
USAGE_KEY = "usage"


@dataclass(frozen=True)
class Prices:
    """Prices of a priced API, in dollars per million tokens."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The estimated cost of that many prompt and completion tokens."""
        return (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6


class UsageMeter(Policy):
    """A policy that passes requests on and counts the tokens of each conversation.

    Args:
        policy: the policy to call.
    """

    def __init__(self, policy: Policy):
        self.policy = policy
        self.name = policy.name
        self._usage: dict[str | None, dict[str, int]] = {}

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Completion]:
        """The inner policy's completions; their token counts are added to each conversation's."""
        completions = self.policy.generate(requests, params)
        for request, completion in zip(requests, completions):
            usage = self._usage.setdefault(
                request.conversation, {"prompt_tokens": 0, "completion_tokens": 0, "model_calls": 0}
            )
            usage["prompt_tokens"] += completion.prompt_tokens
            usage["completion_tokens"] += completion.completion_tokens
            usage["model_calls"] += 1
        return completions

    def forget(self, conversation: str) -> None:
        """Forwarded to the inner policy (the counts are kept)."""
        self.policy.forget(conversation)

    def take(self, conversation: str | None) -> dict[str, int]:
        """The counts of a finished conversation (removed from the meter)."""
        return self._usage.pop(conversation, {"prompt_tokens": 0, "completion_tokens": 0, "model_calls": 0})

    def close(self) -> None:
        """Close the inner policy."""
        self.policy.close()


@dataclass(frozen=True)
class GenerationReport:
    """Figures over every trajectory in the output file (earlier runs included).

    Attributes:
        episodes: trajectories in the file.
        new: trajectories this run added.
        successes: successful ones.
        prompt_tokens: prompt tokens over the file.
        completion_tokens: completion tokens over the file.
        cost: estimated dollars over the file, each episode at the prices it was recorded with
            (one recorded without prices at this run's); None while an episode has no price.
        seconds: this run's wall time.
    """

    episodes: int
    new: int
    successes: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dict(self.__dict__)


def generate_with_policy(
    envs: Sequence[TextEnv],
    policy: Policy,
    task_ids: Sequence[str],
    prompt: tuple[Message, ...],
    out: Path,
    config: RolloutConfig,
    *,
    rollouts: int = 1,
    prices: Prices | None = None,
    progress: bool = False,
) -> GenerationReport:
    """Play every task ``rollouts`` times with a model and append the episodes to ``out``.

    Args:
        envs: independent environments (their count is the number of episodes stepped together).
        policy: the model.
        task_ids: the tasks.
        prompt: the context before the first observation.
        out: the JSONL file to append to; tasks it already holds are skipped.
        config: sampling, seed and the provenance source (ids are ``{source}/it0/{task}:s0:r{k}``).
        rollouts: episodes per task (each with its own seeds).
        prices: per-million-token prices, for the cost estimate.
        progress: show a progress bar.
    """
    began = time.perf_counter()
    starts = [Start(t, index=k) for t in task_ids for k in range(rollouts)]
    _, todo = pending(out, starts, config)
    meter = UsageMeter(policy)
    # The rollout names each episode's conversation "{description}:{its index among the starts}".
    conversation_of = {trajectory_id(config, s): f"{DESCRIPTION}:{n}" for n, s in enumerate(todo)}

    def save(trajectory: Trajectory) -> None:
        usage: dict[str, Any] = meter.take(conversation_of[trajectory.id])
        if prices is not None:
            usage["cost"] = prices.cost(usage["prompt_tokens"], usage["completion_tokens"])
        append_trajectories(out, [replace(trajectory, meta={**trajectory.meta, USAGE_KEY: usage})])

    if todo:
        rollout(envs, meter, todo, prompt, config, on_trajectory=save, progress=progress, description=DESCRIPTION)
    return _report(out, len(todo), prices, time.perf_counter() - began)


def generate_with_program(
    env: TextEnv,
    expert: Callable[[TextEnv, str, tuple[Message, ...]], Trajectory],
    task_ids: Sequence[str],
    prompt: tuple[Message, ...],
    out: Path,
    *,
    source: str,
    progress: bool = False,
) -> GenerationReport:
    """Play every task with a program expert (ids ``{source}/{task}``) and append to ``out``.

    Args:
        env: the environment.
        expert: plays one task: ``(env, task_id, prompt) -> trajectory``.
        task_ids: the tasks.
        prompt: the context stored with each trajectory.
        out: the JSONL file to append to; tasks it already holds are skipped.
        source: the provenance source and id prefix.
        progress: show a progress bar.
    """
    began = time.perf_counter()
    done = {t.id for t in read_trajectories(out, skip_torn_tail=True)} if out.exists() else set()
    todo = [t for t in task_ids if f"{source}/{t}" not in done]
    bar = progress_bar(len(todo), DESCRIPTION, "ep", progress)
    for task_id in todo:
        trajectory = expert(env, task_id, prompt)
        append_trajectories(
            out,
            [replace(trajectory, id=f"{source}/{task_id}", provenance=replace(trajectory.provenance, source=source))],
        )
        bar.update(1)
    bar.close()
    return _report(out, len(todo), None, time.perf_counter() - began)


def _report(out: Path, new: int, prices: Prices | None, seconds: float) -> GenerationReport:
    trajectories = read_trajectories(out, skip_torn_tail=True) if out.exists() else []
    usage = [t.meta.get(USAGE_KEY, {}) for t in trajectories]
    costs = [_episode_cost(u, prices) for u in usage]
    return GenerationReport(
        episodes=len(trajectories),
        new=new,
        successes=sum(t.success for t in trajectories),
        prompt_tokens=sum(u.get("prompt_tokens", 0) for u in usage),
        completion_tokens=sum(u.get("completion_tokens", 0) for u in usage),
        cost=None if None in costs else sum(c for c in costs if c is not None),
        seconds=seconds,
    )


def _episode_cost(usage: dict[str, Any], prices: Prices | None) -> float | None:
    """An episode's cost at the prices it was recorded with; one recorded without at ``prices``."""
    if "cost" in usage:
        return usage["cost"]
    if prices is None:
        return None
    return prices.cost(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
