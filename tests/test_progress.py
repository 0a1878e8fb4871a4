"""Progress bars in log files: one readable line per update, no carriage returns, no blank lines."""

import io
import sys

from eef.progress import progress_bar


def test_off_a_terminal_each_update_is_one_line(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress_bar(total=3, desc="explore", unit="ep")
    bar.mininterval = 0  # every update prints, as a long stage does every 30 s
    for _ in range(3):
        bar.update(1)
    bar.close()
    lines = log.getvalue().split("\n")
    assert "\r" not in log.getvalue() and lines[-1] == ""
    assert all(line.startswith("explore:") for line in lines[:-1]) and len(lines) >= 3
    assert "3/3" in lines[-2]
