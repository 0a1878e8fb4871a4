"""Training settings, apart from the trainer so that reading a configuration imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

from eef.checks import FieldErrors, above, at_least, between, check_fields, not_empty, one_of

TRAIN_RECORD = "eef_train.json"  # what training writes beside the weights: settings, figures, agent card


@dataclass(frozen=True)
class LoraSettings:
    """LoRA adapters (PEFT) instead of full fine-tuning.

    Attributes:
        r: adapter rank.
        alpha: scaling numerator.
        dropout: dropout on the adapter input.
        target_modules: module names, or ``all-linear``.
        merge: merge the adapters into the saved weights (loadable without PEFT).
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "all-linear"
    merge: bool = True

    def __post_init__(self) -> None:
        check_fields(
            self, r=at_least(1), alpha=at_least(1), dropout=between(0, 1, open_high=True), target_modules=not_empty
        )


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        epochs: passes over the data.
        learning_rate: peak learning rate, reached after a linear warm-up.
        warmup_ratio: share of steps spent warming up.
        decay_ratio: share of the last steps over which the rate decays (cosine) to 0; 1.0 is
            the usual cosine schedule, smaller ones hold the peak longer (warm-up, stable,
            decay), which a model trained from scratch needs to form its copying circuits; 0
            keeps the peak to the end (a constant rate after the warm-up, as ETO's DPO).
        weight_decay: AdamW weight decay.
        rows_per_step: packed rows per optimizer step (across devices and accumulation).
        micro_batch_rows: rows per forward pass on one device (1 keeps the logits of a model with a
            large vocabulary within a GPU's memory).
        max_length: tokens per row; longer conversations are cut (see :mod:`eef.train.data`).
        packing: pack several examples per row; off: one example per row, padded.
        group_by_length: batch rows of similar length (see :class:`LengthGroupedBatches`): with
            one conversation per row, random batches are mostly padding.
        max_grad_norm: gradient clipping.
        gradient_checkpointing: recompute activations (GPU memory for time).
        mixed_precision: ``auto`` (bf16 on CUDA, none on CPU), ``bf16``, ``fp16`` or ``no``.
        lora: LoRA settings, or None for full fine-tuning.
        seed: seed of initialisation order, shuffling and dropout.
    """

    epochs: float = 3.0
    learning_rate: float = 1e-5
    warmup_ratio: float = 0.03
    decay_ratio: float = 1.0
    weight_decay: float = 0.0
    rows_per_step: int = 8
    micro_batch_rows: int = 1
    max_length: int = 4096
    packing: bool = True
    group_by_length: bool = False
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    mixed_precision: str = "auto"
    lora: LoraSettings | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(
            self,
            epochs=above(0),
            learning_rate=above(0),
            warmup_ratio=between(0, 1, open_high=True),
            decay_ratio=between(0, 1),
            weight_decay=at_least(0),
            rows_per_step=at_least(1),
            micro_batch_rows=at_least(1),
            max_length=at_least(2),
            max_grad_norm=above(0),
            mixed_precision=one_of("auto", "bf16", "fp16", "no"),
            seed=between(0, 2**32 - 1),  # what accelerate's set_seed takes
        )
        if self.rows_per_step % self.micro_batch_rows:
            raise FieldErrors(
                [
                    (
                        "rows_per_step",
                        f"{self.rows_per_step} is not a multiple of micro_batch_rows ({self.micro_batch_rows})",
                    )
                ]
            )
