"""Progress bars that also work in logs: redrawn on a terminal, a line every 30 s otherwise."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True) -> tqdm:
    """A tqdm bar on stderr; off a terminal it prints at most every 30 s (no flood in log files)."""
    terminal = sys.stderr.isatty()
    kwargs: dict[str, Any] = {} if terminal else {"mininterval": 30, "ascii": True}
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False, file=sys.stderr,
                dynamic_ncols=terminal, **kwargs)
