# Set-up and entry points. Both targets work from a fresh clone: they create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DEFAULT := $(abspath ../shared/data)
export RABO_BENCH_DATA ?= $(if $(wildcard $(DATA_DEFAULT)),$(DATA_DEFAULT),)

.PHONY: demo test lint venv clean estimators

venv: $(STAMP)

# torch/torchvision are pinned first so pip takes the wheels that lie on disk on our machines;
# the project's own range (pyproject.toml) admits them.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rabo-bench run synthetic

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache

estimators: $(STAMP)
	$(BIN)/python -m rabo_bench.estimator_table
