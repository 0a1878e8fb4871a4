"""Evaluation: greedy rollouts on a split, win rate, mean score, a per-task table, trajectories.

Win rate is the share of tasks whose final reward counts as success in the environment (WebShop:
reward 1.0); score is the mean final reward (an episode cut by the step limit scores 0). Both
are kept apart (docs/method.md, "What is measured").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eef.agent.policy import SamplingParams
from eef.atomic import write_text_atomic
from eef.envs.protocol import task_groups
from eef.errors import EefError
from eef.rollout import RolloutConfig, Rollouts, Start, pending
from eef.trajectory import Message, Trajectory
from eef.trajectory_files import append_trajectories, write_trajectories


@dataclass
class TaskResult:
    """One row of the per-task table."""

    task_id: str
    reward: float
    success: bool
    steps: int
    terminated: bool
    group: str | None = None  # the environment's task group (the shop's tier, ScienceWorld's task type)


@dataclass
class EvalReport:
    """Outcome of :func:`evaluate`.

    Attributes:
        env: the environment's name.
        split: the split evaluated (or ``custom``).
        model: the policy's name.
        episodes: tasks evaluated.
        win_rate: share of tasks solved.
        score: mean final reward.
        mean_steps: mean actions per episode.
        truncated: episodes that ran out of steps.
        seconds: wall time of the rollouts.
        tasks: the per-task table.
        env_incidents: what the environments counted during the rollouts (see
            :attr:`eef.rollout.RolloutResult.env_incidents`); empty when nothing happened.
    """

    env: str
    split: str
    model: str
    episodes: int
    win_rate: float
    score: float
    mean_steps: float
    truncated: int
    seconds: float
    tasks: list[TaskResult] = field(default_factory=list)
    env_incidents: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        """The figures without the per-task table."""
        return {k: v for k, v in asdict(self).items() if k != "tasks"}


def report_from(
    trajectories: Sequence[Trajectory],
    env: str,
    split: str,
    model: str,
    seconds: float,
    groups: Mapping[str, str | None] | None = None,
) -> EvalReport:
    """Tally trajectories (one per task) into an :class:`EvalReport`; ``groups`` maps task ids to
    their task group."""
    n, groups = len(trajectories), groups or {}
    rows = [
        TaskResult(t.task_id, t.reward, t.success, len(t.turns), t.terminated, groups.get(t.task_id))
        for t in trajectories
    ]
    return EvalReport(
        env=env,
        split=split,
        model=model,
        episodes=n,
        win_rate=sum(r.success for r in rows) / n if n else 0.0,
        score=sum(r.reward for r in rows) / n if n else 0.0,
        mean_steps=sum(r.steps for r in rows) / n if n else 0.0,
        truncated=sum(not r.terminated for r in rows),
        seconds=seconds,
        tasks=rows,
    )


def evaluate(
    rollouts: Rollouts,
    task_ids: Sequence[str],
    prompt: tuple[Message, ...],
    *,
    split: str = "custom",
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = False,
) -> EvalReport:
    """Episodes of ``task_ids`` rolled out by ``rollouts`` (greedy unless ``temperature`` > 0).

    With ``out_dir``, finished episodes are appended to ``out_dir/episodes.partial.jsonl`` as they
    end, and a rerun after a crash evaluates only the missing tasks; at the end
    ``trajectories.jsonl``, ``report.json`` (figures and per-task rows) and ``tasks.tsv`` are
    written atomically and the partial file is removed.
    """
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise EefError(f"{out_dir}: exists and is not a directory (the evaluation writes its files into one)")
    config = RolloutConfig(
        SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens), seed=seed, source="self"
    )
    starts = [Start(t) for t in task_ids]
    partial = Path(out_dir) / "episodes.partial.jsonl" if out_dir is not None else None
    done, todo = pending(partial, starts, config, model=rollouts.model) if partial else ([], starts)
    result = rollouts(
        todo,
        prompt,
        config,
        progress=progress,
        description=f"eval {split}",
        on_trajectory=(lambda t: append_trajectories(partial, [t])) if partial else None,
    )
    finished = {t.task_id: t for t in [*done, *result.trajectories]}
    trajectories = [finished[t] for t in task_ids]
    groups = task_groups(rollouts.env, task_ids)
    report = report_from(trajectories, rollouts.env.name, split, rollouts.model, result.seconds, groups)
    report.env_incidents = dict(result.env_incidents)
    if out_dir is not None and partial is not None:
        save_report(report, trajectories, Path(out_dir))
        partial.unlink(missing_ok=True)
    return report


def best_iteration(results: Mapping[int, tuple[float, float]]) -> int:
    """The iteration whose test results ``(win rate, score)`` are best: the highest win rate, then
    score, then the earliest.

    >>> best_iteration({1: (0.5, 0.7), 2: (0.6, 0.6), 3: (0.6, 0.6)})
    2
    """
    return max(results, key=lambda k: (*results[k], -k))


def save_report(report: EvalReport, trajectories: Sequence[Trajectory], out_dir: Path) -> None:
    """Write the trajectories, ``report.json`` and ``tasks.tsv`` of an evaluation."""
    write_trajectories(out_dir / "trajectories.jsonl", trajectories)
    write_text_atomic(out_dir / "report.json", json.dumps(asdict(report), indent=1) + "\n")
    lines = ["task_id\treward\tsuccess\tsteps\tterminated\tgroup"]
    lines += [
        f"{r.task_id}\t{r.reward:.4f}\t{int(r.success)}\t{r.steps}\t{int(r.terminated)}\t{r.group or ''}"
        for r in report.tasks
    ]
    write_text_atomic(out_dir / "tasks.tsv", "\n".join(lines) + "\n")
