"""The run configuration: a typed schema, validated as a whole before any work starts.

A YAML file (plus ``key.path=value`` overrides) becomes a :class:`RunConfig`. Every default lives
here, in the schema; unknown keys, wrong types and values outside their choices are all reported
at once, each with its key path (``methods.eef.m: expected an integer, got 'five'``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from eef.agent.backends import DEFAULT_SERVER_COMMAND, backend_names
from eef.agent.policy import DECODE_MODES
from eef.checks import TYPE_WORDS, FieldErrors, above, at_least, between, check_fields, each, matches, not_empty, one_of
from eef.errors import EefError, UnknownNameError
from eef.experts.registry import expert_names
from eef.experts.scripted_shop import ScriptedExpertConfig
from eef.methods.registry import method_names
from eef.methods.settings import MethodsSection
from eef.models import DEVICE_PATTERN, DTYPE_NAMES
from eef.models.tiny import TinyModelConfig
from eef.rollout.cluster import RayConfig, ray_engine_problems
from eef.tracking import TRACKERS
from eef.train.settings import TrainConfig


class ConfigError(EefError):
    """One or more problems in a configuration, each with its key path; the message names the
    ``-s`` override that set a key, where one did."""

    def __init__(self, source: str, problems: list[str], overrides: list[str] | None = None):
        self.problems = problems
        lines = [_blame_override(problem, overrides or []) for problem in problems]
        super().__init__(f"{source}: invalid configuration:\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class EnvSection:
    """The environment: a registered name and its options."""

    name: str = "shop"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSection:
    """The base model and how to run it.

    ``base`` null creates the tiny default (sized by ``tiny``; its seed is the run's) from the
    environment's text; otherwise a checkpoint directory or hub id (e.g.
    ``meta-llama/Meta-Llama-3-8B-Instruct``). The ``hf`` backend's ``decode`` is ``auto``
    (decoding steps compiled, with CUDA graphs, on CUDA for models up to 1.5B parameters; eager
    elsewhere), ``eager`` or ``compiled``. For a server (``openai`` backend): ``concurrency``
    requests in flight, the API key read from the variable ``api_key_env``, and
    ``request_timeout_s``, ``max_retries`` and ``max_backoff_s`` bounding each call: the
    wall-clock deadline of one attempt, further attempts after a transient failure, the longest
    wait between them. The ``served`` backend starts ``server_command`` for each checkpoint it
    explores or evaluates (placeholders ``{checkpoint}``, ``{port}``, ``{gpus}``; ``vllm serve`` by
    default), waits up to ``server_start_timeout_s`` for it and stops it afterwards.
    """

    base: str | None = None
    tiny: TinyModelConfig = TinyModelConfig()
    backend: str = "hf"
    device: str = "auto"
    dtype: str = "auto"
    max_batch_size: int = 64
    decode: str = "auto"
    base_url: str | None = None
    concurrency: int = 16
    api_key_env: str = "OPENAI_API_KEY"
    request_timeout_s: float = 60.0
    max_retries: int = 5
    max_backoff_s: float = 60.0
    server_command: str = DEFAULT_SERVER_COMMAND
    server_start_timeout_s: float = 1200.0

    def __post_init__(self) -> None:
        check_fields(
            self,
            backend=one_of(*backend_names()),
            device=matches(DEVICE_PATTERN, "auto, cpu, cuda or cuda:N (or mps, xpu, npu, hpu)"),
            dtype=one_of("auto", *DTYPE_NAMES),
            server_command=not_empty,
            server_start_timeout_s=above(0),
            max_batch_size=at_least(1),
            decode=one_of(*DECODE_MODES),
            concurrency=at_least(1),
            base=not_empty,
            api_key_env=not_empty,
            request_timeout_s=above(0),
            max_retries=at_least(0),
            max_backoff_s=at_least(0),
        )


@dataclass(frozen=True)
class PromptSection:
    """See :class:`eef.agent.PromptConfig`."""

    instruction: str | None = None
    one_shot: bool = False
    system_role: bool = True


@dataclass(frozen=True)
class ExpertSource:
    """One teacher.

    ``kind``: ``scripted`` (the built-in shop's scripted expert), ``oracle`` (perfect
    demonstrations), ``gold`` / ``perturbed`` (ScienceWorld's gold sequences, intact or broken
    after a key action), one added with :func:`eef.experts.registry.register_expert`, or ``file``
    (trajectories JSONL at ``path``). ``role``: ``clone`` (successes go
    to ``D_e``, failures are explored) or ``explore`` (everything is only explored: a
    weaker teacher's role, docs/method.md).
    """

    name: str = "scripted"
    kind: str = "scripted"
    path: str | None = None
    role: str = "clone"
    seed: int = 0
    scripted: ScriptedExpertConfig | None = None  # kind scripted: its mistake rates (None: the defaults)

    CHOICES = {"role": ("clone", "explore")}

    def __post_init__(self) -> None:
        check_fields(self, kind=one_of("file", *expert_names()))


@dataclass(frozen=True)
class ExpertSection:
    """Where expert trajectories come from, for which split."""

    sources: tuple[ExpertSource, ...] = (ExpertSource(),)
    split: str = "train"
    limit: int | None = None

    def __post_init__(self) -> None:
        check_fields(self, sources=not_empty, limit=at_least(1))


@dataclass(frozen=True)
class RolloutSection:
    """Exploration rollouts (``num_envs`` and ``workers`` also apply to evaluation).

    ``workers`` > 1 shares the episodes among that many forked single-threaded processes, each
    stepping ``num_envs / workers`` environments: faster decoding on the CPU with the ``hf``
    backend and an environment that lives in this process (the built-in shop); a model on a GPU
    rolls out in one process (see :mod:`eef.rollout.workers`). ``worker_timeout_s``: how long a
    worker may go without finishing an episode before it is killed and the stage fails naming it.
    ``engine: ray`` rolls out in Ray actors on a cluster instead (the ``ray`` section;
    :mod:`eef.rollout.cluster`), ``num_envs`` shared among the actors.
    """

    engine: str = "local"
    num_envs: int = 64
    workers: int = 1
    worker_timeout_s: float = 1800.0
    max_new_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 1.0

    CHOICES = {"engine": ("local", "ray")}

    def __post_init__(self) -> None:
        check_fields(
            self,
            num_envs=at_least(1),
            workers=at_least(1),
            worker_timeout_s=at_least(1),
            max_new_tokens=at_least(1),
            temperature=at_least(0),
            top_p=between(0, 1, open_low=True),
        )


@dataclass(frozen=True)
class EvalSection:
    """Evaluation (greedy by default)."""

    split: str = "test"
    limit: int | None = None
    max_new_tokens: int = 48
    temperature: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self, limit=at_least(1), max_new_tokens=at_least(1), temperature=at_least(0))


@dataclass(frozen=True)
class TrackingSection:
    """Experiment tracking (:mod:`eef.tracking`): ``report_to`` any of tensorboard, wandb, mlflow;
    logs go to ``RUN_DIR/tracking``."""

    report_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_fields(self, report_to=each(one_of(*TRACKERS), empty_ok=True))


@dataclass(frozen=True)
class RunConfig:
    """A whole run: every stage's settings and the seed they derive from."""

    name: str = "default"
    seed: int = 0
    run_dir: str | None = None
    env: EnvSection = EnvSection()
    model: ModelSection = ModelSection()
    prompt: PromptSection = PromptSection()
    expert: ExpertSection = ExpertSection()
    train: TrainConfig = TrainConfig()  # its seed is replaced by the run's seed + the iteration
    rollout: RolloutSection = RolloutSection()
    ray: RayConfig = RayConfig()  # rollout.engine: ray
    eval: EvalSection = EvalSection()
    methods: MethodsSection = MethodsSection()
    tracking: TrackingSection = TrackingSection()

    def __post_init__(self) -> None:
        # the stages derive their seeds by adding small offsets; torch and accelerate take up to 2**32 - 1
        check_fields(self, name=not_empty, run_dir=not_empty, seed=between(0, 2**31 - 1))

    def as_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists), as saved in ``config.yaml``."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def build(cls: type, data: Any, path: str, problems: list[str]) -> Any:
    """An instance of dataclass ``cls`` from ``data``; problems are appended, not raised."""
    if not isinstance(data, dict):
        problems.append(f"{path.rstrip('.') or '(top)'}: expected a mapping, got {type(data).__name__}")
        return cls()
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            problems.append(f"{path}{key}: unknown key; known: {', '.join(sorted(names))}")
    values = {}
    known_problems = len(problems)
    for name in sorted(names & set(data)):
        values[name] = _value(hints[name], data[name], f"{path}{name}", problems)
        choices = getattr(cls, "CHOICES", {}).get(name)
        if choices and values[name] not in choices:
            problems.append(f"{path}{name}: {values[name]!r} is not one of {', '.join(choices)}")
    if len(problems) > known_problems:  # its values are placeholders: the class's own checks would only echo them
        return cls()
    try:
        return cls(**values)
    except FieldErrors as e:  # the class's own range checks, each naming its field
        problems.extend(f"{path}{name}: {reason}" for name, reason in e.problems)
        return cls()
    except (TypeError, ValueError) as e:  # the class's own checks of its values
        key, sep, reason = str(e).partition(": ")
        if sep and key in names:  # the check names its key ("decoy: ..."): report it under the key's path
            problems.append(f"{path}{key}: {reason}")
        else:
            problems.append(f"{path.rstrip('.') or '(top)'}: {e}")
        return cls()


def _value(hint: Any, value: Any, path: str, problems: list[str]) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _value(next(a for a in args if a is not type(None)), value, path, problems)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return build(hint, value, path + ".", problems)
    if origin is tuple:
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return ()
        return tuple(_value(args[0], v, f"{path}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return {}
        return dict(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    expected = TYPE_WORDS[hint]
    ok = (isinstance(value, hint) and not (hint is not bool and isinstance(value, bool))) or (
        hint is float and isinstance(value, int) and not isinstance(value, bool)
    )
    if not ok:
        problems.append(f"{path}: expected {expected}, got {value!r}")
        return hint()
    return float(value) if hint is float else value


MAX_YAML_VALUES = 100_000  # far above any configuration; aliases of aliases can expand past memory


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping, where the last would silently win."""


def _unique_keys_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`, which construct_mapping flattens
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {first_line[key] + 1})", key_node.start_mark
                )
            first_line[key] = key_node.start_mark.line
        except TypeError:  # an unhashable key: construct_mapping reports it
            break
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_keys_mapping)


def read_yaml(text: str, source: str) -> Any:
    """Parse YAML safely (no Python tags, no repeated keys).

    Raises:
        EefError: naming ``source``, the line where known and what is wrong.
    """
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as e:
        line = f":{e.problem_mark.line + 1}" if e.problem_mark is not None else ""
        raise EefError(f"{source}{line}: not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise EefError(f"{source}: not valid YAML: {e}") from None
    except RecursionError:
        raise EefError(f"{source}: not valid YAML: nested too deeply") from None
    except ValueError as e:  # a number Python will not convert, such as an integer of 5,000 digits
        raise EefError(f"{source}: not valid YAML: {e}") from None
    if _holds_itself(data):
        raise EefError(
            f"{source}: not valid YAML: an alias refers to the value that holds it, or aliases expand "
            f"to over {MAX_YAML_VALUES:,} values"
        )
    return data


def _holds_itself(data: Any) -> bool:
    """Whether a value contains itself (``&a [*a]``), which every later walk would follow for ever."""
    stack: list[tuple[Any, frozenset[int]]] = [(data, frozenset())]
    for _ in range(MAX_YAML_VALUES):
        if not stack:
            return False
        item, above = stack.pop()
        if isinstance(item, (dict, list)):
            if id(item) in above:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack += [(child, above | {id(item)}) for child in children]
    return True  # aliases of aliases that expand past any configuration's size count as the same


def saved_config(path: Path) -> RunConfig:
    """The configuration a run saved (``config.yaml``); keys added to the schema since then take
    their defaults, so a run made by an older eef still resumes.

    Raises:
        ConfigError: the file no longer fits the schema.
        EefError: the file is not YAML.
    """
    data = read_yaml_file(path)
    problems: list[str] = []
    config = build(RunConfig, data if data is not None else {}, "", problems)
    if problems:
        raise ConfigError(str(path), problems)
    return config


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    """Where two configurations (as dicts) differ: ``key.path: before -> after``, one per leaf.

    >>> differences({"train": {"epochs": 48, "seed": 0}}, {"train": {"epochs": 2, "seed": 0}})
    ['train.epochs: 48 -> 2']
    >>> differences({"sources": [{"seed": 0}, {"seed": 1}]}, {"sources": [{"seed": 0}, {"seed": 2}]})
    ['sources[1].seed: 1 -> 2']
    """
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            line
            for key in dict.fromkeys([*before, *after])
            for line in differences(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        ]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [line for i, (b, a) in enumerate(zip(before, after)) for line in differences(b, a, f"{path}[{i}]")]
    return [] if before == after else [f"{path}: {before!r} -> {after!r}"]


def read_yaml_file(path: Path) -> Any:
    """:func:`read_yaml` of a file, which must be UTF-8 text."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise EefError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise EefError(f"{path}: cannot be read ({e.strerror})") from None
    return read_yaml(text, str(path))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``a.b.c=value`` pairs (values read as YAML) in a nested dict."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise EefError(f"override {item!r} is not KEY.PATH=VALUE")
        *parents, leaf = key.strip().split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise EefError(f"override {item!r}: {part} is not a section")
        node[leaf] = read_yaml(raw, f"override {item!r}")
    return data


# the built-in default `eef run` runs without a file (the schema's own defaults are the paper's settings)
DEFAULT_RUN_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a configuration (None: the schema's defaults, the paper's
    settings; ``eef run`` without a file reads :data:`DEFAULT_RUN_CONFIG`).

    Raises:
        ConfigError: every problem found, with key paths.
        EefError: the file is missing or is not YAML.
    """
    data: Any = {}
    source = "(defaults)"
    if path is not None:
        source = str(path)
        if not Path(path).is_file():
            raise EefError(f"{path}: {'a directory, not a' if Path(path).is_dir() else 'no such'} configuration file")
        data = read_yaml_file(Path(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top): expected a mapping, got {type(data).__name__}"])
    data = apply_overrides(data, overrides or [])
    problems: list[str] = []
    config = build(RunConfig, data, "", problems)
    # the environment's options are judged beside every other problem (a flagged value anywhere makes the
    # whole configuration a placeholder), unless the env section itself is malformed; the other
    # cross-checks would judge placeholders
    env_malformed: list[str] = []
    env = build(EnvSection, data.get("env", {}), "env.", env_malformed)
    problems += ([] if env_malformed else _env_problems(env)) + ([] if problems else _cross_checks(config))
    if problems:
        raise ConfigError(source, problems, overrides)
    # a relative path reads from the working directory, as run_dir and the environment's options do; the run
    # records which files it read
    sources = tuple(
        dataclasses.replace(s, path=str(expert_file(s.path))) if s.path else s for s in config.expert.sources
    )
    return dataclasses.replace(config, expert=dataclasses.replace(config.expert, sources=sources))


def expert_file(path: str) -> Path:
    """Where an expert source's ``path`` points: from the working directory, ``~`` expanded."""
    return Path(path).expanduser().resolve()


def _blame_override(problem: str, overrides: list[str]) -> str:
    """A problem (``path: reason``) naming the ``-s`` override that set its key, if one did (the
    last, as the last one wins), since the file it is reported against does not hold the value.

    >>> _blame_override("train.epochs: expected a number, got 'abc'", ["train.epochs=abc"])
    "train.epochs: expected a number, got 'abc' (set by -s train.epochs=abc)"
    """
    path = problem.partition(": ")[0]
    for item in reversed(overrides):
        key = item.partition("=")[0].strip()
        # the key itself, a key under a section it set, or an unknown section it named (bogus.key=1)
        if path == key or path.startswith((f"{key}.", f"{key}[")) or key.startswith(f"{path}."):
            return f"{problem} (set by -s {item})"
    return problem


def _env_problems(env: EnvSection) -> list[str]:
    from eef.envs import option_problems

    try:
        return [f"env.options.{key}: {reason}" for key, reason in option_problems(env.name, env.options)]
    except UnknownNameError as e:
        return [f"env.name: {e}"]


def _cross_checks(config: RunConfig) -> list[str]:
    problems = []
    for i, method in enumerate(config.methods.run):
        if method not in method_names():
            problems.append(f"methods.run[{i}]: {method!r} is not one of {', '.join(method_names())}")
    for i, source in enumerate(config.expert.sources):
        found = expert_file(source.path) if source.path else None
        if source.kind == "file" and (found is None or not found.is_file()):
            where = f" ({found})" if found and str(found) != source.path else ""
            problems.append(f"expert.sources[{i}].path: {source.path!r} is not a file{where}")
        if source.scripted is not None and source.kind != "scripted":
            problems.append(f"expert.sources[{i}].scripted: only for kind scripted, not {source.kind!r}")
    if config.rollout.workers > 1 and config.model.backend != "hf":
        problems.append(
            f"rollout.workers: {config.rollout.workers} worker processes need model.backend hf "
            f"(a {config.model.backend} server batches the requests itself), or set rollout.workers: 1"
        )
    if config.rollout.engine == "ray":
        problems += _ray_checks(config)
    if config.rollout.workers > config.rollout.num_envs:
        problems.append(
            f"rollout.workers: {config.rollout.workers} workers need at least as many environments "
            f"(rollout.num_envs is {config.rollout.num_envs})"
        )
    return problems


def _ray_checks(config: RunConfig) -> list[str]:
    rollout, backend = config.rollout, config.model.backend
    problems = ray_engine_problems(backend, rollout.workers, config.ray.env_actors, rollout.num_envs)
    if config.ray.endpoints and backend != "openai":
        problems.append(f"ray.endpoints: only for model.backend openai, not {backend}")
    if backend == "openai" and not config.ray.endpoints and config.model.base_url is None:
        problems.append("ray.endpoints: name the servers the actors call (or set model.base_url)")
    return problems
