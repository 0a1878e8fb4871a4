"""Step time of eef's ScienceWorld path against the package's ``env.step``, and JVM memory.

    python benchmarks/scienceworld.py [--tasks N] [--json]

Replays the gold action sequence of the first train variation of N task types (default 12)
through eef's environment (the simulator's own step plus score and completion) and through the
``scienceworld`` package's ``ScienceWorldEnv.step`` (which also enumerates valid actions, looks
around and reads the inventory on every step), both with ``easy`` and a 256 MB heap, and prints
the median step times of a second pass (the first warms both JVMs up), their ratio and the resident
memory of eef's JVM after the episodes. The machine's load moves the figures (ratios from 3.6 to
7.1 were seen on a busy 2-core machine); run it on an idle one.
Targets: ratio >= 4, JVM RSS <= 512 MB per worker. With --json the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from _common import print_figures

# Run as a script, this file's folder comes first on sys.path and this file would shadow the
# ``scienceworld`` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

HEAP_MB = 256
# Task types in an order that mixes short and long episodes; the mendelian tasks are left out by
# default because their gold sequences take 7-8 s each to compute.
TASKS = (
    "find-animal",
    "boil",
    "chemistry-mix",
    "test-conductivity",
    "lifespan-longest-lived",
    "melt",
    "power-component",
    "measure-melting-point-known-substance",
    "use-thermometer",
    "grow-plant",
    "identify-life-stages-1",
    "chemistry-mix-paint-secondary-color",
    "inclined-plane-determine-angle",
    "freeze",
    "find-plant",
    "grow-fruit",
    "change-the-state-of-matter-of",
    "test-conductivity-of-unknown-substances",
    "lifespan-shortest-lived",
    "identify-life-stages-2",
    "chemistry-mix-paint-tertiary-color",
    "inclined-plane-friction-named-surfaces",
    "inclined-plane-friction-unnamed-surfaces",
    "power-component-renewable-vs-nonrenewable-energy",
    "find-living-thing",
    "find-non-living-thing",
    "measure-melting-point-unknown-substance",
    "lifespan-longest-lived-then-shortest-lived",
    "mendelian-genetics-known-plant",
    "mendelian-genetics-unknown-plant",
)


def timed_steps(step, actions: list[str]) -> list[float]:
    """Seconds of ``step(action)`` for each action, stopping at the end of the episode."""
    times = []
    for action in actions:
        began = time.perf_counter()
        done = step(action)
        times.append(time.perf_counter() - began)
        if done:
            break
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=12, help="Task types to replay (1-30).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from eef.envs import make
    from scienceworld import ScienceWorldEnv as PackageEnv

    tasks = TASKS[: args.tasks]
    env = make("scienceworld", tasks=list(tasks), max_steps=1000, heap_mb=HEAP_MB)
    gold = {name: env.gold_actions(f"{name}/0") for name in tasks}

    def ours(name: str) -> list[float]:
        env.reset(f"{name}/0")
        return timed_steps(lambda a: env.step(a).done, gold[name])

    before = os.environ.get("JAVA_TOOL_OPTIONS")
    os.environ["JAVA_TOOL_OPTIONS"] = f"-Xmx{HEAP_MB}m"  # the package has no heap option
    try:
        package = PackageEnv("", envStepLimit=1000)
    finally:  # leave the caller's setting as it was
        if before is None:
            del os.environ["JAVA_TOOL_OPTIONS"]
        else:
            os.environ["JAVA_TOOL_OPTIONS"] = before

    def theirs(name: str) -> list[float]:
        package.load(name, 0, "easy")
        package.reset()
        return timed_steps(lambda a: package.step(a)[2], gold[name])

    # The first pass warms both JVMs' JIT compilers up; the second is timed.
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for timed in (False, True):
        for name in tasks:
            for path, run in (("ours", ours), ("theirs", theirs)):
                seconds = run(name)
                if timed:
                    times[path] += seconds
    rss = max(env.jvm_rss_mb())  # after every episode: what one worker JVM grew to
    env.close()
    package.close()

    fast, slow = statistics.median(times["ours"]), statistics.median(times["theirs"])
    figures = {
        "tasks": len(tasks),
        "steps": len(times["ours"]),
        "fast_step_ms": round(1000 * fast, 2),
        "env_step_ms": round(1000 * slow, 2),
        "ratio": round(slow / fast, 1),
        "jvm_rss_mb": round(rss, 1),
    }
    figures["targets_met"] = figures["ratio"] >= 4 and figures["jvm_rss_mb"] <= 512
    print_figures(figures, args.json)


if __name__ == "__main__":
    main()
