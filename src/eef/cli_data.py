"""The expert-data commands of the ``eef`` CLI: ``data import``, ``data check``, ``data fetch`` and
``expert``. They parse arguments and call :mod:`eef.data`; nothing more."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from eef.cli_options import (
    SCHEMA_DEFAULTS,
    ApiKeyEnv,
    AsJson,
    BaseUrl,
    Concurrency,
    Device,
    Dtype,
    EnvOptions,
    Force,
    Instruction,
    Limit,
    MaxBatch,
    MaxRetries,
    NumEnvs,
    OneShot,
    RequestTimeout,
    SystemRole,
    env_and_options,
    model_section,
    prompt_config,
    refuse_overwrite,
    settings,
    task_ids,
)
from eef.errors import EefError

if TYPE_CHECKING:
    from eef.data.importers import FileCounts

# Program experts: the environment's oracle, the built-in shop's scripted expert, ScienceWorld's gold
# sequences intact or broken after a key action (eef.experts.scienceworld_gold).


def import_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="The expert file (a JSON array or JSON lines), or a directory: every such file under it (a fetched set)."
        ),
    ],
    format: Annotated[str, typer.Option("--format", help="eto, agentgym, eef-expert or openai.")],
    env_name: Annotated[str, typer.Option("--env", help="The environment to resolve tasks in.")],
    out: Annotated[
        Path,
        typer.Option(
            help="Trajectories JSONL to write; unresolved records go to OUT with the suffix .unresolved.jsonl, "
            "and (webshop) the recorded price limits to OUT with the suffix .price_limits.json."
        ),
    ],
    force: Force = False,
    as_json: AsJson = False,
    option: EnvOptions = None,
) -> None:
    """Import expert trajectories, resolving each record's task in ENV."""
    from eef.atomic import write_jsonl_atomic, write_text_atomic
    from eef.data.importers import import_directory, import_file, recorded_price_limits
    from eef.envs.shop.price_limits import price_limits_path, recorded_limits
    from eef.trajectory_files import write_trajectories

    unresolved_path = out.with_suffix(".unresolved.jsonl")
    limits_path = price_limits_path(out) if env_name == "webshop" else None  # webshop's price_limits option
    refuse_overwrite(out, unresolved_path, *([limits_path] if limits_path else []), force=force, inputs=[path])
    env, _ = env_and_options(env_name, option)
    directory = path.is_dir()
    result = import_directory(path, format, env) if directory else import_file(path, format, env)
    write_trajectories(out, result.trajectories)
    write_jsonl_atomic(unresolved_path, (u.as_dict() for u in result.unresolved))
    prices = recorded_price_limits(result.trajectories) if limits_path else None
    if limits_path is not None and prices is not None:
        write_text_atomic(limits_path, json.dumps(recorded_limits(prices.limits), indent=0) + "\n")
    if directory:
        for counts in result.files:
            typer.echo(f"  {counts.path.relative_to(path)}: {_file_line(counts)}")
    successes = sum(t.success for t in result.trajectories)
    typer.echo(
        f"imported {len(result.trajectories)} trajectories ({successes} successes) -> {out}; "
        f"{len(result.unresolved)} unresolved -> {unresolved_path}"
    )
    if limits_path is not None and prices is not None:
        conflicts = f"; {prices.conflicts} records show another limit than their task's first (first kept)"
        typer.echo(
            f"recorded price limits of {len(prices.limits)} tasks -> {limits_path}"
            f"{conflicts if prices.conflicts else ''}; replay with -o price_limits={limits_path}"
        )
    for entry in result.unresolved[:5]:
        typer.echo(f"  {entry.path}:{entry.line}: {entry.id}: {entry.reason}", err=True)
    if as_json:
        figures: dict[str, Any] = {
            "imported": len(result.trajectories),
            "successes": successes,
            "unresolved": len(result.unresolved),
        }
        if limits_path is not None and prices is not None:
            figures["price_limits"] = {
                "file": str(limits_path),
                "tasks": len(prices.limits),
                "conflicts": prices.conflicts,
            }
        if directory:
            figures["files"] = [_file_figures(counts, path) for counts in result.files]
        typer.echo(json.dumps(figures))


def _file_line(counts: FileCounts) -> str:
    """One file's outcome, for the per-file listing of a directory import."""
    if counts.elsewhere:
        return f"skipped: its {counts.records} records are for {', '.join(counts.elsewhere)}"
    if not counts.records:
        return "skipped: no records"
    return f"{counts.imported} imported ({counts.successes} successes), {counts.unresolved} unresolved"


def _file_figures(counts: FileCounts, directory: Path) -> dict[str, Any]:
    figures = dataclasses.asdict(counts)
    return {**figures, "path": counts.path.relative_to(directory).as_posix(), "elsewhere": list(counts.elsewhere)}


def check_command(
    context: typer.Context,
    path: Annotated[str, typer.Argument(metavar="PATH", help="Trajectories JSONL.")],
    env_name: Annotated[
        Optional[str],
        typer.Option("--env", help="The environment to replay in (default: the first trajectory's)."),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            help="The checked copy (default: PATH with the suffix .checked.jsonl); each trajectory gets meta.replay."
        ),
    ] = None,
    force: Force = False,
    as_json: AsJson = False,
    option: EnvOptions = None,
) -> None:
    """Replay every trajectory and flag those whose observations or reward differ from the record.
    PATH comes first and ENV is an option, as in the other data commands (the older order
    `eef data check ENV PATH` still works, with a warning)."""
    from eef.data.check import CheckSummary, check_trajectories
    from eef.envs.protocol import skipped_notes
    from eef.trajectory_files import iter_trajectories, write_trajectories

    trajectories, env_name = _check_arguments([path, *context.args], env_name)
    out = out or trajectories.with_suffix(".checked.jsonl")
    refuse_overwrite(out, force=force, inputs=[trajectories])
    records = iter_trajectories(trajectories)
    first = next(records, None)
    if first is None:
        raise EefError(f"{trajectories}: no trajectories to check")
    env, _ = env_and_options(env_name or first.env, option)
    for note in skipped_notes(env):
        typer.echo(note)
    summary = CheckSummary()
    write_trajectories(out, check_trajectories(env, itertools.chain([first], records), summary))
    reasons = ", ".join(f"{reason} {count}" for reason, count in summary.reasons.most_common()) or "none"
    typer.echo(
        f"checked {summary.checked} trajectories: {summary.ok} replay faithfully, {summary.flagged} "
        f"flagged ({reasons}) -> {out}"
    )
    if as_json:
        typer.echo(json.dumps(summary.as_dict()))


def _check_arguments(arguments: list[str], env_name: str | None) -> tuple[Path, str | None]:
    """PATH and ENV of `data check PATH [--env ENV]`, or of the older `data check ENV PATH`."""
    if len(arguments) == 1:
        return Path(arguments[0]), env_name
    if len(arguments) > 2 or env_name is not None:
        given = " ".join(arguments) + (f" --env {env_name}" if env_name else "")
        raise EefError(f"eef data check takes PATH [--env ENV], got {given}")
    env_name, path = arguments
    typer.echo(
        f"warning: `eef data check ENV PATH` is deprecated; use `eef data check {path} --env {env_name}`", err=True
    )
    return Path(path), env_name


def fetch_command(
    name: Annotated[Optional[str], typer.Argument(help="The set to download (see --list).")] = None,
    data_dir: Annotated[Path, typer.Option("--dir", help="The data directory; files go to DIR/NAME.")] = Path("data"),
    force: Annotated[bool, typer.Option(help="Download again even when an intact copy is there.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the sets that can be fetched.")] = False,
) -> None:
    """Download a public expert set, ETO's task lists or the WebShop product files (needs internet)."""
    from eef.data.fetch import SOURCES, fetch

    if list_ or name is None:
        for source in SOURCES.values():
            typer.echo(f"{source.name:14s} {source.description}")
        return
    target = fetch(name, data_dir, force=force)
    typer.echo(f"{name} -> {target} (sha256 of every file in {target / 'MANIFEST.json'})")


def splits_command(
    directory: Annotated[Path, typer.Argument(help="A fetched eto-splits directory.")],
    env_name: Annotated[str, typer.Option("--env", help="webshop or scienceworld.")],
    out: Annotated[Path, typer.Option(help="The directory to write OUT/{split}.json to.")],
    force: Force = False,
    as_json: AsJson = False,
) -> None:
    """Turn ETO's task lists into the split files ENV's split_files option reads (repeats dropped)."""
    from eef.data.fetch import eto_split_files
    from eef.data.reader import read_split_lists, shared_tasks, write_split_files

    lists = read_split_lists(eto_split_files(directory, env_name), env_name)
    refuse_overwrite(*(out / f"{s.split}.json" for s in lists), force=force)
    written = write_split_files(lists, out)
    shared = shared_tasks(lists)
    typer.echo(f"{env_name}: ETO's task lists in {directory} -> {out}")
    for split_list in lists:
        repeated = f"; listed twice or more: {', '.join(split_list.repeated)}" if split_list.repeated else ""
        typer.echo(
            f"  {split_list.split:8s} {len(split_list.task_ids):5d} tasks ({split_list.listed} listed{repeated})"
        )
    for pair, count in shared.items():
        typer.echo(f"  {pair}: {count} tasks in both")
    mapping = ", ".join(f"{split}: {path}" for split, path in written.items())
    goals = "-o goals=human " if env_name == "webshop" else ""  # ETO's indices number WebShop's human goals
    typer.echo(f"use: {goals}-o 'split_files={{{mapping}}}'")
    if as_json:
        figures = {
            s.split: {
                "tasks": len(s.task_ids),
                "listed": s.listed,
                "repeated": s.repeated,
                "file": str(written[s.split]),
            }
            for s in lists
        }
        typer.echo(json.dumps({"splits": figures, "shared": shared}))


def export_command(
    path: Annotated[Path, typer.Argument(help="An eef trajectories JSONL (a run's train.jsonl, rollouts, experts).")],
    format: Annotated[
        str,
        typer.Option("--format", help="sharegpt (AgentGym's, with loss per message) or openai (messages with weight)."),
    ],
    out: Annotated[Path, typer.Option(help="The JSONL to write (atomically).")],
    force: Force = False,
) -> None:
    """Write trajectories for other trainers: every assistant turn marked trained (loss / weight) or
    not, as eef's masks say; `eef data import --format openai` and eef's own reader read them back."""
    from eef.trajectory_files import iter_trajectories
    from eef.trajectory_formats import export_trajectories

    refuse_overwrite(out, force=force, inputs=[path])
    written = export_trajectories(iter_trajectories(path), out, format)
    typer.echo(f"exported {written} trajectories ({format}) -> {out}")


def expert_command(
    env_name: Annotated[str, typer.Argument(metavar="ENV")],
    out: Annotated[Path, typer.Option(help="Trajectories JSONL to append to (a rerun skips finished tasks).")],
    policy: Annotated[
        str,
        typer.Option(
            help="A backend (openai, hf, vllm) or a program expert: oracle, scripted "
            "(shop), gold, perturbed (scienceworld), or one registered."
        ),
    ] = "openai",
    model: Annotated[
        Optional[str], typer.Option(help="Served model name, checkpoint or hub id (model policies).")
    ] = None,
    source: Annotated[Optional[str], typer.Option(help="The provenance source (default: the model name).")] = None,
    split: Annotated[str, typer.Option(help="The split whose tasks the expert plays.")] = "train",
    limit: Limit = None,
    rollouts: Annotated[int, typer.Option(min=1, help="Episodes per task.")] = 1,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of a model expert (0: greedy).")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling's probability mass.")] = 1.0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens per model turn at most.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the sampling and of a program expert's choices.")] = 0,
    price_in: Annotated[Optional[float], typer.Option(help="Dollars per million prompt tokens.")] = None,
    price_out: Annotated[Optional[float], typer.Option(help="Dollars per million completion tokens.")] = None,
    num_envs: NumEnvs = 16,
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
    as_json: AsJson = False,
    option: EnvOptions = None,
) -> None:
    """Record every episode of an expert on a split, failures included, with tokens and cost."""
    from eef.agent import SamplingParams, build_prompt
    from eef.data.generate import Prices, generate_with_policy, generate_with_program
    from eef.experts.registry import ExpertSettings, expert_names, expert_program

    env, options = env_and_options(env_name, option)
    tasks = task_ids(env, split, limit)
    prompt = build_prompt(env.name, prompt_config(one_shot, system_role, instruction), env)
    if policy in expert_names():
        if rollouts != 1 or temperature != 0.0 or top_p != 1.0:
            raise EefError(
                f"--policy {policy} is a program expert: --rollouts, --temperature and --top-p apply to "
                "model policies (a program expert plays each task once; --seed picks its choices)"
            )
        report = generate_with_program(
            env,
            expert_program(policy, ExpertSettings(seed=seed)),
            tasks,
            prompt,
            out,
            source=source or policy,
            progress=True,
        )
    else:
        from eef.rollout import RolloutConfig, cloned_envs
        from eef.stages import open_policy

        if not model:
            raise EefError(f"--policy {policy} needs --model")
        prices = Prices(price_in or 0.0, price_out or 0.0) if price_in is not None or price_out is not None else None
        sampling = settings(SamplingParams, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
        config = RolloutConfig(sampling, seed=seed, source=source or model)
        runner = model_section(
            policy, base_url, device, dtype, max_batch_size, concurrency, api_key_env, request_timeout, max_retries
        )
        with open_policy(runner, model) as backend, cloned_envs(env, num_envs, options) as envs:
            report = generate_with_policy(
                envs, backend, tasks, prompt, out, config, rollouts=rollouts, prices=prices, progress=True
            )
    cost = f", estimated cost ${report.cost:.4f}" if report.cost is not None else ""
    typer.echo(
        f"{report.new} new episodes in {report.seconds:.1f} s; {out} holds {report.episodes} "
        f"({report.successes} successes), {report.prompt_tokens:,} prompt and "
        f"{report.completion_tokens:,} completion tokens{cost}"
    )
    if as_json:
        typer.echo(json.dumps(report.as_dict()))


def register(app: typer.Typer) -> None:
    """Add the expert-data commands to the ``eef`` app."""
    data_app = typer.Typer(help="Import, check and fetch expert trajectories.", no_args_is_help=True)
    data_app.command("import")(import_command)
    data_app.command("check", context_settings={"allow_extra_args": True})(check_command)  # the older ENV PATH
    data_app.command("fetch")(fetch_command)
    data_app.command("splits")(splits_command)
    data_app.command("export")(export_command)
    app.add_typer(data_app, name="data")
    app.command("expert")(expert_command)
