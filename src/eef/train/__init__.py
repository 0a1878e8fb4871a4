"""Masked multi-turn SFT: conversations with per-turn masks -> token labels -> a checkpoint.

The settings import eagerly; the tokenizing and training parts, which import torch, load on first
use, so that reading a configuration stays quick.
"""

from importlib import import_module
from typing import Any

from eef.train.settings import LoraSettings, TrainConfig

_LAZY = {
    "Example": "data",
    "TokenizeStats": "data",
    "pack_examples": "data",
    "tokenize_conversation": "data",
    "tokenize_trajectories": "data",
    "TrainResult": "trainer",
    "train": "trainer",
}

__all__ = [
    "Example",
    "LoraSettings",
    "TokenizeStats",
    "TrainConfig",
    "TrainResult",
    "pack_examples",
    "tokenize_conversation",
    "tokenize_trajectories",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"eef.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'eef.train' has no attribute {name!r}")
