"""One scripted episode recorded as a trajectory of ReAct turns."""

from __future__ import annotations

from collections.abc import Callable

from eef.agent.parse import format_turn
from eef.envs.protocol import TextEnv
from eef.trajectory import Message, Provenance, Trajectory, Turn


def play_episode(
    env: TextEnv,
    task_id: str,
    prompt: tuple[Message, ...],
    act: Callable[[str], tuple[str, str]],
    provenance: Provenance,
) -> Trajectory:
    """Reset ``task_id`` and let ``act(observation) -> (thought, action)`` play to the end.

    Every turn is trainable; the trajectory id is ``{provenance.source}/{task_id}``.
    """
    observation = first = env.reset(task_id)
    turns = []
    while True:
        thought, action = act(observation)
        step = env.step(action)
        turns.append(Turn(format_turn(thought, action), action, step.observation, step.reward))
        observation = step.observation
        if step.done:
            break
    return Trajectory(
        id=f"{provenance.source}/{task_id}",
        env=env.name,
        task_id=task_id,
        prompt=prompt,
        first_observation=first,
        turns=tuple(turns),
        reward=step.reward,
        success=step.terminated and env.is_success(step.reward),
        terminated=step.terminated,
        provenance=provenance,
    )
