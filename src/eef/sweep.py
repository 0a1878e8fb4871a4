"""Seeds as an axis: one configuration run once per seed into one parent directory, then a report
over the seeds.

A method's effect on one seed's test split can be luck: which SFT-POS model a seed gives decides
much of what every later method can learn. :func:`run_sweep` runs the configuration with
``KEY=seed`` for each seed (``seed``, or any integer key such as ``env.options.seed``) into
``ROOT/seed-S/``, each a normal, resumable run; :func:`write_sweep_report` reads only those run
directories and writes ``ROOT/report/`` (``report.md``, ``index.html``, ``sweep.json``): each
method's mean test win rate with its 95% t interval over seeds, the per-seed results, the paired
comparison of each two methods pooled over seeds (tasks won by only one of them, exact sign test),
and win rates by task group pooled over seeds.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from eef.atomic import atomic_dir, write_text_atomic
from eef.config import RunConfig, load_config, read_yaml_file
from eef.errors import DataError, EefError
from eef.report import (
    MethodResults,
    group_order,
    group_wins,
    latest_metrics,
    method_label,
    rate_cell,
    read_results,
    stage_seconds,
    task_wins,
)
from eef.report_render import Block, render_html, render_markdown
from eef.stats import mean_interval, sign_test

SWEEP_FILE = "sweep.yaml"


@dataclass(frozen=True)
class Sweep:
    """One configuration (a file and ``-s`` overrides) and the seeds it is run with.

    Attributes:
        config: the YAML configuration.
        overrides: ``KEY.PATH=VALUE`` overrides, as ``eef run -s`` takes them.
        seeds: the values ``key`` takes, one run each.
        key: the integer configuration key that varies (the model seed, the catalog's seed, ...).
        root: the parent directory of the runs.
    """

    config: Path
    overrides: tuple[str, ...]
    seeds: tuple[int, ...]
    key: str
    root: Path

    def run_dir(self, seed: int) -> Path:
        return self.root / f"seed-{seed}"

    def run_config(self, seed: int) -> RunConfig:
        """The configuration of one seed's run."""
        return load_config(self.config, [*self.overrides, f"{self.key}={seed}", f"run_dir={self.run_dir(seed)}"])

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": str(self.config),
            "overrides": list(self.overrides),
            "seeds": list(self.seeds),
            "key": self.key,
        }


def parse_seeds(text: str) -> tuple[int, ...]:
    """Seeds written as ``0,1,2`` or ``0-4`` (or both: ``0-2,7``).

    >>> parse_seeds("0-2,7")
    (0, 1, 2, 7)

    Raises:
        EefError: anything else, or a seed named twice.
    """
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise EefError(f"--seeds: {part.strip()!r} is not a seed or a range such as 0-4 (from {text!r})")
        seeds += range(int(first), int(last) + 1) if dash else [int(first)]
    if len(set(seeds)) != len(seeds) or not seeds:
        raise EefError(f"--seeds: {text!r} names a seed twice or none")
    return tuple(seeds)


@dataclass(frozen=True)
class SweepResult:
    """Each seed's run summary and the wall time of its stages in seconds (its own, also after a resume)."""

    summaries: dict[int, dict[str, Any]]
    seconds: dict[int, float]


def run_sweep(sweep: Sweep, *, resume: bool = False, log: Callable[[str], None] = print) -> SweepResult:
    """Run the configuration once per seed, then write the report over the seeds.

    Every seed's configuration is checked before any run starts; ``resume`` continues each run
    (finished runs are only re-reported).

    Raises:
        EefError: a bad configuration, seeds or key, a launch on several processes, or a parent
            directory that holds another sweep.
    """
    from eef.pipeline import run

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise EefError("eef sweep runs its runs one after another in one process; launch `eef run` per seed instead")
    check_key(sweep)
    configs = {seed: sweep.run_config(seed) for seed in sweep.seeds}
    prepare_sweep_dir(sweep, resume)
    summaries = {}
    for n, seed in enumerate(sweep.seeds, start=1):
        log(f"[sweep] {sweep.key}={seed}: run {n} of {len(sweep.seeds)} -> {sweep.run_dir(seed)}")
        summaries[seed] = run(configs[seed], resume=resume, log=log)
    report = json.loads((write_sweep_report(sweep.root) / "sweep.json").read_text(encoding="utf-8"))
    return SweepResult(summaries, {seed: report["run_seconds"].get(str(seed), 0.0) for seed in sweep.seeds})


def check_key(sweep: Sweep) -> None:
    """The key the seeds set must be an integer setting of the configuration, or an environment
    option (those are the environment's to check).

    Raises:
        EefError: naming the key and the configuration.
    """
    if sweep.key.startswith("env.options."):
        return
    value: Any = load_config(sweep.config, list(sweep.overrides)).as_dict()
    for part in sweep.key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if type(value) is not int:
        raise EefError(
            f"--key {sweep.key}: not an integer setting of {sweep.config}; use seed (the model's and sampling's) "
            "or an environment option such as env.options.seed (the built-in catalog's)"
        )


def prepare_sweep_dir(sweep: Sweep, resume: bool) -> None:
    """Save the sweep's description in its parent directory; refuse to mix sweeps."""
    saved = sweep.root / SWEEP_FILE
    if saved.is_file():
        if not resume:
            raise EefError(f"{sweep.root} already holds a sweep; pass --resume to continue it or choose another --out")
        before = read_yaml_file(saved)
        if before != sweep.as_dict():
            raise EefError(f"{saved} describes another sweep ({before}); --resume continues only the same one")
        return
    sweep.root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(saved, yaml.safe_dump(sweep.as_dict(), sort_keys=False))


def write_sweep_report(root: Path) -> Path:
    """Write ``report.md``, ``index.html`` and ``sweep.json`` over the seed runs in ``root/report/``.

    Raises:
        DataError: no sweep description, or a malformed artifact of a run (file, line and field named).
    """
    saved = root / SWEEP_FILE
    if not saved.is_file():
        raise DataError(saved, "no sweep here (eef sweep writes this file first)")
    description = read_yaml_file(saved) or {}
    seeds = description.get("seeds") if isinstance(description, dict) else None
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
        raise DataError(saved, "expected a non-empty list of integers", field="seeds")
    metrics = {s: latest_metrics(root / f"seed-{s}") for s in seeds if (root / f"seed-{s}").is_dir()}
    runs = {s: read_results(root / f"seed-{s}", metrics[s]) for s in metrics}
    runs = {s: results for s, results in runs.items() if results}
    methods_config = _methods_section(root / f"seed-{seeds[0]}" / "config.yaml")
    summary = sweep_summary(runs)
    summary["run_seconds"] = {str(s): stage_seconds(metrics[s]) for s in runs}
    labels = {name: method_label(name, methods_config) for name in summary["methods"]}
    blocks = sweep_blocks(description, runs, summary, labels)
    with atomic_dir(root / "report") as out:  # the three files are replaced together
        (out / "sweep.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        (out / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
        (out / "index.html").write_text(render_html(str(blocks[0][2]), blocks), encoding="utf-8")
    return root / "report"


def sweep_summary(runs: dict[int, dict[str, MethodResults]]) -> dict[str, Any]:
    """The figures over seeds: per method its best and last test win rates per seed with means and
    intervals; per pair of methods the per-seed gaps at the best iterations and the pooled paired
    counts; per method the wins by task group pooled over seeds."""
    names = list(dict.fromkeys(name for results in runs.values() for name in results))
    methods: dict[str, Any] = {}
    for name in names:
        entries = {s: results[name] for s, results in runs.items() if name in results}
        best = {s: r.points[r.best][0] for s, r in entries.items() if r.best is not None}
        last = {s: r.points[r.last][0] for s, r in entries.items() if r.last is not None}
        groups: dict[str, list[int]] = {}
        for r in entries.values():
            for group, (won, n) in group_wins(r.best_report()).items():
                groups.setdefault(group, [0, 0])
                groups[group][0] += won
                groups[group][1] += n
        methods[name] = {
            "best_win_rate": {str(s): v for s, v in best.items()},
            "best_iteration": {str(s): r.best for s, r in entries.items()},
            "last_win_rate": {str(s): v for s, v in last.items()},
            "best_mean": _mean_and_interval(list(best.values())),
            "last_mean": _mean_and_interval(list(last.values())),
            "by_group": {g: {"won": won, "tasks": n} for g, (won, n) in groups.items()},
        }
    pairs: dict[str, Any] = {}
    for first, second in itertools.combinations(names, 2):
        only_first = only_second = tasks = 0
        gaps = {}
        for s, results in runs.items():
            if first not in results or second not in results:
                continue
            a, b = results[first], results[second]
            if a.best is not None and b.best is not None:
                gaps[str(s)] = round(b.points[b.best][0] - a.points[a.best][0], 6)
            won_a, won_b = task_wins(a.best_report()), task_wins(b.best_report())
            common = won_a.keys() & won_b.keys()
            tasks += len(common)
            only_first += sum(won_a[t] and not won_b[t] for t in common)
            only_second += sum(won_b[t] and not won_a[t] for t in common)
        pairs[f"{second} vs {first}"] = {
            "a": second,
            "b": first,
            "gaps": gaps,
            "ahead": sum(g > 0 for g in gaps.values()),
            "tasks": tasks,
            "won_only_by_a": only_second,
            "won_only_by_b": only_first,
            "sign_test_p": sign_test(only_second, only_first),
        }
    return {"seeds": sorted(runs), "methods": methods, "pairs": pairs}


def sweep_blocks(
    description: dict[str, Any],
    runs: dict[int, dict[str, MethodResults]],
    summary: dict[str, Any],
    labels: dict[str, str],
) -> list[Block]:
    """The report's blocks: means over seeds, per seed, pooled paired comparisons, task groups."""
    key, wanted = description.get("key", "seed"), description.get("seeds", [])
    methods = summary["methods"]
    title = f"Sweep report: {len(runs)} of {len(wanted)} runs over {key}"
    rows = [
        [
            labels[name],
            str(len(m["best_win_rate"])),
            _mean_cell(m["best_mean"]),
            _mean_cell(m["last_mean"]),
        ]
        for name, m in methods.items()
    ]
    per_seed = [
        [str(s), *(_seed_cell(methods[name], s) for name in methods), f"{summary['run_seconds'][str(s)]:.0f}"]
        for s in summary["seeds"]
    ]
    paired = [
        [
            f"{labels[p['a']]} vs {labels[p['b']]}",
            f"{p['ahead']} of {len(p['gaps'])}",
            ", ".join(f"{100 * g:+.1f}" for g in p["gaps"].values()),
            str(p["tasks"]),
            str(p["won_only_by_a"]),
            str(p["won_only_by_b"]),
            f"{p['sign_test_p']:.3g}",
        ]
        for p in summary["pairs"].values()
    ]
    groups = group_order(g for m in methods.values() for g in m["by_group"])
    by_group = [[g, *(_group_cell(methods[name]["by_group"].get(g)) for name in methods)] for g in groups]
    missing = [s for s in wanted if s not in runs]
    blocks: list[Block] = [
        ("h", 1, title),
        ("p", f"Runs in seed-S/ with {key}=S for S in {', '.join(map(str, wanted))}"
              + (f"; not there yet: {', '.join(map(str, missing))}." if missing else ".")),
        ("h", 2, "Test win rate over seeds"),
        ("p", "Mean over seeds with its 95% t interval, cut to [0, 100%] (the best iteration is chosen on the test split, so "
              "its mean is optimistic; the last iteration's is not)."),
        ("table", ["method", "seeds", "best iteration: mean [95% interval]", "last iteration: mean [95% interval]"], rows),
        ("h", 2, "Per seed (best win rate, iteration; the wall time of the run's stages)"),
        ("table", [key, *(labels[name] for name in methods), "stages (s)"], per_seed),
    ]  # fmt: skip
    if paired:
        blocks += [
            ("h", 2, "Paired over seeds (best iterations)"),
            ("p", "Gap: A's win rate minus B's per seed, in points. Tasks won by only one of the two, "
                  "summed over seeds, and the exact sign test on those counts."),
            ("table", ["A vs B", "A ahead", "gap per seed", "tasks", "won only by A", "won only by B", "sign test p"],
             paired),
        ]  # fmt: skip
    if by_group:
        blocks += [
            ("h", 2, "By task group, pooled over seeds (best iterations)"),
            ("table", ["group", *(labels[name] for name in methods)], by_group),
        ]
    return blocks


def _methods_section(config_path: Path) -> dict[str, Any]:
    if not config_path.is_file():
        return {}
    config = read_yaml_file(config_path) or {}
    methods = config.get("methods") if isinstance(config, dict) else None
    return methods if isinstance(methods, dict) else {}


def _mean_and_interval(values: Sequence[float]) -> dict[str, float] | None:
    """Mean win rate with its t interval, cut to [0, 1]: with few seeds the interval can reach past
    what a rate can be."""
    if not values:
        return None
    mean, low, high = mean_interval(values)
    return {"mean": mean, "low": max(0.0, low), "high": min(1.0, high)}


def _mean_cell(entry: dict[str, float] | None) -> str:
    if entry is None:
        return "–"
    return f"{100 * entry['mean']:.1f}% [{100 * entry['low']:.1f}, {100 * entry['high']:.1f}]"


def _seed_cell(method: dict[str, Any], seed: int) -> str:
    win = method["best_win_rate"].get(str(seed))
    return "–" if win is None else f"{100 * win:.1f}% ({method['best_iteration'][str(seed)]})"


def _group_cell(entry: dict[str, int] | None) -> str:
    return rate_cell(entry["won"], entry["tasks"]) if entry and entry["tasks"] else "–"
