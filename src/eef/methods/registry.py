"""The iterative methods by name (``methods.run``): what each iteration explores and what it trains
on. RFT, RFT xK, NAT, EEF and ETO are built in; :func:`register_method` adds one.

Every method starts from SFT-POS and shares the rest of an iteration with the others: the
pipeline rolls out the current model from the method's starts, then either (a :class:`Method`)
puts the method's solutions into the positive repository (one per important state, by
``methods.selection``) and trains masked SFT on the cloned expert successes plus the repository,
or (a :class:`PreferenceMethod`) trains DPO on the method's pairs; then it evaluates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from eef.data.check import restorable
from eef.methods.accounting import eef_candidates
from eef.methods.preference import Pair, expert_agent_pairs
from eef.methods.solutions import Solution, self_solutions, state_positions
from eef.rollout.plan import Start
from eef.trajectory import Message, Trajectory

if TYPE_CHECKING:  # the configuration lists the methods this module registers
    from eef.methods.settings import MethodsSection

SFT_POS = "sft_pos"  # the common start of every method, trained once per run


class Method(Protocol):
    """One iterative method.

    ``starts`` are the episodes to roll out from the training ``tasks`` and the expert
    trajectories; ``label`` turns an iteration's episodes (in start order) into candidate
    solutions and counts that go to the label stage's record.
    """

    def starts(self, tasks: Sequence[str], experts: Sequence[Trajectory], settings: MethodsSection) -> list[Start]:
        """The starts of one iteration."""
        ...

    def label(
        self, rollouts: Sequence[Trajectory], experts: Sequence[Trajectory], iteration: int, settings: MethodsSection
    ) -> tuple[list[Solution], dict[str, int]]:
        """Candidate solutions found in ``rollouts``, and counts for the record."""
        ...


@runtime_checkable
class TrainsOnFailures(Protocol):
    """A method whose training set also holds failed trajectories, each under a prompt that says it
    failed (NAT); ``failures`` returns them so marked."""

    def failures(
        self, rollouts: Sequence[Trajectory], experts: Sequence[Trajectory], settings: MethodsSection
    ) -> list[Trajectory]:
        """The failed trajectories to train on, their prompts marked."""
        ...


@runtime_checkable
class PreferenceMethod(Protocol):
    """A method that trains on preference pairs (DPO) instead of solutions: ``pairs`` turns an
    iteration's episodes into (chosen, rejected) pairs and counts for the label stage's record.
    Its training starts from the model that explored, which is also DPO's reference."""

    def starts(self, tasks: Sequence[str], experts: Sequence[Trajectory], settings: MethodsSection) -> list[Start]:
        """The starts of one iteration."""
        ...

    def pairs(
        self,
        rollouts: Sequence[Trajectory],
        demonstrations: Sequence[Trajectory],
        iteration: int,
        settings: MethodsSection,
    ) -> tuple[list[Pair], dict[str, int]]:
        """The preference pairs of ``rollouts`` against the cloned expert ``demonstrations``."""
        ...


def s0_solutions(rollouts: Sequence[Trajectory], iteration: int) -> list[Solution]:
    """The successes of the episodes rolled out from ``s0`` (RFT's positives)."""
    return self_solutions([t for t in rollouts if not t.provenance.parent_id], iteration)


@dataclass(frozen=True)
class RejectionSampling:
    """RFT: roll out every training task from ``s0`` (``rollouts_per_task`` times, or as many as
    EEF's budget, 1 + M, for RFT xK) and keep the successes."""

    matched_budget: bool = False

    def starts(self, tasks: Sequence[str], experts: Sequence[Trajectory], settings: MethodsSection) -> list[Start]:
        per_task = (settings.rft_k or 1 + settings.eef.m) if self.matched_budget else 1
        return [Start(t, index=i) for t in tasks for i in range(per_task)]

    def label(
        self, rollouts: Sequence[Trajectory], experts: Sequence[Trajectory], iteration: int, settings: MethodsSection
    ) -> tuple[list[Solution], dict[str, int]]:
        return s0_solutions(rollouts, iteration), {}


class ExploringExpertFailures:
    """EEF: RFT's ``s0`` rollouts plus the agent from M states of each explored expert trajectory
    (failures, or all; every trajectory of an explore-only teacher; never one ``eef data check``
    flagged), labelled into beneficial, harmful and neutral segments (:mod:`eef.methods.labels`)."""

    def starts(self, tasks: Sequence[str], experts: Sequence[Trajectory], settings: MethodsSection) -> list[Start]:
        from_states = [
            Start(e.task_id, e, p, i)
            for e in explored_experts(experts, settings)
            for p in state_positions(e, settings.eef.m)[1:]
            for i in range(settings.rollouts_per_state)
        ]
        return RejectionSampling().starts(tasks, experts, settings) + from_states

    def label(
        self, rollouts: Sequence[Trajectory], experts: Sequence[Trajectory], iteration: int, settings: MethodsSection
    ) -> tuple[list[Solution], dict[str, int]]:
        found, counts = eef_candidates(
            explored_experts(experts, settings), rollouts, iteration, settings.eef.m, settings.eef.neutral
        )
        counts["flagged_experts"] = sum(not restorable(e) for e in experts)
        return s0_solutions(rollouts, iteration) + found, counts


class NegativeAwareTraining:
    """NAT (Wang et al., 2024) on RFT's loop: roll out every training task once from ``s0`` and keep
    the successes, and train also on the expert's failed trajectories, each under the prompt with
    ``methods.nat.negative_note`` added, so the model learns what the note marks as failure while
    evaluation (the plain prompt) asks for success."""

    def starts(self, tasks: Sequence[str], experts: Sequence[Trajectory], settings: MethodsSection) -> list[Start]:
        return RejectionSampling().starts(tasks, experts, settings)

    def label(
        self, rollouts: Sequence[Trajectory], experts: Sequence[Trajectory], iteration: int, settings: MethodsSection
    ) -> tuple[list[Solution], dict[str, int]]:
        return s0_solutions(rollouts, iteration), {}

    def failures(
        self, rollouts: Sequence[Trajectory], experts: Sequence[Trajectory], settings: MethodsSection
    ) -> list[Trajectory]:
        return [marked_failure(e, settings.nat.negative_note) for e in experts if not e.success]


def marked_failure(trajectory: Trajectory, note: str) -> Trajectory:
    """``trajectory`` with ``note`` added to its prompt's first message (a system message of its
    own where the prompt is empty), every turn trainable, under an id of its own."""
    prompt = trajectory.prompt
    marked = (
        (replace(prompt[0], content=f"{prompt[0].content}\n\n{note}"), *prompt[1:])
        if prompt
        else (Message("system", note),)
    )
    turns = tuple(replace(t, trainable=True) for t in trajectory.turns)
    return replace(trajectory, id=f"{trajectory.id}#negative", prompt=marked, turns=turns)


class ExplorationTrajectoryOptimization:
    """ETO (Song et al., 2024): roll out every training task once from ``s0`` and pair each episode
    with the expert success of its task, the higher reward preferred (:mod:`eef.methods.preference`)."""

    def starts(self, tasks: Sequence[str], experts: Sequence[Trajectory], settings: MethodsSection) -> list[Start]:
        return RejectionSampling().starts(tasks, experts, settings)

    def pairs(
        self,
        rollouts: Sequence[Trajectory],
        demonstrations: Sequence[Trajectory],
        iteration: int,
        settings: MethodsSection,
    ) -> tuple[list[Pair], dict[str, int]]:
        return expert_agent_pairs(rollouts, demonstrations, settings.eto.extra_turns)


def explored_experts(experts: Sequence[Trajectory], settings: MethodsSection) -> list[Trajectory]:
    """The expert trajectories EEF explores: failures (or all, ``methods.eef.explore``), and
    everything of explore-only teachers; never one that ``eef data check`` flagged (its states
    are not the recorded ones)."""
    return [
        e
        for e in experts
        if restorable(e) and (settings.eef.explore == "all" or not e.success or e.meta.get("role") == "explore")
    ]


_METHODS: dict[str, Method | PreferenceMethod] = {
    "rft": RejectionSampling(),
    "rft_k": RejectionSampling(matched_budget=True),
    "eef": ExploringExpertFailures(),
    "nat": NegativeAwareTraining(),
    "eto": ExplorationTrajectoryOptimization(),
}


def register_method(name: str, method: Method | PreferenceMethod) -> None:
    """Make ``name`` a method ``methods.run`` may list, run as ``method`` says."""
    if name == SFT_POS:
        raise ValueError(f"{SFT_POS} is every method's start and cannot be replaced")
    _METHODS[name] = method


def unregister_method(name: str) -> None:
    """Forget a registered method.

    Raises:
        KeyError: no method of that name is registered.
    """
    del _METHODS[name]


def method_names() -> tuple[str, ...]:
    """What ``methods.run`` may name: SFT-POS, the built-in methods, then registered ones."""
    return (SFT_POS, *_METHODS)


def method(name: str) -> Method | PreferenceMethod:
    """The method registered as ``name``.

    Raises:
        KeyError: no such method (the configuration is checked against :func:`method_names` first).
    """
    return _METHODS[name]
