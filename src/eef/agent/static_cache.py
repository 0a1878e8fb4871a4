"""The layers of a transformers ``StaticCache``, as the hf backend's decoding moves them."""

from __future__ import annotations

import torch
from transformers import StaticCache
from transformers.cache_utils import StaticLayer

from eef.errors import EefError


def static_layers(cache: StaticCache) -> list[StaticLayer]:
    """The layers of a static cache, each holding keys and values.

    Raises:
        EefError: a layer keeps other state (a linear-attention model's), which decoding here cannot move.
    """
    layers = [layer for layer in cache.layers if isinstance(layer, StaticLayer)]
    if len(layers) != len(cache.layers):
        raise EefError("the hf backend needs a model whose every layer caches keys and values")
    return layers


def keys_values(layer: StaticLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """A static layer's key and value tensors (allocated by its first write)."""
    assert layer.keys is not None and layer.values is not None, "a static cache layer read before its first write"
    return layer.keys, layer.values
