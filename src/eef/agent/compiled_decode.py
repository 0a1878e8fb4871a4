"""Decoding steps of a few fixed shapes through ``torch.compile``; on CUDA its CUDA graphs replay a
whole step as one launch (the tiny default's eager step is mostly kernel launches and Python).

A graph replays on the addresses it was recorded with, so each shape's KV cache and attention mask
live in a persistent workspace that every decode of that shape reuses: a prefill is copied into it
once, then every step writes in place. Rows and cache columns are padded to powers of two, so a
rollout meets few shapes: each cache width compiles once (transformers reads the cache's length as
a constant), every row count reuses it, and each shape records its own graph.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import StaticCache

from eef.agent.static_cache import keys_values, static_layers

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

MIN_ROWS, MIN_WIDTH = 8, 256
# workspaces kept (least recently used dropped first): a rollout alternates between a few shapes, and
# a shape whose workspace is made again records its graph again
MAX_WORKSPACES = 8
# on CUDA, older workspaces are dropped while less than this many times a new one's size is free
FREE_MEMORY_FACTOR = 2


def bucket_rows(rows: int, limit: int) -> int:
    """The rows a batch is padded to: a power of two from :data:`MIN_ROWS`, at most ``limit`` (the
    largest batch) unless ``rows`` is more.

    >>> [bucket_rows(n, 48) for n in (1, 3, 9, 17, 40, 48)]
    [8, 8, 16, 32, 48, 48]
    """
    return min(max(MIN_ROWS, 1 << (rows - 1).bit_length()), max(limit, rows))


def bucket_width(columns: int) -> int:
    """The cache columns a decode is padded to: a power of two from :data:`MIN_WIDTH`.

    >>> [bucket_width(n) for n in (1, 256, 257, 1500)]
    [256, 256, 512, 2048]
    """
    return max(MIN_WIDTH, 1 << (columns - 1).bit_length())


def next_token_logits(
    model: PreTrainedModel,
    cache_keyword: str,
    input_ids: torch.Tensor,
    attention: torch.Tensor,
    positions: torch.Tensor,
    cache: StaticCache,
    **attention_kwargs: Any,
) -> torch.Tensor:
    """One decoding step: every row's next-token logits after feeding it one token (``cache_keyword``:
    see :func:`eef.agent.hf_policy.cache_keyword`; ``attention_kwargs`` go to the attention function)."""
    outputs: Any = model(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=positions,
        use_cache=True,
        **{cache_keyword: cache},
        **attention_kwargs,
    )
    return outputs.logits[:, -1, :]


@dataclass
class Workspace:
    """One shape's persistent cache and attention mask."""

    cache: StaticCache
    attention: torch.Tensor


class CompiledDecoder:
    """Runs decoding steps of ``model`` on padded, persistent buffers through one compiled function.

    Args:
        model: the policy's model.
        cache_keyword: the forward argument that takes the cache (see :func:`eef.agent.hf_policy.cache_keyword`).
        max_rows: the largest batch the policy decodes.
        backend: ``torch.compile``'s backend, a name or a function (tests use ``aot_eager``, which
            compiles in seconds).
    """

    def __init__(
        self, model: PreTrainedModel, cache_keyword: str, max_rows: int, backend: str | Callable[..., Any] = "inductor"
    ):
        self.model, self.cache_keyword, self.max_rows = model, cache_keyword, max_rows
        self.device = next(model.parameters()).device
        # CUDA graphs need the inductor backend and a CUDA device; elsewhere the step is compiled only
        mode = "reduce-overhead" if self.device.type == "cuda" and backend == "inductor" else None
        self.compiled_forward = torch.compile(self._forward, backend=backend, mode=mode)
        self.workspaces: OrderedDict[tuple[int, int], Workspace] = OrderedDict()
        self.failure: str | None = None  # why compiling failed; the steps then run eagerly

    def step(
        self, input_ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor, cache: StaticCache
    ) -> torch.Tensor:
        """Next-token logits of every row after feeding it one token (``cache`` and ``attention``: a
        workspace's, from :meth:`adopt`)."""
        if self.failure is None:
            torch._dynamo.maybe_mark_dynamic(input_ids, 0)
            torch._dynamo.maybe_mark_dynamic(positions, 0)
            try:
                return self.compiled_forward(input_ids, attention, positions, cache)
            except torch._dynamo.exc.TorchDynamoException as error:  # e.g. no C compiler for the kernels
                cause = getattr(error, "inner_exception", None) or error  # a backend's own error, wrapped by dynamo
                self.failure = f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0]}"
                logger.warning("decoding eagerly: torch.compile failed: %s", self.failure)
        return self._forward(input_ids, attention, positions, cache)

    def _forward(
        self, input_ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor, cache: StaticCache
    ) -> torch.Tensor:
        return next_token_logits(self.model, self.cache_keyword, input_ids, attention, positions, cache)

    def adopt(
        self, cache: StaticCache, attention: torch.Tensor, positions: torch.Tensor, filled: int
    ) -> tuple[StaticCache, torch.Tensor, torch.Tensor]:
        """Copy a prefilled cache (its first ``filled`` columns) and its mask into the workspace of
        their padded shape; returns that workspace's cache and mask and the positions padded to its
        rows. Padding rows attend to their first column only, so their (ignored) logits stay finite."""
        rows, columns = attention.shape
        workspace = self._workspace(bucket_rows(rows, self.max_rows), bucket_width(columns), cache)
        workspace.attention.zero_()
        workspace.attention[:rows, :columns] = attention
        workspace.attention[rows:, 0] = 1
        for target, source in zip(static_layers(workspace.cache), static_layers(cache)):
            (keys, values), (new_keys, new_values) = keys_values(target), keys_values(source)
            keys[:rows, :, :filled] = new_keys[:, :, :filled]
            values[:rows, :, :filled] = new_values[:, :, :filled]
            target.cumulative_length.fill_(filled)
        padded = positions.new_zeros((workspace.attention.shape[0], 1))
        padded[:rows] = positions
        return workspace.cache, workspace.attention, padded

    def _workspace(self, rows: int, columns: int, sample: StaticCache) -> Workspace:
        """The workspace of a shape, allocated on first use like ``sample``'s layers."""
        key = (rows, columns)
        if key in self.workspaces:
            self.workspaces.move_to_end(key)
            return self.workspaces[key]
        layers = [keys_values(layer) for layer in static_layers(sample)]
        size = sum(t.element_size() * t[:1, :, :1].numel() for pair in layers for t in pair) * rows * columns
        while len(self.workspaces) >= MAX_WORKSPACES or (self.workspaces and not self._room_for(size)):
            self.workspaces.popitem(last=False)
        cache = StaticCache(config=self.model.config, max_cache_len=columns)
        for layer, (keys, values) in zip(static_layers(cache), layers):
            layer.lazy_initialization(keys[:1].expand(rows, -1, -1, -1), values[:1].expand(rows, -1, -1, -1))
        attention = torch.zeros((rows, columns), dtype=torch.long, device=keys.device)
        torch._dynamo.mark_static_address(attention)  # written in place between steps, like the cache
        # one compilation serves every row count (each still records its own CUDA graph): a static
        # address would otherwise fix the rows too, and each new count would compile again
        for layer in static_layers(cache):
            for tensor in keys_values(layer):
                torch._dynamo.maybe_mark_dynamic(tensor, 0)
        torch._dynamo.maybe_mark_dynamic(attention, 0)
        self.workspaces[key] = Workspace(cache, attention)
        return self.workspaces[key]

    def _room_for(self, size: int) -> bool:
        """Whether the device has room for a workspace of ``size`` bytes beside those kept (on CUDA,
        where the caches of a large model can fill the memory; elsewhere always)."""
        if self.device.type != "cuda":
            return True
        torch.cuda.empty_cache()  # dropped workspaces' memory back to the device
        return torch.cuda.mem_get_info(self.device)[0] >= FREE_MEMORY_FACTOR * size

    def clear(self) -> None:
        """Free every workspace and, on CUDA, every graph recorded in this thread: a run's next
        policy has its own weights and workspaces, at other addresses, so its graphs are recorded
        anew anyway, and the old ones would keep their memory and count towards torch's limit of
        re-recordings. (Another policy decoding compiled in the same thread records its graphs again.)"""
        self.workspaces.clear()
        if self.device.type == "cuda":
            from torch._inductor.cudagraph_trees import reset_cudagraph_trees

            reset_cudagraph_trees()
