"""Progress bars that also work in logs: redrawn on a terminal, a line every 30 s otherwise."""

from __future__ import annotations

import sys
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


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True) -> tqdm:
    """A tqdm bar on stderr; off a terminal it prints a line at most every 30 s (no flood in log files)."""
    terminal = sys.stderr.isatty()
    kwargs: dict[str, Any] = {} if terminal else {"mininterval": 30, "ascii": True}
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False,
                file=sys.stderr if terminal else _Lines(sys.stderr), dynamic_ncols=terminal, **kwargs)
