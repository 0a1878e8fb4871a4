"""The report stage on a run directory built by hand: files, numbers, escaping, robustness."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from eef.errors import DataError, EefError
from eef.report import load_metrics, navigation_shares, write_report
from eef.report_render import anchor, plot_curves
from eef.stats import sign_test, wilson_interval
from eef.trajectory import Provenance, Trajectory, Turn
from eef.trajectory_files import write_trajectories

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert(1)</script>"
CONFIG = """name: fixture
seed: 7
env:
  name: shop
methods:
  run: [sft_pos, rft, rft_k, eef]
  iterations: 2
  rollouts_per_state: 1
  rft_k: null
  eef:
    m: 5
    explore: failed
    neutral: mask
"""
# method -> iteration -> (win rate, score); sft_pos is iteration 0 of every method.
RESULTS = {
    "sft_pos": {0: (0.40, 0.61)},
    "rft": {1: (0.44, 0.65), 2: (0.42, 0.64)},
    "eef": {1: (0.50, 0.70), 2: (0.56, 0.74)},
}


def trajectory(tid: str, actions: list[str], success: bool = False, instruction: str = "buy a shirt") -> Trajectory:
    turns = tuple(Turn(text=f"Thought: go.\nAction: {a}", action=a, observation=f"page after {a}") for a in actions)
    return Trajectory(
        id=tid,
        env="shop",
        task_id=tid,
        prompt=(),
        first_observation=instruction,
        turns=turns,
        reward=1.0 if success else 0.25,
        success=success,
        terminated=True,
        provenance=Provenance(source="self"),
    )


def metrics_lines() -> list[dict]:
    lines: list[dict] = [
        {
            "stage": "expert",
            "episodes": 10,
            "successes": 4,
            "seconds": 1.5,
            "by_tier": {"easy": {"episodes": 6, "successes": 4}, "hard": {"episodes": 4, "successes": 0}},
        },
        {
            "stage": "train",
            "method": "sft_pos",
            "iteration": 0,
            "examples": 4,
            "trained_tokens": 900,
            "final_loss": 0.8,
            "seconds": 3.0,
        },
        {
            "stage": "eval",
            "method": "sft_pos",
            "iteration": 0,
            "win_rate": 0.40,
            "score": 0.61,
            "navigation": {"next": 0.0, "prev": 0.0, "back_to_search": 0.0, "second_search": 0.1},
            "seconds": 2.0,
        },
    ]
    for method in ("rft", "eef"):
        eef = method == "eef"
        for k, (win, score) in RESULTS[method].items():
            lines += [
                {
                    "stage": "explore",
                    "method": method,
                    "iteration": k,
                    "episodes": 20,
                    "from_s0": 10,
                    "from_states": 10 if eef else 0,
                    "successes": 7,
                    "successes_from_states": 2 if eef else 0,
                    "replays": 10 if eef else 0,
                    "diverged": k if eef else 0,
                    "seconds": 4.0,
                },
                {
                    "stage": "label",
                    "method": method,
                    "iteration": k,
                    "beneficial": 3 * eef,
                    "harmful": 2 * eef,
                    "neutral": 5 * eef,
                    "recovery_states": 2 * eef,
                    "important_states": 4 * eef,
                    "skipped_experts": 0,
                    "repository": 6 + k,
                    "train_solved": 5 + k,
                    "solved_by_source": {"expert": 4, "self_s0": 1 + k - 1, "eef": k * eef},
                    "seconds": 0.5,
                },
                {
                    "stage": "train",
                    "method": method,
                    "iteration": k,
                    "examples": 9,
                    "trained_tokens": 2000,
                    "final_loss": 0.5,
                    "seconds": 3.0,
                },
            ]
            if method == "rft":  # eef's eval records are missing: the report falls back on summary.json
                lines.append(
                    {"stage": "eval", "method": method, "iteration": k, "win_rate": win, "score": score, "seconds": 2.0}
                )
    return lines


def write_run(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(CONFIG)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in metrics_lines()))
    summary = {}
    for method, points in RESULTS.items():
        iterations = [{"iteration": k, "test_win_rate": w, "test_score": s} for k, (w, s) in points.items()]
        best = max(iterations, key=lambda p: p["test_win_rate"])
        summary[method] = {
            "iterations": iterations,
            "best": best,
            "last": iterations[-1],
            "train_solved": [5 + p["iteration"] for p in iterations],
        }
        for k, (win, score) in points.items():
            out = run_dir / ("sft_pos" if method == "sft_pos" else f"{method}/iter-{k}") / "eval"
            out.mkdir(parents=True)
            (out / "report.json").write_text(
                json.dumps(
                    {
                        "env": "shop",
                        "split": "test",
                        "model": "m",
                        "episodes": 50,
                        "win_rate": win,
                        "score": score,
                        "mean_steps": 4.5,
                        "truncated": 1,
                        "seconds": 1.0,
                        "tasks": [],
                    }
                )
            )
            write_trajectories(
                out / "trajectories.jsonl",
                [
                    trajectory(
                        "t0",
                        ["search[shirt]", "click[Next >]", "click[b1]", "click[Buy Now]"],
                        success=True,
                        instruction=f"find {SCRIPT} & more",
                    ),
                    trajectory(
                        "t1",
                        ["search[shirt]", "click[b2]", "click[< Prev]", "click[Back to Search]", "search[red shirt]"],
                    ),
                    trajectory("t2", ["search[hat]", "click[b3]", "click[Buy Now]"]),
                ],
            )
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


def table_row(markdown: str, first_cell: str) -> list[str]:
    """The cells of the first Markdown table row whose first cell is ``first_cell``, unescaped."""
    for line in markdown.splitlines():
        cells = [re.sub(r"\\(.)", r"\1", c.strip()) for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r}")


def test_report_files_numbers_and_plots(run_dir: Path) -> None:
    out = write_report(run_dir)
    assert out == run_dir / "report"
    markdown = (out / "report.md").read_text()
    # The paper-shaped table: method, best iteration, best win / score with its Wilson interval over
    # the 50 test episodes, last iteration, last win / score.
    assert table_row(markdown, "SFT-POS") == ["SFT-POS", "0", "40.0% / 0.610", "[27.6, 53.8]", "0", "40.0% / 0.610"]
    assert table_row(markdown, "RFT") == ["RFT", "1", "44.0% / 0.650", "[31.2, 57.7]", "2", "42.0% / 0.640"]
    assert table_row(markdown, "EEF") == ["EEF", "2", "56.0% / 0.740", "[42.3, 68.8]", "2", "56.0% / 0.740"]
    assert (
        "| methods key | value |" in markdown and "| eef.m | 5 |" in markdown and '| eef.neutral | "mask" |' in markdown
    )
    assert "### SFT-POS, iteration 0" in markdown and "### EEF, iteration 2" in markdown
    # exploration: success from s0 and from the expert's restored states, side by side
    explore = markdown.split("## Exploration")[1]
    assert table_row(explore, "EEF")[1:3] == ["1", "20"] and table_row(explore, "EEF")[-3:] == [
        "50.0%",
        "20.0%",
        "10.0%",
    ]
    assert table_row(explore, "RFT")[-3:] == ["70.0%", "–", "–"]
    for name in ("win_rate", "score", "train_solved", "segments", "navigation", "divergence"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG_SIGNATURE, name
        assert f'src="{name}.png"' in (out / "index.html").read_text()
    assert write_report(run_dir) == out  # rerunning replaces the report in place
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_methods_are_compared_on_the_test_tasks_each_won_alone(run_dir: Path) -> None:
    def won(path: Path, pattern: str) -> None:
        report = json.loads(path.read_text())
        report["tasks"] = [{"task_id": f"t{i}", "success": c == "1", "reward": 0.0} for i, c in enumerate(pattern)]
        path.write_text(json.dumps(report))

    won(run_dir / "sft_pos/eval/report.json", "1100100000")
    won(run_dir / "eef/iter-2/eval/report.json", "1011111110")  # EEF's best iteration
    won(run_dir / "eef/iter-1/eval/report.json", "0000000000")  # not its best: not compared
    markdown = (write_report(run_dir) / "report.md").read_text()
    # 10 tasks; EEF alone won t2, t3, t5, t6, t7, t8 (6), SFT-POS alone t1 (1); p = 2 * (1 + 7) / 2**7
    assert table_row(markdown, "EEF vs SFT-POS") == ["EEF vs SFT-POS", "10", "6", "1", "0.125"]
    assert "RFT vs" not in markdown and "vs RFT" not in markdown  # RFT's reports list no tasks
    report = json.loads((run_dir / "sft_pos/eval/report.json").read_text())
    for bad in (5, [{"task_id": "t0", "success": "false"}, 7]):  # malformed task lists are left out, not fatal
        (run_dir / "sft_pos/eval/report.json").write_text(json.dumps({**report, "tasks": bad}))
        assert "EEF vs SFT-POS" not in (write_report(run_dir) / "report.md").read_text()


def test_results_by_task_group_show_where_a_gain_comes_from(run_dir: Path) -> None:
    def won(path: Path, pattern: str, groups: str) -> None:
        report = json.loads(path.read_text())
        report["tasks"] = [
            {"task_id": f"t{i}", "success": c == "1", "reward": 0.0, "group": {"e": "easy", "h": "hard"}[g]}
            for i, (c, g) in enumerate(zip(pattern, groups))
        ]
        path.write_text(json.dumps(report))

    won(run_dir / "sft_pos/eval/report.json", "1100100000", "eehhehehhe")
    won(run_dir / "eef/iter-2/eval/report.json", "1111111110", "eehhehehhe")
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        if line["stage"] == "expert":
            line["tasks_by_group"] = {"hard": 4, "easy": 6}
        if line["stage"] == "label":
            line["solved_by_group"] = {"hard": line["iteration"], "easy": 4}
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    markdown = (write_report(run_dir) / "report.md").read_text()
    by_group = markdown.split("### Test results by task group")[1]
    # easy before hard (the tiers' order, not the alphabet's); EEF's gain is on the hard tasks
    assert by_group.index("| easy |") < by_group.index("| hard |")
    assert table_row(by_group, "easy")[1:] == ["60.0% (3/5) [23.1, 88.2]", "80.0% (4/5) [37.6, 96.4]"]
    assert table_row(by_group, "hard")[1:] == ["0.0% (0/5) [0.0, 43.4]", "100.0% (5/5) [56.6, 100.0]"]
    training = markdown.split("### Training subtasks solved by task group")[1]
    assert table_row(training, "EEF")[2:4] == ["4 of 6", "1 of 4"]  # EEF's iteration 1: easy, then hard


def test_loss_curves_run_facts_contents_and_folded_config(run_dir: Path) -> None:
    for where, losses in (("sft_pos", [2.0, 1.0, 0.5]), ("eef/iter-1", [0.9, 0.4])):
        (run_dir / where / "checkpoint").mkdir(parents=True)
        (run_dir / where / "checkpoint/eef_train.json").write_text(json.dumps({"losses": losses}))
    starts = [{"started": "2026-12-01T10:00:00+00:00"}, {"started": "2026-12-01T12:00:00+00:00", "cpus": 2}]
    (run_dir / "run_facts.json").write_text(json.dumps({"starts": starts}))
    out = write_report(run_dir)
    markdown = (out / "report.md").read_text()
    assert (out / "loss.png").read_bytes()[:8] == PNG_SIGNATURE and not (out / "dpo_loss.png").exists()
    assert (
        table_row(markdown, "started")[1] == "2026-12-01T10:00:00+00:00 (first); 2026-12-01T12:00:00+00:00 (last of 2)"
    )
    assert table_row(markdown, "all stages") == ["all stages", "40.500"]  # every stage record's seconds, added up
    page = (out / "index.html").read_text()
    # the contents link every section, and the links land on the headings' ids
    for heading in ("Test results", "Run facts", "Configuration"):
        assert f'<a href="#{anchor(heading)}">' in page and f'id="{anchor(heading)}"' in page
        assert f"[{heading}](#{anchor(heading)})" in markdown
    assert "<details><summary>config.yaml" in page and "<details><summary>config.yaml" in markdown
    (run_dir / "run_facts.json").write_text('{"starts": 3}')
    with pytest.raises(DataError, match="expected a list of objects"):
        write_report(run_dir)


def test_no_divergence_plot_when_no_replay_diverged(run_dir: Path) -> None:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line["diverged"] = 0 if "diverged" in line else line.get("diverged")
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = write_report(run_dir)
    assert not (out / "divergence.png").exists() and 'src="divergence.png"' not in (out / "index.html").read_text()


def test_the_sign_test_is_exact_and_two_sided() -> None:
    assert round(sign_test(15, 7), 3) == round(sign_test(7, 15), 3) == 0.134
    assert sign_test(6, 1) == 2 * (1 + 7) / 2**7
    assert sign_test(3, 3) == sign_test(0, 0) == 1.0 and sign_test(8, 0) == 2 / 2**8


def test_html_escapes_trajectory_text(run_dir: Path) -> None:
    page = (write_report(run_dir) / "index.html").read_text()
    assert SCRIPT not in page
    assert "find &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
    assert "<script" not in page.lower()
    assert "click[&lt; Prev]" in page


def test_navigation_shares() -> None:
    trajectories = [
        trajectory("a", ["search[x]", "click[ Next > ]", "click[next>]", "search[y]"]),
        trajectory("b", ["Search[x]", "CLICK[<  prev]", "click [Back  to Search]"]),
        trajectory("c", ["search[x]", "click[Next > item]", "click[item]"]),
        trajectory("d", []),
    ]
    assert navigation_shares(trajectories) == {
        "next": 0.25,
        "prev": 0.25,
        "back_to_search": 0.25,
        "second_search": 0.25,
    }
    assert navigation_shares([]) == {"next": 0.0, "prev": 0.0, "back_to_search": 0.0, "second_search": 0.0}


def test_missing_pieces_do_not_crash(run_dir: Path) -> None:
    shutil.rmtree(run_dir / "eef/iter-2")  # an iteration still running: no eval yet
    (run_dir / "summary.json").unlink()  # written only at the end of a run
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kept = [line for line in lines if line["stage"] not in ("label", "expert") and line.get("method") != "eef"]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in kept) + '{"stage": "ev')
    markdown = (write_report(run_dir) / "report.md").read_text()
    # eef's iteration 1 is known only from its report.json; rft from its eval records.
    assert table_row(markdown, "EEF") == ["EEF", "1", "50.0% / 0.700", "[36.6, 63.4]", "1", "50.0% / 0.700"]
    assert table_row(markdown, "RFT") == ["RFT", "1", "44.0% / 0.650", "[31.2, 57.7]", "2", "42.0% / 0.640"]
    assert "EEF segments" not in markdown and "Expert trajectories" not in markdown
    assert not (run_dir / "report/segments.png").exists()


def test_a_run_that_has_only_started_and_a_directory_that_is_no_run(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    out = write_report(tmp_path)
    assert (out / "report.md").is_file() and (out / "index.html").is_file()
    with pytest.raises(DataError, match="no such run directory"):
        write_report(tmp_path / "absent")
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match="not a run directory"):
        write_report(tmp_path / "other")
    assert list((tmp_path / "other").iterdir()) == []  # nothing written into it
    with pytest.raises(DataError, match="not a directory"):
        write_report(tmp_path / "config.yaml")


def test_a_report_that_fails_half_way_leaves_the_previous_one_whole(run_dir: Path) -> None:
    write_report(run_dir)
    before = {p.relative_to(run_dir): p.read_bytes() for p in (run_dir / "report").rglob("*") if p.is_file()}
    assert any(p.suffix == ".png" for p in before)
    summary = run_dir / "summary.json"
    summary.write_text(summary.read_text().replace("0.56", "0.66"))  # EEF's best: new plots would differ
    trajectories = run_dir / "rft/iter-1/eval/trajectories.jsonl"  # the best, read after the plots are drawn
    trajectories.write_text(trajectories.read_text().replace("{", "[", 1))
    with pytest.raises(DataError):
        write_report(run_dir)
    after = {p.relative_to(run_dir): p.read_bytes() for p in (run_dir / "report").rglob("*") if p.is_file()}
    assert after == before and sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []


def test_a_broken_config_is_one_line_naming_the_file(run_dir: Path) -> None:
    (run_dir / "config.yaml").write_text("name: x\nseed: [1\n")
    with pytest.raises(EefError, match=r"config.yaml:3: not valid YAML"):
        write_report(run_dir)
    (run_dir / "config.yaml").write_bytes(b"name: \xff\n")
    with pytest.raises(EefError, match="config.yaml: not UTF-8 text"):
        write_report(run_dir)


@pytest.mark.parametrize(
    "bad, field",
    [
        ('{"stage": "eval", "method": "rft", "win_rate": 0.5', None),
        ('["stage"]', None),
        ('{"method": "rft"}', "stage"),
        ('{"stage": "eval", "win_rate": "high"}', "win_rate"),
        ('{"stage": "label", "solved_by_source": {"eef": "2"}}', "solved_by_source.eef"),
        ('{"stage": "eval", "method": "rft", "win_rate": NaN}', "win_rate"),
        ('{"stage": "eval", "method": "rft", "win_rate": 5}', "win_rate"),
        ('{"stage": "eval", "method": "rft", "episodes": -3}', "episodes"),
        ('{"stage": "eval", "method": "rft", "seconds": Infinity}', "seconds"),
        ('{"stage": "label", "by_tier": {"hard": {"episodes": NaN}}}', "by_tier.hard.episodes"),
    ],
)
def test_malformed_metrics_line(run_dir: Path, bad: str, field: str | None) -> None:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:2], bad, *lines[2:]]) + "\n")
    with pytest.raises(DataError) as error:
        write_report(run_dir)
    assert error.value.path == str(path) and error.value.line == 3 and error.value.field == field
    with pytest.raises(DataError):
        load_metrics(path)


def test_markdown_shows_names_from_the_config_as_text(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run")
    (run_dir / "config.yaml").write_text(CONFIG.replace("name: fixture", "name: '*x* <b>y</b> [z](http://a)'"))
    markdown = (write_report(run_dir) / "report.md").read_text()
    assert "# Run report: \\*x\\* \\<b\\>y\\</b\\> \\[z\\](http://a)" in markdown
    assert "<b>" not in markdown.split("```")[0]  # outside the fenced config, nothing renders as markup


def test_win_rates_at_0_and_100_percent_are_drawn_with_their_intervals(tmp_path: Path) -> None:
    # Wilson's bound at 0 or 1 can round a hair past the point; error bars must not go negative
    for n in range(1, 60):
        bands = {"A": [(1, *wilson_interval(0, n)), (2, *wilson_interval(n, n))]}
        assert plot_curves({"A": [(1, 0.0), (2, 1.0)]}, tmp_path / "w.png", title="t", ylabel="y", intervals=bands)


def test_a_diverged_training_loss_is_shown_not_refused(run_dir: Path) -> None:
    path = run_dir / "metrics.jsonl"
    diverged = '{"stage": "train", "method": "rft", "iteration": 2, "final_loss": NaN, "seconds": 1.0}\n'
    path.write_text(path.read_text() + diverged)  # what a run before the pipeline wrote null for it left
    markdown = (write_report(run_dir) / "report.md").read_text()
    assert "nan" in markdown


def test_a_run_whose_viewer_cannot_be_written_says_why_in_place_of_the_link(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("name: odd\nmethods: {eef: {m: five}}\n")  # read loosely by the report
    out = write_report(tmp_path)
    page, markdown = (out / "index.html").read_text(), (out / "report.md").read_text()
    assert "<p>No trajectory viewer: " in page and "methods.eef.m" in page and "viewer/index.html" not in page
    assert "No trajectory viewer: " in markdown and not (out / "viewer").exists()
