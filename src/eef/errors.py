"""Errors that reach users: each one says where the bad input is and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class EefError(Exception):
    """Base class of every error eef reports to a user (the CLI prints it and exits 2)."""


class DataError(EefError):
    """A data file is missing or malformed.

    The message names the file, the line (1-based, when the file is line-oriented) and the field.
    """

    def __init__(self, path: str | Path, reason: str, *, line: int | None = None, field: str | None = None):
        self.path = str(path)
        self.line = line
        self.field = field
        self.reason = reason
        where = self.path + (f":{line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{reason}")


class UnknownNameError(EefError, KeyError):
    """A name (task id, split, environment) that does not exist; the message lists what does."""

    def __init__(self, kind: str, name: str, known: list[str], *, limit: int = 20):
        shown = ", ".join(known[:limit]) + (f", ... ({len(known)} in all)" if len(known) > limit else "")
        self.kind, self.name, self.known = kind, name, known
        super().__init__(f"unknown {kind} {name!r}; known: {shown or '(none)'}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]
