"""Method settings (the ``methods`` section of a run configuration), apart from the config
reader so that the methods can name them without importing it."""

from __future__ import annotations

from dataclasses import dataclass

from eef.checks import above, at_least, between, check_fields, each, not_empty
from eef.methods import DEFAULT_RUN, NEUTRAL_MODES, SELECTION_RULES


@dataclass(frozen=True)
class EEFSection:
    """The choices the paper leaves open for EEF (docs/method.md, "Choices the paper leaves open")."""

    m: int = 5
    explore: str = "failed"
    neutral: str = "mask"

    def __post_init__(self) -> None:
        check_fields(self, m=at_least(1))

    CHOICES = {"explore": ("failed", "all"), "neutral": NEUTRAL_MODES}


@dataclass(frozen=True)
class ETOSection:
    """ETO's DPO iterations (its ``run_eto.sh``): ``beta`` and ``learning_rate`` per iteration (the
    last value repeats), each iteration ``epochs`` passes over its pairs with a linear warm-up over
    ``warmup_ratio`` of the steps and then a constant rate; a rejected episode is cut to at most
    ``extra_turns`` turns more than the expert's. The rest of training (batch, length, LoRA)
    is ``train``'s, with ``rows_per_step`` and ``micro_batch_rows`` counting pairs."""

    beta: tuple[float, ...] = (0.1, 0.5)
    learning_rate: tuple[float, ...] = (1e-6, 5e-7)
    epochs: float = 3.0
    warmup_ratio: float = 0.1
    extra_turns: int = 5

    def __post_init__(self) -> None:
        check_fields(
            self,
            beta=each(above(0)),
            learning_rate=each(above(0)),
            epochs=above(0),
            warmup_ratio=between(0, 1, open_high=True),
            extra_turns=at_least(0),
        )

    def for_iteration(self, iteration: int) -> tuple[float, float]:
        """(beta, learning rate) of ``iteration`` (from 1)."""
        pick = min(iteration, len(self.beta)) - 1, min(iteration, len(self.learning_rate)) - 1
        return self.beta[pick[0]], self.learning_rate[pick[1]]


@dataclass(frozen=True)
class NATSection:
    """NAT's marker: ``negative_note`` is added to the prompt of every failed trajectory it trains
    on (a successful one keeps the plain prompt, which evaluation uses)."""

    negative_note: str = "Note: the following is a failed attempt at this task; it shows what not to do."

    def __post_init__(self) -> None:
        check_fields(self, negative_note=not_empty)


@dataclass(frozen=True)
class MethodsSection:
    """Which methods run and how.

    ``rft_k`` null means ``1 + eef.m`` rollouts per ``s0`` (RFT x(1+M) in docs/method.md, EEF's budget).
    ``iteration_epochs`` null means ``train.epochs`` for every iteration's training too; fewer
    epochs suit ``train_from: previous``, where each iteration continues the last checkpoint.
    """

    run: tuple[str, ...] = DEFAULT_RUN
    iterations: int = 3
    rollouts_per_state: int = 1
    rft_k: int | None = None
    selection: str = "fewest"
    train_from: str = "base"
    iteration_epochs: int | None = None
    eef: EEFSection = EEFSection()
    eto: ETOSection = ETOSection()
    nat: NATSection = NATSection()

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
