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
