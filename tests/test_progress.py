"""Progress bars in log files: one readable line per update, no carriage returns, no blank lines;
safe to fork under: no lock shared with children, no monitor thread."""

import io
import os
import signal
import sys
import threading
import time

from tqdm import tqdm

from eef.progress import ProgressBar, progress_bar


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


def test_off_a_terminal_a_short_stage_still_shows_its_final_count(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress_bar(total=10, desc="eval test", unit="ep")  # done well within the 30 s between lines
    bar.update(10)
    bar.close()
    assert log.getvalue().splitlines()[0].startswith("eval test:   0%")
    assert "10/10" in log.getvalue().splitlines()[-1]


def _in_fork(child) -> int:
    """Run ``child`` in a forked process; its exit code, or -1 if it hangs for 20 s."""
    pid = os.fork()
    if pid == 0:
        try:
            child()
        finally:
            os._exit(0)
    for _ in range(200):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -1


def test_a_child_forked_while_a_thread_holds_the_lock_can_still_draw():
    held, release = threading.Event(), threading.Event()

    def hold():
        with ProgressBar.get_lock():
            held.set()
            release.wait()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait()
    try:
        assert _in_fork(lambda: progress_bar(3, "child", "ep", enabled=False).close()) == 0
    finally:
        release.set()
        thread.join()


def test_a_child_killed_while_holding_the_lock_does_not_block_this_process():
    def die_holding_the_lock():
        ProgressBar.get_lock().acquire()
        os.kill(os.getpid(), signal.SIGKILL)

    assert _in_fork(die_holding_the_lock) == -signal.SIGKILL
    outcome = []
    thread = threading.Thread(
        target=lambda: outcome.append(progress_bar(1, "parent", "ep", enabled=False).close()), daemon=True
    )
    thread.start()
    thread.join(10)
    assert outcome == [None]


def test_no_monitor_thread_is_started():
    def monitors():
        return {t for t in threading.enumerate() if type(t).__name__ == "TMonitor"}

    tqdm(total=1, disable=False, file=io.StringIO()).close()  # another library's plain bar starts tqdm's
    before = monitors()
    bar = progress_bar(1, "explore", "ep")
    assert monitors() == before and ProgressBar.monitor is None
    bar.close()
