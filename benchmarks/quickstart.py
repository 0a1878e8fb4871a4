"""End-to-end wall time and peak memory of the built-in default run (`eef run`, what `make run` does).

    python benchmarks/quickstart.py [--run-dir DIR] [--json]

Runs the default configuration from scratch in a fresh run directory (a subprocess, so the
figures cover everything the command does) and prints the wall time, the peak resident memory
of the run and, per method, the best and last test win rates from its summary.json. The issue's
target: within 15 minutes on the 2-core CPU machine. With --json the last line is one JSON object.
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
    subprocess.run([sys.executable, "-m", "eef.cli", "run", "-s", f"run_dir={run_dir}"], check=True,
                   stdout=subprocess.DEVNULL)
    wall_s = time.perf_counter() - start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
    summary = json.loads((run_dir / "summary.json").read_text())
    if scratch:
        shutil.rmtree(scratch)
    figures = {"wall_s": round(wall_s, 1), "peak_rss_mb": round(peak_rss_mb, 1)}
    for method, entry in summary.items():
        figures[f"{method}_best_win_rate"] = entry["best"]["test_win_rate"]
        figures[f"{method}_last_win_rate"] = entry["last"]["test_win_rate"]
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
