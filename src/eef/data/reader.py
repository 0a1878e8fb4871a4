"""Records of a JSON file that is either one array (ETO, the EEF set) or JSON lines (AgentGym,
OpenAI), each with the line it starts on, so errors name file and line either way."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eef.errors import DataError
from eef.jsonl import decode_failure, iter_json_lines

_DECODER = json.JSONDecoder()


def iter_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line, record)`` for each element of a top-level JSON array, or each line of a JSONL file.

    Raises:
        DataError: a missing or unreadable file, invalid UTF-8 or JSON, nesting or a number too large
            to read (with the line of the fault).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "no such file")
    if path.suffix == ".gz" or _first_char(path) != "[":
        yield from iter_json_lines(path)
        return
    yield from _array_elements(path, _read_text(path))


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(path, f"cannot read: {e}") from None
    try:
        return data.decode("utf-8-sig")  # a leading byte-order mark is dropped
    except UnicodeDecodeError as e:
        raise DataError(path, "not valid UTF-8", line=data.count(b"\n", 0, e.start) + 1) from None


def _first_char(path: Path) -> str:
    try:
        with path.open("rb") as f:
            while chunk := f.read(4096):
                stripped = chunk.removeprefix(codecs.BOM_UTF8).lstrip()
                if stripped:
                    return stripped[:1].decode("utf-8", "replace")
    except OSError as e:
        raise DataError(path, f"cannot read: {e}") from None
    return ""


def _array_elements(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """Decode the array one element at a time: a bad element is reported at its own line."""
    position = text.index("[") + 1
    line = text.count("\n", 0, position) + 1
    expect_element = True  # after '[' or ',': an element (or, after '[', the closing ']')
    first = True
    while True:
        start = _skip_space(text, position)
        line += text.count("\n", position, start)
        if start >= len(text):
            raise DataError(path, "not valid JSON (the array is not closed)", line=line)
        char = text[start]
        if char == "]" and (first or not expect_element):
            trailing = _skip_space(text, start + 1)
            if trailing < len(text):
                raise DataError(
                    path, "not valid JSON (text after the closing ']')", line=line + text.count("\n", start, trailing)
                )
            return
        if not expect_element:
            if char != ",":
                raise DataError(path, f"not valid JSON (expected ',' or ']', got {char!r})", line=line)
            position, expect_element = start + 1, True
            continue
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as e:
            raise DataError(path, f"not valid JSON ({e.msg})", line=e.lineno) from None
        except (ValueError, RecursionError) as e:  # a 4300-digit integer, nesting past the recursion limit
            raise DataError(path, decode_failure(e), line=line) from None
        yield line, value
        line += text.count("\n", start, end)
        position, expect_element, first = end, False, False


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position
