import re
from collections.abc import Sequence
from dataclasses import replace

import pytest

from eef.agent.parse import parse_turn
from eef.agent.prompt import build_prompt
from eef.envs import replay
from eef.envs.shop.catalog import Catalog
from eef.envs.shop.engine import ShopEnv
from eef.envs.shop.generated import TIERS
from eef.errors import EefError
from eef.experts.scripted_shop import KEY_CLICKS, ScriptedExpertConfig, scripted_trajectories, scripted_trajectory
from eef.trajectory import Trajectory

PROMPT = build_prompt("shop")
_ASIN = re.compile(r"\bB\d{4}\b")


def key_actions(trajectory: Trajectory) -> list[int]:
    """Indices of the navigation and recovery actions: ``Next >``, ``< Prev``, ``Back to Search``
    and every search after the first."""
    searches = [i for i, a in enumerate(trajectory.actions) if a.startswith("search[")]
    return sorted([i for i, a in enumerate(trajectory.actions) if a in KEY_CLICKS] + searches[1:])


def target_reached_at(env: ShopEnv, trajectory: Trajectory) -> int | None:
    """Index of the first key action (``Next >`` or a later search) that put the goal's target on
    the results page while the expert still had a step left, or None."""
    asin = env.catalog.goals[env.catalog.goal_index(trajectory.task_id)].asin
    turns = trajectory.turns
    return next(
        (
            i
            for i in key_actions(trajectory)
            if (turns[i].action == "click[Next >]" or turns[i].action.startswith("search["))
            and i + 1 < len(turns)
            and asin in _ASIN.findall(turns[i].observation)
        ),
        None,
    )


def tier_report(env: ShopEnv, trajectories: Sequence[Trajectory]) -> dict[str, dict[str, float]]:
    """Success and failure figures of shop trajectories per goal tier and for ``all``: episodes,
    successes, success_rate, failed, failed trajectories that contain a key action
    (``failed_with_key_action``) and failed trajectories whose key action brought the target onto
    the results page (``failed_reaching_target``)."""
    groups: dict[str, list[Trajectory]] = {tier: [] for tier in (*TIERS, "all")}
    for t in trajectories:
        groups[t.meta["tier"]].append(t)
        groups["all"].append(t)
    report = {}
    for tier, group in groups.items():
        failed = [t for t in group if not t.success]
        successes = len(group) - len(failed)
        report[tier] = {
            "episodes": len(group),
            "successes": successes,
            "success_rate": successes / len(group) if group else 0.0,
            "failed": len(failed),
            "failed_with_key_action": sum(bool(key_actions(t)) for t in failed),
            "failed_reaching_target": sum(target_reached_at(env, t) is not None for t in failed),
        }
    return report


@pytest.fixture(scope="module")
def train(shop_env):
    return scripted_trajectories(shop_env, shop_env.task_ids("train"), PROMPT)


def _tier(env, trajectory):
    return env.catalog.goals[env.catalog.goal_index(trajectory.task_id)].tier


def test_same_seed_same_trajectories_other_seed_other_trajectories(shop_env, train):
    tasks = shop_env.task_ids("train")[:100]
    again = scripted_trajectories(shop_env, tasks, PROMPT, seed=0)
    assert [t.to_dict() for t in again] == [t.to_dict() for t in train[:100]]
    other = scripted_trajectories(shop_env, tasks, PROMPT, seed=1)
    assert sum(a.actions != b.actions for a, b in zip(other, again)) > 10


def test_every_trajectory_replays_exactly_in_a_fresh_env(shop_env, train):
    env = shop_env.fork()
    for t in train:
        result = replay(env, t.task_id, t.actions, t.observations, expected_first=t.first_observation)
        assert result.ok, (t.task_id, result.divergence)
        assert result.last.reward == t.reward and result.last.terminated == t.terminated


def test_turns_parse_back_to_their_actions_and_records_are_complete(shop_env, train):
    for t in train:
        provenance = t.provenance
        assert (provenance.source, provenance.model, provenance.sampling["seed"]) == ("scripted", "scripted-shop-v1", 0)
        assert t.success == (t.terminated and t.reward >= 1.0) and t.reward == t.turns[-1].reward
        assert len(t.turns) <= shop_env.max_steps and (t.terminated or len(t.turns) == shop_env.max_steps)
        shown = t.first_observation
        for turn in t.turns:
            parsed = parse_turn(turn.text)
            assert parsed.action == turn.action and parsed.has_marker and parsed.thought and turn.trainable
            if turn.action.startswith("click["):  # written as the page shows it: click[B0042], click[Next >]
                assert turn.action[6:-1] in shown.split(" [SEP] "), (turn.action, shown)
            shown = turn.observation


def test_success_rates_per_tier_look_like_gpt4_on_webshop(shop_env, train):
    report = tier_report(shop_env, train)
    assert report["all"]["episodes"] == 800
    assert 0.35 <= report["all"]["success_rate"] <= 0.45
    assert report["easy"]["success_rate"] >= 0.70
    assert 0.30 <= report["medium"]["success_rate"] <= 0.50
    assert report["hard"]["success_rate"] <= 0.10
    assert sum(report[t]["successes"] for t in ("easy", "medium", "hard")) == report["all"]["successes"]


def test_failed_hard_trajectories_hold_the_key_actions_before_the_mistake(shop_env, train):
    env = shop_env.fork()
    failed = [t for t in train if not t.success and _tier(shop_env, t) == "hard"]
    report = tier_report(shop_env, train)["hard"]
    assert report["failed"] == len(failed) and report["failed_with_key_action"] >= 0.7 * len(failed)
    reaching = [(t, k) for t in failed if (k := target_reached_at(shop_env, t)) is not None]
    assert len(reaching) == report["failed_reaching_target"] >= 0.5 * len(failed)
    oracle_wins = 0
    for t, k in reaching:
        # Restored right after the key action, the target is on the page; the oracle buys it
        # without navigating (where steps remain): the expert's own continuation went wrong.
        assert t.actions[k] == "click[Next >]" or t.actions[k].startswith("search[")
        assert replay(env, t.task_id, t.actions[: k + 1], t.observations[: k + 1]).ok
        assert env.goal.asin in [p.asin for p in env._page_hits()]
        actions = [env.oracle_action()]
        while not (step := env.step(actions[-1])).done:
            actions.append(env.oracle_action())
        oracle_wins += step.reward == 1.0 and not any(a.startswith(("search[", "click[next")) for a in actions)
    assert oracle_wins >= 0.9 * len(reaching)
    assert sum(t.terminated for t, _ in reaching) >= 0.85 * len(reaching)  # a wrong purchase, not the step limit


def test_easy_failures_rarely_need_navigation(shop_env, train):
    easy_failed = [t for t in train if not t.success and _tier(shop_env, t) == "easy"]
    assert easy_failed and sum(bool(key_actions(t)) for t in easy_failed) <= 0.3 * len(easy_failed)


def test_only_the_generated_shop_with_tiers_is_accepted(shop_env):
    catalog = shop_env.catalog
    untiered = Catalog(catalog.products, [replace(g, tier=None) for g in catalog.goals], catalog.splits, catalog.prefix)
    with pytest.raises(EefError, match="tiered"):
        scripted_trajectory(ShopEnv(untiered), shop_env.task_ids("train")[0], PROMPT)


def test_the_first_query_is_the_instructions_words_at_each_tiers_rate(shop_env):
    from eef.envs.shop.generated import naive_query

    tasks = shop_env.task_ids("train")[:150]

    def first_queries(rates):
        played = scripted_trajectories(shop_env, tasks, PROMPT, ScriptedExpertConfig(naive_query=rates))
        goals = shop_env.catalog.goals
        return [
            (
                _tier(shop_env, t),
                t.actions[0] == f"search[{naive_query(goals[shop_env.catalog.goal_index(t.task_id)].instruction)}]",
            )
            for t in played
        ]

    always, never = first_queries((1.0, 1.0, 1.0)), first_queries((0.0, 0.0, 0.0))
    assert {tier for tier, _ in always} == {"easy", "medium", "hard"} and all(naive for _, naive in always)
    assert not any(naive for _, naive in never)
    only_hard = first_queries((0.0, 0.0, 1.0))
    assert all(naive == (tier == "hard") for tier, naive in only_hard)


def test_an_overlooked_target_is_found_again_after_paging(shop_env):
    tasks = shop_env.task_ids("train")[:150]
    careful = ScriptedExpertConfig(decoy=(0.0, 0.0, 0.0), wrong_option=(0.0, 0.0, 0.0), skip_option=0.0)
    paging = scripted_trajectories(shop_env, tasks, PROMPT, replace(careful, overlook=(1.0, 1.0, 0.0)))
    plain = scripted_trajectories(shop_env, tasks, PROMPT, careful)
    for t, p in zip(paging, plain):
        if _tier(shop_env, t) == "hard":
            assert t.actions == p.actions  # its rate is 0: not even a random draw
        else:
            assert t.actions[1:3] == ["click[Next >]", "click[< Prev]"] and t.actions[3:] == p.actions[1:]
            assert t.success and p.success


def test_an_overlook_pages_back_once_and_later_paging_is_the_experts_own(shop_env):
    import random

    from eef.experts.scripted_shop import ScriptedShopper

    env = shop_env.fork()
    goals = shop_env.catalog.goals
    task = next(t for t in shop_env.task_ids("train") if goals[shop_env.catalog.goal_index(t)].tier == "easy")
    observation = env.reset(task)
    shopper = ScriptedShopper(env, ScriptedExpertConfig(overlook=(1.0, 1.0, 1.0), prev_page=0.0), random.Random(0))
    actions = []
    for _ in range(3):  # search, overlook the target (Next >), page back (< Prev)
        actions.append(shopper.act(observation)[1])
        observation = env.step(actions[-1]).observation
    assert actions[1:] == ["click[Next >]", "click[< Prev]"]
    observation = env.step("click[Next >]").observation  # back on page 2, now for the expert's own reasons
    assert shopper.act(observation)[1] != "click[< Prev]"  # without dithering (prev_page 0) it never pages back
