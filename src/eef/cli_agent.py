"""The agent commands of the ``eef`` CLI: ``model init``, ``explore``, ``train``, ``eval``, ``serve``.

Each works alone on files: explore writes trajectories, train reads trajectories and writes a
checkpoint, eval reads a checkpoint and writes a report. They parse arguments and call the
library; nothing more.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from eef.agent.serve import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_N, ServeOptions, run_server
from eef.cli_options import (
    SCHEMA_DEFAULTS,
    ApiKeyEnv,
    Backend,
    BaseUrl,
    Concurrency,
    Decode,
    Device,
    Dtype,
    Engine,
    EnvName,
    EnvOptions,
    Force,
    Instruction,
    Limit,
    MaxBatch,
    MaxNewTokens,
    MaxRetries,
    NumEnvs,
    OneShot,
    RayActors,
    RayAddress,
    ReportTo,
    RequestTimeout,
    ServerCommand,
    SystemRole,
    Workers,
    WorkerTimeout,
    agent_setup,
    env_and_options,
    model_section,
    quiet_model_loading,
    refuse_overwrite_dir,
    settings,
    task_ids,
)
from eef.errors import EefError
from eef.tracking import Tracking, check_trackers

if TYPE_CHECKING:
    from eef.config import ModelSection
    from eef.stages import Parallelism


def model_init(
    out: Annotated[Path, typer.Option(help="Directory to create.")],
    env_name: Annotated[str, typer.Option("--env", help="Environment whose text builds the tokenizer.")] = "shop",
    layers: Annotated[int, typer.Option(help="Decoder layers (eef run's default config: 3).")] = 4,
    hidden_size: Annotated[int, typer.Option(help="Model width.")] = 128,
    heads: Annotated[int, typer.Option(help="Attention heads.")] = 4,
    intermediate_size: Annotated[int, typer.Option(help="MLP width (eef run's default config: 384).")] = 512,
    kv_heads: Annotated[
        Optional[int],
        typer.Option(
            help="Key/value heads, a divisor of --heads (default: one per head; eef run's default config: 1)."
        ),
    ] = None,
    vocab_size: Annotated[
        int, typer.Option(help="BPE vocabulary, special tokens included (smaller when the text is small).")
    ] = 2048,
    seed: Annotated[int, typer.Option(help="Seed of the tokenizer's corpus walk and of the weights.")] = 0,
    force: Force = False,
    option: EnvOptions = None,
) -> None:
    """Create a tiny Llama with a tokenizer built from the environment's text (the shape of eef run's
    default model: --layers 3 --intermediate-size 384 --kv-heads 1)."""
    from eef.models.tiny import TinyModelConfig, create_tiny_model

    config = settings(
        TinyModelConfig,
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        intermediate_size=intermediate_size,
        seed=seed,
    )
    refuse_overwrite_dir(out, force=force)
    env, _ = env_and_options(env_name, option)
    path = create_tiny_model(env, out, config)
    facts = json.loads((path / "eef_tiny_model.json").read_text())
    typer.echo(f"created {path}: {facts['parameters']:,} parameters, vocabulary {facts['tokens']}")


def explore(
    model: Annotated[str, typer.Option(help="Checkpoint directory, hub id or served model name.")],
    out: Annotated[Path, typer.Option(help="Trajectories JSONL to append to (a rerun skips finished starts).")],
    env_name: EnvName = None,
    split: Annotated[str, typer.Option(help="The split whose tasks are explored.")] = "train",
    limit: Limit = None,
    rollouts: Annotated[int, typer.Option(min=1, help="Rollouts per start state (RFT xK).")] = 1,
    from_file: Annotated[
        Optional[Path], typer.Option("--from", help="Start from states of these trajectories.")
    ] = None,
    states: Annotated[str, typer.Option(help="With --from: 'all' or comma-separated state indices.")] = "all",
    temperature: Annotated[
        float, typer.Option(help="Sampling temperature (0: greedy).")
    ] = SCHEMA_DEFAULTS.rollout.temperature,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling's probability mass.")] = SCHEMA_DEFAULTS.rollout.top_p,
    max_new_tokens: MaxNewTokens = 128,
    seed: Annotated[int, typer.Option(help="Seed of the sampling (each rollout draws from its own).")] = 0,
    iteration: Annotated[
        int, typer.Option(help="Recorded in each trajectory's provenance (eef run counts its iterations so).")
    ] = 0,
    num_envs: NumEnvs = 16,
    workers: Workers = SCHEMA_DEFAULTS.rollout.workers,
    worker_timeout: WorkerTimeout = SCHEMA_DEFAULTS.rollout.worker_timeout_s,
    engine: Engine = SCHEMA_DEFAULTS.rollout.engine,
    ray_address: RayAddress = SCHEMA_DEFAULTS.ray.address,
    ray_actors: RayActors = SCHEMA_DEFAULTS.ray.env_actors,
    backend: Backend = SCHEMA_DEFAULTS.model.backend,
    base_url: BaseUrl = None,
    one_shot: OneShot = None,
    system_role: SystemRole = None,
    instruction: Instruction = None,
    device: Device = SCHEMA_DEFAULTS.model.device,
    dtype: Dtype = SCHEMA_DEFAULTS.model.dtype,
    max_batch_size: MaxBatch = SCHEMA_DEFAULTS.model.max_batch_size,
    concurrency: Concurrency = SCHEMA_DEFAULTS.model.concurrency,
    api_key_env: ApiKeyEnv = SCHEMA_DEFAULTS.model.api_key_env,
    request_timeout: RequestTimeout = SCHEMA_DEFAULTS.model.request_timeout_s,
    max_retries: MaxRetries = SCHEMA_DEFAULTS.model.max_retries,
    server_command: ServerCommand = SCHEMA_DEFAULTS.model.server_command,
    decode: Decode = SCHEMA_DEFAULTS.model.decode,
    option: EnvOptions = None,
) -> None:
    """Roll out a policy from s0 of a split's tasks, or from states of recorded trajectories.

    Diverged replays are listed in OUT with the suffix .diverged.jsonl.
    """
    from eef.agent import SamplingParams
    from eef.atomic import write_jsonl_atomic
    from eef.rollout import RolloutConfig, Start, pending
    from eef.stages import explore as explore_into
    from eef.trajectory_files import read_trajectories

    if from_file is None and states != "all":
        raise EefError("--states picks states of the trajectories in --from; name that file too")
    sampling = settings(SamplingParams, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    runner = model_section(
        backend,
        base_url,
        device,
        dtype,
        max_batch_size,
        concurrency,
        api_key_env,
        request_timeout,
        max_retries,
        server_command,
        decode,
    )
    parallel = _parallelism(num_envs, workers, worker_timeout, engine, ray_address, ray_actors, runner)
    env, options, prompt = agent_setup(
        env_name, option, model, (one_shot, system_role, instruction), _warn, base_url, os.environ.get(api_key_env)
    )
    if from_file is None:
        starts = [Start(t, index=k) for t in task_ids(env, split, limit) for k in range(rollouts)]
    else:
        starts = [
            Start(t.task_id, t, step, k)
            for t in read_trajectories(from_file)[:limit]
            for step in _states(states, len(t.turns))
            for k in range(rollouts)
        ]
        if not starts:
            raise EefError(f"--from {from_file}: no trajectory there has any of the states {states!r} (--states)")
    config = RolloutConfig(sampling, seed=seed, iteration=iteration)
    _, todo = pending(out, starts, config, model=model)
    typer.echo(f"{len(starts)} starts, {len(starts) - len(todo)} already in {out}", err=True)
    if not todo:
        return
    result = explore_into(env, options, runner, model, starts, prompt, config, out, parallel)
    if result.diverged:
        write_jsonl_atomic(
            out.with_suffix(".diverged.jsonl"),
            ({"start": s.key, "step": d.step, "expected": d.expected, "seen": d.seen} for s, d in result.diverged),
        )
    wins = sum(t.success for t in result.trajectories)
    typer.echo(
        f"explored {len(result.trajectories)} episodes: {wins} successes, {len(result.diverged)} starts "
        f"diverged on replay, {result.steps} steps in {result.seconds:.1f} s -> {out}"
    )


def _parallelism(
    num_envs: int,
    workers: int,
    worker_timeout: float,
    engine: str,
    ray_address: str | None,
    ray_actors: int,
    runner: ModelSection,
) -> Parallelism:
    """The rollout engine the options ask for; with Ray, the cluster and servers are checked
    (reached, enough CPUs for the actors) before anything is loaded."""
    from eef.config import RolloutSection
    from eef.rollout.cluster import EngineSettingNames, RayConfig, check_cluster, ray_engine_problems
    from eef.stages import Parallelism

    engines = RolloutSection.CHOICES["engine"]  # the run's choices: one list for both
    if engine not in engines:
        raise EefError(f"--engine: expected {' or '.join(engines)}, got {engine!r}")
    if engine == "local":
        if ray_address is not None:
            raise EefError("--ray-address: only with --engine ray")
        return Parallelism(num_envs, workers, worker_timeout)
    options = EngineSettingNames("--backend", "--workers", "--ray-actors", "--num-envs")
    problems = ray_engine_problems(runner.backend, workers, ray_actors, num_envs, options)
    if problems:
        raise EefError("; ".join(problems))
    settings = RayConfig(address=ray_address, env_actors=ray_actors)
    check_cluster(settings, runner.backend, runner.base_url)
    return Parallelism(num_envs, 1, worker_timeout, settings)


def _warn(line: str) -> None:
    typer.echo(line, err=True)


def _states(spec: str, length: int) -> list[int]:
    """State indices of a trajectory of ``length`` turns; states past its end are skipped."""
    if spec == "all":
        return list(range(length))
    try:
        wanted = [int(x) for x in spec.split(",")]
    except ValueError:
        raise EefError(f"--states must be 'all' or comma-separated integers, got {spec!r}") from None
    if any(k < 0 for k in wanted):
        raise EefError(f"--states must not be negative, got {spec!r}")
    return [k for k in wanted if k < length]


def train_command(
    model: Annotated[str, typer.Option(help="Checkpoint to start from (directory or hub id).")],
    data: Annotated[list[Path], typer.Option(help="Trajectories JSONL; repeatable. Per-turn flags decide the loss.")],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write.")],
    heldout: Annotated[
        Optional[Path], typer.Option(help="Trajectories whose loss is reported before and after.")
    ] = None,
    epochs: Annotated[
        float, typer.Option(help="Passes over the data (eef run's default config: 48).")
    ] = SCHEMA_DEFAULTS.train.epochs,
    learning_rate: Annotated[
        float,
        typer.Option(
            help="The peak rate, after the warm-up (eef run's default config: 3e-3, for a model from scratch)."
        ),
    ] = SCHEMA_DEFAULTS.train.learning_rate,
    max_length: Annotated[
        int, typer.Option(help="Tokens per row; longer conversations are cut (eef run's default config: 2048).")
    ] = SCHEMA_DEFAULTS.train.max_length,
    rows_per_step: Annotated[
        int, typer.Option(help="Rows per optimizer step, over every process and accumulated micro-batch.")
    ] = SCHEMA_DEFAULTS.train.rows_per_step,
    micro_batch_rows: Annotated[
        int, typer.Option(help="Rows per forward pass on one device (eef run's default config: 8).")
    ] = SCHEMA_DEFAULTS.train.micro_batch_rows,
    packing: Annotated[
        bool,
        typer.Option(
            help="Pack several conversations per row (eef run's default config: --no-packing, faster on the CPU)."
        ),
    ] = SCHEMA_DEFAULTS.train.packing,
    group_by_length: Annotated[
        bool,
        typer.Option(
            help="Batch rows of similar length (with --no-packing: far less padding; eef run's default config: "
            "--group-by-length)."
        ),
    ] = SCHEMA_DEFAULTS.train.group_by_length,
    warmup_ratio: Annotated[
        float, typer.Option(help="Share of the steps with a rate rising linearly to the peak.")
    ] = SCHEMA_DEFAULTS.train.warmup_ratio,
    weight_decay: Annotated[float, typer.Option(help="AdamW's weight decay.")] = SCHEMA_DEFAULTS.train.weight_decay,
    decay_ratio: Annotated[
        float,
        typer.Option(
            help="Share of the last steps with a decaying rate (1: cosine from the peak; less holds the peak "
            "longer; eef run's default config: 0.3)."
        ),
    ] = SCHEMA_DEFAULTS.train.decay_ratio,
    mixed_precision: Annotated[
        str, typer.Option(help="auto (bf16 on CUDA), bf16, fp16 or no.")
    ] = SCHEMA_DEFAULTS.train.mixed_precision,
    lora_r: Annotated[int, typer.Option(min=0, help="LoRA rank; 0 trains every weight.")] = 0,
    lora_alpha: Annotated[Optional[int], typer.Option(help="LoRA scaling numerator (default 2 x rank).")] = None,
    lora_targets: Annotated[str, typer.Option(help="Comma-separated module names, or all-linear.")] = "all-linear",
    lora_merge: Annotated[bool, typer.Option(help="Merge adapters into the saved weights.")] = True,
    gradient_checkpointing: Annotated[
        bool, typer.Option(help="Recompute activations in the backward pass: less GPU memory, more time.")
    ] = SCHEMA_DEFAULTS.train.gradient_checkpointing,
    seed: Annotated[int, typer.Option(help="Seed of the shuffling and of dropout.")] = SCHEMA_DEFAULTS.train.seed,
    dtype: Annotated[
        str,
        typer.Option(
            help="Weights' dtype: auto (bfloat16 for LoRA on CUDA, else float32 "
            "master weights under bf16 autocast), float32, bfloat16."
        ),
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto (each process's accelerator where there is one) or cpu.")] = "auto",
    force: Annotated[bool, typer.Option(help="Replace an existing checkpoint at --out.")] = False,
    report_to: ReportTo = None,
) -> None:
    """Masked multi-turn SFT of a checkpoint on trajectory files.

    The checkpoint records the environment and prompt its data shares, which ``eef eval`` and
    ``eef explore`` then use by default."""
    from eef.distributed import process_rank
    from eef.stages import train_checkpoint
    from eef.train import LoraSettings, TrainConfig
    from eef.trajectory_files import read_trajectories

    lora = (
        settings(
            LoraSettings,
            {"r": "--lora-r", "alpha": "--lora-alpha", "target_modules": "--lora-targets"},
            r=lora_r,
            alpha=lora_alpha or 2 * lora_r,
            merge=lora_merge,
            target_modules=lora_targets if lora_targets == "all-linear" else tuple(lora_targets.split(",")),
        )
        if lora_r
        else None
    )
    config = settings(
        TrainConfig,
        epochs=epochs,
        learning_rate=learning_rate,
        max_length=max_length,
        rows_per_step=rows_per_step,
        micro_batch_rows=micro_batch_rows,
        packing=packing,
        group_by_length=group_by_length,
        warmup_ratio=warmup_ratio,
        decay_ratio=decay_ratio,
        weight_decay=weight_decay,
        mixed_precision=mixed_precision,
        lora=lora,
        gradient_checkpointing=gradient_checkpointing,
        seed=seed,
    )
    check_trackers(tuple(report_to or ()), "--report-to")
    refuse_overwrite_dir(out, force=force, inputs=[*data, heldout])
    trajectories = [t for path in data for t in read_trajectories(path)]
    if not trajectories:
        raise EefError(f"--data {', '.join(map(str, data))}: no trajectories to train on")
    result, _ = train_checkpoint(
        model,
        trajectories,
        out,
        config,
        device=device,
        dtype=dtype,
        metadata={"base_model": model, "data": [str(p) for p in data]},
        heldout=read_trajectories(heldout) if heldout else (),
        log=typer.echo if process_rank()[0] == 0 else None,  # launched on several processes: the first reports
        tracking=Tracking(tuple(report_to), str(out.parent / "tracking"), out.name, "train") if report_to else None,
    )
    if process_rank()[0] != 0:
        return
    typer.echo(
        f"trained {result.steps} steps, loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}, "
        f"{result.tokens_per_s:,.0f} tokens/s -> {out}"
    )


def eval_command(
    model: Annotated[str, typer.Option(help="Checkpoint directory, hub id or served model name.")],
    out: Annotated[Path, typer.Option(help="Directory for trajectories.jsonl, report.json and tasks.tsv.")],
    env_name: EnvName = None,
    split: Annotated[str, typer.Option(help="The split whose tasks are evaluated.")] = SCHEMA_DEFAULTS.eval.split,
    limit: Limit = None,
    max_new_tokens: MaxNewTokens = 128,
    temperature: Annotated[
        float, typer.Option(help="0 (the default) is greedy, the protocol's evaluation.")
    ] = SCHEMA_DEFAULTS.eval.temperature,
    seed: Annotated[int, typer.Option(help="Seed of the sampling when --temperature is above 0.")] = 0,
    num_envs: NumEnvs = 16,
    workers: Workers = SCHEMA_DEFAULTS.rollout.workers,
    worker_timeout: WorkerTimeout = SCHEMA_DEFAULTS.rollout.worker_timeout_s,
    engine: Engine = SCHEMA_DEFAULTS.rollout.engine,
    ray_address: RayAddress = SCHEMA_DEFAULTS.ray.address,
    ray_actors: RayActors = SCHEMA_DEFAULTS.ray.env_actors,
    backend: Backend = SCHEMA_DEFAULTS.model.backend,
    base_url: BaseUrl = None,
    one_shot: OneShot = None,
    system_role: SystemRole = None,
    instruction: Instruction = None,
    device: Device = SCHEMA_DEFAULTS.model.device,
    dtype: Dtype = SCHEMA_DEFAULTS.model.dtype,
    max_batch_size: MaxBatch = SCHEMA_DEFAULTS.model.max_batch_size,
    concurrency: Concurrency = SCHEMA_DEFAULTS.model.concurrency,
    api_key_env: ApiKeyEnv = SCHEMA_DEFAULTS.model.api_key_env,
    request_timeout: RequestTimeout = SCHEMA_DEFAULTS.model.request_timeout_s,
    max_retries: MaxRetries = SCHEMA_DEFAULTS.model.max_retries,
    server_command: ServerCommand = SCHEMA_DEFAULTS.model.server_command,
    decode: Decode = SCHEMA_DEFAULTS.model.decode,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line.")] = False,
    option: EnvOptions = None,
) -> None:
    """Greedy evaluation on a split: win rate, score, per-task table, trajectories."""
    from eef.agent import SamplingParams
    from eef.stages import evaluate_checkpoint

    settings(SamplingParams, temperature=temperature, max_new_tokens=max_new_tokens)  # checked before any loading
    runner = model_section(
        backend,
        base_url,
        device,
        dtype,
        max_batch_size,
        concurrency,
        api_key_env,
        request_timeout,
        max_retries,
        server_command,
        decode,
    )
    parallel = _parallelism(num_envs, workers, worker_timeout, engine, ray_address, ray_actors, runner)
    env, options, prompt = agent_setup(
        env_name, option, model, (one_shot, system_role, instruction), _warn, base_url, os.environ.get(api_key_env)
    )
    tasks = task_ids(env, split, limit)
    report = evaluate_checkpoint(
        env,
        options,
        runner,
        model,
        tasks,
        prompt,
        out,
        parallel,
        split=split,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
    )
    typer.echo(
        f"{env.name} {split}: {report.episodes} tasks, win rate {report.win_rate:.1%}, "
        f"score {report.score:.3f}, {report.mean_steps:.1f} steps per episode -> {out}"
    )
    if as_json:
        typer.echo(json.dumps(report.summary()))


def serve_command(
    model: Annotated[str, typer.Argument(help="Checkpoint directory or hub id.")],
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    served_model_name: Annotated[
        Optional[str],
        typer.Option(
            help="The model name listed by /v1/models and the only one requests may name "
            "(default: the checkpoint directory's name, or the hub id)."
        ),
    ] = None,
    api_key: Annotated[
        Optional[str],
        typer.Option(
            envvar="EEF_API_KEY",
            show_default=False,
            help="Ask every request but /health for 'Authorization: Bearer KEY' (default: $EEF_API_KEY, "
            "else none). Prefer the variable: a key on the command line shows in the process list.",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA where there is one), cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[
        str,
        typer.Option(help="Weights' dtype: auto (bfloat16 on CUDA, float32 on the CPU), float32, bfloat16, float16."),
    ] = "auto",
    max_tokens_limit: Annotated[
        Optional[int],
        typer.Option(min=1, help="The largest max_tokens a request may ask for (default: the model's context)."),
    ] = None,
    max_n: Annotated[int, typer.Option(min=1, help="The most choices (n) a request may ask for.")] = DEFAULT_MAX_N,
    max_body_bytes: Annotated[
        int, typer.Option(min=1, help="The largest request body accepted.")
    ] = DEFAULT_MAX_BODY_BYTES,
    decode: Decode = SCHEMA_DEFAULTS.model.decode,
) -> None:
    """Serve a checkpoint as an OpenAI-compatible chat completions endpoint (streaming, n, text parts)."""
    from eef.config import ModelSection

    settings(ModelSection, decode=decode)  # checked before the model loads
    options = ServeOptions(
        model_name=served_model_name,
        api_key=api_key,
        max_tokens_limit=max_tokens_limit,
        max_n=max_n,
        max_body_bytes=max_body_bytes,
    )
    run_server(model, host, port, device=device, dtype=dtype, options=options, decode=decode)


def run_command(
    config: Annotated[Optional[Path], typer.Argument(help="YAML configuration (default: the built-in demo).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue a run: finished stages are skipped.")] = False,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", "-s", help="Override KEY.PATH=VALUE; repeatable.")
    ] = None,
    report_to: ReportTo = None,
) -> None:
    """Run the pipeline: expert data, SFT-POS, then RFT / RFT xK / EEF iterations, evaluation, report."""
    from eef.config import DEFAULT_RUN_CONFIG, load_config
    from eef.pipeline import run, run_root

    overrides = [*(set_ or ()), *([f"tracking.report_to=[{', '.join(report_to)}]"] if report_to else [])]
    run_config = load_config(config or DEFAULT_RUN_CONFIG, overrides)  # every problem is reported before any work
    quiet_model_loading()
    summary = run(run_config, resume=resume, log=lambda line: typer.echo(line, err=True))
    for method, entry in summary.items():
        best, last = entry["best"], entry["last"]
        typer.echo(
            f"{method:8s} best win rate {best['test_win_rate']:.1%} (iteration {best['iteration']}), "
            f"last {last['test_win_rate']:.1%}, score {best['test_score']:.3f}"
        )
    if summary:  # the first of several processes reports
        typer.echo(f"report: {run_root(run_config) / 'report' / 'index.html'}")


def sweep_command(
    config: Annotated[Optional[Path], typer.Argument(help="YAML configuration (default: the built-in demo).")] = None,
    seeds: Annotated[str, typer.Option(help="The seeds, one run each: 0,1,2 or 0-4.")] = "0-4",
    key: Annotated[
        str, typer.Option(help="The integer configuration key the seeds set: seed (model), env.options.seed, ...")
    ] = "seed",
    out: Annotated[
        Optional[Path], typer.Option(help="Parent directory of the runs (default: runs/NAME-seeds).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue a sweep: finished runs and stages are skipped.")] = False,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", "-s", help="Override KEY.PATH=VALUE for every run; repeatable.")
    ] = None,
) -> None:
    """Run the configuration once per seed into OUT/seed-S/, then a report over the seeds (means
    with 95% intervals, per seed, paired comparisons pooled over seeds) in OUT/report/."""
    from eef.config import DEFAULT_RUN_CONFIG, load_config
    from eef.sweep import Sweep, parse_seeds, run_sweep

    path = config or DEFAULT_RUN_CONFIG
    root = out or Path("runs") / f"{load_config(path, set_).name}-seeds"
    sweep = Sweep(path, tuple(set_ or ()), parse_seeds(seeds), key, root)
    quiet_model_loading()
    result = run_sweep(sweep, resume=resume, log=lambda line: typer.echo(line, err=True))
    summary = json.loads((root / "report" / "sweep.json").read_text())
    for method, entry in summary["methods"].items():
        if entry["best_mean"]:
            mean = entry["best_mean"]
            typer.echo(
                f"{method:8s} best win rate {mean['mean']:.1%} [{mean['low']:.1%}, {mean['high']:.1%}] "
                f"over {len(entry['best_win_rate'])} seeds"
            )
    typer.echo(f"{len(result.summaries)} runs; report: {root / 'report' / 'index.html'}")


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory, or a sweep's parent directory.")],
) -> None:
    """Write the report of a run (or of a sweep over seeds) again from its artifacts, also while it runs."""
    from eef.report import write_report
    from eef.sweep import SWEEP_FILE, write_sweep_report

    out = write_sweep_report(run_dir) if (run_dir / SWEEP_FILE).is_file() else write_report(run_dir)
    typer.echo(f"report: {out / 'index.html'}")


def register(app: typer.Typer) -> None:
    """Add the agent commands to the ``eef`` app."""
    model_app = typer.Typer(help="Create models.", no_args_is_help=True)
    model_app.command("init")(model_init)
    app.add_typer(model_app, name="model")
    app.command("explore")(explore)
    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("serve")(serve_command)
    app.command("run")(run_command)
    app.command("sweep")(sweep_command)
    app.command("report")(report_command)
