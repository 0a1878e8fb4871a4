"""KV caches of recent conversations, reused when a conversation comes back one turn longer.

Entries are keyed by conversation (the rollout names each episode). A returning conversation
reuses its entry up to the longest common prefix of the cached tokens and its new prompt: the
chat template may tokenise the last assistant message differently from the ids that were
generated, and only the tokens after that point are fed again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class CacheEntry:
    """The tokens a model has already read and their keys and values, per layer.

    Attributes:
        tokens: token ids, in order.
        layers: per layer, (keys, values) of shape ``[1, kv_heads, len(tokens), head_dim]``.
    """

    tokens: list[int]
    layers: list[tuple[torch.Tensor, torch.Tensor]]


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix (binary search over C-level slice comparisons)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


class PrefixCache:
    """At most ``max_entries`` conversations' caches, the least recently stored evicted first."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, conversation: str | None, prompt: list[int]) -> tuple[CacheEntry | None, int]:
        """The conversation's entry and how many leading tokens of ``prompt`` it covers.

        At least the prompt's last token is left uncovered: its logits start the completion.
        """
        entry = self._entries.get(conversation) if conversation is not None else None
        covered = min(common_prefix_length(entry.tokens, prompt), len(prompt) - 1) if entry else 0
        return (entry, covered) if covered else (None, 0)

    def put(self, conversation: str, entry: CacheEntry) -> None:
        """Store (or replace) a conversation's entry, evicting the oldest beyond ``max_entries``."""
        self._entries.pop(conversation, None)
        self._entries[conversation] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, conversation: str) -> None:
        """Drop one conversation's entry (it has ended)."""
        self._entries.pop(conversation, None)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
