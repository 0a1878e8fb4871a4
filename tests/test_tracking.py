"""Experiment tracking: training steps and stage records reach TensorBoard; bad trackers are refused early."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForCausalLM

from eef.agent.prompt import build_prompt
from eef.config import ConfigError, load_config
from eef.errors import EefError
from eef.experts.oracle import oracle_trajectories
from eef.tracking import Tracking, check_trackers, open_trackers
from eef.train import TrainConfig, tokenize_trajectories, train


def scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar TensorBoard holds under ``logdir``: tag -> (step, value)."""
    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_each_training_step_reports_its_loss_and_learning_rate(shop_env, tiny_model_dir, tiny_tokenizer, tmp_path):
    prompt = build_prompt("shop")
    examples = tokenize_trajectories(
        oracle_trajectories(shop_env, shop_env.task_ids("train")[:6], prompt), tiny_tokenizer, 2048
    )[0]
    config = TrainConfig(
        epochs=2,
        learning_rate=1e-3,
        rows_per_step=2,
        micro_batch_rows=2,
        warmup_ratio=0.5,
        decay_ratio=0.0,
        packing=False,
    )
    tracking = Tracking(("tensorboard",), str(tmp_path / "tracking"), "run", "train-sft_pos-0")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    result = train(model, tiny_tokenizer, examples, tmp_path / "ckpt", config, tracking=tracking)
    logged = scalars(tmp_path / "tracking" / "run" / "train-sft_pos-0")
    assert [step for step, _ in logged["loss"]] == list(range(1, result.steps + 1))
    assert [value for _, value in logged["loss"]] == pytest.approx(result.losses, rel=1e-6)
    # 6 steps: 3 of warm-up to the peak, then the peak (no decay asked); each step's own rate
    rates = [value for _, value in logged["learning_rate"]]
    assert rates == pytest.approx([1e-3 / 3, 2e-3 / 3] + [1e-3] * 4), rates


def test_numbers_of_stage_records_are_logged_at_their_iteration(tmp_path):
    with open_trackers(Tracking(("tensorboard",), str(tmp_path), "run")) as trackers:
        trackers.log({"eval/eef/win_rate": 0.5, "eval/eef/note": "text", "flag": True}, step=1)
        trackers.log({"eval/eef/win_rate": 0.75}, step=2)
    logged = scalars(tmp_path / "run" / "stages")
    assert logged == {"eval/eef/win_rate": [(1, 0.5), (2, 0.75)]}  # text and booleans are not figures


def test_unknown_or_missing_trackers_are_refused_before_any_work(monkeypatch):
    with pytest.raises(EefError, match="--report-to: 'tensorbored' is not a tracker; known: tensorboard, wandb"):
        check_trackers(("tensorbored",), "--report-to")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(EefError, match=r"tracking.report_to: wandb needs the wandb package \(pip install wandb\)"):
        check_trackers(("tensorboard", "wandb"))
    with pytest.raises(
        ConfigError, match=r"tracking.report_to: \[1\] must be one of tensorboard, wandb, mlflow, got 'x'"
    ):
        load_config(None, ["tracking.report_to=[tensorboard, x]"])
