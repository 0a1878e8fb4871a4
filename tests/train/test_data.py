"""Token-level checks that only trainable assistant turns reach the labels."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerFast

from eef.train.data import IGNORE_INDEX, TemplateError, pack_examples, tokenize_conversation, tokenize_trajectories
from eef.trajectory import Message, Provenance, Trajectory, Turn

LLAMA3_STYLE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_STYLE = (  # ends every message with a newline after the end token, as Qwen's template does
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Drops the thoughts of earlier assistant turns (as some reasoning templates do): not prefix-stable.
UNSTABLE = (
    "{% for m in messages %}<|user|>{% if m['role'] == 'assistant' and not loop.last %}(old){% else %}"
    "{{ m['content'] }}{% endif %}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

CONVERSATION = [
    Message("system", "You shop."),
    Message("user", "WebShop [SEP] Instruction: [SEP] a red shirt [SEP] Search"),
    Message("assistant", "Thought: search it.\nAction: search[red shirt]", True),
    Message("user", "Page 1 [SEP] B0001 [SEP] red shirt [SEP] $10.00"),
    Message("assistant", "Thought: maybe.\nAction: click[B0002]", False),
    Message("user", "Invalid action [SEP] B0001 [SEP] red shirt"),
    Message("assistant", "Thought: this one.\nAction: click[B0001]", True),
]


def _with_template(tokenizer, template: str, end: str, extra: tuple[str, ...]) -> PreTrainedTokenizerFast:
    other = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend_tokenizer.__class__.from_str(tokenizer.backend_tokenizer.to_str()),
        bos_token="<|begin|>",
        eos_token=end,
        pad_token="<|pad|>",
        additional_special_tokens=list(extra),
    )
    other.chat_template = template
    return other


def _trained_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels) if label != IGNORE_INDEX])


def _templates(tiny_tokenizer):
    return {
        "eef tiny": (tiny_tokenizer, "<|end|>"),
        "llama-3 style": (
            _with_template(
                tiny_tokenizer, LLAMA3_STYLE, "<|eot_id|>", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
            ),
            "<|eot_id|>",
        ),
        "chatml style": (
            _with_template(tiny_tokenizer, CHATML_STYLE, "<|im_end|>", ("<|im_start|>", "<|im_end|>")),
            "<|im_end|>",
        ),
    }


@pytest.mark.parametrize("name", ["eef tiny", "llama-3 style", "chatml style"])
def test_only_trainable_assistant_tokens_and_their_end_token_are_labelled(tiny_tokenizer, name):
    tokenizer, end = _templates(tiny_tokenizer)[name]
    example, truncated = tokenize_conversation(CONVERSATION, tokenizer, 10_000)
    assert not truncated
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(example.input_ids, example.labels))
    expected = "".join(m.content + end for m in CONVERSATION if m.trainable)
    assert _trained_text(tokenizer, example) == expected
    trained = _trained_text(tokenizer, example)
    assert "click[B0002]" not in trained and "Invalid action" not in trained and "red shirt [SEP]" not in trained


def test_a_template_that_rewrites_earlier_turns_is_refused(tiny_tokenizer):
    tokenizer = _with_template(tiny_tokenizer, UNSTABLE, "<|end|>", ())
    with pytest.raises(TemplateError, match="prefixes"):
        tokenize_conversation(CONVERSATION, tokenizer, 10_000)


def test_a_turn_cut_by_max_length_loses_its_labels(tiny_tokenizer):
    full, _ = tokenize_conversation(CONVERSATION, tiny_tokenizer, 10_000)
    last_start = max(i for i, label in enumerate(full.labels) if label == IGNORE_INDEX) + 1
    cut, truncated = tokenize_conversation(CONVERSATION, tiny_tokenizer, last_start + 2)
    assert truncated and len(cut.input_ids) == last_start + 2
    assert _trained_text(tiny_tokenizer, cut) == CONVERSATION[2].content + "<|end|>"
    first_trained = full.labels.index(next(label for label in full.labels if label != IGNORE_INDEX))
    gone, truncated = tokenize_conversation(CONVERSATION, tiny_tokenizer, first_trained + 1)
    assert truncated and gone is None


def _trajectory(texts_and_masks, task="shop_1"):
    turns = tuple(Turn(text, "a", f"observation {i}", 0.0, mask) for i, (text, mask) in enumerate(texts_and_masks))
    return Trajectory(
        f"t-{task}",
        "shop",
        task,
        (Message("system", "sys"),),
        "first observation",
        turns,
        0.0,
        False,
        True,
        Provenance("test"),
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(alphabet="abc xyz[]:.\n0123", min_size=1, max_size=30), st.booleans()), min_size=1, max_size=6
    )
)
def test_labels_are_exactly_the_trainable_turns_for_any_mask_pattern(tiny_tokenizer, turns):
    example, _ = tokenize_conversation(_trajectory(turns).messages(), tiny_tokenizer, 10_000)
    expected = "".join(text + "<|end|>" for text, mask in turns if mask)
    if not expected:
        assert example is None
    else:
        assert _trained_text(tiny_tokenizer, example) == expected


def test_tokenize_trajectories_counts_dropped_examples(tiny_tokenizer):
    masked = _trajectory([("Action: x", False)], "shop_2")
    kept = _trajectory([("Action: y", True)], "shop_3")
    examples, stats = tokenize_trajectories([masked, kept], tiny_tokenizer, 10_000)
    assert [e.source for e in examples] == ["t-shop_3"]
    assert (stats.examples, stats.dropped, stats.truncated) == (1, 1, 0)
    assert stats.trained_tokens == examples[0].trained_tokens > 0


def test_packing_keeps_every_example_once_within_the_row_length(tiny_tokenizer):
    examples = [
        tokenize_conversation(
            _trajectory([("Action: " + "x" * n, True)], f"shop_{n}").messages(), tiny_tokenizer, 10_000
        )[0]
        for n in range(1, 30)
    ]
    rows = pack_examples(examples, 64)
    assert all(len(r.input_ids) <= 64 for r in rows)
    assert len(rows) < len(examples)
    pieces = sorted(tuple(r.input_ids[i : i + n]) for r in rows for i, n in _segments(r.position_ids))
    assert pieces == sorted(tuple(e.input_ids) for e in examples)


def _segments(positions):
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    return [(a, b - a) for a, b in itertools.pairwise(starts)]


def test_packed_examples_do_not_attend_to_each_other(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    from eef.train.trainer import collate, forward_logits

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    examples = [
        tokenize_conversation(_trajectory([(text, True)], f"shop_{i}").messages(), tiny_tokenizer, 10_000)[0]
        for i, text in enumerate(["Action: search[red]", "Thought: long one.\nAction: click[Buy Now]"])
    ]
    row = pack_examples(examples, 512)[0]
    assert len(_segments(row.position_ids)) == 2
    with torch.no_grad():
        packed = forward_logits(model, collate([row], tiny_tokenizer.pad_token_id))[0]
        for i, n in _segments(row.position_ids):
            alone = model(input_ids=torch.tensor([row.input_ids[i : i + n]])).logits[0]
            torch.testing.assert_close(packed[i : i + n], alone, atol=1e-4, rtol=1e-4)
