"""The program-expert registry: one table for `eef run`'s expert sources and `eef expert`."""

import pytest

from eef.agent.prompt import build_prompt
from eef.errors import UnknownNameError
from eef.experts import registry
from eef.experts.oracle import oracle_trajectory
from eef.experts.registry import ExpertSettings, expert_names, expert_program, expert_trajectories, register_expert
from eef.experts.scripted_shop import ScriptedExpertConfig, scripted_trajectory
from eef.trajectory import Provenance, Trajectory

PROMPT = build_prompt("shop")
RATES = ScriptedExpertConfig(naive_query=(0.5, 0.5, 0.7), decoy=(0.25, 0.6, 0.3), wrong_option=(0.2, 0.22, 0.65))


def _dicts(trajectories):
    return [t.to_dict() for t in trajectories]


@pytest.mark.parametrize("settings", [ExpertSettings(), ExpertSettings(seed=3, scripted=RATES)])
def test_scripted_expert_plays_as_the_scripted_shopper_with_the_goals_tier(shop_env, settings):
    tasks = shop_env.task_ids("train")[:60]
    played = expert_trajectories("scripted", shop_env, tasks, PROMPT, settings)
    direct = [
        scripted_trajectory(shop_env, t, PROMPT, settings.scripted or ScriptedExpertConfig(), settings.seed)
        for t in tasks
    ]
    assert _dicts(played) == _dicts(direct)
    catalog = shop_env.catalog
    assert [t.meta for t in played] == [{"tier": catalog.goals[catalog.goal_index(t)].tier} for t in tasks]
    assert {t.meta["tier"] for t in played} == {"easy", "medium", "hard"}
    assert all(t.provenance.sampling["seed"] == settings.seed for t in played)


def test_per_task_and_batch_paths_give_the_same_trajectories(shop_env):
    tasks = shop_env.task_ids("dev")[:30]
    for name in ("oracle", "scripted"):
        settings = ExpertSettings(seed=2)
        play = expert_program(name, settings)
        assert _dicts(play(shop_env, t, PROMPT) for t in tasks) == _dicts(
            expert_trajectories(name, shop_env, tasks, PROMPT, settings)
        )
    oracle = expert_trajectories("oracle", shop_env, tasks, PROMPT)
    assert _dicts(oracle) == _dicts(oracle_trajectory(shop_env, t, PROMPT) for t in tasks)
    assert all(t.success for t in oracle)


def test_an_unknown_expert_names_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown expert 'nope'; known: gold, oracle, perturbed, scripted"):
        expert_program("nope")
    with pytest.raises(UnknownNameError):
        expert_trajectories("nope", None, [], PROMPT)


def test_a_registered_expert_plays_with_its_settings(shop_env, monkeypatch):
    monkeypatch.setattr(registry, "_EXPERTS", dict(registry._EXPERTS))  # the registration ends with the test

    def first_search(env, task_id, prompt, settings):
        first = env.reset(task_id)
        step = env.step(f"search[try {settings.seed}]")
        return Trajectory(
            id=f"mine/{task_id}",
            env=env.name,
            task_id=task_id,
            prompt=prompt,
            first_observation=first,
            turns=(),
            reward=step.reward,
            success=False,
            terminated=step.terminated,
            provenance=Provenance(source="mine", model="mine"),
            meta={"seed": settings.seed},
        )

    register_expert("mine", first_search)
    assert "mine" in expert_names()
    with pytest.raises(ValueError, match="already registered"):
        register_expert("mine", first_search)
    tasks = shop_env.task_ids("train")[:2]
    played = expert_trajectories("mine", shop_env, tasks, PROMPT, ExpertSettings(seed=7))
    assert [(t.id, t.meta) for t in played] == [(f"mine/{t}", {"seed": 7}) for t in tasks]
    register_expert("mine", lambda env, task_id, prompt, settings: played[0], replace=True)
    assert expert_program("mine")(shop_env, tasks[1], PROMPT) is played[0]
