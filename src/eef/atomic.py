"""Atomic file writes: a temporary file in the same directory, then a rename over the target.

A crash (even ``kill -9``) leaves either the old file or the new one, never half of one. A
directory of files written together (a report) is built beside its target and swapped in whole.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from eef.errors import EefError
from eef.jsonl import json_line

STALE_STAGING_S = 3600  # a staging directory this old was left by a process that died
SWAP_ATTEMPTS = 8  # renames into place tried while other writers of the same directory land theirs


@contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[str]]:
    """Open a temporary text file that replaces ``path`` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes the file private; give it the usual mode
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty directory beside ``path`` that replaces it, whole, when the block ends
    without error (after an error ``path`` is as it was): readers never see old and new files
    mixed, as they would if a failure struck half-way through rewriting them in place.

    A ``path`` that is a symbolic link has its target replaced. Staging directories that a killed
    process left beside it (over an hour old) are removed first.

    Raises:
        EefError: ``path`` exists and is not a directory.
    """
    path = Path(path).resolve() if Path(path).is_symlink() else Path(path)
    if path.exists() and not path.is_dir():
        raise EefError(f"{path}: exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp*"):
        if stale.is_dir() and time.time() - stale.stat().st_mtime > STALE_STAGING_S:
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes the directory private; give it the usual mode
        yield staging
        _swap_in(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(staging: Path, path: Path) -> None:
    """Rename ``staging`` to ``path``, moving the directory there aside first. Another process
    replacing ``path`` at the same moment (``eef report`` beside a run) can land its directory in
    between; that one is moved aside too and the rename tried again, so the last writer's stays."""
    displaced: list[Path] = []
    for attempt in range(SWAP_ATTEMPTS):
        aside = staging.with_name(f"{staging.name}.old{attempt}")
        try:
            path.rename(aside)
            displaced.append(aside)
        except FileNotFoundError:  # nothing there yet, or another writer moved it first
            pass
        try:
            staging.rename(path)
            break
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST) and attempt + 1 < SWAP_ATTEMPTS:
                continue
            if displaced and not path.exists():
                displaced.pop(0).rename(path)  # the previous directory back in its place
            raise
    for old in displaced:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_open(path) as f:
        f.write(text)


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Replace ``path`` with one JSON line per record atomically; returns the count.

    Raises:
        DataError: a record holds NaN or an infinite number (the old file stays).
    """
    count = 0
    with atomic_open(path) as f:
        for record in records:
            f.write(json_line(record, path, count + 1))
            count += 1
    return count
