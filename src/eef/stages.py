"""The work of each stage, one function each, shared by ``eef run`` and the single commands.

``eef explore``, ``eef train`` and ``eef eval`` call the same functions as the pipeline's stages
(:mod:`eef.pipeline` adds the run directory's markers and records): one rule for loading a
model, cloning environments and closing what was opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eef.agent.card import AgentCard, card_of_trajectories, read_agent_card
from eef.agent.policy import Policy
from eef.config import ModelSection
from eef.envs.protocol import TextEnv
from eef.evaluate import EvalReport, evaluate
from eef.rollout import (
    LocalRollouts,
    RolloutConfig,
    RolloutResult,
    Rollouts,
    Start,
    cloned_envs,
    pending,
    trajectory_id,
)
from eef.rollout.cluster import RayConfig
from eef.tracking import Tracking
from eef.train.settings import TrainConfig
from eef.trajectory import Message, Trajectory
from eef.trajectory_files import append_trajectories

if TYPE_CHECKING:  # training needs torch; exploring with a server does not
    from eef.train.data import TokenizeStats
    from eef.train.trainer import TrainResult


@dataclass(frozen=True)
class Parallelism:
    """How many episodes run together: ``num_envs`` environments stepped as one batch, shared by
    ``workers`` forked processes, each killed after ``worker_timeout_s`` seconds of silence; or,
    with ``ray``, shared by that many Ray actors (:mod:`eef.rollout.cluster`)."""

    num_envs: int = 16
    workers: int = 1
    worker_timeout_s: float = 1800.0
    ray: RayConfig | None = None


def open_policy(model: ModelSection, checkpoint: str | Path) -> Policy:
    """The policy of ``checkpoint`` (a directory, hub id or served model name) run as ``model`` says;
    use it as a context manager, which closes it."""
    from eef.agent.backends import build_policy

    return build_policy(
        model.backend,
        str(checkpoint),
        base_url=model.base_url,
        device=model.device,
        dtype=model.dtype,
        max_batch_size=model.max_batch_size,
        decode=model.decode,
        concurrency=model.concurrency,
        api_key_env=model.api_key_env,
        timeout_s=model.request_timeout_s,
        max_retries=model.max_retries,
        max_backoff_s=model.max_backoff_s,
        server_command=model.server_command,
        server_start_timeout_s=model.server_start_timeout_s,
    )


@contextmanager
def open_rollouts(
    env: TextEnv, env_options: Mapping[str, Any], model: ModelSection, checkpoint: str | Path, parallel: Parallelism
) -> Iterator[Rollouts]:
    """The engine ``parallel`` asks for, ready to roll out ``checkpoint`` in clones of ``env``;
    what it opened (policy, environments, actors) is closed on exit."""
    if parallel.ray is None:
        with open_policy(model, checkpoint) as policy, cloned_envs(env, parallel.num_envs, env_options) as envs:
            yield LocalRollouts(envs, policy, parallel.workers, parallel.worker_timeout_s)
        return
    from eef.rollout.cluster import check_endpoints, ray_rollouts

    settings = parallel.ray
    if model.backend == "openai":  # a server may have gone since the run began
        check_endpoints(settings, model.base_url)

    def actor_policy(actor: int) -> Policy:  # runs in the actor: its endpoint, or the checkpoint on its device
        return open_policy(replace(model, base_url=settings.endpoint(actor, model.base_url)), checkpoint)

    with ray_rollouts(settings, env, env_options, parallel.num_envs, actor_policy) as rollouts:
        yield rollouts


def explore(
    env: TextEnv,
    env_options: Mapping[str, Any],
    model: ModelSection,
    checkpoint: str | Path,
    starts: Sequence[Start],
    prompt: tuple[Message, ...],
    config: RolloutConfig,
    out: Path,
    parallel: Parallelism,
    *,
    description: str = "explore",
    reuse: Mapping[str, Trajectory] | None = None,
) -> RolloutResult:
    """Roll out ``checkpoint`` from ``starts`` into ``out``, appending each episode as it ends; the
    episodes ``out`` already holds are kept (resume) and those of ``reuse`` (by id) are copied
    instead of sampled again. Returns what this call rolled out (nothing when all were done)."""
    _, todo = pending(out, starts, config, model=str(checkpoint))
    if reuse:
        append_trajectories(out, [reuse[i] for i in (trajectory_id(config, s) for s in todo) if i in reuse])
        todo = [s for s in todo if trajectory_id(config, s) not in reuse]
    if not todo:
        return RolloutResult()
    with open_rollouts(env, env_options, model, checkpoint, parallel) as rollouts:
        return rollouts(
            todo,
            prompt,
            config,
            on_trajectory=lambda t: append_trajectories(out, [t]),
            progress=True,
            description=description,
        )


def evaluate_checkpoint(
    env: TextEnv,
    env_options: Mapping[str, Any],
    model: ModelSection,
    checkpoint: str | Path,
    tasks: Sequence[str],
    prompt: tuple[Message, ...],
    out_dir: Path,
    parallel: Parallelism,
    *,
    split: str,
    max_new_tokens: int,
    temperature: float,
    seed: int,
) -> EvalReport:
    """Evaluate ``checkpoint`` on ``tasks`` into ``out_dir`` (see :func:`eef.evaluate.evaluate`)."""
    with open_rollouts(env, env_options, model, checkpoint, parallel) as rollouts:
        return evaluate(
            rollouts,
            tasks,
            prompt,
            split=split,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            out_dir=out_dir,
            progress=True,
        )


def training_dtype(dtype: str, lora: bool, device: str = "auto") -> str:
    """The weights' dtype for training: ``auto`` is bfloat16 for LoRA on CUDA (the frozen base in half
    precision), otherwise float32 master weights (mixed precision autocasts the compute)."""
    if dtype != "auto":
        return dtype
    from eef.models.loading import pick_device

    return "bfloat16" if lora and pick_device(device).type == "cuda" else "float32"


def train_checkpoint(
    start: str | Path,
    data: Sequence[Trajectory],
    out: Path,
    config: TrainConfig,
    *,
    device: str = "auto",
    dtype: str = "auto",
    card: AgentCard | None = None,
    metadata: Mapping[str, Any] | None = None,
    heldout: Sequence[Trajectory] = (),
    log: Callable[[str], None] | None = None,
    tracking: Tracking | None = None,
) -> tuple[TrainResult, TokenizeStats]:
    """Masked SFT of ``start`` on ``data`` into the checkpoint ``out``; returns what training did
    and what tokenization did; ``tracking``: where each step's loss and learning rate go.

    The checkpoint records ``card`` (by default the environment and prompt most of ``data``
    shares, with the environment options of ``start``'s card where it has one for that environment).

    ``log`` receives the tokenization's figures and, with ``heldout`` trajectories, their loss
    before and after training.

    Raises:
        EefError: no turn of ``data`` is trainable.
    """
    from eef.errors import EefError
    from eef.train import tokenize_trajectories, train
    from eef.train.trainer import evaluate_loss, pad_token_id

    say = log or (lambda line: None)
    model, tokenizer = _training_model(start, config, device, dtype)
    examples, stats = tokenize_trajectories(list(data), tokenizer, config.max_length)
    say(
        f"{stats.examples} examples ({stats.trained_tokens:,} of {stats.tokens:,} tokens train); "
        f"{stats.truncated} cut at {config.max_length} tokens, {stats.dropped} dropped with nothing to train"
    )
    if not examples:
        raise EefError(f"no turn of the {len(data)} trajectories to train on is trainable")
    card = _checkpoint_card(start, data, card, say)
    held = tokenize_trajectories(list(heldout), tokenizer, config.max_length)[0] if heldout else []
    if held:
        say(f"held-out loss before: {evaluate_loss(model, held, pad_token_id(tokenizer)):.4f}")
    result = train(
        model,
        tokenizer,
        examples,
        out,
        config,
        progress=True,
        metadata={**(metadata or {}), "agent": card.to_dict(), "tokenize": stats.__dict__},
        device=device,
        tracking=tracking,
    )
    if held:
        say(f"held-out loss after: {evaluate_loss(model, held, pad_token_id(tokenizer)):.4f}")
    return result, stats


def train_preference_checkpoint(
    start: str | Path,
    pairs: Sequence[tuple[Trajectory, Trajectory]],
    out: Path,
    config: TrainConfig,
    *,
    beta: float,
    device: str = "auto",
    dtype: str = "auto",
    card: AgentCard | None = None,
    metadata: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    tracking: Tracking | None = None,
) -> tuple[TrainResult, TokenizeStats]:
    """DPO of ``start`` on (chosen, rejected) ``pairs`` into the checkpoint ``out``, with ``start``
    as the reference (:mod:`eef.train.preference`); ``config``'s batch sizes count pairs. Returns
    what training did and what tokenization did (``examples``: the pairs kept).

    Raises:
        EefError: no pair has a trainable turn on both sides.
    """
    from eef.errors import EefError
    from eef.train.preference import DirectPreference, tokenize_pairs
    from eef.train.trainer import fit, pad_token_id

    say = log or (lambda line: None)
    model, tokenizer = _training_model(start, config, device, dtype)
    tokenized, stats = tokenize_pairs(pairs, tokenizer, config.max_length)
    say(
        f"{stats.examples} pairs ({stats.trained_tokens:,} of {stats.tokens:,} tokens count); "
        f"{stats.truncated} conversations cut at {config.max_length} tokens, {stats.dropped} pairs dropped "
        "with nothing to compare"
    )
    if not tokenized:
        raise EefError(f"none of the {len(pairs)} preference pairs has a trainable turn on both sides")
    card = _checkpoint_card(start, [t for pair in pairs for t in pair], card, say)
    result = fit(
        model,
        tokenizer,
        DirectPreference(tokenized, beta, pad_token_id(tokenizer), config.micro_batch_rows),
        out,
        config,
        progress=True,
        metadata={**(metadata or {}), "agent": card.to_dict(), "tokenize": stats.__dict__, "dpo_beta": beta},
        device=device,
        tracking=tracking,
    )
    return result, stats


# the training stages a run hands to every process, by objective (:class:`eef.distributed.TrainingGroup`)
TRAINING: dict[str, Callable[..., tuple[TrainResult, TokenizeStats]]] = {
    "sft": train_checkpoint,
    "dpo": train_preference_checkpoint,
}


def _training_model(start: str | Path, config: TrainConfig, device: str, dtype: str) -> tuple[Any, Any]:
    from eef.models.loading import flush_denormals, load_model_and_tokenizer

    flush_denormals()  # before the model's first operation starts torch's threads (eef train)
    # loaded on the CPU: accelerate places the model on each process's device
    return load_model_and_tokenizer(
        str(start), device="cpu", dtype=training_dtype(dtype, config.lora is not None, device)
    )


def _checkpoint_card(
    start: str | Path, data: Sequence[Trajectory], card: AgentCard | None, say: Callable[[str], None]
) -> AgentCard:
    """The card a checkpoint records: ``card``, or the one ``data`` shares with ``start``'s options."""
    shared = card_of_trajectories(data)
    if card is None:
        inherited = read_agent_card(start)
        if inherited is not None and inherited.env == shared.env:
            return replace(shared, env_options=inherited.env_options)
        return shared
    if shared.prompt != card.prompt:  # imported expert files keep the prompt they were recorded with
        say(
            "warning: most training conversations open with another prompt than the one this checkpoint "
            "records (and eef eval uses); check the expert files' prompts"
        )
    return card
