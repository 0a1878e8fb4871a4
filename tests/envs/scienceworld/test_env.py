"""ScienceWorld through its simulator (JVM): protocol, fast step, gold replay, divergence, recovery."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eef.envs.conformance import check_env
from eef.envs.protocol import task_groups
from eef.envs.replay import replay
from eef.envs.scienceworld import JvmPool, ScienceWorldEnv
from eef.envs.scienceworld.jvm import JvmDied, Simulator
from eef.envs.scienceworld.observations import same_state
from eef.envs.scienceworld.tasks import SPLIT_TABLE, variations
from eef.envs.verify import verify
from eef.errors import EefError


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
            for split, read in (
                ("train", server.getVariationsTrain),
                ("dev", server.getVariationsDev),
                ("test", server.getVariationsTest),
            ):
                assert list(read()) == list(variations(name, split)), (name, split)
    finally:
        pool.release(simulator)


def test_the_environment_keeps_the_protocol(pool):
    check_env(ScienceWorldEnv(pool, tasks=["lifespan-longest-lived"]))


def test_tasks_are_grouped_by_task_type(sw_env):
    tasks = sw_env.task_ids("test")
    assert task_groups(sw_env, tasks) == {t: t.split("/")[0] for t in tasks}
    assert len(set(task_groups(sw_env, tasks).values())) > 1


def test_gold_sequences_score_100_on_several_task_types(sw_env):
    ids = [
        f"{name}/{variations(name, 'train')[1]}"
        for name in ("find-animal", "chemistry-mix", "lifespan-longest-lived", "power-component", "melt")
    ]
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


def test_episodes_repeat_exactly_whatever_the_jvm_ran_before(own_pool):
    # With the JVM's default identity hashes these drifted: the thermometer read 18 then 19
    # degrees, and power-component completed a tick earlier on the JVM's first episode.
    env = ScienceWorldEnv(own_pool, tasks=["use-thermometer", "power-component"], max_steps=100)
    for task_id in ("use-thermometer/3", "power-component/0"):
        gold = env.gold_actions(task_id)
        runs = [[env.reset(task_id)] + [r.observation for r in _play(env, task_id, gold)] for _ in range(2)]
        assert runs[0] == runs[1], task_id


def test_replay_reports_a_reading_that_differs_from_the_record(sw_env):
    # A trajectory recorded elsewhere (another JVM, the package's env) can read other temperatures.
    task_id = "use-thermometer/0"
    gold = sw_env.gold_actions(task_id)
    results = _play(sw_env, task_id, gold)
    observations = [r.observation for r in results]
    at = next(i for i, o in enumerate(observations) if "temperature of" in o)
    observations[at] = re.sub(r"-?\d+ degrees", "1000 degrees", observations[at])
    replayed = replay(sw_env, task_id, gold[: len(results)], observations)
    assert replayed.divergence is not None and replayed.divergence.step == at
    assert "temperature" in replayed.divergence.seen and replayed.divergence.seen != observations[at]
    assert replay(sw_env, task_id, gold[: len(results)], [r.observation for r in results]).ok


def test_a_killed_jvm_is_restarted_and_the_episode_goes_on(own_pool):
    env = ScienceWorldEnv(own_pool, tasks=["find-animal"], max_steps=50)
    gold = env.gold_actions("find-animal/1")
    undisturbed = _play(env, "find-animal/1", gold)
    env.reset("find-animal/1")
    before = [env.step(a) for a in gold[:3]]
    os.kill(env._sim.jvm.pid, signal.SIGKILL)
    env._sim.jvm.process.wait()
    after = [env.step(a) for a in gold[3 : len(undisturbed)]]
    assert all(same_state(a.observation, b.observation) for a, b in zip(before + after, undisturbed))
    assert after[-1].terminated and after[-1].reward == 1.0
    assert env.info["jvm_restarts"] == 1 and env.metrics == {"episode_retries": 1, "restore_divergences": 0}
    assert len(own_pool.jvms) == 1 and own_pool.jvms[0].alive


@pytest.mark.parametrize("method", ["step", "load"])  # in an episode, and in its rebuild
def test_a_jvm_killed_during_a_call_is_restarted(own_pool, monkeypatch, method):
    # The kill lands while the call is in flight and the process is not reaped yet.
    env = ScienceWorldEnv(own_pool, tasks=["find-animal"], max_steps=50)
    gold = env.gold_actions("find-animal/1")
    env.reset("find-animal/1")
    env.step(gold[0])
    real, killed = getattr(Simulator, method), []

    def dying(sim, *args):
        if not killed:
            killed.append(sim.jvm.pid)
            os.kill(sim.jvm.pid, signal.SIGKILL)
        return real(sim, *args)

    monkeypatch.setattr(Simulator, method, dying)
    if method in ("reset", "load"):
        env.reset("find-animal/1")
        assert env.step(gold[0]).info["valid"]
    results = [env.step(a) for a in gold[len(env._episode.actions) :]]
    assert killed and own_pool.restarts == 1 and killed[0] not in [j.pid for j in own_pool.jvms]
    assert results[-1].terminated and results[-1].reward == 1.0


def test_a_jvm_that_keeps_dying_ends_in_one_clear_error(own_pool, monkeypatch):
    env = ScienceWorldEnv(own_pool, tasks=["find-animal"])
    env.reset("find-animal/0")
    real = Simulator.step

    def dying(sim, action):
        os.kill(sim.jvm.pid, signal.SIGKILL)
        return real(sim, action)

    monkeypatch.setattr(Simulator, "step", dying)
    with pytest.raises(EefError, match=r"^find-animal/0: ScienceWorld's JVM failed 4 times in a row") as error:
        env.step("look around")
    assert "\n" not in str(error.value) and own_pool.restarts == 4


def _stop(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until the kernel shows it stopped (state T in /proc/PID/stat)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.01)


def test_a_stopped_jvm_times_out_and_is_replaced(caplog):
    pool = JvmPool(heap_mb=128, envs_per_jvm=4, call_timeout_s=60)  # a fresh JVM's first load is slow when busy
    try:
        env = ScienceWorldEnv(pool, tasks=["find-animal"])
        env.reset("find-animal/0")
        before = env.step("teleport to greenhouse").observation
        stopped = env._sim.jvm
        stopped.timeout_s = 1.5
        _stop(stopped.pid)
        began = time.monotonic()
        result = env.step("look around")  # the stuck JVM is killed, the episode replayed in a new one
        assert time.monotonic() - began < 1.5 + 30
        facts = (stopped.stuck, stopped.process.returncode, pool.restarts, caplog.text)
        assert stopped.stuck and stopped.process.returncode == -signal.SIGKILL and pool.restarts == 1, facts
        assert "did not answer within 1.5 s" in caplog.text
        assert result.info["valid"] and "greenhouse" in result.observation and "greenhouse" in before
        simulator = env._sim
        simulator.jvm.timeout_s = 1
        _stop(simulator.jvm.pid)
        began = time.monotonic()
        with pytest.raises(JvmDied, match="did not answer within 1 s"):
            simulator.valid_actions()
        assert time.monotonic() - began < 1 + 1
    finally:
        pool.close()


def test_jvm_faults_print_no_py4j_tracebacks():
    script = (
        "import os, signal\n"
        "from eef.envs.scienceworld import JvmPool, ScienceWorldEnv\n"
        "pool = JvmPool(heap_mb=128, envs_per_jvm=4)\n"
        "env = ScienceWorldEnv(pool, tasks=['find-animal'])\n"
        "env.reset('find-animal/0')\n"
        "for _ in range(2):\n"
        "    os.kill(env._sim.jvm.pid, signal.SIGKILL)\n"
        "    print(env.step('look around').info['valid'])\n"
        "pool.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.split() == ["True", "True"], out.stderr
    assert "Traceback" not in out.stderr and "py4j" not in out.stderr
    assert len(out.stderr.splitlines()) <= 2, out.stderr  # at most one warning per restart


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
