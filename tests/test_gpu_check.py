"""The GPU check (benchmarks/gpu_check.py) in its tiny CPU mode reports every figure of every part; its device
script parses."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
METHODS = ("sft_pos", "rft", "eef")  # what --small's default run trains
FIGURES = (
    *("device", "gpu_name", "torch", "transformers", "peft", "accelerate", "total_s", "errors"),
    *("default_run_s", "default_run_target_s", *(f"{method}_best_win_rate" for method in METHODS)),
    *("explore_steps_per_s", "explore_cpu_steps_per_s", "explore_ratio"),
    *("llama_1b_rollout_steps_per_s", "llama_1b_lora_tokens_per_s"),
    *("llama_8b_lora_peak_gib", "memory_measure"),
)


@pytest.mark.slow
@pytest.mark.timeout(660)  # past the subprocess's own limit, which names what it printed
def test_the_small_cpu_check_reports_every_figure(tmp_path):
    # one torch thread: beside other work on a small machine, torch's spinning threads run many times slower
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--small", "--json", "--device", "cpu"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert [key for key in FIGURES if key not in figures] == []
    assert figures["errors"] == {}
    assert figures["default_run_s"] > 0
    assert all(0 <= figures[f"{method}_best_win_rate"] <= 1 for method in METHODS)
    assert figures["explore_steps_per_s"] > 0
    assert figures["llama_1b_lora_tokens_per_s"] > 0
    assert figures["memory_measure"] == "cpu_rss"


def test_the_device_script_parses():
    subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu_check.sh")], check=True)
