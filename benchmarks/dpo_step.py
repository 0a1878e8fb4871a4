"""The cost of one DPO step (ETO's update) against one masked-SFT step on the same pairs.

    python benchmarks/dpo_step.py [--pairs 32] [--pairs-per-step 4] [--steps 16] [--json]
    python benchmarks/dpo_step.py --device cuda --model PATH_TO_A_LLAMA --json   # GPU mode

Data: oracle demonstrations of the built-in shop (chosen) and the same episodes with other words
in every agent turn (rejected), tokenised with eef's per-turn masks. DPO trains on the pairs,
``--pairs-per-step`` pairs per step; SFT trains on the same conversations, both of each pair, so
a step holds the same tokens. Both loops train the same model from the same start, one process.
The figure is seconds per optimizer step of the training loop (the median of ``--repeats``
runs); DPO's reference log-probabilities, computed once before its first step, are timed apart
as ``reference_s``. Target: ``ratio`` (DPO step / SFT step) <= 2.2. With --json the last line is
one JSON object.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from _common import model_arguments, model_or_tiny, print_figures


def _pairs(model_dir: str, count: int, max_length: int):
    from transformers import AutoTokenizer

    from eef.agent.prompt import build_prompt
    from eef.envs import make
    from eef.experts.oracle import oracle_trajectories
    from eef.train.preference import tokenize_pairs

    env = make("shop")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chosen = oracle_trajectories(env, env.task_ids("train")[:count], build_prompt("shop"))
    rejected = [
        replace(t, turns=tuple(replace(u, text=u.text.replace("Action:", "Action: maybe")) for u in t.turns))
        for t in chosen
    ]
    return tokenizer, tokenize_pairs(list(zip(chosen, rejected)), tokenizer, max_length)[0]


def _step_seconds(model_dir: str, tokenizer, objective, args, out: Path, items_per_step: int) -> float:
    """Seconds per optimizer step of the training loop (preparation and saving left out)."""
    from transformers import AutoModelForCausalLM

    from eef.train import TrainConfig
    from eef.train.trainer import fit

    config = TrainConfig(
        epochs=args.steps * items_per_step / len(objective.items()),
        learning_rate=1e-4,
        rows_per_step=items_per_step,
        micro_batch_rows=items_per_step,
        max_length=args.max_length,
        mixed_precision="bf16" if args.device == "cuda" else "no",
    )
    result = fit(AutoModelForCausalLM.from_pretrained(model_dir), tokenizer, objective, out, config, device=args.device)
    return result.seconds / result.steps


def _timed_dpo(pairs, pad_id: int, pairs_per_step: int):
    """DPO that keeps how long its reference log-probabilities took."""
    import time

    from eef.train.preference import DirectPreference

    class TimedReference(DirectPreference):
        reference_s = 0.0

        def prepare(self, model, accelerator) -> None:
            began = time.perf_counter()
            super().prepare(model, accelerator)
            self.reference_s = time.perf_counter() - began

    return TimedReference(pairs, 0.1, pad_id, pairs_per_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--pairs-per-step", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=2048)
    model_arguments(parser)
    args = parser.parse_args()

    from eef.train.settings import TrainConfig
    from eef.train.trainer import MaskedSFT, pad_token_id

    with tempfile.TemporaryDirectory() as scratch:
        model_dir = model_or_tiny(args.model, Path(scratch))
        tokenizer, pairs = _pairs(model_dir, args.pairs, args.max_length)
        pad = pad_token_id(tokenizer)
        # SFT on the same conversations, one per row as DPO's rows
        conversations = [e for p in pairs for e in (p.chosen, p.rejected)]
        sft_rows = TrainConfig(max_length=args.max_length, packing=False)
        dpo, sft, reference = [], [], []
        for k in range(args.repeats):
            objective = _timed_dpo(pairs, pad, args.pairs_per_step)
            dpo.append(
                _step_seconds(model_dir, tokenizer, objective, args, Path(scratch) / f"dpo{k}", args.pairs_per_step)
            )
            reference.append(objective.reference_s)
            sft_objective = MaskedSFT(conversations, sft_rows, pad)
            sft.append(
                _step_seconds(
                    model_dir, tokenizer, sft_objective, args, Path(scratch) / f"sft{k}", 2 * args.pairs_per_step
                )
            )
    dpo_s, sft_s = statistics.median(dpo), statistics.median(sft)
    print_figures(
        {
            "pairs": len(pairs),
            "pairs_per_step": args.pairs_per_step,
            "device": args.device,
            "dpo_step_s": round(dpo_s, 4),
            "sft_step_s": round(sft_s, 4),
            "ratio": round(dpo_s / sft_s, 3),
            "target_ratio": 2.2,
            "reference_s": round(statistics.median(reference), 3),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
