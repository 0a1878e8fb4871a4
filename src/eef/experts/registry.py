"""Program experts by name: the one table behind ``eef run``'s expert sources and ``eef expert``.

A program expert plays one task from reset: ``program(env, task_id, prompt, settings) ->
Trajectory``. Built in: ``oracle`` (the environment's perfect actions), ``scripted`` (the built-in
shop's fallible shopper), ``gold`` and ``perturbed`` (ScienceWorld's gold sequences, intact or
broken). Register your own with :func:`register_expert`::

    from eef.experts.registry import register_expert

    def my_expert(env, task_id, prompt, settings):   # -> eef.trajectory.Trajectory
        ...

    register_expert("mine", my_expert)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eef.envs.protocol import TextEnv
from eef.errors import UnknownNameError
from eef.experts.oracle import oracle_trajectory
from eef.experts.scripted_shop import ScriptedExpertConfig, scripted_trajectory
from eef.trajectory import Message, Trajectory


@dataclass(frozen=True)
class ExpertSettings:
    """The settings every program expert is called with.

    Attributes:
        seed: with each task id, seeds the experts that draw (``scripted``, ``perturbed``).
        scripted: the scripted expert's mistake rates (None: its defaults).
    """

    seed: int = 0
    scripted: ScriptedExpertConfig | None = None


Program = Callable[[TextEnv, str, tuple[Message, ...], ExpertSettings], Trajectory]
"""A registered expert: ``(env, task_id, prompt, settings) -> trajectory``."""

Expert = Callable[[TextEnv, str, tuple[Message, ...]], Trajectory]
"""An expert bound to its settings: ``(env, task_id, prompt) -> trajectory``."""

_EXPERTS: dict[str, Program] = {}


def register_expert(name: str, program: Program, *, replace: bool = False) -> None:
    """Make ``program`` available as the expert ``name``.

    Raises:
        ValueError: ``name`` is taken and ``replace`` is False.
    """
    if name in _EXPERTS and not replace:
        raise ValueError(f"expert {name!r} is already registered (pass replace=True to replace it)")
    _EXPERTS[name] = program


def expert_names() -> list[str]:
    """The registered experts' names, sorted.

    >>> [name for name in expert_names() if name in ("gold", "oracle", "perturbed", "scripted")]
    ['gold', 'oracle', 'perturbed', 'scripted']
    """
    return sorted(_EXPERTS)


def expert_program(name: str, settings: ExpertSettings = ExpertSettings()) -> Expert:
    """The expert ``name`` bound to ``settings``: ``(env, task_id, prompt) -> trajectory``.

    Raises:
        UnknownNameError: no expert of that name (the message lists the known ones).
    """
    if name not in _EXPERTS:
        raise UnknownNameError("expert", name, expert_names())
    program = _EXPERTS[name]

    def play(env: TextEnv, task_id: str, prompt: tuple[Message, ...]) -> Trajectory:
        return program(env, task_id, prompt, settings)

    return play


def expert_trajectories(
    name: str,
    env: TextEnv,
    task_ids: Sequence[str],
    prompt: tuple[Message, ...],
    settings: ExpertSettings = ExpertSettings(),
) -> list[Trajectory]:
    """One episode of the expert ``name`` per task, in the order of ``task_ids``.

    Raises:
        UnknownNameError: no expert of that name.
    """
    play = expert_program(name, settings)
    return [play(env, task_id, prompt) for task_id in task_ids]


# -- the built-in experts ---------------------------------------------------------------------


def _oracle(env: TextEnv, task_id: str, prompt: tuple[Message, ...], settings: ExpertSettings) -> Trajectory:
    return oracle_trajectory(env, task_id, prompt)


def _scripted(env: TextEnv, task_id: str, prompt: tuple[Message, ...], settings: ExpertSettings) -> Trajectory:
    return scripted_trajectory(env, task_id, prompt, settings.scripted or ScriptedExpertConfig(), settings.seed)


# The ScienceWorld experts import the simulator's packages only when they play.
def _gold(env: TextEnv, task_id: str, prompt: tuple[Message, ...], settings: ExpertSettings) -> Trajectory:
    from eef.experts.scienceworld_gold import gold_trajectory

    return gold_trajectory(env, task_id, prompt)


def _perturbed(env: TextEnv, task_id: str, prompt: tuple[Message, ...], settings: ExpertSettings) -> Trajectory:
    from eef.experts.scienceworld_gold import PerturbConfig, perturbed_trajectory

    return perturbed_trajectory(env, task_id, prompt, PerturbConfig(seed=settings.seed))


register_expert("oracle", _oracle)
register_expert("scripted", _scripted)
register_expert("gold", _gold)
register_expert("perturbed", _perturbed)
