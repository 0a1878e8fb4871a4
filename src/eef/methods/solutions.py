"""Solutions, their selection and the positive repository (docs/method.md: EEF steps 5-7).

A solution is a successful path from an important state with the per-turn masks of its training
example. Important states are ``s0`` of every subtask (key ``task@s0``) and the recovery states
of the expert trajectories (key ``expert-id@k``). One solution is kept per important state, over
all iterations, by the selection rule. Everything here is pure: trajectories and plain values
in, trajectories with masks out.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from eef.methods.labels import recovery_states, segment_labels, simulation_states, solution_masks
from eef.trajectory import Trajectory

SELECTION_RULES = ("fewest", "newest", "random")


@dataclass(frozen=True)
class Analysis:
    """What the simulations along one expert trajectory showed.

    Attributes:
        expert_id: the expert trajectory.
        task_id: its task.
        positions: the simulated states, ``s0`` first (``[0, l, 2l, ...]``).
        succ: whether the agent succeeded from each of them.
        labels: the segment labels (``beneficial``, ``harmful``, ``neutral``).
        recovery: the recovery states.
    """

    expert_id: str
    task_id: str
    positions: tuple[int, ...]
    succ: tuple[bool, ...]
    labels: tuple[str, ...]
    recovery: tuple[int, ...]


@dataclass(frozen=True)
class Solution:
    """A training example for one important state.

    Attributes:
        state_key: the important state's key (``task@s0`` or ``expert-id@k``).
        trajectory: the conversation from ``s0`` to the end, masks set.
        actions: actions from the important state to the end (the selection's "fewest actions").
        iteration: the iteration that found it.
        kind: ``self`` (the agent from the state) or ``expert+self`` (expert segments, then the agent).
    """

    state_key: str
    trajectory: Trajectory
    actions: int
    iteration: int
    kind: str


def state_positions(expert: Trajectory, m: int) -> list[int]:
    """``[0] + simulation_states(T, m)`` for an expert trajectory of ``T`` actions."""
    return [0, *simulation_states(len(expert.turns), m)]


def analyse(expert: Trajectory, simulations: Sequence[Trajectory], m: int) -> Analysis:
    """Label an expert trajectory from the agent's simulations at its states.

    Args:
        expert: the expert trajectory.
        simulations: one agent rollout per state of :func:`state_positions`, in that order
            (the first is the agent's rollout from ``s0`` of the task).
        m: the number of simulated states M.
    """
    positions = state_positions(expert, m)
    if len(simulations) != len(positions):
        raise ValueError(f"{expert.id}: {len(simulations)} simulations for {len(positions)} states")
    succ = tuple(s.success for s in simulations)
    labels = segment_labels(succ)
    return Analysis(
        expert.id, expert.task_id, tuple(positions), succ, tuple(labels), tuple(recovery_states(positions, labels))
    )


def analyse_all(
    experts: Iterable[Trajectory],
    simulations: dict[tuple[str, int], Trajectory],
    from_s0: dict[str, Trajectory],
    m: int,
) -> tuple[list[tuple[Analysis, list[Trajectory]]], list[str]]:
    """Analyse every explored expert trajectory whose simulations are all there.

    Args:
        experts: the explored expert trajectories.
        simulations: the agent's rollout from ``(expert id, state)`` for each state after ``s0``.
        from_s0: the agent's rollout from ``s0`` of each task.
        m: the number of simulated states M.

    Returns:
        ``(analysis, simulations in state order)`` per expert, and the ids of the experts skipped
        because a state could not be simulated (its replay diverged): never trained on.
    """
    analysed, skipped = [], []
    for expert in experts:
        positions = state_positions(expert, m)
        maybe = [from_s0.get(expert.task_id)] + [simulations.get((expert.id, p)) for p in positions[1:]]
        found = [s for s in maybe if s is not None]
        if len(found) < len(maybe):
            skipped.append(expert.id)
            continue
        analysed.append((analyse(expert, found, m), found))
    return analysed, skipped


def eef_solutions(
    analysis: Analysis, simulations: Sequence[Trajectory], iteration: int, neutral: str = "mask"
) -> list[Solution]:
    """Every solution of every important state along one expert trajectory (before selection).

    From an important state at position ``p_i``, each later simulated state ``p_j`` (``j >= i``)
    whose simulation succeeded gives a solution: the expert's segments from ``p_i`` to ``p_j``,
    then the agent's rollout from ``p_j`` (for ``j == i``: the agent's own success).
    """
    out = []
    important = [0, *analysis.recovery]
    for start in important:
        i = analysis.positions.index(start)
        key = f"{analysis.task_id}@s0" if start == 0 else f"{analysis.expert_id}@{start}"
        for j in range(i, len(analysis.positions)):
            if not analysis.succ[j]:
                continue
            join, rollout = analysis.positions[j], simulations[j]
            masks = solution_masks(len(rollout.turns), analysis.positions, analysis.labels, start, join, neutral)
            trajectory = replace(rollout.with_masks(masks), id=f"solution/{key}/it{iteration}/via{join}")
            out.append(
                Solution(
                    key, trajectory, len(rollout.turns) - start, iteration, "self" if join == start else "expert+self"
                )
            )
    return out


def self_solutions(rollouts: Iterable[Trajectory], iteration: int) -> list[Solution]:
    """The agent's own successes from ``s0`` (RFT's data), every turn trainable."""
    return [
        Solution(
            f"{t.task_id}@s0",
            replace(t.with_masks([True] * len(t.turns)), id=f"solution/{t.task_id}@s0/it{iteration}/{t.id}"),
            len(t.turns),
            iteration,
            "self",
        )
        for t in rollouts
        if t.success
    ]


def select(candidates: Iterable[Solution], rule: str = "fewest", seed: int = 0) -> dict[str, Solution]:
    """One solution per important state.

    Rules: ``fewest`` actions, ties to the newest iteration (then the first found); ``newest``
    iteration, ties to the fewest actions; ``random`` (seeded per state).
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown selection rule {rule!r}; known: {', '.join(SELECTION_RULES)}")
    by_state: dict[str, list[Solution]] = {}
    for candidate in candidates:
        by_state.setdefault(candidate.state_key, []).append(candidate)
    chosen = {}
    for state, group in by_state.items():
        if rule == "random":
            chosen[state] = random.Random(f"{seed}|{state}").choice(group)
        elif rule == "newest":
            chosen[state] = min(group, key=lambda s: (-s.iteration, s.actions))
        else:
            chosen[state] = min(group, key=lambda s: (s.actions, -s.iteration))
    return chosen


class PositiveRepository:
    """Solutions accumulated over iterations, one per important state (docs/method.md, EEF step 7)."""

    def __init__(self, rule: str = "fewest", seed: int = 0):
        self.rule, self.seed = rule, seed
        self.solutions: dict[str, Solution] = {}

    def add(self, candidates: Iterable[Solution]) -> int:
        """Merge new candidates; returns how many important states gained or changed solution."""
        merged = select([*self.solutions.values(), *candidates], self.rule, self.seed)
        changed = sum(self.solutions.get(k) is not v for k, v in merged.items())
        self.solutions = merged
        return changed

    def trajectories(self) -> list[Trajectory]:
        """The training examples, in a stable order."""
        return [self.solutions[k].trajectory for k in sorted(self.solutions)]


def expert_demonstrations(experts: Iterable[Trajectory]) -> list[Trajectory]:
    """``D_e``: the successful expert trajectories, every turn trainable (SFT-POS's data)."""
    return [t.with_masks([True] * len(t.turns)) for t in experts if t.success]
