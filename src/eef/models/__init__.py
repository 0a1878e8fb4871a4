"""Models: loading checkpoints (:mod:`eef.models.loading`) and the tiny from-scratch default (:mod:`eef.models.tiny`)."""

from pathlib import Path

from eef.errors import EefError

DTYPE_NAMES = ("float32", "bfloat16", "float16")  # the dtypes a model may be loaded in, besides auto
DEVICE_PATTERN = (
    r"auto|cpu|(cuda|mps|xpu|npu|hpu)(:\d+)?"  # auto, or a torch device name, with an index where it takes one
)


def check_local_checkpoint(path: str | Path) -> None:
    """Refuse a checkpoint that names a local directory which does not exist, before transformers
    takes it for a hub id (and retries the network for a minute).

    Local: absolute, starting with ``.`` or ``~``, more than one ``/`` (a hub id has at most one), or
    a first part that is a local directory (``runs/ckpt`` where ``runs/`` exists).

    Raises:
        EefError: the directory does not exist (naming what its parent holds).
    """
    text = str(path)
    local = Path(text).expanduser()
    if local.exists():
        return
    first = Path(text).parts[0] if Path(text).parts else ""
    looks_local = text.startswith((".", "~", "/")) or text.count("/") > 1 or ("/" in text and Path(first).is_dir())
    if looks_local:
        parent = local.parent
        held = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        there = f"; {parent} holds: {', '.join(held[:8])}{', ...' if len(held) > 8 else ''}" if held else ""
        raise EefError(f"{text}: no such checkpoint directory{there}")
