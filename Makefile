# Two commands matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit integration lint bench faults kafka-up kafka-down system-deps clean native

RUNTIME := $(VENV)/.runtime

# What running needs (make demo), and mypy to compile the core and risk (the `native` extra) ...
$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[native]'
	touch $(RUNTIME)

# ... and what developing needs on top (lint, tests, benchmarks: Playwright, mypy, ...).
$(STAMP): $(RUNTIME)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The core and the risk package compiled by mypyc into engine/native/built/ (see
# engine/native): a no-op while the build matches the sources, a rebuild (about 40 s) once
# one changed. Without a C compiler it says so and the engine runs as pure Python; under
# CI=true that fails instead.
NATIVE_FLAGS := $(if $(filter true,$(CI)),--require,)
native: $(RUNTIME)
	$(BIN)/python -m engine.native.build $(NATIVE_FLAGS)

# The tests that also run once on pure Python (LIFECYCLE_NATIVE=0): the compiled core and
# risk, and their callers (about 45 s).
PURE_PYTHON_TESTS := tests/unit/engine/core tests/unit/engine/risk tests/unit/engine/native \
	tests/unit/engine/embedded/test_risk_slices.py tests/unit/engine/streaming/test_housekeeping.py \
	tests/unit/engine/streaming/test_agent.py tests/unit/engine/demo/test_opening.py \
	tests/unit/engine/report/test_status.py tests/unit/engine/evolve/test_migration.py \
	tests/unit/engine/evolve/test_apply.py tests/unit/engine/stores/test_memory.py \
	tests/unit/engine/test_observe.py

# A fresh portfolio each time; DEMO_ARGS=--keep keeps the features of earlier runs.
demo: native
	$(BIN)/lifecycle demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check events workflows connectors engine metrics tests bench
	$(BIN)/ruff format --check events workflows connectors engine metrics tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP) native
	$(BIN)/pytest tests/unit -q
	LIFECYCLE_NATIVE=0 $(BIN)/pytest $(PURE_PYTHON_TESTS) -q

system-deps:
	bash deploy/system-deps.sh
	bash deploy/tools.sh

kafka-up: $(STAMP)
	bash deploy/kafka/kafka.sh up

kafka-down:
	bash deploy/kafka/kafka.sh down

# Everything: lint, unit tests, then integration tests against a real Kafka broker,
# a real Prometheus and a real headless Chromium, which this target installs and starts.
test: $(STAMP) system-deps native
	$(MAKE) lint
	LIFECYCLE_NATIVE=0 $(BIN)/pytest $(PURE_PYTHON_TESTS) -q
	bash deploy/kafka/kafka.sh up
	$(BIN)/pytest tests -q; rc=$$?; bash deploy/kafka/kafka.sh down; exit $$rc

bench: $(STAMP) native
	$(BIN)/python bench/core.py
	$(BIN)/python bench/forecast_calibration.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/http_ingest.py
	$(BIN)/python bench/reads.py
	$(BIN)/python bench/embedded.py
	bash deploy/kafka/kafka.sh up
	$(BIN)/python bench/streaming.py && $(BIN)/python bench/streaming_latency.py && $(BIN)/python bench/restart.py; rc=$$?; bash deploy/kafka/kafka.sh down; exit $$rc

# The streaming fault scenarios of tests/integration/kafka/test_faults.py at full size, once
# per seed (FAULT_SEEDS); `make test` runs them small, with one seed.
FAULT_SEEDS ?= 1,2,3,4,5,6,7,8,9,10
faults: $(STAMP) native
	bash deploy/kafka/kafka.sh up
	LIFECYCLE_FAULT_SCALE=full LIFECYCLE_FAULT_SEEDS=$(FAULT_SEEDS) $(BIN)/pytest -q \
		tests/integration/kafka/test_faults.py; rc=$$?; bash deploy/kafka/kafka.sh down; exit $$rc

clean:
	rm -rf $(VENV) var build *.egg-info engine/native/built
