"""The Ray engine (rollout.engine: ray): the local engine's episodes from actors on a local Ray
instance, episodes of a killed actor retried elsewhere, and bad input refused before any work."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cli_helpers import cli_ok, runner
from eef.agent.policy import SamplingParams
from eef.agent.prompt import build_prompt
from eef.cli import app
from eef.config import DEFAULT_RUN_CONFIG, ConfigError, ModelSection, load_config
from eef.errors import EefError
from eef.pipeline import run
from eef.rollout import RolloutConfig, Start
from eef.rollout.cluster import RayConfig, connect
from eef.stages import Parallelism, open_rollouts
from test_pipeline import TINY

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

CONFIG = RolloutConfig(SamplingParams(temperature=1.0, max_new_tokens=10), seed=5)
MODEL = ModelSection(device="cpu")
RAY_CLI = str(Path(sys.executable).parent / "ray")
NO_AUTH = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # the nodes and the driver on one machine, no shared token


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance of 2 CPUs and a small object store, shut down after the module."""
    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            object_store_memory=100 * 1024 * 1024,
            include_dashboard=False,
            log_to_driver=False,
        )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(shop_env, tiny_model_dir):
    """The local engine's episodes of 16 starts (one thread, as each 1-CPU actor computes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with open_rollouts(shop_env, {}, MODEL, tiny_model_dir, Parallelism(num_envs=4)) as local:
            return local(_starts(shop_env), build_prompt("shop"), CONFIG)
    finally:
        torch.set_num_threads(threads)


def _starts(shop_env):
    return [Start(t) for t in shop_env.task_ids("train")[:16]]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_actors_give_the_episodes_the_local_engine_gives(cluster, shop_env, tiny_model_dir, reference):
    saved = []
    first = reference.trajectories[0]
    restored = Start(first.task_id, first, 2)  # from a recorded state: it goes on as the recording did
    starts = [*_starts(shop_env), restored]
    with open_rollouts(shop_env, {}, MODEL, tiny_model_dir, Parallelism(4, ray=RayConfig(env_actors=2))) as engine:
        assert engine.model == str(tiny_model_dir)
        result = engine(starts, build_prompt("shop"), CONFIG, on_trajectory=saved.append)
    assert result.trajectories[:16] == reference.trajectories  # ids, turns, rewards and provenance
    assert [t.text for t in result.trajectories[16].turns] == [t.text for t in first.turns]
    assert sorted(t.id for t in saved) == sorted(t.id for t in result.trajectories)  # each handed over as it came
    assert result.steps == reference.steps + len(first.turns) - 2 and not result.env_incidents


def test_the_episodes_of_a_killed_actor_are_retried_on_another(cluster, shop_env, tiny_model_dir, reference):
    killed = []

    def kill_actor_0(trajectory):
        if not killed:
            os.kill(engine.pids[0], signal.SIGKILL)
            killed.append(trajectory.id)

    with open_rollouts(shop_env, {}, MODEL, tiny_model_dir, Parallelism(4, ray=RayConfig(env_actors=2))) as engine:
        result = engine(_starts(shop_env), build_prompt("shop"), CONFIG, on_trajectory=kill_actor_0)
    assert result.trajectories == reference.trajectories  # nothing lost, nothing sampled otherwise
    assert result.env_incidents["ray_actor_losses"] == 1
    assert 1 <= result.env_incidents["ray_episodes_retried"] <= 8  # actor 0's unfinished share


def test_eef_explore_and_eval_on_ray_actors_write_what_the_local_engine_writes(cluster, tiny_model_dir, tmp_path):
    common = ["shop", "--model", str(tiny_model_dir), "--limit", "6", "--max-new-tokens", "10", "--num-envs", "4"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each 1-CPU actor computes
    try:
        for engine in (["--workers", "1"], ["--engine", "ray", "--ray-actors", "2"]):
            name = engine[1]
            cli_ok(["explore", *common, "--rollouts", "2", "--out", str(tmp_path / f"{name}.jsonl"), *engine])
            cli_ok(["eval", *common, "--out", str(tmp_path / f"eval-{name}"), *engine])
    finally:
        torch.set_num_threads(threads)
    local, actors = (_episodes(tmp_path / f"{name}.jsonl", tmp_path) for name in ("1", "ray"))
    assert len(local) == 12 and local == actors
    assert (tmp_path / "eval-1" / "tasks.tsv").read_text() == (tmp_path / "eval-ray" / "tasks.tsv").read_text()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--engine", "slurm"], "--engine: expected local or ray, got 'slurm'"),
        (["--ray-address", "127.0.0.1:6379"], "--ray-address: only with --engine ray"),
        (
            ["--engine", "ray", "--workers", "2"],
            "--workers: 2 forked workers are the local engine's; on Ray set --ray-actors",
        ),
        (["--engine", "ray", "--backend", "served"], "--backend: served runs one engine per process"),
        (
            ["--engine", "ray", "--ray-actors", "5", "--num-envs", "4"],
            "--ray-actors: 5 actors need at least as many environments (--num-envs is 4)",
        ),
    ],
)
def test_bad_engine_options_are_named_before_any_loading(args, problem, tmp_path):
    result = runner.invoke(app, ["eval", "shop", "--model", str(tmp_path / "none"), "--out", str(tmp_path), *args])
    assert isinstance(result.exception, EefError) and problem in str(result.exception)


def test_a_start_lost_more_often_than_max_retries_fails_the_rollout(cluster, shop_env, tiny_model_dir):
    settings = RayConfig(env_actors=2, max_retries=0)
    with open_rollouts(shop_env, {}, MODEL, tiny_model_dir, Parallelism(4, ray=settings)) as engine:
        os.kill(engine.pids[0], signal.SIGKILL)
        with pytest.raises(EefError, match=r"was lost with its Ray actor 1 times \(ray.max_retries: 0\)"):
            engine(_starts(shop_env), build_prompt("shop"), CONFIG)


def test_more_cpus_than_the_cluster_has_is_refused_naming_the_key(cluster, shop_env, tiny_model_dir):
    settings = RayConfig(env_actors=3, num_cpus_per_actor=1)
    refused = r"^ray.num_cpus_per_actor: ray.env_actors 3 x 1 CPU need 3 CPUs; the cluster has 2"
    with (
        pytest.raises(EefError, match=refused),
        open_rollouts(shop_env, {}, MODEL, tiny_model_dir, Parallelism(4, ray=settings)),
    ):
        pass


def test_an_unreachable_address_is_refused_at_once():
    with pytest.raises(EefError, match=r"^ray.address: nothing accepts connections at 127.0.0.1:\d+"):
        connect(RayConfig(address=f"127.0.0.1:{_free_port()}"))


def test_a_ray_client_address_is_refused_with_what_to_give_instead():
    # Ray Client has no streaming actor methods, which the engine's actors yield episodes by
    with pytest.raises(EefError, match=r"^ray.address: ray://head:10001 is a Ray Client address.*HOST:PORT"):
        connect(RayConfig(address="ray://head:10001"))


def test_an_endpoint_that_refuses_connections_is_named_before_any_actor_starts(shop_env):
    settings = RayConfig(env_actors=2, endpoints=("http://127.0.0.1:1/v1", f"http://127.0.0.1:{_free_port()}/v1"))
    model = ModelSection(backend="openai")
    refused = r"^ray.endpoints: nothing accepts connections at http://127.0.0.1:1/v1"
    with pytest.raises(EefError, match=refused), open_rollouts(shop_env, {}, model, "m", Parallelism(4, ray=settings)):
        pass


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (["rollout.engine=spark"], "rollout.engine: 'spark' is not one of local, ray"),
        (["rollout.engine=ray", "model.backend=served"], "model.backend: served runs one engine per process"),
        (["rollout.engine=ray", "rollout.workers=2"], "rollout.workers: 2 forked workers are the local engine's"),
        (["rollout.engine=ray", "ray.endpoints=[http://a:8000/v1]"], "ray.endpoints: only for model.backend openai"),
        (["rollout.engine=ray", "ray.env_actors=0"], "ray.env_actors: must be at least 1, got 0"),
        (["rollout.engine=ray", "rollout.num_envs=2", "ray.env_actors=3"], "ray.env_actors: 3 actors need"),
    ],
)
def test_bad_ray_settings_are_named_by_key(overrides, problem):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems


@pytest.fixture
def two_nodes():
    """A Ray cluster of two 1-CPU nodes on this machine (a head and a worker, each `ray start
    --block` in a process group of its own, killed afterwards); yields the head's address."""
    address = f"127.0.0.1:{_free_port()}"
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats", "--block"]
    nodes = [
        subprocess.Popen(
            [RAY_CLI, "start", *role, *common], env=NO_AUTH, start_new_session=True, stdout=subprocess.DEVNULL
        )
        for role in (
            ["--head", f"--port={address.split(':')[1]}", "--include-dashboard=false"],
            [f"--address={address}"],
        )
    ]
    yield address
    for node in nodes:
        os.killpg(node.pid, signal.SIGKILL)  # the node's raylet, store and workers are in its group
        node.wait()


def _wait_for_both_nodes(address):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = subprocess.run(
            [RAY_CLI, "status", f"--address={address}"], env=NO_AUTH, capture_output=True, text=True
        )
        if "/2.0 CPU" in status.stdout:
            return
        time.sleep(0.5)
    pytest.fail(f"the second Ray node did not join within 60 s:\n{status.stdout}{status.stderr}")


@pytest.mark.slow
def test_a_run_on_two_ray_nodes_writes_the_local_engines_episodes(two_nodes, tmp_path):
    small = [*TINY, "methods.run=[sft_pos, eef]", "rollout.workers=1", "eval.limit=4"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each 1-CPU actor computes, and the driver below: both runs train and sample alike
    try:
        run(load_config(DEFAULT_RUN_CONFIG, [*small, f"run_dir={tmp_path / 'local'}"]), log=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    _wait_for_both_nodes(two_nodes)  # they started during the local run
    on_ray = [
        *small,
        f"run_dir={tmp_path / 'ray'}",
        "rollout.engine=ray",
        "ray.env_actors=2",
        f"ray.address={two_nodes}",
    ]
    args = [sys.executable, "-m", "eef.cli", "run"] + [a for item in on_ray for a in ("-s", item)]
    # each node has room for one actor: the two run on both
    done = subprocess.run(args, env={**NO_AUTH, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    for path in ("eef/iter-1/rollouts.jsonl", "eef/iter-1/eval/trajectories.jsonl"):
        local, distributed = (_episodes(tmp_path / engine / path, tmp_path / engine) for engine in ("local", "ray"))
        assert local == distributed and len(local) >= 4, path
    explored = json.loads((tmp_path / "ray" / "eef" / "iter-1" / "explore" / ".done").read_text())
    assert explored["episodes"] == 35 and "env_incidents" not in explored


def _episodes(path, run_dir):
    """A file's episodes by id, the checkpoint named relative to its run directory (the files of
    the local engine are in the order episodes ended, as are the driver's)."""
    episodes = {}
    for line in path.read_text().splitlines():
        episode = json.loads(line)
        episode["provenance"]["model"] = os.path.relpath(episode["provenance"]["model"], run_dir)
        episodes[episode["id"]] = episode
    return episodes


def test_without_ray_installed_the_engine_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(EefError, match=r"^rollout.engine: ray needs the ray package \(pip install 'eef\[ray\]'\)"):
        connect(RayConfig())
