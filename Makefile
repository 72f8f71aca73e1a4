# Every target sets up .venv first, so each works on a fresh machine with only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup demo test lint typecheck pytest bench crash load scale clean

help:
	@echo "make demo    set up .venv, then run the end-to-end demo on the embedded simulator"
	@echo "make test    set up .venv, then run ruff, mypy and the test suite"
	@echo "make bench   benchmarks (import/dispatch vs floor, memory, simulator page time)"
	@echo "make crash   crash-consistency runs with 60 SIGKILLs: sequential, then 3 processes per account"
	@echo "make load    8 workers on 8 accounts against one simulator for 60 s"
	@echo "make scale   200 accounts, 50 ms per CI call, 1/2/4 worker processes over PostgreSQL"

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python >= 3.11) on PATH, or run: make PYTHON=python3"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/ci-connector demo

lint: $(STAMP)
	$(BIN)/ruff check connector mock_ci_server benchmarks tests
	$(BIN)/ruff format --check connector mock_ci_server benchmarks tests

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

crash: $(STAMP)
	$(BIN)/python -m benchmarks.crash --kills 60
	$(BIN)/python -m benchmarks.crash --kills 60 --concurrent 3
	$(BIN)/python -m benchmarks.crash --kills 60 --concurrent 3 --backend postgres

load: $(STAMP)
	$(BIN)/python -m benchmarks.load --workers 8 --seconds 60

scale: $(STAMP)
	$(BIN)/python -m benchmarks.scale --accounts 200 --workers 1,2,4 --latency-ms 50

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
