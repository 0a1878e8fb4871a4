"""Reading and writing JSON-lines files with errors that name the file and the line.

Only standard JSON is written: NaN and infinities, which Python's ``json`` writes by default and
most other tools reject, are an error instead.
"""

from __future__ import annotations

import codecs
import gzip
import json
import zlib
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
        DataError: a missing or unreadable file, a line that is not valid UTF-8 or JSON, or one
            too deeply nested or with too long a number to read.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                if number == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)  # what some Windows editors write first
                if not raw.strip():
                    continue
                try:
                    yield number, json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError, RecursionError) as e:
                    # a crash leaves a cut-off line, never a whole one too deep or too long to read
                    torn = not raw.endswith(b"\n") and isinstance(e, (UnicodeDecodeError, json.JSONDecodeError))
                    if skip_torn_tail and torn:
                        return
                    cut = "; the last line ends without a newline, as if cut short" if torn else ""
                    raise DataError(path, decode_failure(e) + cut, line=number) from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(path, f"cannot read: {e}") from None


def decode_failure(error: BaseException) -> str:
    """Why a JSON text could not be read, in one clause."""
    if isinstance(error, UnicodeDecodeError):
        return "not valid UTF-8"
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON ({error.msg}: column {error.colno})"
    if isinstance(error, RecursionError):
        return "nested too deeply to read"
    if "integer string conversion" in str(error):  # Python refuses integers of over 4300 digits
        return "a number has too many digits to read"
    return f"not valid JSON ({error})"


def json_line(record: Any, path: str | Path, line: int | None = None) -> str:
    """``record`` as one line of standard JSON (newline included).

    Raises:
        DataError: the record holds NaN or an infinite number, which standard JSON cannot hold.
    """
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError as e:
        if "JSON compliant" not in str(e):  # not a NaN: a bug, keep its traceback
            raise
        raise DataError(
            path, "a record holds NaN or an infinite number, which JSON cannot store; not written", line=line
        ) from None
