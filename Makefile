# Every target sets up .venv first, so each works on a fresh machine with only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
# Pinned versions of everything `make test` installs (uv pip compile); `make lock` rewrites it.
LOCK := requirements-dev.lock
# pip installs with the lock as constraints. uv was measured (pip-installing uv itself took
# 33-39 s here, more than it saved), so it is only used by `make lock` to resolve.
UV_VERSION := uv>=0.4
UV := $(BIN)/uv
INSTALL = $(BIN)/python -m pip install --quiet -c $(LOCK) -e '$(1)'

.PHONY: help setup demo test lint typecheck pytest bench crash load scale clean hostile hostile-files hostile-simulator bench-dispatch-many browsers bench-ui bench-ledger

help:
	@echo "make demo    set up .venv, then run the end-to-end demo on the embedded simulator"
	@echo "make test    set up .venv, then run ruff, mypy and the test suite"
	@echo "make lock    re-pin $(LOCK) after a dependency change in pyproject.toml"
	@echo "make bench   benchmarks (import/dispatch vs floor, CPU per line, 80 ms latency, memory, simulator)"
	@echo "make bench-quick  the same with smaller runs (about a minute; not the published figures)"
	@echo "make crash   crash-consistency runs with 60 SIGKILLs: sequential, then 3 processes per account"
	@echo "make load    8 workers on 8 accounts against one simulator for 60 s"
	@echo "make hostile the connector against a hostile CI (huge body, gzip bomb, lying counters, drips): RSS and deadlines"
	@echo "make hostile-files  file bombs (dimension, shared strings, 1M rows) vs both readers"
	@echo "make hostile-simulator  huge/chunked bodies, deep JSON, 300 idle sockets vs the simulator"
	@echo "make bench-ui  simulator console: time to render a page of 100,000 lines"
	@echo "make scale   200 accounts, 50 ms per CI call, 1/2/4 worker processes over PostgreSQL"
	@echo "make bench-ledger  ledger CPU, statements, commits and file size per 20,000 imported lines"

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python >= 3.11) on PATH, or run: make PYTHON=python3"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(call INSTALL,.[dev])
	@touch $(STAMP) $(DEMO_STAMP)

# The demo needs only the simulator extra (no linters, no type checker): a faster first run.
$(DEMO_STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(call INSTALL,.[simulator])
	@touch $(DEMO_STAMP)

setup: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/ci-connector demo

.PHONY: lock
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet '$(UV_VERSION)'
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 --quiet -o $(LOCK)

lint: $(STAMP)
	$(BIN)/ruff check connector mock_ci_server benchmarks tests
	$(BIN)/ruff format --check connector mock_ci_server benchmarks tests

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) browsers
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

.PHONY: bench-quick
bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --quick

hostile-files: $(STAMP)
	$(BIN)/python -m benchmarks.hostile_files

hostile-simulator: $(STAMP)
	$(BIN)/python -m benchmarks.hostile_simulator

crash: $(STAMP)
	$(BIN)/python -m benchmarks.crash --kills 60
	$(BIN)/python -m benchmarks.crash --kills 60 --concurrent 3
	$(BIN)/python -m benchmarks.crash --kills 60 --concurrent 3 --backend postgres

load: $(STAMP)
	$(BIN)/python -m benchmarks.load --workers 8 --seconds 60

hostile: $(STAMP)
	$(BIN)/python -m benchmarks.hostile
# Contract v2 (issue 10): one oms_dispatch per shipment vs oms_dispatch_many in waves.
bench-dispatch-many: $(STAMP)
	$(BIN)/python -m benchmarks.bench_dispatch_many --lines 3000 --wave 500
# Browser tests (simulator console, dashboard) drive Debian's chromium + chromium-driver.
# Installed here when missing and we are root with apt-get (CI); otherwise those tests skip
# and say how to install. Never fails the build by itself.
browsers:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing chromium + chromium-driver for the browser tests (apt-get)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq chromium chromium-driver; } >/tmp/ci-connector-apt.log 2>&1 \
	  || echo "could not install chromium (see /tmp/ci-connector-apt.log); browser tests will skip: apt-get install chromium chromium-driver"; \
	else echo "no /usr/bin/chromium: browser tests will skip (install: sudo apt-get install chromium chromium-driver)"; fi

bench-ui: $(STAMP)
	$(BIN)/python -m benchmarks.console_page
scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale --accounts 200 --workers 1,2,4 --latency-ms 50
# Issue 11 point 2: ledger CPU, statements, commits and file size of a 20,000-line sync.
bench-ledger: $(STAMP)
	$(BIN)/python -m benchmarks.ledger_cost --lines 20000

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
# Issue 11: cost per record of marshmallow vs msgspec (vs pydantic when installed) on the
# same 5,000 simulator records, and of the importer's per-record staging work.
.PHONY: bench-validation
bench-validation: $(STAMP)
	$(BIN)/python -m benchmarks.validation --records 5000 --repeats 5

# Issue 11 point 3: import with 80 ms injected on every CI call, connector vs the serial floor.
.PHONY: bench-overlap
bench-overlap: $(STAMP)
	$(BIN)/python -m benchmarks.overlap_latency --lines 20000 --latency-ms 80
