# Two commands do all the set-up from a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The main job on the built-in default (CPU, no downloads).
run: $(BIN)/.installed
	$(BIN)/eef env verify shop
	$(BIN)/eef env play shop shop_0 --oracle

test: $(BIN)/.installed
	$(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/shop_env.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
