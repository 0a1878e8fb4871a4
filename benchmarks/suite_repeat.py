"""The test suite (or part of it) run again and again: does any run hang or fail?

    python benchmarks/suite_repeat.py [--times 20] [--hang-after 1800] [--json] [PYTEST_ARGS ...]

Each run is ``python -m pytest -x -q PYTEST_ARGS`` in a fresh process (its own per-test timeout
applies too); one that has not ended after ``--hang-after`` seconds is killed and counted as a
hang. The whole output of a run that fails or hangs is kept in ``--keep`` (run-N.log) and its
failing tests are named. With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--times", type=int, default=20)
    parser.add_argument("--hang-after", type=float, default=1800.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", type=Path, default=Path("suite_repeat_logs"), help="Folder for failed runs' output.")
    args, pytest_args = parser.parse_known_args()
    outcomes = {"passed": 0, "failed": 0, "hang": 0}
    seconds, failures = [], []
    for n in range(args.times):
        began = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *pytest_args],
                capture_output=True,
                text=True,
                timeout=args.hang_after,
            )
            outcome, output = ("passed" if done.returncode == 0 else "failed"), done.stdout + done.stderr
        except subprocess.TimeoutExpired as e:
            outcome, output = "hang", _text(e.stdout) + _text(e.stderr)
        lines = output.splitlines()
        named = ("FAILED ", "ERROR ") if outcome != "passed" else ()
        tail = [line for line in lines if line.startswith(named) or " passed" in line][-3:] or lines[-1:]
        if outcome != "passed":
            args.keep.mkdir(parents=True, exist_ok=True)
            (args.keep / f"run-{n + 1}.log").write_text(output)
            failures.append({"run": n + 1, "outcome": outcome, "tests": tail})
        seconds.append(round(time.monotonic() - began, 1))
        outcomes[outcome] += 1
        print(f"run {n + 1}/{args.times}: {outcome} in {seconds[-1]} s {' '.join(tail)}", file=sys.stderr)
    figures = {
        "times": args.times,
        "selection": pytest_args or ["(whole suite)"],
        **outcomes,
        "max_seconds": max(seconds, default=0.0),
        "failures": failures,
    }
    print(json.dumps(figures) if args.json else figures)


def _text(captured: bytes | str | None) -> str:
    return captured.decode(errors="replace") if isinstance(captured, bytes) else captured or ""


if __name__ == "__main__":
    main()
