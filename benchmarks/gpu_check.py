"""One device check of eef's GPU path: the default run, its exploration, a 1B Llama, an 8B Llama's LoRA memory.

    bash benchmarks/gpu_check.sh                     # on the lent GPU machine (see its header)
    python benchmarks/gpu_check.py [--device cuda] [--parts explore,llama_1b] [--json]
    python benchmarks/gpu_check.py --small --device cpu --json   # everything tiny (tests/test_gpu_check.py)

Figures (a part that fails leaves a one-line message under ``errors``; the other parts still run):

    default_run_s, <method>_best_win_rate   `eef run` of the built-in default end to end, and each method's best
                                            test win rate; target on one H100/H200: default_run_target_s (180 s)
    explore_steps_per_s, explore_ratio      the default run's s0 exploration (800 training tasks, 64 environments,
                                            compact view, the run's SFT-POS model) on the device, and its ratio to
                                            explore_cpu_steps_per_s (2-core CPU, two workers); target: ratio >= 10;
                                            explore_decode: how the hf backend decoded (compiled, with CUDA graphs,
                                            on a GPU; its compilation is in the figure; failed: compiling failed,
                                            explore_compile_failure says why, and it decoded eagerly)
    explore_warm_steps_per_s,               a quarter of those tasks again, compiled already, and eagerly;
      explore_eager_steps_per_s,            explore_compiled_vs_eager is the first over the second
      explore_compiled_vs_eager
    explore_compiled_graphs,                graphs torch.compile made, and steps where CUDA graphs were skipped
      explore_cudagraph_skips               (a mutated input, a recompilation limit): both say whether graphs ran
    llama_1b_rollout_steps_per_s            a random-weight Llama of 1B shape (`eef model init`) rolling out 64 shop
                                            test tasks, 64 environments at a time, decoding eagerly
    llama_1b_lora_tokens_per_s              LoRA (r=16) training of that model on the shop's oracle demonstrations
    llama_8b_lora_peak_gib                  peak memory of one LoRA step of an 8B-shaped Llama (shop vocabulary, 4096
                                            tokens, gradient checkpointing); memory_measure: cuda_max_allocated, or
                                            on the CPU cpu_rss (peak resident memory above what the process held before)

With --json the last line is one JSON object; the exit code is 1 when any part failed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import model_or_tiny, print_figures

if TYPE_CHECKING:
    from eef.train import TrainResult

# the default's exploration on the 2-core CPU machine with two forked one-thread workers, from
# `python benchmarks/rollout.py --workers 2` (docs/benchmarks.md, "Rollout workers", commit ec17f04)
EXPLORE_CPU_STEPS_PER_S = 81.0
DEFAULT_RUN_TARGET_S = 180
MODEL_INIT_TIMEOUT_S = 300
INSTRUCTION = "Buy the item the instruction describes."  # the default run's prompt

SMALL_RUN = (
    *("-s", "expert.limit=12", "-s", "eval.limit=8", "-s", "methods.iterations=1"),
    *("-s", "methods.run=[sft_pos, rft, eef]", "-s", "model.tiny.layers=1", "-s", "model.tiny.hidden_size=32"),
    *("-s", "model.tiny.heads=2", "-s", "model.tiny.intermediate_size=64", "-s", "model.tiny.vocab_size=600"),
    *("-s", "train.epochs=1", "-s", "rollout.max_new_tokens=16", "-s", "eval.max_new_tokens=16"),
    *("-s", "rollout.num_envs=8", "-s", "methods.eef.m=3", "-s", "methods.iteration_epochs=2"),
)


@dataclass(frozen=True)
class Shape:
    """A Llama's size."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int


@dataclass(frozen=True)
class Sizes:
    """How much each part does."""

    run_overrides: tuple[str, ...]
    explore_tasks: int
    explore_envs: int
    shape_1b: Shape
    tasks_1b: int
    envs_1b: int
    lora_tasks: int
    lora_steps: int
    shape_8b: Shape
    tokens_8b: int


FULL = Sizes(
    run_overrides=(),
    explore_tasks=800,
    explore_envs=64,
    shape_1b=Shape(layers=16, hidden=2048, heads=32, kv_heads=8, intermediate=8192),
    tasks_1b=64,
    envs_1b=64,
    lora_tasks=800,
    lora_steps=32,
    shape_8b=Shape(layers=32, hidden=4096, heads=32, kv_heads=8, intermediate=14336),
    tokens_8b=4096,
)
TINY = Shape(layers=2, hidden=64, heads=4, kv_heads=2, intermediate=128)
SMALL = Sizes(
    run_overrides=SMALL_RUN,
    explore_tasks=16,
    explore_envs=8,
    shape_1b=TINY,
    tasks_1b=8,
    envs_1b=8,
    lora_tasks=20,
    lora_steps=2,
    shape_8b=TINY,
    tokens_8b=256,
)


@dataclass(frozen=True)
class Setup:
    """What every part reads: the device, the sizes, a scratch directory and the default run's cap."""

    device: str
    sizes: Sizes
    scratch: Path
    default_timeout_s: float


def say(line: str) -> None:
    print(f"[gpu_check] {line}", file=sys.stderr, flush=True)


def run_logged(command: list[str], timeout_s: float) -> tuple[int | None, str]:
    """Run ``command`` with its output copied to stderr line by line; returns its exit code (None:
    killed after ``timeout_s``) and its last line of output."""
    # its own process group, so that a timeout also ends the run's forked rollout workers
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, process_group=0)
    last = [""]

    def copy() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stderr.write(line)
            last[0] = line.strip() or last[0]

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    try:
        code: int | None = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        code = None
    reader.join(timeout=10)
    return code, last[0]


def tiny_model(setup: Setup) -> str:
    """A fresh tiny eef model for the shop, made once per check."""
    path = setup.scratch / "tiny"
    return str(path) if path.is_dir() else model_or_tiny(None, setup.scratch)


def default_run(setup: Setup, figures: dict[str, Any]) -> None:
    run_dir = setup.scratch / "default"
    command = [sys.executable, "-m", "eef.cli", "run", "-s", f"run_dir={run_dir}", *setup.sizes.run_overrides]
    figures["default_run_target_s"] = DEFAULT_RUN_TARGET_S
    say(f"default_run: {' '.join(command)} (cap {setup.default_timeout_s:.0f} s)")
    began = time.perf_counter()
    code, last = run_logged(command, setup.default_timeout_s)
    figures["default_run_s"] = round(time.perf_counter() - began, 1)
    if code != 0:
        figures["default_run_stages_done"] = sorted(
            str(marker.parent.relative_to(run_dir)) for marker in run_dir.rglob(".done")
        )
        raise RuntimeError(
            f"timed out after {setup.default_timeout_s:.0f} s" if code is None else f"exit {code}: {last}"
        )
    summary = json.loads((run_dir / "summary.json").read_text())
    for method, entry in summary.items():
        figures[f"{method}_best_win_rate"] = entry["best"]["test_win_rate"]


def explore(setup: Setup, figures: dict[str, Any]) -> None:
    from eef.agent import PromptConfig, SamplingParams, build_prompt
    from eef.agent.hf_policy import HFPolicy
    from eef.envs import make
    from eef.rollout import RolloutConfig, Start, clone_envs, rollout

    sizes = setup.sizes
    checkpoint = setup.scratch / "default" / "sft_pos" / "checkpoint"
    figures["explore_model"] = "sft_pos" if checkpoint.is_dir() else "untrained tiny"
    model_dir = str(checkpoint) if checkpoint.is_dir() else tiny_model(setup)
    env = make("shop", view="compact")
    prompt = build_prompt("shop", PromptConfig(INSTRUCTION), env)
    starts = [Start(t) for t in env.task_ids("train")[: sizes.explore_tasks]]
    config = RolloutConfig(SamplingParams(temperature=0.7, max_new_tokens=48), seed=0)

    def steps_per_s(decode: str, tasks: list[Start]) -> tuple[float, HFPolicy]:
        with HFPolicy.from_pretrained(
            model_dir, device=setup.device, max_batch_size=sizes.explore_envs, decode=decode
        ) as policy:
            say(f"explore: {len(tasks)} tasks, {sizes.explore_envs} environments, {figures['explore_model']}, {decode}")
            result = rollout(
                clone_envs(env, sizes.explore_envs), policy, tasks, prompt, config, progress=True, description="explore"
            )
        figures.setdefault("explore_steps", result.steps)
        return result.steps / result.seconds, policy

    from torch._dynamo.utils import counters

    rate, policy = steps_per_s("auto", starts)  # compiled with CUDA graphs on a GPU, its compilation included
    failure = policy.compiled.failure if policy.compiled is not None else None
    figures["explore_decode"] = "eager" if policy.compiled is None else "compiled" if failure is None else "failed"
    if failure:
        figures["explore_compile_failure"] = failure
    figures["explore_steps_per_s"] = round(rate, 2)
    figures["explore_cpu_steps_per_s"] = EXPLORE_CPU_STEPS_PER_S
    figures["explore_ratio"] = round(rate / EXPLORE_CPU_STEPS_PER_S, 2)
    same = starts[: max(1, len(starts) // 4)]
    warm, _ = steps_per_s("auto", same)  # compiled already: the steps alone
    eager, _ = steps_per_s("eager", same)
    figures["explore_warm_steps_per_s"] = round(warm, 2)
    figures["explore_eager_steps_per_s"] = round(eager, 2)
    figures["explore_compiled_vs_eager"] = round(warm / eager, 2)
    # graphs compiled, and steps CUDA graphs skipped (a mutated input, a recompilation limit): both tell
    # whether the figures above had the graphs
    figures["explore_compiled_graphs"] = counters["stats"]["unique_graphs"]
    figures["explore_cudagraph_skips"] = counters["inductor"]["cudagraph_skips"]


def llama_1b(setup: Setup, figures: dict[str, Any]) -> None:
    shape, model_dir = setup.sizes.shape_1b, setup.scratch / "llama-1b"
    command = [sys.executable, "-m", "eef.cli", "model", "init", "--out", str(model_dir)]
    command += ["--layers", str(shape.layers), "--hidden-size", str(shape.hidden), "--heads", str(shape.heads)]
    command += ["--kv-heads", str(shape.kv_heads), "--intermediate-size", str(shape.intermediate)]
    say(f"llama_1b: {' '.join(command)}")
    began = time.perf_counter()
    code, last = run_logged(command, MODEL_INIT_TIMEOUT_S)
    if code != 0:
        raise RuntimeError(f"eef model init: timed out after {MODEL_INIT_TIMEOUT_S} s" if code is None else last)
    figures["llama_1b_init_s"] = round(time.perf_counter() - began, 1)
    figures["llama_1b_rollout_steps_per_s"] = rollout_1b(setup, model_dir)
    gc.collect()
    empty_cuda_cache()
    result = lora_1b(setup, model_dir)
    figures["llama_1b_lora_steps"] = result.steps
    figures["llama_1b_lora_tokens_per_s"] = round(result.tokens_per_s, 1)


def rollout_1b(setup: Setup, model_dir: Path) -> float:
    """Steps/s of the 1B model on the shop's test tasks, as benchmarks/rollout.py's batched engine."""
    from eef.agent import SamplingParams, build_prompt
    from eef.agent.hf_policy import HFPolicy
    from eef.envs import make
    from eef.rollout import RolloutConfig, Start, clone_envs, rollout

    sizes = setup.sizes
    env = make("shop")
    starts = [Start(t) for t in env.task_ids("test")[: sizes.tasks_1b]]
    config = RolloutConfig(SamplingParams(temperature=0.7, max_new_tokens=24), seed=0)
    say(f"llama_1b: rollouts of {len(starts)} test tasks, {sizes.envs_1b} environments")
    with HFPolicy.from_pretrained(
        model_dir, device=setup.device, max_batch_size=sizes.envs_1b, decode="eager"
    ) as policy:
        result = rollout(
            clone_envs(env, sizes.envs_1b),
            policy,
            starts,
            build_prompt("shop"),
            config,
            progress=True,
            description="1b",
        )
    return round(result.steps / result.seconds, 2)


def lora_1b(setup: Setup, model_dir: Path) -> TrainResult:
    """LoRA training of the 1B model for ``lora_steps`` optimizer steps on oracle demonstrations."""
    from eef.agent import build_prompt
    from eef.envs import make
    from eef.experts.oracle import oracle_trajectories
    from eef.models.loading import load_model_and_tokenizer
    from eef.stages import training_dtype
    from eef.train import LoraSettings, TrainConfig, tokenize_trajectories, train
    from eef.train.trainer import rows_for

    sizes = setup.sizes
    env = make("shop")
    model, tokenizer = load_model_and_tokenizer(
        model_dir, device="cpu", dtype=training_dtype("auto", lora=True, device=setup.device)
    )
    demonstrations = oracle_trajectories(env, env.task_ids("train")[: sizes.lora_tasks], build_prompt("shop"))
    examples = tokenize_trajectories(demonstrations, tokenizer, 2048)[0]
    # adapters saved alone: merging and saving the 1B weights is not what is measured
    config = TrainConfig(rows_per_step=8, micro_batch_rows=4, max_length=2048, lora=LoraSettings(r=16, merge=False))
    config = replace(config, epochs=sizes.lora_steps * config.rows_per_step / len(rows_for(examples, config)))
    say(f"llama_1b: LoRA training, {len(examples)} demonstrations, {sizes.lora_steps} steps")
    return train(model, tokenizer, examples, setup.scratch / "lora-1b", config, progress=True, device=setup.device)


def llama_8b_lora_memory(setup: Setup, figures: dict[str, Any]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from eef.models.loading import add_lora
    from eef.train import LoraSettings
    from eef.train.data import PackedRow
    from eef.train.trainer import collate, token_loss_sum

    shape, tokens = setup.sizes.shape_8b, setup.sizes.tokens_8b
    vocab_dir = setup.scratch / "llama-1b" if (setup.scratch / "llama-1b").is_dir() else Path(tiny_model(setup))
    vocab = json.loads((vocab_dir / "config.json").read_text())["vocab_size"]
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=max(8192, tokens),
    )
    device = torch.device(setup.device)
    cuda = device.type == "cuda"
    say(f"llama_8b_lora_memory: {shape}, vocabulary {vocab}, {tokens} tokens on {device}")
    held_before = 0 if cuda else resident_bytes()  # /proc only on the CPU: a sandbox's may lack the fields
    with device:  # built in place in bfloat16: 8B parameters in float32 would be 32 GB of host memory
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.gradient_checkpointing_enable()  # in the trainer's order: checkpointing, then the adapters
    model.config.use_cache = False
    model = add_lora(model, LoraSettings(r=16))
    model.train()
    ids = torch.randint(vocab, (tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    batch = {k: v.to(device) for k, v in collate([PackedRow(ids, ids, list(range(tokens)))], pad_id=0).items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_resident()
    began = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16):  # what the trainer's bf16 mixed precision does
        loss, count = token_loss_sum(model, batch)
    (loss / count).backward()
    optimizer.step()
    optimizer.zero_grad()
    if cuda:
        torch.cuda.synchronize(device)
        peak, figures["memory_measure"] = torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    else:
        peak, figures["memory_measure"] = peak_resident_bytes() - held_before, "cpu_rss"
    figures["llama_8b_lora_step_s"] = round(time.perf_counter() - began, 2)
    figures["llama_8b_lora_peak_gib"] = round(peak / 2**30, 3)


def resident_bytes() -> int:
    return proc_status_kib("VmRSS") * 1024


def peak_resident_bytes() -> int:
    return proc_status_kib("VmHWM") * 1024


def reset_peak_resident() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak (VmHWM) restarts from the current size


def proc_status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"/proc/self/status has no {field}")
    return int(match.group(1))


def empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


PARTS: dict[str, Callable[[Setup, dict[str, Any]], None]] = {
    "default_run": default_run,
    "explore": explore,
    "llama_1b": llama_1b,
    "llama_8b_lora_memory": llama_8b_lora_memory,
}


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--small", action="store_true", help="Everything tiny (the CPU test).")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"Comma-separated subset of: {', '.join(PARTS)}.")
    parser.add_argument("--default-timeout", type=float, default=300.0, help="Cap on the default run's seconds.")
    parser.add_argument("--explore-tasks", type=int, help="Training tasks explored (default 800; --small 16).")
    parser.add_argument("--tasks-1b", type=int, help="Test tasks the 1B model rolls out (default 64; --small 8).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := [p for p in parts if p not in PARTS]:
        parser.error(f"unknown parts {unknown}; known: {', '.join(PARTS)}")
    sizes = SMALL if args.small else FULL
    sizes = replace(
        sizes,
        explore_tasks=args.explore_tasks or sizes.explore_tasks,
        tasks_1b=args.tasks_1b or sizes.tasks_1b,
    )

    figures: dict[str, Any] = {
        "device": args.device,
        "gpu_name": torch.cuda.get_device_name() if args.device == "cuda" and torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        **{name: version(name) for name in ("transformers", "peft", "accelerate")},
    }
    errors: dict[str, str] = {}
    began = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="eef-gpu-check-"))
    try:
        for name in parts:
            say(f"{name}: start")
            part_began, known = time.perf_counter(), set(figures)
            try:
                PARTS[name](Setup(args.device, sizes, scratch, args.default_timeout), figures)
            except Exception as e:
                traceback.print_exc()
                message = str(e).strip().splitlines()
                errors[name] = f"{type(e).__name__}: {message[0] if message else ''}"[:300]
            gc.collect()
            empty_cuda_cache()
            new = {k: v for k, v in figures.items() if k not in known}  # in the log even if a later part hangs
            outcome = f"failed ({errors[name]})" if name in errors else "done"
            say(f"{name}: {outcome} in {time.perf_counter() - part_began:.1f} s {json.dumps(new)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    figures["total_s"] = round(time.perf_counter() - began, 1)
    figures["errors"] = errors
    print_figures(figures, args.json)
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
