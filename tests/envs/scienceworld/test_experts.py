"""The offline ScienceWorld experts and `eef env verify scienceworld` (JVM)."""

import json
import subprocess
import sys

import pytest

from eef.agent.parse import parse_turn
from eef.agent.prompt import PromptConfig, build_prompt
from eef.envs.replay import replay
from eef.errors import EefError
from eef.experts.registry import ExpertSettings, expert_program, expert_trajectories
from eef.experts.scienceworld_gold import PerturbConfig, gold_trajectory, perturbed_trajectory

TASKS = [
    "find-animal/0",
    "lifespan-longest-lived/0",
    "power-component/0",
    "chemistry-mix/0",
    "find-animal/1",
    "lifespan-longest-lived/1",
    "power-component/1",
    "chemistry-mix/1",
]


@pytest.fixture(scope="module")
def prompt(sw_env):
    return build_prompt(sw_env.name, PromptConfig(one_shot=True), sw_env)


def test_gold_trajectories_are_successful_react_episodes_that_replay(sw_env, prompt):
    trajectories = expert_trajectories("gold", sw_env, TASKS[:2], prompt)
    for t in trajectories:
        assert t.success and t.terminated and t.reward == 1.0
        assert t.env == "scienceworld" and t.provenance.source == "gold" and t.prompt == prompt
        assert all(parse_turn(turn.text).action == turn.action for turn in t.turns)
        assert t.actions == sw_env.gold_actions(t.task_id)[: len(t.turns)]
        assert replay(sw_env, t.task_id, t.actions, t.observations, expected_first=t.first_observation).ok


def test_perturbed_failures_keep_key_actions_and_are_reproducible(sw_env, prompt):
    config = PerturbConfig(seed=3, keep_gold=0.0)
    trajectories = [perturbed_trajectory(sw_env, t, prompt, config) for t in TASKS]
    failures = [t for t in trajectories if not t.success]
    assert len(failures) >= len(TASKS) // 2, [t.meta for t in trajectories]
    for t in failures:
        gold = sw_env.gold_actions(t.task_id)
        keys, at = t.meta["key_steps"], t.meta["perturbed_at"]
        assert keys and at > keys[0], "a failure keeps the first key action"
        assert t.actions[:at] == gold[:at]
    # power-component too: its bulb lit a tick apart between runs before eef fixed the JVM's hashes
    again = [perturbed_trajectory(sw_env, t, prompt, config) for t in TASKS[:3]]
    assert [t.observations for t in again] == [t.observations for t in trajectories[:3]]


def test_perturbed_expert_keeps_some_gold_episodes(sw_env, prompt):
    trajectories = [perturbed_trajectory(sw_env, t, prompt, PerturbConfig(seed=0, keep_gold=0.5)) for t in TASKS]
    kinds = {t.meta["perturbation"] for t in trajectories}
    assert "none" in kinds and kinds - {"none"}


def test_the_gold_expert_needs_scienceworld(shop_env, prompt):
    with pytest.raises(EefError, match="needs the scienceworld environment"):
        gold_trajectory(shop_env, "shop_0", prompt)


def test_env_verify_replays_gold_sequences_as_json(pool):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from eef.cli import main; main()",
            "env",
            "verify",
            "scienceworld",
            "--limit",
            "3",
            "--json",
            "-o",
            "tasks=[lifespan-longest-lived,power-component,find-plant]",
            "-o",
            "max_steps=100",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["episodes"] == 3 and figures["success_rate"] == 1.0 and figures["mean_reward"] == 1.0


def test_eef_expert_records_the_gold_and_perturbed_experts(sw_env, prompt, tmp_path):
    from eef.data.generate import generate_with_program
    from eef.trajectory_files import read_trajectories

    out = tmp_path / "experts.jsonl"
    for name in ("gold", "perturbed"):
        generate_with_program(sw_env, expert_program(name, ExpertSettings(seed=3)), TASKS[:1], prompt, out, source=name)
    gold, perturbed = read_trajectories(out)
    assert (gold.id, perturbed.id) == (f"gold/{TASKS[0]}", f"perturbed/{TASKS[0]}") and gold.success
    assert perturbed.provenance.sampling["seed"] == 3 and "perturbation" in perturbed.meta
