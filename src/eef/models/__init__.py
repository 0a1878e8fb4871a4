"""Models: loading checkpoints (:mod:`eef.models.loading`) and the tiny from-scratch default (:mod:`eef.models.tiny`)."""

from pathlib import Path

from eef.errors import EefError

DTYPE_NAMES = ("float32", "bfloat16", "float16")  # the dtypes a model may be loaded in, besides auto
DEVICE_PATTERN = (
    r"auto|cpu|(cuda|mps|xpu|npu|hpu)(:\d+)?"  # auto, or a torch device name, with an index where it takes one
)


def check_local_checkpoint(path: str | Path) -> str:
    """The checkpoint as transformers should read it (``~`` expanded); refuses one that can only
    name a local directory, and that directory does not exist, before transformers takes it for a
    hub id (and retries the network for a minute).

    Only local: absolute, starting with ``.`` or ``~``, or with more than one ``/`` (a hub id has
    at most one). ``runs/ckpt`` may be a hub id: see :func:`local_hint` for the message after.

    Raises:
        EefError: the directory does not exist (naming what its parent holds).
    """
    text = str(path)
    local = Path(text).expanduser()
    if local.exists() or not (local.is_absolute() or text.startswith((".", "~")) or len(Path(text).parts) > 2):
        return str(local) if text.startswith("~") else text
    raise EefError(f"{text}: no such checkpoint directory{local_hint(text)}")


def local_hint(path: str | Path) -> str:
    """What the local directory ``path`` would lie in holds, for a message about a checkpoint that
    is found neither there nor on the hub (``; runs holds: a, b``), or nothing."""
    parent = Path(str(path)).expanduser().parent
    if str(parent) in ("", ".") or not parent.is_dir():
        return ""
    held = sorted(p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
    return f"; {parent} holds: {', '.join(held[:8])}{', ...' if len(held) > 8 else ''}" if held else ""
