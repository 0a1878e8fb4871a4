"""Reading JSON-lines files with errors that name the file and the line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eef.errors import DataError


def iter_json_lines(path: str | Path, *, skip_torn_tail: bool = False) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` for each non-blank line; ``.gz`` files are decompressed.

    Args:
        path: the file.
        skip_torn_tail: end quietly at a last line without its newline that does not parse (what
            a crash in the middle of an append leaves).

    Raises:
        DataError: a missing or unreadable file, a line that is not valid UTF-8 or JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    yield number, json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    if skip_torn_tail and not raw.endswith(b"\n"):
                        return
                    reason = (f"not valid JSON ({e.msg} at column {e.colno})" if isinstance(e, json.JSONDecodeError)
                              else "not valid UTF-8")
                    raise DataError(path, reason, line=number) from None
    except (OSError, EOFError) as e:
        raise DataError(path, f"cannot read: {e}") from None
