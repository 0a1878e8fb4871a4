"""``eef run``: expert data -> SFT-POS -> iterations of explore, label, train, evaluate -> report.

Read top to bottom, :func:`run` is the whole experiment. Every stage writes its artifact under the
run directory and then a ``.done`` marker with its one-line metrics; a stage whose marker exists
is skipped, so ``eef run --resume`` after a crash (even ``kill -9``) repeats no finished stage.
Rollouts are appended episode by episode, so an interrupted exploration loses no finished
episode either. The resolved configuration is saved as ``config.yaml``; resuming with a
different configuration is refused.

Layout::

    runs/<name>/config.yaml, metrics.jsonl, summary.json, report/
    runs/<name>/base-model/                        the tiny default (when model.base is null)
    runs/<name>/expert/trajectories.jsonl          every expert trajectory, failures included
    runs/<name>/sft_pos/{train.jsonl,checkpoint,eval}
    runs/<name>/<method>/iter-<k>/{rollouts.jsonl,repository.jsonl,train.jsonl,checkpoint,eval}

A preference method (ETO) writes its pairs to ``train.jsonl`` (:mod:`eef.methods.preference`)
and no ``repository.jsonl``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from eef.agent import PromptConfig, SamplingParams, build_prompt
from eef.agent.card import AgentCard
from eef.atomic import write_text_atomic
from eef.config import ExpertSource, RunConfig, differences, saved_config
from eef.distributed import TrainingGroup
from eef.envs import make
from eef.envs.protocol import TextEnv, skipped_notes, task_groups
from eef.errors import EefError
from eef.evaluate import best_iteration
from eef.experts.registry import ExpertSettings, expert_trajectories
from eef.methods import PositiveRepository, expert_demonstrations
from eef.methods.accounting import solved_tasks
from eef.methods.preference import Pair, pair_records, pairs_of_records
from eef.methods.registry import Method, PreferenceMethod, TrainsOnFailures, s0_solutions
from eef.methods.registry import method as method_named
from eef.rollout import RolloutConfig, rollout_mismatch, trajectory_id
from eef.rollout.cluster import check_cluster
from eef.run_facts import record_start
from eef.solution_files import read_solutions, write_solutions
from eef.stages import Parallelism, evaluate_checkpoint, explore
from eef.tracking import Trackers, Tracking, check_trackers, open_trackers, record_values
from eef.trajectory import Message, Trajectory
from eef.trajectory_files import read_trajectories, write_trajectories


class RunDir:
    """The run directory: stage markers, the metrics log and the saved configuration; ``trainer``
    runs a training stage (on every process of the run)."""

    def __init__(
        self,
        root: Path,
        log: Callable[[str], None],
        trainer: TrainingGroup | None = None,
        tracking: Tracking | None = None,
        trackers: Trackers | None = None,
    ):
        self.root, self.log, self.trainer = root, log, trainer or TrainingGroup()
        self.tracking, self.trackers = tracking, trackers or Trackers([])
        self.plan: list[tuple[Any, ...]] = []  # every stage of the run in order, for "stage k of n"
        self.began = time.monotonic()

    def training_tracking(self, method: str, iteration: int) -> Tracking | None:
        """Where a training stage reports its steps (None when nothing is tracked)."""
        return self.tracking.for_part(f"train-{method}-{iteration}") if self.tracking else None

    def done(self, stage: Path) -> dict[str, Any] | None:
        """The metrics of a finished stage, or None.

        Raises:
            EefError: the marker is not one eef wrote (it writes markers whole, atomically).
        """
        marker = stage / ".done"
        if not marker.is_file():
            return None
        try:
            record = json.loads(marker.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError):
            record = None
        if not isinstance(record, dict):
            raise EefError(f"{marker}: not a stage marker eef wrote; delete it to run the stage again")
        return record

    def finish(self, stage: Path, record: dict[str, Any]) -> dict[str, Any]:
        """Mark a stage finished: its metrics go to ``metrics.jsonl`` and its marker."""
        with (self.root / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        write_text_atomic(stage / ".done", json.dumps(record) + "\n")
        self.trackers.log(record_values(record), step=record.get("iteration", 0))
        self.log(progress_line(record, self.plan, time.monotonic() - self.began))
        return record


def stage_plan(config: RunConfig) -> list[tuple[Any, ...]]:
    """The run's stages in order, as (stage, method, iteration)."""
    plan: list[tuple[Any, ...]] = [("expert", None, None), ("train", "sft_pos", 0), ("eval", "sft_pos", 0)]
    for method in (m for m in config.methods.run if m != "sft_pos"):
        for k in range(1, config.methods.iterations + 1):
            plan += [(stage, method, k) for stage in ("explore", "label", "train", "eval")]
    return plan


def progress_line(record: dict[str, Any], plan: list[tuple[Any, ...]], elapsed_s: float) -> str:
    """One readable line for a finished stage: where it is in the run, the run's time so far, its figures.

    >>> progress_line({"stage": "eval", "method": "eef", "iteration": 1, "win_rate": 0.6, "seconds": 3.25},
    ...               [("expert", None, None), ("eval", "eef", 1)], 754)
    '[eval eef 1] stage 2 of 2, 12:34 in: win_rate 0.6 (3.2 s)'
    """
    key = (record["stage"], record.get("method"), record.get("iteration"))
    where = " ".join(str(record[k]) for k in ("method", "iteration") if k in record)
    position = f"stage {plan.index(key) + 1} of {len(plan)}, " if key in plan else ""
    minutes, seconds = divmod(int(elapsed_s), 60)
    figures = ", ".join(
        f"{k} {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}"
        for k, v in record.items()
        if k not in ("stage", "method", "iteration", "seconds")
    )
    took = f" ({record['seconds']:.1f} s)" if isinstance(record.get("seconds"), (int, float)) else ""
    return f"[{record['stage']}{' ' + where if where else ''}] {position}{minutes}:{seconds:02d} in: {figures}{took}"


@contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold ``root/.lock`` for the block: one process per run directory. The kernel releases the
    lock when its process ends, however it ends, so a killed run never leaves a stale one.

    A POSIX record lock, not ``flock``: forked rollout workers do not inherit it, so a run killed
    with ``kill -9`` frees its directory at once, not when its last worker has died too.
    """
    if root.exists() and not root.is_dir():
        raise EefError(f"run_dir {root}: exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("a+") as handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EAGAIN):  # held by another process; anything else is a fault
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise EefError(
                f"{root} is in use by another eef process (pid {holder}); wait for it to end or stop it, then --resume"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def prepare_run_dir(config: RunConfig, root: Path, resume: bool) -> None:
    """Save the configuration in the run directory; refuse to mix configurations."""
    saved = root / "config.yaml"
    wanted = config.as_dict()
    if saved.is_file():
        if not resume:
            raise EefError(f"{root} already holds a run; pass --resume to continue it or choose another run_dir")
        before = saved_config(saved).as_dict()
        # where figures are sent changes no result
        changed = differences({**before, "tracking": None}, {**wanted, "tracking": None})
        if changed:
            raise EefError(
                f"{saved} differs from this configuration ({'; '.join(changed)}); --resume continues only "
                "the same configuration (start a new run_dir for a new one)"
            )
        return
    write_text_atomic(saved, yaml.safe_dump(wanted, sort_keys=False))


def run(config: RunConfig, *, resume: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage the configuration names; returns the summary (also ``summary.json``).

    Launched on several processes, the first runs the stages and the others join each training
    stage (:mod:`eef.distributed`); they return an empty summary.
    """
    from eef.models.loading import flush_denormals

    flush_denormals()  # first, so that every thread torch starts takes it
    group = TrainingGroup()
    if not group.main:
        with group:
            group.follow()
        return {}
    with group:
        root = run_root(config)
        check_processes(config, group.size)
        env = make(config.env.name, **config.env.options)
        check_against_env(config, env)
        if config.rollout.engine == "ray":  # the cluster and servers, before hours of training
            check_cluster(config.ray, config.model.backend, config.model.base_url)
        for note in skipped_notes(env):
            log(note)
        check_trackers(config.tracking.report_to)
        tracking = Tracking(config.tracking.report_to, str(root / "tracking"), config.name)
        with run_lock(root):
            prepare_run_dir(config, root, resume)
            record_start(root, group.size)
            with open_trackers(tracking) as trackers:
                rd = RunDir(root, log, group, tracking, trackers)
                rd.plan = stage_plan(config)
                return _run_stages(config, env, rd)


def run_root(config: RunConfig) -> Path:
    """The run directory: ``run_dir``, or ``runs/NAME``."""
    return Path(config.run_dir or f"runs/{config.name}")


def check_processes(config: RunConfig, processes: int) -> None:
    """What the configuration can only be checked against once the number of processes is known."""
    if processes > 1 and config.model.backend == "vllm":
        raise EefError(
            f"model.backend: vllm runs its engine inside this process, which cannot share a launch of "
            f"{processes} processes (the engine sets up a process group of its own); use model.backend: served "
            "(eef starts `vllm serve` for each checkpoint, on every GPU) or launch one process"
        )
    per_pass = config.train.micro_batch_rows * processes
    if config.train.rows_per_step % per_pass:
        raise EefError(
            f"train.rows_per_step: {config.train.rows_per_step} is not a multiple of train.micro_batch_rows x "
            f"processes ({config.train.micro_batch_rows} x {processes}); set train.micro_batch_rows to "
            f"{config.train.rows_per_step // processes} or a divisor of it"
        )


def check_against_env(config: RunConfig, env: TextEnv) -> None:
    """What the configuration can only be checked against once its environment exists."""
    if config.rollout.workers > 1 and not env.process_local:
        raise EefError(
            f"rollout.workers: {config.rollout.workers} worker processes need an environment that lives "
            f"wholly in this process; {env.name} does not (set rollout.workers: 1)"
        )
    for key, split in (("expert.split", config.expert.split), ("eval.split", config.eval.split)):
        if split not in env.splits():
            raise EefError(f"{key}: {split!r} is not a split of {env.name}; known: {', '.join(env.splits())}")
        if not env.task_ids(split):  # found here, not after the expert stage and SFT-POS's training
            raise EefError(f"{key}: the environment's {split!r} split has no tasks (env.options: {config.env.options})")


def _run_stages(config: RunConfig, env: TextEnv, rd: RunDir) -> dict[str, Any]:
    root = rd.root
    prompt = build_prompt(
        env.name, PromptConfig(config.prompt.instruction, config.prompt.one_shot, config.prompt.system_role), env
    )
    card = AgentCard(env.name, prompt, dict(config.env.options))
    experts = collect_experts(config, env, prompt, rd)  # first: a bad expert file is named before any model is built
    base = base_model(config, env, root)
    cloned = expert_demonstrations(t for t in experts if t.meta.get("role") == "clone")

    summary: dict[str, Any] = {}
    sft_pos = root / "sft_pos"
    train_stage(config, rd, sft_pos, "sft_pos", 0, base, cloned, card)
    summary["sft_pos"] = _summary_entry([evaluate_stage(config, rd, env, prompt, sft_pos, "sft_pos", 0)], [])
    for method in (m for m in config.methods.run if m != "sft_pos"):
        repository = PositiveRepository(config.methods.selection, config.seed)
        current, evals, solved = sft_pos / "checkpoint", [], []
        for iteration in range(1, config.methods.iterations + 1):
            stage = root / method / f"iter-{iteration}"
            rollouts = explore_stage(config, rd, env, prompt, stage, method, iteration, current, experts)
            kind = method_named(method)
            if isinstance(kind, PreferenceMethod):  # DPO from the model that explored, its own reference
                pairs, label = pair_stage(config, rd, stage, kind, method, iteration, rollouts, experts, cloned)
                preference_train_stage(config, rd, stage, method, iteration, current, pairs, card)
            else:
                data, label = label_stage(
                    config, rd, stage, kind, method, iteration, rollouts, experts, cloned, repository
                )
                start = base if config.methods.train_from == "base" else current
                train_stage(config, rd, stage, method, iteration, start, data, card)
            evals.append(evaluate_stage(config, rd, env, prompt, stage, method, iteration))
            solved.append(label["train_solved"])
            current = stage / "checkpoint"
        summary[method] = _summary_entry(evals, solved)
    write_text_atomic(root / "summary.json", json.dumps(summary, indent=1) + "\n")
    report_stage(rd)
    return summary


# -- stages -----------------------------------------------------------------------------------


def base_model(config: RunConfig, env: TextEnv, root: Path) -> str:
    """The model every method starts from: ``model.base`` or the tiny default, created once."""
    if config.model.base is not None:
        return config.model.base
    from eef.models.tiny import create_tiny_model

    path = root / "base-model"
    if not path.is_dir():
        tmp = root / ".base-model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        create_tiny_model(env, tmp, replace(config.model.tiny, seed=config.seed))
        tmp.rename(path)  # a crash mid-save leaves no half model behind
    return str(path)


def collect_experts(config: RunConfig, env: TextEnv, prompt: tuple[Message, ...], rd: RunDir) -> list[Trajectory]:
    """Every expert trajectory of the training split, failures included, with its source's role."""
    stage = rd.root / "expert"
    path = stage / "trajectories.jsonl"
    if rd.done(stage):
        return read_trajectories(path)
    began = time.perf_counter()
    tasks = env.task_ids(config.expert.split)[: config.expert.limit]
    experts: list[Trajectory] = []
    outside_tasks: dict[str, int] = {}
    groups = task_groups(env, tasks)
    for source in config.expert.sources:
        trajectories, outside_tasks[source.name] = expert_source(source, env, tasks, prompt)
        for t in trajectories:
            group = {"group": groups[t.task_id]} if t.task_id in groups else {}
            experts.append(
                replace(
                    t,
                    id=f"{source.name}/{t.task_id}/{t.id}",
                    meta={**t.meta, "role": source.role, "teacher": source.name, **group},
                )
            )
    write_trajectories(path, experts)
    by_tier: dict[str, dict[str, int]] = {}
    for t in experts:
        tier = by_tier.setdefault(str(t.meta.get("tier", "all")), {"episodes": 0, "successes": 0})
        tier["episodes"] += 1
        tier["successes"] += t.success
    rd.finish(
        stage,
        {
            "stage": "expert",
            "episodes": len(experts),
            "successes": sum(t.success for t in experts),
            "by_tier": by_tier,
            "tasks_by_group": dict(Counter(groups.values())),
            # a file's trajectories of tasks not among expert.split's (first expert.limit), left out
            **({"outside_tasks": outside_tasks} if any(outside_tasks.values()) else {}),
            "seconds": round(time.perf_counter() - began, 2),
        },
    )
    return experts


def expert_source(
    source: ExpertSource, env: TextEnv, tasks: list[str], prompt: tuple[Message, ...]
) -> tuple[list[Trajectory], int]:
    """The source's trajectories of ``tasks``, and how many of a file's it left out (other tasks)."""
    if source.kind == "file":
        if source.path is None:
            raise EefError(f"expert source {source.name!r}: kind file needs a path")
        recorded = read_trajectories(source.path)
        loaded = [t for t in recorded if t.task_id in set(tasks)]
        if any(t.env != env.name for t in loaded):
            raise EefError(f"{source.path}: trajectories of another environment than {env.name!r}")
        if not loaded:
            raise EefError(
                f"{source.path}: none of its {len(recorded)} trajectories is of a task of expert.split "
                f"(expert source {source.name!r})"
            )
        # imported files (ETO's, the EEF authors') hold no prompt of the run's kind: the demonstrations
        # are trained under the prompt the agent is run with; a file's own prompt is kept
        return [t if t.prompt else replace(t, prompt=prompt) for t in loaded], len(recorded) - len(loaded)
    settings = ExpertSettings(seed=source.seed, scripted=source.scripted)
    return expert_trajectories(source.kind, env, tasks, prompt, settings), 0


def explore_stage(
    config: RunConfig,
    rd: RunDir,
    env: TextEnv,
    prompt: tuple[Message, ...],
    stage: Path,
    method: str,
    iteration: int,
    model: Path,
    experts: list[Trajectory],
) -> list[Trajectory]:
    """Roll out the current model from the method's starts (:mod:`eef.methods.registry`): s0 of
    every training task (K times for RFT xK) and, for EEF, the states of the explored experts."""
    path = stage / "rollouts.jsonl"
    began = time.perf_counter()
    tasks = env.task_ids(config.expert.split)[: config.expert.limit]
    starts = method_named(method).starts(tasks, experts, config.methods)
    rollout_config = RolloutConfig(
        SamplingParams(config.rollout.temperature, config.rollout.top_p, config.rollout.max_new_tokens),
        seed=config.seed,
        source="self",
        iteration=iteration,
    )
    rank = {trajectory_id(rollout_config, s): n for n, s in enumerate(starts)}

    def in_start_order() -> list[Trajectory]:
        # the file holds episodes in the order they ended (workers interleave, a resume appends):
        # what is labelled and trained must not depend on that
        return sorted(read_trajectories(path, skip_torn_tail=True), key=lambda t: rank[t.id])

    if rd.done(stage / "explore"):
        return in_start_order()
    others = other_methods_rollouts(rd.root, config.methods.run, method, iteration, str(model), rollout_config)
    result = explore(
        env,
        config.env.options,
        config.model,
        model,
        starts,
        prompt,
        rollout_config,
        path,
        _parallelism(config),
        description=f"explore {method} {iteration}",
        reuse=others,
    )
    trajectories = in_start_order()
    reused = sum(t.id in others for t in trajectories)  # also those copied before an interruption
    from_states = [t for t in trajectories if t.provenance.parent_id]
    rd.finish(
        stage / "explore",
        {
            "stage": "explore",
            "method": method,
            "iteration": iteration,
            "episodes": len(trajectories),
            "from_s0": len(trajectories) - len(from_states),
            "from_states": len(from_states),
            # the budget methods are compared at: one model call per agent turn (replayed expert turns are none)
            "model_calls": sum(len(t.turns) - t.provenance.start_step for t in trajectories),
            "reused": reused,
            **_incident_record(result.env_incidents),
            "successes": sum(t.success for t in trajectories),
            # whether the expert's states help: EEF needs its restored starts to succeed where s0 does not
            "successes_from_states": sum(t.success for t in from_states),
            "replays": len(from_states) + len(result.diverged),
            "diverged": len(result.diverged),
            "seconds": round(time.perf_counter() - began, 2),
        },
    )
    return trajectories


def other_methods_rollouts(
    root: Path, methods: Sequence[str], method: str, iteration: int, model: str, config: RolloutConfig
) -> dict[str, Trajectory]:
    """The episodes other methods of this run rolled out in this iteration with the same model and
    sampling, by id: this method would sample the same ones, so it copies them instead.

    Sampling seeds depend only on (seed, iteration, start, step), so such an episode is the one
    this method would sample: in the first iteration RFT, RFT xK and EEF all roll out SFT-POS once
    from every ``s0``, and only one of them needs to.
    """
    found: dict[str, Trajectory] = {}
    for other in methods:
        other_path = root / other / f"iter-{iteration}" / "rollouts.jsonl"
        if other == method or not other_path.exists():
            continue
        found.update(
            (t.id, t)
            for t in read_trajectories(other_path, skip_torn_tail=True)
            if rollout_mismatch(t, config, model) is None
        )
    return found


def label_stage(
    config: RunConfig,
    rd: RunDir,
    stage: Path,
    kind: Method,
    method: str,
    iteration: int,
    rollouts: list[Trajectory],
    experts: list[Trajectory],
    cloned: list[Trajectory],
    repository: PositiveRepository,
) -> tuple[list[Trajectory], dict[str, Any]]:
    """Turn rollouts into solutions, keep one per important state, write the training set."""
    repository_path, train_path = stage / "repository.jsonl", stage / "train.jsonl"
    done = rd.done(stage / "label")
    if done:
        repository.solutions = {s.state_key: s for s in read_solutions(repository_path)}
        return read_trajectories(train_path), done
    began = time.perf_counter()
    candidates, found = kind.label(rollouts, experts, iteration, config.methods)
    counts = {"beneficial": 0, "harmful": 0, "neutral": 0, "recovery_states": 0, "skipped_experts": 0, **found}
    repository.add(candidates)
    write_solutions(repository_path, repository.solutions.values())
    failures = kind.failures(rollouts, experts, config.methods) if isinstance(kind, TrainsOnFailures) else []
    if failures:
        counts["failures"] = len(failures)
    data = cloned + repository.trajectories() + failures
    write_trajectories(train_path, data)
    solutions = list(repository.solutions.values())
    record = {
        "stage": "label",
        "method": method,
        "iteration": iteration,
        **counts,
        "important_states": len({t.task_id for t in rollouts}) + counts["recovery_states"],
        "repository": len(solutions),
        **solved_tasks(cloned, solutions, experts),
        "seconds": round(time.perf_counter() - began, 2),
    }
    return data, rd.finish(stage / "label", record)


def pair_stage(
    config: RunConfig,
    rd: RunDir,
    stage: Path,
    kind: PreferenceMethod,
    method: str,
    iteration: int,
    rollouts: list[Trajectory],
    experts: list[Trajectory],
    cloned: list[Trajectory],
) -> tuple[list[Pair], dict[str, Any]]:
    """Pair the iteration's episodes with the expert successes and write the pairs."""
    train_path = stage / "train.jsonl"
    done = rd.done(stage / "label")
    if done:
        return pairs_of_records(read_trajectories(train_path), str(train_path)), done
    began = time.perf_counter()
    pairs, counts = kind.pairs(rollouts, cloned, iteration, config.methods)
    write_trajectories(train_path, pair_records(pairs))
    record = {
        "stage": "label",
        "method": method,
        "iteration": iteration,
        **counts,
        **solved_tasks(cloned, s0_solutions(rollouts, iteration), experts),
        "seconds": round(time.perf_counter() - began, 2),
    }
    return pairs, rd.finish(stage / "label", record)


def preference_train_stage(
    config: RunConfig,
    rd: RunDir,
    stage: Path,
    method: str,
    iteration: int,
    start: Path,
    pairs: list[Pair],
    card: AgentCard,
) -> None:
    """DPO of ``start`` (also the reference) on ``pairs`` into ``stage/checkpoint``, with
    ``methods.eto``'s beta, learning rate, epochs and warm-up for this iteration. Without pairs the
    model stays as it is: the checkpoint is a link to ``start``, and the record says so."""
    if rd.done(stage / "train"):
        return
    began = time.perf_counter()
    eto = config.methods.eto
    beta, learning_rate = eto.for_iteration(iteration)
    record: dict[str, Any] = {"stage": "train", "method": method, "iteration": iteration, "pairs": len(pairs)}
    if not pairs:
        link = stage / "checkpoint"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(start, stage), target_is_directory=True)
        rd.finish(stage / "train", {**record, "unchanged": "no preference pairs", "seconds": 0.0})
        return
    train_config = replace(
        config.train,
        epochs=eto.epochs,
        learning_rate=learning_rate,
        warmup_ratio=eto.warmup_ratio,
        decay_ratio=0.0,  # ETO's constant rate after the warm-up
        seed=config.seed + iteration,
    )
    result, stats = rd.trainer.train(
        objective="dpo",
        start=start,
        pairs=pairs,
        out=stage / "checkpoint",
        config=train_config,
        beta=beta,
        device=config.model.device,
        dtype=config.model.dtype,
        card=card,
        metadata={"base_model": str(start), "reference_model": str(start), "method": method, "iteration": iteration},
        tracking=rd.training_tracking(method, iteration),
    )
    rd.finish(
        stage / "train",
        {
            **record,
            "examples": stats.examples,
            "truncated": stats.truncated,
            "dropped": stats.dropped,
            "beta": beta,
            "learning_rate": learning_rate,
            "trained_tokens": result.trained_tokens,
            "final_loss": _recorded_loss(result.losses[-1]),
            "steps": result.steps,
            "seconds": round(time.perf_counter() - began, 2),
        },
    )


def train_stage(
    config: RunConfig,
    rd: RunDir,
    stage: Path,
    method: str,
    iteration: int,
    start: str | Path,
    data: list[Trajectory],
    card: AgentCard,
) -> None:
    """Masked SFT of ``start`` on ``data`` into ``stage/checkpoint``, which records ``card``."""
    if rd.done(stage / "train"):
        return
    began = time.perf_counter()
    if method == "sft_pos":
        write_trajectories(stage / "train.jsonl", data)
    epochs = config.train.epochs if method == "sft_pos" else config.methods.iteration_epochs or config.train.epochs
    train_config = replace(config.train, epochs=epochs, seed=config.seed + iteration)
    result, stats = rd.trainer.train(
        start=start,
        data=data,
        out=stage / "checkpoint",
        config=train_config,
        device=config.model.device,
        dtype=config.model.dtype,
        card=card,
        metadata={"base_model": str(start), "method": method, "iteration": iteration},
        tracking=rd.training_tracking(method, iteration),
    )
    rd.finish(
        stage / "train",
        {
            "stage": "train",
            "method": method,
            "iteration": iteration,
            "examples": stats.examples,
            "truncated": stats.truncated,
            "dropped": stats.dropped,
            "trained_tokens": result.trained_tokens,
            "final_loss": _recorded_loss(result.losses[-1]),
            "steps": result.steps,
            "seconds": round(time.perf_counter() - began, 2),
        },
    )


def evaluate_stage(
    config: RunConfig, rd: RunDir, env: TextEnv, prompt: tuple[Message, ...], stage: Path, method: str, iteration: int
) -> dict[str, Any]:
    """Greedy evaluation of ``stage/checkpoint`` on the test split."""
    done = rd.done(stage / "eval")
    if done:
        return done
    from eef.report import navigation_shares

    began = time.perf_counter()
    tasks = env.task_ids(config.eval.split)[: config.eval.limit]
    report = evaluate_checkpoint(
        env,
        config.env.options,
        config.model,
        stage / "checkpoint",
        tasks,
        prompt,
        stage / "eval",
        _parallelism(config),
        split=config.eval.split,
        max_new_tokens=config.eval.max_new_tokens,
        temperature=config.eval.temperature,
        seed=config.seed,
    )
    trajectories = read_trajectories(stage / "eval" / "trajectories.jsonl")
    return rd.finish(
        stage / "eval",
        {
            "stage": "eval",
            "method": method,
            "iteration": iteration,
            "win_rate": report.win_rate,
            "episodes": report.episodes,
            "score": round(report.score, 4),
            "navigation": navigation_shares(trajectories),
            **_incident_record(report.env_incidents),
            "seconds": round(time.perf_counter() - began, 2),
        },
    )


def _incident_record(incidents: dict[str, int]) -> dict[str, Any]:
    """The stage's environment incidents (see ``RolloutResult.env_incidents``), when there were any."""
    return {"env_incidents": dict(incidents)} if incidents else {}


def report_stage(rd: RunDir) -> None:
    """Write ``report/`` from the artifacts (always rewritten: it reads only files)."""
    from eef.report import write_report

    path = write_report(rd.root)
    rd.log(f"[report] {path / 'index.html'} (and report.md)")


def _parallelism(config: RunConfig) -> Parallelism:
    ray = config.ray if config.rollout.engine == "ray" else None
    return Parallelism(config.rollout.num_envs, config.rollout.workers, config.rollout.worker_timeout_s, ray)


def _summary_entry(evals: list[dict[str, Any]], solved: list[int]) -> dict[str, Any]:
    iterations = [
        {"iteration": e["iteration"], "test_win_rate": e["win_rate"], "test_score": e["score"]} for e in evals
    ]
    best = best_iteration({r["iteration"]: (r["test_win_rate"], r["test_score"]) for r in iterations})
    return {
        "iterations": iterations,
        "best": next(r for r in iterations if r["iteration"] == best),
        "last": iterations[-1],
        "train_solved": solved,
    }


def _recorded_loss(loss: float) -> float | None:
    """A training's last loss as metrics.jsonl records it: null where training diverged (NaN or
    infinite is not standard JSON, and the report must still read the run)."""
    return round(loss, 4) if math.isfinite(loss) else None
