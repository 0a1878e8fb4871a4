"""Oracle demonstrations: an environment's perfect actions written as ReAct turns.

The oracle reads the environment's hidden goal (``SupportsOracle``), so its trajectories are
successes by construction; they serve as clean demonstrations for tests, benchmarks and
smoke runs. Actions are written as the page shows their targets (``click[B0042]``, ``click[Next >]``),
which is what a model copies from its observation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from eef.envs.protocol import SupportsOracle, TextEnv
from eef.errors import EefError
from eef.experts.episode import play_episode
from eef.trajectory import Message, Provenance, Trajectory

_CALL = re.compile(r"^(\w+)\[(.*)\]$", re.DOTALL)


def displayed(action: str, observation: str) -> str:
    """``action`` with its argument in the case the observation shows it (``click[b0042]`` ->
    ``click[B0042]``); unchanged when the observation does not show it."""
    call = _CALL.match(action)
    if not call:
        return action
    verb, argument = call.groups()
    for piece in observation.split("[SEP]"):
        if piece.strip().lower() == argument.lower():
            return f"{verb}[{piece.strip()}]"
    return action


def thought_for(action: str) -> str:
    """A short templated reason for a shop action."""
    call = _CALL.match(action)
    verb, argument = call.groups() if call else ("", action)
    if verb == "search":
        return f"I should search for {argument}."
    lowered = argument.lower()
    if lowered == "buy now":
        return "The item and its options match the instruction, so I buy it."
    if lowered == "next >":
        return "The item I want is not on this page; I look at the next page."
    if lowered in ("< prev", "back to search"):
        return "This is not the right place; I go back."
    if re.fullmatch(r"[a-z]\d{4,}", lowered) or re.fullmatch(r"b0[0-9a-z]{8}", lowered):
        return f"{argument} looks like the item the instruction describes."
    return f"The instruction asks for {argument}."


def oracle_trajectory(env: TextEnv, task_id: str, prompt: tuple[Message, ...], *, source: str = "oracle") -> Trajectory:
    """One episode of ``env.oracle_action()`` from reset, as a trajectory with every turn trainable."""
    if not isinstance(env, SupportsOracle):
        raise EefError(f"environment {env.name!r} has no oracle (oracle_action)")

    def act(observation: str) -> tuple[str, str]:
        action = displayed(env.oracle_action(), observation)
        return thought_for(action), action

    return play_episode(env, task_id, prompt, act, Provenance(source=source, model=source))


def oracle_trajectories(env: TextEnv, task_ids: Sequence[str], prompt: tuple[Message, ...]) -> list[Trajectory]:
    """:func:`oracle_trajectory` for each task."""
    return [oracle_trajectory(env, t, prompt) for t in task_ids]
