"""Speed and memory of the native shop engine on the WebShop 1k set.

    python benchmarks/shop_env.py [--data DIR] [--json]

Prints init time (load data, make 6,910 goals, build the index), the median step time for
search and click actions over oracle episodes, and the peak RSS, each against the original
WebShop environment measured on this machine kind (shared/notes/webshop.md: init 1.5 s,
median step 27 ms, 522 MB RSS). Targets: step >= 20x faster, RSS <= 150 MB, init <= 1 s.
With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

from _common import DEFAULT_WEBSHOP_DATA, print_figures

ORIGINAL = {"init_s": 1.5, "median_step_ms": 27.3, "peak_rss_mb": 522.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_WEBSHOP_DATA)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    start = time.perf_counter()
    from eef.envs import make

    env = make("webshop", data_dir=args.data, max_steps=50)
    init_s = time.perf_counter() - start

    times: dict[str, list[float]] = {"search": [], "click": []}
    for task_id in [env.catalog.task_id(i) for i in range(min(args.episodes, len(env.catalog.goals)))]:
        env.reset(task_id)
        while True:
            action = env.oracle_action()
            t0 = time.perf_counter()
            result = env.step(action)
            times[action.split("[")[0]].append(time.perf_counter() - t0)
            if result.done:
                break
    all_steps = times["search"] + times["click"]
    figures = {
        "init_s": round(init_s, 3),
        "median_step_ms": round(1000 * statistics.median(all_steps), 4),
        "median_search_ms": round(1000 * statistics.median(times["search"]), 4),
        "median_click_ms": round(1000 * statistics.median(times["click"]), 4),
        "steps": len(all_steps),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    figures["step_speedup_vs_original"] = round(ORIGINAL["median_step_ms"] / figures["median_step_ms"], 1)
    figures["rss_ratio_vs_original"] = round(figures["peak_rss_mb"] / ORIGINAL["peak_rss_mb"], 3)
    figures["init_ratio_vs_original"] = round(figures["init_s"] / ORIGINAL["init_s"], 3)
    figures["targets_met"] = (
        figures["step_speedup_vs_original"] >= 20 and figures["peak_rss_mb"] <= 150 and figures["init_s"] <= 1.0
    )
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
