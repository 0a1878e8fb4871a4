"""Policies by backend name: ``hf`` (transformers), ``openai`` (any compatible server), ``vllm``
(offline engine, extra ``gpu``) and ``served`` (a server eef starts per checkpoint, ``vllm serve``
by default) are built in; :func:`register_backend` adds one."""

from __future__ import annotations

from collections.abc import Callable

from eef.agent.policy import Policy
from eef.errors import EefError, UnknownNameError
from eef.models import check_local_checkpoint

# (model, *, base_url, device, dtype, max_batch_size, decode, concurrency, api_key_env, timeout_s, max_retries,
# max_backoff_s, server_command, server_start_timeout_s) -> Policy; a backend takes the settings it
# uses and ignores the rest
BackendFactory = Callable[..., Policy]

# the ``served`` backend's command: {checkpoint} is the model to serve and the name requests use,
# {port} a free port, {gpus} the machine's CUDA devices (at least 1)
DEFAULT_SERVER_COMMAND = (
    "vllm serve {checkpoint} --host 127.0.0.1 --port {port} --served-model-name {checkpoint} "
    "--tensor-parallel-size {gpus} --seed 0"
)


def _hf(model: str, *, device: str, dtype: str, max_batch_size: int, decode: str, **_: object) -> Policy:
    from eef.agent.hf_policy import HFPolicy

    return HFPolicy.from_pretrained(model, device=device, dtype=dtype, max_batch_size=max_batch_size, decode=decode)


def _openai(
    model: str,
    *,
    base_url: str | None,
    concurrency: int,
    api_key_env: str,
    timeout_s: float,
    max_retries: int,
    max_backoff_s: float,
    **_: object,
) -> Policy:
    from eef.agent.openai_policy import OpenAIPolicy

    if not base_url:
        raise EefError("the openai backend needs a server URL: --base-url http://localhost:8000/v1")
    return OpenAIPolicy(
        base_url,
        model,
        api_key_env=api_key_env,
        concurrency=concurrency,
        timeout_s=timeout_s,
        max_retries=max_retries,
        max_backoff_s=max_backoff_s,
    )


def _served(
    model: str,
    *,
    server_command: str,
    server_start_timeout_s: float,
    concurrency: int,
    api_key_env: str,
    timeout_s: float,
    max_retries: int,
    max_backoff_s: float,
    **_: object,
) -> Policy:
    from eef.agent.served import ServedPolicy

    client = {"concurrency": concurrency, "api_key_env": api_key_env, "timeout_s": timeout_s}
    return ServedPolicy(
        model,
        server_command,
        start_timeout_s=server_start_timeout_s,
        client={**client, "max_retries": max_retries, "max_backoff_s": max_backoff_s},
    )


def _vllm(model: str, *, dtype: str, **_: object) -> Policy:
    from eef.agent.vllm_policy import VLLMPolicy

    return VLLMPolicy.from_pretrained(check_local_checkpoint(model), dtype=dtype)


_BACKENDS: dict[str, BackendFactory] = {"hf": _hf, "openai": _openai, "vllm": _vllm, "served": _served}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``name`` a backend (``model.backend``, ``--backend``) built by ``factory``, which is
    called as ``factory(model, **settings)`` with the settings :func:`build_policy` lists."""
    _BACKENDS[name] = factory


def backend_names() -> list[str]:
    """The backends that :func:`build_policy` knows."""
    return list(_BACKENDS)


def build_policy(
    backend: str,
    model: str,
    *,
    base_url: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    max_batch_size: int = 64,
    decode: str = "auto",
    concurrency: int = 16,
    api_key_env: str = "OPENAI_API_KEY",
    timeout_s: float = 60.0,
    max_retries: int = 5,
    max_backoff_s: float = 60.0,
    server_command: str = DEFAULT_SERVER_COMMAND,
    server_start_timeout_s: float = 1200.0,
) -> Policy:
    """The policy for ``model`` (a checkpoint directory, hub id or served model name).

    Args:
        backend: a name of :func:`backend_names`.
        model: what to load or which served model to call.
        base_url: the server's ``/v1`` URL (``openai`` only).
        device: ``auto``, ``cpu`` or ``cuda`` (``hf`` only).
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16`` (``hf``, ``vllm``).
        max_batch_size: conversations per forward pass (``hf`` only).
        decode: ``auto`` (compiled on CUDA, models up to 1.5B), ``eager`` or ``compiled`` decoding steps (``hf`` only;
            see :class:`eef.agent.hf_policy.HFPolicy`).
        concurrency: requests in flight (``openai``, ``served``).
        api_key_env: the environment variable holding the API key (``openai``, ``served``).
        timeout_s: the wall-clock deadline of one request attempt (``openai``, ``served``).
        max_retries: further attempts after a transient failure (``openai``, ``served``).
        max_backoff_s: the longest wait between attempts, ``Retry-After`` included (``openai``, ``served``).
        server_command: the command that serves ``model`` (``served`` only; see :mod:`eef.agent.served`).
        server_start_timeout_s: how long that server may take to start (``served`` only).
    """
    if backend not in _BACKENDS:
        raise UnknownNameError("backend", backend, backend_names())
    return _BACKENDS[backend](
        model,
        base_url=base_url,
        device=device,
        dtype=dtype,
        max_batch_size=max_batch_size,
        decode=decode,
        concurrency=concurrency,
        api_key_env=api_key_env,
        timeout_s=timeout_s,
        max_retries=max_retries,
        max_backoff_s=max_backoff_s,
        server_command=server_command,
        server_start_timeout_s=server_start_timeout_s,
    )
