"""Names -> environment factories, for the CLI and configs.

Built-in environments register here; a user's package registers its own with
:func:`register`, or without any import through an entry point in the ``eef.envs`` group::

    [project.entry-points."eef.envs"]
    my-env = "my_package.env:make_env"   # a factory: keyword options -> TextEnv
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from eef.envs.protocol import TextEnv
from eef.errors import EefError, UnknownNameError

ENTRY_POINT_GROUP = "eef.envs"


@dataclass(frozen=True)
class EnvSpec:
    """A registered environment: its name, factory and a one-line description."""

    name: str
    factory: Callable[..., TextEnv]
    description: str = ""

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


def register(name: str, factory: Callable[..., TextEnv], description: str = "", *, replace: bool = False) -> None:
    """Make ``factory`` available as ``make(name, **options)``."""
    if name in _REGISTRY and not replace:
        raise ValueError(f"environment {name!r} is already registered (pass replace=True to replace it)")
    _REGISTRY[name] = EnvSpec(name, factory, description or (inspect.getdoc(factory) or "").split("\n")[0])


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


def make(name: str, **options: object) -> TextEnv:
    """Build the environment ``name`` with keyword ``options`` (checked against its factory)."""
    env_spec = spec(name)
    if not env_spec.takes_any_option:
        accepted = env_spec.options()
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise EefError(
                f"environment {name!r} has no option {', '.join(unknown)}; options: {', '.join(accepted) or '(none)'}"
            )
    try:
        return env_spec.factory(**options)
    except (TypeError, ValueError) as e:  # a bad option value, reported with the environment's name
        raise EefError(f"environment {name!r}: {e}") from e
