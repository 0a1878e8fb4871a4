"""What one labelling round found, counted: EEF's segment labels and the training tasks solved,
by source and by teacher (pure functions over trajectories and solutions)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from eef.methods.solutions import Solution, analyse_all, eef_solutions
from eef.trajectory import Trajectory


def eef_candidates(
    explored: Sequence[Trajectory], rollouts: Iterable[Trajectory], iteration: int, m: int, neutral: str
) -> tuple[list[Solution], dict[str, int]]:
    """EEF's solutions from the simulations of the ``explored`` expert trajectories (before
    selection), and counts of segment labels, recovery states and experts skipped because a state
    could not be simulated."""
    first_s0, simulations = episodes_by_start(rollouts)
    analysed, skipped = analyse_all(explored, simulations, first_s0, m)
    counts = Counter(
        {"beneficial": 0, "harmful": 0, "neutral": 0, "recovery_states": 0, "skipped_experts": len(skipped)}
    )
    candidates: list[Solution] = []
    for analysis, sims in analysed:
        counts.update(analysis.labels)
        counts["recovery_states"] += len(analysis.recovery)
        candidates += eef_solutions(analysis, sims, iteration, neutral)
    return candidates, dict(counts)


def episodes_by_start(
    rollouts: Iterable[Trajectory],
) -> tuple[dict[str, Trajectory], dict[tuple[str, int], Trajectory]]:
    """What EEF's labels compare: the first episode from ``s0`` of each task, and the last episode
    from each restored state, by (expert trajectory id, state)."""
    first_s0: dict[str, Trajectory] = {}
    simulations: dict[tuple[str, int], Trajectory] = {}
    for t in rollouts:
        if t.provenance.parent_id:
            simulations[(t.provenance.parent_id, t.provenance.start_step)] = t
        else:
            first_s0.setdefault(t.task_id, t)
    return first_s0, simulations


def solved_tasks(
    cloned: Sequence[Trajectory], solutions: Sequence[Solution], experts: Sequence[Trajectory]
) -> dict[str, Any]:
    """The training tasks solved, each counted once by the first source that solves it (the
    cloned expert successes, then the agent from ``s0``, then EEF), and what each teacher
    contributed: its cloned successes plus the EEF solutions that started from its trajectories;
    with the experts' task groups (``meta["group"]``), the tasks solved per group."""
    expert_solved = {t.task_id for t in cloned}
    self_solved = {s.trajectory.task_id for s in solutions if s.kind == "self" and s.state_key.endswith("@s0")}
    eef_solved = {s.trajectory.task_id for s in solutions} - self_solved - expert_solved
    self_solved -= expert_solved
    teacher_of = {e.id: str(e.meta.get("teacher", e.provenance.source)) for e in experts}
    by_teacher = Counter(teacher_of.get(t.id, t.provenance.source) for t in cloned)
    eef_teacher: dict[str, str] = {}  # a task counts for the teacher whose trajectory led to its first solution
    for s in solutions:
        if s.trajectory.task_id in eef_solved:
            eef_teacher.setdefault(s.trajectory.task_id, teacher_of.get(s.trajectory.provenance.parent_id or "", "?"))
    by_teacher.update(eef_teacher.values())
    group_of = {e.task_id: e.meta["group"] for e in experts if "group" in e.meta}
    solved = expert_solved | self_solved | eef_solved
    by_group = Counter(group_of[t] for t in solved if t in group_of)
    return {
        "solved_by_source": {"expert": len(expert_solved), "self_s0": len(self_solved), "eef": len(eef_solved)},
        "solved_by_teacher": dict(sorted(by_teacher.items())),
        "train_solved": len(solved),
        **({"solved_by_group": dict(sorted(by_group.items()))} if group_of else {}),
    }
