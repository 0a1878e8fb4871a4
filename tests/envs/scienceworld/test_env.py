"""ScienceWorld through its simulator (JVM): protocol, fast step, gold replay, divergence, recovery."""

import os
import signal

import pytest

from eef.envs.conformance import check_env
from eef.envs.replay import replay
from eef.envs.scienceworld import ScienceWorldEnv
from eef.envs.scienceworld.observations import same_state
from eef.envs.scienceworld.tasks import SPLIT_TABLE, variations
from eef.envs.verify import verify


def _play(env, task_id, actions):
    env.reset(task_id)
    results = []
    for action in actions:
        results.append(env.step(action))
        if results[-1].done:
            break
    return results


def test_the_split_table_matches_the_simulator(pool):
    simulator = pool.simulator()
    try:
        for name, (count, _, _) in SPLIT_TABLE.items():
            simulator.load(name, 0, "")
            server = simulator._server
            assert server.getTaskMaxVariations(name) == count, name
            for split, read in (("train", server.getVariationsTrain), ("dev", server.getVariationsDev),
                                ("test", server.getVariationsTest)):
                assert list(read()) == list(variations(name, split)), (name, split)
    finally:
        pool.release(simulator)


def test_the_environment_keeps_the_protocol(pool):
    check_env(ScienceWorldEnv(pool, tasks=["lifespan-longest-lived"]))


def test_gold_sequences_score_100_on_several_task_types(sw_env):
    ids = [f"{name}/{variations(name, 'train')[1]}" for name in
           ("find-animal", "chemistry-mix", "lifespan-longest-lived", "power-component", "melt")]
    report = verify(sw_env, ids)
    assert report.episodes == 5
    assert report.success_rate == 1.0 and report.mean_reward == 1.0, report.failures


def test_the_fast_step_shows_what_the_packages_env_step_shows(sw_env, monkeypatch):
    from scienceworld import ScienceWorldEnv as PackageEnv

    gold = sw_env.gold_actions("chemistry-mix/0")
    ours = _play(sw_env, "chemistry-mix/0", gold)
    monkeypatch.setenv("JAVA_TOOL_OPTIONS", "-Xmx128m")
    package = PackageEnv("", envStepLimit=1000)
    try:
        package.load("chemistry-mix", 0, "easy")
        package.reset()
        for i, result in enumerate(ours):
            observation, _, completed, info = package.step(gold[i])
            assert same_state(observation, result.observation), i
            assert info["score"] == result.info["score"], i
            assert completed == result.terminated, i
            if i == 3:  # the lazily enumerated actions are the package's list
                assert sorted(sw_env_actions_at(sw_env, gold[: i + 1])) == sorted(info["valid"])
    finally:
        package.close()
    assert ours[-1].terminated and ours[-1].reward == 1.0


def sw_env_actions_at(env, actions):
    _play(env, "chemistry-mix/0", actions)
    return env.available_actions()


def test_rewards_come_at_the_end_and_failures_keep_their_progress(pool):
    env = ScienceWorldEnv(pool, tasks=["find-animal"])
    env.reset("find-animal/0")
    assert env.max_steps == 15  # ETO's limit for find-*
    bad = env.step("this is not an action ][")
    assert bad.info == {"valid": False, "score": bad.info["score"]} and bad.reward == 0.0
    progress = env.step("teleport to greenhouse")
    assert progress.info["valid"] and progress.reward == 0.0 and not progress.done
    failed = env.step("focus on air")  # focusing on a wrong thing fails the task
    assert failed.terminated and failed.info["score"] < 0
    assert 0 < failed.reward < 1 and failed.reward == progress.info["score"] / 100
    assert not env.is_success(failed.reward)
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("look around")


def test_the_step_limit_truncates_with_the_best_score(pool):
    env = ScienceWorldEnv(pool, tasks=["find-animal"], step_limits={"find-animal": 2})
    env.reset("find-animal/0")
    first = env.step("teleport to greenhouse")
    last = env.step("look around")
    assert not first.done and last.truncated and not last.terminated
    assert last.reward == max(first.info["score"], last.info["score"]) / 100


def test_replay_matches_on_a_deterministic_task_and_diverges_on_a_stochastic_one(sw_env):
    for task_id, stochastic in (("melt/0", False), ("use-thermometer/0", True)):
        results = _play(sw_env, task_id, sw_env.gold_actions(task_id))
        first = sw_env.reset(task_id)
        actions, observations = sw_env.gold_actions(task_id)[: len(results)], [r.observation for r in results]
        # use-thermometer's readings drift by a degree or two in 5 of 6 replays: a few tries find one
        for _ in range(5 if stochastic else 1):
            replayed = replay(sw_env, task_id, actions, observations, expected_first=first)
            if not replayed.ok:
                break
        assert replayed.ok != stochastic, task_id
        if stochastic:
            assert "temperature" in replayed.divergence.seen


def test_a_killed_jvm_is_restarted_and_the_episode_goes_on(own_pool):
    env = ScienceWorldEnv(own_pool, tasks=["find-animal"], max_steps=50)
    gold = env.gold_actions("find-animal/1")
    undisturbed = _play(env, "find-animal/1", gold)
    env.reset("find-animal/1")
    before = [env.step(a) for a in gold[:3]]
    os.kill(env._sim.jvm.pid, signal.SIGKILL)
    env._sim.jvm.process.wait()
    after = [env.step(a) for a in gold[3: len(undisturbed)]]
    assert all(same_state(a.observation, b.observation) for a, b in zip(before + after, undisturbed))
    assert after[-1].terminated and after[-1].reward == 1.0
    assert env.info["jvm_restarts"] == 1 and env.metrics == {"episode_retries": 1, "restore_divergences": 0}
    assert len(own_pool.jvms) == 1 and own_pool.jvms[0].alive


def test_a_jvm_that_dies_before_the_first_simulator_is_replaced(own_pool, monkeypatch):
    from eef.envs.scienceworld.jvm import Jvm

    real, killed = Jvm.new_simulator, []

    def dying(jvm):
        if not killed:  # the first JVM dies just as the environment asks it for a simulator
            killed.append(jvm.pid)
            os.kill(jvm.pid, signal.SIGKILL)
            jvm.process.wait()
        return real(jvm)

    monkeypatch.setattr(Jvm, "new_simulator", dying)
    env = ScienceWorldEnv(own_pool, tasks=["find-animal"])
    assert env.reset("find-animal/0").startswith("Task Description:")
    assert own_pool.restarts == 1 and [j.pid for j in own_pool.jvms] != killed and own_pool.jvms[0].alive
    env.close()
    assert own_pool.jvms == []
    assert env.step("look around").info["valid"]  # a closed environment takes a new simulator and goes on
    env.close()


def test_forks_share_jvms_up_to_their_capacity(own_pool):
    env = ScienceWorldEnv(own_pool, tasks=["lifespan-longest-lived"])
    forks = [env] + [env.fork() for _ in range(4)]
    for i, fork in enumerate(forks):
        fork.reset(f"lifespan-longest-lived/{i}")
    assert len(own_pool.jvms) == 2  # four simulators per JVM
    forks[0].step("teleport to greenhouse")
    assert "greenhouse" in forks[0].step("look around").observation
    assert "greenhouse" not in forks[1].step("look around").observation.split("\n")[0]
    assert max(own_pool.rss_mb()) < 512
    for fork in forks:
        fork.close()
    assert own_pool.jvms == []
