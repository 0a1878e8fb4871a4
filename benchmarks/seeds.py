"""EEF against RFT x(1+M) over seeds: the built-in default run once per seed (`eef sweep`), on a
test split raised to 300 tasks.

    python benchmarks/seeds.py [--seeds 0-4] [--key seed] [--test 300] [--goals 1200] [-s KEY=VALUE ...]
                               [--out DIR] [--report-only] [--json]

Each seed is a full default run (9-13 minutes on a 2-core CPU machine, by processor), so five take about an hour.
The catalog gets ``--goals`` goals so that raising the test split leaves the training split as in
the default (1,000 goals, 100 test, 100 dev: 800 training tasks). A sweep in ``--out`` is resumed;
``--report-only`` reports its finished runs without running the others. Prints, per seed, EEF's
best test win rate minus RFT x(1+M)'s (``eef_minus_rft_k``, fractions), the tasks each won alone
pooled over seeds with the exact sign test (``pooled_p``), and each run's wall time (the longest and
each: the run's stages, summed from its ``metrics.jsonl``, so a resume does not change them; any
other job on the machine inflates them). The issue's target: EEF ahead on at least 4 of 5 seeds,
mean gap >= 0.05, pooled p < 0.01, each run within 10 minutes.
With --json the last line is one JSON object."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import yaml

from _common import print_figures
from eef.config import DEFAULT_RUN_CONFIG
from eef.errors import EefError
from eef.sweep import SWEEP_FILE, Sweep, parse_seeds, run_sweep, write_sweep_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0-4", help="Seeds: 0,1,2 or 0-4.")
    parser.add_argument("--key", default="seed", help="The configuration key the seeds set (e.g. env.options.seed).")
    parser.add_argument("--test", type=int, default=300, help="Test split size.")
    parser.add_argument("--goals", type=int, default=1200, help="Goals of the built-in catalog.")
    parser.add_argument(
        "-s",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A configuration override for every run, as `eef run -s` takes it (repeatable).",
    )
    parser.add_argument("--out", help="Parent directory of the runs (default: a temporary one, kept).")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="Run nothing: report the finished runs of the sweep in --out (e.g. one stopped before its last seed).",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.report_only and not args.out:
        parser.error("--report-only reports the sweep in --out; name it")

    root = Path(args.out or tempfile.mkdtemp(prefix="eef-seeds-"))
    try:
        if args.report_only:
            write_sweep_report(root)
        else:
            sweep = Sweep(
                DEFAULT_RUN_CONFIG,
                (f"env.options.test={args.test}", f"env.options.goals={args.goals}", *args.set),
                parse_seeds(args.seeds),
                args.key,
                root,
            )
            run_sweep(sweep, resume=True, log=lambda line: None)
    except EefError as e:
        raise SystemExit(f"error: {e}") from None
    description = yaml.safe_load((root / SWEEP_FILE).read_text())
    summary = json.loads((root / "report" / "sweep.json").read_text())
    pair = summary["pairs"].get("eef vs rft_k", {"gaps": {}})
    seeds = [s for s in summary["seeds"] if str(s) in pair["gaps"]]  # both evaluated: a stopped run may have one
    if not seeds:
        raise SystemExit(f"{root}: no run of the sweep has evaluated both EEF and RFT x(1+M) yet")
    gaps = [pair["gaps"][str(s)] for s in seeds]
    seconds = [summary["run_seconds"][str(s)] for s in seeds]
    print_figures(
        {
            "seeds": seeds,
            "not_finished": [s for s in description["seeds"] if s not in seeds],
            "key": description["key"],
            "overrides": description["overrides"],
            "eef_minus_rft_k": gaps,
            "eef_ahead": sum(g > 0 for g in gaps),
            "mean_gap": round(statistics.fmean(gaps), 4),
            "pooled_won_only": [pair["won_only_by_a"], pair["won_only_by_b"]],
            "pooled_p": pair["sign_test_p"],
            "max_run_wall_s": max(seconds),
            "run_wall_s": seconds,
            "report": str(root / "report" / "report.md"),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
