"""Batched rollouts: restoring a state continues the original episode; batching changes nothing."""

import dataclasses

import pytest

from eef.agent.hf_policy import HFPolicy
from eef.agent.policy import Completion, Policy, SamplingParams
from eef.agent.prompt import build_prompt
from eef.errors import EefError
from eef.rollout import RolloutConfig, Start, clone_envs, cloned_envs, pending, rollout

CONFIG = RolloutConfig(SamplingParams(temperature=1.0, max_new_tokens=10), seed=3)


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return HFPolicy.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def original(shop_env, policy):
    starts = [Start(t) for t in shop_env.task_ids("test")[:6]]
    return rollout(clone_envs(shop_env, 3), policy, starts, build_prompt("shop"), CONFIG)


def test_every_start_ends_in_one_recorded_episode(original, shop_env):
    assert [t.task_id for t in original.trajectories] == shop_env.task_ids("test")[:6]
    assert len({t.id for t in original.trajectories}) == 6
    for t in original.trajectories:
        assert 1 <= len(t.turns) <= shop_env.max_steps
        assert t.terminated or len(t.turns) == shop_env.max_steps
        assert t.provenance.start_step == 0 and t.provenance.parent_id is None
        assert t.provenance.sampling["temperature"] == 1.0
    assert original.model_calls < original.steps  # several episodes per model call


def test_restoring_a_state_continues_exactly_as_the_original(original, shop_env, policy):
    episode = max(original.trajectories, key=lambda t: len(t.turns))
    assert len(episode.turns) >= 3
    starts = [Start(episode.task_id, episode, k) for k in range(1, len(episode.turns))]
    restored = rollout(clone_envs(shop_env, 2), policy, starts, build_prompt("shop"), CONFIG)
    assert not restored.diverged
    for k, t in zip(range(1, len(episode.turns)), restored.trajectories):
        assert [turn.text for turn in t.turns] == [turn.text for turn in episode.turns]
        assert t.reward == episode.reward
        assert t.provenance.start_step == k and t.provenance.parent_id == episode.id
        assert not any(turn.trainable for turn in t.turns[:k])  # the replayed prefix is context
        assert all(turn.trainable for turn in t.turns[k:])


def test_batch_width_does_not_change_episodes(original, shop_env, policy):
    starts = [Start(t) for t in shop_env.task_ids("test")[:6]]
    one_at_a_time = rollout(clone_envs(shop_env, 1), policy, starts, build_prompt("shop"), CONFIG)
    assert [t.turns for t in one_at_a_time.trajectories] == [t.turns for t in original.trajectories]
    assert one_at_a_time.model_calls == one_at_a_time.steps


def test_a_prefix_that_does_not_replay_is_reported_and_skipped(original, shop_env, policy):
    episode = max(original.trajectories, key=lambda t: len(t.turns))
    tampered_turn = dataclasses.replace(episode.turns[0], observation="a page that never was")
    tampered = dataclasses.replace(episode, turns=(tampered_turn,) + episode.turns[1:])
    seen = []
    result = rollout(
        clone_envs(shop_env, 1),
        policy,
        [Start(episode.task_id, tampered, 2), Start(episode.task_id)],
        build_prompt("shop"),
        CONFIG,
        on_trajectory=seen.append,
    )
    assert len(result.diverged) == 1 and result.diverged[0][1].step == 0
    assert [t.provenance.start_step for t in result.trajectories] == [0]
    assert seen == result.trajectories


def test_a_prefix_from_another_instruction_or_a_longer_step_limit_is_a_divergence(original, shop_env, policy):
    from eef.envs import make

    episode = max(original.trajectories, key=lambda t: len(t.turns))
    foreign = dataclasses.replace(episode, first_observation="WebShop [SEP] Instruction: [SEP] something else")
    short = make("shop", max_steps=2)
    result = rollout(
        [short],
        policy,
        [Start(episode.task_id, foreign, 1), Start(episode.task_id, episode, 2)],
        build_prompt("shop"),
        CONFIG,
    )
    assert [d.step for _, d in result.diverged] == [-1, 1]
    assert result.trajectories == []


def test_finished_episodes_free_their_cached_kv(shop_env, policy):
    rollout(
        clone_envs(shop_env, 2),
        policy,
        [Start(t) for t in shop_env.task_ids("test")[:3]],
        build_prompt("shop"),
        CONFIG,
        description="forget-test",
    )
    assert len(policy.prefix_cache) == 0


def test_a_stage_closes_the_environments_it_cloned():
    class Closable:
        name = "closable"

        def __init__(self):
            self.closed = False

        def fork(self):
            return Closable()

        def close(self):
            self.closed = True

    original = Closable()
    with cloned_envs(original, 3) as envs:
        assert len(envs) == 3 and envs[0] is original and not any(e.closed for e in envs)
    assert [e.closed for e in envs] == [False, True, True]  # the caller's own environment stays open
    with pytest.raises(RuntimeError), cloned_envs(original, 2) as envs:
        raise RuntimeError("a failed stage")
    assert envs[1].closed


class _Fixed(Policy):
    """Test double: always pages back (an episode runs to the step limit)."""

    name = "fixed"

    def generate(self, requests, params):
        return [Completion("Action: click[< Prev]") for _ in requests]


def test_resuming_into_a_file_of_another_rollout_is_refused(shop_env, tmp_path):
    from eef.trajectory_files import append_trajectories

    config = RolloutConfig(SamplingParams(temperature=0.7, max_new_tokens=10), seed=1)
    starts = [Start(t) for t in shop_env.task_ids("train")[:2]]
    out = tmp_path / "rollouts.jsonl"
    first = rollout(clone_envs(shop_env, 2), _Fixed(), starts[:1], build_prompt("shop"), config)
    append_trajectories(out, first.trajectories)
    done, todo = pending(out, starts, config, model="fixed")
    assert [t.id for t in done] == [first.trajectories[0].id] and todo == starts[1:]
    hotter = RolloutConfig(SamplingParams(temperature=1.0, max_new_tokens=10), seed=1)
    with pytest.raises(EefError, match="was sampled with .*'temperature': 0.7.*this rollout uses .*'temperature': 1.0"):
        pending(out, starts, hotter)
    with pytest.raises(EefError, match="is of model 'fixed', this rollout uses 'other'"):
        pending(out, starts, config, model="other")
