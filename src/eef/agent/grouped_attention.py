"""Decoding attention that reads each group of rows only as wide as its longest conversation.

A batch's KV cache is as wide as its longest conversation, so in the rollouts' mix of fresh and
nearly finished episodes much of what a decoding step's attention reads is padding.
:class:`eef.agent.hf_policy.HFPolicy` keeps every row's tokens contiguous at the right end of
the filled columns and passes ``row_spans``: groups of rows with the columns they need. Attention
then runs once per group on that slice of the cache; prefill and every other call go to
transformers' SDPA attention unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

NAME = "eef_grouped_sdpa"
# One more attention call costs about what reading this many cached (row, column) pairs does on
# the CPU; it sets how finely rows are grouped.
CALL_COST_IN_COLUMNS = 1024


def register() -> str:
    """Register the attention with transformers (idempotent); returns its implementation name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, grouped_sdpa)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the masks SDPA gets
    return NAME


def grouped_sdpa(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    row_spans: Sequence[tuple[int, int, int, int]] | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """SDPA attention; a one-token step with ``row_spans`` (row from, row to, column from, column
    to) attends each group of rows to its own columns only."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if row_spans is None or query.shape[2] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    outputs = [
        sdpa_attention_forward(
            module,
            query[r0:r1],
            key[r0:r1, :, c0:c1],
            value[r0:r1, :, c0:c1],
            None if attention_mask is None else attention_mask[r0:r1, ..., c0:c1],
            **kwargs,
        )[0]
        for r0, r1, c0, c1 in row_spans
    ]
    return torch.cat(outputs), None


def row_groups(lengths: Sequence[int], call_cost: int = CALL_COST_IN_COLUMNS) -> list[tuple[int, int, int]]:
    """Consecutive rows grouped to read the fewest cached columns, counting ``call_cost`` per
    group: ``(row from, row to, the group's longest length)``. Rows sorted by length group best.

    >>> row_groups([900, 880, 300, 290, 280, 20], call_cost=100)
    [(0, 2, 900), (2, 5, 300), (5, 6, 20)]
    >>> row_groups([900, 880, 300], call_cost=10**6)
    [(0, 3, 900)]
    """
    n = len(lengths)
    best = [0] * (n + 1)  # best[j]: the least cost of rows [0, j)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = 0
        for i in range(j - 1, -1, -1):  # the group [i, j)
            longest = max(longest, lengths[i])
            cost = best[i] + (j - i) * longest + call_cost
            if i == j - 1 or cost < best[j]:  # the first group tried sets best[j]
                best[j], cut[j] = cost, i
    groups, j = [], n
    while j > 0:
        groups.append((cut[j], j, max(lengths[cut[j] : j])))
        j = cut[j]
    return groups[::-1]
