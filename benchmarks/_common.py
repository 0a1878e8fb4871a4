"""What the benchmark scripts share: where the WebShop data is and how figures are printed."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_WEBSHOP_DATA = os.environ.get(
    "EEF_WEBSHOP_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "webshop-1k")
)


def print_figures(figures: dict, as_json: bool) -> None:
    """One figure per line; with ``as_json`` also one JSON object as the last line."""
    for key, value in figures.items():
        print(f"{key:28s} {value}")
    if as_json:
        print(json.dumps(figures))


def model_arguments(parser) -> None:
    """The options every model benchmark takes: which model and which device."""
    parser.add_argument("--model", help="Model directory (default: a fresh tiny eef model for the shop).")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", action="store_true")


def model_or_tiny(model: str | None, scratch: Path) -> str:
    """``model``, or a fresh tiny eef model for the built-in shop created under ``scratch``."""
    if model is not None:
        return model
    from eef.envs import make
    from eef.models.tiny import create_tiny_model

    return str(create_tiny_model(make("shop"), scratch / "tiny"))
