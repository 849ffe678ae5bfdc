# Set-up and entry points. Both targets work from a fresh clone: they create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DEFAULT := $(abspath ../shared/data)
export RABO_BENCH_DATA ?= $(if $(wildcard $(DATA_DEFAULT)),$(DATA_DEFAULT),)

.PHONY: demo test lint venv clean estimators bench

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

# TEST_WORKERS pytest-xdist processes, one torch thread each, whole test files to a worker (module
# fixtures are built once): 6.3 min against 12.3 min for one process with 2 threads on 2 cores
# (docs/testing.md). TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache

estimators: $(STAMP)
	$(BIN)/python -m rabo_bench.report.estimators

# Benchmarks (tests/benchmarks, not in CI: RABO_BENCH_BENCH=1 turns them on), then the report
# in BENCH_OUT. About 5 minutes on 2 cores with nothing else running, 14 beside other jobs
# (results/performance/PROVENANCE.md).
# BENCH_ARGS passes pytest arguments (e.g. --deselect a point); BENCH_GPU_JSON merges a GPU run
# of the same benchmarks into the report.
BENCH_JSON ?= out/benchmarks/benchmark.json
BENCH_OUT ?= results/performance
BENCH_ARGS ?=
BENCH_GPU_JSON ?=
bench: $(STAMP)
	mkdir -p $(dir $(BENCH_JSON))
	start=$$(date +%s) && \
	RABO_BENCH_BENCH=1 $(BIN)/python -m pytest tests/benchmarks --benchmark-enable \
		--benchmark-json=$(BENCH_JSON) --benchmark-columns=median,rounds $(BENCH_ARGS) && \
	$(BIN)/python -m rabo_bench.report.performance $(BENCH_JSON) $(BENCH_OUT) \
		--wall-seconds $$(( $$(date +%s) - start )) $(if $(BENCH_GPU_JSON),--gpu $(BENCH_GPU_JSON))
