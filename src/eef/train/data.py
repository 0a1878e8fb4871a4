"""From conversations with per-turn masks to token ids and labels (the one place masks become loss).

``tokenize_conversation`` renders the whole conversation once with the model's chat template and
tokenises it once (no retokenisation drift between turns); the characters of each trainable
assistant message are found by rendering the conversation up to that message with and without
it, and every token whose characters lie inside such a message gets its id as label. Everything
else (system and user messages, observations, masked assistant turns, the template's role headers)
gets ``IGNORE_INDEX``. The end-of-turn token the template puts after a trainable message is
trained too: it is how the model learns to stop.

Over-long conversations: a conversation longer than ``max_length`` tokens is cut at
``max_length``; a trainable message cut in the middle loses its labels (it would teach an
unfinished turn), and an example left with no trainable token is dropped. Both are counted in
:class:`TokenizeStats`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eef.errors import EefError
from eef.trajectory import Message, Trajectory

IGNORE_INDEX = -100


class TemplateError(EefError, ValueError):
    """The chat template does not render conversations as prefixes of longer ones."""


@dataclass(frozen=True)
class Example:
    """One tokenised conversation.

    Attributes:
        input_ids: token ids of the whole conversation.
        labels: ``input_ids`` where the token trains, ``IGNORE_INDEX`` elsewhere.
        source: the trajectory id it came from.
    """

    input_ids: list[int]
    labels: list[int]
    source: str = ""

    @property
    def trained_tokens(self) -> int:
        """Tokens that carry loss."""
        return sum(label != IGNORE_INDEX for label in self.labels)


@dataclass
class TokenizeStats:
    """What tokenisation did to a data set.

    Attributes:
        examples: conversations kept.
        truncated: conversations cut at ``max_length`` (kept if something still trains).
        dropped: conversations dropped because no trainable token was left (or none was marked).
        tokens: tokens of the kept examples.
        trained_tokens: tokens that carry loss.
    """

    examples: int = 0
    truncated: int = 0
    dropped: int = 0
    tokens: int = 0
    trained_tokens: int = 0


def _render(tokenizer: Any, chats: list[dict[str, str]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(chats, tokenize=False, add_generation_prompt=generation_prompt)


def trainable_spans(messages: Sequence[Message], tokenizer: Any, source: str = "") -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its trainable assistant messages.

    Raises:
        TemplateError: the template renders a conversation's prefix differently from the
            start of the whole conversation (then no mask could be placed reliably).
    """
    chats = [m.as_chat() for m in messages]
    text = _render(tokenizer, chats)
    spans = []
    for i, message in enumerate(messages):
        if message.role != "assistant" or not message.trainable:
            continue
        head = _render(tokenizer, chats[:i], generation_prompt=True)
        upto = _render(tokenizer, chats[: i + 1])
        if not (text.startswith(upto) and upto.startswith(head)):
            raise TemplateError(
                f"{source or 'conversation'}: the chat template renders message {i} differently inside the whole "
                "conversation; per-turn masks need a template whose renderings of prefixes are prefixes "
                "(templates that drop earlier thoughts, as Qwen3's does, need a prefix-stable variant)"
            )
        end = len(head) + len(upto[len(head) :].rstrip())  # the template's trailing newline does not train
        spans.append((len(head), end))
    return text, spans


def tokenize_conversation(
    messages: Sequence[Message], tokenizer: Any, max_length: int, source: str = ""
) -> tuple[Example | None, bool]:
    """Token ids and labels of one conversation.

    Returns:
        ``(example, truncated)``; ``example`` is None when no trainable token remains.
    """
    text, spans = trainable_spans(messages, tokenizer, source)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    labels = [IGNORE_INDEX] * len(ids)
    span_index = 0
    for position, (start, end) in enumerate(offsets):
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        if span_index < len(spans) and spans[span_index][0] <= start and end <= spans[span_index][1] and end > start:
            labels[position] = ids[position]
    truncated = len(ids) > max_length
    if truncated:
        kept_end = offsets[max_length - 1][1]  # the last character the cut keeps
        ids, labels, offsets = ids[:max_length], labels[:max_length], offsets[:max_length]
        for start, end in spans:
            if start < kept_end < end:  # this message runs past the cut: it becomes context
                labels = [IGNORE_INDEX if start <= o[0] < end else label for label, o in zip(labels, offsets)]
    example = Example(ids, labels, source)
    return (example if example.trained_tokens else None), truncated


def tokenize_trajectories(
    trajectories: Iterable[Trajectory], tokenizer: Any, max_length: int
) -> tuple[list[Example], TokenizeStats]:
    """Tokenise trajectories with their per-turn masks (see the module docstring)."""
    examples, stats = [], TokenizeStats()
    for trajectory in trajectories:
        example, truncated = tokenize_conversation(trajectory.messages(), tokenizer, max_length, trajectory.id)
        stats.truncated += truncated
        if example is None:
            stats.dropped += 1
            continue
        examples.append(example)
        stats.examples += 1
        stats.tokens += len(example.input_ids)
        stats.trained_tokens += example.trained_tokens
    return examples, stats


@dataclass(frozen=True)
class PackedRow:
    """Several examples laid end to end in one training row.

    ``position_ids`` restart at 0 for each example; with no attention mask, transformers reads
    the restarts as sequence boundaries and builds a block-diagonal causal mask, so examples in
    a row never attend to each other.
    """

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]

    @classmethod
    def single(cls, example: Example) -> PackedRow:
        """A row holding ``example`` alone."""
        return cls(example.input_ids, example.labels, list(range(len(example.input_ids))))


def pack_examples(examples: Sequence[Example], max_length: int, seed: int = 0) -> list[PackedRow]:
    """First-fit-decreasing packing into rows of at most ``max_length`` tokens, rows shuffled."""
    rows: list[list[Example]] = []
    room: list[int] = []
    for example in sorted(examples, key=lambda e: -len(e.input_ids)):
        size = len(example.input_ids)
        slot = next((i for i, free in enumerate(room) if free >= size), None)
        if slot is None:
            rows.append([example])
            room.append(max_length - size)
        else:
            rows[slot].append(example)
            room[slot] -= size
    random.Random(seed).shuffle(rows)
    return [
        PackedRow(
            [t for e in row for t in e.input_ids],
            [t for e in row for t in e.labels],
            [p for e in row for p in range(len(e.input_ids))],
        )
        for row in rows
    ]
