"""What a checkpoint was trained to do: its environment, that environment's options and the prompt.

Training records an :class:`AgentCard` in the checkpoint's ``eef_train.json``, so ``eef eval``,
``eef explore`` and ``eef serve`` can open a conversation the way training did without the user
repeating the run's prompt settings (a policy prompted otherwise acts otherwise).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eef.errors import EefError
from eef.train.settings import TRAIN_RECORD
from eef.trajectory import Message, Trajectory


@dataclass(frozen=True)
class AgentCard:
    """A checkpoint's environment and prompt.

    Attributes:
        env: the environment's registered name.
        prompt: the messages before the first observation.
        env_options: the options the environment was made with; None where training did not know
            them (``eef train`` on trajectory files).
    """

    env: str
    prompt: tuple[Message, ...]
    env_options: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept under ``agent`` in ``eef_train.json``."""
        return {
            "env": self.env,
            "env_options": self.env_options,
            "prompt": [{"role": m.role, "content": m.content} for m in self.prompt],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> AgentCard:
        """The card of :meth:`to_dict`'s form; ``where`` names the file in errors."""
        try:
            prompt = tuple(Message(str(m["role"]), str(m["content"])) for m in data["prompt"])
            options = data.get("env_options")
            if options is not None and not isinstance(options, dict):
                raise TypeError("env_options is not a mapping")
            return cls(str(data["env"]), prompt, options)
        except (KeyError, TypeError) as e:
            raise EefError(f"{where}: agent: not an agent card ({e})") from None


def card_of_trajectories(trajectories: Sequence[Trajectory], env_options: dict[str, Any] | None = None) -> AgentCard:
    """The card of a training set: the environment and prompt most of its trajectories share."""
    if not trajectories:
        raise ValueError("no trajectories")
    (env, prompt), _ = Counter(
        (t.env, tuple(Message(m.role, m.content) for m in t.prompt)) for t in trajectories
    ).most_common(1)[0]
    return AgentCard(env, prompt, env_options)


def read_agent_card(checkpoint: str | Path) -> AgentCard | None:
    """The card a checkpoint directory records; None for a hub id, a served model name or a
    checkpoint eef did not train.

    Raises:
        EefError: the record is not readable JSON or its card is malformed (naming the file).
    """
    record = Path(checkpoint) / TRAIN_RECORD
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EefError(f"{record}: not readable ({e})") from None
    card = data.get("agent") if isinstance(data, dict) else None
    return None if card is None else AgentCard.from_dict(card, str(record))


def served_agent_card(
    base_url: str, model: str, timeout_s: float = 10.0, api_key: str | None = None
) -> AgentCard | None:
    """The card an ``eef serve`` server lists for ``model`` at ``GET {base_url}/models`` (asked with
    ``api_key`` where the server wants one); None from other servers (vLLM, an API) or when the
    listing cannot be read (the run reports the server's errors when it sends its first request)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        reply = httpx.get(base_url.rstrip("/") + "/models", timeout=timeout_s, headers=headers)
        entries = reply.json().get("data", []) if reply.status_code == 200 else []
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("id") == model and isinstance(entry.get("eef_agent"), dict):
            return AgentCard.from_dict(entry["eef_agent"], f"{base_url}/models")
    return None
