"""Training throughput of eef's masked SFT trainer against TRL's SFTTrainer, same data and model.

    python benchmarks/sft.py [--examples 200] [--epochs 1] [--json]
    python benchmarks/sft.py --device cuda --model PATH_TO_0.5-1B_LLAMA --max-length 4096   # GPU mode
    python benchmarks/sft.py --grouping [--rows 8] [--json]   # one conversation per row: grouped vs random batches
    python benchmarks/sft.py --denormals --model RUN/sft_pos/checkpoint [--json]   # denormals kept vs flushed

Data: oracle demonstrations of the built-in shop, tokenised once with eef's per-turn masks; TRL
gets the same token ids and labels as a pre-tokenised data set, with its own packing (``bfd``,
padding-free position ids). Both use the same model, rows per step, learning rate, max length
and epochs. Throughput counts non-padding tokens per second of the training loop. Target: ratio
(ours / TRL) >= 1.3 on the 2-core CPU machine. With --json the last line is one JSON object.

``--grouping`` compares eef with itself instead, as the built-in default trains (no packing, one
conversation per row): random batches against batches of similar length (``group_by_length``).

``--denormals`` trains a trained checkpoint (a run's SFT-POS model: its sharp softmaxes underflow
into denormal numbers) as the default run does, in two fresh processes: one keeps denormals, one
flushes them before torch starts its threads (as ``eef run`` does).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import model_arguments, model_or_tiny, print_figures


def _data(model_dir: str, examples: int, max_length: int, expert: bool = False):
    """Oracle demonstrations, or (``expert``) the default run's SFT-POS data: the scripted expert's
    successes on the compact pages, whose lengths vary with the detours taken."""
    from transformers import AutoTokenizer

    from eef.agent.prompt import build_prompt
    from eef.envs import make
    from eef.experts.oracle import oracle_trajectories
    from eef.experts.scripted_shop import scripted_trajectories
    from eef.train import tokenize_trajectories

    env = make("shop", view="compact") if expert else make("shop")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if expert:
        played = scripted_trajectories(env, env.task_ids("train"), build_prompt("shop"))
        trajectories = [t for t in played if t.success][:examples]
    else:
        trajectories = oracle_trajectories(env, env.task_ids("train")[:examples], build_prompt("shop"))
    return tokenizer, tokenize_trajectories(trajectories, tokenizer, max_length)[0]


def _ours(model_dir, tokenizer, examples, args, out: Path, **layout: bool) -> float:
    from transformers import AutoModelForCausalLM

    from eef.train import TrainConfig, train

    config = TrainConfig(
        epochs=args.epochs,
        learning_rate=1e-3,
        rows_per_step=args.rows,
        micro_batch_rows=args.rows,
        max_length=args.max_length,
        mixed_precision="bf16" if args.device == "cuda" else "no",
        **layout,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir).to(args.device)
    result = train(model, tokenizer, examples, out / "ours", config)
    return result.tokens / result.seconds


def _trl(model_dir, tokenizer, examples, args, out: Path) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    dataset = Dataset.from_dict({"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]})
    config = SFTConfig(
        output_dir=str(out / "trl"),
        num_train_epochs=args.epochs,
        learning_rate=1e-3,
        per_device_train_batch_size=args.rows,
        max_length=args.max_length,
        packing=True,
        lr_scheduler_type="cosine",
        warmup_steps=0.03,
        logging_steps=1000,
        save_strategy="no",
        report_to=[],
        bf16=args.device == "cuda",
        use_cpu=args.device == "cpu",
        dataloader_num_workers=0,
        seed=0,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    tokens = sum(len(e.input_ids) for e in examples) * args.epochs
    start = time.perf_counter()
    trainer.train()
    return tokens / (time.perf_counter() - start)


def _denormal_rates(model_dir: str, args) -> dict[str, float]:
    """Training tokens/s of ``model_dir`` with denormals kept and flushed, each in a fresh process
    (the flush reaches only the threads started after it)."""
    rates = {}
    for mode in ("kept", "flushed"):
        command = [sys.executable, __file__, "--model", model_dir, "--examples", str(args.examples)]
        command += ["--epochs", str(args.epochs), "--rows", str(args.rows), "--one-rate", mode, "--json"]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        rates[mode] = json.loads(done.stdout.splitlines()[-1])["tokens_per_s"]
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    model_arguments(parser)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rows", type=int, default=4, help="Packed rows per optimizer step.")
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--grouping", action="store_true", help="Grouped vs random batches, no packing.")
    parser.add_argument("--denormals", action="store_true", help="A trained --model with denormals kept vs flushed.")
    parser.add_argument("--one-rate", choices=["kept", "flushed"], help=argparse.SUPPRESS)  # --denormals' processes
    args = parser.parse_args()
    if args.one_rate == "flushed":
        from eef.models.loading import flush_denormals

        flush_denormals()  # before torch's first parallel operation, as eef run
    if args.denormals:
        if not args.model:
            parser.error("--denormals needs --model: a trained checkpoint (a fresh model has no denormals)")
        rates = _denormal_rates(args.model, args)
        figures = {f"{mode}_tokens_per_s": rate for mode, rate in rates.items()}
        print_figures({**figures, "ratio": round(rates["flushed"] / rates["kept"], 3)}, args.json)
        return

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        model_dir = model_or_tiny(args.model, out)
        # --grouping and --denormals train on the default run's data (the scripted expert's successes)
        tokenizer, examples = _data(
            model_dir, args.examples, args.max_length, expert=args.grouping or bool(args.one_rate)
        )
        if args.one_rate:
            rate = _ours(model_dir, tokenizer, examples, args, out, packing=False, group_by_length=True)
            print_figures({"tokens_per_s": round(rate, 1)}, args.json)
            return
        if args.grouping:
            random = _ours(model_dir, tokenizer, examples, args, out, packing=False)
            grouped = _ours(model_dir, tokenizer, examples, args, out, packing=False, group_by_length=True)
            print_figures(
                {
                    "examples": len(examples),
                    "rows_per_step": args.rows,
                    "device": args.device,
                    "random_tokens_per_s": round(random, 1),
                    "grouped_tokens_per_s": round(grouped, 1),
                    "ratio": round(grouped / random, 3),
                },
                args.json,
            )
            return
        ours = _ours(model_dir, tokenizer, examples, args, out)
        trl = _trl(model_dir, tokenizer, examples, args, out)
    print_figures(
        {
            "examples": len(examples),
            "tokens_per_epoch": sum(len(e.input_ids) for e in examples),
            "device": args.device,
            "ours_tokens_per_s": round(ours, 1),
            "trl_tokens_per_s": round(trl, 1),
            "ratio": round(ours / trl, 3),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
