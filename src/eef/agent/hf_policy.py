"""A policy over Hugging Face transformers: CPU or CUDA, batched, one seed per conversation.

Decoding is a plain loop over ``model.forward`` with the KV cache rather than ``generate``: each
row draws from its own random generator seeded by its request, so a conversation's completion
does not depend on the rest of its batch, and rows that finish are soon dropped from the batch
(compiled decoding keeps them: see :mod:`eef.agent.compiled_decode`).
Loading checkpoints is :mod:`eef.models.loading`'s.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import StaticCache

from eef.agent import grouped_attention
from eef.agent.compiled_decode import CompiledDecoder, next_token_logits
from eef.agent.policy import DECODE_MODES, Completion, GenerationRequest, Policy, SamplingParams, apply_stop
from eef.agent.prefix_cache import CacheEntry, PrefixCache
from eef.agent.static_cache import keys_values, static_layers
from eef.models.loading import load_model_and_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Finished rows stay in the batch (fed padding, their output ignored) until a quarter of it has
# finished, since dropping rows gathers the whole KV cache.
COMPACT_AT = 0.75
# Up to this size kernel launches and Python are most of a decoding step, which CUDA graphs remove;
# a larger model's step is its arithmetic, and its persistent caches would hold much memory (vLLM serves it).
COMPILE_MAX_PARAMETERS = 1_500_000_000
# End-of-turn markers of common chat templates, used as stop tokens when the vocabulary has them.
END_OF_TURN_TOKENS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> set[int]:
    """Token ids that end an assistant turn: eos ids of the model and the template's end-of-turn."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer):  # a model that cannot generate has none
        eos = getattr(source, "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return ids


def prefill_groups(fresh: Sequence[int], spread: int = 3, slack: int = 64) -> list[list[int]]:
    """Rows to read in one forward, longest uncached part first; a row starts a new group when its
    group's longest is over ``spread`` times its own plus ``slack`` tokens.

    A forward pads every row to the longest: a continuing conversation's 40-token observation
    padded to a just-restored 700-token expert prefix would make that padding most of a
    rollout's compute. Small differences stay together (each forward has a fixed cost).

    >>> prefill_groups([700, 40, 650, 60, 10])
    [[0, 2], [3, 1, 4]]
    """
    groups: list[list[int]] = []
    for row in sorted(range(len(fresh)), key=lambda r: -fresh[r]):
        if groups and fresh[groups[-1][0]] <= spread * fresh[row] + slack:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def cache_keyword(model: PreTrainedModel) -> str:
    """The forward argument that takes the KV cache: ``cache`` in newer transformers, which
    deprecates ``past_key_values`` (removed in 5.40), and ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class HFPolicy(Policy):
    """Batched generation with a transformers causal LM.

    ``process_local`` is true when the model is on the CPU.

    Args:
        model: a loaded ``PreTrainedModel`` (see :func:`eef.models.loading.load_model_and_tokenizer`).
        tokenizer: its tokenizer, with a chat template.
        name: the name recorded in provenance (the checkpoint path).
        max_batch_size: conversations decoded together; longer batches are split.
        prefix_cache_entries: conversations whose KV cache is kept for their next turn (0: off;
            None: two batches' worth, so a rollout as wide as the batch keeps every conversation's);
            requests name their conversation. A multi-turn rollout then feeds each turn only its
            new tokens, as vLLM's prefix caching does.
        prefill_spread: rows whose uncached lengths differ more than this factor are read in
            separate forwards (see :func:`prefill_groups`); None reads every row in one.
        decode: ``compiled`` runs decoding steps through ``torch.compile`` on padded persistent
            buffers, with CUDA graphs on CUDA (see :mod:`eef.agent.compiled_decode`); ``eager``
            calls the model; ``auto`` compiles on CUDA for models of at most
            :data:`COMPILE_MAX_PARAMETERS`.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str = "hf",
        max_batch_size: int = 64,
        prefix_cache_entries: int | None = None,
        prefill_spread: int | None = 3,
        decode: str = "auto",
    ):
        if decode not in DECODE_MODES:
            raise ValueError(f"decode: expected one of {', '.join(DECODE_MODES)}, got {decode!r}")
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_batch_size = max_batch_size
        self.prefill_spread = prefill_spread
        entries = 2 * max_batch_size if prefix_cache_entries is None else prefix_cache_entries
        self.prefix_cache = PrefixCache(entries) if entries > 0 else None
        self.device = next(model.parameters()).device
        self.cache_keyword = cache_keyword(model)
        self.process_local = self.device.type == "cpu"
        self.stop_ids = stop_token_ids(tokenizer, model)
        if tokenizer.pad_token_id is None and not self.stop_ids:
            raise ValueError(f"{name}: the tokenizer has neither a pad token nor an end-of-sequence token")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.stop_ids)
        compiled = decode == "compiled" or (
            decode == "auto" and self.device.type == "cuda" and model.num_parameters() <= COMPILE_MAX_PARAMETERS
        )
        self.compiled = CompiledDecoder(model, self.cache_keyword, max_batch_size) if compiled else None
        # on the CPU an eager decoding step's attention reads each group of rows only as wide as it needs
        self.grouped = (
            not compiled and self.device.type == "cpu" and getattr(model.config, "_attn_implementation", None) == "sdpa"
        )
        if self.grouped:
            model.set_attn_implementation(grouped_attention.register())

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_batch_size: int = 64,
        prefix_cache_entries: int | None = None,
        prefill_spread: int | None = 3,
        decode: str = "auto",
    ) -> HFPolicy:
        """Load a checkpoint directory (or hub id) and wrap it."""
        model, tokenizer = load_model_and_tokenizer(path, device, dtype)
        return cls(
            model,
            tokenizer,
            name=str(path),
            max_batch_size=max_batch_size,
            prefix_cache_entries=prefix_cache_entries,
            prefill_spread=prefill_spread,
            decode=decode,
        )

    @property
    def context_length(self) -> int | None:
        """The model's context length, where its config gives one (see :mod:`eef.agent.serve`)."""
        length = getattr(self.model.config, "max_position_embeddings", None)  # not every architecture's config has it
        return length if isinstance(length, int) else None

    def encode_prompt(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a conversation followed by the assistant header."""
        text = self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in order; batches are formed by prompt length."""
        prompts = [self.encode_prompt(r.messages) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: -len(prompts[i]))
        results: dict[int, Completion] = {}
        for start in range(0, len(order), self.max_batch_size):
            chunk = order[start : start + self.max_batch_size]
            texts = self._decode(
                [prompts[i] for i in chunk],
                [requests[i].seed for i in chunk],
                [requests[i].conversation for i in chunk],
                params,
            )
            results.update(zip(chunk, texts))
        return [results[i] for i in range(len(requests))]

    def forget(self, conversation: str) -> None:
        """Free a finished conversation's cached KV."""
        if self.prefix_cache is not None:
            self.prefix_cache.forget(conversation)

    def close(self) -> None:
        """Drop the cached prefixes (the model is freed with the object)."""
        if self.prefix_cache is not None:
            self.prefix_cache.clear()
        if self.compiled is not None:
            self.compiled.clear()

    @torch.inference_mode()
    def _decode(
        self, prompts: list[list[int]], seeds: list[int], conversations: list[str | None], params: SamplingParams
    ) -> list[Completion]:
        batch = len(prompts)
        reused = [
            self.prefix_cache.lookup(c, p) if self.prefix_cache is not None else (None, 0)
            for c, p in zip(conversations, prompts)
        ]
        cache, attention, positions, logits = self._prefill(prompts, reused, params.max_new_tokens)
        if self.grouped:
            cache, attention = self._right_align(cache, attention, params.max_new_tokens)
        filled = attention.shape[1] - params.max_new_tokens  # cache columns written so far
        compiled = self.compiled if self.compiled is not None and self.compiled.failure is None else None
        if compiled is not None:  # rows and columns padded; finished rows stay, as a graph's shape is fixed
            cache, attention, positions = compiled.adopt(cache, attention, positions, filled)
        compact_at = 0.0 if compiled is not None else COMPACT_AT
        spans = self._row_spans(attention, filled)
        noise = [random.Random(seed) for seed in seeds]
        generated: list[list[int]] = [[] for _ in range(batch)]
        finish = ["length"] * batch
        rows = list(range(batch))  # the original row of each cache slot
        live = list(range(batch))  # cache slots still decoding
        feed = torch.full((len(attention), 1), self.pad_id, dtype=torch.long, device=self.device)
        for _ in range(params.max_new_tokens):
            tokens = self._sample(
                logits[live] if len(live) < len(logits) else logits, [noise[rows[slot]] for slot in live], params
            )
            still, still_tokens = [], []
            for slot, token in zip(live, tokens.tolist()):
                row = rows[slot]
                if token in self.stop_ids:
                    finish[row] = "stop"
                    continue
                generated[row].append(token)
                if self._hits_stop(generated[row], params.stop):
                    finish[row] = "stop"
                else:
                    still.append(slot)
                    still_tokens.append(token)
            if not still or len(generated[rows[still[0]]]) >= params.max_new_tokens:
                break
            if len(still) < len(live):
                ended = sorted(set(live) - set(still))
                self._remember(
                    cache,
                    attention[:, :filled],
                    [(slot, rows[slot]) for slot in ended],
                    prompts,
                    generated,
                    conversations,
                )
            feed[still, 0] = torch.tensor(still_tokens, device=self.device)
            if len(still) <= compact_at * len(rows):  # drop finished rows from the cache and the masks
                attention, positions, feed = self._keep_slots(cache, still, attention, positions, feed)
                rows, still = [rows[slot] for slot in still], list(range(len(still)))
                spans = self._row_spans(attention, filled)
            live = still
            attention[:, filled] = 1
            filled += 1
            positions = positions + 1
            if compiled is not None:
                logits = compiled.step(feed, attention, positions, cache)  # eager on its workspace if compiling fails
            else:
                grouping = {} if spans is None else {"row_spans": [(r0, r1, c0, filled) for r0, r1, c0 in spans]}
                logits = next_token_logits(
                    self.model, self.cache_keyword, feed, attention, positions, cache, **grouping
                )
        self._remember(
            cache, attention[:, :filled], [(slot, rows[slot]) for slot in live], prompts, generated, conversations
        )
        completions = []
        for row in range(batch):
            text, _ = apply_stop(self._text(generated[row]), params.stop)
            completions.append(
                Completion(
                    text.strip(), len(prompts[row]), len(generated[row]), finish[row], {"cached_tokens": reused[row][1]}
                )
            )
        return completions

    def _row_spans(self, attention: torch.Tensor, filled: int) -> list[tuple[int, int, int]] | None:
        """Groups of rows and the first cache column each needs (see :mod:`eef.agent.grouped_attention`);
        every row's tokens end at column ``filled``, so the column stays right as all rows grow."""
        if not self.grouped:
            return None
        lengths = attention[:, :filled].sum(dim=1).tolist()
        return [(r0, r1, filled - longest) for r0, r1, longest in grouped_attention.row_groups(lengths)]

    def _right_align(
        self, cache: StaticCache, attention: torch.Tensor, max_new_tokens: int
    ) -> tuple[StaticCache, torch.Tensor]:
        """Move each row's cached tokens, in order, to the right end of a cache as wide as the
        longest row (plus room for the completion): one copy of the cache, after which a row's
        padding is all on its left, which :func:`_row_spans` skips, and no row reads another's width.

        Keys carry their rotary positions already, so where a token sits in the cache does not matter."""
        filled = attention.shape[1] - max_new_tokens
        valid = attention[:, :filled].bool()
        width = int(valid.sum(dim=1).max())
        # a stable sort puts each row's padding columns first and its tokens after them, in order
        index = torch.sort(valid.to(torch.uint8), dim=1, stable=True).indices[:, filled - width :]
        aligned = torch.zeros((len(attention), width + max_new_tokens), dtype=attention.dtype, device=self.device)
        aligned[:, :width] = valid.gather(1, index)
        moved = StaticCache(config=self.model.config, max_cache_len=aligned.shape[1])
        for layer, old in zip(static_layers(moved), static_layers(cache)):
            old_keys, old_values = keys_values(old)
            heads, dim = old_keys.shape[1], old_keys.shape[3]
            columns = index[:, None, :, None].expand(-1, heads, -1, dim)
            layer.lazy_initialization(old_keys[:, :, :1], old_values[:, :, :1])
            keys, values = keys_values(layer)
            keys[:, :, :width] = old_keys.gather(2, columns)
            values[:, :, :width] = old_values.gather(2, columns)
            layer.cumulative_length.fill_(width)
            old.keys = old.values = None  # at most one layer's cache held twice
            del old_keys, old_values
        return moved, aligned

    def _keep_slots(self, cache: StaticCache, slots: list[int], *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Keep only ``slots`` of the cache and of ``tensors`` (a gather: it copies the whole cache)."""
        index = torch.tensor(slots, device=self.device)
        for layer in static_layers(cache):
            layer.keys, layer.values = (tensor[index] for tensor in keys_values(layer))
        return [tensor[index] for tensor in tensors]

    def _hits_stop(self, tokens: list[int], stop: tuple[str, ...]) -> bool:
        """Whether the text ends with a stop string; only the last tokens are decoded (a stop
        string spans at most as many tokens as it has characters, plus one partial token)."""
        if not stop:
            return False
        return apply_stop(self._text(tokens[-(max(map(len, stop)) + 1) :]), stop)[1]

    def _text(self, tokens: list[int]) -> str:
        """The text of generated tokens, without special tokens."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        assert isinstance(text, str), "one sequence of ids decodes to one string"
        return text

    def _prefill(
        self, prompts: list[list[int]], reused: list[tuple[CacheEntry | None, int]], max_new_tokens: int
    ) -> tuple[StaticCache, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read every row's uncached tokens; returns the cache (with room for the completion), the
        attention mask, each row's last position and its next-token logits.

        Rows whose uncached parts differ much in length are read in separate forwards (see
        :func:`prefill_groups`) and their caches then laid side by side, right-aligned.
        """
        fresh = [len(p) - covered for p, (_, covered) in zip(prompts, reused)]
        groups = prefill_groups(fresh, self.prefill_spread) if self.prefill_spread else [list(range(len(prompts)))]
        if len(groups) == 1:
            cache, input_ids, attention, positions = self._prefill_inputs(prompts, reused, max_new_tokens)
            return cache, attention, positions[:, -1:], self._first_logits(cache, input_ids, attention, positions)
        parts = []
        for rows in groups:
            cache, input_ids, attention, positions = self._prefill_inputs(
                [prompts[r] for r in rows], [reused[r] for r in rows], 0
            )
            logits = self._first_logits(cache, input_ids, attention, positions)
            parts.append((torch.tensor(rows, device=self.device), cache, attention, positions[:, -1:], logits))
        width, batch = max(part[2].shape[1] for part in parts), len(prompts)
        attention = torch.zeros((batch, width + max_new_tokens), dtype=torch.long, device=self.device)
        positions = torch.zeros((batch, 1), dtype=torch.long, device=self.device)
        logits = parts[0][4].new_empty((batch, parts[0][4].shape[1]))
        cache = StaticCache(config=self.model.config, max_cache_len=attention.shape[1])
        layers = static_layers(cache)
        for layer, sample in zip(layers, static_layers(parts[0][1])):
            sample_keys, sample_values = keys_values(sample)
            layer.lazy_initialization(
                sample_keys[:1].expand(batch, -1, -1, -1), sample_values[:1].expand(batch, -1, -1, -1)
            )
            layer.cumulative_length.fill_(width)
        for part_rows, part, part_attention, part_positions, part_logits in parts:
            offset = width - part_attention.shape[1]
            attention[part_rows, offset:width] = part_attention
            positions[part_rows], logits[part_rows] = part_positions, part_logits
            for layer, part_layer in zip(layers, static_layers(part)):
                (keys, values), (part_keys, part_values) = keys_values(layer), keys_values(part_layer)
                keys[part_rows, :, offset:width] = part_keys
                values[part_rows, :, offset:width] = part_values
        return cache, attention, positions, logits

    def _first_logits(
        self, cache: StaticCache, input_ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        return self.model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_keyword: cache},
        ).logits[:, -1, :]

    def _prefill_inputs(
        self, prompts: list[list[int]], reused: list[tuple[CacheEntry | None, int]], max_new_tokens: int
    ) -> tuple[StaticCache, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The cache and tensors of the first forward.

        Per row the cache holds ``[pad | reused KV][pad | new tokens][room for the completion]``:
        padding sits on the left of both parts, the attention mask hides it, and explicit positions
        continue each row's cached length, so rows with different cached prefixes share one
        forward. The cache is allocated once at its final length and written in place: growing it
        by concatenation would copy every row's whole KV at each generated token.
        """
        batch = len(prompts)
        cached = [covered for _, covered in reused]
        fresh = [p[c:] for p, c in zip(prompts, cached)]
        width_cached, width_new = max(cached), max(len(f) for f in fresh)
        input_ids = torch.full((batch, width_new), self.pad_id, dtype=torch.long)
        attention = torch.zeros((batch, width_cached + width_new + max_new_tokens), dtype=torch.long)
        positions = torch.zeros((batch, width_new), dtype=torch.long)
        for row, (c, tokens) in enumerate(zip(cached, fresh)):
            input_ids[row, width_new - len(tokens) :] = torch.tensor(tokens)
            attention[row, width_cached - c : width_cached] = 1
            attention[row, width_cached + width_new - len(tokens) : width_cached + width_new] = 1
            positions[row, width_new - len(tokens) :] = torch.arange(c, c + len(tokens))
        cache = StaticCache(config=self.model.config, max_cache_len=attention.shape[1])
        if width_cached:
            some = next(entry for entry, _ in reused if entry is not None)
            for index, layer in enumerate(static_layers(cache)):
                some_keys, some_values = some.layers[index]
                layer.lazy_initialization(
                    some_keys.new_zeros((batch, *some_keys.shape[1:])),
                    some_values.new_zeros((batch, *some_values.shape[1:])),
                )
                keys, values = keys_values(layer)
                for row, (entry, c) in enumerate(reused):
                    if entry is not None and c:  # a lookup covers no token exactly when it returns no entry
                        keys[row, :, width_cached - c : width_cached] = entry.layers[index][0][0, :, :c]
                        values[row, :, width_cached - c : width_cached] = entry.layers[index][1][0, :, :c]
                layer.cumulative_length.fill_(width_cached)
        return cache, input_ids.to(self.device), attention.to(self.device), positions.to(self.device)

    def _remember(
        self,
        cache: StaticCache,
        attention: torch.Tensor,
        slots_rows: list[tuple[int, int]],
        prompts: list[list[int]],
        generated: list[list[int]],
        conversations: list[str | None],
    ) -> None:
        """Keep finished rows' KV (the tokens actually fed) for the conversation's next turn."""
        if self.prefix_cache is None:
            return
        width = attention.shape[1]
        for slot, row in slots_rows:
            conversation = conversations[row]
            if conversation is None:
                continue
            mask = attention[slot].bool()
            fed = (prompts[row] + generated[row])[: int(mask.sum())]
            layers = [
                (keys[slot : slot + 1, :, :width][:, :, mask], values[slot : slot + 1, :, :width][:, :, mask])
                for keys, values in map(keys_values, static_layers(cache))
            ]
            self.prefix_cache.put(conversation, CacheEntry(fed, layers))

    @staticmethod
    def _sample(logits: torch.Tensor, noise: list[random.Random], params: SamplingParams) -> torch.Tensor:
        """One token per row by inverse-CDF sampling: each row draws exactly one uniform from its
        own generator per token, so its completion depends only on its seed (one Python draw per
        row is cheaper than a seeded ``torch.multinomial`` per row)."""
        if params.temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits.float() / params.temperature, dim=-1)
        if params.top_p < 1:
            sorted_probs, sorted_idx = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs > params.top_p  # keep the token that crosses
            sorted_probs[outside] = 0
            probs = torch.zeros_like(probs).scatter(-1, sorted_idx, sorted_probs)
        cdf = probs.cumsum(dim=-1)
        draws = torch.tensor([generator.random() for generator in noise], dtype=cdf.dtype, device=cdf.device)
        picked = torch.searchsorted(cdf, (draws * cdf[:, -1])[:, None], right=True)[:, 0]
        return picked.clamp_(max=probs.shape[-1] - 1)  # a draw rounding up to the total mass
