"""EEF against RFT x(1+M) over seeds: the built-in default run once per seed (`eef sweep`), on a
test split raised to 300 tasks.

    python benchmarks/seeds.py [--seeds 0-4] [--key seed] [--test 300] [--goals 1200] [--out DIR] [--json]

Each seed is a full default run (10-12 minutes on the 2-core CPU machine), so five take about an hour.
The catalog gets ``--goals`` goals so that raising the test split leaves the training split as in
the default (1,000 goals, 100 test, 100 dev: 800 training tasks). Prints, per seed, EEF's best test
win rate minus RFT x(1+M)'s (``eef_minus_rft_k``, fractions), the tasks each won alone pooled over
seeds with the exact sign test (``pooled_p``), and the runs' wall times (the longest and each: any
other job on the machine inflates them). The issue's target: EEF ahead on at least 4 of 5 seeds,
mean gap >= 0.05, pooled p < 0.01, each run within 10 minutes.
With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _common import print_figures
from eef.cli_agent import DEFAULT_CONFIG
from eef.sweep import Sweep, parse_seeds, run_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-4", help="Seeds: 0,1,2 or 0-4.")
    parser.add_argument("--key", default="seed", help="The configuration key the seeds set (e.g. env.options.seed).")
    parser.add_argument("--test", type=int, default=300, help="Test split size.")
    parser.add_argument("--goals", type=int, default=1200, help="Goals of the built-in catalog.")
    parser.add_argument("--out", help="Parent directory of the runs (default: a temporary one, kept).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    root = Path(args.out or tempfile.mkdtemp(prefix="eef-seeds-"))
    sweep = Sweep(
        DEFAULT_CONFIG,
        (f"env.options.test={args.test}", f"env.options.goals={args.goals}"),
        parse_seeds(args.seeds),
        args.key,
        root,
    )
    result = run_sweep(sweep, resume=True, log=lambda line: None)
    summary = json.loads((root / "report" / "sweep.json").read_text())
    pair = summary["pairs"]["eef vs rft_k"]
    gaps = [pair["gaps"][str(s)] for s in sweep.seeds]
    print_figures(
        {
            "seeds": list(sweep.seeds),
            "key": args.key,
            "test_tasks": args.test,
            "eef_minus_rft_k": gaps,
            "eef_ahead": sum(g > 0 for g in gaps),
            "mean_gap": round(statistics.fmean(gaps), 4),
            "pooled_won_only": [pair["won_only_by_a"], pair["won_only_by_b"]],
            "pooled_p": pair["sign_test_p"],
            "max_run_wall_s": max(result.seconds.values()),
            "run_wall_s": [result.seconds[s] for s in sweep.seeds],
            "report": str(root / "report" / "report.md"),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
