# Two commands do all the set-up from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
# The CPU build of PyTorch (a bare `torch` pulls a multi-GB CUDA build); on a GPU machine set
# TORCH_SPEC to the build you want, e.g. `make test TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
# A second environment with every direct dependency at its declared floor (torch: the build above).
LOWEST := .venv-lowest

.PHONY: run test test-lowest lint bench clean

# what `make run` needs: eef and its dependencies
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '$(TORCH_SPEC)'
	$(BIN)/pip install --quiet -e .
	touch $@

# the test, lint and type-check tools on top, for `make test` and `make lint` only (a run starts sooner without them)
$(BIN)/.dev-installed: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The main job on the built-in default (CPU, no downloads); `eef run --resume` continues it.
run: $(BIN)/.installed
	$(BIN)/eef env verify shop
	$(BIN)/eef run $(if $(wildcard runs/default/config.yaml),--resume)

# one test process per core (pytest-xdist)
test: $(BIN)/.dev-installed
	$(BIN)/python -m pytest -n auto

$(LOWEST)/bin/.installed: pyproject.toml .ci/lowest_constraints.py
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/pip install --quiet --upgrade pip
	$(LOWEST)/bin/pip install --quiet '$(TORCH_SPEC)'
	$(PYTHON) .ci/lowest_constraints.py > $(LOWEST)/constraints.txt
	$(LOWEST)/bin/pip install --quiet -c $(LOWEST)/constraints.txt -e '.[dev]'
	touch $@

# The declared floors are true: the suite on the lowest allowed versions (CI runs it after `make test`).
# ScienceWorld's tests are left out: its range (>=1.2.3,<1.3) installs the same release in both environments.
test-lowest: $(LOWEST)/bin/.installed
	$(LOWEST)/bin/python -m pytest -n auto -m "not scienceworld"

# The guardrails CI runs before the tests: lint, format and types (configured in pyproject.toml).
lint: $(BIN)/.dev-installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/shop_env.py
	$(BIN)/python benchmarks/rollout.py
	$(BIN)/python benchmarks/sft.py

clean:
	rm -rf $(VENV) $(LOWEST) build *.egg-info src/*.egg-info .pytest_cache
