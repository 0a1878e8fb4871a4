"""Rollouts shared by forked workers: the same episodes as one process, saved by the parent;
a worker's failure or death is an error that names it; what cannot fork runs in this process."""

import dataclasses
import multiprocessing
import os
import signal
import time

import pytest
import torch

from eef.agent.hf_policy import HFPolicy
from eef.agent.policy import Completion, Policy, SamplingParams
from eef.agent.prompt import build_prompt
from eef.errors import EefError
from eef.rollout import RolloutConfig, Start, clone_envs, rollout

CONFIG = RolloutConfig(SamplingParams(temperature=1.0, max_new_tokens=10), seed=5)


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return HFPolicy.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture
def one_thread():
    """Workers run one thread; the reference does too, so both do the same arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_workers_give_the_episodes_one_process_gives(shop_env, policy, one_thread):
    prompt = build_prompt("shop")
    tasks = shop_env.task_ids("train")[:7]
    reference = rollout(clone_envs(shop_env, 4), policy, [Start(t) for t in tasks], prompt, CONFIG)
    episode = max(reference.trajectories, key=lambda t: len(t.turns))
    tampered = dataclasses.replace(
        episode, turns=(dataclasses.replace(episode.turns[0], observation="never seen"), *episode.turns[1:])
    )
    starts = [Start(t) for t in tasks] + [Start(episode.task_id, episode, 1), Start(episode.task_id, tampered, 1)]
    saved = []
    shared = rollout(clone_envs(shop_env, 4), policy, starts, prompt, CONFIG, on_trajectory=saved.append, workers=2)
    assert [t.turns for t in shared.trajectories[:7]] == [t.turns for t in reference.trajectories]
    assert [t.text for t in shared.trajectories[7].turns] == [
        t.text for t in episode.turns
    ]  # restored, it goes on alike
    assert [t.id for t in shared.trajectories] == [
        t.id for t in rollout(clone_envs(shop_env, 4), policy, starts, prompt, CONFIG).trajectories
    ]  # in the order of the starts
    assert sorted(t.id for t in saved) == sorted(t.id for t in shared.trajectories)  # saved by this process
    assert [(s.key, d.step) for s, d in shared.diverged] == [(starts[8].key, 0)]
    assert shared.steps == reference.steps + len(episode.turns) - 1


class Scripted(Policy):
    """Test double: process-local like HFPolicy on the CPU; ``in_worker`` runs in a forked worker's process only."""

    name = "scripted"
    process_local = True

    def __init__(self, in_worker=lambda: None):
        self.parent, self.in_worker, self.pids = os.getpid(), in_worker, set()

    def generate(self, requests, params):
        self.pids.add(os.getpid())
        if os.getpid() != self.parent:
            self.in_worker()
        return [Completion("Action: click[< Prev]") for _ in requests]


def _fail():
    raise RuntimeError("the model ran out of memory")


def test_a_failing_worker_is_an_error_with_its_traceback(shop_env):
    starts = [Start(t) for t in shop_env.task_ids("train")[:4]]
    with pytest.raises(EefError, match=r"(?s)worker \d failed.*ran out of memory"):
        rollout(clone_envs(shop_env, 2), Scripted(_fail), starts, build_prompt("shop"), CONFIG, workers=2)


def test_a_worker_that_dies_is_an_error_that_names_it(shop_env):
    calls = []

    def die_on_second_call():
        calls.append(1)
        if len(calls) == 2:
            os._exit(3)

    starts = [Start(t) for t in shop_env.task_ids("train")[:4]]
    with pytest.raises(EefError, match="exited with code 3 before it finished"):
        rollout(clone_envs(shop_env, 2), Scripted(die_on_second_call), starts, build_prompt("shop"), CONFIG, workers=2)


def test_what_cannot_fork_rolls_out_in_this_process(shop_env):
    starts = [Start(t) for t in shop_env.task_ids("train")[:4]]
    on_gpu = Scripted()
    on_gpu.process_local = False  # as on a GPU: a forked child could not use it
    result = rollout(clone_envs(shop_env, 2), on_gpu, starts, build_prompt("shop"), CONFIG, workers=2)
    assert len(result.trajectories) == 4 and on_gpu.pids == {os.getpid()}

    class Remote:  # an environment holding something outside this process (a JVM, a server)
        process_local = False

        def __init__(self, env):
            self.env = env

        def __getattr__(self, name):
            return getattr(self.env, name)

    on_cpu = Scripted()
    rollout([Remote(e) for e in clone_envs(shop_env, 2)], on_cpu, starts, build_prompt("shop"), CONFIG, workers=2)
    assert on_cpu.pids == {os.getpid()}
    forked = Scripted()
    rollout(clone_envs(shop_env, 2), forked, starts, build_prompt("shop"), CONFIG, workers=2)
    assert forked.pids == set()  # no call in this process (the workers recorded theirs in their own copies)


def test_a_rollout_counts_only_its_own_environment_incidents(shop_env):
    envs = clone_envs(shop_env.fork(), 2)
    envs[0].metrics = {"episode_retries": 2, "restore_divergences": 1}  # counted by earlier stages
    envs[1].metrics = {"episode_retries": 0, "restore_divergences": 0}

    class Retrying(Scripted):
        def generate(self, requests, params):
            envs[1].metrics["episode_retries"] += 1  # as a ScienceWorld env does when a JVM dies mid-episode
            return super().generate(requests, params)

    result = rollout(envs, Retrying(), [Start(t) for t in shop_env.task_ids("train")[:2]], build_prompt("shop"), CONFIG)
    assert result.env_incidents == {"episode_retries": result.model_calls}


def _stop_self():
    os.kill(os.getpid(), signal.SIGSTOP)


def _kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_stopped_worker_is_killed_after_its_timeout_and_named(shop_env):
    starts = [Start(t) for t in shop_env.task_ids("train")[:4]]
    began = time.monotonic()
    with pytest.raises(EefError, match=r"rollout workers? [0-9, ]+ sent nothing for 1.5 s \(stopped or stuck\)"):
        rollout(
            clone_envs(shop_env, 2),
            Scripted(_stop_self),
            starts,
            build_prompt("shop"),
            CONFIG,
            workers=2,
            worker_timeout_s=1.5,
        )
    assert time.monotonic() - began < 30
    assert not [c for c in multiprocessing.active_children() if c.name.startswith("eef-rollout")]


def test_a_worker_killed_by_a_signal_is_named_with_the_signal(shop_env):
    starts = [Start(t) for t in shop_env.task_ids("train")[:4]]
    with pytest.raises(EefError, match="rollout worker [01] was killed by SIGKILL before it finished"):
        rollout(clone_envs(shop_env, 2), Scripted(_kill_self), starts, build_prompt("shop"), CONFIG, workers=2)


def _stop_mid_message():
    """Stop this worker halfway through writing a message bigger than a pipe holds."""
    from eef.rollout import workers

    def stalled(fd, message):
        os.write(fd, (10 * 2**20).to_bytes(8, "big") + b"x" * 2**16)  # a 10 MB message's first 64 KB
        os.kill(os.getpid(), signal.SIGSTOP)

    workers._send = stalled


def test_a_worker_stopped_halfway_through_a_message_is_still_timed_out(shop_env):
    starts = [Start(t) for t in shop_env.task_ids("train")[:4]]
    began = time.monotonic()
    with pytest.raises(EefError, match=r"sent nothing for 1.5 s \(stopped or stuck\)"):
        rollout(
            clone_envs(shop_env, 2),
            Scripted(_stop_mid_message),
            starts,
            build_prompt("shop"),
            CONFIG,
            workers=2,
            worker_timeout_s=1.5,
        )
    assert time.monotonic() - began < 30
