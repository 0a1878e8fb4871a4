"""Read the fetched sets' files.

* Expert records: a JSON file that is either one array (ETO, the EEF set) or JSON lines
  (AgentGym, OpenAI), each record with the line it starts on, so errors name file and line
  either way (:func:`iter_records`).
* ETO's task lists: one JSON array per split, WebShop goal indices or ScienceWorld
  ``[task name, variation]`` pairs, turned into eef's task ids and into the split files the
  environments' ``split_files`` option reads (:func:`read_split_lists`, :func:`write_split_files`).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eef.atomic import write_text_atomic
from eef.errors import DataError, EefError, UnknownNameError
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
        try:
            yield from iter_json_lines(path)
        except DataError as error:
            # a first line that is not JSON by itself may open one object written over several lines
            if error.line == 1 and path.suffix != ".gz" and isinstance(_whole_json(path), dict):
                raise DataError(
                    path, "one JSON object; expected a JSON array of records or JSON lines (a record per line)", line=1
                ) from None
            raise
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


def _whole_json(path: Path) -> Any:
    """The file's text read as one JSON value; None where it is not one."""
    try:
        return json.loads(_read_text(path))
    except (DataError, ValueError, RecursionError):
        return None


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
    element = 0
    while True:
        start = _skip_space(text, position)
        line += text.count("\n", position, start)
        if start >= len(text):
            raise DataError(path, "not valid JSON (the array is not closed; the file ends, as if cut short)", line=line)
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
            cut_short = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")
            cut = "; the file ends inside it, as if cut short" if cut_short else ""
            raise DataError(
                path, f"not valid JSON (element [{element}]: {e.msg}: column {e.colno}){cut}", line=e.lineno
            ) from None
        except (ValueError, RecursionError) as e:  # a 4300-digit integer, nesting past the recursion limit
            raise DataError(path, decode_failure(e), line=line) from None
        yield line, value
        line += text.count("\n", start, end)
        position, expect_element, first = end, False, False
        element += 1


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


@dataclass(frozen=True)
class SplitList:
    """One split as a task list names it.

    Attributes:
        split: the split's eef name.
        entries: the list's entries in the form the environment's split files take, repeats
            dropped, in the list's order.
        task_ids: eef's task id of each entry.
        listed: how many entries the list has, repeats included.
        repeated: the task ids listed more than once.
    """

    split: str
    entries: list[Any]
    task_ids: list[str]
    listed: int
    repeated: list[str]


# An entry of a list, its line and position -> (eef task id, the entry as eef's split file holds it).
EntryReader = Callable[[Any, Path, int, int], tuple[str, Any]]


def _goal_index(entry: Any, path: Path, line: int, position: int) -> tuple[str, Any]:
    """A WebShop goal index: goal ``i`` of the shuffled goal list, WebShop's session ``i``, eef's
    task ``webshop_i``."""
    if not isinstance(entry, int) or isinstance(entry, bool) or entry < 0:
        raise DataError(
            path, f"expected a goal index (an integer >= 0), got {entry!r}", line=line, field=f"[{position}]"
        )
    return f"webshop_{entry}", entry


def _scienceworld_pair(entry: Any, path: Path, line: int, position: int) -> tuple[str, Any]:
    """A ScienceWorld ``[task name, variation]`` in any spelling the environment takes."""
    from eef.envs.scienceworld.tasks import parse_task_id, task_id  # the names live with the environment

    where = f"[{position}]"
    pair = isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
    if not pair or not isinstance(entry[1], int) or isinstance(entry[1], bool):
        raise DataError(path, f"expected [task name, variation], got {entry!r}", line=line, field=where)
    try:
        name, variation = parse_task_id(f"{entry[0]}/{entry[1]}")
    except EefError as e:
        raise DataError(path, str(e), line=line, field=where) from None
    return task_id(name, variation), [name, variation]


_ENTRY_READERS: dict[str, EntryReader] = {"webshop": _goal_index, "scienceworld": _scienceworld_pair}


def read_split_lists(files: Mapping[str, str | Path], env: str) -> list[SplitList]:
    """The splits of ``env`` from task lists (split name -> file), each in its own order.

    Raises:
        UnknownNameError: no task lists are known for ``env``.
        DataError: a list is missing, not a JSON array, empty, or has an entry that names no task
            (with the file, line and position).
    """
    if env not in _ENTRY_READERS:
        raise UnknownNameError("environment with task lists", env, sorted(_ENTRY_READERS))
    return [_read_split(split, Path(path), _ENTRY_READERS[env]) for split, path in files.items()]


def _read_split(split: str, path: Path, read_entry: EntryReader) -> SplitList:
    if not path.is_file():
        raise DataError(path, "no such file")
    if _first_char(path) != "[":
        raise DataError(path, "expected a JSON array (a task list)")
    entries: dict[str, Any] = {}
    repeated: dict[str, None] = {}
    listed = 0
    for position, (line, raw) in enumerate(iter_records(path)):
        task, entry = read_entry(raw, path, line, position)
        if task in entries:
            repeated[task] = None
        entries.setdefault(task, entry)
        listed += 1
    if not listed:  # an empty split file would make an empty split, which fails later, far from this file
        raise DataError(path, "an empty task list (a split needs at least one task)")
    return SplitList(split, list(entries.values()), list(entries), listed, list(repeated))


def shared_tasks(lists: list[SplitList]) -> dict[str, int]:
    """``"later & earlier"`` -> the number of tasks two splits share, for each pair that shares any."""
    shared = {}
    for i, later in enumerate(lists):
        for earlier in lists[:i]:
            count = len(set(later.task_ids) & set(earlier.task_ids))
            if count:
                shared[f"{later.split} & {earlier.split}"] = count
    return shared


def write_split_files(lists: list[SplitList], out_dir: str | Path) -> dict[str, Path]:
    """Each split's entries, repeats dropped, to ``out_dir/{split}.json`` (each file replaced
    whole); returns split name -> file, the mapping the ``split_files`` option takes."""
    written = {}
    for split_list in lists:
        path = Path(out_dir) / f"{split_list.split}.json"
        write_text_atomic(path, json.dumps(split_list.entries) + "\n")
        written[split_list.split] = path
    return written
