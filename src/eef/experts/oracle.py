"""Oracle demonstrations: an environment's perfect actions written as ReAct turns.

The oracle reads the environment's hidden goal (``SupportsOracle``), so its trajectories are
successes by construction; they serve as clean demonstrations for tests, benchmarks and
smoke runs. Actions are written as the page shows their targets (``click[B0042]``, ``click[Next >]``),
which is what a model copies from its observation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from eef.agent.parse import format_turn
from eef.envs.protocol import SupportsOracle, TextEnv
from eef.errors import EefError
from eef.trajectory import Message, Provenance, Trajectory, Turn

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
    observation = first = env.reset(task_id)
    turns = []
    while True:
        action = displayed(env.oracle_action(), observation)
        step = env.step(action)
        turns.append(Turn(format_turn(thought_for(action), action), action, step.observation, step.reward))
        observation = step.observation
        if step.done:
            break
    return Trajectory(
        id=f"{source}/{task_id}", env=env.name, task_id=task_id, prompt=prompt, first_observation=first,
        turns=tuple(turns), reward=step.reward, success=step.terminated and env.is_success(step.reward),
        terminated=step.terminated, provenance=Provenance(source=source, model=source),
    )


def oracle_trajectories(env: TextEnv, task_ids: Sequence[str], prompt: tuple[Message, ...]) -> list[Trajectory]:
    """:func:`oracle_trajectory` for each task."""
    return [oracle_trajectory(env, t, prompt) for t in task_ids]
