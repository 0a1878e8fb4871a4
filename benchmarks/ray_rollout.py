"""The Ray engine's overhead against the local engine on the same work, and its scaling figures.

    python benchmarks/ray_rollout.py [--tasks 96] [--actors 2] [--model CK] [--json]

The work is the default run's exploration on the CPU: s0 rollouts of the shop's training tasks
(compact view, temperature 0.7, 48 new tokens) by one model (default: a fresh tiny eef model),
each episode appended to a JSONL file as it ends. The local engine shares it among ``--actors``
forked one-thread workers (its best on this machine); the Ray engine among ``--actors`` actors of
1 CPU on a Ray instance started here (a small object store). Both sample the same episodes.

With ``--endpoint`` it also measures an endpoint: `eef serve` of the same model on this machine,
the actors calling it (``model.backend: openai``, ``ray.endpoints``); its episodes/s is what one
endpoint delivers to the actors (on the CPU here; a GPU server's rate is the one to measure for
a cluster).

``overhead`` compares a warm rollout (actors started, as every stage of a run after the first
finds them) with the local engine: 0.15 = 15% slower. Also printed: the first stage's start-up
(the actors' processes, imports, environments and model), the Ray instance's start, and what a
cluster estimate needs: episodes/s per environment actor, the driver's CPU seconds per episode
(receiving it, appending it to the file) and the actor count at which the driver, one core,
becomes the bottleneck (docs/scale.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import model_or_tiny, print_figures

OBJECT_STORE_BYTES = 100 * 1024 * 1024


def _work(tasks: int):
    from eef.agent import PromptConfig, SamplingParams, build_prompt
    from eef.envs import make
    from eef.rollout import RolloutConfig, Start

    env = make("shop", view="compact")
    prompt = build_prompt("shop", PromptConfig("Buy the item the instruction describes."), env)
    starts = [Start(t) for t in env.task_ids("train")[:tasks]]
    return env, prompt, starts, RolloutConfig(SamplingParams(temperature=0.7, max_new_tokens=48), seed=0)


def _timed(rollouts, starts, prompt, config, out: Path) -> tuple[float, float, list]:
    """Wall and driver CPU seconds of one rollout saved to ``out``, and its trajectories."""
    from eef.trajectory_files import append_trajectories

    wall, cpu = time.perf_counter(), time.process_time()
    result = rollouts(starts, prompt, config, on_trajectory=lambda t: append_trajectories(out, [t]))
    return time.perf_counter() - wall, time.process_time() - cpu, result.trajectories


def _endpoint_episodes_per_s(model_dir: str, actors: int, num_envs: int, work) -> float:
    """Episodes/s of ``actors`` Ray actors calling one `eef serve` of ``model_dir`` on this machine."""
    import socket
    import subprocess
    import sys

    from eef.config import ModelSection
    from eef.rollout.cluster import RayConfig
    from eef.stages import Parallelism, open_rollouts

    env, prompt, starts, config = work
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    eef = str(Path(sys.executable).parent / "eef")
    server = subprocess.Popen(
        [eef, "serve", model_dir, "--port", str(port), "--served-model-name", model_dir, "--device", "cpu"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/v1"
        settings = RayConfig(env_actors=actors, num_cpus_per_actor=0.5, endpoints=(url,))
        model = ModelSection(backend="openai", concurrency=num_envs)
        with open_rollouts(env, {"view": "compact"}, model, model_dir, Parallelism(num_envs, ray=settings)) as served:
            began = time.perf_counter()
            result = served(starts, prompt, config)
            return len(result.trajectories) / (time.perf_counter() - began)
    finally:
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="Model directory (default: a fresh tiny eef model for the shop).")
    parser.add_argument("--tasks", type=int, default=96)
    parser.add_argument("--actors", type=int, default=2, help="Ray actors, and the local engine's workers.")
    parser.add_argument("--num-envs", type=int, default=16, help="Environments, shared by the actors or workers.")
    parser.add_argument("--endpoint", action="store_true", help="Also: episodes/s of one `eef serve` endpoint.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import ray

    from eef.config import ModelSection
    from eef.rollout.cluster import RayConfig
    from eef.stages import Parallelism, open_rollouts

    env, prompt, starts, config = _work(args.tasks)
    model = ModelSection(device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        model_dir = model_or_tiny(args.model, scratch)
        local_engine = Parallelism(args.num_envs, workers=args.actors)
        with open_rollouts(env, {"view": "compact"}, model, model_dir, local_engine) as local:
            local_s, local_cpu, local_episodes = _timed(local, starts, prompt, config, scratch / "local.jsonl")

        began = time.perf_counter()
        ray.init(
            address="local",
            num_cpus=args.actors,
            object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=False,
            log_to_driver=False,
        )
        cluster_start_s = time.perf_counter() - began
        try:
            ray_engine = Parallelism(args.num_envs, ray=RayConfig(env_actors=args.actors))
            began = time.perf_counter()
            with open_rollouts(env, {"view": "compact"}, model, model_dir, ray_engine) as cold:
                start_up_s = time.perf_counter() - began
                cold_s, _, _ = _timed(cold, starts, prompt, config, scratch / "cold.jsonl")
            with open_rollouts(env, {"view": "compact"}, model, model_dir, ray_engine) as warm:
                warm_s, driver_cpu, ray_episodes = _timed(warm, starts, prompt, config, scratch / "warm.jsonl")
            endpoint = (
                {
                    "episodes_per_s_per_endpoint": round(
                        _endpoint_episodes_per_s(model_dir, args.actors, args.num_envs, (env, prompt, starts, config)),
                        3,
                    )
                }
                if args.endpoint
                else {}
            )
        finally:
            ray.shutdown()
    assert ray_episodes == local_episodes, "the engines sampled different episodes"
    episodes = len(ray_episodes)
    per_actor = episodes / warm_s / args.actors
    driver_per_episode = driver_cpu / episodes
    print_figures(
        {
            "episodes": episodes,
            "steps": sum(len(t.turns) for t in ray_episodes),
            "actors": args.actors,
            "local_s": round(local_s, 2),
            "ray_warm_s": round(warm_s, 2),
            "overhead": round(warm_s / local_s - 1, 3),
            "ray_first_stage_s": round(start_up_s + cold_s, 2),
            "first_stage_overhead": round((start_up_s + cold_s) / local_s - 1, 3),
            "actor_start_s": round(start_up_s, 2),
            "ray_instance_start_s": round(cluster_start_s, 2),
            "episodes_per_s_per_actor": round(per_actor, 3),
            "driver_cpu_ms_per_episode": round(1000 * driver_per_episode, 2),
            "local_driver_cpu_ms_per_episode": round(1000 * local_cpu / episodes, 2),
            "driver_bound_actors": int(1 / (driver_per_episode * per_actor)),
            **endpoint,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
