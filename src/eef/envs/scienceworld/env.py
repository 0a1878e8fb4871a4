"""ScienceWorld on eef's environment protocol, through the simulator's fast step.

Tasks are variations of ScienceWorld's 30 task types, ``task-name/variation`` (``boil/3``), in the
package's train/dev/test splits or in ETO-style index files. An episode is the simulator's
``load`` + ``reset`` + ``look around`` and then one simulator step per action:

* **Fast step.** The package's ``env.step`` also enumerates the valid actions, looks around and
  reads the inventory on every step, several times the cost of the step itself; eef calls the
  simulator's own step and reads the score and completion flag. :meth:`available_actions`
  enumerates the valid actions only when asked, once per state.
* **End of an episode.** ``terminated`` when the task is completed or failed (the score goes
  negative, e.g. after focusing on the wrong thing); ``truncated`` after the task's step limit
  (ETO's limits by default; every call of ``step`` counts, invalid actions included).
* **Reward.** 0 on every step but the last; the last step's reward is the episode's score on
  0-1: 1.0 when the task is completed, else the best score reached during the episode / 100
  (ETO's convention; so a failed episode keeps the progress it made before failing). ``info``
  carries the simulator's current ``score`` (0-100, -100 after a failure) on every step.
  Success is a completed task (reward 1.0).
* **Restores.** The simulator cannot save a state; eef restores by reloading and replaying the
  actions (:func:`eef.envs.replay`), comparing observations as multisets of lines with the lists
  inside each line in any order. eef's JVMs make the simulator deterministic, so its own records
  replay exactly; records made elsewhere can diverge on
  :data:`~eef.envs.scienceworld.tasks.STOCHASTIC_TASKS`, which the replay reports.
* **JVM faults.** If the JVM dies or stops answering (``call_timeout_s`` of the pool) mid-episode,
  the environment takes a simulator in a new JVM, replays the episode so far and goes on, at most
  :data:`MAX_RESTARTS` times in a row; :attr:`metrics` counts restarts, retried episodes and
  replays that diverged while recovering.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eef.envs.protocol import StepResult, TextEnv
from eef.envs.scienceworld.jvm import JvmDied, JvmPool, Simulator
from eef.envs.scienceworld.observations import same_state
from eef.envs.scienceworld.tasks import (
    SPLITS,
    STOCHASTIC_TASKS,
    TASK_ORDER,
    parse_task_id,
    read_index_file,
    split_task_ids,
    step_limit,
    task_id,
    task_name,
)
from eef.errors import EefError, UnknownNameError

T = TypeVar("T")
NO_MATCH = "No known action matches that input."
SIMPLIFICATIONS = (
    "easy",
    "teleportAction",
    "openDoors",
    "openContainers",
    "selfWateringFlowerPots",
    "noElectricalAction",
)
ELECTRICAL_TASKS = ("power-component", "conductivity")
LOOK = "look around"
# A JVM that fails this many times in a row during one call is not transient.
MAX_RESTARTS = 3

INSTRUCTION = (
    "You are an agent in ScienceWorld, a text simulation of a house with a kitchen, workshop, greenhouse, "
    "foundry and other rooms, where you carry out elementary science experiments. Each turn, answer with one "
    "line 'Thought: ...' (your reasoning) and one line 'Action: ...' (one action). Actions: look around; "
    "look at OBJ; look in OBJ; read OBJ; go to LOC; teleport to LOC; open OBJ; close OBJ; pick up OBJ; "
    "put down OBJ; move OBJ to OBJ; pour OBJ into OBJ; dump OBJ into OBJ; mix OBJ; activate OBJ; "
    "deactivate OBJ; use OBJ on OBJ; connect OBJ to OBJ; disconnect OBJ; eat OBJ; flush OBJ; wait; wait1; "
    "inventory; focus on OBJ (only on the object the task names: focusing on a wrong one fails the task). "
    "When the simulator asks which object you mean, answer with the number of your choice."
)
# An invented episode (no ScienceWorld task's answer): it shows the format and the focus rule.
EXAMPLE = (
    (
        "Task Description:\nYour task is to find a(n) insect. First, focus on the thing. Then, move it to the "
        "green box in the bathroom.\n\nThis room is called the hallway. In it, you see:\n\tthe agent\n\ta "
        "substance called air\nYou also see:\n\tA door to the garden (that is open)",
        "Insects live outside; I go to the garden.",
        "teleport to garden",
    ),
    ("You teleport to the garden.", "I look for an insect here.", LOOK),
    (
        "This room is called the garden. In it, you see:\n\tthe agent\n\ta beetle\n\ta rock",
        "The beetle is an insect, so I focus on it.",
        "focus on beetle",
    ),
    ("You focus on the beetle.", "I take it with me.", "pick up beetle"),
    ("You move the beetle to the inventory.", "The green box is in the bathroom.", "teleport to bathroom"),
    ("You teleport to the bathroom.", "I put the beetle in the green box.", "move beetle to green box"),
)


@dataclass
class _Episode:
    name: str
    variation: int
    limit: int
    actions: list[str] = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    first_observation: str = ""  # empty until the simulator first shows it
    instruction: str = ""
    best_score: int = 0
    done: bool = False
    valid_actions: list[str] | None = None  # of the current state, once asked for

    @property
    def task_id(self) -> str:
        return task_id(self.name, self.variation)


@dataclass
class _Shared:
    """What an environment and its forks share: the JVMs and the gold sequences found so far."""

    pool: JvmPool
    gold: dict[str, list[str]] = field(default_factory=dict)


class ScienceWorldEnv(TextEnv):
    """ScienceWorld task variations as eef tasks (see the module docstring).

    Args:
        pool: the JVMs to run simulators in (shared by :meth:`fork`).
        tasks: task types to include, in any form ScienceWorld names them (default: all 30).
        simplifications: ScienceWorld's comma-separated simplifications; ``easy`` (ETO's setting)
            is teleport, open doors, self-watering flower pots and, except on the electrical tasks,
            no electrical actions.
        max_steps: one step limit for every task (default: ETO's per-task limits).
        step_limits: step limits of single tasks, overriding both.
        split_files: split name -> ETO-style index file (JSON ``[[task name, variation], ...]``);
            replaces the package's splits.
    """

    name = "scienceworld"
    supports_snapshot = False
    agent_instruction = INSTRUCTION
    agent_example = EXAMPLE
    metrics: dict[str, int]

    def __init__(
        self,
        pool: JvmPool,
        *,
        tasks: Sequence[str] | str | None = None,
        simplifications: str = "easy",
        max_steps: int | None = None,
        step_limits: Mapping[str, int] | None = None,
        split_files: Mapping[str, str] | None = None,
    ):
        if isinstance(tasks, str):
            tasks = tasks.split(",")
        chosen = {task_name(t) for t in tasks} if tasks else set(TASK_ORDER)
        self.tasks = tuple(t for t in TASK_ORDER if t in chosen)
        unknown = [s for s in simplifications.split(",") if s and s not in SIMPLIFICATIONS]
        if unknown:
            raise ValueError(f"unknown simplification {', '.join(unknown)}; known: {', '.join(SIMPLIFICATIONS)}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be positive, not {max_steps}")
        self.simplifications = simplifications
        self._max_steps = max_steps
        self._step_limits = {task_name(t): int(n) for t, n in (step_limits or {}).items()}
        if split_files:
            self._splits = {
                split: [t for t in read_index_file(path) if parse_task_id(t)[0] in chosen]
                for split, path in split_files.items()
            }
        else:
            self._splits = {split: split_task_ids(self.tasks, split) for split in SPLITS}
        self._shared = _Shared(pool)
        self._sim: Simulator | None = None
        self._episode: _Episode | None = None
        self._stale = False  # the simulator does not hold the episode's state (new, JVM died, gold load)
        self._restore_diverged = False
        self.metrics = {"episode_retries": 0, "restore_divergences": 0}

    # -- tasks -------------------------------------------------------------------------------
    def splits(self) -> list[str]:
        return list(self._splits)

    def task_ids(self, split: str) -> list[str]:
        if split not in self._splits:
            raise UnknownNameError("split", split, list(self._splits))
        return list(self._splits[split])

    @property
    def max_steps(self) -> int:  # type: ignore[override]  # read-only: the limit is the current task's
        """The current episode's step limit (before the first reset: the largest of the tasks)."""
        if self._episode is not None:
            return self._episode.limit
        return max(self.step_limit(t) for t in self.tasks)

    def task_group(self, task_id: str) -> str | None:
        """The task type (``boil``, ``find-animal``, ...)."""
        return parse_task_id(task_id)[0]

    def step_limit(self, name: str) -> int:
        """The step limit of task type ``name``."""
        return step_limit(task_name(name), self._max_steps, self._step_limits)

    def instruction(self) -> str:
        return self._require_episode().instruction

    def is_success(self, reward: float) -> bool:
        return reward >= 1.0

    def observations_match(self, expected: str, seen: str) -> bool:
        return same_state(expected, seen)

    @property
    def info(self) -> dict[str, Any]:  # type: ignore[override]  # read-only: computed from the pool's health
        """Settings and health figures (printed by ``eef env verify``)."""
        return {
            "simplifications": self.simplifications,
            "tasks": len(self.tasks),
            "step_limits": "eto" if self._max_steps is None else self._max_steps,
            "stochastic_tasks": sorted(STOCHASTIC_TASKS & set(self.tasks)),
            "jvms": len(self._pool.jvms),
            "heap_mb": self._pool.heap_mb,
            "jvm_restarts": self._pool.restarts,
            **self.metrics,
        }

    # -- episode -----------------------------------------------------------------------------
    def reset(self, task_id: str) -> str:
        name, variation = parse_task_id(task_id)
        episode = self._episode = _Episode(name, variation, self.step_limit(name))
        self._stale = True
        return self._run(lambda sim: episode.first_observation)

    def step(self, action: str) -> StepResult:
        episode = self._require_episode()
        if episode.done:
            raise RuntimeError("the episode is over; call reset(task_id)")
        observation, score, completed = self._run(lambda sim: self._apply(sim, action))
        episode.actions.append(action)
        episode.observations.append(observation)
        episode.valid_actions = None
        episode.best_score = max(episode.best_score, score)
        failed = score < 0
        terminated = completed or failed
        truncated = not terminated and len(episode.actions) >= episode.limit
        episode.done = terminated or truncated
        reward = 0.0
        if episode.done:
            reward = 1.0 if completed and not failed else episode.best_score / 100
        info = {"valid": observation != NO_MATCH, "score": score}
        if self._restore_diverged:
            info["restore_diverged"], self._restore_diverged = True, False
        return StepResult(observation, reward, terminated, truncated, info)

    def available_actions(self) -> list[str]:
        """The valid action-object combinations of the current state (enumerated on demand:
        this is the slow part of the package's ``env.step``)."""
        episode = self._require_episode()
        if episode.valid_actions is None:
            episode.valid_actions = self._run(lambda sim: sim.valid_actions())
        return list(episode.valid_actions)

    def snapshot(self) -> None:
        raise NotImplementedError("ScienceWorld cannot save a state; restore it with eef.envs.replay")

    def restore(self, snapshot: object) -> None:
        raise NotImplementedError("ScienceWorld cannot save a state; restore it with eef.envs.replay")

    def fork(self) -> ScienceWorldEnv:
        """Another environment with the same settings, its own simulator in the same JVM pool."""
        twin = object.__new__(ScienceWorldEnv)
        twin.__dict__.update(self.__dict__)
        twin._sim, twin._episode, twin._stale, twin._restore_diverged = None, None, False, False
        twin.metrics = dict.fromkeys(self.metrics, 0)
        return twin

    def jvm_rss_mb(self) -> list[float]:
        """Resident memory of each JVM of this environment's pool, in MB."""
        return self._pool.rss_mb()

    def close(self) -> None:
        """Give this environment's simulator back to the pool."""
        if self._sim is not None:
            self._pool.release(self._sim)
            self._sim = None
            self._stale = self._episode is not None  # a later call rebuilds the episode in a new simulator

    # -- gold sequences ----------------------------------------------------------------------
    def gold_actions(self, task_id: str) -> list[str]:
        """The simulator's gold action sequence of a task (computed once per task, then cached).

        Computing it reloads the simulator; an episode in progress is restored by replay before
        its next step.
        """
        name, variation = parse_task_id(task_id)
        key = f"{name}/{variation}"
        if key not in self._shared.gold:

            def compute(sim: Simulator) -> list[str]:
                self._stale = self._episode is not None
                sim.load(name, variation, self._simplifications_for(name), gold=True)
                return sim.gold_actions()

            self._shared.gold[key] = self._run(compute, key)
        return list(self._shared.gold[key])

    def oracle_action(self) -> str:
        """The next action of the gold sequence (``look around`` once it is used up).

        Raises:
            EefError: the episode left the gold sequence.
        """
        episode = self._require_episode()
        gold = self.gold_actions(episode.task_id)
        taken = len(episode.actions)
        if episode.actions != gold[:taken]:
            raise EefError(f"{episode.task_id}: the episode left the gold sequence; the oracle only replays it")
        return gold[taken] if taken < len(gold) else LOOK

    # -- simulator ---------------------------------------------------------------------------
    @property
    def _pool(self) -> JvmPool:
        return self._shared.pool

    def _require_episode(self) -> _Episode:
        if self._episode is None:
            raise RuntimeError("call reset(task_id) before using the environment")
        return self._episode

    def _simplifications_for(self, name: str) -> str:
        if not any(word in name for word in ELECTRICAL_TASKS):
            return self.simplifications
        # The electrical tasks need electrical actions (the simulator rejects this simplification).
        return ",".join(s for s in self.simplifications.split(",") if s != "noElectricalAction")

    @staticmethod
    def _apply(sim: Simulator, action: str) -> tuple[str, int, bool]:
        observation = sim.step(action)
        return observation, sim.score(), sim.completed()

    def _run(self, call: Callable[[Simulator], T], task: str | None = None) -> T:
        """``call(simulator)`` on a simulator holding the episode's state; when the JVM dies or gets stuck,
        take a simulator in a new JVM, replay the episode and try again.

        Raises:
            EefError: the JVM failed more than :data:`MAX_RESTARTS` times in a row (named by
                ``task``, default the episode's).
        """
        restarts = 0
        while True:
            try:
                if self._sim is None:
                    self._sim = self._pool.simulator()
                if self._stale:
                    self._rebuild(self._sim, self._require_episode())
                return call(self._sim)
            except JvmDied as e:
                restarts += 1
                # The next pass takes a simulator in a live JVM inside the ``try``, so a JVM that
                # dies while starting (or a simulator that could not be made) is retried too.
                if self._sim is not None:
                    self._pool.discard(self._sim.jvm, str(e))
                    self._sim = None
                self._stale = self._episode is not None
                if restarts > MAX_RESTARTS:
                    task = task or (self._episode.task_id if self._episode else "no task")
                    raise EefError(f"{task}: ScienceWorld's JVM failed {restarts} times in a row; last: {e}") from e
                self.metrics["episode_retries"] += self._stale

    def _rebuild(self, sim: Simulator, episode: _Episode) -> None:
        """Load the episode's task and replay its actions, checking the recorded observations."""
        sim.load(episode.name, episode.variation, self._simplifications_for(episode.name))
        sim.reset()
        episode.instruction = sim.task_description()
        first = f"Task Description:\n{episode.instruction}\n\n{sim.step(LOOK)}"
        diverged = bool(episode.first_observation) and not same_state(episode.first_observation, first)
        episode.first_observation = episode.first_observation or first
        for action, recorded in zip(episode.actions, episode.observations):
            diverged |= not same_state(recorded, sim.step(action))
        self._stale = False
        if diverged:
            self.metrics["restore_divergences"] += 1
            self._restore_diverged = True
