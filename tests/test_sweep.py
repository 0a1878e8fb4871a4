"""Seeds as an axis: the seed list, the report over seeds on runs built by hand, a tiny real sweep."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eef.cli import main
from eef.config import DEFAULT_RUN_CONFIG
from eef.errors import DataError, EefError
from eef.stats import sign_test
from eef.sweep import Sweep, parse_seeds, run_sweep, write_sweep_report
from test_pipeline import TINY as PIPELINE_TINY

METHODS = {"run": ["sft_pos", "rft_k", "eef"], "rft_k": None, "eef": {"m": 5}}
# seed -> method -> (best iteration, tasks won as a 0/1 string over 10 test tasks)
WON = {
    0: {"sft_pos": (0, "1100000000"), "rft_k": (1, "1110000000"), "eef": (2, "1111100000")},
    1: {"sft_pos": (0, "1000000000"), "rft_k": (2, "1011000000"), "eef": (1, "1010000000")},
    2: {"sft_pos": (0, "0000000000"), "rft_k": (1, "1000000000"), "eef": (1, "1110000000")},
}
GROUPS = "eeeeehhhhh"


def write_seed_run(run_dir: Path, won: dict[str, tuple[int, str]]) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"methods": METHODS}))
    summary = {}
    for method, (best, pattern) in won.items():
        win = pattern.count("1") / len(pattern)
        point = {"iteration": best, "test_win_rate": win, "test_score": win}
        summary[method] = {"iterations": [point], "best": point, "last": point}
        out = run_dir / ("sft_pos" if method == "sft_pos" else f"{method}/iter-{best}") / "eval"
        out.mkdir(parents=True)
        tasks = [
            {"task_id": f"t{i}", "success": c == "1", "reward": float(c), "group": {"e": "easy", "h": "hard"}[g]}
            for i, (c, g) in enumerate(zip(pattern, GROUPS))
        ]
        (out / "report.json").write_text(json.dumps({"episodes": 10, "win_rate": win, "score": win, "tasks": tasks}))
    (run_dir / "summary.json").write_text(json.dumps(summary))
    # the SFT-POS training ran twice (a resume after its marker was deleted): only the last record counts
    stages = [("train", 50.0), ("train", 60.0), ("eval", 2.5)]
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps({"stage": s, "method": "sft_pos", "iteration": 0, "seconds": t}) + "\n" for s, t in stages)
    )


@pytest.fixture
def sweep_root(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    for seed, won in WON.items():
        write_seed_run(root / f"seed-{seed}", won)
    (root / "sweep.yaml").write_text(
        yaml.safe_dump({"config": "c.yaml", "overrides": [], "seeds": [0, 1, 2, 3], "key": "seed"})
    )
    return root


def test_seeds_are_lists_and_ranges() -> None:
    assert parse_seeds("0-4") == (0, 1, 2, 3, 4) and parse_seeds(" 3, 1 ") == (3, 1)
    for bad in ("", "a", "1,1", "2-x", "-1"):
        with pytest.raises(EefError, match="--seeds"):
            parse_seeds(bad)


def test_the_report_over_seeds(sweep_root: Path) -> None:
    out = write_sweep_report(sweep_root)
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["seeds"] == [0, 1, 2]  # seed 3 has no run yet
    assert summary["run_seconds"] == {"0": 62.5, "1": 62.5, "2": 62.5}
    eef = summary["methods"]["eef"]
    assert eef["best_win_rate"] == {"0": 0.5, "1": 0.2, "2": 0.3}
    mean = eef["best_mean"]
    half = 4.303 * math.sqrt(((0.5 - 1 / 3) ** 2 + (0.2 - 1 / 3) ** 2 + (0.3 - 1 / 3) ** 2) / 2) / math.sqrt(3)
    assert mean["mean"] == pytest.approx(1 / 3) and mean["high"] - mean["mean"] == pytest.approx(half, rel=1e-3)
    assert 1 / 3 - half < 0 and mean["low"] == 0.0  # a rate's interval stops at 0%
    pair = summary["pairs"]["eef vs rft_k"]
    # per seed: +20, -10, +20 points; tasks won alone pooled: EEF t3, t4 (seed 0), t1, t2 (seed 2); RFT xK t3 (seed 1)
    assert pair["gaps"] == {"0": 0.2, "1": -0.1, "2": 0.2} and pair["ahead"] == 2
    assert (pair["tasks"], pair["won_only_by_a"], pair["won_only_by_b"]) == (30, 4, 1)
    assert pair["sign_test_p"] == sign_test(4, 1)
    assert eef["by_group"] == {"easy": {"won": 10, "tasks": 15}, "hard": {"won": 0, "tasks": 15}}
    markdown = (out / "report.md").read_text()
    assert "not there yet: 3" in markdown and "RFT x6" in markdown  # rft_k null means EEF's budget, 1 + M
    assert "| EEF vs RFT x6 | 2 of 3 | +20.0, -10.0, +20.0 | 30 | 4 | 1 |" in markdown
    assert (out / "index.html").read_text().count("<table>") == 4


def test_the_seeds_benchmark_reports_a_stopped_sweeps_finished_runs(sweep_root: Path) -> None:
    write_seed_run(sweep_root / "seed-3", {"sft_pos": WON[0]["sft_pos"]})  # stopped after SFT-POS
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "seeds.py"
    command = [sys.executable, str(script), "--out", str(sweep_root), "--report-only", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["seeds"] == [0, 1, 2] and figures["not_finished"] == [3]
    assert figures["eef_minus_rft_k"] == [0.2, -0.1, 0.2] and figures["eef_ahead"] == 2
    assert figures["pooled_won_only"] == [4, 1] and figures["pooled_p"] == sign_test(4, 1)
    assert figures["run_wall_s"] == [62.5, 62.5, 62.5] and figures["max_run_wall_s"] == 62.5
    assert not (sweep_root / "seed-3" / "rft_k").exists()  # nothing ran
    empty = sweep_root.parent / "empty"
    empty.mkdir()
    (empty / "sweep.yaml").write_text(
        yaml.safe_dump({"config": "c.yaml", "overrides": [], "seeds": [0], "key": "seed"})
    )
    done = subprocess.run([*command[:3], str(empty), *command[4:]], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "no run of the sweep has evaluated both" in done.stderr


def test_a_malformed_run_or_sweep_file_is_named(sweep_root: Path) -> None:
    write_sweep_report(sweep_root)
    (sweep_root / "seed-1/summary.json").write_text('{"eef": {"iterations": [{"iteration": "one"}]}}')
    with pytest.raises(DataError) as error:
        write_sweep_report(sweep_root)
    assert error.value.path.endswith("seed-1/summary.json") and error.value.field == "eef.iterations[0].iteration"
    (sweep_root / "seed-1/summary.json").unlink()
    before = {p.name: p.read_bytes() for p in (sweep_root / "report").iterdir()}
    for text in ("seeds: [a]\n", "seeds: []\n"):
        (sweep_root / "sweep.yaml").write_text(text)
        with pytest.raises(DataError, match="expected a non-empty list of integers"):
            write_sweep_report(sweep_root)
    (sweep_root / "sweep.yaml").write_text("seeds: [0, 1\n")
    with pytest.raises(EefError, match=r"sweep.yaml:2: not valid YAML"):
        write_sweep_report(sweep_root)
    assert {p.name: p.read_bytes() for p in (sweep_root / "report").iterdir()} == before  # the last report stays


# the pipeline tests' tiny settings, smaller still: two methods on six tasks
TINY = [*PIPELINE_TINY, "expert.limit=6", "eval.limit=6", "methods.run=[sft_pos, rft]", "rollout.workers=1"]


@pytest.mark.slow
def test_a_sweep_runs_each_seed_resumes_and_refuses_another(tmp_path: Path) -> None:
    sweep = Sweep(DEFAULT_RUN_CONFIG, tuple(TINY), (0, 1), "seed", tmp_path / "sweep")
    lines: list[str] = []
    result = run_sweep(sweep, log=lines.append)
    assert set(result.summaries) == {0, 1} and all(s > 0 for s in result.seconds.values())
    for seed in (0, 1):
        saved = yaml.safe_load((sweep.run_dir(seed) / "config.yaml").read_text())
        assert saved["seed"] == seed and (sweep.run_dir(seed) / "report/report.md").is_file()
    assert "[sweep] seed=1: run 2 of 2" in "\n".join(lines)
    report = json.loads((sweep.root / "report/sweep.json").read_text())
    assert report["seeds"] == [0, 1] and set(report["methods"]) == {"sft_pos", "rft"}
    metrics = (sweep.run_dir(1) / "metrics.jsonl").read_text()
    resumed = run_sweep(sweep, resume=True, log=lines.append)
    assert resumed.summaries == result.summaries
    assert resumed.seconds == result.seconds  # the runs' own times, not the resume's
    assert (sweep.run_dir(1) / "metrics.jsonl").read_text() == metrics  # nothing ran again
    with pytest.raises(EefError, match="already holds a sweep"):
        run_sweep(sweep)
    with pytest.raises(EefError, match="describes another sweep"):
        run_sweep(Sweep(DEFAULT_RUN_CONFIG, tuple(TINY), (0, 2), "seed", sweep.root), resume=True)


def test_a_bad_key_is_refused_before_any_run(tmp_path: Path) -> None:
    with pytest.raises(EefError, match="--key no_such_key: not an integer setting"):
        run_sweep(Sweep(DEFAULT_RUN_CONFIG, (), (0, 1), "no_such_key", tmp_path / "s"))
    with pytest.raises(EefError, match="env.options.no_such: no such option"):  # environment options: by name
        run_sweep(Sweep(DEFAULT_RUN_CONFIG, (), (0, 1), "env.options.no_such", tmp_path / "s"))
    with pytest.raises(EefError, match="env.options.groups: must be a number in"):
        run_sweep(Sweep(DEFAULT_RUN_CONFIG, ("env.options.groups=0",), (0, 1), "env.options.seed", tmp_path / "s"))
    assert not (tmp_path / "s").exists()  # no sweep.yaml left to block the corrected sweep


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "0,x"], "--seeds: 'x' is not a seed"),
        (["--key", "no_such_key", "--seeds", "1"], "--key no_such_key: not an integer setting"),
    ],
)
def test_eef_sweep_names_bad_input_in_one_line(args, message, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["eef", "sweep", "--out", str(tmp_path / "s"), *args])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_eef_report_rewrites_a_sweeps_report_or_a_runs(sweep_root: Path, capsys, monkeypatch) -> None:
    for where, written in ((sweep_root, "sweep.json"), (sweep_root / "seed-0", "win_rate.png")):
        monkeypatch.setattr(sys, "argv", ["eef", "report", str(where)])
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code in (0, None) and (where / "report" / written).is_file()
        assert f"report: {where / 'report' / 'index.html'}" in capsys.readouterr().out
