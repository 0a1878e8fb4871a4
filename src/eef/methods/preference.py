"""ETO's preference pairs (Song et al., 2024): the agent's episode of a training task against the
expert success of the same task, the one with the higher reward preferred (pure functions).

As ETO's ``construct_preference.py`` builds them: a task the agent did worse on pairs the expert
trajectory (chosen) with the agent's (rejected), the agent's cut to at most ``extra_turns`` turns
more than the expert's (a failure can wander far longer than a success); a task the agent did
better on pairs them the other way round; ties pair nothing. Both start from the same task, so
what differs is what the agent said, which is all a pair's log-probabilities count.

In a file (the iteration's ``train.jsonl``) a pair is two trajectories with ``meta.pair`` (its
number) and ``meta.preferred`` (true for the chosen one); ``meta.from_id`` keeps the original id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace

from eef.errors import DataError
from eef.trajectory import Trajectory

Pair = tuple[Trajectory, Trajectory]  # (chosen, rejected)


def expert_agent_pairs(
    rollouts: Iterable[Trajectory], demonstrations: Sequence[Trajectory], extra_turns: int
) -> tuple[list[Pair], dict[str, int]]:
    """The pairs of the agent's episodes from ``s0`` with the expert demonstrations of the same
    tasks (per task the demonstration of the highest reward, the first among equals), and counts:
    ``pairs``, ``agent_worse``, ``agent_better``, ``ties`` and ``no_expert`` (episodes of tasks no
    demonstration solved, which ETO cannot pair)."""
    best: dict[str, Trajectory] = {}
    for d in demonstrations:
        if d.task_id not in best or d.reward > best[d.task_id].reward:
            best[d.task_id] = d
    pairs: list[Pair] = []
    counts = Counter({"agent_worse": 0, "agent_better": 0, "ties": 0, "no_expert": 0})
    for episode in rollouts:
        if episode.provenance.parent_id:  # ETO explores from s0 only
            continue
        expert = best.get(episode.task_id)
        if expert is None:
            counts["no_expert"] += 1
        elif episode.reward < expert.reward:
            counts["agent_worse"] += 1
            pairs.append((expert, cut(episode, len(expert.turns) + extra_turns)))
        elif episode.reward > expert.reward:
            counts["agent_better"] += 1
            pairs.append((episode, expert))
        else:
            counts["ties"] += 1
    return pairs, {"pairs": len(pairs), **counts}


def cut(trajectory: Trajectory, turns: int) -> Trajectory:
    """``trajectory`` with at most its first ``turns`` turns (its reward and outcome kept: the cut
    one is still the episode that failed)."""
    return trajectory if len(trajectory.turns) <= turns else replace(trajectory, turns=trajectory.turns[:turns])


def pair_records(pairs: Sequence[Pair]) -> list[Trajectory]:
    """The pairs as trajectories for a file, chosen then rejected, each marked with its pair."""
    out = []
    for k, (chosen, rejected) in enumerate(pairs):
        for trajectory, preferred in ((chosen, True), (rejected, False)):
            meta = {**trajectory.meta, "pair": k, "preferred": preferred, "from_id": trajectory.id}
            out.append(replace(trajectory, id=f"pair-{k}/{_side(preferred)}", meta=meta))
    return out


def pairs_of_records(records: Sequence[Trajectory], source: str) -> list[Pair]:
    """The pairs :func:`pair_records` wrote to ``source``, in their order (``records`` one per line).

    Raises:
        DataError: a record has no pair marks, or a pair has a side twice or lacks one.
    """
    sides: dict[int, dict[bool, Trajectory]] = {}
    for line, t in enumerate(records, start=1):
        pair, preferred = t.meta.get("pair"), t.meta.get("preferred")
        if not isinstance(pair, int) or not isinstance(preferred, bool):
            raise DataError(source, "no pair marks (meta.pair, meta.preferred)", line=line, field="meta")
        if preferred in sides.setdefault(pair, {}):
            raise DataError(source, f"pair {pair} has a second {_side(preferred)} side", line=line, field="meta.pair")
        sides[pair][preferred] = t
    for k, both in sides.items():
        if len(both) != 2:
            raise DataError(source, f"pair {k} has no {_side(True not in both)} side", field="meta.pair")
    return [(sides[k][True], sides[k][False]) for k in sorted(sides)]


def _side(preferred: bool) -> str:
    return "chosen" if preferred else "rejected"
