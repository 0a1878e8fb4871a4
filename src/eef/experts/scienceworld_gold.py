"""Offline ScienceWorld experts: the simulator's gold sequences as ReAct turns, and failures made
from them.

:func:`gold_trajectory` plays a task's gold action sequence with a templated thought per
action. :func:`perturbed_trajectory` is a fallible expert for tests and small runs: per task
(reproducibly from ``(seed, task_id)``) it either plays the gold sequence or breaks it after a
random point that lies past at least one *key action* (an action that raised the score in the
gold episode): it skips a later key action, swaps two neighbouring actions, repeats one, or stops
early. Its failures therefore hold some key actions, which is what EEF learns from. Every
trajectory is played in the environment, so rewards and observations are real; a gold sequence
longer than the task's step limit ends truncated.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from eef.agent.parse import format_turn
from eef.envs.protocol import TextEnv
from eef.envs.scienceworld import ScienceWorldEnv
from eef.envs.scienceworld.tasks import STOCHASTIC_TASKS, parse_task_id
from eef.errors import EefError
from eef.trajectory import Message, Provenance, Trajectory, Turn

MODEL = "scienceworld-gold-v1"
PERTURBATIONS = ("skip", "swap", "repeat", "stop")

# (pattern, thought template): the first pattern that matches an action gives its thought.
_THOUGHTS = (
    (r"look around", "I look around to see what is here."),
    (r"look at (.+)", "I look at the {0} to learn more about it."),
    (r"look in (.+)", "I check what is inside the {0}."),
    (r"read (.+)", "I read the {0} for the information I need."),
    (r"(?:go|teleport) to (.+)", "What I need next is in the {0}, so I go there."),
    (r"open (.+)", "I open the {0}."),
    (r"close (.+)", "I close the {0}."),
    (r"pick up (.+)", "I pick up the {0} to take it with me."),
    (r"put down (.+)", "I put down the {0}."),
    (r"focus on (.+)", "The {0} is what the task is about, so I focus on it."),
    (r"move (.+) to (.+)", "I move the {0} to the {1}."),
    (r"(?:pour|dump) (.+) into (.+)", "I put the {0} into the {1}."),
    (r"mix (.+)", "Everything is in the {0}; I mix it."),
    (r"activate (.+)", "I turn on the {0}."),
    (r"deactivate (.+)", "I turn off the {0}."),
    (r"use (.+) on (.+)", "I use the {0} on the {1}."),
    (r"connect (.+) to (.+)", "I connect the {0} to the {1}."),
    (r"disconnect (.+)", "I disconnect the {0}."),
    (r"wait\d*", "I wait for the process to go on."),
    (r"(\d+)", "The simulator asks which one I mean; I choose option {0}."),
)


def thought_for(action: str) -> str:
    """A short templated reason for a ScienceWorld action.

    >>> thought_for("focus on red wire")
    'The red wire is what the task is about, so I focus on it.'
    """
    for pattern, template in _THOUGHTS:
        match = re.fullmatch(pattern, action.strip())
        if match:
            return template.format(*match.groups())
    return f"I {action}."


@dataclass(frozen=True)
class PerturbConfig:
    """How :func:`perturbed_trajectory` breaks gold sequences.

    Attributes:
        seed: with the task id, seeds each task's random stream.
        keep_gold: share of tasks played as the unchanged gold sequence.
        kinds: the perturbations to draw from (``skip``, ``swap``, ``repeat``, ``stop``).
    """

    seed: int = 0
    keep_gold: float = 0.4
    kinds: tuple[str, ...] = PERTURBATIONS

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(PERTURBATIONS)
        if unknown or not self.kinds:
            raise ValueError(f"perturbation kinds must be some of {', '.join(PERTURBATIONS)}, not {self.kinds}")


def perturb(actions: Sequence[str], key_steps: Sequence[int], kind: str, rng: random.Random) -> tuple[list[str], int]:
    """Break an action sequence after a point past its first key action.

    Args:
        actions: the gold sequence.
        key_steps: indices of its actions that raised the score.
        kind: ``skip`` (drop a later key action, else any later action), ``swap`` (two
            neighbours), ``repeat`` (do an action twice) or ``stop`` (cut the sequence).
        rng: the random stream.

    Returns:
        The new sequence and the index where it first differs from ``actions``.
    """
    actions = list(actions)
    earliest = key_steps[0] + 1 if key_steps else 1
    if len(actions) < 2 or earliest >= len(actions):
        return actions[:-1], len(actions) - 1  # nothing after the first key action: stop before the last
    at = rng.randrange(earliest, len(actions))
    if kind == "stop":
        return actions[:at], at
    if kind == "skip":
        later_keys = [i for i in key_steps if i >= at]
        at = rng.choice(later_keys) if later_keys else at
        return actions[:at] + actions[at + 1 :], at
    if kind == "swap" and at + 1 < len(actions):
        actions[at], actions[at + 1] = actions[at + 1], actions[at]
        return actions, at
    return actions[:at] + actions[at - 1 :], at  # repeat the action before ``at`` (also: swap at the last action)


def _play(
    env: ScienceWorldEnv,
    task_id: str,
    prompt: tuple[Message, ...],
    actions: Sequence[str],
    provenance: Provenance,
    meta: dict,
) -> tuple[Trajectory, list[int]]:
    """Play ``actions`` from reset until the episode ends or they run out; also returns the
    score after each step."""
    first = env.reset(task_id)
    turns, scores = [], []
    step = None
    for action in actions:
        step = env.step(action)
        turns.append(Turn(format_turn(thought_for(action), action), action, step.observation, step.reward))
        scores.append(step.info["score"])
        if step.done:
            break
    end = step if step is not None and step.done else None
    reward = end.reward if end is not None else 0.0  # a trajectory cut short has reward 0 (eef.trajectory)
    terminated = end is not None and end.terminated
    name = parse_task_id(task_id)[0]
    trajectory = Trajectory(
        id=f"{provenance.source}/{task_id}",
        env=env.name,
        task_id=task_id,
        prompt=prompt,
        first_observation=first,
        turns=tuple(turns),
        reward=reward,
        success=terminated and env.is_success(reward),
        terminated=terminated,
        provenance=provenance,
        meta={**meta, "score": scores[-1] if scores else 0, "stochastic": name in STOCHASTIC_TASKS},
    )
    return trajectory, scores


def _require_scienceworld(env: TextEnv) -> ScienceWorldEnv:
    if not isinstance(env, ScienceWorldEnv):
        raise EefError(f"the gold expert needs the scienceworld environment, not {env.name!r}")
    return env


def gold_trajectory(env: TextEnv, task_id: str, prompt: tuple[Message, ...]) -> Trajectory:
    """The gold sequence of ``task_id`` played from reset, every turn trainable."""
    env = _require_scienceworld(env)
    gold = env.gold_actions(task_id)
    return _play(env, task_id, prompt, gold, Provenance(source="gold", model=MODEL), {"gold_length": len(gold)})[0]


def perturbed_trajectory(
    env: TextEnv, task_id: str, prompt: tuple[Message, ...], config: PerturbConfig = PerturbConfig()
) -> Trajectory:
    """One episode of the fallible gold expert (see the module docstring); ``meta`` records the
    perturbation (``none`` for an unchanged gold sequence), where it starts and the key steps."""
    env = _require_scienceworld(env)
    rng = random.Random(f"{config.seed}/{task_id}")
    gold = env.gold_actions(task_id)
    provenance = Provenance(source="perturbed", model=MODEL, sampling=asdict(config))
    if rng.random() < config.keep_gold:
        return _play(env, task_id, prompt, gold, provenance, {"perturbation": "none", "gold_length": len(gold)})[0]
    _, scores = _play(env, task_id, prompt, gold, provenance, {})
    # A key step reaches a new best score (the first step cannot tell: the score before it is unknown).
    key_steps = [i for i in range(1, len(scores)) if scores[i] > max(scores[:i])]
    kind = rng.choice(config.kinds)
    # Gold sequences can go on after the task is complete; only the played part can be broken.
    actions, at = perturb(gold[: len(scores)], key_steps, kind, rng)
    meta = {"perturbation": kind, "perturbed_at": at, "key_steps": key_steps, "gold_length": len(gold)}
    return _play(env, task_id, prompt, actions, provenance, meta)[0]
