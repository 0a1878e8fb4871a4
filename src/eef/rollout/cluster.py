"""Rollouts on a Ray cluster (``rollout.engine: ray``): environments and policies in Ray actors.

Each actor builds the run's environment (``num_envs`` clones of it) once, and for each stage a
policy (the checkpoint on the actor's CPU or GPU, or an OpenAI-compatible endpoint); it rolls
out its share of the starts with the code a local worker runs (:func:`eef.rollout.serial.stream_in_process`), yielding
each episode as it ends. The driver waits on all actors' streams at once and hands every episode
to ``on_trajectory`` as it arrives, so a crash of the driver loses nothing finished and a resume
continues as with the local engine; sampling seeds are per request, so the episodes are those
the local engine samples.

An actor that dies (its process killed, its node lost) loses only its unfinished episodes: they
are started again on the next actor (Ray restarts the dead one, up to ``max_retries`` times),
each start at most ``max_retries`` times, and counted in the result's ``env_incidents``.
Ray is imported only here, and only when a cluster is asked for.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from eef.agent.policy import Policy
from eef.checks import above, at_least, check_fields, each, not_empty
from eef.envs.protocol import TextEnv
from eef.envs.registry import make
from eef.errors import EefError
from eef.progress import progress_bar
from eef.rollout.envs import cloned_envs
from eef.rollout.plan import RolloutConfig, RolloutResult, Start, put_in_start_order, trajectory_id
from eef.rollout.serial import stream_in_process
from eef.trajectory import Message, Trajectory

INSTALL_HINT = "pip install 'eef[ray]'"
CONNECT_TIMEOUT_S = 5.0  # a probe of an address or endpoint; a live one answers at once


@dataclass(frozen=True)
class RayConfig:
    """Where and how ``rollout.engine: ray`` rolls out.

    Attributes:
        address: the cluster (``HOST:PORT`` of the head started with ``ray start --head``, or
            ``auto``); null starts a Ray instance inside this process, sized for the actors.
        env_actors: actors, each with ``rollout.num_envs / env_actors`` environments and a policy.
        num_cpus_per_actor: CPUs Ray reserves for each actor (its torch threads on the CPU).
        num_gpus_per_actor: GPUs reserved for each actor (a fraction shares one GPU), for
            ``model.backend: hf`` on GPU nodes.
        endpoints: with ``model.backend: openai``, the OpenAI-compatible servers (``vllm serve``
            on GPU nodes) the actors share: actor ``i`` calls ``endpoints[i % len]`` (empty:
            ``model.base_url``).
        max_retries: how often a start whose actor died is started again (and how often Ray
            restarts each dead actor) before the stage fails.
        start_timeout_s: how long the actors may take to be placed and to load their policy.
        silence_timeout_s: how long the actors may send nothing (no finished episode) before the
            stage fails naming the silent ones.
        object_store_mb: the object store of a Ray instance started here (``address`` null).
    """

    address: str | None = None
    env_actors: int = 2
    num_cpus_per_actor: float = 1.0
    num_gpus_per_actor: float = 0.0
    endpoints: tuple[str, ...] = ()
    max_retries: int = 2
    start_timeout_s: float = 300.0
    silence_timeout_s: float = 1800.0
    object_store_mb: int = 200

    def __post_init__(self) -> None:
        check_fields(
            self,
            address=not_empty,
            env_actors=at_least(1),
            num_cpus_per_actor=above(0),
            num_gpus_per_actor=at_least(0),
            endpoints=each(not_empty, empty_ok=True),
            max_retries=at_least(0),
            start_timeout_s=above(0),
            silence_timeout_s=above(0),
            object_store_mb=at_least(80),  # Ray's floor is 75 MiB
        )

    def endpoint(self, actor: int, default: str | None) -> str | None:
        """The endpoint actor number ``actor`` calls (``default`` without ``endpoints``)."""
        return self.endpoints[actor % len(self.endpoints)] if self.endpoints else default


class EnvActor:
    """One Ray actor: its environments, for as long as the driver's connection lasts, and the
    policy of the current stage, rolling out the shares it is given.

    The policy comes with every call (``make_policy``, loaded at the first), so an actor that Ray
    restarted after a crash loads it again. It changes to the driver's working directory (where
    that exists on its node): relative checkpoint and data paths mean what they mean to the driver
    and the policy's name recorded in provenance is the driver's."""

    def __init__(self, workdir: str, index: int, env_name: str, env_options: Mapping[str, Any], num_envs: int):
        if os.path.isdir(workdir):
            os.chdir(workdir)
        self.index = index
        self.envs_held = ExitStack()
        first = make(env_name, **env_options)
        self.envs_held.callback(first.close)
        self.envs: list[TextEnv] = self.envs_held.enter_context(cloned_envs(first, num_envs, env_options))
        self.policy: Policy | None = None

    def describe(self, make_policy: Callable[[int], Policy]) -> tuple[str, int]:
        """Load the policy; its name and this actor's process id (for tests that kill it)."""
        return self._policy(make_policy).name, os.getpid()

    def rollout(
        self,
        starts: Sequence[Start],
        prompt: tuple[Message, ...],
        config: RolloutConfig,
        description: str,
        make_policy: Callable[[int], Policy],
    ) -> Generator[Trajectory | RolloutResult, None, None]:
        """Each episode as it ends, then the share's totals (without the trajectories)."""
        policy = self._policy(make_policy)
        totals = yield from stream_in_process(self.envs, policy, starts, prompt, config, description=description)
        totals.trajectories = []
        yield totals

    def unload(self) -> None:
        """Close the stage's policy (a model on a GPU frees it for training)."""
        if self.policy is not None:
            self.policy.close()
            self.policy = None

    def _policy(self, make_policy: Callable[[int], Policy]) -> Policy:
        if self.policy is None:
            self.policy = make_policy(self.index)
        return self.policy


@dataclass
class _Share:
    """Starts given to one actor in one call, and the ids of those already received."""

    actor: int
    starts: list[Start]
    received: set[str] = field(default_factory=set)


@dataclass
class RayRollouts:
    """Started actors, ready for :meth:`__call__` (a :class:`eef.rollout.Rollouts`)."""

    ray: Any
    actors: list[Any]
    settings: RayConfig
    env: TextEnv
    make_policy: Callable[[int], Policy]
    model: str
    pids: list[int]

    def __call__(
        self,
        starts: Sequence[Start],
        prompt: tuple[Message, ...],
        config: RolloutConfig,
        *,
        on_trajectory: Callable[[Trajectory], object] | None = None,
        progress: bool = False,
        description: str = "rollout",
    ) -> RolloutResult:
        """One episode per start, the starts dealt out to the actors (see the module docstring)."""
        ray = self.ray
        began = time.perf_counter()
        result = RolloutResult()
        finished: list[Trajectory] = []
        attempts: Counter = Counter()  # start key -> calls that lost it
        running: dict[Any, _Share] = {}
        bar = progress_bar(len(starts), description, "ep", progress)

        def submit(share: _Share) -> None:
            call = self.actors[share.actor].rollout.options(num_returns="streaming")
            running[call.remote(share.starts, prompt, config, description, self.make_policy)] = share

        count = min(len(self.actors), len(starts))
        for a in range(count):
            submit(_Share(a, list(starts[a::count])))
        try:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1, timeout=self.settings.silence_timeout_s)
                if not ready:
                    silent = sorted(s.actor for s in running.values())
                    raise EefError(
                        f"{description}: Ray actors {', '.join(map(str, silent))} sent nothing for "
                        f"{self.settings.silence_timeout_s:g} s (the episodes saved so far are kept; run again "
                        "to continue, or raise ray.silence_timeout_s)"
                    )
                stream = ready[0]
                share = running[stream]
                try:
                    item = ray.get(next(stream))
                except StopIteration:
                    del running[stream]
                    continue
                except ray.exceptions.RayTaskError as e:  # the actor's code raised: a retry would too
                    raise EefError(f"{description}: Ray actor {share.actor} failed:\n{e}") from None
                except ray.exceptions.RayError as e:  # the actor or its node died
                    del running[stream]
                    retry = _Share((share.actor + 1) % len(self.actors), _unfinished(share, config))
                    _count_loss(retry.starts, attempts, self.settings.max_retries, description, e)
                    result.env_incidents["ray_actor_losses"] += 1
                    result.env_incidents["ray_episodes_retried"] += len(retry.starts)
                    if retry.starts:
                        submit(retry)
                    continue
                if isinstance(item, Trajectory):
                    share.received.add(item.id)
                    finished.append(item)
                    result.steps += len(item.turns) - item.provenance.start_step
                    if on_trajectory is not None:
                        on_trajectory(item)
                    bar.update(1)
                else:
                    result.diverged += item.diverged
                    result.model_calls += item.model_calls
                    result.env_incidents.update(item.env_incidents)
                    bar.update(len(item.diverged))
        finally:
            bar.close()
            for stream in running:  # an error above: stop the other actors' work
                ray.cancel(stream)
        put_in_start_order(result, finished, starts, config, description)
        result.seconds = time.perf_counter() - began
        return result


def _unfinished(share: _Share, config: RolloutConfig) -> list[Start]:
    return [s for s in share.starts if trajectory_id(config, s) not in share.received]


def _count_loss(lost: Sequence[Start], attempts: Counter, max_retries: int, description: str, error: Exception) -> None:
    """Count one more loss of each of ``lost``; fail once a start has been lost ``max_retries`` + 1 times."""
    for start in lost:
        attempts[start.key] += 1
        if attempts[start.key] > max_retries:
            raise EefError(
                f"{description}: episode {start.key} was lost with its Ray actor {attempts[start.key]} times "
                f"(ray.max_retries: {max_retries}); last: {str(error).splitlines()[0]}"
            )


# the actors of the last (connection, environment, settings), kept between stages: started once, their
# environments (ScienceWorld's JVMs) and processes serve every stage of a run; only the policy changes
_POOLS: dict[tuple, list[Any]] = {}


@contextmanager
def ray_rollouts(
    settings: RayConfig,
    env: TextEnv,
    env_options: Mapping[str, Any],
    num_envs: int,
    make_policy: Callable[[int], Policy],
) -> Iterator[RayRollouts]:
    """``settings.env_actors`` actors, each with ``num_envs / env_actors`` clones of ``env`` (made
    from its name and ``env_options``) and ``make_policy(actor number)``. The actors are started
    at the first call and kept for later ones with the same environment and settings (their
    policies are closed on exit); an error kills them.

    Raises:
        EefError: Ray is not installed, the cluster cannot be reached, lacks the resources asked
            for, or the actors did not start (each naming the setting to change) — before any
            episode is rolled out.
    """
    ray = connect(settings)
    context = ray.get_runtime_context()
    options = json.dumps(env_options, sort_keys=True, default=str)
    key = (context.get_node_id(), context.get_job_id(), env.name, options, num_envs, settings)
    actors = _POOLS.pop(key, None)
    if actors is None:
        for stale in _POOLS.values():  # another environment or settings: its actors hold the resources
            for actor in stale:
                ray.kill(actor, no_restart=True)
        _POOLS.clear()
        check_resources(ray, settings)
        actor_class = ray.remote(EnvActor)
        per_actor = max(1, num_envs // settings.env_actors)
        actors = [
            actor_class.options(
                num_cpus=settings.num_cpus_per_actor,
                num_gpus=settings.num_gpus_per_actor,
                max_restarts=settings.max_retries,
            ).remote(os.getcwd(), a, env.name, dict(env_options), per_actor)
            for a in range(settings.env_actors)
        ]
    kept = False
    try:
        described = _await_start(ray, actors, settings, make_policy)
        yield RayRollouts(ray, actors, settings, env, make_policy, described[0][0], [pid for _, pid in described])
        kept = _unloaded(ray, actors, settings)
    finally:
        if kept:
            _POOLS[key] = actors
        else:  # an error, or the rollout's own failure: nothing is left running
            for actor in actors:
                ray.kill(actor, no_restart=True)


def _unloaded(ray: Any, actors: list[Any], settings: RayConfig) -> bool:
    """Close the actors' policies; False where an actor is lost for good (its restarts spent)."""
    try:
        ray.get([a.unload.remote() for a in actors], timeout=settings.start_timeout_s)
    except ray.exceptions.RayError:
        return False
    return True


def _await_start(
    ray: Any, actors: list[Any], settings: RayConfig, make_policy: Callable[[int], Policy]
) -> list[tuple[str, int]]:
    try:
        return ray.get([a.describe.remote(make_policy) for a in actors], timeout=settings.start_timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise EefError(
            f"ray.start_timeout_s: the {settings.env_actors} Ray actors (ray.num_cpus_per_actor "
            f"{settings.num_cpus_per_actor:g}, ray.num_gpus_per_actor {settings.num_gpus_per_actor:g}) did not "
            f"start within {settings.start_timeout_s:g} s; free now: {_shown(ray.available_resources())} "
            "(see `ray status`)"
        ) from None
    except ray.exceptions.RayError as e:
        raise EefError(f"a Ray actor could not start: {_cause(e)}") from None


def connect(settings: RayConfig) -> Any:
    """The ``ray`` module, connected: to ``settings.address``, or to a Ray instance started in
    this process (kept until the process exits, for every later stage). An existing connection
    is reused.

    Raises:
        EefError: Ray is not installed or the address cannot be reached.
    """
    try:
        import ray
    except ImportError:
        raise EefError(f"rollout.engine: ray needs the ray package ({INSTALL_HINT})") from None
    if str(settings.address).startswith("ray://"):
        raise EefError(
            f"ray.address: {settings.address} is a Ray Client address, and Ray Client cannot stream the actors' "
            "episodes; run eef on a node of the cluster and give the head's HOST:PORT (or auto)"
        )
    # checked even when connected: a wrong address is an error, never a silent reuse of another cluster
    if settings.address not in (None, "auto"):
        check_reachable(str(settings.address), "ray.address")
    if ray.is_initialized():
        return ray
    quiet: dict[str, Any] = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
    if settings.address is None:
        ray.init(
            address="local",  # a new instance, even where `ray start` left the address of another
            num_cpus=math.ceil(settings.env_actors * settings.num_cpus_per_actor),
            num_gpus=math.ceil(settings.env_actors * settings.num_gpus_per_actor),
            object_store_memory=settings.object_store_mb * 1024 * 1024,
            **quiet,
        )
        return ray
    try:
        ray.init(address=settings.address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise EefError(f"ray.address: cannot connect to the Ray cluster at {settings.address!r}: {_cause(e)}") from None
    return ray


RAY_BACKENDS = ("hf", "openai")  # the others start one engine per process


@dataclass(frozen=True)
class EngineSettingNames:
    """How the user spells each setting the Ray engine's rules name: run keys or CLI options."""

    backend: str
    workers: str
    env_actors: str
    num_envs: str


RUN_KEYS = EngineSettingNames("model.backend", "rollout.workers", "ray.env_actors", "rollout.num_envs")


def ray_engine_problems(
    backend: str, workers: int, env_actors: int, num_envs: int, names: EngineSettingNames = RUN_KEYS
) -> list[str]:
    """What stops rollouts on Ray actors with these settings, each problem led by the setting's name."""
    problems = []
    if backend not in RAY_BACKENDS:
        problems.append(
            f"{names.backend}: {backend} runs one engine per process; on Ray actors use hf (the checkpoint in "
            "each actor) or openai (servers started beforehand)"
        )
    if workers > 1:
        problems.append(
            f"{names.workers}: {workers} forked workers are the local engine's; on Ray set {names.env_actors} "
            f"(and leave {names.workers} at 1)"
        )
    if env_actors > num_envs:
        problems.append(
            f"{names.env_actors}: {env_actors} actors need at least as many environments "
            f"({names.num_envs} is {num_envs})"
        )
    return problems


def check_cluster(settings: RayConfig, backend: str, base_url: str | None) -> None:
    """What can be known to fail before a run does any work: Ray missing, ``ray.address``
    unreachable, too few CPUs or GPUs for the actors, an endpoint refusing connections."""
    check_resources(connect(settings), settings)
    if backend == "openai":
        check_endpoints(settings, base_url)


def check_endpoints(settings: RayConfig, base_url: str | None) -> None:
    """Fail, naming the key, when an endpoint the actors would call refuses connections."""
    urls = {settings.endpoint(actor, base_url) for actor in range(settings.env_actors)}
    for url in sorted(u for u in urls if u is not None):
        check_reachable(url, "ray.endpoints" if settings.endpoints else "model.base_url")


def check_reachable(address: str, key: str) -> None:
    """Fail at once, naming ``key``, when nothing accepts connections at ``address``
    (``HOST:PORT``, or a URL with one such as ``http://host:8000/v1``).

    Raises:
        EefError: the address has no port, or connecting to it fails.
    """
    netloc = address.split("://", 1)[-1].split("/", 1)[0]
    host, sep, port = netloc.rpartition(":")
    if not sep or not port.isdigit():
        if "://" in address:  # a URL without a port: its scheme's
            host, port = netloc, "443" if address.startswith("https") else "80"
        else:
            raise EefError(f"{key}: {address!r} is not HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise EefError(f"{key}: nothing accepts connections at {address} ({e.strerror or e})") from None


def check_resources(ray: Any, settings: RayConfig) -> None:
    """Fail, naming the key, when the cluster has fewer CPUs or GPUs than the actors ask for."""
    total = ray.cluster_resources()
    for kind, per_actor, key in (
        ("CPU", settings.num_cpus_per_actor, "ray.num_cpus_per_actor"),
        ("GPU", settings.num_gpus_per_actor, "ray.num_gpus_per_actor"),
    ):
        needed = settings.env_actors * per_actor
        if needed > total.get(kind, 0) + 1e-9:
            raise EefError(
                f"{key}: ray.env_actors {settings.env_actors} x {per_actor:g} {kind} need {needed:g} {kind}s; "
                f"the cluster has {total.get(kind, 0):g} (add nodes or ask for fewer)"
            )


def _cause(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _shown(resources: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(resources.items()) if k in ("CPU", "GPU")) or "nothing"
