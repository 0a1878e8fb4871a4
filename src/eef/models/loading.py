"""Loading a causal LM and its tokenizer with ``from_pretrained``, for generation and training alike.

A checkpoint is a local directory or a hub id; ``device`` and ``dtype`` take ``auto`` (CUDA when
available, bfloat16 there and float32 on the CPU). LoRA adapters are added with PEFT for training.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from eef.errors import EefError, UnknownNameError
from eef.models import DEVICE_PATTERN, DTYPE_NAMES, check_local_checkpoint, local_hint
from eef.models.requirements import check_requirements
from eef.train.settings import TRAIN_RECORD

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from eef.train.settings import LoraSettings

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


def flush_denormals() -> bool:
    """Make this thread's CPU arithmetic treat denormal numbers as zero; returns whether the CPU can.

    A trained model's sharp softmaxes and their gradients can underflow into denormals, which x86
    CPUs compute on a slow path: the default's SFT-POS slowed by a third as it trained without this
    (docs/benchmarks.md, 2026-12-07). Results change only where a value is below 1.2e-38. The
    setting is per thread and a thread takes it from the one that starts it, so call this before
    torch's first parallel operation starts its intra-op threads (the first thing a run does).
    """
    return torch.set_flush_denormal(True)


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU.

    Raises:
        EefError: CUDA asked for where torch has none.
    """
    if not re.fullmatch(DEVICE_PATTERN, device):
        raise EefError(f"device {device!r}: expected auto, cpu, cuda or cuda:N (or mps, xpu, npu, hpu)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EefError(f"device {device!r}: this torch sees no CUDA device (use auto or cpu, or a CUDA build of torch)")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on CUDA and float32 on the CPU.

    >>> pick_dtype("auto", torch.device("cpu")), pick_dtype("float16", torch.device("cpu"))
    (torch.float32, torch.float16)
    """
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise UnknownNameError("dtype", dtype, ["auto", *DTYPES])
    return DTYPES[dtype]


def check_checkpoint_requirements(checkpoint: Path) -> None:
    """Refuse a checkpoint whose training record asks for package versions other than the installed ones.

    Raises:
        EefError: naming the record, the package and both versions.
    """
    record = checkpoint / TRAIN_RECORD
    if not record.is_file():
        return
    try:
        facts = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EefError(f"{record}: not readable ({e})") from None
    if isinstance(facts, dict) and "requires" in facts:  # checkpoints written before it was recorded have none
        check_requirements(facts["requires"], record)


def load_model_and_tokenizer(
    path: str | Path, device: str = "auto", dtype: str = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM (in eval mode, on ``device``) and its tokenizer.

    Raises:
        EefError: no such directory, not a model, a hub id without network, or a tokenizer
            without a chat template (eef renders conversations with it).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = pick_device(device)
    path = check_local_checkpoint(path)
    if Path(path).is_dir():
        if not (Path(path) / "config.json").is_file():
            # transformers' own error for a folder without a model differs by version (some raise ImportError)
            raise EefError(f"{path}: cannot load a model and tokenizer (no config.json: not a model directory)")
        check_checkpoint_requirements(Path(path))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        if tokenizer.chat_template is None:
            raise EefError(f"{path}: the tokenizer has no chat template; eef renders conversations with it")
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=pick_dtype(dtype, target))
    except (OSError, ValueError) as e:  # no such directory, not a model, a hub id with no network
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        local = "" if Path(path).exists() else f"; no such local directory either{local_hint(path)}"
        raise EefError(f"{path}: cannot load a model and tokenizer ({first_line}{local})") from None
    # transformers' stubs type the decorated ``to`` as taking only the model itself
    return model.to(target).eval(), tokenizer  # type: ignore[arg-type]


def add_lora(model: PreTrainedModel, lora: LoraSettings) -> PeftModel:
    """``model`` wrapped by PEFT with fresh LoRA adapters; only the adapters train."""
    from peft import LoraConfig, get_peft_model

    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type="CAUSAL_LM"
    )
    return get_peft_model(model, config)
