"""The trajectory viewer: a static page that shows a run's trajectories task by task.

:func:`write_viewer` writes ``index.html`` with its script and style (``viewer_assets/``) and the
run's trajectories as JavaScript data files under ``data/``: an index of every task with each
method's outcome (what the lists and their filters need), and chunks of task details that the page
loads through ``<script>`` tags only when one of their tasks is opened (browsers refuse ``fetch()``
on ``file://`` pages). A run of 10,000 trajectories opens as fast as a small one, with no server.

Two lists:

- test tasks: the outcome of every evaluation (each method at each iteration; SFT-POS is
  iteration 0), filtered per evaluation ("won by EEF 2, lost by RFT x4 2"); a task shows the
  evaluations side by side.
- training tasks: the expert trajectories, and for each method and iteration the rollouts (from
  ``s0`` or a restored state of an expert trajectory), EEF's segment labels and recovery states
  recomputed from them as its label stage computed them, and the positive repository's solutions
  with each turn's trainable flag.

Text reaches the page only as DOM text (never parsed as HTML), and the data files hold JSON with
every ``<`` escaped, so no text of a trajectory can close a script or open a tag, wherever the
files are read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from eef.atomic import write_text_atomic
from eef.config import saved_config
from eef.errors import DataError
from eef.evaluate import best_iteration
from eef.methods import BENEFICIAL, HARMFUL, METHODS, Analysis, analyse_all
from eef.methods.accounting import episodes_by_start
from eef.methods.settings import EEFSection
from eef.solution_files import read_solutions
from eef.trajectory import Trajectory
from eef.trajectory_files import read_trajectories

ASSETS = ("index.html", "viewer.js", "viewer.css")
# A chunk stops growing past this many bytes of JSON, so opening a task loads about this much at
# most (a task larger than that alone gets a chunk of its own).
CHUNK_BYTES = 512 * 1024


@dataclass(frozen=True)
class Stage:
    """One method at one iteration and the directory of its artifacts (SFT-POS: iteration 0)."""

    method: str
    iteration: int
    path: Path

    def label(self, labels: Mapping[str, str]) -> str:
        """Its name in the page: the method's display name, then the iteration (none for SFT-POS)."""
        name = labels.get(self.method, self.method)
        return name if self.method == "sft_pos" else f"{name} {self.iteration}"


def write_viewer(run_dir: Path, out_dir: Path, labels: Mapping[str, str] | None = None) -> Path:
    """Write the viewer of a run into ``out_dir``; returns the path of its ``index.html``.

    Args:
        run_dir: a run directory (layout: :mod:`eef.pipeline`); what does not exist yet is left out.
        out_dir: where the page and its ``data/`` go (rewritten in place; stale data files removed).
        labels: display names of methods (``{"rft_k": "RFT x4"}``); a method without one shows its name.

    Raises:
        DataError: a missing run directory or a malformed trajectory file (file, line and field named).
    """
    run_dir, out_dir, labels = Path(run_dir), Path(out_dir), labels or {}
    if not run_dir.is_dir():
        raise DataError(run_dir, "no such run directory")
    config_path = run_dir / "config.yaml"
    config = saved_config(config_path) if config_path.is_file() else None
    m = config.methods.eef.m if config else EEFSection().m
    test_index, test_details = evaluation_section(evaluations(run_dir), labels)
    train_index, train_details = training_section(run_dir, m, labels)
    written = {
        "test": write_chunks(out_dir / "data", "test", test_index["tasks"], test_details),
        "train": write_chunks(out_dir / "data", "train", train_index["tasks"], train_details),
    }
    title = f"Trajectories of run {config.name if config else run_dir.name}"
    index = {"title": title, "test": test_index, "train": train_index}
    # the index last and the old chunks removed after it: a page opened meanwhile finds the chunks
    # its index names (chunk names carry their content's digest, so old and new never collide)
    write_text_atomic(out_dir / "data" / "index.js", data_script("index", to_json(index)))
    keep = {"index.js", *(f"{name}.js" for names in written.values() for name in names)}
    for stale in (out_dir / "data").glob("*.js"):
        if stale.name not in keep:
            stale.unlink()
    assets = resources.files("eef").joinpath("viewer_assets")
    for name in ASSETS:
        write_text_atomic(out_dir / name, assets.joinpath(name).read_text(encoding="utf-8"))
    return out_dir / "index.html"


# -- what the page shows ------------------------------------------------------------------------


def trajectory_view(t: Trajectory) -> dict[str, Any]:
    """A trajectory as the page draws it (the prompt, the same for every episode, is left out)."""
    return {
        "id": t.id,
        "source": t.provenance.source,
        "won": t.success,
        "reward": t.reward,
        "terminated": t.terminated,
        "start": t.provenance.start_step,
        "parent": t.provenance.parent_id,
        "first": t.first_observation,
        "turns": [{"text": turn.text, "obs": turn.observation, "trainable": turn.trainable} for turn in t.turns],
    }


def analysis_view(analysis: Analysis | None, num_turns: int) -> dict[str, Any]:
    """EEF's labels of an expert trajectory: each simulated state and whether the agent succeeded
    from it, the segment labels, each turn's segment label (None after the last simulated state:
    no segment ends there) and the recovery states; ``skipped`` when a state's replay diverged
    (such a trajectory is never labelled)."""
    if analysis is None:
        return {"skipped": True}
    segments: list[str | None] = [None] * num_turns
    for k, label in enumerate(analysis.labels):
        first, end = analysis.positions[k], analysis.positions[k + 1]
        segments[first:end] = [label] * (end - first)
    return {
        "states": [{"step": p, "won": won} for p, won in zip(analysis.positions, analysis.succ)],
        "labels": list(analysis.labels),
        "segments": segments,
        "recovery": list(analysis.recovery),
    }


def expert_analyses(
    experts: Sequence[Trajectory], rollouts: Iterable[Trajectory], m: int
) -> dict[str, Analysis | None]:
    """EEF's analysis of each expert trajectory that ``rollouts`` explored, from the same episodes
    its label stage used (the first from ``s0`` of the task, the last from each state); None for
    one skipped because a state's replay diverged."""
    from_s0, simulations = episodes_by_start(rollouts)
    explored = {parent for parent, _ in simulations}
    analysed, skipped = analyse_all([e for e in experts if e.id in explored], simulations, from_s0, m)
    return {analysis.expert_id: analysis for analysis, _ in analysed} | dict.fromkeys(skipped)


# -- test tasks -----------------------------------------------------------------------------------


def evaluations(run_dir: Path) -> list[tuple[Stage, list[Trajectory]]]:
    """Every evaluation's test trajectories: SFT-POS, then each method's iterations in report order."""
    stages = [Stage("sft_pos", 0, run_dir / "sft_pos"), *method_stages(run_dir)]
    return [
        (stage, read_trajectories(stage.path / "eval/trajectories.jsonl"))
        for stage in stages
        if (stage.path / "eval/trajectories.jsonl").is_file()
    ]


def evaluation_section(
    evals: Sequence[tuple[Stage, list[Trajectory]]], labels: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The test list (one column per evaluation, the best iteration of each method marked; a cell
    per task: won and reward, or None when not evaluated) and each task's trajectories by column."""
    best = best_stages(evals)
    by_task: dict[str, list[Trajectory | None]] = {}
    for column, (_, trajectories) in enumerate(evals):
        for t in trajectories:
            by_task.setdefault(t.task_id, [None] * len(evals))[column] = t
    columns = [{"label": stage.label(labels), "best": (stage.method, stage.iteration) in best} for stage, _ in evals]
    tasks = [
        {"id": task, "cells": [None if t is None else {"won": t.success, "reward": t.reward} for t in row]}
        for task, row in by_task.items()
    ]
    details = {
        task: {"evals": [None if t is None else trajectory_view(t) for t in row]} for task, row in by_task.items()
    }
    return {"columns": columns, "tasks": tasks}, details


def best_stages(evals: Sequence[tuple[Stage, list[Trajectory]]]) -> set[tuple[str, int]]:
    """``(method, iteration)`` of each method's best evaluation (win rate, then score, then the earliest)."""
    points: dict[str, dict[int, tuple[float, float]]] = {}
    for stage, trajectories in evals:
        n = len(trajectories) or 1
        points.setdefault(stage.method, {})[stage.iteration] = (
            sum(t.success for t in trajectories) / n,
            sum(t.reward for t in trajectories) / n,
        )
    return {(method, best_iteration(results)) for method, results in points.items()}


# -- training tasks -------------------------------------------------------------------------------


def method_stages(run_dir: Path) -> list[Stage]:
    """The ``<method>/iter-<k>`` directories, methods in the report's order, then by iteration."""
    found = [
        Stage(path.parent.name, int(path.name[5:]), path)
        for path in run_dir.glob("*/iter-*")
        if path.is_dir() and path.name[5:].isdigit()
    ]
    rank = {name: i for i, name in enumerate(METHODS)}
    return sorted(found, key=lambda s: (rank.get(s.method, len(METHODS)), s.method, s.iteration))


def training_section(run_dir: Path, m: int, labels: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The training list (one column per method and iteration; a cell per task: solved in the
    repository, and EEF's segment and recovery counts) and each task's expert trajectories with,
    per column, their labels, the rollouts and the solutions."""
    expert_path = run_dir / "expert/trajectories.jsonl"
    experts = read_trajectories(expert_path) if expert_path.is_file() else []
    stages = method_stages(run_dir)
    views = [stage_view(stage, experts, m) for stage in stages]
    experts_of: dict[str, list[Trajectory]] = {}
    for e in experts:
        experts_of.setdefault(e.task_id, []).append(e)
    tasks, details = [], {}
    for task in dict.fromkeys([*experts_of, *(task for view in views for task in view)]):
        own, per_stage = experts_of.get(task, []), [view.get(task) for view in views]
        tasks.append({"id": task, "experts": [e.success for e in own], "cells": [stage_cell(v) for v in per_stage]})
        details[task] = {"experts": [expert_view(e) for e in own], "stages": per_stage}
    columns = [{"label": stage.label(labels), "method": stage.method, "iteration": stage.iteration} for stage in stages]
    return {"columns": columns, "tasks": tasks}, details


def stage_view(stage: Stage, experts: Sequence[Trajectory], m: int) -> dict[str, dict[str, Any]]:
    """One method iteration's training data by task: EEF's analyses of the task's expert
    trajectories, the rollouts, the repository's solutions and whether there is one (``solved``:
    None for a method without a repository, such as ETO), the preference pairs (ETO) and the failed
    trajectories trained on (NAT)."""
    rollouts_path, repository_path = stage.path / "rollouts.jsonl", stage.path / "repository.jsonl"
    train_path = stage.path / "train.jsonl"
    # a run in progress may be appending an episode now
    rollouts = read_trajectories(rollouts_path, skip_torn_tail=True) if rollouts_path.is_file() else []
    solutions = read_solutions(repository_path) if repository_path.is_file() else []
    trained = read_trajectories(train_path) if train_path.is_file() else []
    analyses = expert_analyses(experts, rollouts, m)
    by_task: dict[str, dict[str, Any]] = {}

    def of(task: str) -> dict[str, Any]:
        empty: dict[str, Any] = {"analyses": {}, "rollouts": [], "solutions": [], "pairs": {}, "failures": []}
        return by_task.setdefault(task, empty | {"solved": None})

    for e in experts:
        if e.id in analyses:
            of(e.task_id)["analyses"][e.id] = analysis_view(analyses[e.id], len(e.turns))
    for t in rollouts:
        of(t.task_id)["rollouts"].append(trajectory_view(t))
    for s in solutions:
        of(s.trajectory.task_id)["solutions"].append(
            {
                "state": s.state_key,
                "kind": s.kind,
                "iteration": s.iteration,
                "actions": s.actions,
                "trajectory": trajectory_view(s.trajectory),
            }
        )
    for t in trained:
        pair = t.meta.get("pair")
        if isinstance(pair, int):  # written by pair_records: chosen, then rejected
            side = "chosen" if t.meta.get("preferred") else "rejected"
            shown = trajectory_view(t) | {"id": str(t.meta.get("from_id", t.id))}
            of(t.task_id)["pairs"].setdefault(str(pair), {})[side] = shown
        elif not t.success:  # a method that trains on failures (TrainsOnFailures)
            of(t.task_id)["failures"].append(trajectory_view(t))
    for view in by_task.values():
        view["pairs"] = [view["pairs"][k] for k in sorted(view["pairs"], key=int)]
        if repository_path.is_file():
            view["solved"] = bool(view["solutions"])
    return by_task


def stage_cell(view: dict[str, Any] | None) -> dict[str, Any] | None:
    """A training list cell: solved (None without a repository) and EEF's counts of segments by
    label and of recovery states over the task's expert trajectories."""
    if view is None:
        return None
    labelled = [a for a in view["analyses"].values() if not a.get("skipped")]
    return {
        "solved": view["solved"],
        "beneficial": sum(a["labels"].count(BENEFICIAL) for a in labelled),
        "harmful": sum(a["labels"].count(HARMFUL) for a in labelled),
        "recovery": sum(len(a["recovery"]) for a in labelled),
    }


def expert_view(expert: Trajectory) -> dict[str, Any]:
    """An expert trajectory with its teacher and role, and whether SFT-POS clones it (``D_e``)."""
    role = expert.meta.get("role")
    return trajectory_view(expert) | {
        "teacher": str(expert.meta.get("teacher", expert.provenance.source)),
        "role": role if isinstance(role, str) else None,
        "cloned": role == "clone" and expert.success,
    }


# -- files ----------------------------------------------------------------------------------------


def to_json(value: Any) -> str:
    """Compact JSON, ASCII only and with ``<`` escaped: inert inside any script or page."""
    return json.dumps(value, ensure_ascii=True, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")


def data_script(name: str, value_json: str) -> str:
    """A data file: it hands its value to the page's loader under its name."""
    return f"EEF_VIEWER.chunk({json.dumps(name)}, {value_json});\n"


def chunked(details: Mapping[str, Any], limit: int) -> list[list[tuple[str, str]]]:
    """Tasks in order, as ``(task, detail JSON)``, grouped so that each group's JSON stays within
    ``limit`` bytes (a task larger than that alone makes a group)."""
    groups: list[list[tuple[str, str]]] = []
    size = 0
    for task, detail in details.items():
        text = to_json(detail)
        if not groups or size + len(text) > limit:
            groups.append([])
            size = 0
        groups[-1].append((task, text))
        size += len(text)
    return groups


def write_chunks(data_dir: Path, kind: str, tasks: list[dict[str, Any]], details: Mapping[str, Any]) -> list[str]:
    """Write the details in chunks, record each task's chunk in its index entry, return the chunk names.

    A chunk's name carries a digest of its content: a page still showing an older index never
    mixes in a newer chunk, and a browser never reuses a cached file whose content changed.
    """
    chunk_of, names = {}, []
    for number, group in enumerate(chunked(details, CHUNK_BYTES)):
        body = "{" + ",".join(f"{to_json(task)}:{text}" for task, text in group) + "}"
        name = f"{kind}-{number}-{hashlib.sha256(body.encode()).hexdigest()[:12]}"
        write_text_atomic(data_dir / f"{name}.js", data_script(name, body))
        chunk_of.update(dict.fromkeys((task for task, _ in group), name))
        names.append(name)
    for task in tasks:
        task["chunk"] = chunk_of[task["id"]]
    return names
