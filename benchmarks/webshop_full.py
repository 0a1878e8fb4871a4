"""WebShop at full scale: prepare a 1.18M-product catalog once, then start and step from it.

    python benchmarks/webshop_full.py [--products 1180000] [--dir DIR] [--json]

The real release cannot be downloaded here, so a synthetic one of the same size and shape is
written in the original files' format (eef.envs.shop.synthetic_release, seeded; reused when DIR
already holds one of the same shape) and the real loading code is measured on it:
`eef env prepare webshop` (prepare_s, in its own process), then a fresh process that makes the
environment from the preparation (start_s), plays --episodes human goals (search with the
instruction's words, open the first hit, click an option and a sub-page) and reports the median
search and click step and its peak resident memory. Targets (issue 18): prepare_s <= 900,
start_s <= 20, rss_mb <= 6000, median_search_ms <= 20, median_click_ms <= 1. same_as_1k: the
prepared path gives the in-memory path's goals and search results on the 1k data (when found).
With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from _common import DEFAULT_WEBSHOP_DATA, print_figures

TARGETS = {"prepare_s": 900, "start_s": 20, "rss_mb": 6000, "median_search_ms": 20, "median_click_ms": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=1_180_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/eef-webshop-full"))
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # the fresh process's part
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.dir, args.episodes)))
        return

    from eef.envs.shop.synthetic_release import ReleaseShape, write_synthetic_release

    shape = ReleaseShape(products=args.products)
    marker = args.dir / "synthetic.json"
    if not marker.is_file() or json.loads(marker.read_text())["shape"] != asdict(shape):
        started = time.monotonic()
        sizes = write_synthetic_release(
            args.dir, shape, on_product=lambda n: print(f"\rwritten {n:,} products", end="", file=sys.stderr)
        )
        print(file=sys.stderr)
        marker.write_text(json.dumps({"shape": asdict(shape), "sizes": sizes, "seconds": time.monotonic() - started}))
    sizes = json.loads(marker.read_text())["sizes"]

    started = time.monotonic()
    eef = [str(Path(sys.executable).with_name("eef"))]  # the entry point installed beside this Python
    subprocess.run([*eef, "env", "prepare", "webshop", "-o", f"data_dir={args.dir}", "--force"], check=True)
    prepare_s = time.monotonic() - started
    measured = subprocess.run(
        [sys.executable, __file__, "--measure", "--dir", str(args.dir), "--episodes", str(args.episodes)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures = {
        "products": sizes["products"],
        "items_shuffle_gb": round(sizes["items_shuffle.json"] / 1e9, 2),
        "prepare_s": round(prepare_s, 1),
        **json.loads(measured.stdout.strip().splitlines()[-1]),
        "same_as_1k": same_as_1k(Path(DEFAULT_WEBSHOP_DATA)),
    }
    figures["within_targets"] = {key: figures[key] <= limit for key, limit in TARGETS.items()}
    print_figures(figures, args.json)


def measure(data_dir: Path, episodes: int) -> dict:
    """Start the environment from the preparation and step it; the figures of this process."""
    started = time.monotonic()
    from eef.envs import make
    from eef.envs.shop.generated import naive_query

    env = make("webshop", data_dir=str(data_dir), goals="human", prepared=True)
    start_s = time.monotonic() - started
    search_ms, click_ms = [], []
    for task_id in env.task_ids("test")[:episodes]:
        env.reset(task_id)
        tick = time.perf_counter()
        env.step(f"search[{naive_query(env.instruction())}]")
        search_ms.append((time.perf_counter() - tick) * 1000)
        for _ in range(3):  # the first hit, then an option value or a sub-page of it
            clickable = [a for a in env.available_actions() if a not in ("click[back to search]", "click[< prev]")]
            choice = next((a for a in clickable if a not in ("click[next >]", "click[buy now]")), None)
            if choice is None:
                break
            tick = time.perf_counter()
            env.step(choice)
            click_ms.append((time.perf_counter() - tick) * 1000)
    return {
        "start_s": round(start_s, 2),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "median_search_ms": round(statistics.median(search_ms), 2),
        "median_click_ms": round(statistics.median(click_ms), 3),
        "episodes": len(search_ms),
        "clicks": len(click_ms),
    }


def same_as_1k(data_dir: Path) -> bool | None:
    """Whether the prepared path gives the in-memory path's goals and search hits on the 1k data."""
    import tempfile

    from eef.envs.shop.generated import naive_query
    from eef.envs.shop.prepared import open_prepared, prepare_webshop
    from eef.envs.shop.webshop_data import load_webshop

    if not (data_dir / "items_ins_v2_1000.json").is_file():
        return None
    with tempfile.TemporaryDirectory() as scratch:
        prepared = prepare_webshop(data_dir, Path(scratch) / "prepared", progress=False)
        fast, memory = open_prepared(prepared, data_dir), load_webshop(data_dir)
        same_goals = fast.goals == memory.goals and list(fast.products) == list(memory.products)
        queries = [naive_query(goal.instruction) for goal in memory.goals[::10]]
        return same_goals and all(fast.index.search(q) == memory.index.search(q) for q in queries)


if __name__ == "__main__":
    main()
