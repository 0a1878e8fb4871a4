#!/usr/bin/env bash
# eef's GPU check, from the repository root: benchmarks/gpu_check.py --json (extra arguments go to it, e.g.
# --parts explore,llama_1b), its whole output also in $OUT/gpu_check.log when OUT names a folder.
#
# For a GPU machine whose Python already has torch (CUDA), transformers, peft, accelerate and eef's other
# common dependencies but no package index: eef's small pure-Python dependencies travel as wheels in .whl
# (Python 3.12, manylinux x86_64), fetched beforehand where pip reaches PyPI:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl bm25s==0.3.16 PyStemmer==3.1.0 thefuzz==0.22.1 rapidfuzz==3.14.6
#
# The check takes 6 to 8 minutes on one GPU (the default run alone is capped at 300 s: --default-timeout).
set -euo pipefail

if [ -d .whl ]; then
    site=$(mktemp -d)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

python3 benchmarks/gpu_check.py --json "$@" 2>&1 | tee "${OUT:-$(mktemp -d)}/gpu_check.log"
