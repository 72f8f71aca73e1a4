# Every target sets up .venv first, so each works on a fresh machine with only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup demo test lint typecheck pytest bench crash load clean browsers bench-ui

help:
	@echo "make demo    set up .venv, then run the end-to-end demo on the embedded simulator"
	@echo "make test    set up .venv, then run ruff, mypy and the test suite"
	@echo "make bench   benchmarks (import/dispatch vs floor, memory, simulator page time)"
	@echo "make crash   crash-consistency run with 50+ SIGKILLs"
	@echo "make load    8 workers on 8 accounts against one simulator for 60 s"
	@echo "make bench-ui  simulator console: time to render a page of 100,000 lines"

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

pytest: $(STAMP) browsers
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

crash: $(STAMP)
	$(BIN)/python -m benchmarks.crash --kills 60

load: $(STAMP)
	$(BIN)/python -m benchmarks.load --workers 8 --seconds 60

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

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
