"""The ``served`` backend: eef starts a server for the checkpoint, talks to it as ``openai``, stops it.

A run trains a new checkpoint every iteration, so a server started by hand would serve a stale
model. Here each exploration or evaluation starts ``model.server_command`` (``vllm serve`` by
default) on a free port, waits until it lists its model, and stops it when done, freeing the
GPUs for the next training stage. The server is a process of its own, so it may use every GPU
of the machine (tensor or data parallel) while the training processes of a multi-process run
wait, and it never joins their process group.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from eef.agent.openai_policy import OpenAIPolicy
from eef.agent.policy import Completion, GenerationRequest, Policy, SamplingParams
from eef.errors import EefError

PLACEHOLDERS = ("checkpoint", "port", "gpus")
STOP_GRACE_S = 30.0  # a server gets this long to exit after SIGTERM before SIGKILL


def server_argv(template: str, checkpoint: str, port: int, gpus: int) -> list[str]:
    """The command line of ``template`` for one checkpoint; placeholders are filled per word, so a
    path with spaces stays one argument.

    >>> server_argv("serve {checkpoint} --port {port}", "runs/my ckpt", 8001, 1)
    ['serve', 'runs/my ckpt', '--port', '8001']

    Raises:
        EefError: the template does not parse or names an unknown placeholder.
    """
    try:
        words = shlex.split(template)
        return [word.format(checkpoint=checkpoint, port=port, gpus=gpus) for word in words]
    except (ValueError, KeyError, IndexError) as e:
        raise EefError(
            f"model.server_command: {template!r} is not a command with the placeholders "
            f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)} ({type(e).__name__}: {e})"
        ) from None


def free_port() -> int:
    """A TCP port nothing listens on now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cuda_devices() -> int:
    """The CUDA devices this machine shows, at least 1 (a server on the CPU counts as one)."""
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except ImportError:
        return 1


class ServedPolicy(Policy):
    """A checkpoint served by a command this policy starts, and stops on :meth:`close`.

    Args:
        checkpoint: the model to serve (a directory or hub id), also the model name of requests.
        command: the server's command template (:data:`eef.agent.backends.DEFAULT_SERVER_COMMAND`).
        start_timeout_s: how long the server may take to list its model.
        client: settings of the :class:`~eef.agent.openai_policy.OpenAIPolicy` that talks to it.

    Raises:
        EefError: the server exited or did not answer in time (with the end of its output).
    """

    def __init__(
        self, checkpoint: str, command: str, *, start_timeout_s: float, client: Mapping[str, Any] | None = None
    ):
        port = free_port()
        self.name = checkpoint
        self.argv = server_argv(command, checkpoint, port, cuda_devices())
        self.url = f"http://127.0.0.1:{port}/v1"
        self._log = tempfile.NamedTemporaryFile(prefix="eef-server-", suffix=".log", delete=False)  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                self.argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as e:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            raise EefError(f"model.server_command: cannot start {self.argv[0]!r}: {e.strerror or e}") from None
        self._client: OpenAIPolicy | None = None
        try:
            self._wait_until_listed(start_timeout_s)
            self._client = OpenAIPolicy(self.url, checkpoint, **dict(client or {}))
        except BaseException:
            self.close()
            raise

    @property
    def metrics(self) -> Mapping[str, int]:  # type: ignore[override]
        """The client's incident counters."""
        return self._client.metrics if self._client is not None else {}

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in order, from the server."""
        if self._client is None:
            raise EefError(f"the server of {self.name} is stopped")
        return self._client.generate(requests, params)

    def close(self) -> None:
        """Stop the client and the server (its whole process group: engine workers too)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process.returncode is None:
            signal_group(self.process, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            while time.monotonic() < deadline and not _ended(self.process.pid):
                time.sleep(0.1)
            # unreaped, the server keeps its group's id ours: end what outlived it (its engine's workers)
            signal_group(self.process, signal.SIGKILL)
        self.process.wait()
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)

    def _wait_until_listed(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EefError(
                    f"the model server exited with code {self.process.returncode} before serving "
                    f"{self.name} ({shlex.join(self.argv)}): {self._output_tail()}"
                )
            try:
                listed = httpx.get(f"{self.url}/models", timeout=5).json().get("data", [])
                names = [m.get("id") for m in listed if isinstance(m, dict)]
            except (httpx.HTTPError, ValueError, AttributeError):
                names = []  # not listening yet
            if self.name in names:
                return
            if names:  # serving, under another name: waiting would not change it
                raise EefError(
                    f"the model server serves {', '.join(map(str, names))}, not {self.name}; its command must "
                    f"serve the checkpoint under that name (eef serve and vllm serve: --served-model-name "
                    f"{{checkpoint}} in model.server_command: {shlex.join(self.argv)})"
                )
            time.sleep(0.5)
        raise EefError(
            f"the model server did not list {self.name} within {timeout_s:g} s "
            f"(model.server_start_timeout_s; {shlex.join(self.argv)}): {self._output_tail()}"
        )

    def _output_tail(self, lines: int = 5) -> str:
        self._log.flush()
        text = Path(self._log.name).read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) if text else "no output"


def signal_group(process: subprocess.Popen[Any], sig: int) -> None:
    """Send ``sig`` to ``process``'s group (it started a session of its own), if any of it still runs."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _ended(pid: int) -> bool:
    """Whether the child ``pid`` has exited, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
