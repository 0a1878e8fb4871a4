"""The tiny default model: a small Llama trained from scratch, with a tokenizer made from the
environment's own text.

``create_tiny_model`` writes an ordinary Hugging Face model directory (config, safetensors weights,
tokenizer with a chat template), so every later stage loads it with ``from_pretrained`` exactly as
it loads Llama-3-8B-Instruct. The tokenizer is a byte-level BPE trained on text the environment
produces (observations, valid actions, the agent prompt), so the words of the task are single
tokens and any other text still encodes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from eef.agent.prompt import PromptConfig, build_prompt
from eef.checks import FieldErrors, at_least, check_fields
from eef.envs.protocol import SupportsOracle, TextEnv

ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
BOS, END, PAD = "<|begin|>", "<|end|>", "<|pad|>"
# Every message is `<|role|>` + newline + content + `<|end|>`; an assistant turn's loss covers its
# content and `<|end|>`, which is also the stop token.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
REACT_WORDS = "Thought: Action: search[ ] click[ ] Next > < Prev Back to Search Buy Now I should the item it"


MIN_VOCAB_SIZE = 300  # the 256 byte tokens, eef's special tokens and a few merges


@dataclass(frozen=True)
class TinyModelConfig:
    """Size of the tiny model and its tokenizer.

    Attributes:
        vocab_size: BPE vocabulary size (special tokens included); smaller if the text is small.
        hidden_size: model width.
        layers: decoder layers.
        heads: attention heads.
        kv_heads: key/value heads, a divisor of ``heads`` (None: as many as ``heads``). Fewer is
            grouped-query attention: a smaller KV cache, and decoding, which reads the whole
            cache at every token, is faster.
        intermediate_size: MLP width.
        max_positions: longest sequence (prompt + conversation) the model takes.
        corpus_tasks: tasks whose episodes feed the tokenizer's text.
        whole_tokens: strings that become single tokens (WebShop's ``[SEP]`` separator would
            otherwise cost three tokens each, about a fifth of a results page).
        space_tokens: a space is a token of its own, so a word has one token wherever it stands
            (``white`` in ``color: white`` and in ``click[white]``); with byte-level BPE's usual
            ``Ġwhite`` the agent must learn that two tokens are one word before it can copy it.
        seed: seed of the corpus walk and of the weight initialisation.
    """

    vocab_size: int = 2048
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int | None = None
    intermediate_size: int = 512
    max_positions: int = 4096
    corpus_tasks: int = 2000
    whole_tokens: tuple[str, ...] = (" [SEP]",)
    space_tokens: bool = False
    seed: int = 0

    @property
    def key_value_heads(self) -> int:
        """The model's key/value heads: ``kv_heads``, or one per head."""
        return self.kv_heads or self.heads

    def __post_init__(self) -> None:
        check_fields(
            self,
            vocab_size=at_least(MIN_VOCAB_SIZE),
            hidden_size=at_least(1),
            layers=at_least(1),
            heads=at_least(1),
            kv_heads=at_least(1),
            intermediate_size=at_least(1),
            max_positions=at_least(64),
            corpus_tasks=at_least(1),
        )
        if self.hidden_size % self.heads:
            raise FieldErrors([("hidden_size", f"{self.hidden_size} is not a multiple of heads ({self.heads})")])
        if self.heads % self.key_value_heads:  # grouped-query attention shares each key/value head evenly
            raise FieldErrors([("kv_heads", f"must divide heads ({self.heads}), got {self.kv_heads}")])


def environment_text(env: TextEnv, tasks: int, seed: int = 0) -> Iterator[str]:
    """Text an agent of ``env`` will see: observations along oracle (or random) episodes of the
    training tasks, the valid actions of every visited state, one detour per state, and the
    agent prompt."""
    rng = random.Random(seed)
    yield from (m.content for m in build_prompt(env.name, PromptConfig(one_shot=True), env))
    yield REACT_WORDS
    # the training split only: the test split's oracle actions are answers
    splits = ["train"] if "train" in env.splits() else env.splits()
    task_ids = list(dict.fromkeys(t for split in splits for t in env.task_ids(split)))[:tasks]
    for task_id in task_ids:
        yield env.reset(task_id)
        for _ in range(env.max_steps):
            actions = env.available_actions()
            yield " ".join(actions)
            concrete = [a for a in actions if "<" not in a.replace("< Prev", "")]  # not templates
            if concrete:  # a detour shows pages the oracle path does not
                snapshot = env.snapshot() if env.supports_snapshot else None
                detour = rng.choice(concrete)
                yield f"Action: {detour}\n" + env.step(detour).observation
                if snapshot is None:
                    break
                env.restore(snapshot)
            action = env.oracle_action() if isinstance(env, SupportsOracle) else rng.choice(actions or [""])
            result = env.step(action)
            yield f"Thought: I should act.\nAction: {action}\n{result.observation}"
            if result.done:
                break


def train_tokenizer(
    texts: Iterator[str], vocab_size: int, whole_tokens: tuple[str, ...] = (), space_tokens: bool = False
):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with eef's chat template and special tokens
    (``space_tokens``: each space a token of its own, see :class:`TinyModelConfig`)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Split(" ", behavior="isolated"), byte_level])
        if space_tokens
        else byte_level
    )
    core.decoder = decoders.ByteLevel()
    specials = [PAD, BOS, END, *ROLE_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(texts, trainer=trainer)
    core.add_tokens([AddedToken(t, normalized=False) for t in whole_tokens])
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=END,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
    )


def create_tiny_model(env: TextEnv, out_dir: str | Path, config: TinyModelConfig = TinyModelConfig()) -> Path:
    """Build the tokenizer from ``env``'s text, initialise a Llama, and save both to ``out_dir``.

    Returns:
        The model directory, loadable with ``AutoModelForCausalLM.from_pretrained``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = train_tokenizer(
        environment_text(env, config.corpus_tasks, config.seed),
        config.vocab_size,
        config.whole_tokens,
        config.space_tokens,
    )
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.key_value_heads,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(model_config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "eef_tiny_model.json").write_text(
        json.dumps(
            {
                "env": env.name,
                "env_info": dict(env.info),
                **asdict(config),
                "tokens": len(tokenizer),
                "parameters": sum(p.numel() for p in model.parameters()),
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    return out
