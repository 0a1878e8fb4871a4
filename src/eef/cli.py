"""The ``eef`` command line. Commands parse arguments and call library functions; nothing more."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from eef import cli_agent, cli_data
from eef.cli_options import AsJson, EnvOptions, Force, Limit, env_and_options, parse_options
from eef.errors import EefError

if TYPE_CHECKING:
    from eef.envs.protocol import TextEnv

app = typer.Typer(help="Agent tuning that learns from expert failures.", no_args_is_help=True)
env_app = typer.Typer(help="Inspect, check and play environments.", no_args_is_help=True)
app.add_typer(env_app, name="env")
config_app = typer.Typer(help="Run configurations.", no_args_is_help=True)
app.add_typer(config_app, name="config")


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib import metadata

        typer.echo(f"eef {metadata.version('eef')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print eef's version and exit.")
    ] = False,
) -> None:
    """Agent tuning that learns from expert failures."""


@config_app.command("show")
def config_show(
    config: Annotated[Optional[Path], typer.Argument(help="YAML configuration (default: the built-in demo).")] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", "-s", help="Override KEY.PATH=VALUE; repeatable.")
    ] = None,
) -> None:
    """Print the resolved configuration (defaults filled in, overrides applied, checked) as YAML:
    what `eef run` with the same arguments would run and save as config.yaml."""
    import yaml

    from eef.config import DEFAULT_RUN_CONFIG, load_config

    resolved = load_config(config or DEFAULT_RUN_CONFIG, set_)  # as `eef run` reads it
    typer.echo(yaml.safe_dump(resolved.as_dict(), sort_keys=False), nl=False)


def _make_env(name: str, options: list[str] | None) -> TextEnv:
    return env_and_options(name, options)[0]


@env_app.command("list")
def env_list() -> None:
    """List the installed environments and their options."""
    from eef.envs import registered

    for spec in registered():
        typer.echo(f"{spec.name:12s} {spec.description}")
        options = ", ".join(f"{k}={v!r}" for k, v in spec.options().items())
        typer.echo(f"{'':12s} options: {options}")


@env_app.command("verify")
def env_verify(
    name: str,
    limit: Limit = None,
    split: Annotated[Optional[str], typer.Option(help="Only this split (default: every task).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line of the figures.")] = False,
    option: EnvOptions = None,
) -> None:
    """Run oracle episodes and report the share that reach full reward."""
    from eef.envs.verify import verify

    env = _make_env(name, option)
    splits = [split] if split else env.splits()
    task_ids = list(dict.fromkeys(t for s in splits for t in env.task_ids(s)))
    if limit is not None:
        task_ids = task_ids[:limit]
    report = verify(env, task_ids, progress=sys.stderr.isatty())
    typer.echo(
        f"{name}: {report.episodes} oracle episodes, success {report.successes} "
        f"({report.success_rate:.1%}), mean reward {report.mean_reward:.4f}, "
        f"capped by reward quirks {report.capped_by_quirk}, unfinished {report.unfinished}"
    )
    typer.echo(f"environment: {json.dumps(dict(env.info), default=str)}")
    if as_json:
        typer.echo(json.dumps({"env": name, **report.as_dict()}))


@env_app.command("prepare")
def env_prepare(
    name: str,
    out: Annotated[Optional[Path], typer.Option(help="Where to write it (default: <data_dir>/eef-prepared).")] = None,
    force: Force = False,
    as_json: AsJson = False,
    option: EnvOptions = None,
) -> None:
    """Prepare an environment's data once so that later processes start in seconds (WebShop's full
    release: products, search index and goals). A preparation of the same files is kept unless
    --force; one of changed files is replaced."""
    from eef.envs.builtin import webshop_data_dir
    from eef.envs.shop.prepared import prepare_webshop

    if name != "webshop":
        raise EefError(f"environment {name!r} has no data to prepare (only webshop has)")
    options = parse_options(option)
    unknown = sorted(set(options) - {"data_dir"})
    if unknown:
        raise EefError(f"option {unknown[0]!r}: preparing reads only data_dir (the rest apply when the env is made)")
    prepared = prepare_webshop(
        webshop_data_dir(options.get("data_dir")), out, force=force, progress=True
    )  # off a terminal: a line every 30 s
    manifest = json.loads((prepared / "manifest.json").read_text(encoding="utf-8"))
    typer.echo(
        f"{prepared}: {manifest['products']:,} products, goals on {manifest['goal_products']['synthetic']:,} products "
        f"(synthetic) and {manifest['goal_products']['human'] or 0:,} (human); prepared in {manifest['prepare_seconds']} s"
    )
    for reason, count in manifest["skipped_human_instructions"].items():
        typer.echo(f"skipped {count} human instructions: {reason}")
    if as_json:
        typer.echo(json.dumps({"prepared": str(prepared), **manifest}))


@env_app.command("play")
def env_play(
    name: str,
    task_id: str,
    oracle: Annotated[bool, typer.Option(help="Let the oracle act instead of reading actions from stdin.")] = False,
    view: Annotated[
        Optional[str],
        typer.Option(
            help="The page view of an environment that has one (shop): compact or webshop, WebShop's full "
            "pages (default: the view eef run's default config shows the agent, compact; else the environment's)."
        ),
    ] = None,
    option: EnvOptions = None,
) -> None:
    """Play one episode: type actions such as search\\[red shirt] or click\\[buy now] (the arrow keys edit
    and recall lines); Ctrl-D stops early, Ctrl-C too with exit code 130."""  # \\[ keeps rich from reading [...] as a style
    from eef.envs import make
    from eef.envs.play import enable_line_editing, play_episode

    run_view = _run_view(name)
    options = parse_options(option)
    if view is not None:
        if options.get("view", view) != view:
            raise EefError(f"--view {view} and -o view={options['view']} disagree; give one of them")
        options["view"] = view
    elif run_view is not None:
        options.setdefault("view", run_view)
    env = make(name, **options)
    if "view" in env.info:
        shown = env.info["view"]
        told = "as in eef run's default config" if shown == run_view else f"eef run's default config: {run_view}"
        typer.echo(f"View: {shown} ({told}; --view picks another)" if run_view else f"View: {shown}")
    if not oracle:
        enable_line_editing()
    status = play_episode(env, task_id, typer.echo, None if oracle else input)
    if status:
        raise typer.Exit(status)


def _run_view(name: str) -> str | None:
    """The view eef run's default configuration plays environment ``name`` in (None: it plays another)."""
    from eef.config import DEFAULT_RUN_CONFIG, load_config

    run_env = load_config(DEFAULT_RUN_CONFIG).env
    return run_env.options.get("view") if run_env.name == name else None


cli_agent.register(app)
cli_data.register(app)


def main() -> None:
    """Entry point that turns eef's user errors, and files it cannot read or write, into a
    one-line message and exit code 2.

    SIGTERM (a launcher ending its processes, a job scheduler) exits like Ctrl-C does, through
    every ``with`` block: what eef started (a model server, rollout workers) stops with it.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        app()  # standalone: usage errors and end of input end with a message, not a traceback
    except EefError as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(2) from None
    except OSError as e:  # a read-only mount, a directory where a file goes, a full disk
        # a rename names its target second: that is the user's path, the first a temporary file beside it
        named = e.filename2 if isinstance(e, IsADirectoryError) and e.filename2 else e.filename
        where = f"{named}: " if named else ""
        typer.echo(f"error: {where}{e.strerror or e}", err=True)
        raise SystemExit(2) from None


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":  # `python -m eef.cli` works as `python -m eef` does
    main()
