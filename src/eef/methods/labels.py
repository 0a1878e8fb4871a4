"""EEF's labelling of an expert trajectory: which states to simulate, segment labels, recovery states.

Pure functions over plain values (docs/method.md, EEF steps 2-4). For a trajectory of ``T`` actions and
``M`` simulated states, ``l = max(1, T // (M + 1))`` and the agent is simulated from
``s_l, s_2l, ..., s_Ml`` (only those before the end: short trajectories simulate from fewer
states) besides ``s0``. ``succ[k]`` says whether the simulation from the ``k``-th of the states
``[s0, s_l, s_2l, ...]`` succeeded; segment ``A_k`` holds the expert actions between the ``k``-th
and the ``k+1``-th state.
"""

from __future__ import annotations

from collections.abc import Sequence

BENEFICIAL, HARMFUL, NEUTRAL = "beneficial", "harmful", "neutral"
NEUTRAL_MODES = ("mask", "train")  # what EEF does with neutral expert segments


def simulation_states(num_actions: int, m: int) -> list[int]:
    """The states simulated besides ``s0``: ``[l, 2l, ..., Ml]`` cut before the last action.

    >>> simulation_states(12, 5)
    [2, 4, 6, 8, 10]
    >>> simulation_states(4, 5)   # T < M + 1: l = 1, fewer states
    [1, 2, 3]
    >>> simulation_states(1, 5)
    []
    """
    if m < 1:
        raise ValueError(f"M must be >= 1, got {m}")
    step = max(1, num_actions // (m + 1))
    return [k * step for k in range(1, m + 1) if k * step < num_actions]


def segment_labels(succ: Sequence[bool]) -> list[str]:
    """Label segment ``A_k`` from whether the agent succeeded before and after it.

    Beneficial when the agent fails from the state before and succeeds from the one after;
    harmful in the opposite case; neutral otherwise.

    >>> segment_labels([False, True, False, True])
    ['beneficial', 'harmful', 'beneficial']
    """
    return [
        BENEFICIAL if not before and after else HARMFUL if before and not after else NEUTRAL
        for before, after in zip(succ, succ[1:])
    ]


def recovery_states(positions: Sequence[int], labels: Sequence[str]) -> list[int]:
    """The states right after harmful segments (where the agent must recover).

    Args:
        positions: the state positions ``[0, l, 2l, ...]`` (``s0`` first).
        labels: the segment labels (one fewer than ``positions``).

    >>> recovery_states([0, 2, 4, 6], ['beneficial', 'harmful', 'beneficial'])
    [4]
    """
    return [positions[k + 1] for k, label in enumerate(labels) if label == HARMFUL]


def solution_masks(
    num_turns: int, positions: Sequence[int], labels: Sequence[str], start: int, join: int, neutral: str = "mask"
) -> list[bool]:
    """Per-turn trainable flags of a solution from important state ``start``.

    The solution follows the expert from ``start`` to the simulated state ``join`` and the agent
    from there to the end (``num_turns`` turns in all). Trainable: beneficial expert segments
    inside the solution and the agent's own continuation; context only: harmful segments,
    neutral ones (unless ``neutral == "train"``) and every expert action before ``start``.

    >>> solution_masks(8, [0, 2, 4, 6], ['beneficial', 'harmful', 'beneficial'], start=0, join=2)
    [True, True, True, True, True, True, True, True]
    >>> solution_masks(9, [0, 2, 4, 6], ['neutral', 'harmful', 'beneficial'], start=4, join=6)
    [False, False, False, False, True, True, True, True, True]
    """
    if neutral not in NEUTRAL_MODES:
        raise ValueError(f"neutral must be one of {', '.join(NEUTRAL_MODES)}, got {neutral!r}")
    if start not in positions or join not in positions or join < start:
        raise ValueError(f"start {start} and join {join} must be simulated states with start <= join")
    masks = [False] * start + [False] * (join - start) + [True] * (num_turns - join)
    for k, label in enumerate(labels):
        first, end = positions[k], positions[k + 1]
        if start <= first and end <= join:
            keep = label == BENEFICIAL or (label == NEUTRAL and neutral == "train")
            masks[first:end] = [keep] * (end - first)
    return masks
