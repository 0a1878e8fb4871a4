"""From the EEF authors' files to a run (docs/data.md, "From data to run"): two teachers' WebShop
dumps in the set's format -> `eef data import` -> `eef data check` -> a run configuration with both
teachers (GPT-4 cloned and explored, GPT-3.5 explored only) -> a tiny `eef run`."""

import json

import pytest
import yaml
from webshop_teachers import TEACHERS, write_teacher_files

from cli_helpers import cli_ok
from eef.config import load_config
from eef.pipeline import run
from eef.trajectory_files import read_trajectories

pytestmark = pytest.mark.slow
TASKS = 4

TINY = {
    "model": {
        "base": None,
        "tiny": {
            "layers": 1,
            "hidden_size": 32,
            "heads": 2,
            "intermediate_size": 64,
            "vocab_size": 600,
            "corpus_tasks": 20,
        },
    },
    "train": {"epochs": 1, "learning_rate": 3.0e-3},
    "rollout": {"num_envs": 8, "workers": 2, "max_new_tokens": 12},
    "eval": {"split": "test", "limit": 2, "max_new_tokens": 12},
    "methods": {
        "run": ["sft_pos", "eef"],
        "iterations": 1,
        "train_from": "previous",
        "iteration_epochs": 1,
        "eef": {"m": 2},
    },
}


@pytest.fixture(scope="module")
def two_teachers(tmp_path_factory, webshop_1k_dir):
    from eef.envs import make

    root = tmp_path_factory.mktemp("data-to-run")
    env = make("webshop", data_dir=str(webshop_1k_dir))
    tasks = env.task_ids("train")[:TASKS]
    played = write_teacher_files(env, root / "eef-expert", tasks, seed=3)  # each teacher succeeds and fails
    option = ["-o", f"data_dir={webshop_1k_dir}"]
    checked = {}
    for (file_name, _, _), teacher in zip(TEACHERS, ("gpt-4", "gpt-3.5")):
        out = root / "experts" / f"{teacher}.jsonl"
        output = cli_ok(
            [
                "data",
                "import",
                str(root / "eef-expert" / file_name),
                "--format",
                "eef-expert",
                "--env",
                "webshop",
                "--out",
                str(out),
                *option,
            ]
        )
        successes = sum(r.success for r in played[file_name])
        assert f"imported {TASKS} trajectories ({successes} successes) -> {out}; 0 unresolved" in output
        output = cli_ok(["data", "check", "webshop", str(out), *option])
        checked[teacher] = out.with_suffix(".checked.jsonl")
        assert (
            f"checked {TASKS} trajectories: {TASKS} replay faithfully, 0 flagged (none) -> {checked[teacher]}" in output
        )
    config = {
        "name": "two-teachers",
        "env": {"name": "webshop", "options": {"data_dir": str(webshop_1k_dir)}},
        "expert": {
            "sources": [
                {"name": "gpt-4", "kind": "file", "path": str(checked["gpt-4"]), "role": "clone"},
                {"name": "gpt-3.5", "kind": "file", "path": str(checked["gpt-3.5"]), "role": "explore"},
            ],
            "split": "train",
            "limit": TASKS,
        },
        **TINY,
    }
    (root / "run.yaml").write_text(yaml.safe_dump(config))
    run_dir = root / "run"
    run(load_config(root / "run.yaml", [f"run_dir={run_dir}"]), log=lambda line: None)  # what `eef run` calls
    return run_dir, played


def test_both_teachers_enter_the_run_in_their_roles(two_teachers):
    run_dir, played = two_teachers
    gpt4, gpt35 = (played[name] for name, _, _ in TEACHERS)
    assert any(r.success for r in gpt35) and any(not r.success for r in gpt4)  # each role has work to show

    experts = read_trajectories(run_dir / "expert" / "trajectories.jsonl")
    teacher_of = {t.id: t.meta["teacher"] for t in experts}
    assert [(t.meta["teacher"], t.meta["role"]) for t in experts] == [("gpt-4", "clone")] * TASKS + [
        ("gpt-3.5", "explore")
    ] * TASKS
    assert all(t.meta["replay"]["ok"] for t in experts)

    # cloned: GPT-4's successes only, none of GPT-3.5's
    cloned = read_trajectories(run_dir / "sft_pos" / "train.jsonl")
    assert [t.task_id for t in cloned] == [r.task_id for r in gpt4 if r.success]
    assert {teacher_of[t.id] for t in cloned} == {"gpt-4"}
    # trained under the prompt the agent is evaluated with (the authors' files hold none of eef's kind)
    prompt = json.loads((run_dir / "sft_pos" / "checkpoint" / "eef_train.json").read_text())["agent"]["prompt"]
    assert all([{"role": m.role, "content": m.content} for m in t.prompt] == prompt for t in cloned)

    # explored: GPT-4's failures and every GPT-3.5 trajectory, successes included
    rollouts = read_trajectories(run_dir / "eef" / "iter-1" / "rollouts.jsonl")
    parents = {t.provenance.parent_id for t in rollouts if t.provenance.parent_id}
    explored = {e.id for e in experts if e.id in parents}
    assert explored == {e.id for e in experts if e.meta["role"] == "explore" or not e.success}

    label = json.loads((run_dir / "eef" / "iter-1" / "label" / ".done").read_text())
    gpt4_successes = sum(r.success for r in gpt4)
    assert label["solved_by_source"]["expert"] == gpt4_successes
    assert label["solved_by_teacher"].get("gpt-4", 0) >= gpt4_successes
    assert label["solved_by_teacher"].get("gpt-3.5", 0) == label["solved_by_source"]["eef"] - (
        label["solved_by_teacher"].get("gpt-4", 0) - gpt4_successes
    )
    assert label["flagged_experts"] == 0 and label["skipped_experts"] == 0
