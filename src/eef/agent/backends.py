"""Build a policy from its backend name: ``hf`` (transformers), ``openai`` (any compatible
server) or ``vllm`` (offline engine, extra ``gpu``)."""

from __future__ import annotations

from pathlib import Path

from eef.agent.policy import Policy
from eef.errors import EefError, UnknownNameError

BACKENDS = ("hf", "openai", "vllm")


def build_policy(backend: str, model: str, *, base_url: str | None = None, device: str = "auto",
                 dtype: str = "auto", max_batch_size: int = 64, concurrency: int = 16,
                 api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 60.0, max_retries: int = 5,
                 max_backoff_s: float = 60.0) -> Policy:
    """The policy for ``model`` (a checkpoint directory, hub id or served model name).

    Args:
        backend: ``hf``, ``openai`` or ``vllm``.
        model: what to load or which served model to call.
        base_url: the server's ``/v1`` URL (``openai`` only).
        device: ``auto``, ``cpu`` or ``cuda`` (``hf`` only).
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16`` (``hf``, ``vllm``).
        max_batch_size: conversations per forward pass (``hf`` only).
        concurrency: requests in flight (``openai`` only).
        api_key_env: the environment variable holding the API key (``openai`` only).
        timeout_s: the wall-clock deadline of one request attempt (``openai`` only).
        max_retries: further attempts after a transient failure (``openai`` only).
        max_backoff_s: the longest wait between attempts, ``Retry-After`` included (``openai`` only).
    """
    if backend in ("hf", "vllm") and _looks_like_path(model) and not Path(model).is_dir():
        raise EefError(f"model directory {model!r} does not exist")
    if backend == "hf":
        from eef.agent.hf_policy import HFPolicy

        return HFPolicy.from_pretrained(model, device=device, dtype=dtype, max_batch_size=max_batch_size)
    if backend == "openai":
        from eef.agent.openai_policy import OpenAIPolicy

        if not base_url:
            raise EefError("the openai backend needs a server URL: --base-url http://localhost:8000/v1")
        return OpenAIPolicy(base_url, model, api_key_env=api_key_env, concurrency=concurrency,
                            timeout_s=timeout_s, max_retries=max_retries, max_backoff_s=max_backoff_s)
    if backend == "vllm":
        from eef.agent.vllm_policy import VLLMPolicy

        return VLLMPolicy.from_pretrained(model, dtype=dtype)
    raise UnknownNameError("backend", backend, list(BACKENDS))


def _looks_like_path(model: str) -> bool:
    """A local path rather than a hub id (``org/name``)."""
    return model.startswith((".", "/", "~")) or Path(model).exists() or model.count("/") != 1
