"""Method settings (the ``methods`` section of a run configuration), apart from the config
reader so that the methods can name them without importing it."""

from __future__ import annotations

from dataclasses import dataclass

from eef.checks import at_least, check_fields, not_empty
from eef.methods import METHODS, NEUTRAL_MODES, SELECTION_RULES


@dataclass(frozen=True)
class EEFSection:
    """The choices the paper leaves open for EEF (spec table)."""

    m: int = 5
    explore: str = "failed"
    neutral: str = "mask"

    def __post_init__(self) -> None:
        check_fields(self, m=at_least(1))

    CHOICES = {"explore": ("failed", "all"), "neutral": NEUTRAL_MODES}


@dataclass(frozen=True)
class MethodsSection:
    """Which methods run and how.

    ``rft_k`` null means ``1 + eef.m`` rollouts per ``s0`` (the spec's RFT x(1+M), EEF's budget).
    ``iteration_epochs`` null means ``train.epochs`` for every iteration's training too; fewer
    epochs suit ``train_from: previous``, where each iteration continues the last checkpoint.
    """

    run: tuple[str, ...] = METHODS
    iterations: int = 3
    rollouts_per_state: int = 1
    rft_k: int | None = None
    selection: str = "fewest"
    train_from: str = "base"
    iteration_epochs: int | None = None
    eef: EEFSection = EEFSection()

    def __post_init__(self) -> None:
        check_fields(
            self,
            iterations=at_least(1),
            rollouts_per_state=at_least(1),
            rft_k=at_least(1),
            iteration_epochs=at_least(1),
            run=not_empty,
        )

    CHOICES = {"selection": SELECTION_RULES, "train_from": ("base", "previous")}
