"""The test suite (or part of it) run again and again: does any run hang or fail?

    python benchmarks/suite_repeat.py [--times 20] [--hang-after 1800] [--json] [PYTEST_ARGS ...]

Each run is ``python -m pytest -x -q PYTEST_ARGS`` in a fresh process (its own per-test timeout
applies too); one that has not ended after ``--hang-after`` seconds is killed and counted as a
hang. With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", type=int, default=20)
    parser.add_argument("--hang-after", type=float, default=1800.0)
    parser.add_argument("--json", action="store_true")
    args, pytest_args = parser.parse_known_args()
    outcomes = {"passed": 0, "failed": 0, "hang": 0}
    seconds = []
    for n in range(args.times):
        began = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *pytest_args],
                capture_output=True,
                text=True,
                timeout=args.hang_after,
            )
            outcome = "passed" if done.returncode == 0 else "failed"
            tail = [line for line in done.stdout.splitlines() if " passed" in line or " failed" in line][-1:]
        except subprocess.TimeoutExpired:
            outcome, tail = "hang", []
        seconds.append(round(time.monotonic() - began, 1))
        outcomes[outcome] += 1
        print(f"run {n + 1}/{args.times}: {outcome} in {seconds[-1]} s {' '.join(tail)}", file=sys.stderr)
    figures = {
        "times": args.times,
        "selection": pytest_args or ["(whole suite)"],
        **outcomes,
        "max_seconds": max(seconds, default=0.0),
    }
    print(json.dumps(figures) if args.json else figures)


if __name__ == "__main__":
    main()
