"""Progress bars that also work in logs: redrawn on a terminal, a line every 30 s otherwise.

The bars are safe to fork under: tqdm's default write lock includes a multiprocessing lock
shared with forked children and a monitor thread, so a rollout worker forked while a thread held
it, or killed while holding it, would leave it taken for ever and hang the parent. eef's bars
use a lock of this process alone, made anew in every forked child, and no monitor thread.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from typing import Any, TextIO

from tqdm import tqdm


class _Lines:
    """A stream for tqdm off a terminal: each redraw becomes one whole line; the carriage returns
    and blank clears a terminal needs would otherwise pile up into one endless line."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class ProgressBar(tqdm):
    """A tqdm bar with a lock private to this process and no monitor thread (see the module
    docstring)."""

    monitor_interval = 0
    monitor = None  # not tqdm's, which a plain bar elsewhere may have started
    _instances: weakref.WeakSet = weakref.WeakSet()
    _lock: Any = threading.RLock()


def _reset_after_fork() -> None:
    # the child's copy of the lock may be held by a thread that does not exist in the child
    ProgressBar._lock = threading.RLock()
    ProgressBar._instances = weakref.WeakSet()


os.register_at_fork(after_in_child=_reset_after_fork)


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True) -> ProgressBar:
    """A bar on stderr; off a terminal it prints a line at most every 30 s (no flood in log files)
    and its final count when it closes."""
    terminal = sys.stderr.isatty()
    kwargs: dict[str, Any] = {} if terminal else {"mininterval": 30, "ascii": True}
    return ProgressBar(
        total=total,
        desc=desc,
        unit=unit,
        disable=not enabled,
        leave=not terminal,  # a terminal clears the bar for the stage's summary; a log keeps its last count
        file=sys.stderr if terminal else _Lines(sys.stderr),
        dynamic_ncols=terminal,
        **kwargs,
    )
