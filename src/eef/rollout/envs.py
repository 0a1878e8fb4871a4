"""Independent environments for one batch of episodes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from eef.envs.protocol import SupportsFork, TextEnv
from eef.envs.registry import make


def clone_envs(env: TextEnv, count: int, options: Mapping[str, Any] | None = None) -> list[TextEnv]:
    """``count`` independent environments like ``env``: forks when it can fork (sharing its
    catalog and index), otherwise fresh ones from the registry with the same options."""
    if isinstance(env, SupportsFork):
        return [env] + [env.fork() for _ in range(count - 1)]
    return [env] + [make(env.name, **(options or {})) for _ in range(count - 1)]


@contextmanager
def cloned_envs(env: TextEnv, count: int, options: Mapping[str, Any] | None = None) -> Iterator[list[TextEnv]]:
    """:func:`clone_envs` for one stage: the clones (not ``env``) are closed on exit, since a
    ScienceWorld clone holds a JVM."""
    envs = clone_envs(env, count, options)
    try:
        yield envs
    finally:
        for clone in envs[1:]:
            clone.close()
