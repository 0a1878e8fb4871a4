"""The transformers backend: batch-independent seeded sampling, KV reuse, stops."""

import pytest
import torch

from eef.agent.hf_policy import HFPolicy, cache_keyword, prefill_groups
from eef.agent.policy import GenerationRequest, Policy, SamplingParams
from eef.errors import EefError
from eef.models.loading import load_model_and_tokenizer

SAMPLED = SamplingParams(temperature=1.0, max_new_tokens=12)


def _conversation(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You shop."},
        {"role": "user", "content": f"WebShop [SEP] Instruction: [SEP] item number {i} [SEP] Search"},
    ]


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return HFPolicy.from_pretrained(tiny_model_dir, device="cpu", prefix_cache_entries=0)


def test_a_seeded_sample_does_not_depend_on_its_batch(policy):
    alone = policy.generate([GenerationRequest(_conversation(3), seed=7)], SAMPLED)[0]
    batch = policy.generate([GenerationRequest(_conversation(i), seed=7 if i == 3 else i) for i in range(6)], SAMPLED)
    assert batch[3].text == alone.text
    other_seed = policy.generate([GenerationRequest(_conversation(3), seed=8)], SAMPLED)[0]
    assert other_seed.text != alone.text  # the seed matters (an untrained model samples near-uniformly)


def test_rows_that_finish_early_leave_the_others_unchanged(tiny_model_dir, monkeypatch):
    """Finished rows stay in the batch for a while, then are dropped from the cache (the slots
    are renumbered): every row's completion, and the KV kept for its next turn, must be its own."""
    cached = HFPolicy.from_pretrained(tiny_model_dir, device="cpu", prefix_cache_entries=16)
    alone = HFPolicy.from_pretrained(tiny_model_dir, device="cpu", prefix_cache_entries=0)
    stops = SamplingParams(temperature=1.0, max_new_tokens=24, stop=("e", "a"))  # ends rows at different tokens
    conversations = [_conversation(i) for i in range(8)]
    kept = []
    keep_slots = HFPolicy._keep_slots
    monkeypatch.setattr(
        HFPolicy, "_keep_slots", lambda self, cache, slots, *t: kept.append(slots) or keep_slots(self, cache, slots, *t)
    )
    batch = cached.generate(
        [GenerationRequest(c, seed=i, conversation=f"c{i}") for i, c in enumerate(conversations)], stops
    )
    assert len({c.completion_tokens for c in batch}) >= 3 and kept, "rows should finish apart and be dropped"
    assert [c.text for c in batch] == [
        alone.generate([GenerationRequest(c, seed=i)], stops)[0].text for i, c in enumerate(conversations)
    ]
    for conversation, completion in zip(conversations, batch):
        conversation += [{"role": "assistant", "content": completion.text}, {"role": "user", "content": "next"}]
    again = [GenerationRequest(c, seed=9, conversation=f"c{i}") for i, c in enumerate(conversations)]
    assert [c.text for c in cached.generate(again, SAMPLED)] == [c.text for c in alone.generate(again, SAMPLED)]


def test_completions_report_tokens_and_stop_at_the_length_limit(policy):
    completion = policy.generate([GenerationRequest(_conversation(1), seed=1)], SAMPLED)[0]
    assert completion.prompt_tokens == len(policy.encode_prompt(_conversation(1)))
    assert completion.completion_tokens <= 12
    if completion.completion_tokens == 12:
        assert completion.finish_reason == "length"


def test_stop_strings_cut_the_text(policy):
    params = SamplingParams(temperature=1.0, max_new_tokens=12)
    text = policy.generate([GenerationRequest(_conversation(2), seed=5)], params)[0].text
    stop = text.strip()[2:4]
    assert stop, "the untrained model should produce a few characters"
    cut = policy.generate(
        [GenerationRequest(_conversation(2), seed=5)], SamplingParams(temperature=1.0, max_new_tokens=12, stop=(stop,))
    )[0]
    assert stop not in cut.text and text.startswith(cut.text) and cut.finish_reason == "stop"


def test_kv_reuse_across_turns_gives_the_same_completions(tiny_model_dir, policy):
    cached = HFPolicy.from_pretrained(tiny_model_dir, device="cpu", prefix_cache_entries=8)
    conversations = [_conversation(i) for i in range(3)]
    for turn in range(3):
        requests = [GenerationRequest(c, seed=turn, conversation=f"c{i}") for i, c in enumerate(conversations)]
        with_cache = cached.generate(requests, SAMPLED)
        without = policy.generate(requests, SAMPLED)
        assert [c.text for c in with_cache] == [c.text for c in without]
        if turn:
            assert all(c.extra["cached_tokens"] > 0 for c in with_cache)
        if turn == 2:  # by the third turn most of each prompt is read from the cache
            assert sum(c.extra["cached_tokens"] for c in with_cache) > 0.6 * sum(c.prompt_tokens for c in with_cache)
        for conversation, completion in zip(conversations, with_cache):
            conversation += [
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": f"observation after turn {turn}"},
            ]


def test_a_long_new_conversation_beside_cached_ones_gives_the_same_completions(tiny_model_dir, policy):
    cached = HFPolicy.from_pretrained(tiny_model_dir, device="cpu", prefix_cache_entries=8)
    short = [_conversation(i) for i in range(3)]
    first = cached.generate([GenerationRequest(c, seed=1, conversation=f"c{i}") for i, c in enumerate(short)], SAMPLED)
    for conversation, completion in zip(short, first):
        conversation += [{"role": "assistant", "content": completion.text}, {"role": "user", "content": "next page"}]
    long = [
        {"role": "system", "content": "You shop."},
        {"role": "user", "content": " [SEP] ".join(f"item {i} red wool scarf" for i in range(60))},
    ]
    requests = [GenerationRequest(c, seed=2, conversation=f"c{i}") for i, c in enumerate(short)]
    requests.insert(1, GenerationRequest(long, seed=2, conversation="new"))
    fresh = [
        len(cached.encode_prompt(r.messages))
        - cached.prefix_cache.lookup(r.conversation, cached.encode_prompt(r.messages))[1]
        for r in requests
    ]
    assert len(prefill_groups(fresh)) == 2  # the new prompt is read apart from the continuations
    # each row's first logits and position are those of the row read alone
    prompts = [cached.encode_prompt(r.messages) for r in requests]
    reused = [cached.prefix_cache.lookup(r.conversation, p) for r, p in zip(requests, prompts)]
    _, _, positions, logits = cached._prefill(prompts, reused, 4)
    for row in range(4):
        _, _, alone_position, alone = cached._prefill([prompts[row]], [reused[row]], 4)
        assert positions[row] == alone_position[0] == len(prompts[row]) - 1
        assert torch.allclose(logits[row], alone[0], atol=1e-5)
    mixed = cached.generate(requests, SAMPLED)
    assert [c.text for c in mixed] == [c.text for c in policy.generate(requests, SAMPLED)]
    assert mixed[1].text == policy.generate([requests[1]], SAMPLED)[0].text
    assert all(mixed[i].extra["cached_tokens"] > 0 for i in (0, 2, 3))


def test_the_default_prefix_cache_keeps_every_conversation_of_a_full_batch(tiny_model_dir):
    wide = HFPolicy.from_pretrained(tiny_model_dir, device="cpu", max_batch_size=150)  # beyond 128 entries
    conversations = [_conversation(i) for i in range(150)]
    short = SamplingParams(temperature=1.0, max_new_tokens=2)
    for turn in range(2):
        completions = wide.generate(
            [GenerationRequest(c, seed=turn, conversation=f"c{i}") for i, c in enumerate(conversations)], short
        )
        for conversation, completion in zip(conversations, completions):
            conversation += [
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": "next page"},
            ]
    assert all(c.extra["cached_tokens"] > 0 for c in completions)


def test_grouped_decoding_attention_gives_the_completions_of_plain_attention(tiny_model_dir, monkeypatch):
    """On the CPU each group of rows attends only to its own width of the cache; what every row
    samples must not change (conversations of very different lengths make several groups)."""
    grouped = HFPolicy.from_pretrained(tiny_model_dir, device="cpu", prefix_cache_entries=0)
    plain = HFPolicy.from_pretrained(tiny_model_dir, device="cpu", prefix_cache_entries=0)
    plain.grouped = False  # the same attention function, called without row spans: transformers' SDPA
    assert grouped.grouped
    from transformers import AttentionInterface

    from eef.agent import grouped_attention

    spans = []  # what each call of the attention got

    def spy(module, query, key, value, mask, row_spans=None, **kwargs):
        spans.append(row_spans)
        return grouped_attention.grouped_sdpa(module, query, key, value, mask, row_spans=row_spans, **kwargs)

    monkeypatch.setitem(AttentionInterface._global_mapping, grouped_attention.NAME, spy)
    requests = [
        GenerationRequest([{"role": "user", "content": " ".join(f"red scarf {j}" for j in range(n))}], seed=i)
        for i, n in enumerate([3, 300, 10, 900, 40, 250])
    ]
    for params in (SAMPLED, SamplingParams(temperature=0.0, max_new_tokens=12)):
        spans.clear()
        grouped_texts = [c.text for c in grouped.generate(requests, params)]
        assert max(len(s or ()) for s in spans) >= 2  # decoding steps attended in several groups
        spans.clear()
        assert grouped_texts == [c.text for c in plain.generate(requests, params)]
        assert set(spans) == {None}


def test_a_policy_on_the_cpu_is_process_local_and_knows_its_context(policy):
    assert isinstance(policy, Policy) and policy.process_local
    assert policy.context_length == policy.model.config.max_position_embeddings > 0


def test_loading_what_is_not_a_model_is_one_line_error(tmp_path):
    with pytest.raises(EefError, match="cannot load a model and tokenizer"):
        load_model_and_tokenizer(tmp_path, device="cpu")


def test_the_cache_goes_to_the_argument_the_model_takes():
    class Newer:
        def forward(self, input_ids=None, cache=None, past_key_values=None): ...

    class Older:
        def forward(self, input_ids=None, past_key_values=None): ...

    assert (cache_keyword(Newer()), cache_keyword(Older())) == ("cache", "past_key_values")
