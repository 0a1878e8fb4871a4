"""Reading and writing JSON-lines files with errors that name the file and the line.

Only standard JSON is written: NaN and infinities, which Python's ``json`` writes by default and
most other tools reject, are an error instead.
"""

from __future__ import annotations

import codecs
import gzip
import json
import zlib
from collections.abc import Callable, Iterator
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
        raise DataError(path, "a directory, not a file" if path.is_dir() else "no such file")
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


MAX_ELEMENT_CHARS = 1 << 26  # an array element longer than this that does not parse is reported as invalid


def iter_json_array(
    path: str | Path, *, chunk_chars: int = 1 << 24, on_read: Callable[[int], None] | None = None
) -> Iterator[tuple[int, Any]]:
    """``(position, value)`` for each element of a file holding one JSON array, read in pieces.

    For arrays too big to parse whole (WebShop's 5 GB product list): memory stays at one piece
    plus one element. ``.gz`` files are decompressed. ``on_read`` hears the number of characters
    read so far after each piece (for progress).

    Raises:
        DataError: a missing or unreadable file, text that is not UTF-8, not an array, an element
            that is not valid JSON (its line and position named) or a file cut short.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "a directory, not a file" if path.is_dir() else "no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    decoder = json.JSONDecoder()
    try:
        with opener(path, "rt", encoding="utf-8-sig") as f:
            reader = _ArrayText(f, chunk_chars, on_read)
            if reader.next_char() != "[":
                raise DataError(path, "expected a JSON array (a file starting with '[')", line=reader.line())
            reader.pos += 1
            position = 0
            if reader.next_char() == "]":
                return
            while True:
                if reader.next_char() == "":
                    raise DataError(
                        path, f"the file ends before element [{position}], as if cut short", line=reader.line()
                    )
                value = reader.decode(decoder, path, position)
                yield position, value
                position += 1
                separator = reader.next_char()
                if separator == "]":
                    return
                if separator != ",":
                    what = "the file ends, as if cut short" if separator == "" else f"found {separator!r}"
                    raise DataError(
                        path, f"expected ',' or ']' after element [{position - 1}]; {what}", line=reader.line()
                    )
                reader.pos += 1
    except UnicodeDecodeError:
        raise DataError(path, "not valid UTF-8") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(path, f"cannot read: {e}") from None


class _ArrayText:
    """A text file read piece by piece, with the line number of the read position."""

    def __init__(self, f: Any, chunk_chars: int, on_read: Callable[[int], None] | None) -> None:
        self.f, self.chunk_chars, self.on_read = f, chunk_chars, on_read
        self.chars_read = 0
        self.buf, self.pos, self.eof = "", 0, False
        self.lines, self.mark = 0, 0  # newlines read before ``buf[mark]`` (counted once each: files are long)

    def more(self) -> bool:
        if self.eof:
            return False
        piece = self.f.read(self.chunk_chars)
        if not piece:
            self.eof = True
            return False
        self.chars_read += len(piece)
        if self.on_read is not None:
            self.on_read(self.chars_read)
        self.lines += self.buf.count("\n", self.mark, self.pos)
        self.buf = self.buf[self.pos :] + piece
        self.pos = self.mark = 0
        return True

    def next_char(self) -> str:
        """The next character that is not whitespace ('' at the end), not consumed."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf) or not self.more():
                return self.buf[self.pos : self.pos + 1]

    def line(self) -> int:
        """The line of the read position."""
        self.lines += self.buf.count("\n", self.mark, self.pos)
        self.mark = self.pos
        return self.lines + 1

    def decode(self, decoder: json.JSONDecoder, path: Path, position: int) -> Any:
        while True:
            try:
                value, end = decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                # The element may go on in the next piece: read on, up to a bound on its size.
                if len(self.buf) - self.pos < MAX_ELEMENT_CHARS and self.more():
                    continue
                cut_short = e.pos >= len(self.buf.rstrip()) or e.msg.startswith("Unterminated string")
                cut = "; the file ends inside it, as if cut short" if self.eof and cut_short else ""
                raise DataError(
                    path,
                    f"element [{position}] is not valid JSON ({e.msg}){cut}",
                    line=self.line() + self.buf.count("\n", self.pos, e.pos),
                ) from None
            except (ValueError, RecursionError) as e:
                raise DataError(path, f"element [{position}]: {decode_failure(e)}", line=self.line()) from None
            if end == len(self.buf) and self.more():  # a number may go on in the next piece
                continue
            self.pos = end
            return value
