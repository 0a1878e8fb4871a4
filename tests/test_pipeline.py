"""`eef run` end to end on a tiny configuration: artifacts, resume, kill -9, refusal of another config."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import yaml

from eef.agent import SamplingParams
from eef.config import DEFAULT_RUN_CONFIG, load_config
from eef.errors import EefError
from eef.pipeline import other_methods_rollouts, run, run_lock
from eef.rollout import RolloutConfig
from eef.trajectory_files import read_trajectories
from test_tracking import scalars

TINY = [
    "expert.limit=12",
    "eval.limit=8",
    "methods.iterations=1",
    "methods.run=[sft_pos, rft, eef]",
    "model.tiny.layers=1",
    "model.tiny.hidden_size=32",
    "model.tiny.heads=2",
    "model.tiny.intermediate_size=64",
    "model.tiny.vocab_size=600",
    "train.epochs=1",
    "rollout.max_new_tokens=16",
    "eval.max_new_tokens=16",
    "rollout.num_envs=8",
    "rollout.workers=2",
    "methods.eef.m=3",
    "methods.train_from=previous",
    "methods.iteration_epochs=2",
]


def _config(run_dir, *more):
    return load_config(DEFAULT_RUN_CONFIG, [*TINY, f"run_dir={run_dir}", *more])  # as `eef run -s ...` reads it


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("run") / "tiny"
    lines = []
    summary = run(_config(root, "tracking.report_to=[tensorboard]"), log=lines.append)
    return root, summary, lines


def test_a_run_writes_every_stage_and_the_report(finished):
    root, summary, lines = finished
    assert set(summary) == {"sft_pos", "rft", "eef"}
    for method in ("rft", "eef"):
        assert summary[method]["last"]["iteration"] == 1 and len(summary[method]["train_solved"]) == 1
    stages = [json.loads(line)["stage"] for line in (root / "metrics.jsonl").read_text().splitlines()]
    assert stages == ["expert", "train", "eval"] + ["explore", "label", "train", "eval"] * 2
    eef_explore = json.loads((root / "eef" / "iter-1" / "explore" / ".done").read_text())
    assert eef_explore["from_states"] > 0 and eef_explore["from_s0"] == 12
    rollouts = read_trajectories(root / "eef" / "iter-1" / "rollouts.jsonl")  # model calls: the agent's own turns
    assert eef_explore["model_calls"] == sum(len(t.turns) - t.provenance.start_step for t in rollouts) > 0
    assert (root / "config.yaml").is_file() and (root / "summary.json").is_file()
    assert (root / "report" / "report.md").is_file() and (root / "report" / "index.html").is_file()
    # the page links to the trajectory viewer written beside it
    assert '<a href="viewer/index.html">' in (root / "report" / "index.html").read_text()
    assert "[viewer/index.html](viewer/index.html)" in (root / "report" / "report.md").read_text()
    assert (root / "report" / "viewer" / "index.html").is_file()
    assert any(line.startswith("[eval eef 1] stage 11 of 11, ") for line in lines)
    experts = read_trajectories(root / "expert" / "trajectories.jsonl")
    sft_data = read_trajectories(root / "sft_pos" / "train.jsonl")
    assert len(experts) == 12 and [t.task_id for t in sft_data] == [t.task_id for t in experts if t.success]


def test_eef_copies_the_s0_episodes_rft_rolled_out_with_the_same_model(finished, tmp_path):
    root, _, _ = finished
    rft, eef = (json.loads((root / m / "iter-1" / "explore" / ".done").read_text()) for m in ("rft", "eef"))
    assert rft["reused"] == 0 and eef["reused"] == eef["from_s0"] == 12
    by_id = {t.id: t for t in read_trajectories(root / "rft" / "iter-1" / "rollouts.jsonl")}
    s0 = [t for t in read_trajectories(root / "eef" / "iter-1" / "rollouts.jsonl") if not t.provenance.parent_id]
    assert [t.turns for t in s0] == [by_id[t.id].turns for t in s0]
    # another model (a later iteration's checkpoint) or other sampling: nothing is copied
    config = RolloutConfig(SamplingParams(0.7, 1.0, 16), seed=0, iteration=1)
    model = s0[0].provenance.model
    assert set(other_methods_rollouts(root, ["rft", "eef"], "rft_k", 1, model, config)) >= {t.id for t in s0}
    for other_model, other_config in ((model + "-other", config), (model, replace(config, seed=1))):
        assert other_methods_rollouts(root, ["rft", "eef"], "rft_k", 1, other_model, other_config) == {}


def test_a_resumed_exploration_still_counts_the_episodes_it_copied(finished, tmp_path):
    import shutil

    from eef.envs.registry import make
    from eef.pipeline import RunDir, explore_stage
    from eef.trajectory_files import write_trajectories

    root, _, _ = finished
    copy = tmp_path / "run"
    for part in ("rft", "eef"):
        shutil.copytree(root / part / "iter-1", copy / part / "iter-1")
    stage = copy / "eef" / "iter-1"
    (stage / "explore" / ".done").unlink()
    saved = read_trajectories(stage / "rollouts.jsonl")
    write_trajectories(stage / "rollouts.jsonl", [t for t in saved if not t.provenance.parent_id])  # killed here
    config = _config(root)
    experts = read_trajectories(root / "expert" / "trajectories.jsonl")
    explore_stage(
        config,
        RunDir(copy, lambda line: None),
        make("shop", **config.env.options),
        (),
        stage,
        "eef",
        1,
        root / "sft_pos" / "checkpoint",
        experts,
    )
    assert json.loads((stage / "explore" / ".done").read_text())["reused"] == 12


def test_iterations_continue_the_previous_checkpoint_for_their_own_epochs(finished):
    root, _, _ = finished
    sft = json.loads((root / "sft_pos" / "checkpoint" / "eef_train.json").read_text())
    eef = json.loads((root / "eef" / "iter-1" / "checkpoint" / "eef_train.json").read_text())
    assert sft["config"]["epochs"] == 1 and eef["config"]["epochs"] == 2
    assert eef["base_model"] == str(root / "sft_pos" / "checkpoint")


def test_the_label_stage_counts_what_each_teacher_contributed(finished):
    root, _, _ = finished
    label = json.loads((root / "eef" / "iter-1" / "label" / ".done").read_text())
    by_source, by_teacher = label["solved_by_source"], label["solved_by_teacher"]
    assert by_teacher.get("scripted", 0) >= by_source["expert"] > 0
    assert sum(by_teacher.values()) == by_source["expert"] + by_source["eef"]
    assert label["flagged_experts"] == 0
    # ... and per task group (the shop's tiers), out of the training tasks of each group
    expert = json.loads((root / "expert" / ".done").read_text())
    assert sum(expert["tasks_by_group"].values()) == 12 and set(expert["tasks_by_group"]) <= {"easy", "medium", "hard"}
    assert sum(label["solved_by_group"].values()) == label["train_solved"]
    assert all(label["solved_by_group"][g] <= expert["tasks_by_group"][g] for g in label["solved_by_group"])


def test_tracking_receives_every_stage_figure_and_training_step(finished):
    root, summary, _ = finished
    stages = scalars(root / "tracking" / "default" / "stages")
    assert stages["eval/eef/win_rate"] == [(1, pytest.approx(summary["eef"]["last"]["test_win_rate"]))]
    assert [step for step, _ in stages["explore/rft/episodes"]] == [1]
    train = json.loads((root / "sft_pos" / "train" / ".done").read_text())
    assert len(scalars(root / "tracking" / "default" / "train-sft_pos-0")["loss"]) == train["steps"]


def test_each_start_records_what_the_run_ran_on(finished):
    root, _, _ = finished
    starts = json.loads((root / "run_facts.json").read_text())["starts"]
    report = (root / "report" / "report.md").read_text()
    assert starts and starts[0]["packages"]["torch"] and starts[0]["cpus"] and starts[0]["processes"] == 1
    assert (
        starts[0]["cpu_model"] and f"; {starts[0]['cpu_model']}, {starts[0]['cpus']} CPUs" in report
    )  # the machine row
    assert "| eef revision |" in report


def test_resume_repeats_no_finished_stage(finished):
    root, summary, _ = finished
    before = (root / "metrics.jsonl").read_text()
    lines = []
    assert run(_config(root), resume=True, log=lines.append) == summary
    assert (root / "metrics.jsonl").read_text() == before
    assert all(line.startswith("[report]") for line in lines)


def test_another_configuration_is_refused(finished):
    root, _, _ = finished
    with pytest.raises(EefError, match="differs from this configuration") as refused:
        run(_config(root, "train.epochs=2"), resume=True)
    epochs = _config(root).train.epochs
    assert f"(train.epochs: {epochs!r} -> 2.0)" in str(refused.value)  # the key the user changed, and nothing else
    with pytest.raises(EefError, match="pass --resume"):
        run(_config(root))


def test_one_run_directory_holds_one_process(finished):
    root, _, _ = finished
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\n"
            "from eef.pipeline import run_lock\n"
            "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(60)",
            str(root),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(EefError, match=f"is in use by another eef process \\(pid {holder.pid}\\)"):
            run(_config(root), resume=True)
    finally:
        holder.kill()
        holder.wait()
    assert run(_config(root), resume=True, log=lambda line: None)  # the kernel freed the lock of the killed holder


HOLDER_WITH_A_CHILD = """
import os, sys, time
from pathlib import Path
from eef.pipeline import run_lock
with run_lock(Path(sys.argv[1])):
    child = os.fork()  # as a rollout worker is: it shares the lock file's descriptor
    if child == 0:
        time.sleep(60)
        os._exit(0)
    print(child, flush=True)
    time.sleep(60)
"""


def test_a_killed_run_frees_its_directory_before_its_workers_end(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER_WITH_A_CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    child = int(holder.stdout.readline())
    try:
        holder.kill()
        holder.wait()
        os.kill(child, 0)  # the worker still lives
        with run_lock(tmp_path):  # and the directory is free
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_broken_run_directory_is_named_not_a_traceback(finished, tmp_path):
    import shutil

    root, _, _ = finished
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "config.yaml").write_text(yaml.safe_dump(_config(copy).as_dict(), sort_keys=False))
    marker = copy / "eef" / "iter-1" / "eval" / ".done"
    marker.write_text("")
    with pytest.raises(EefError, match=f"{marker}: not a stage marker eef wrote; delete it"):
        run(_config(copy), resume=True, log=lambda line: None)
    (copy / "config.yaml").write_text("seed: [0\n")
    with pytest.raises(EefError, match="config.yaml:2: not valid YAML"):
        run(_config(copy), resume=True)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(EefError, match="exists and is not a directory"):
        run(_config(a_file))


@pytest.mark.parametrize("key", ["expert.split", "eval.split"])
def test_an_unknown_split_is_refused_before_any_work(tmp_path, key):
    with pytest.raises(EefError, match=f"{key}: 'validation' is not a split of shop; known: test, dev, train"):
        run(_config(tmp_path / "run", f"{key}=validation"))
    assert not (tmp_path / "run").exists()


def test_worker_processes_need_an_environment_that_lives_in_this_process(tmp_path, monkeypatch):
    from eef import pipeline

    class Remote:  # stands for an environment that holds a JVM or a server connection
        name, process_local = "remote", False

    monkeypatch.setattr(pipeline, "make", lambda name, **options: Remote())
    with pytest.raises(EefError, match="rollout.workers: 2 worker processes need an environment that lives wholly"):
        run(_config(tmp_path / "remote"))
    assert not (tmp_path / "remote").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("ray.address=127.0.0.1:9", "ray.address"),  # the discard port: nothing listens there
        ("model.base_url=http://127.0.0.1:9/v1", "model.base_url"),
    ],
)
def test_a_cluster_or_server_that_cannot_serve_the_run_is_named_before_any_work(tmp_path, setting, key):
    pytest.importorskip("ray")
    settings = ["rollout.engine=ray", "rollout.workers=1", "ray.object_store_mb=80", setting]
    if key == "model.base_url":
        settings += ["model.backend=openai", "model.base=served-model"]
    try:
        with pytest.raises(EefError, match=rf"^{re.escape(key)}: "):
            run(_config(tmp_path / "run", *settings))
    finally:
        import ray

        ray.shutdown()
    assert not (tmp_path / "run").exists()


def test_kill_9_during_exploration_loses_no_finished_episode(finished, tmp_path):
    reference_root, reference, _ = finished
    root = tmp_path / "killed"
    args = [sys.executable, "-m", "eef.cli", "run"] + [a for item in [*TINY, f"run_dir={root}"] for a in ("-s", item)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rollouts = root / "rft" / "iter-1" / "rollouts.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (rollouts.is_file() and rollouts.stat().st_size > 0):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = {t.id for t in read_trajectories(rollouts, skip_torn_tail=True)}
    assert kept, "the run was killed before its first episode was saved"
    summary = run(_config(root), resume=True, log=lambda line: None)
    assert summary == reference  # the same seeds give the same run, interrupted or not
    ids = [t.id for t in read_trajectories(rollouts)]
    assert len(ids) == len(set(ids)) and kept <= set(ids)
    reference_ids = [t.id for t in read_trajectories(reference_root / "rft" / "iter-1" / "rollouts.jsonl")]
    assert sorted(ids) == sorted(reference_ids)


def test_experts_flagged_by_the_replay_check_are_never_explored(finished):
    from dataclasses import replace

    from eef.methods.registry import explored_experts

    root, _, _ = finished
    experts = read_trajectories(root / "expert" / "trajectories.jsonl")
    failed = [e for e in experts if not e.success]
    flagged = replace(failed[0], meta={**failed[0].meta, "replay": {"ok": False, "reason": "observation"}})
    config = _config(root)
    explored = explored_experts([flagged, *failed[1:]], config.methods)
    assert flagged.id not in {e.id for e in explored} and len(explored) == len(failed) - 1


def test_a_files_trajectories_of_other_tasks_are_counted_and_a_cut_file_named_before_any_model(finished, tmp_path):
    from eef.trajectory_files import write_trajectories

    root = finished[0]
    experts = read_trajectories(root / "expert/trajectories.jsonl")
    outside = [t for t in experts if t.task_id not in {e.task_id for e in experts[:5]}]
    path = tmp_path / "expert.jsonl"
    write_trajectories(path, experts)
    source = ["expert.sources=[{name: recorded, kind: file, path: " + str(path) + ", role: clone}]"]
    # the same file, fewer tasks: the trajectories of the other tasks are left out and counted
    lines = []
    run(_config(tmp_path / "fewer", *source, "expert.limit=5", "methods.run=[sft_pos]"), log=lines.append)
    (record,) = [r for r in _records(tmp_path / "fewer") if r["stage"] == "expert"]
    assert record["outside_tasks"] == {"recorded": len(outside)} and record["episodes"] == len(experts) - len(outside)

    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # the last line cut short
    with pytest.raises(EefError, match=rf"{path}:{len(experts)}:"):
        run(_config(tmp_path / "cut", *source), log=lines.append)
    assert not (tmp_path / "cut" / "base-model").exists()


def _records(root):
    return [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]


def test_the_scripted_experts_rates_from_the_config_reach_the_expert(tmp_path):
    from eef.envs.registry import make
    from eef.pipeline import expert_source

    env = make("shop")
    tasks = env.task_ids("train")[:60]
    (careless,) = load_config(
        None,
        ["expert.sources=[{kind: scripted, seed: 4, scripted: {wrong_option: [1.0, 1.0, 1.0], skip_option: 0.0}}]"],
    ).expert.sources
    (flawless,) = load_config(
        None,
        [
            "expert.sources=[{kind: scripted, seed: 4, scripted: {wrong_option: [0.0, 0.0, 0.0], "
            "skip_option: 0.0, decoy: [0.0, 0.0, 0.0]}}]"
        ],
    ).expert.sources
    with_options = [
        t
        for t in expert_source(careless, env, tasks, ())[0]
        if env.catalog.goals[env.catalog.goal_index(t.task_id)].options
    ]
    assert with_options and not any(t.success for t in with_options)  # every option set wrong
    assert all(t.provenance.sampling["seed"] == 4 for t in with_options)
    easy = [t for t in expert_source(flawless, env, tasks, ())[0] if t.meta["tier"] == "easy"]
    assert easy and all(t.success for t in easy)


def test_exploration_returns_episodes_in_start_order_whatever_the_file_order(finished, tmp_path):
    """Workers and resumes append episodes in the order they end; labelling must not see that order."""
    import shutil

    from eef.envs.registry import make
    from eef.pipeline import RunDir, explore_stage
    from eef.trajectory_files import write_trajectories

    root, _, _ = finished
    stage = tmp_path / "rft" / "iter-1"
    shutil.copytree(root / "rft" / "iter-1", stage)
    saved = read_trajectories(stage / "rollouts.jsonl")
    write_trajectories(stage / "rollouts.jsonl", saved[::-1])
    config = _config(root)
    experts = read_trajectories(root / "expert" / "trajectories.jsonl")
    returned = explore_stage(
        config,
        RunDir(tmp_path, lambda line: None),
        make("shop", **config.env.options),
        (),
        stage,
        "rft",
        1,
        root / "sft_pos" / "checkpoint",
        experts,
    )
    env = make("shop", **config.env.options)
    in_task_order = env.task_ids(config.expert.split)[: config.expert.limit]  # the starts' order (K = 1)
    assert [t.task_id for t in returned] == in_task_order
    assert sorted(t.id for t in returned) == sorted(t.id for t in saved)


def test_eto_pairs_the_agents_failures_with_expert_successes_and_trains_dpo(tmp_path):
    root = tmp_path / "eto"
    lines = []
    config = _config(root, "methods.run=[sft_pos, eto]", "methods.eto.learning_rate=[1e-3]")
    summary = run(config, log=lines.append)
    assert set(summary) == {"sft_pos", "eto"} and summary["eto"]["last"]["iteration"] == 1
    stages = [json.loads(line)["stage"] for line in (root / "metrics.jsonl").read_text().splitlines()]
    assert stages == ["expert", "train", "eval", "explore", "label", "train", "eval"]
    label = json.loads((root / "eto" / "iter-1" / "label" / ".done").read_text())
    assert label["pairs"] == label["agent_worse"] + label["agent_better"] > 0
    assert label["pairs"] + label["ties"] + label["no_expert"] == 12  # every s0 episode is accounted for
    train = json.loads((root / "eto" / "iter-1" / "train" / ".done").read_text())
    assert train["pairs"] == label["pairs"] and train["beta"] == 0.1 and train["learning_rate"] == 1e-3
    records = read_trajectories(root / "eto" / "iter-1" / "train.jsonl")
    assert len(records) == 2 * label["pairs"] and [r.meta["preferred"] for r in records[:2]] == [True, False]
    record = json.loads((root / "eto" / "iter-1" / "checkpoint" / "eef_train.json").read_text())
    assert record["dpo_beta"] == 0.1 and record["reference_model"] == str(root / "sft_pos" / "checkpoint")
    assert "Preference pairs (ETO)" in (root / "report" / "report.md").read_text()
    assert run(config, resume=True, log=lines.append) == summary  # nothing is redone
    assert len((root / "metrics.jsonl").read_text().splitlines()) == len(stages)


def test_eto_without_pairs_keeps_the_model_and_says_so(tmp_path):
    from eef.agent.card import AgentCard
    from eef.pipeline import RunDir, preference_train_stage

    start = tmp_path / "sft_pos" / "checkpoint"
    start.mkdir(parents=True)
    (start / "config.json").write_text("{}")
    stage = tmp_path / "eto" / "iter-1"
    stage.mkdir(parents=True)
    config = _config(tmp_path)
    preference_train_stage(config, RunDir(tmp_path, print), stage, "eto", 1, start, [], AgentCard("shop", (), {}))
    assert (stage / "checkpoint" / "config.json").read_text() == "{}"
    record = json.loads((stage / "train" / ".done").read_text())
    assert record["pairs"] == 0 and record["unchanged"] == "no preference pairs"


def test_nat_trains_on_the_experts_failures_under_a_note_that_they_failed(tmp_path):
    root = tmp_path / "nat"
    config = _config(root, "methods.run=[sft_pos, nat]", "methods.nat.negative_note=THIS FAILED.")
    summary = run(config, log=lambda line: None)
    assert set(summary) == {"sft_pos", "nat"}
    experts = read_trajectories(root / "expert" / "trajectories.jsonl")
    data = read_trajectories(root / "nat" / "iter-1" / "train.jsonl")
    marked = [t for t in data if t.id.endswith("#negative")]
    # every failed expert trajectory, once, all turns trained, its prompt saying it failed; the rest unmarked
    assert sorted(t.id for t in marked) == sorted(f"{e.id}#negative" for e in experts if not e.success)
    assert all(
        t.prompt[0].content.endswith("\n\nTHIS FAILED.") and all(turn.trainable for turn in t.turns) for t in marked
    )
    assert not any("THIS FAILED." in m.content for t in data if t not in marked for m in t.prompt)
    label = json.loads((root / "nat" / "iter-1" / "label" / ".done").read_text())
    assert label["failures"] == len(marked) > 0
    assert "| NAT | 1 |" in (root / "report" / "report.md").read_text()
