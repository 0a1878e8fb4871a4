from dataclasses import replace

import pytest
from expert_files import eto_record, write_array

from eef.data.check import CheckSummary, check_trajectories, check_trajectory, restorable
from eef.data.importers import import_file


def _with_observation(run, step, text):
    turns = list(run.turns)
    turns[step] = replace(turns[step], observation=text)
    return replace(run, turns=tuple(turns))


def test_recorded_episodes_replay_faithfully(shop_env, expert_runs):
    for run in expert_runs:
        check = check_trajectory(shop_env, run)
        assert check.ok and check.replayed_reward == run.reward, check


def test_imported_eto_files_replay_faithfully(tmp_path, shop_env, expert_runs):
    imported = import_file(
        write_array(tmp_path / "f.json", [eto_record(r) for r in expert_runs]), "eto", shop_env
    ).trajectories
    assert all(check_trajectory(shop_env, t).ok for t in imported)  # the unrecorded last page is not compared


def test_a_changed_observation_is_flagged_at_its_step(shop_env, expert_runs):
    run = next(r for r in expert_runs if len(r.turns) >= 3)
    check = check_trajectory(shop_env, _with_observation(run, 1, "a page nobody saw"))
    assert (check.ok, check.reason, check.divergence_step) == (False, "observation", 1)
    assert check.expected == "a page nobody saw" and check.seen == run.turns[1].observation
    first = check_trajectory(shop_env, replace(run, first_observation="WebShop [SEP] elsewhere"))
    assert (first.reason, first.divergence_step) == ("observation", -1)


def test_a_different_reward_is_flagged(shop_env, expert_runs):
    failure = next(r for r in expert_runs if not r.success)
    check = check_trajectory(shop_env, replace(failure, reward=1.0, success=True))
    assert (check.ok, check.reason, check.recorded_reward, check.replayed_reward) == (
        False,
        "reward",
        1.0,
        failure.reward,
    )


def test_a_success_flag_that_contradicts_the_reward_is_flagged(shop_env, expert_runs):
    for run in (next(r for r in expert_runs if not r.success), next(r for r in expert_runs if r.success)):
        check = check_trajectory(shop_env, replace(run, success=not run.success))  # the reward as recorded
        assert (check.ok, check.reason, check.expected) == (False, "success", f"success {not run.success}")
        assert check.seen == f"success {run.success} (reward {run.reward:g})"


def test_an_episode_that_ends_before_the_record_is_flagged(shop_env, expert_runs):
    run = expert_runs[0]
    extra = replace(run.turns[-1], text="Action: click[back to search]", action="click[back to search]")
    check = check_trajectory(shop_env, replace(run, turns=run.turns + (extra,)))
    assert (check.ok, check.reason, check.divergence_step) == (False, "ended early", len(run.turns))


def test_wrong_environment_and_unknown_task_are_flagged(shop_env, expert_runs):
    assert check_trajectory(shop_env, replace(expert_runs[0], env="webshop")).reason == "env"
    check = check_trajectory(shop_env, replace(expert_runs[0], task_id="shop_99999"))
    assert check.reason == "task" and "shop_99999" in check.seen


def test_checked_copies_carry_the_flag_and_the_summary_counts(shop_env, expert_runs):
    runs = [expert_runs[0], _with_observation(expert_runs[1], 0, "x"), replace(expert_runs[2], reward=0.123)]
    summary = CheckSummary()
    checked = list(check_trajectories(shop_env, runs, summary))
    assert [t.meta["replay"]["ok"] for t in checked] == [True, False, False]
    assert [restorable(t) for t in checked] == [True, False, False] and restorable(expert_runs[3])
    assert summary.as_dict() == {
        "checked": 3,
        "ok": 1,
        "flagged": 2,
        "reasons": {"observation": 1, "reward": 1},
        "divergence_steps": {"0": 1},
    }


def test_webshop_records_resolve_and_replay_on_the_real_data(tmp_path, webshop_env):
    from expert_files import eef_expert_record

    from eef.agent import PromptConfig, build_prompt
    from eef.experts.oracle import oracle_trajectory

    prompt = build_prompt("webshop", PromptConfig(), webshop_env)
    runs = [oracle_trajectory(webshop_env, t, prompt) for t in webshop_env.task_ids("train")[:3]]
    records = [eto_record(runs[0]), eto_record(runs[1], record_id="page")]
    imported = import_file(write_array(tmp_path / "eto.json", records), "eto", webshop_env).trajectories
    assert [t.meta["import"]["resolved_by"] for t in imported] == ["session", "instruction"]
    lclan = import_file(
        write_array(tmp_path / "gpt4.json", [eef_expert_record(runs[2])]), "eef-expert", webshop_env
    ).trajectories
    assert [t.task_id for t in imported + lclan] == [r.task_id for r in runs]
    summary = CheckSummary()
    assert all(t.meta["replay"]["ok"] for t in check_trajectories(webshop_env, imported + lclan, summary))
    assert summary.ok == 3


def test_a_trajectory_without_turns_is_checked_not_crashed(shop_env, expert_runs):
    run = replace(expert_runs[0], turns=(), reward=1.0)
    assert check_trajectory(shop_env, replace(run, first_observation="elsewhere")).reason == "observation"
    assert check_trajectory(shop_env, run).reason == "reward"  # no action, so no reward to replay


def test_an_environment_failure_stops_the_check_instead_of_flagging(shop_env, expert_runs):
    from eef.errors import EefError

    class Broken:  # an environment whose simulator keeps failing (e.g. a JVM that dies every time)
        name = shop_env.name

        def reset(self, task_id):
            raise EefError("the JVM died 4 times in a row")

    with pytest.raises(EefError, match="died"):
        check_trajectory(Broken(), expert_runs[0])
