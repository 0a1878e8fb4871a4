"""Names -> environment factories, for the CLI and configs.

Built-in environments register here; a user's package registers its own with
:func:`register`, or without any import through an entry point in the ``eef.envs`` group::

    [project.entry-points."eef.envs"]
    my-env = "my_package.env:make_env"   # a factory: keyword options -> TextEnv
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from eef.checks import TYPE_WORDS, FieldErrors
from eef.envs.protocol import TextEnv
from eef.errors import EefError, UnknownNameError

ENTRY_POINT_GROUP = "eef.envs"


OptionCheck = Callable[[Mapping[str, Any]], None]  # raises FieldErrors for option values out of range


@dataclass(frozen=True)
class EnvSpec:
    """A registered environment: its name, factory, a one-line description and, optionally, a
    check of option values that runs without building the environment (raising ``FieldErrors``)."""

    name: str
    factory: Callable[..., TextEnv]
    description: str = ""
    check: OptionCheck | None = None

    def options(self) -> dict[str, object]:
        """The factory's named keyword options with their defaults."""
        return {
            name: (None if p.default is inspect.Parameter.empty else p.default)
            for name, p in inspect.signature(self.factory).parameters.items()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        }

    @property
    def takes_any_option(self) -> bool:
        """The factory has ``**kwargs``, so option names cannot be checked before calling it."""
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(self.factory).parameters.values())


_REGISTRY: dict[str, EnvSpec] = {}


def register(
    name: str,
    factory: Callable[..., TextEnv],
    description: str = "",
    *,
    check: OptionCheck | None = None,
    replace: bool = False,
) -> None:
    """Make ``factory`` available as ``make(name, **options)``. Options are checked against the
    factory's keyword names and annotated types, then by ``check`` where given (ranges), before
    anything is built."""
    if name in _REGISTRY and not replace:
        raise ValueError(f"environment {name!r} is already registered (pass replace=True to replace it)")
    _REGISTRY[name] = EnvSpec(name, factory, description or (inspect.getdoc(factory) or "").split("\n")[0], check)


def unregister(name: str) -> None:
    """Forget the environment ``name`` (one registered for a test or a notebook session).

    Raises:
        UnknownNameError: no environment of that name is registered.
    """
    if name not in _REGISTRY:
        raise UnknownNameError("environment", name, sorted(_REGISTRY))
    del _REGISTRY[name]


def _load_entry_points() -> None:
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in _REGISTRY:
            register(entry.name, entry.load())


def registered() -> list[EnvSpec]:
    """Every registered environment, installed plug-ins included, by name."""
    _load_entry_points()
    return sorted(_REGISTRY.values(), key=lambda spec: spec.name)


def spec(name: str) -> EnvSpec:
    if name not in _REGISTRY:
        _load_entry_points()
    if name not in _REGISTRY:
        raise UnknownNameError("environment", name, sorted(_REGISTRY))
    return _REGISTRY[name]


def option_problems(name: str, options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What is wrong with ``options`` of the environment ``name``, as (option, reason) pairs, found
    without building it: unknown names, values of another type than the factory's annotation, and
    values out of the range its registered check allows.

    Raises:
        UnknownNameError: no environment of that name.
    """
    env_spec = spec(name)
    accepted = env_spec.options()
    unknown = [] if env_spec.takes_any_option else [key for key in options if key not in accepted]  # **kwargs: any
    problems = [(key, f"no such option; options: {', '.join(accepted) or '(none)'}") for key in unknown]
    hints = _option_types(env_spec.factory)
    problems += [
        (key, f"expected {_describe(hints[key])}, got {value!r}")
        for key, value in options.items()
        if key in hints and not _matches(hints[key], value)
    ]
    if not problems and env_spec.check is not None:
        try:
            env_spec.check(options)
        except FieldErrors as e:
            problems = e.problems
    return problems


def _option_types(factory: Callable[..., TextEnv]) -> dict[str, Any]:
    """The factory's parameter annotations that evaluate (one naming a type imported only for type
    checking is left out)."""
    hints = {}
    for key, parameter in inspect.signature(factory).parameters.items():
        annotation = parameter.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, getattr(factory, "__globals__", {}))  # the factory's own annotation
            except Exception:  # one this check cannot read is not checked
                continue
        if annotation is not inspect.Parameter.empty:
            hints[key] = annotation
    return hints


def _matches(hint: Any, value: Any) -> bool:
    """Whether ``value`` has the annotated type: the types YAML gives (containers by their kind, not
    their items); any other annotation (``Path``, ``tuple``, an enum) is the factory's to convert."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return not all(_checked(arg) for arg in args) or any(_matches(arg, value) for arg in args)
    if not _checked(hint):
        return True
    if hint is None or hint is type(None):
        return value is None
    hint = origin or hint
    if hint in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if hint is float else isinstance(value, hint)


def _checked(hint: Any) -> bool:
    """An annotation this check reads: one of the types YAML gives, or null."""
    return hint is None or hint is type(None) or (typing.get_origin(hint) or hint) in TYPE_WORDS


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if hint is None or hint is type(None):
        return "null"
    hint = typing.get_origin(hint) or hint
    return TYPE_WORDS.get(hint, getattr(hint, "__name__", str(hint)))


def make(name: str, **options: object) -> TextEnv:
    """Build the environment ``name`` with keyword ``options`` (checked first: :func:`option_problems`)."""
    problems = option_problems(name, options)
    if problems:
        raise EefError(f"environment {name!r}: " + "; ".join(f"option {key}: {reason}" for key, reason in problems))
    env_spec = spec(name)
    try:
        return env_spec.factory(**options)
    except (TypeError, ValueError) as e:  # a bad option value, reported with the environment's name
        raise EefError(f"environment {name!r}: {e}") from e
