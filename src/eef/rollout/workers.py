"""Rollouts shared by several single-threaded worker processes on the CPU.

Decoding a small model on the CPU is bound by per-step overhead (Python, framework dispatch) and
memory latency more than by arithmetic, so processes scale where a second thread adds little
(figures in docs/benchmarks.md). Each worker is a fork of this process (the loaded model and the
environments are inherited, nothing is reloaded) that rolls out every ``workers``-th start with
every ``workers``-th environment; the parent saves each finished episode as it arrives, so an
interrupted stage resumes exactly as with one process.

A worker runs one thread: OpenMP (GNU libgomp, which PyTorch's Linux wheels use) hangs in a
forked child that starts a thread team after its parent has used one. Forking needs Linux, a
policy on the CPU and environments that live wholly in this process (``TextEnv.process_local``);
anything else rolls out in this process.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from eef.agent.policy import Policy
from eef.envs.protocol import TextEnv
from eef.errors import EefError
from eef.progress import progress_bar
from eef.rollout.plan import RolloutConfig, RolloutResult, Start, put_in_start_order
from eef.rollout.serial import rollout_in_process
from eef.trajectory import Message, Trajectory

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
EXIT_GRACE_S = 10.0  # how long a worker that has finished or failed may take to exit before it is killed


def can_fork(envs: Sequence[TextEnv], policy: Policy) -> bool:
    """Whether forked workers can share a rollout: on Linux, with a policy and environments that
    all declare ``process_local`` (they hold nothing outside this process)."""
    return sys.platform.startswith("linux") and policy.process_local and all(env.process_local for env in envs)


def rollout_in_workers(
    workers: int,
    envs: Sequence[TextEnv],
    policy: Policy,
    starts: Sequence[Start],
    prompt: tuple[Message, ...],
    config: RolloutConfig,
    *,
    on_trajectory: Callable[[Trajectory], object] | None,
    progress: bool,
    description: str,
    silence_timeout_s: float,
) -> RolloutResult:
    """``rollout(..., workers=workers)``: the starts and environments dealt out to forked workers
    (at most one per environment and per start; :func:`can_fork` must hold). ``model_calls`` sums
    the workers' calls.

    Every wait is bounded: a worker that sends nothing for ``silence_timeout_s`` seconds (stopped,
    or stuck in a call that never returns) is killed and named in the error."""
    began = time.perf_counter()
    context = multiprocessing.get_context("fork")
    processes: list[Any] = []
    inboxes: dict[int, _Inbox] = {}  # the read end of each worker still running
    pipes: list[int] = []
    finished: list[Trajectory] = []
    result = RolloutResult()
    bar = progress_bar(len(starts), description, "ep", progress)
    try:
        for w in range(workers):
            # a pipe per worker, made just before its fork so that no other worker inherits its
            # write end: a worker killed mid-message then leaves its pipe at end-of-file
            read_end, write_end = os.pipe()
            pipes.append(read_end)
            processes.append(
                context.Process(
                    target=_work,
                    daemon=True,
                    name=f"eef-rollout-{w}",
                    args=(
                        w,
                        os.getpid(),
                        envs[w::workers],
                        policy,
                        starts[w::workers],
                        prompt,
                        config,
                        description,
                        write_end,
                    ),
                )
            )
            processes[-1].start()
            os.close(write_end)
            inboxes[read_end] = _Inbox(w, read_end)
        while inboxes:
            wait_s = max(0.0, min(i.heard for i in inboxes.values()) + silence_timeout_s - time.monotonic())
            ready, _, _ = select.select(list(inboxes), [], [], wait_s)
            for fd in ready:
                inbox = inboxes[fd]
                messages = inbox.read()
                if messages is None:
                    _stop(processes[inbox.worker], EXIT_GRACE_S)
                    raise EefError(
                        f"{description}: rollout worker {inbox.worker} "
                        f"{_exit_text(processes[inbox.worker].exitcode)} before it finished (the "
                        "episodes saved so far are kept; run again to continue)"
                    )
                for kind, payload in messages:
                    if kind == "episode":
                        finished.append(payload)
                        result.steps += len(payload.turns) - payload.provenance.start_step
                        if on_trajectory is not None:
                            on_trajectory(payload)
                        bar.update(1)
                        bar.set_postfix(
                            steps_per_s=f"{result.steps / (time.perf_counter() - began):.1f}", refresh=False
                        )
                    elif kind == "done":
                        result.diverged += payload.diverged
                        result.model_calls += payload.model_calls
                        result.env_incidents.update(payload.env_incidents)
                        bar.update(len(payload.diverged))
                        del inboxes[fd]
                    else:
                        raise EefError(f"{description}: rollout worker {inbox.worker} failed:\n{payload}")
            _check_silence(list(inboxes.values()), silence_timeout_s, description)
        for process in processes:
            _stop(process, EXIT_GRACE_S)
    finally:
        bar.close()
        for process in processes:
            _stop(process, 0.0)
        for fd in pipes:
            os.close(fd)
    put_in_start_order(result, finished, starts, config, description)
    result.seconds = time.perf_counter() - began
    return result


class _Inbox:
    """The read end of one worker's pipe: bytes in as they come, whole messages out. Reading never
    waits for the rest of a message, so a worker stopped halfway through one cannot block the
    parent; each message is its pickle's length (8 bytes, big-endian), then the pickle."""

    def __init__(self, worker: int, fd: int):
        self.worker, self.fd = worker, fd
        self.buffer = bytearray()
        self.heard = time.monotonic()  # when the last byte came

    def read(self) -> list[tuple[str, Any]] | None:
        """The messages that what the pipe holds now completes; None at end of file. Call only
        when the pipe is readable."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            return None
        self.heard = time.monotonic()
        self.buffer += chunk
        messages = []
        while len(self.buffer) >= 8 and len(self.buffer) >= 8 + (size := int.from_bytes(self.buffer[:8], "big")):
            messages.append(pickle.loads(self.buffer[8 : 8 + size]))
            del self.buffer[: 8 + size]
        return messages


def _send(fd: int, message: tuple[str, Any]) -> None:
    data = pickle.dumps(message)
    view = memoryview(len(data).to_bytes(8, "big") + data)
    while view:
        view = view[os.write(fd, view) :]


def _check_silence(inboxes: list[_Inbox], timeout_s: float, description: str) -> None:
    silent = sorted(i.worker for i in inboxes if time.monotonic() - i.heard >= timeout_s)
    if silent:
        names = ("workers " if len(silent) > 1 else "worker ") + ", ".join(map(str, silent))
        raise EefError(
            f"{description}: rollout {names} sent nothing for {timeout_s:g} s (stopped or stuck) "
            "and was killed (the episodes saved so far are kept; run again to continue, or raise "
            "rollout.worker_timeout_s)"
        )


def _exit_text(code: int | None) -> str:
    """How a process ended, as ``multiprocessing`` reports it (a negative code is a signal)."""
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:  # a real-time signal has no name
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _stop(process: Any, grace_s: float) -> None:
    """Wait up to ``grace_s`` for ``process`` to exit, then kill it; SIGKILL also ends a stopped
    process, where SIGTERM would stay pending."""
    process.join(grace_s)
    if process.is_alive():
        process.kill()
        process.join()


def _work(
    worker: int,
    parent: int,
    envs: Sequence[TextEnv],
    policy: Policy,
    starts: Sequence[Start],
    prompt: tuple[Message, ...],
    config: RolloutConfig,
    description: str,
    pipe: int,
) -> None:
    """A worker's share; every finished episode, then the worker's totals, go into ``pipe``."""
    try:
        _die_with(parent)
        import torch

        torch.set_num_threads(1)  # see the module docstring: more threads hang after a fork
        done = rollout_in_process(
            envs,
            policy,
            starts,
            prompt,
            config,
            description=description,
            on_trajectory=lambda t: _send(pipe, ("episode", t)),
        )
        done.trajectories = []  # already sent one by one
        _send(pipe, ("done", done))
    except BaseException:
        _send(pipe, ("error", traceback.format_exc()))
    finally:
        os.close(pipe)


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when its parent dies (``kill -9`` included), so that no
    orphan goes on decoding beside the run that resumes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
