"""Masked multi-turn SFT: conversations with per-turn masks -> token labels -> a checkpoint."""

from eef.train.data import Example, TokenizeStats, pack_examples, tokenize_conversation, tokenize_trajectories
from eef.train.trainer import LoraSettings, TrainConfig, TrainResult, train

__all__ = ["Example", "LoraSettings", "TokenizeStats", "TrainConfig", "TrainResult", "pack_examples",
           "tokenize_conversation", "tokenize_trajectories", "train"]
