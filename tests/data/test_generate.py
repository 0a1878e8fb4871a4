import pytest
from shopper import Shopper

from eef.agent import PromptConfig, SamplingParams, build_prompt
from eef.data.generate import Prices, UsageMeter, generate_with_policy, generate_with_program
from eef.experts.oracle import oracle_trajectory
from eef.rollout import RolloutConfig, clone_envs
from eef.trajectory_files import read_trajectories


def test_prices():
    assert Prices(2.5, 10.0).cost(1_000_000, 100_000) == 3.5


def test_usage_meter_counts_per_conversation():
    from eef.agent.policy import GenerationRequest

    meter = UsageMeter(Shopper())
    page = [{"role": "user", "content": "WebShop [SEP] Instruction: [SEP] find a red wool scarf now [SEP] Search"}]
    meter.generate(
        [GenerationRequest(page, conversation="a"), GenerationRequest(page, conversation="b")], SamplingParams()
    )
    meter.generate([GenerationRequest(page, conversation="a")], SamplingParams())
    first = meter.take("a")
    assert first["model_calls"] == 2 and first["prompt_tokens"] == 2 * 12 and first["completion_tokens"] > 0
    assert meter.take("a")["model_calls"] == 0 and meter.take("b")["model_calls"] == 1


def test_every_episode_is_kept_with_usage_and_a_rerun_skips_finished_tasks(tmp_path, shop_env):
    prompt = build_prompt("shop", PromptConfig(), shop_env)
    config = RolloutConfig(SamplingParams(0.0, 1.0, 32), seed=3, source="fake-gpt")
    tasks = shop_env.task_ids("train")[:5]
    out = tmp_path / "experts.jsonl"
    policy = Shopper()
    first = generate_with_policy(
        clone_envs(shop_env, 3), policy, tasks[:3], prompt, out, config, rollouts=2, prices=Prices(1.0, 4.0)
    )
    trajectories = read_trajectories(out)
    assert (first.new, first.episodes) == (6, 6) and len({t.id for t in trajectories}) == 6
    assert sum(t.meta["usage"]["prompt_tokens"] for t in trajectories) == policy.prompt_tokens
    assert sum(t.meta["usage"]["model_calls"] for t in trajectories) == policy.calls
    assert all(t.meta["usage"]["model_calls"] == len(t.turns) for t in trajectories)
    assert first.cost == pytest.approx(Prices(1.0, 4.0).cost(policy.prompt_tokens, policy.completion_tokens))
    assert all(t.provenance.model == "fake-gpt" and t.provenance.sampling["seed"] == 3 for t in trajectories)
    assert first.successes == sum(t.success for t in trajectories) < 6  # failures are kept

    calls = policy.calls
    again = generate_with_policy(clone_envs(shop_env, 3), policy, tasks, prompt, out, config, rollouts=2)
    assert (again.new, again.episodes, again.cost) == (4, 10, None)  # four episodes have no price
    assert policy.calls > calls and len(read_trajectories(out)) == 10
    later = generate_with_policy(
        clone_envs(shop_env, 3), policy, tasks, prompt, out, config, rollouts=2, prices=Prices(2.0, 8.0)
    )
    unpriced = [t.meta["usage"] for t in read_trajectories(out)[6:]]
    assert later.new == 0 and later.cost == pytest.approx(
        first.cost
        + sum(  # the first six keep their prices
            Prices(2.0, 8.0).cost(u["prompt_tokens"], u["completion_tokens"]) for u in unpriced
        )
    )


def test_program_experts_resume_too(tmp_path, shop_env):
    prompt = build_prompt("shop", PromptConfig(), shop_env)
    out = tmp_path / "oracle.jsonl"
    tasks = shop_env.task_ids("dev")[:3]
    assert generate_with_program(shop_env, oracle_trajectory, tasks[:2], prompt, out, source="oracle").new == 2
    report = generate_with_program(shop_env, oracle_trajectory, tasks, prompt, out, source="oracle")
    assert (report.new, report.episodes, report.successes) == (1, 3, 3)
    assert [t.id for t in read_trajectories(out)] == [f"oracle/{t}" for t in tasks]
