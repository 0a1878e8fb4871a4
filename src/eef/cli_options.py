"""What the ``eef`` commands share: option types with their ranges, ``-o KEY=VALUE`` parsing, the
environment and task lookup, settings built from options, and the rule for existing outputs.

Integer options carry their range (click reports a value outside it with the option's name);
settings objects check their own fields, and :func:`settings` names the option of each field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from eef.agent.backends import DEFAULT_SERVER_COMMAND
from eef.agent.card import read_agent_card, served_agent_card
from eef.checks import FieldErrors
from eef.config import ModelSection, RunConfig, read_yaml
from eef.errors import EefError, UnknownNameError
from eef.models import local_hint
from eef.train.settings import TRAIN_RECORD

if TYPE_CHECKING:
    from eef.agent.prompt import PromptConfig
    from eef.envs.protocol import TextEnv
    from eef.trajectory import Message

T = TypeVar("T")

# An option that is also a run's setting defaults to the configuration schema's default (what a config
# file that leaves the key out gets), so the two cannot drift apart. Where the command's default differs
# from eef run's default config (eef/configs/default.yaml, made for the tiny model on the CPU), the
# option's help says "eef run's default config: VALUE"; tests/test_cli_help.py holds both to that.
SCHEMA_DEFAULTS = RunConfig()

EnvOptions = Annotated[
    Optional[list[str]],
    typer.Option("--option", "-o", help="Environment option KEY=VALUE (VALUE read as YAML); repeatable."),
]
Limit = Annotated[Optional[int], typer.Option(min=1, help="Only the first N tasks.")]
Backend = Annotated[
    str,
    typer.Option(
        help="Policy backend: hf, openai, vllm, served (eef starts --server-command per checkpoint) or one registered with eef.agent.backends.register_backend."
    ),
]
BaseUrl = Annotated[
    Optional[str], typer.Option(help="Server URL of the openai backend, e.g. http://localhost:8000/v1.")
]
NumEnvs = Annotated[
    int, typer.Option(min=1, help="Episodes stepped together (the batch width; eef run's default config: 128).")
]
MaxNewTokens = Annotated[
    int, typer.Option(help="The longest completion, in tokens (eef run's default config: 48, for the tiny model).")
]
Workers = Annotated[
    int,
    typer.Option(
        min=1,
        help="Forked single-threaded processes sharing the episodes (hf "
        "backend on the CPU, an in-process environment); each steps "
        "NUM_ENVS / WORKERS (eef run's default config: 2).",
    ),
]
Engine = Annotated[
    str,
    typer.Option(
        help="Where episodes run: local (forked workers, --workers) or ray (Ray actors, --ray-actors; on the "
        "cluster at --ray-address, else a Ray instance started here; docs/scale.md).",
    ),
]
RayAddress = Annotated[
    Optional[str],
    typer.Option(
        help="With --engine ray: the cluster's head node (HOST:PORT, as `ray start` printed it, or auto); "
        "none starts a Ray instance in this process.",
    ),
]
RayActors = Annotated[
    int,
    typer.Option(
        min=1, help="With --engine ray: environment actors, each with NUM_ENVS / RAY_ACTORS environments and a policy."
    ),
]
ReportTo = Annotated[
    Optional[list[str]],
    typer.Option(
        "--report-to",
        help="Send losses and metrics as they come to tensorboard, wandb or mlflow (logs next to the output, "
        "in tracking/); repeatable.",
    ),
]
WorkerTimeout = Annotated[
    float,
    typer.Option(
        min=1,
        help="With --workers: seconds a worker may go without finishing an "
        "episode before it is killed and the command fails naming it.",
    ),
]
EnvName = Annotated[
    Optional[str],
    typer.Argument(metavar="ENV", help="Environment name (default: the one the checkpoint was trained on)."),
]
OneShot = Annotated[
    Optional[bool],
    typer.Option(
        help="Show a worked example episode before each task (default: as the checkpoint was trained, else no)."
    ),
]
SystemRole = Annotated[
    Optional[bool],
    typer.Option(
        help="Instruction in a system message; --no-system-role: a first user "
        "message answered by OK (templates without a system role). Default: as the checkpoint was trained, else a system message."
    ),
]
Instruction = Annotated[
    Optional[str],
    typer.Option(help="Replace the agent instruction (default: the checkpoint's, else the environment's)."),
]
Device = Annotated[str, typer.Option(help="hf backend: auto, cpu or cuda.")]
Dtype = Annotated[str, typer.Option(help="hf/vllm backends: auto, float32, bfloat16 or float16.")]
MaxBatch = Annotated[int, typer.Option(min=1, help="hf backend: conversations per forward pass.")]
Decode = Annotated[
    str,
    typer.Option(
        help="hf backend: auto (decoding compiled with CUDA graphs on CUDA, models up to 1.5B), eager or compiled."
    ),
]
Concurrency = Annotated[int, typer.Option(min=1, help="openai backend: requests in flight.")]
ApiKeyEnv = Annotated[str, typer.Option(help="openai backend: environment variable holding the API key.")]
RequestTimeout = Annotated[
    float, typer.Option(min=0.001, help="openai backend: the wall-clock deadline of one request attempt, in seconds.")
]
MaxRetries = Annotated[
    int,
    typer.Option(
        min=0, help="openai backend: further attempts after a transient failure (timeout, 429, 5xx, malformed reply)."
    ),
]
ServerCommand = Annotated[
    str,
    typer.Option(
        help="--backend served: the command that serves the model, with {checkpoint}, {port} and {gpus} "
        "(started for this command, stopped after)."
    ),
]
Force = Annotated[bool, typer.Option(help="Overwrite an existing output.")]
AsJson = Annotated[bool, typer.Option("--json", help="End with one JSON line of the figures.")]


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a dict, each value read as YAML."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise EefError(f"option {pair!r} is not KEY=VALUE")
        options[key.strip()] = read_yaml(value, f"option {pair!r}")
    return options


def env_and_options(name: str, options: list[str] | None) -> tuple[TextEnv, dict[str, Any]]:
    """The environment ``name`` made with ``-o`` options, and the parsed options (to clone it)."""
    from eef.envs import make

    parsed = parse_options(options)
    return make(name, **parsed), parsed


def prompt_config(one_shot: bool | None, system_role: bool | None, instruction: str | None) -> PromptConfig:
    """The prompt the options ask for, an option left out taking the prompt's default."""
    from eef.agent import PromptConfig

    return PromptConfig(instruction, bool(one_shot), system_role is not False)


def agent_setup(
    env_name: str | None,
    options: list[str] | None,
    checkpoint: str,
    prompt_options: tuple[bool | None, bool | None, str | None],
    warn: Callable[[str], None],
    base_url: str | None = None,
    api_key: str | None = None,
) -> tuple[TextEnv, dict[str, Any], tuple[Message, ...]]:
    """The environment, its options and the prompt a command runs ``checkpoint`` with.

    What the user gave wins; what they left out comes from the checkpoint's
    :class:`~eef.agent.card.AgentCard` (its environment, options and prompt), so a checkpoint runs
    as it was trained. ``prompt_options`` are ``--one-shot``, ``--system-role`` and
    ``--instruction`` (None where not given); each departure from the card is a warning. A
    served model's card is read from ``base_url``'s model list (``eef serve`` lists it; asked with
    ``api_key`` where given).
    """
    from eef.agent import build_prompt
    from eef.envs import make

    if Path(checkpoint).is_dir():
        card = read_agent_card(checkpoint)
    else:
        card = served_agent_card(base_url, checkpoint, api_key=api_key) if base_url else None
    name = env_name or (card.env if card is not None else None)
    if name is None:
        if base_url is None and not Path(checkpoint).exists():  # a mistyped directory, named as such
            raise EefError(
                f"ENV: name the environment ({checkpoint} is no local checkpoint directory{local_hint(checkpoint)}; "
                "a hub model records none)"
            )
        raise EefError(f"ENV: name the environment ({checkpoint} records none)")
    same = card is not None and card.env == name
    if card is not None and not same:
        warn(f"warning: {checkpoint} was trained on {card.env}, not {name}")
    parsed = parse_options(options)
    if same and card is not None and card.env_options is not None:
        # what the user gave replaces those options only: the card's others (a data_dir) still hold
        changed = {key: value for key, value in parsed.items() if card.env_options.get(key, value) != value}
        if changed:
            trained = {key: card.env_options[key] for key in changed}
            warn(f"warning: {checkpoint} was trained with the options {trained}, not {changed}")
        parsed = {**card.env_options, **parsed}
    env = make(name, **parsed)
    if same and card is not None and all(value is None for value in prompt_options):
        return env, parsed, card.prompt
    messages = build_prompt(env.name, prompt_config(*prompt_options), env)
    if same and card is not None and messages != card.prompt:
        warn(
            f"warning: {checkpoint} was trained with another prompt; leave out --instruction, --one-shot "
            "and --system-role to use it"
        )
    return env, parsed, messages


def task_ids(env: TextEnv, split: str, limit: int | None) -> list[str]:
    """The first ``limit`` task ids of a split (all with None)."""
    if split not in env.splits():
        raise UnknownNameError("split", split, env.splits())
    ids = env.task_ids(split)
    return ids[:limit] if limit is not None else ids


def settings(cls: type[T], options: dict[str, str] | None = None, **values: Any) -> T:
    """``cls(**values)``, a field out of range reported under its option: ``--`` + the field's
    name (``--learning-rate``) unless ``options`` names it otherwise."""
    try:
        return cls(**values)
    except FieldErrors as e:
        names = options or {}
        raise EefError(
            "; ".join(f"{names.get(field, '--' + field.replace('_', '-'))}: {reason}" for field, reason in e.problems)
        ) from None


def refuse_overwrite(*paths: Path, force: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse to replace outputs that exist unless ``force``, and an input always (reading a file
    while its replacement is written would lose it, ``--force`` or not)."""
    for path in paths:
        for given in inputs:
            if path.exists() and given.exists() and path.resolve() == given.resolve():
                raise EefError(f"{path} is also the input: write the output elsewhere")
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise EefError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; pass --force to overwrite"
        )


def model_section(
    backend: str,
    base_url: str | None,
    device: str,
    dtype: str,
    max_batch_size: int,
    concurrency: int,
    api_key_env: str,
    request_timeout: float,
    max_retries: int,
    server_command: str = DEFAULT_SERVER_COMMAND,
    decode: str = "auto",
) -> ModelSection:
    """How the command runs its model, as a run's ``model`` section (checked the same way)."""
    return settings(
        ModelSection,
        {"request_timeout_s": "--request-timeout"},
        backend=backend,
        base_url=base_url,
        device=device,
        dtype=dtype,
        max_batch_size=max_batch_size,
        concurrency=concurrency,
        api_key_env=api_key_env,
        request_timeout_s=request_timeout,
        max_retries=max_retries,
        server_command=server_command,
        decode=decode,
    )


CHECKPOINT_MARKERS = (TRAIN_RECORD, "eef_tiny_model.json")  # what eef writes into every model directory


def quiet_model_loading() -> None:
    """Leave out transformers' "Loading weights" and "Writing model shards" bars: a run loads and
    saves a checkpoint at every stage, and its log should be one line per stage (eef's own bars,
    for training, exploration and evaluation, stay)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def refuse_overwrite_dir(out: Path, *, force: bool, inputs: Sequence[Path | None] = ()) -> None:
    """An output directory may be new or empty; with ``force``, one eef wrote (a checkpoint);
    never one that holds an input of the same command, which replacing it would delete."""
    if out.exists() and not out.is_dir():
        raise EefError(f"{out}: exists and is not a directory")
    for path in inputs:
        if path is not None and path.resolve().is_relative_to(out.resolve()):
            raise EefError(f"{out} holds the input {path}, which replacing it would delete; choose another --out")
    if not out.exists() or not any(out.iterdir()):
        return
    if not force:
        raise EefError(f"{out} already exists; pass --force to replace it")
    if not any((out / marker).is_file() for marker in CHECKPOINT_MARKERS):
        raise EefError(
            f"{out} holds files eef did not write (no {' or '.join(CHECKPOINT_MARKERS)}); choose another --out"
        )
