#!/usr/bin/env bash
# The one command the lent GPU machine runs, from the repository root: benchmarks/gpu_check.py --json, its whole
# output also in $OUT/gpu_check.log (extra arguments go to it, e.g. --parts explore,llama_1b).
#
# The machine's image has torch, transformers, peft, accelerate, typer, scipy, matplotlib and eef's other needs,
# but not eef's pure-Python dependencies bm25s, PyStemmer, thefuzz and rapidfuzz, and it reaches no index: they
# travel as Python 3.12 manylinux x86_64 wheels in .whl, fetched where pip reaches PyPI (the versions make test installs) with
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl bm25s==0.3.16 PyStemmer==3.1.0 thefuzz==0.22.1 rapidfuzz==3.14.6
#
# The device tool then runs `bash benchmarks/gpu_check.sh` with carry: [".whl"]. The full check takes about
# 6 to 8 minutes (the default run alone is capped at 300 s: --default-timeout).
set -euo pipefail

if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

python3 benchmarks/gpu_check.py --json "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_check.log"
