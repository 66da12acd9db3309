# The two entry points a newcomer needs: `make demo` and `make test`.
# Both build .venv/ from scratch when it is missing or pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint typecheck bench clean venv chromium screenshots gpu-check

# Debian's Chromium, for the browser tests and the screenshots (apt, as root or through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

venv: $(STAMP)

# torch is installed first and pinned: an unpinned torch pulled in by
# sentence-transformers would be a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[examples,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/pipetune tune examples/etl_parquet.py --budget 3

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples benchmarks tools
	$(VENV)/bin/ruff format --check src tests examples benchmarks tools

typecheck: $(STAMP)
	$(VENV)/bin/mypy

chromium:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null)

test: lint typecheck chromium
	$(VENV)/bin/pytest -q -m "not slow"

test-slow: $(STAMP)  # the tests marked slow (a batch-size search on the real MiniLM model), outside the 15-minute suite
	$(VENV)/bin/pytest -q -m slow

screenshots: $(STAMP) chromium
	$(PY) tools/screenshots.py

# Benchmarks print tables; they are not tests. The tuning benchmark needs Optuna (the `bench` extra) and the
# grid oracle's cached table (benchmarks/oracle.json, made by benchmarks/oracle.py).
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[examples,dev,bench]'
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/tune_bench.py
	cd benchmarks && ../$(PY) faults.py --pairs 3

# doctor, batch-size and tune on a real GPU stage (MiniLM on CUDA); says so and checks nothing without a GPU
gpu-check: $(STAMP)
	$(PY) tools/gpu_check.py

clean:
	rm -rf $(VENV) .pipetune .pytest_cache .mypy_cache .ruff_cache screenshots
