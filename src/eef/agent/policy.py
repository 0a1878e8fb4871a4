"""One small interface for every way of running a model: a batch of conversations in, texts out.

Backends: :mod:`eef.agent.hf_policy` (transformers, CPU or CUDA), :mod:`eef.agent.openai_policy`
(any OpenAI-compatible server: vLLM serve, SGLang, hosted APIs), :mod:`eef.agent.vllm_policy`
(vLLM's offline engine). Each request carries its own seed, so a conversation samples the same
completion whatever else shares its batch: a rollout restored from an intermediate state can
then repeat the original rollout exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from eef.checks import at_least, between, check_fields
from eef.resources import NOTHING, Closable

# how the hf backend runs decoding steps: auto compiles them on CUDA for models up to 1.5B parameters
# (eef.agent.hf_policy.HFPolicy); here, where configuration reads it without loading torch
DECODE_MODES = ("auto", "eager", "compiled")


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy decoding.

    Attributes:
        temperature: softmax temperature; 0 for greedy.
        top_p: nucleus sampling mass.
        max_new_tokens: the longest completion.
        stop: strings that end a completion (not included in it).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "stop", tuple(self.stop))  # a list would make the settings unhashable
        check_fields(self, temperature=at_least(0), top_p=between(0, 1, open_low=True), max_new_tokens=at_least(1))

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (recorded in trajectories' provenance)."""
        return {**asdict(self), "stop": list(self.stop)}


@dataclass(frozen=True)
class GenerationRequest:
    """One conversation to continue.

    Attributes:
        messages: ``{"role", "content"}`` dicts, ending with a user message.
        seed: the seed of this request's sampling noise.
        conversation: a name for the conversation this request continues; backends that keep
            per-conversation state (the HF backend's KV cache) use it, others ignore it.
    """

    messages: Sequence[dict[str, str]]
    seed: int = 0
    conversation: str | None = None


@dataclass(frozen=True)
class Completion:
    """A generated assistant message.

    Attributes:
        text: the message text, without the end-of-turn token or stop string.
        prompt_tokens: tokens in the prompt (as the backend counted them).
        completion_tokens: tokens generated.
        finish_reason: ``stop`` (end of turn or a stop string) or ``length``.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Policy(Closable, Protocol):
    """Anything that continues conversations.

    ``name`` identifies the model in provenance records (a checkpoint path or an API model name).
    Subclass it to get the defaults of the optional parts: ``forget``, for backends that keep
    per-conversation state; ``process_local = True`` when the policy computes on the CPU of this
    process and holds nothing outside it (no GPU context, socket or engine), so forked rollout
    workers may use copies of it; ``metrics``, counters of the backend's incidents (retries,
    timeouts) summed into each stage's record; ``close`` and ``with policy:``.
    """

    name: str
    process_local: bool = False
    metrics: Mapping[str, int] = NOTHING

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in order."""
        ...

    def forget(self, conversation: str) -> None:
        """Drop what is kept for a finished conversation (nothing by default)."""
        return None  # a body, so that the default is not abstract


def apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop string; returns the text and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
