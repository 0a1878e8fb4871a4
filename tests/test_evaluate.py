"""Evaluation figures, tables and files, with scripted policies standing in for a model."""

import json

from eef.agent.policy import Completion, Policy
from eef.agent.prompt import build_prompt
from eef.evaluate import evaluate
from eef.experts.oracle import oracle_trajectories
from eef.rollout import LocalRollouts, clone_envs
from eef.trajectory_files import read_trajectories


class ReplayPolicy(Policy):
    """Test double: answers each conversation with the recorded turn of its task (by first observation)."""

    name = "replay"

    def __init__(self, trajectories):
        self.turns = {t.first_observation: [turn.text for turn in t.turns] for t in trajectories}

    def generate(self, requests, params):
        out = []
        for r in requests:
            first = next(m["content"] for m in r.messages if m["role"] == "user")
            done = sum(m["role"] == "assistant" for m in r.messages)
            out.append(Completion(self.turns[first][done] if first in self.turns else "Action: click[nothing]"))
        return out

    def close(self):
        pass


def test_oracle_answers_win_every_task_and_files_are_written(shop_env, tmp_path):
    tasks = shop_env.task_ids("test")[:8]
    prompt = build_prompt("shop")
    policy = ReplayPolicy(oracle_trajectories(shop_env, tasks, prompt))
    report = evaluate(LocalRollouts(clone_envs(shop_env, 3), policy), tasks, prompt, split="test", out_dir=tmp_path)
    assert (report.episodes, report.win_rate, report.score, report.truncated) == (8, 1.0, 1.0, 0)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["win_rate"] == 1.0 and [row["task_id"] for row in saved["tasks"]] == tasks
    # each task's group (the generated shop's difficulty tier) is kept for the report's breakdown
    tiers = [shop_env.catalog.goals[shop_env.catalog.goal_index(t)].tier for t in tasks]
    assert [row["group"] for row in saved["tasks"]] == tiers and set(tiers) <= {"easy", "medium", "hard"}
    lines = (tmp_path / "tasks.tsv").read_text().splitlines()
    assert len(lines) == 9 and [line.split("\t")[-1] for line in lines[1:]] == tiers
    assert [t.task_id for t in read_trajectories(tmp_path / "trajectories.jsonl")] == tasks


def test_an_agent_that_never_buys_scores_zero_and_is_cut_at_the_step_limit(shop_env):
    tasks = shop_env.task_ids("test")[:4]
    report = evaluate(LocalRollouts(clone_envs(shop_env, 2), ReplayPolicy([])), tasks, build_prompt("shop"))
    assert (report.win_rate, report.score, report.truncated) == (0.0, 0.0, 4)
    assert report.mean_steps == shop_env.max_steps


def test_a_rerun_after_a_crash_evaluates_only_the_missing_tasks(shop_env, tmp_path):
    from eef.trajectory_files import append_trajectories

    tasks = shop_env.task_ids("test")[:4]
    prompt = build_prompt("shop")
    oracle = oracle_trajectories(shop_env, tasks, prompt)
    evaluate(
        LocalRollouts(clone_envs(shop_env, 2), ReplayPolicy(oracle)), tasks[:2], prompt, out_dir=tmp_path / "before"
    )
    out = tmp_path / "after"
    append_trajectories(out / "episodes.partial.jsonl", read_trajectories(tmp_path / "before" / "trajectories.jsonl"))
    asked = []

    class Counting(ReplayPolicy):
        def generate(self, requests, params):
            asked.extend(next(m["content"] for m in r.messages if m["role"] == "user") for r in requests)
            return super().generate(requests, params)

    report = evaluate(LocalRollouts(clone_envs(shop_env, 2), Counting(oracle)), tasks, prompt, out_dir=out)
    assert report.episodes == 4 and report.win_rate == 1.0
    assert set(asked) == {t.first_observation for t in oracle[2:]}
    assert [t.task_id for t in read_trajectories(out / "trajectories.jsonl")] == tasks
    assert not (out / "episodes.partial.jsonl").exists()
