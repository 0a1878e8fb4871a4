"""DPO on trajectory pairs: the loss by hand, masks respected, the cached reference, training that prefers."""

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM

from eef.agent.prompt import build_prompt
from eef.experts.oracle import oracle_trajectories
from eef.train import LoraSettings, TrainConfig
from eef.train.data import IGNORE_INDEX, Example
from eef.train.preference import DirectPreference, TokenizedPair, dpo_losses, sequence_logps, tokenize_pairs
from eef.train.trainer import KEEPS_BY_MASK, fit


class FixedLogits(torch.nn.Module):
    """A stand-in causal LM whose logits are a fixed table (rows, length, vocabulary), whatever the input."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, input_ids, position_ids, use_cache, logits_to_keep):
        keep = logits_to_keep
        return SimpleNamespace(logits=self.table[keep] if KEEPS_BY_MASK else self.table[:, keep])


def test_the_dpo_loss_of_a_two_token_pair_by_hand():
    # vocabulary {0, 1}; each row: a context token, then two trained tokens
    ln = math.log
    table = torch.tensor(
        [
            [[0.0, ln(3)], [0.0, 0.0], [0.0, 0.0]],  # chosen: p(1) = 3/4, then p(0) = 1/2
            [[ln(3), 0.0], [0.0, ln(4)], [0.0, 0.0]],  # rejected: p(1) = 1/4, then p(0) = 1/5
        ]
    )
    chosen, rejected = Example([0, 1, 0], [IGNORE_INDEX, 1, 0]), Example([0, 1, 0], [IGNORE_INDEX, 1, 0])
    objective = DirectPreference([TokenizedPair(chosen, rejected)], beta=0.5, pad_id=0)
    objective.reference = torch.tensor([[ln(0.5), ln(0.5)]])  # each side: log 1/2 under the reference
    batch = objective.collate([0])
    logps = sequence_logps(FixedLogits(table), batch)
    assert torch.allclose(logps, torch.tensor([ln(3 / 4 * 1 / 2), ln(1 / 4 * 1 / 5)]))
    margin = (ln(3 / 8) - ln(0.5)) - (ln(1 / 20) - ln(0.5))  # = ln 7.5
    expected = -ln(1 / (1 + math.exp(-0.5 * margin)))
    assert float(objective.loss_sum(FixedLogits(table), batch)) == pytest.approx(expected, rel=1e-6)
    assert float(dpo_losses(*logps, torch.tensor(ln(0.5)), torch.tensor(ln(0.5)), beta=0.5)) == pytest.approx(expected)


@pytest.fixture(scope="module")
def pairs(shop_env):
    """Oracle successes preferred over the same episodes with other words in each agent turn but the last."""
    prompt = build_prompt("shop")
    chosen = oracle_trajectories(shop_env, shop_env.task_ids("train")[:6], prompt)
    rejected = [
        replace(
            t,
            id=t.id + "-worse",
            turns=tuple(replace(u, text=u.text.replace("Action:", "Action: no")) for u in t.turns),
        )
        for t in chosen
    ]
    return list(zip(chosen, rejected))


def test_a_masked_turn_changes_nothing(pairs, tiny_model_dir, tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    chosen = pairs[0][0]
    masked_last = chosen.with_masks([True] * (len(chosen.turns) - 1) + [False])
    reworded = replace(
        masked_last, turns=masked_last.turns[:-1] + (replace(masked_last.turns[-1], text="Action: something else"),)
    )
    (pair,), _ = tokenize_pairs([(masked_last, reworded)], tiny_tokenizer, 2048)
    a, b = pair.chosen, pair.rejected
    logps = sequence_logps(model, DirectPreference([TokenizedPair(a, b)], 0.1, 0).collate([0]))
    assert a.input_ids != b.input_ids and a.trained_tokens == b.trained_tokens > 0
    assert torch.allclose(logps[0], logps[1])
    unmasked = tokenize_pairs([(chosen, chosen)], tiny_tokenizer, 2048)[0][0].chosen
    assert unmasked.trained_tokens > a.trained_tokens  # the masked turn's tokens counted nowhere


def test_the_cached_reference_equals_a_recomputation_and_training_prefers_the_chosen(
    pairs, tiny_model_dir, tiny_tokenizer, tmp_path
):
    tokenized, stats = tokenize_pairs(pairs, tiny_tokenizer, 2048)
    assert stats.examples == len(pairs) == len(tokenized) and stats.dropped == 0
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    objective = DirectPreference(tokenized, beta=0.5, pad_id=tiny_tokenizer.pad_token_id, reference_batch=4)
    objective.prepare(model, Accelerator(cpu=True))
    alone = torch.stack([sequence_logps(model, objective.collate([i])) for i in range(len(tokenized))])
    assert torch.allclose(objective.reference, alone, atol=1e-4)  # batched with padding = each pair alone

    config = TrainConfig(
        epochs=4, learning_rate=3e-3, rows_per_step=2, micro_batch_rows=2, max_length=2048, decay_ratio=0.0
    )
    result = fit(model, tiny_tokenizer, objective, tmp_path / "dpo", config)
    assert result.losses[0] == pytest.approx(math.log(2), abs=1e-3)  # the policy starts as the reference
    assert result.losses[-1] < 0.5 * math.log(2)
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "dpo")
    after = torch.stack([sequence_logps(trained, objective.collate([i])) for i in range(len(tokenized))])
    margins_before = objective.reference[:, 0] - objective.reference[:, 1]
    assert bool(((after[:, 0] - after[:, 1]) > margins_before).all())
    assert result.trained_tokens == 4 * stats.trained_tokens


def test_beta_must_be_above_zero():
    with pytest.raises(ValueError, match="beta must be a finite number above 0, got 0"):
        DirectPreference([], beta=0, pad_id=0)


def test_dpo_with_lora_trains_the_adapters_against_the_unadapted_reference(
    pairs, tiny_model_dir, tiny_tokenizer, tmp_path
):
    tokenized, _ = tokenize_pairs(pairs, tiny_tokenizer, 2048)
    objective = DirectPreference(tokenized, beta=0.5, pad_id=tiny_tokenizer.pad_token_id, reference_batch=4)
    config = TrainConfig(
        epochs=4, learning_rate=1e-2, rows_per_step=2, micro_batch_rows=2, max_length=2048, decay_ratio=0.0,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0),
    )  # fmt: skip
    result = fit(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_tokenizer, objective, tmp_path / "dpo", config
    )
    assert result.losses[0] == pytest.approx(math.log(2), abs=1e-3)  # fresh adapters change nothing: policy = reference
    assert result.losses[-1] < result.losses[0]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "dpo").state_dict()  # merged weights, plain transformers
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    assert changed and all("proj" in k for k in changed)
