"""Models: loading checkpoints (:mod:`eef.models.loading`) and the tiny from-scratch default (:mod:`eef.models.tiny`)."""

DTYPE_NAMES = ("float32", "bfloat16", "float16")  # the dtypes a model may be loaded in, besides auto
DEVICE_PATTERN = (
    r"auto|cpu|(cuda|mps|xpu|npu|hpu)(:\d+)?"  # auto, or a torch device name, with an index where it takes one
)
