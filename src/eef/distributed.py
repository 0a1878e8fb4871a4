"""``eef run`` launched on several processes (``accelerate launch``, ``torchrun``): the first process
runs the pipeline, every process trains.

Expert data, exploration, labelling, evaluation and the report are the first process's (rank 0:
one copy of the environments, one run lock, one writer of the run directory). At each training
stage it sends the stage's arguments to the other processes, and all of them train together as
accelerate's configuration says (DDP, FSDP, DeepSpeed). In between, the others wait for the next
stage. When a process fails, the others are ended by the launcher (the first process never waits
for the others after a failure of its own: it exits, and the launcher ends the rest).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eef.train.data import TokenizeStats
    from eef.train.trainer import TrainResult

# a process waits for the next training stage through a whole exploration stage
STAGE_WAIT = timedelta(days=7)


def process_rank() -> tuple[int, int]:
    """This process's rank and the number of processes, as the launcher set them (0 and 1 alone)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class TrainingGroup:
    """The processes of one run: the first orchestrates and hands each training stage to all.

    Alone (no launcher) it is a plain call of :func:`eef.stages.train_checkpoint`.
    """

    def __init__(self) -> None:
        self.rank, self.size = process_rank()
        self._control: Any = None
        self._broken = False  # a stage failed here: the others may be inside it, so send them nothing more
        self._owns_default_group = False
        if self.size > 1:
            import torch
            import torch.distributed as dist

            if not dist.is_initialized():
                if torch.cuda.is_available():
                    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
                # training's own collectives keep the backend's timeout: a hang there is an error
                dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
                self._owns_default_group = True
            # stage arguments travel as pickled objects over gloo, which waits as long as told on any hardware
            self._control = dist.new_group(backend="gloo", timeout=STAGE_WAIT)

    @property
    def main(self) -> bool:
        """Whether this process orchestrates the run."""
        return self.rank == 0

    def train(self, objective: str = "sft", **stage: Any) -> tuple[TrainResult, TokenizeStats]:
        """Run a training stage on every process (called by the first process): ``objective``
        names the stage function (:data:`eef.stages.TRAINING`), ``stage`` holds its arguments."""
        from eef.stages import TRAINING

        release_accelerator_memory()  # what generation left cached
        self._send({"objective": objective, **{key: value for key, value in stage.items() if key != "log"}})
        try:
            return TRAINING[objective](**stage)
        except BaseException:
            self._broken = True
            raise
        finally:
            release_accelerator_memory()

    def follow(self) -> None:
        """Train each stage the first process sends until it says the run is over (the other processes)."""
        from eef.stages import TRAINING

        while (stage := self._receive()) is not None:
            objective = stage.pop("objective")
            TRAINING[objective](**{**stage, "log": None})  # a callback stays with the first process
            release_accelerator_memory()

    def close(self) -> None:
        """Tell the other processes the run is over (the first process), then leave the groups: a
        group still open when the interpreter exits can abort it (SIGABRT instead of its exit code)."""
        if self.size == 1:
            return
        import torch.distributed as dist

        if self.main and not self._broken:
            self._send(None)
        dist.destroy_process_group(None if self._owns_default_group else self._control)

    def __enter__(self) -> TrainingGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, stage: Mapping[str, Any] | None) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.broadcast_object_list([stage], src=0, group=self._control)

    def _receive(self) -> dict[str, Any] | None:
        import torch.distributed as dist

        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=self._control)
        return box[0]


def release_accelerator_memory() -> None:
    """Return the memory a finished training stage cached on the GPU, so that a model server
    started for the next stage can take it."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
