"""Training on the built-in shop lowers the loss on held-out turns; checkpoints reload."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from eef.agent.prompt import build_prompt
from eef.experts.oracle import oracle_trajectories
from eef.train import LoraSettings, TrainConfig, tokenize_trajectories, train, trainer
from eef.train.data import PackedRow
from eef.train.trainer import collate, evaluate_loss, forward_logits

CONFIG = TrainConfig(epochs=3, learning_rate=5e-3, rows_per_step=2, micro_batch_rows=2, max_length=1024)


@pytest.fixture(scope="module")
def data(shop_env, tiny_tokenizer):
    prompt = build_prompt("shop")
    train_set = tokenize_trajectories(
        oracle_trajectories(shop_env, shop_env.task_ids("train")[:40], prompt), tiny_tokenizer, 2048
    )[0]
    heldout = tokenize_trajectories(
        oracle_trajectories(shop_env, shop_env.task_ids("dev")[:10], prompt), tiny_tokenizer, 2048
    )[0]
    return train_set, heldout


def test_training_lowers_the_heldout_loss_and_saves_a_loadable_checkpoint(
    tiny_model_dir, tiny_tokenizer, data, tmp_path
):
    train_set, heldout = data
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = evaluate_loss(model, heldout, tiny_tokenizer.pad_token_id)
    result = train(model, tiny_tokenizer, train_set, tmp_path / "ckpt", CONFIG, metadata={"note": "test"})
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    after = evaluate_loss(reloaded, heldout, tiny_tokenizer.pad_token_id)
    assert after < 0.6 * before, (before, after)
    assert result.losses[-1] < result.losses[0]
    assert result.trained_tokens == 3 * sum(e.trained_tokens for e in train_set)
    assert result.tokens == 3 * sum(len(e.input_ids) for e in train_set)
    record = json.loads((tmp_path / "ckpt" / "eef_train.json").read_text())
    assert record["note"] == "test" and record["config"]["learning_rate"] == 5e-3
    assert not list(tmp_path.glob(".ckpt*"))  # the temporary directory was renamed into place


def test_the_same_seed_trains_the_same_weights(tiny_model_dir, tiny_tokenizer, data, tmp_path):
    train_set = data[0][:8]
    small = TrainConfig(epochs=1, learning_rate=3e-3, rows_per_step=2, micro_batch_rows=1, max_length=2048)
    losses = [
        train(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_tokenizer, train_set, tmp_path / f"run{i}", small
        ).losses
        for i in range(2)
    ]
    assert losses[0] == losses[1]


def test_lora_trains_adapters_and_saves_merged_weights(tiny_model_dir, tiny_tokenizer, data, tmp_path):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = TrainConfig(
        epochs=1,
        learning_rate=1e-2,
        rows_per_step=2,
        micro_batch_rows=2,
        max_length=2048,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
    )
    train(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_tokenizer, data[0][:8], tmp_path / "lora", config)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "lora")  # plain transformers, no PEFT needed
    base_weights, merged_weights = base.state_dict(), merged.state_dict()
    changed = [k for k in base_weights if not torch.equal(base_weights[k], merged_weights[k])]
    assert changed and all("proj" in k for k in changed)  # only adapted linear layers moved


def test_no_trainable_example_is_an_error(tiny_model_dir, tiny_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="no training examples"):
        train(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_tokenizer, [], tmp_path / "x", CONFIG)


def test_the_loss_over_kept_positions_equals_the_loss_over_full_logits(tiny_model_dir, tiny_tokenizer, data):
    from eef.train.data import IGNORE_INDEX
    from eef.train.trainer import collate, forward_logits, rows_for, token_loss_sum

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    batch = collate(rows_for(data[0][:3], TrainConfig(packing=False)), tiny_tokenizer.pad_token_id)
    targets = batch["labels"][:, 1:]
    full = torch.nn.functional.cross_entropy(
        forward_logits(model, batch)[:, :-1].flatten(0, 1),
        targets.flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    loss, count = token_loss_sum(model, batch)
    assert count == int((targets != IGNORE_INDEX).sum()) > 0
    assert torch.allclose(loss, full, rtol=1e-5), (loss, full)


def test_length_grouped_batches_take_every_row_once_per_pass_with_little_padding():
    import random

    from eef.train.trainer import LengthGroupedBatches

    lengths = [random.Random(i).randint(50, 1000) for i in range(355)]
    batches = LengthGroupedBatches(lengths, batch_rows=8, seed=0)
    passes = [list(batches) for _ in range(2)]
    for one in passes:
        assert sorted(i for b in one for i in b) == list(range(355)) and len(one) == len(batches)
        padded = sum(max(lengths[i] for i in b) * len(b) for b in one)
        assert padded < 1.1 * sum(lengths)  # random batches of 8 pad to ~1.5x
    assert passes[0] != passes[1]  # each pass draws a new order
    assert list(LengthGroupedBatches(lengths, 8, seed=0)) == passes[0]  # from the seed


def test_grouped_training_sees_every_token_each_epoch(tiny_model_dir, tiny_tokenizer, data, tmp_path):
    config = TrainConfig(
        epochs=2,
        learning_rate=3e-3,
        rows_per_step=4,
        micro_batch_rows=2,
        max_length=2048,
        packing=False,
        group_by_length=True,
    )
    result = train(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_tokenizer, data[0][:12], tmp_path / "grouped", config
    )
    assert result.steps == 6 and result.tokens == 2 * sum(len(e.input_ids) for e in data[0][:12])


def test_padding_continues_its_rows_positions():
    from eef.train.data import IGNORE_INDEX, PackedRow
    from eef.train.trainer import collate

    rows = [PackedRow([5, 6, 7], [IGNORE_INDEX, 6, 7], [0, 1, 2]), PackedRow([5, 6], [IGNORE_INDEX, 6], [0, 1])]
    batch = collate(rows, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 6, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 1, 2]]  # one causal sequence per row: no mask
    assert batch["labels"][1, 2] == IGNORE_INDEX and int(batch["num_tokens"]) == 5


@pytest.mark.parametrize("by_mask", [False, True] if trainer.KEEPS_BY_MASK else [False])
def test_kept_positions_get_the_logits_the_whole_batch_has_there(
    tiny_model_dir, tiny_tokenizer, data, by_mask, monkeypatch
):
    # rows keep different positions; older transformers take columns, newer a mask: both must agree
    monkeypatch.setattr(trainer, "KEEPS_BY_MASK", by_mask)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    rows = [PackedRow(e.input_ids, e.labels, list(range(len(e.input_ids)))) for e in data[0][:3]]
    batch = collate(rows, tiny_tokenizer.pad_token_id)
    keep = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    keep[0, 2] = keep[1, 5] = keep[2, 0] = keep[2, 7] = True
    with torch.no_grad():
        torch.testing.assert_close(forward_logits(model, batch, keep), forward_logits(model, batch)[keep])


# a million denormals (the smallest one's bits, as a view: no arithmetic), multiplied on every intra-op
# thread (torch splits the loop among them)
_DENORMALS_ON_EVERY_THREAD = """
import torch
from eef.models.loading import flush_denormals
torch.set_num_threads(2)
x = torch.tensor([1], dtype=torch.int32).view(torch.float32).expand(1_000_000)
{before}
flushed = flush_denormals()
print(flushed, int(((x * 1.0) != 0).sum()))
"""


@pytest.mark.parametrize(
    ("before", "nonzero_expected"),
    [("", False), ("(x * 1.0).sum()  # starts the threads before the flush", True)],
    ids=["flushed first: every thread", "threads started before: only the caller's"],
)
def test_flush_denormals_zeroes_denormal_arithmetic_on_the_threads_started_after_it(before, nonzero_expected):
    out = subprocess.run(
        [sys.executable, "-c", _DENORMALS_ON_EVERY_THREAD.format(before=before)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if out[0] != "True":
        pytest.skip("this CPU cannot flush denormals")
    assert (int(out[1]) > 0) is nonzero_expected, out
