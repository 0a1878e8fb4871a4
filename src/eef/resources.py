"""What environments and policies share: ``close`` and ``with``, and an empty default mapping."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol, Self

NOTHING: Mapping[str, Any] = MappingProxyType({})  # an empty mapping no instance can change


class Closable(Protocol):
    """Something that holds resources until ``close`` (nothing by default); ``with`` closes it."""

    def close(self) -> None:
        """Release what is held (a simulator, a connection, an engine)."""
        return None  # a body, so that the default is not abstract

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
