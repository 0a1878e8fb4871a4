"""End-to-end wall time and peak memory of the built-in default run (`eef run`, what `make run` does).

    python benchmarks/quickstart.py [--run-dir DIR] [--json]

Runs the default configuration from scratch in a fresh run directory (a subprocess, so the
figures cover everything the command does) and prints the wall time, the peak resident memory
of the run and, per method, the best and last test win rates from its summary.json. Memory is
the run's process and its rollout workers together, sampled every 0.2 s (or the largest single
process's exact peak if that is more); pages a forked worker shares with its parent count
twice, so it is an upper bound. The issue's target: within 15 minutes on the 2-core CPU machine.
With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", help="Where the run goes (default: a temporary directory, removed after).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    scratch = None if args.run_dir else tempfile.mkdtemp(prefix="eef-quickstart-")
    run_dir = Path(args.run_dir or scratch) / "default"
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "eef.cli", "run", "-s", f"run_dir={run_dir}"], stdout=subprocess.DEVNULL
    )
    peak_rss = 0
    while process.poll() is None:
        peak_rss = max(peak_rss, _tree_rss(process.pid))
        time.sleep(0.2)
    wall_s = time.perf_counter() - start
    if process.returncode:
        raise SystemExit(f"eef run failed with exit code {process.returncode}")
    largest_process = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # exact, Linux reports KiB
    peak_rss_mb = max(peak_rss, largest_process) / 2**20
    summary = json.loads((run_dir / "summary.json").read_text())
    if scratch:
        shutil.rmtree(scratch)
    figures = {"wall_s": round(wall_s, 1), "peak_rss_mb": round(peak_rss_mb, 1)}
    for method, entry in summary.items():
        figures[f"{method}_best_win_rate"] = entry["best"]["test_win_rate"]
        figures[f"{method}_last_win_rate"] = entry["last"]["test_win_rate"]
    print_figures(figures, args.json)


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (0 once it is gone)."""
    import psutil  # accelerate's dependency

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for member in tree:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


if __name__ == "__main__":
    main()
