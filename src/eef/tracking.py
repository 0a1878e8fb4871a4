"""Experiment tracking: a run's figures sent as they come to TensorBoard, Weights & Biases or MLflow,
through accelerate's trackers.

One run of eef is one project (its name); its parts are tracker runs of their own: ``stages``
(every stage record's numbers, keyed ``STAGE/METHOD/FIELD`` at the iteration as step: test win
rate per iteration, exploration successes, segment counts, ...) and one per training stage
(``train-METHOD-ITERATION``: loss and learning rate at every optimizer step). Nothing is tracked
unless asked (``tracking.report_to``, ``eef run --report-to``); only the main process reports.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eef.errors import EefError

# tracker -> the module it needs and the package that provides it
TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


@dataclass(frozen=True)
class Tracking:
    """Where one part of a run reports (picklable: it travels to every training process).

    Attributes:
        report_to: tracker names, of :data:`TRACKERS`; empty: nothing is tracked.
        logging_dir: TensorBoard's event files, MLflow's store and W&B's local files go here.
        project: the run's name (TensorBoard: the folder below ``logging_dir``; W&B: the project;
            MLflow: the experiment).
        part: this part's tracker run (``stages``, ``train-eef-1``).
    """

    report_to: tuple[str, ...] = ()
    logging_dir: str = "."
    project: str = "eef"
    part: str = "stages"

    def for_part(self, part: str) -> Tracking:
        return replace(self, part=part)


def check_trackers(report_to: tuple[str, ...], where: str = "tracking.report_to") -> None:
    """Refuse unknown trackers and trackers whose package is not installed, before any work.

    Raises:
        EefError: naming the tracker and what to install.
    """
    for name in report_to:
        if name not in TRACKERS:
            raise EefError(f"{where}: {name!r} is not a tracker; known: {', '.join(TRACKERS)}")
        module, package = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise EefError(f"{where}: {name} needs the {package} package (pip install {package})")


class Trackers:
    """The open trackers of one part: ``log`` numbers at a step, ``close`` at the end."""

    def __init__(self, trackers: list[Any]):
        self.trackers = trackers

    def log(self, values: Mapping[str, Any], step: int) -> None:
        if not self.trackers:  # called at every optimizer step: nothing to build when nothing is tracked
            return
        numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numbers:
            for tracker in self.trackers:
                tracker.log(numbers, step=step)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_trackers(tracking: Tracking | None) -> Trackers:
    """Start the trackers of ``tracking`` (none for None or an empty ``report_to``)."""
    if tracking is None or not tracking.report_to:
        return Trackers([])
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    check_trackers(tracking.report_to)
    logging_dir = Path(tracking.logging_dir)
    logging_dir.mkdir(parents=True, exist_ok=True)
    opened: list[Any] = []
    for name in tracking.report_to:
        if name == "tensorboard":
            tracker: Any = TensorBoardTracker(f"{tracking.project}/{tracking.part}", logging_dir)
        elif name == "wandb":
            tracker = WandBTracker(tracking.project, name=tracking.part, group=tracking.project, dir=str(logging_dir))
        else:
            tracker = MLflowTracker(tracking.project, logging_dir=str(logging_dir / "mlruns"), run_name=tracking.part)
        if hasattr(tracker, "start"):  # accelerate >= 1.6 starts a tracker apart from making it
            tracker.start()
        opened.append(tracker)
    return Trackers(opened)


def record_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stage record's numbers as tracker keys ``STAGE/METHOD/FIELD`` (nested tables flattened).

    >>> record_values({"stage": "eval", "method": "eef", "iteration": 1, "win_rate": 0.6, "navigation": {"next": 0.1}})
    {'eval/eef/win_rate': 0.6, 'eval/eef/navigation.next': 0.1}
    """
    prefix = "/".join(str(record[k]) for k in ("stage", "method") if k in record)
    out: dict[str, Any] = {}

    def add(key: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for inner, item in value.items():
                add(f"{key}.{inner}", item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"{prefix}/{key}"] = value

    for key, value in record.items():
        if key not in ("stage", "method", "iteration"):
            add(key, value)
    return out
