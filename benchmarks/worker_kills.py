"""Rollout workers killed or stopped at random moments: every run must end with the worker's
error (or finish, if the kill came after its last episode), never hang; a rerun then completes
the file with no episode twice.

    python benchmarks/worker_kills.py [--runs 20] [--signal KILL|STOP] [--seed 0] [--json]

Each run is ``eef explore shop --workers 2`` on a fresh tiny model; after a random delay one of
its workers gets SIGKILL (or SIGSTOP, with ``--worker-timeout 5``). A run that has not ended
``--hang-after`` seconds after the signal counts as a hang. With --json the last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EEF = [sys.executable, "-m", "eef.cli"]
EXPECTED = {"KILL": "was killed by SIGKILL before it finished", "STOP": "sent nothing for 5 s (stopped or stuck)"}


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _one_run(model: Path, out: Path, sig: str, delay: float, rng: random.Random, hang_after: float) -> str:
    """``error`` (the worker named), ``finished`` (ended before the signal), ``hang`` or ``other: ...``."""
    command = [
        *EEF,
        "explore",
        "shop",
        "--model",
        str(model),
        "--out",
        str(out),
        "--limit",
        "40",
        "--max-new-tokens",
        "12",
        "--num-envs",
        "4",
        "--workers",
        "2",
        "--worker-timeout",
        "5",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    began = time.monotonic()
    workers: list[int] = []
    while process.poll() is None and (time.monotonic() - began < delay or not workers):
        workers = _children(process.pid)
        time.sleep(0.02)
    if process.poll() is None:
        os.kill(rng.choice(workers), getattr(signal, f"SIG{sig}"))
    try:
        _, err = process.communicate(timeout=hang_after)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return "hang"
    if process.returncode == 0:
        return "finished"
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return "error" if process.returncode == 2 and EXPECTED[sig] in last else f"other: rc {process.returncode}: {last}"


def _resumes_cleanly(model: Path, out: Path) -> bool:
    done = subprocess.run(
        [
            *EEF,
            "explore",
            "shop",
            "--model",
            str(model),
            "--out",
            str(out),
            "--limit",
            "40",
            "--max-new-tokens",
            "12",
            "--num-envs",
            "4",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines() if line.strip()]
    return done.returncode == 0 and len(ids) == len(set(ids)) == 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--signal", choices=sorted(EXPECTED), default="KILL")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-after", type=float, default=120.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    outcomes: dict[str, int] = {}
    resumed = 0
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        subprocess.run(
            [
                *EEF,
                "model",
                "init",
                "--out",
                str(model),
                "--layers",
                "1",
                "--hidden-size",
                "32",
                "--heads",
                "2",
                "--intermediate-size",
                "64",
                "--vocab-size",
                "600",
            ],
            check=True,
            capture_output=True,
        )
        for n in range(args.runs):
            out = Path(tmp) / f"run-{n}.jsonl"
            outcome = _one_run(model, out, args.signal, rng.uniform(0.5, 6.0), rng, args.hang_after)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            resumed += outcome != "hang" and _resumes_cleanly(model, out)
            print(f"run {n + 1}/{args.runs}: {outcome}", file=sys.stderr)
    figures = {
        "runs": args.runs,
        "signal": args.signal,
        "outcomes": outcomes,
        "resumed_cleanly": resumed,
        "hangs": outcomes.get("hang", 0),
    }
    print(json.dumps(figures) if args.json else figures)


if __name__ == "__main__":
    main()
