"""DPO on trajectory pairs (ETO's update): the preferred and the rejected conversation of one task.

A conversation's log-probability is the sum over its trainable tokens only (the per-turn masks
of :mod:`eef.train.data`), so two multi-turn conversations with different histories are compared
by what the agent said in each, never by the observations. The loss is DPO's sigmoid loss
(Rafailov et al., 2023), as ETO trains it::

    -log sigmoid(beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))))

averaged over the pairs of an optimizer step. The reference is the model training starts from
(ETO's: the model that explored); its log-probabilities are computed once, before the first
step, with the prepared model (so in the same precision as the policy's), and kept as numbers: no
second model is held in memory. A pair's two conversations are two rows of one forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from eef.train.data import IGNORE_INDEX, Example, PackedRow, TokenizeStats, tokenize_conversation
from eef.train.trainer import collate, forward_logits
from eef.trajectory import Trajectory


@dataclass(frozen=True)
class TokenizedPair:
    """One preference pair, tokenised: ``chosen`` is preferred over ``rejected``."""

    chosen: Example
    rejected: Example


def tokenize_pairs(
    pairs: Sequence[tuple[Trajectory, Trajectory]], tokenizer: Any, max_length: int
) -> tuple[list[TokenizedPair], TokenizeStats]:
    """Token ids and labels of each (chosen, rejected) pair; a pair either side of which has no
    trainable token left is dropped (counted as ``dropped``; ``examples`` counts kept pairs)."""
    out, stats = [], TokenizeStats()
    for chosen, rejected in pairs:
        sides = [tokenize_conversation(t.messages(), tokenizer, max_length, t.id) for t in (chosen, rejected)]
        stats.truncated += sum(truncated for _, truncated in sides)
        (chosen_example, _), (rejected_example, _) = sides
        if chosen_example is None or rejected_example is None:
            stats.dropped += 1
            continue
        out.append(TokenizedPair(chosen_example, rejected_example))
        stats.examples += 1
        for example in (chosen_example, rejected_example):
            stats.tokens += len(example.input_ids)
            stats.trained_tokens += example.trained_tokens
    return out, stats


def sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each row's summed log-probability of its trainable tokens: ``(rows,)``.

    Only the positions that predict a trainable token go through the output layer (as in SFT).
    """
    targets = batch["labels"][:, 1:]
    predicts = targets != IGNORE_INDEX
    keep = torch.nn.functional.pad(predicts, (0, 1))  # position p predicts token p + 1
    logits = forward_logits(model, batch, keep)  # the kept positions, row by row
    token_logps = -torch.nn.functional.cross_entropy(logits.float(), targets[predicts], reduction="none")
    rows = predicts.nonzero()[:, 0]
    return torch.zeros(len(targets), device=token_logps.device, dtype=token_logps.dtype).index_add(0, rows, token_logps)


def dpo_losses(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """DPO's sigmoid loss of each pair from the four summed log-probabilities.

    >>> t = torch.tensor
    >>> round(float(dpo_losses(t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]), beta=0.5)[0]), 4)  # -log sigmoid(1)
    0.3133
    """
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)
    return -torch.nn.functional.logsigmoid(beta * margin)


class DirectPreference:
    """DPO over :class:`TokenizedPair` items (an :class:`eef.train.trainer.Objective`); a step's loss
    is the mean over its pairs. ``micro_batch_rows`` and ``rows_per_step`` count pairs."""

    def __init__(self, pairs: Sequence[TokenizedPair], beta: float, pad_id: int, reference_batch: int = 4):
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a finite number above 0, got {beta!r}")
        self.pairs, self.beta, self.pad_id, self.reference_batch = list(pairs), beta, pad_id, reference_batch
        self.reference: torch.Tensor | None = None  # (pairs, 2): chosen, rejected

    def items(self) -> list[Any]:
        return list(range(len(self.pairs)))

    def lengths(self) -> list[int]:
        return [max(len(p.chosen.input_ids), len(p.rejected.input_ids)) for p in self.pairs]

    def collate(self, items: Sequence[Any]) -> dict[str, torch.Tensor]:
        """The chosen conversations as the first rows, the rejected ones as the rest, and the
        reference log-probabilities of the pairs once they are known."""
        pairs = [self.pairs[i] for i in items]
        batch = collate(
            [PackedRow.single(p.chosen) for p in pairs] + [PackedRow.single(p.rejected) for p in pairs], self.pad_id
        )
        batch["pair_index"] = torch.tensor(list(items), dtype=torch.long)
        if self.reference is not None:
            batch["reference"] = self.reference[batch["pair_index"]]
        return batch

    def weight(self, batch: dict[str, torch.Tensor]) -> int:
        return len(batch["pair_index"])

    def trained_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())

    def loss_sum(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logps = sequence_logps(model, batch)
        n = len(batch["pair_index"])
        reference = batch["reference"].to(logps.device)
        return dpo_losses(logps[:n], logps[n:], reference[:, 0], reference[:, 1], self.beta).sum()

    def prepare(self, model: Any, accelerator: Any) -> None:
        """The reference log-probabilities: each process computes its share of the pairs with the
        model before its first step, and all processes gather every share. Every process runs
        the same number of forward passes (sharded models need all of them in each)."""
        from accelerate.utils import gather_object

        rank, processes = accelerator.process_index, accelerator.num_processes
        mine = list(range(rank, len(self.pairs), processes))
        passes = math.ceil(math.ceil(len(self.pairs) / processes) / self.reference_batch)
        found: list[tuple[int, float, float]] = []
        was_training = model.training
        model.eval()  # no dropout: the reference is the model itself
        with torch.no_grad():
            for k in range(passes):
                chunk = mine[k * self.reference_batch : (k + 1) * self.reference_batch] or [0]  # an idle pass
                batch = {key: v.to(accelerator.device) for key, v in self.collate(chunk).items()}
                logps = sequence_logps(model, batch).float().cpu()
                if k * self.reference_batch < len(mine):
                    found += [(i, float(logps[j]), float(logps[len(chunk) + j])) for j, i in enumerate(chunk)]
        model.train(was_training)
        reference = torch.zeros(len(self.pairs), 2, dtype=torch.float32)
        for i, chosen, rejected in gather_object(found) if processes > 1 else found:
            reference[i] = torch.tensor([chosen, rejected])
        self.reference = reference
