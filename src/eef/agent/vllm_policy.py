"""A policy over vLLM's offline engine (``vllm.LLM``), for fast rollouts on CUDA machines.

Prefix caching is on: exploration restarts many rollouts from the same expert states, so their
prompts share long prefixes whose KV blocks vLLM then computes once. Each request samples with
its own seed, as with the other backends.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eef.agent.policy import Completion, GenerationRequest, Policy, SamplingParams, apply_stop
from eef.errors import EefError


class VLLMPolicy(Policy):
    """Batched generation with a ``vllm.LLM``.

    Args:
        llm: the engine (see :meth:`from_pretrained`).
        name: the name recorded in provenance (the checkpoint path).
    """

    def __init__(self, llm: Any, *, name: str):
        self.llm, self.name = llm, name

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        dtype: str = "auto",
        seed: int = 0,
    ) -> VLLMPolicy:
        """Start an engine on a checkpoint directory (or hub id).

        Raises:
            EefError: vLLM is not installed.
        """
        try:
            import vllm
        except ImportError as error:
            raise EefError("vLLM is not installed: pip install 'eef[gpu]' on a CUDA machine") from error
        llm = vllm.LLM(
            model=str(path),
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            dtype=dtype,
            seed=seed,
            enable_prefix_caching=True,
        )
        return cls(llm, name=str(path))

    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Completion]:
        """One completion per request, in order (vLLM schedules the whole list itself)."""
        from vllm import SamplingParams as VLLMSamplingParams

        if not requests:
            return []
        sampling = [
            VLLMSamplingParams(
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                stop=list(params.stop) or None,
                seed=request.seed,
            )
            for request in requests
        ]
        outputs = self.llm.chat([list(request.messages) for request in requests], sampling, use_tqdm=False)
        completions = []
        for output in outputs:
            choice = output.outputs[0]
            text, _ = apply_stop(choice.text, params.stop)
            completions.append(
                Completion(
                    text.strip(),
                    len(output.prompt_token_ids or ()),
                    len(choice.token_ids),
                    choice.finish_reason or "stop",
                    {"cached_tokens": getattr(output, "num_cached_tokens", None) or 0},
                )
            )
        return completions

    def close(self) -> None:
        """Drop the engine; its GPU memory is freed once nothing else refers to it."""
        self.llm = None
        gc.collect()
