"""The training loop: masked multi-turn SFT (or another :class:`Objective`, such as DPO) with
accelerate, full fine-tuning or LoRA.

One readable loop (nanoGPT's spirit) over an objective's items: packed rows for SFT, preference
pairs for DPO (:mod:`eef.train.preference`). accelerate supplies the device, mixed precision and
multi-GPU (DDP, FSDP or DeepSpeed from the config files in ``configs/accelerate``:
``accelerate launch --config_file configs/accelerate/fsdp.yaml -m eef train ...``). The loss is
the sum of the items' losses divided by their weight in the optimizer step (SFT: trainable
tokens; DPO: pairs), so gradient accumulation and packing do not change what a token weighs.

The result is a model directory saved with ``save_pretrained`` (LoRA adapters merged unless
asked otherwise), written to a temporary directory and renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from packaging.version import Version
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import __version__ as transformers_version

from eef.errors import EefError
from eef.models.loading import add_lora, pick_device
from eef.models.requirements import checkpoint_requirements, installed_versions
from eef.progress import progress_bar
from eef.tracking import Tracking, open_trackers
from eef.train.data import IGNORE_INDEX, Example, PackedRow, pack_examples
from eef.train.settings import TRAIN_RECORD, TrainConfig

DEFAULT_CONFIG = TrainConfig()


@dataclass
class TrainResult:
    """What a training run did.

    Attributes:
        checkpoint: the saved model directory.
        steps: optimizer steps.
        losses: mean trainable-token loss of each optimizer step.
        tokens: non-padding tokens processed (all epochs, all processes).
        trained_tokens: tokens that carried loss (all epochs).
        seconds: wall time of the loop.
    """

    checkpoint: Path
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    trained_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        """Non-padding tokens per second of the training loop."""
        return self.tokens / self.seconds if self.seconds else 0.0


def rows_for(examples: Sequence[Example], config: TrainConfig) -> list[PackedRow]:
    """Training rows: packed, or one example per row."""
    if config.packing:
        return pack_examples(examples, config.max_length, config.seed)
    return [PackedRow.single(e) for e in examples]


class LengthGroupedBatches(Sampler[list[int]]):
    """Random batches of rows of similar length (transformers' ``group_by_length``).

    Each pass shuffles the rows, sorts every window of ``window`` batches' worth of rows by length,
    cuts it into batches and shuffles the batches. A batch then pads to a length near its rows'
    own, while what a step sees still changes from pass to pass; the order follows ``seed``.

    >>> batches = LengthGroupedBatches([5, 1, 4, 2, 3, 6], batch_rows=2, seed=0, window=3)
    >>> sorted(sorted(b) for b in batches)
    [[0, 5], [1, 3], [2, 4]]
    >>> len(batches)
    3
    """

    def __init__(self, lengths: Sequence[int], batch_rows: int, seed: int, window: int = 16):
        self.lengths, self.batch_rows, self.span = list(lengths), batch_rows, batch_rows * window
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        batches = []
        for start in range(0, len(order), self.span):
            window = sorted(order[start : start + self.span], key=self.lengths.__getitem__, reverse=True)
            batches += [window[i : i + self.batch_rows] for i in range(0, len(window), self.batch_rows)]
        yield from (batches[i] for i in torch.randperm(len(batches), generator=self.generator).tolist())

    def __len__(self) -> int:
        n = len(self.lengths)
        return sum(math.ceil(min(self.span, n - start) / self.batch_rows) for start in range(0, n, self.span))


def collate(rows: Sequence[PackedRow], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad rows into a batch. The padding continues its row's last positions: it comes last
    and is never trained, so causal attention keeps it out of every real token's view, and a batch
    of single conversations stays plain causal attention, which SDPA runs without a mask
    (positions restarting in the padding would read as packed sequences and cost a dense
    block-diagonal mask). ``num_tokens`` counts the non-padding tokens (for throughput figures)."""
    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        ids[i, :n], labels[i, :n], positions[i, :n] = (
            torch.tensor(row.input_ids),
            torch.tensor(row.labels),
            torch.tensor(row.position_ids),
        )
        positions[i, n:] = torch.arange(row.position_ids[-1] + 1, row.position_ids[-1] + 1 + width - n)
    return {
        "input_ids": ids,
        "labels": labels,
        "position_ids": positions,
        "num_tokens": torch.tensor(sum(len(r.input_ids) for r in rows)),
    }


# transformers takes a (rows, length) mask as logits_to_keep from 5.21 on: the output layer then runs
# on exactly the kept positions of each row
KEEPS_BY_MASK = Version(transformers_version) >= Version("5.21")


def forward_logits(model: Any, batch: dict[str, torch.Tensor], keep: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of a (packed) batch: ``(rows, length, vocabulary)``, or ``(kept positions,
    vocabulary)`` for the positions a boolean ``keep`` mask of shape ``(rows, length)`` marks.

    No attention mask and no KV cache: transformers then reads the restarts of ``position_ids``
    as sequence boundaries (with a cache it silently falls back to one causal mask per row, and
    packed examples would attend to each other).
    """
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"], "use_cache": False}
    if keep is None:
        return model(**inputs).logits
    if KEEPS_BY_MASK:
        return model(**inputs, logits_to_keep=keep).logits
    # older releases take a 1-D index of columns: the output layer runs on the columns any row
    # keeps, then each row's own positions are picked
    columns = keep.any(dim=0).nonzero().squeeze(1)
    logits = model(**inputs, logits_to_keep=columns).logits
    return logits[keep[:, columns]]


def token_loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over trainable tokens, and their count.

    Only the positions that predict a trainable token go through the output layer, which saves the
    head's time and logits memory on every other position.
    """
    targets = batch["labels"][:, 1:]
    predicts = targets != IGNORE_INDEX
    keep = torch.nn.functional.pad(predicts, (0, 1))  # position p predicts token p + 1
    logits = forward_logits(model, batch, keep)
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[predicts], reduction="sum")
    return loss, int(predicts.sum())


def pad_token_id(tokenizer: Any) -> int:
    """The id padding uses (never trained, so any id works when the tokenizer has no pad token)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


class Objective(Protocol):
    """What :func:`fit` minimises: items (rows, pairs), their batches and each batch's summed loss.

    A step's loss is the sum of its micro-batches' ``loss_sum`` divided by the step's total
    ``weight`` over every process, so every unit of weight counts the same wherever it lies.
    """

    def items(self) -> list[Any]:
        """What one epoch passes over, in a fixed order (shuffled by the loop)."""
        ...

    def lengths(self) -> list[int]:
        """Each item's length in tokens, for batches of similar length."""
        ...

    def collate(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        """A batch of items; ``num_tokens`` counts its non-padding tokens."""
        ...

    def weight(self, batch: dict[str, torch.Tensor]) -> int:
        """What the batch's loss is averaged over."""
        ...

    def trained_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """The batch's tokens that carry loss."""
        ...

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's summed loss (a scalar with a gradient)."""
        ...

    def prepare(self, model: Any, accelerator: Any) -> None:
        """Work before the first step with the prepared model (e.g. reference log-probabilities)."""
        ...


class MaskedSFT:
    """Cross-entropy over trainable tokens of (packed) rows, averaged over the step's trainable tokens."""

    def __init__(self, examples: Sequence[Example], config: TrainConfig, pad_id: int):
        self.rows, self.pad_id = rows_for(examples, config), pad_id

    def items(self) -> list[Any]:
        return list(self.rows)

    def lengths(self) -> list[int]:
        return [len(r.input_ids) for r in self.rows]

    def collate(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        return collate(items, self.pad_id)

    def weight(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())

    def trained_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return self.weight(batch)

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return token_loss_sum(model, batch)[0]

    def prepare(self, model: Any, accelerator: Any) -> None:
        """Nothing to prepare."""


@torch.no_grad()
def evaluate_loss(model: Any, examples: Sequence[Example], pad_id: int, batch_rows: int = 8) -> float:
    """Mean loss per trainable token of ``examples`` (held-out turns)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    rows = [PackedRow.single(e) for e in examples]
    for start in range(0, len(rows), batch_rows):
        batch = {k: v.to(device) for k, v in collate(rows[start : start + batch_rows], pad_id).items()}
        loss, n = token_loss_sum(model, batch)
        total, count = total + float(loss), count + n
    model.train(was_training)
    return total / max(count, 1)


def train(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    out_dir: str | Path,
    config: TrainConfig = DEFAULT_CONFIG,
    *,
    progress: bool = False,
    metadata: dict[str, Any] | None = None,
    device: str = "auto",
    tracking: Tracking | None = None,
) -> TrainResult:
    """Masked SFT of ``model`` on ``examples``, saved to ``out_dir``.

    Args:
        model: a causal LM (loaded with ``from_pretrained``).
        tokenizer: its tokenizer (saved with the checkpoint).
        examples: tokenised conversations (see :func:`eef.train.tokenize_trajectories`).
        out_dir: the checkpoint directory to create (replaced atomically if it exists).
        config: the training settings.
        progress: show a progress bar.
        metadata: extra facts recorded in ``eef_train.json`` beside the weights.
        device: ``auto`` trains on each process's accelerator where there is one, ``cpu`` on the CPU.
        tracking: where the main process reports each step's loss and learning rate (:mod:`eef.tracking`).

    Returns:
        A :class:`TrainResult`.
    """
    if not examples:
        raise ValueError("no training examples (every conversation was dropped or none was given)")
    objective = MaskedSFT(examples, config, pad_token_id(tokenizer))
    return fit(
        model,
        tokenizer,
        objective,
        out_dir,
        config,
        progress=progress,
        metadata=metadata,
        device=device,
        tracking=tracking,
    )


def fit(
    model: Any,
    tokenizer: Any,
    objective: Objective,
    out_dir: str | Path,
    config: TrainConfig = DEFAULT_CONFIG,
    *,
    progress: bool = False,
    metadata: dict[str, Any] | None = None,
    device: str = "auto",
    tracking: Tracking | None = None,
) -> TrainResult:
    """Train ``model`` on ``objective`` and save it to ``out_dir`` (arguments as :func:`train`'s;
    ``config.micro_batch_rows`` and ``rows_per_step`` count the objective's items)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    items = objective.items()
    if not items:
        raise ValueError("nothing to train on")
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if pick_device(device).type == "cuda" else "no"
    accelerator = Accelerator(mixed_precision=precision, cpu=pick_device(device).type == "cpu")
    set_seed(config.seed)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if config.lora is not None:
        model = add_lora(model, config.lora)
    model.train()

    dataset = cast(Dataset[Any], items)  # a list is a map-style dataset
    loader: DataLoader[Any]
    if config.group_by_length:
        sampler = LengthGroupedBatches(objective.lengths(), config.micro_batch_rows, config.seed)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=objective.collate)
    else:
        loader = DataLoader(
            dataset,
            batch_size=config.micro_batch_rows,
            shuffle=True,
            generator=torch.Generator().manual_seed(config.seed),
            collate_fn=objective.collate,
        )
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate, weight_decay=config.weight_decay
    )
    accumulation = _accumulation(config, accelerator)
    deepspeed = accelerator.state.deepspeed_plugin
    if deepspeed is not None and deepspeed.is_auto("train_micro_batch_size_per_gpu"):
        # DeepSpeed reads its micro-batch from a prepared loader, and this loop draws its own
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = config.micro_batch_rows
    model, optimizer = accelerator.prepare(model, optimizer)
    objective.prepare(model, accelerator)
    # every process draws the same global sequence of micro-batches and trains its share of each step,
    # so N processes take the steps one process takes (same rows per step, same number of steps)
    per_step = accumulation * accelerator.num_processes
    total_micro = max(1, math.ceil(len(loader) * config.epochs))  # the last step may be shorter
    total_steps = math.ceil(total_micro / per_step)
    warmup = int(config.warmup_ratio * total_steps)
    decay = max(1, round(config.decay_ratio * (total_steps - warmup))) if config.decay_ratio else 0
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, warmup, total_steps, decay))

    result = TrainResult(checkpoint=Path(out_dir))
    bar = progress_bar(total_steps, "train", "step", progress and accelerator.is_main_process)
    trackers = open_trackers(tracking if accelerator.is_main_process else None)
    stream = _cycle(loader)
    began = time.perf_counter()
    for step in range(total_steps):
        step_batches = [next(stream) for _ in range(min(per_step, total_micro - step * per_step))]
        micro_batches = _share(step_batches, accelerator.process_index, accelerator.num_processes)
        # every unit of weight (a trainable token, a pair) of the step counts the same, whichever micro-batch
        # and process holds it: divide by the step's weight over all processes, times the processes that
        # DDP averages over
        mine = [b for b, weight in micro_batches if weight]
        local = [sum(objective.weight(b) for b in mine), sum(objective.trained_tokens(b) for b in mine)]
        local.append(sum(int(b["num_tokens"]) for b in mine))
        step_count, step_trained, step_tokens = (
            int(n) for n in accelerator.reduce(torch.tensor(local, device=accelerator.device), "sum")
        )
        scale = accelerator.num_processes / max(step_count, 1)
        step_loss = torch.zeros((), device=accelerator.device)
        for j, (cpu_batch, weight) in enumerate(micro_batches):
            batch = {key: value.to(accelerator.device) for key, value in cpu_batch.items()}
            with accelerator.no_sync(model) if j + 1 < len(micro_batches) else contextlib.nullcontext():
                loss_sum = objective.loss_sum(model, batch)
                accelerator.backward(loss_sum * (scale * weight))
            step_loss += loss_sum.detach() * weight
        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        rate = schedule.get_last_lr()[0]  # this step's rate; stepping the schedule sets the next one's
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        result.steps += 1
        result.trained_tokens += step_trained
        result.tokens += step_tokens
        result.losses.append(float(accelerator.reduce(step_loss, "sum")) / max(step_count, 1))
        bar.update(1)
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}", refresh=False)
        trackers.log({"loss": result.losses[-1], "learning_rate": rate}, step=result.steps)
    result.seconds = time.perf_counter() - began
    bar.close()
    trackers.close()
    accelerator.wait_for_everyone()
    # FSDP and ZeRO-3 hold shards: every process takes part in gathering the full weights
    state_dict = accelerator.get_state_dict(model) if config.lora is None else None
    if accelerator.is_main_process:
        _save(accelerator.unwrap_model(model), tokenizer, Path(out_dir), config, result, metadata or {}, state_dict)
    accelerator.wait_for_everyone()
    return result


def _accumulation(config: TrainConfig, accelerator: Any) -> int:
    """Micro-batches per optimizer step, so that a step sees exactly ``rows_per_step`` rows."""
    from accelerate.utils import DistributedType

    per_pass = config.micro_batch_rows * accelerator.num_processes
    if config.rows_per_step % per_pass:
        raise EefError(
            f"rows_per_step ({config.rows_per_step}) must be a multiple of micro_batch_rows x processes "
            f"({config.micro_batch_rows} x {accelerator.num_processes} = {per_pass})"
        )
    accumulation = config.rows_per_step // per_pass
    if accumulation > 1 and accelerator.distributed_type == DistributedType.DEEPSPEED:
        # DeepSpeed steps its optimizer inside backward() by its own config; ours would double-count
        raise EefError(
            "with DeepSpeed set micro_batch_rows x processes = rows_per_step (accumulation 1), or "
            "set gradient_accumulation_steps in the DeepSpeed config and rows_per_step to match"
        )
    return accumulation


def _lr_factor(step: int, warmup: int, total: int, decay: int) -> float:
    """Linear warm-up to the peak, the peak until ``decay`` steps are left, then cosine decay to 0
    at ``total`` (no decay when ``decay`` is 0: a constant rate after the warm-up).

    >>> [round(_lr_factor(s, 2, 10, 4), 2) for s in range(11)]
    [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.85, 0.5, 0.15, 0.0]
    >>> [_lr_factor(s, 2, 10, 0) for s in (0, 5, 10)]
    [0.5, 1.0, 1.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    if not decay:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(max(step - (total - decay), 0) / decay, 1.0)))


def _cycle(loader: Any) -> Iterator[dict[str, torch.Tensor]]:
    while True:
        yield from loader  # each pass reshuffles: the sampler's generator goes on


def _share(
    batches: list[dict[str, torch.Tensor]], rank: int, processes: int
) -> list[tuple[dict[str, torch.Tensor], int]]:
    """Process ``rank``'s micro-batches of a step, each with its weight: every ``processes``-th one
    from ``rank`` on, and where a short last step leaves this process fewer than the others, a
    weight-0 copy so that it still takes part in the gradients' reduction.

    >>> [(b["i"], w) for b, w in _share([{"i": 0}, {"i": 1}, {"i": 2}], 1, 2)]
    [(1, 1), (0, 0)]
    """
    mine = [(batch, 1) for batch in batches[rank::processes]]
    return mine + [(batches[0], 0)] * (math.ceil(len(batches) / processes) - len(mine))


def _save(
    model: Any,
    tokenizer: Any,
    out: Path,
    config: TrainConfig,
    result: TrainResult,
    metadata: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None,
) -> None:
    if config.lora is not None and config.lora.merge:
        model = model.merge_and_unload()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    model.save_pretrained(tmp, state_dict=state_dict)
    tokenizer.save_pretrained(tmp)
    record = {
        "requires": checkpoint_requirements(),
        "versions": installed_versions(),
        "config": asdict(config),
        "steps": result.steps,
        "tokens": result.tokens,
        "trained_tokens": result.trained_tokens,
        "seconds": round(result.seconds, 3),
        "final_loss": result.losses[-1] if result.losses else None,
        "losses": result.losses,  # per optimizer step, averaged over the step's trainable tokens
        **metadata,
    }
    (tmp / TRAIN_RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.chmod(0o755)  # mkdtemp makes it private
    if out.exists():  # POSIX cannot swap directories atomically: the old one is kept until the new one is in place
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        out.rename(old / out.name)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
