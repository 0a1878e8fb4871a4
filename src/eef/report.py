"""The report stage: what a run directory's artifacts say, as Markdown, static HTML and PNG plots.

:func:`write_report` reads only artifacts (``config.yaml``, ``metrics.jsonl``, ``summary.json``,
each evaluation's ``report.json`` and ``trajectories.jsonl``) and never runs a model, so it can be
rerun at any time, also on a run still in progress: whatever does not exist yet is left out.
Both documents are rendered from one list of blocks, so they always say the same thing.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eef.atomic import atomic_dir
from eef.config import read_yaml_file
from eef.errors import DataError, EefError
from eef.evaluate import best_iteration
from eef.jsonl import iter_json_lines
from eef.methods import METHODS
from eef.report_render import Block, plot_bars, plot_curves, render_html, render_markdown
from eef.run_facts import read_starts
from eef.stats import sign_test, wilson_interval
from eef.trajectory import Trajectory
from eef.trajectory_files import read_trajectories
from eef.viewer import write_viewer

EXAMPLES = 3  # successes and failures shown per method

_NAVIGATION = {
    "next": re.compile(r"click\s*\[\s*next\s*>\s*\]", re.IGNORECASE),
    "prev": re.compile(r"click\s*\[\s*<\s*prev\s*\]", re.IGNORECASE),
    "back_to_search": re.compile(r"click\s*\[\s*back\s*to\s*search\s*\]", re.IGNORECASE),
}
_SEARCH = re.compile(r"search\s*\[", re.IGNORECASE)
_NUMBER_FIELDS = frozenset(
    {
        "seconds",
        "episodes",
        "successes",
        "successes_from_states",
        "examples",
        "trained_tokens",
        "final_loss",
        "from_s0",
        "from_states",
        "model_calls",
        "replays",
        "diverged",
        "beneficial",
        "harmful",
        "neutral",
        "recovery_states",
        "important_states",
        "skipped_experts",
        "flagged_experts",
        "repository",
        "failures",
        "train_solved",
        "win_rate",
        "score",
        "pairs",
        "agent_worse",
        "agent_better",
        "ties",
        "no_expert",
    }
)
_PAIR_FIELDS = ("pairs", "agent_worse", "agent_better", "ties", "no_expert")
_TABLE_FIELDS = frozenset(
    {
        "by_tier",
        "navigation",
        "solved_by_source",
        "solved_by_teacher",
        "solved_by_group",
        "tasks_by_group",
        "env_incidents",
    }
)
_SEGMENT_FIELDS = ("beneficial", "harmful", "neutral", "recovery_states")
_SOURCES = {"expert": "cloned expert successes", "self_s0": "agent from s0", "eef": "EEF from expert states"}
_HEADERS = {f"solved_by_source.{key}": name for key, name in _SOURCES.items()} | {
    "train_solved": "solved in all",
    "repository": "repository solutions",
    "failures": "failures trained on (NAT)",
}
_TIERS = ("easy", "medium", "hard")  # the generated shop's groups, listed in this order before any others


def navigation_shares(trajectories: Iterable[Trajectory]) -> dict[str, float]:
    """Share of episodes that navigate: ``next``, ``prev``, ``back_to_search`` (at least one such
    click, any case and spacing) and ``second_search`` (more than one ``search[...]``); all 0 for none."""
    counts = dict.fromkeys((*_NAVIGATION, "second_search"), 0)
    episodes = 0
    for trajectory in trajectories:
        episodes += 1
        actions = [action.strip() for action in trajectory.actions]
        for key, pattern in _NAVIGATION.items():
            counts[key] += any(pattern.fullmatch(action) for action in actions)
        counts["second_search"] += sum(bool(_SEARCH.match(action)) for action in actions) > 1
    return {key: count / episodes if episodes else 0.0 for key, count in counts.items()}


def load_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` in file order; none when the file does not exist yet.

    A torn last line (no newline, not JSON) is skipped: the pipeline may be appending it now.

    Raises:
        DataError: a line that is not a JSON object with a string ``stage``, or a known field of
            the wrong type; the message names file, line and field.
    """
    if not path.is_file():
        return []
    records = []
    for line, record in iter_json_lines(path, skip_torn_tail=True):
        if not isinstance(record, dict):
            raise DataError(path, f"expected a JSON object, got {type(record).__name__}", line=line)
        for key, kind, ok in (
            ("stage", "a string", isinstance(record.get("stage"), str)),
            ("method", "a string", isinstance(record.get("method", ""), str)),
            ("iteration", "an integer", type(record.get("iteration", 0)) is int),
        ):
            if not ok:
                raise DataError(path, f"expected {kind}", line=line, field=key)
        for key, value in record.items():
            if key in _NUMBER_FIELDS and value is not None and (reason := _number_problem(key, value)):
                raise DataError(path, reason, line=line, field=key)
            if key in _TABLE_FIELDS:
                _check_table(value, path, line, key)
        records.append(record)
    return records


def latest_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """A run's ``metrics.jsonl``, one record per stage, method and iteration (a resumed stage's last).

    Raises:
        DataError: a malformed ``metrics.jsonl`` (file, line and field named).
    """
    return _latest(load_metrics(run_dir / "metrics.jsonl"))


def stage_seconds(metrics: list[dict[str, Any]]) -> float:
    """The wall time of a run's finished stages in seconds, summed from its :func:`latest_metrics`:
    the run's own time however often it was resumed (the process start, a few seconds, is not in it)."""
    return round(sum(r.get("seconds") or 0.0 for r in metrics), 1)


def _check_table(value: Any, path: Path, line: int, where: str) -> None:
    """Nested count tables (``by_tier``, ``navigation``, ...) hold numbers or further tables."""
    if not isinstance(value, dict):
        raise DataError(path, f"expected an object, got {type(value).__name__}", line=line, field=where)
    for key, item in value.items():
        if isinstance(item, dict):
            _check_table(item, path, line, f"{where}.{key}")
        elif not _is_number(item):
            raise DataError(path, f"expected a finite number, got {item!r}", line=line, field=f"{where}.{key}")


def _is_number(value: Any) -> bool:
    """A finite int or float (NaN and infinities are not standard JSON, and no figure here is one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number_problem(key: str, value: Any) -> str | None:
    """Why a metrics number is unusable: not a finite number, a rate outside [0, 1], or a count or
    time below 0 (a score may be any finite number: environments scale it their own way; a loss
    may be NaN, as a diverged training leaves it, which the report shows)."""
    if key == "final_loss" and isinstance(value, float) and math.isnan(value):
        return None
    if not _is_number(value):
        return f"expected a finite number, got {value!r}"
    if key.endswith("win_rate") and not 0 <= value <= 1:
        return f"expected a rate in [0, 1], got {value!r}"
    if not key.endswith(("win_rate", "score")) and value < 0:
        return f"expected a number >= 0, got {value!r}"
    return None


@dataclass
class MethodResults:
    """One method's test results: iteration -> (win rate, score), its best and last iteration, and
    each iteration's evaluation report (iteration 0 is SFT-POS's, for every method)."""

    points: dict[int, tuple[float, float]] = field(default_factory=dict)
    best: int | None = None
    last: int | None = None
    train_solved: dict[int, Any] = field(default_factory=dict)
    evals: dict[int, dict[str, Any]] = field(default_factory=dict)  # each iteration's report.json
    episodes: dict[int, int] = field(default_factory=dict)  # test episodes behind each point

    def best_report(self) -> dict[str, Any]:
        """The evaluation report of the best iteration; empty when there is none."""
        return self.evals.get(self.best, {}) if self.best is not None else {}

    def interval(self, iteration: int | None) -> tuple[float, float] | None:
        """The Wilson 95% interval of an iteration's test win rate; None without its episode count."""
        n = self.episodes.get(iteration) if iteration is not None else None
        if not n or iteration not in self.points:
            return None
        return wilson_interval(round(self.points[iteration][0] * n), n)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise DataError(path, f"not valid JSON: {e}") from None


def _point(value: Any, path: Path, where: str) -> tuple[int, float, float]:
    if not isinstance(value, dict):
        raise DataError(path, "expected an object", field=where)
    checks = {
        "iteration": type(value.get("iteration")) is int,
        "test_win_rate": _is_number(value.get("test_win_rate")) and 0 <= value["test_win_rate"] <= 1,
        "test_score": _is_number(value.get("test_score")),
    }
    for key, ok in checks.items():
        if not ok:
            wanted = "a rate in [0, 1]" if key == "test_win_rate" else "a finite number"
            raise DataError(path, f"missing or not {wanted} (got {value.get(key)!r})", field=f"{where}.{key}")
    return value["iteration"], value["test_win_rate"], value["test_score"]


def read_results(run_dir: Path, metrics: list[dict[str, Any]] | None = None) -> dict[str, MethodResults]:
    """Test results by method, in report order: ``summary.json`` first, then the eval records of
    ``metrics`` (read from the run when not given) and the eval reports it lacks.

    Raises:
        DataError: a malformed artifact (file, line and field named).
    """
    metrics = latest_metrics(run_dir) if metrics is None else metrics
    path, out = run_dir / "summary.json", {}
    summary = _read_json(path) if path.is_file() else {}
    if not isinstance(summary, dict):
        raise DataError(path, "expected an object with one entry per method")
    for name, entry in summary.items():
        results = out[name] = MethodResults()
        if not isinstance(entry, dict) or not isinstance(entry.get("iterations", []), list):
            raise DataError(path, "expected an object with a list of iterations", field=name)
        for i, value in enumerate(entry.get("iterations", [])):
            k, win, score = _point(value, path, f"{name}.iterations[{i}]")
            results.points[k] = (win, score)
        # train_solved lists one count per entry of iterations, in the same order.
        solved = entry.get("train_solved")
        results.train_solved = dict(zip(list(results.points), solved if isinstance(solved, list) else []))
        for end in ("best", "last"):
            if entry.get(end) is not None:
                k, win, score = _point(entry[end], path, f"{name}.{end}")
                results.points.setdefault(k, (win, score))
                setattr(results, end, k)
    for record in metrics:
        if "method" not in record:
            continue
        k, results = record.get("iteration", 0), out.setdefault(record["method"], MethodResults())
        if record["stage"] == "eval" and _is_number(record.get("win_rate")) and _is_number(record.get("score")):
            results.points.setdefault(k, (record["win_rate"], record["score"]))
            if type(record.get("episodes")) is int:
                results.episodes.setdefault(k, record["episodes"])
        if record["stage"] == "label" and "train_solved" in record:
            results.train_solved[k] = record["train_solved"]
    found = [("sft_pos", 0, run_dir / "sft_pos/eval/report.json")]
    found += [
        (p.parts[-4], int(p.parts[-3][5:]), p)
        for p in run_dir.glob("*/iter-*/eval/report.json")
        if p.parts[-3][5:].isdigit()
    ]
    for name, k, report in found:
        if report.is_file():
            data = _read_json(report)
            results = out.setdefault(name, MethodResults())
            evals = results.evals[k] = data if isinstance(data, dict) else {}
            if _is_number(evals.get("win_rate")) and _is_number(evals.get("score")):
                results.points.setdefault(k, (evals["win_rate"], evals["score"]))
            if type(evals.get("episodes")) is int:
                results.episodes[k] = evals["episodes"]
    base = out.get("sft_pos", MethodResults()).evals.get(0)
    for results in out.values():  # without a summary: the highest win rate, then score, then the earliest
        if base is not None:
            results.evals.setdefault(0, base)
        if results.points and results.best is None:
            results.best = best_iteration(results.points)
        if results.points and results.last is None:
            results.last = max(results.points)
    return {name: out[name] for name in _ordered(out) if out[name].points}


def _ordered(names: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    return [n for n in METHODS if n in names] + [n for n in names if n not in METHODS]


def _stage_dir(run_dir: Path, method: str, iteration: int) -> Path:
    # Iteration 0 of every method is SFT-POS, trained and evaluated once.
    return run_dir / "sft_pos" if method == "sft_pos" or iteration == 0 else run_dir / method / f"iter-{iteration}"


def _eval_dir(run_dir: Path, method: str, iteration: int) -> Path:
    return _stage_dir(run_dir, method, iteration) / "eval"


def write_report(run_dir: Path) -> Path:
    """Write ``report.md``, ``index.html`` and the PNG plots into ``run_dir/report/``.

    Args:
        run_dir: a run directory (see the module docstring for what is read).

    Returns:
        The report directory.

    Raises:
        DataError: a missing run directory or a malformed artifact (file, line and field named).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(run_dir, "no such run directory" if not run_dir.exists() else "not a directory")
    if not (run_dir / "config.yaml").is_file() and not (run_dir / "metrics.jsonl").is_file():
        raise DataError(run_dir, "not a run directory (it has neither config.yaml nor metrics.jsonl)")
    with atomic_dir(run_dir / "report") as out:  # a failure half-way leaves the previous report whole
        _write_report_files(run_dir, out)
    return run_dir / "report"


def _write_report_files(run_dir: Path, out: Path) -> None:
    config_path = run_dir / "config.yaml"
    config = read_yaml_file(config_path) if config_path.is_file() else {}
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    config = config if isinstance(config, dict) else {}
    metrics = latest_metrics(run_dir)
    results = read_results(run_dir, metrics)
    methods = config.get("methods")
    report = _Report(run_dir, out, metrics, results, methods if isinstance(methods, dict) else {})
    title = f"Run report: {config.get('name', run_dir.name)}"
    about = f"Environment {_dig(config, 'env.name')}, seed {config.get('seed')}; from the artifacts in {run_dir.name}/."
    sections = [
        *report.results_blocks(),
        *report.stage_blocks(),
        *report.navigation_blocks(),
        *report.facts_blocks(),
        *report.config_blocks(config_text),
        *report.example_blocks(),
    ]
    blocks = [
        ("h", 1, title),
        ("p", about),
        _viewer_line(run_dir, out, {name: report.label(name) for name in (*METHODS, *results)}),
        ("toc", [(b[1], b[2]) for b in sections if b[0] == "h" and b[1] == 2]),
        *sections,
    ]
    (out / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
    (out / "index.html").write_text(render_html(title, blocks), encoding="utf-8")


def _viewer_line(run_dir: Path, out: Path, labels: dict[str, str]) -> Block:
    """Write the trajectory viewer beside the report; the line that links to it (or says why
    there is none: the report reads what it can of a run, the viewer needs its configuration whole)."""
    try:
        page = write_viewer(run_dir, out / "viewer", labels)
    except EefError as e:
        return ("p", f"No trajectory viewer: {e}")
    return ("link", "Trajectories task by task, side by side across methods: ", str(page.relative_to(out)), ".")


def _latest(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per stage, method and iteration (the last: a resumed stage appends again), by
    method then iteration."""
    latest = {(r["stage"], r.get("method"), r.get("iteration")): r for r in metrics}
    rank: dict[str | None, int] = {
        name: i for i, name in enumerate(_ordered(r["method"] for r in metrics if "method" in r))
    }
    return sorted(latest.values(), key=lambda r: (rank.get(r.get("method"), -1), r.get("iteration", 0)))


@dataclass
class _Report:
    """Builds the report's blocks (drawing its plots on the way) from loaded artifacts."""

    run_dir: Path
    out: Path
    metrics: list[dict[str, Any]]
    results: dict[str, MethodResults]
    methods: dict[str, Any]

    def label(self, name: str) -> str:
        return method_label(name, self.methods)

    def records(self, stage: str) -> list[dict[str, Any]]:
        return [r for r in self.metrics if r["stage"] == stage]

    def table(self, records: list[dict[str, Any]], keys: list[str], **extra: Any) -> Block:
        """A table of records: method, iteration, then the (dotted) keys and computed columns."""
        rows = [
            [
                self.label(r.get("method", "")),
                _fmt(r.get("iteration")),
                *(_fmt(_dig(r, k)) for k in keys),
                *(compute(r) for compute in extra.values()),
            ]
            for r in records
        ]
        headers = [_HEADERS.get(k, k.replace("_", " ")) for k in [*keys, *extra]]
        return ("table", ["method", "iteration", *headers], rows)

    def curves(
        self, index: int
    ) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float, float]]]]:
        """Test win rate (index 0) or score (1) per iteration, SFT-POS as every method's iteration 0
        (and a point of its own in the legend); with win rates, their Wilson intervals."""
        sft_pos = self.results.get("sft_pos", MethodResults())
        curves: dict[str, list[tuple[float, float]]] = {}
        intervals: dict[str, list[tuple[float, float, float]]] = {}
        for name, r in self.results.items():
            with_base = name != "sft_pos" and 0 in sft_pos.points
            points = {0: sft_pos.points[0]} | r.points if with_base else r.points
            label = self.label(name)
            curves[label] = [(k, p[index]) for k, p in points.items()]
            if index == 0:
                owner = {k: sft_pos if with_base and k == 0 else r for k in points}
                intervals[label] = [(k, *band) for k in points if (band := owner[k].interval(k)) is not None]
        return curves, intervals

    def results_blocks(self) -> list[Block]:
        """The paper-shaped table (best and last iteration), the curves and the per-iteration table."""
        rows, per_iteration = [], []
        for name, r in self.results.items():
            rows.append(
                [
                    self.label(name),
                    _fmt(r.best),
                    _win_score(_point_at(r.points, r.best)),
                    _band(r.interval(r.best)),
                    _fmt(r.last),
                    _win_score(_point_at(r.points, r.last)),
                ]
            )
            for k, (win, score) in sorted(r.points.items()):
                report = r.evals.get(k, {})
                per_iteration.append(
                    [
                        self.label(name),
                        str(k),
                        _fmt(win, percent=True),
                        _band(r.interval(k)),
                        _fmt(score),
                        *(_fmt(report.get(key)) for key in ("episodes", "mean_steps", "truncated")),
                        _fmt(r.train_solved.get(k)),
                    ]
                )
        wins, bands = self.curves(0)
        win_plot = plot_curves(
            wins, self.out / "win_rate.png", title="Test win rate (95% Wilson intervals)", ylabel="win rate",
            intervals=bands, share=True,
        )  # fmt: skip
        score_plot = plot_curves(
            self.curves(1)[0], self.out / "score.png", title="Test score (mean final reward)", ylabel="score"
        )
        return [
            ("h", 2, "Test results"),
            (
                "p",
                "Win rates with their 95% Wilson intervals over the test tasks: where two intervals overlap, "
                "the paired comparison below says more than the gap.",
            ),
            (
                "table",
                [
                    "method",
                    "best iteration",
                    "best win rate / score",
                    "95% interval",
                    "last iteration",
                    "last win rate / score",
                ],
                rows,
            ),
            *_img(win_plot, "win_rate.png"),
            *_img(score_plot, "score.png"),
            *self.paired_blocks(),
            *self.group_blocks(),
            ("h", 3, "Per iteration (iteration 0 is SFT-POS)"),
            (
                "table",
                [
                    "method",
                    "iteration",
                    "test win rate",
                    "95% interval",
                    "test score",
                    "episodes",
                    "mean steps",
                    "truncated",
                    "train subtasks solved",
                ],
                per_iteration,
            ),
        ]

    def paired_blocks(self) -> list[Block]:
        """Each pair of methods at their best iterations, on the test tasks both played: the tasks
        only one of them won. A gap in win rate is only these tasks, and on a 100-task split five
        points can be a handful of them: the exact sign test says how often chance alone would
        split them as unevenly (optimistic when a best iteration was chosen among several on
        these same tasks)."""
        won = {name: task_wins(r.best_report()) for name, r in self.results.items()}
        rows = []
        for first, second in itertools.combinations([name for name in won if won[name]], 2):
            common = won[first].keys() & won[second].keys()
            only_second = sum(won[second][t] and not won[first][t] for t in common)
            only_first = sum(won[first][t] and not won[second][t] for t in common)
            rows.append(
                [
                    f"{self.label(second)} vs {self.label(first)}",
                    str(len(common)),
                    str(only_second),
                    str(only_first),
                    f"{sign_test(only_second, only_first):.3f}",
                ]
            )
        if not rows:
            return []
        return [
            ("h", 3, "Paired on the test tasks (best iterations)"),
            ("table", ["A vs B", "tasks", "won only by A", "won only by B", "sign test p"], rows),
        ]

    def group_blocks(self) -> list[Block]:
        """Where a gain comes from: each method's test win rate by task group (the shop's difficulty
        tiers, ScienceWorld's task types) at its best iteration, and the training subtasks solved
        per group in each iteration (out of the group's training tasks)."""
        by_method = {name: grouped for name, r in self.results.items() if (grouped := group_wins(r.best_report()))}
        blocks: list[Block] = []
        if by_method:
            groups = group_order(g for grouped in by_method.values() for g in grouped)
            rows = [
                [g, *(rate_cell(*by_method[m][g]) if g in by_method[m] else "–" for m in by_method)] for g in groups
            ]
            headers = [f"{self.label(m)} ({self.results[m].best or 0})" for m in by_method]
            blocks += [
                ("h", 3, "Test results by task group (best iterations)"),
                ("p", "Win rate, tasks won of the group's tasks and the 95% Wilson interval."),
                ("table", ["group", *headers], rows),
            ]
        labels = [r for r in self.records("label") if r.get("solved_by_group")]
        if labels:
            totals = next((r.get("tasks_by_group") or {} for r in self.records("expert")), {})
            groups = group_order({g for r in labels for g in r["solved_by_group"]} | set(totals))
            columns = {g: lambda r, g=g: _of(r["solved_by_group"].get(g, 0), totals.get(g)) for g in groups}
            blocks += [("h", 3, "Training subtasks solved by task group"), self.table(labels, [], **columns)]
        return blocks

    def stage_blocks(self) -> list[Block]:
        """A section per stage that has records: expert, label, explore, train, and the time spent."""
        blocks: list[Block] = []
        for expert in self.records("expert"):
            by_tier = expert.get("by_tier", {})
            tiers = {**{t: by_tier[t] for t in group_order(by_tier)}, "all": expert}
            rows = [
                [tier, _fmt(t.get("episodes")), _fmt(t.get("successes")), _share(t.get("successes"), t.get("episodes"))]
                for tier, t in tiers.items()
            ]
            blocks += [
                ("h", 2, "Expert trajectories"),
                ("table", ["tier", "episodes", "successes", "success rate"], rows),
            ]
        blocks += self.label_blocks() + self.explore_blocks()
        if train := self.records("train"):
            columns = ["examples", "trained_tokens", "final_loss", "seconds"]
            blocks += [
                ("h", 2, "Training"),
                self.table(train, columns + (["pairs"] if any("pairs" in r for r in train) else [])),
                *self.loss_blocks(train),
            ]
        seconds: dict[str, float] = {}
        for r in self.metrics:
            seconds[r["stage"]] = seconds.get(r["stage"], 0.0) + (r.get("seconds") or 0.0)
        if seconds:
            rows = [[s, _fmt(t)] for s, t in seconds.items()] + [["all stages", _fmt(sum(seconds.values()))]]
            blocks += [("h", 2, "Time"), ("table", ["stage", "seconds"], rows)]
        return blocks

    def loss_blocks(self, train: list[dict[str, Any]]) -> list[Block]:
        """Per-step training losses from each stage's checkpoint record (``eef_train.json``): one plot
        for SFT stages, one for DPO stages (their losses are on other scales)."""
        curves: dict[str, dict[str, list[tuple[float, float]]]] = {"sft": {}, "dpo": {}}
        for r in train:
            if r.get("unchanged"):
                continue  # no training happened: its checkpoint is the previous one
            stage = _stage_dir(self.run_dir, r.get("method", ""), r.get("iteration", 0))
            losses = _losses(stage / "checkpoint" / "eef_train.json")
            if losses:
                kind = "dpo" if "pairs" in r else "sft"
                curves[kind][self.point_label(r)] = [(step, loss) for step, loss in enumerate(losses, start=1)]
        blocks: list[Block] = []
        for kind, file, log_y in (("sft", "loss.png", True), ("dpo", "dpo_loss.png", False)):
            drawn = plot_curves(
                curves[kind],
                self.out / file,
                title=f"Training loss ({kind.upper()})",
                ylabel="loss (log scale)" if log_y else "loss",
                xlabel="optimizer step",
                log_y=log_y,
            )
            blocks += _img(drawn, file)
        return blocks

    def facts_blocks(self) -> list[Block]:
        """What the run ran on (``run_facts.json``): its last start, and how many starts it took."""
        starts = read_starts(self.run_dir)
        if not starts:
            return []
        last = starts[-1]
        packages = last.get("packages")
        packages = packages if isinstance(packages, dict) else {}
        rows = [
            ["started", f"{starts[0].get('started')} (first); {last.get('started')} (last of {len(starts)})"],
            ["eef revision", str(last.get("revision") or "not a git checkout")],
            ["python", str(last.get("python"))],
            ["packages", ", ".join(f"{name} {version}" for name, version in packages.items())],
            [
                "machine",
                f"{last.get('platform')}; {last.get('cpu_model', 'CPU model not recorded')}, {last.get('cpus')} CPUs, "
                f"{last.get('memory_gib')} GiB",
            ],
            ["accelerators", ", ".join(last.get("accelerators") or []) or "none"],
            ["processes", str(last.get("processes"))],
        ]
        return [("h", 2, "Run facts"), ("table", ["fact", "value"], rows)]

    def label_blocks(self) -> list[Block]:
        """Training subtasks solved by source; EEF's segments and recovery states."""
        labels = self.records("label")
        if not labels:
            return []
        solved = [
            (self.point_label(r), {_SOURCES.get(k, k): v for k, v in r["solved_by_source"].items()})
            for r in labels
            if r.get("solved_by_source")
        ]
        blocks = [
            ("h", 2, "Training subtasks solved"),
            self.table(
                labels,
                [
                    "solved_by_source.expert",
                    "solved_by_source.self_s0",
                    "solved_by_source.eef",
                    "train_solved",
                    "repository",
                    *(["failures"] if any("failures" in r for r in labels) else []),  # NAT's marked failures
                ],
            ),
            *_img(
                plot_bars(
                    solved,
                    self.out / "train_solved.png",
                    title="Training subtasks solved, by source",
                    ylabel="subtasks solved",
                    stacked=True,
                ),
                "train_solved.png",
            ),
        ]
        teachers = sorted({t for r in labels for t in r.get("solved_by_teacher", {})})
        if teachers:  # what each expert source contributed: cloned successes plus EEF solutions of its trajectories
            blocks += [
                ("h", 3, "By teacher"),
                self.table(
                    labels,
                    [],
                    **{  # teacher names may hold dots (gpt-3.5)
                        t: lambda r, t=t: _fmt(r.get("solved_by_teacher", {}).get(t)) for t in teachers
                    },
                ),
            ]
        # RFT's label records carry zeros in the EEF-only fields; they are left out here.
        eef = [r for r in labels if r.get("method", "").startswith("eef") or any(r.get(k) for k in _SEGMENT_FIELDS)]
        if eef:
            segments = [(self.point_label(r), {k: r.get(k) or 0 for k in _SEGMENT_FIELDS[:3]}) for r in eef]
            segment_plot = plot_bars(
                segments, self.out / "segments.png", title="EEF's labels of expert segments", ylabel="segments"
            )
            blocks += [
                ("h", 2, "EEF segments and recovery states"),
                self.table(eef, [*_SEGMENT_FIELDS, "important_states", "skipped_experts", "flagged_experts"]),
                *_img(segment_plot, "segments.png"),
            ]
        preference = [r for r in labels if "pairs" in r]
        if preference:  # ETO: each episode against the expert success of its task
            blocks += [("h", 2, "Preference pairs (ETO)"), self.table(preference, list(_PAIR_FIELDS))]
        return blocks

    def explore_blocks(self) -> list[Block]:
        """Exploration episodes and the share of replays that diverged (plotted only where there were replays)."""
        explore = self.records("explore")
        if not explore:
            return []
        divergence: dict[str, list[tuple[float, float]]] = {}
        for r in explore:
            if r.get("replays") and _is_number(r.get("diverged")):
                share = r["diverged"] / r["replays"]
                divergence.setdefault(self.label(r.get("method", "")), []).append((r.get("iteration", 0), share))
        if not any(share for points in divergence.values() for _, share in points):
            divergence = {}  # no replay diverged: the table says so, a plot of zeros would not add to it
        return [
            ("h", 2, "Exploration and replay divergence"),
            self.table(
                explore,
                ["episodes", "from_s0", "from_states", "model_calls", "successes", "replays", "diverged"],
                success_from_s0=lambda r: _share(
                    _minus(r.get("successes"), r.get("successes_from_states")), r.get("from_s0")
                ),
                success_from_states=lambda r: _share(r.get("successes_from_states"), r.get("from_states")),
                diverged_share=lambda r: _share(r.get("diverged"), r.get("replays")),
            ),
            *_img(
                plot_curves(
                    divergence,
                    self.out / "divergence.png",
                    title="Replays of expert prefixes that diverged",
                    ylabel="share of replays",
                    share=True,
                ),
                "divergence.png",
            ),
        ]

    def point_label(self, record: dict[str, Any]) -> str:
        return f"{self.label(record.get('method', ''))} {record.get('iteration', 0)}"

    def best_trajectories(self, name: str) -> list[Trajectory] | None:
        """The test trajectories of a method's best iteration; None when they are not there (yet)."""
        path = _eval_dir(self.run_dir, name, self.results[name].best or 0) / "trajectories.jsonl"
        return read_trajectories(path, skip_torn_tail=True) if path.is_file() else None

    def navigation_blocks(self) -> list[Block]:
        """Navigation shares per method at its best iteration: the eval record's, else from trajectories."""
        evals = {(r.get("method"), r.get("iteration", 0)): r for r in self.records("eval")}
        shares = []
        for name, r in self.results.items():
            recorded = evals.get(("sft_pos", 0) if r.best == 0 else (name, r.best), {}).get("navigation")
            trajectories = None if recorded else self.best_trajectories(name)
            if recorded:
                shares.append((f"{self.label(name)} {r.best}", recorded))
            elif trajectories is not None:
                shares.append((f"{self.label(name)} {r.best}", navigation_shares(trajectories)))
        if not shares:
            return []
        keys = list(dict.fromkeys(k for _, s in shares for k in s))
        return [
            ("h", 2, "Navigation at the best iteration (share of test episodes)"),
            (
                "table",
                ["method, iteration", *keys],
                [[m, *(_fmt(s.get(k), percent=True) for k in keys)] for m, s in shares],
            ),
            *_img(
                plot_bars(
                    shares,
                    self.out / "navigation.png",
                    title="Test episodes that navigate, at the best iteration",
                    ylabel="share of episodes",
                    share=True,
                ),
                "navigation.png",
            ),
        ]

    def config_blocks(self, config_text: str) -> list[Block]:
        """The methods section as key -> value (the paper's open choices included) and config.yaml."""
        if not config_text:
            return [("h", 2, "Configuration"), ("p", "No config.yaml in the run directory.")]
        rows = [[key, json.dumps(value)] for key, value in _flatten(self.methods)]
        return [
            ("h", 2, "Configuration"),
            ("p", "The methods section, with the choices the paper leaves open (eef.m, eef.explore, ...):"),
            ("table", ["methods key", "value"], rows),
            ("details", "config.yaml (as saved in the run directory)", config_text),
        ]

    def example_blocks(self) -> list[Block]:
        """The first few successes and failures among each method's test episodes at its best iteration."""
        blocks: list[Block] = [("h", 2, "Example test trajectories at the best iteration")]
        for name, r in self.results.items():
            trajectories = self.best_trajectories(name) if r.points else None
            if trajectories:
                shown = [t for t in trajectories if t.success][:EXAMPLES] + [t for t in trajectories if not t.success][
                    :EXAMPLES
                ]
                blocks += [("h", 3, f"{self.label(name)}, iteration {r.best}"), *(("trajectory", t) for t in shown)]
        return blocks if len(blocks) > 1 else []


def method_label(name: str, methods: dict[str, Any]) -> str:
    """The paper's name of a method (``RFT x6`` for ``rft_k`` with its rollout count), given the
    configuration's ``methods`` section."""
    if name == "rft_k":
        k, m = methods.get("rft_k"), (methods.get("eef") or {}).get("m")
        k = 1 + m if k is None and isinstance(m, int) else k  # null means EEF's budget, 1 + M
        return f"RFT x{'K' if k is None else k}"
    return {"sft_pos": "SFT-POS", "rft": "RFT", "nat": "NAT", "eto": "ETO", "eef": "EEF"}.get(name, name)


def task_wins(report: Any) -> dict[str, bool]:
    """Task id -> won, from an evaluation's ``report.json`` (entries without both are skipped)."""
    tasks = report.get("tasks") if isinstance(report, dict) else None
    if not isinstance(tasks, list):
        return {}
    return {
        t["task_id"]: t["success"]
        for t in tasks
        if isinstance(t, dict) and isinstance(t.get("task_id"), str) and isinstance(t.get("success"), bool)
    }


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in table.items():
        out += _flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [(prefix + key, value)]
    return out


def _dig(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _fmt(value: Any, percent: bool = False) -> str:
    if not _is_number(value):
        return "–" if value is None else str(value)
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}" if isinstance(value, float) else str(value)


def _minus(a: Any, b: Any) -> Any:
    return a - b if _is_number(a) and _is_number(b) else None


def _share(part: Any, whole: Any) -> str:
    return _fmt(part / whole, percent=True) if _is_number(part) and _is_number(whole) and whole else "–"


def _point_at(points: dict[int, tuple[float, float]], iteration: int | None) -> tuple[float, float] | None:
    return points.get(iteration) if iteration is not None else None


def _win_score(point: tuple[float, float] | None) -> str:
    return "–" if point is None else f"{_fmt(point[0], percent=True)} / {_fmt(point[1])}"


def group_wins(report: Any) -> dict[str, tuple[int, int]]:
    """Task group -> (tasks won, tasks), from an evaluation's ``report.json`` (tasks without a group
    are left out)."""
    tasks = report.get("tasks") if isinstance(report, dict) else None
    out: dict[str, tuple[int, int]] = {}
    for t in tasks if isinstance(tasks, list) else []:
        if isinstance(t, dict) and isinstance(t.get("group"), str) and isinstance(t.get("success"), bool):
            won, n = out.get(t["group"], (0, 0))
            out[t["group"]] = (won + t["success"], n + 1)
    return out


def group_order(groups: Iterable[str]) -> list[str]:
    """Task groups in display order: the shop's tiers from easy to hard, then the others by name."""
    groups = set(groups)
    return [t for t in _TIERS if t in groups] + sorted(groups - set(_TIERS))


def rate_cell(won: int, n: int) -> str:
    """A win rate with its counts and Wilson interval: ``60.0% (3/5) [23.1, 88.2]``."""
    return f"{_fmt(won / n, percent=True)} ({won}/{n}) {_band(wilson_interval(won, n))}"


def _band(interval: tuple[float, float] | None) -> str:
    return "–" if interval is None else f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"


def _of(part: Any, whole: Any) -> str:
    return f"{_fmt(part)} of {whole}" if _is_number(whole) else _fmt(part)


def _losses(path: Path) -> list[float]:
    """The per-step losses a checkpoint's ``eef_train.json`` lists; none when it is missing or lists none."""
    if not path.is_file():
        return []
    record = _read_json(path)
    losses = record.get("losses") if isinstance(record, dict) else None
    return [x for x in losses if _is_number(x)] if isinstance(losses, list) else []


def _img(drawn: bool, file: str) -> list[Block]:
    return [("img", file, file.removesuffix(".png").replace("_", " "))] if drawn else []
