"""Trajectories: what an episode was, who produced each turn, and which turns train.

A trajectory is the conversation of one episode::

    prompt (system instruction, optional one-shot example: context only)
    user:      first observation              (o0)
    assistant: Thought + Action a0            (turns[0].text)
    user:      observation after a0           (turns[0].observation)
    assistant: ...                            (turns[1].text)
    ...

State ``s_k`` of a trajectory is the state after its first ``k`` turns, so restoring ``s_k``
means replaying ``turns[:k]``. Each :class:`Turn` carries its own ``trainable`` flag: the
per-turn masks every method writes (docs/method.md, "The loss").

Files of trajectories are read and written by :mod:`eef.trajectory_files`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    """One chat message; ``trainable`` marks assistant messages whose tokens carry loss."""

    role: str
    content: str
    trainable: bool = False

    def as_chat(self) -> dict[str, str]:
        """The ``{"role", "content"}`` dict chat templates and APIs take."""
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Turn:
    """One agent step: the model's text, the action parsed from it and the environment's answer.

    Attributes:
        text: the assistant message as generated (``Thought: ...\\nAction: ...``).
        action: the action sent to the environment (parsed from ``text``).
        observation: what the environment answered.
        reward: the step's reward.
        trainable: whether ``text`` carries loss when this trajectory is trained on.
    """

    text: str
    action: str
    observation: str
    reward: float = 0.0
    trainable: bool = True


@dataclass(frozen=True)
class Provenance:
    """Where a trajectory came from.

    Attributes:
        source: who acted: an expert's name (``gpt-4``, ``scripted``) or ``self`` (the policy).
        iteration: the method iteration that produced it (0 for expert data and SFT-POS).
        start_step: the first turn the policy produced; turns before it were replayed from
            ``parent_id`` (0 when the policy acted from ``s0``).
        parent_id: the trajectory whose prefix was replayed, or None.
        model: the model (checkpoint path or API name) that produced the policy's turns.
        sampling: the sampling settings used (temperature, top_p, seed, ...).
    """

    source: str
    iteration: int = 0
    start_step: int = 0
    parent_id: str | None = None
    model: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trajectory:
    """One episode of one task.

    Attributes:
        id: a stable id, unique within a file.
        env: the environment's registered name.
        task_id: the task's id in that environment.
        prompt: context before the first observation (system instruction, one-shot example).
        first_observation: the observation after reset.
        turns: the agent's steps in order.
        reward: the final reward (the last turn's reward; 0 when the episode was cut short).
        success: whether the environment counts ``reward`` as solving the task.
        terminated: the task ended (purchase, completion) rather than running out of steps.
        provenance: who produced it.
        meta: free-form extras (replay divergence, token counts, ...).
    """

    id: str
    env: str
    task_id: str
    prompt: tuple[Message, ...]
    first_observation: str
    turns: tuple[Turn, ...]
    reward: float
    success: bool
    terminated: bool
    provenance: Provenance
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def actions(self) -> list[str]:
        """The actions in order (``a0, a1, ...``)."""
        return [t.action for t in self.turns]

    @property
    def observations(self) -> list[str]:
        """The observation after each action (``o1, o2, ...``)."""
        return [t.observation for t in self.turns]

    def messages(self) -> list[Message]:
        """The whole conversation as chat messages, masks included.

        The observation after the last action is left out: nothing is generated after it.
        """
        out = list(self.prompt) + [Message("user", self.first_observation)]
        for i, turn in enumerate(self.turns):
            out.append(Message("assistant", turn.text, turn.trainable))
            if i + 1 < len(self.turns):
                out.append(Message("user", turn.observation))
        return out

    def context_at(self, step: int) -> list[Message]:
        """The conversation an agent sees in state ``s_step`` (before choosing action ``step``)."""
        if not 0 <= step <= len(self.turns):
            raise ValueError(f"state {step} outside 0..{len(self.turns)} of trajectory {self.id}")
        return conversation(self.prompt, self.first_observation, self.turns[:step])

    def with_masks(self, trainable: Sequence[bool]) -> Trajectory:
        """A copy whose turns carry the given trainable flags (one per turn)."""
        if len(trainable) != len(self.turns):
            raise ValueError(f"{len(trainable)} masks for {len(self.turns)} turns of {self.id}")
        return replace(self, turns=tuple(replace(t, trainable=bool(m)) for t, m in zip(self.turns, trainable)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the JSONL line format)."""
        return asdict(self)


def conversation(prompt: Sequence[Message], first_observation: str, turns: Sequence[Turn]) -> list[Message]:
    """Prompt, first observation, then each turn's text and the observation that answered it."""
    out = list(prompt) + [Message("user", first_observation)]
    for turn in turns:
        out += [Message("assistant", turn.text, turn.trainable), Message("user", turn.observation)]
    return out


# ---------------------------------------------------------------------------------------------
# JSONL I/O
