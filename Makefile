# active-learners: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The newest Python >= 3.11 on this machine (PATH or pyenv), unless PYTHON=... says otherwise.
PYTHON ?= $(shell bash scripts/pythons.sh | head -1)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA := bash docker/kafka/kafka.sh
RUN := .demo

.PHONY: help install browser faketime dates screenshots kafka kafka-stop topics worker notifier demo test unit unit-all lint schemas bench soak simulate down clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install the project with dev extras (idempotent)

$(STAMP): pyproject.toml setup.py streams/stages/_router.c
	@[ -n "$(PYTHON)" ] && command -v $(PYTHON) >/dev/null || { echo "install: no Python >= 3.11 found (set PYTHON=/path/to/python3.x)"; exit 1; }
	@echo "install: $$($(PYTHON) --version) into $(VENV)"
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Headless Chromium for the dashboard's browser tests: Debian's package, like the broker's jars
# come from Maven Central (never a test tool's own browser download). sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser: ## install Debian's chromium (headless, for the dashboard tests) unless it is there
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "browser: installing Debian's chromium package"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    chromium fonts-liberation >/dev/null; }
	@chromium --version 2>/dev/null

faketime: ## install Debian's faketime (libfaketime, for `make dates`) unless it is there
	@command -v faketime >/dev/null 2>&1 || { \
	  echo "faketime: installing Debian's faketime package"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    faketime >/dev/null; }

dates: install faketime ## the tests that need no broker at later dates: month, year ends, leap day, DST changes, years on
	@$(BIN)/python scripts/dates.py

screenshots: install browser kafka ## the dashboard's screenshots in docs/screenshots (from its browser test)
	SCREENSHOTS_DIR=docs/screenshots $(BIN)/python -m pytest -q tests/integration/test_web.py -k browser

kafka: ## start the local Kafka broker (KRaft, localhost:9092); no-op when running
	@$(KAFKA) start

kafka-stop: ## stop the local Kafka broker
	@$(KAFKA) stop

topics: install kafka ## create every topic (TOPIC_PREFIX, PARTITIONS respected)
	@$(BIN)/active-learners topics

worker: install kafka topics ## run a worker in the foreground
	@$(BIN)/active-learners worker

notifier: install kafka topics ## run the threshold e-mail notifier in the foreground
	@$(BIN)/active-learners notifier

demo: install kafka ## start broker + worker, produce a dataset, print the counts
	@bash scripts/demo.sh

test: install browser ## run every test (starts the broker itself; stops it if it started it)
	$(BIN)/python -m pytest

UNIT_TESTS ?= tests/unit tests/stages tests/simulation
unit: install ## run the tests that need no broker (unit, stages, simulation)
	$(BIN)/python -m pytest $(UNIT_TESTS)

# (the simulator's seeds run once, in make test: they are the same Python on every version)
unit-all: ## the unit and stage tests on every other Python >= 3.11 found (a venv each: .venv-3.x); make test ran them on $(PYTHON)
	@main=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	for python in $$(bash scripts/pythons.sh); do \
	  version=$$($$python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  [ "$$version" = "$$main" ] && continue; \
	  $(MAKE) --no-print-directory unit PYTHON=$$python VENV=.venv-$$version \
	    UNIT_TESTS="tests/unit tests/stages" || exit 1; \
	done

lint: install ## ruff, mypy and the import layers (import-linter)
	$(BIN)/ruff check streams schemas tests
	$(BIN)/ruff format --check streams schemas tests
	$(BIN)/mypy streams schemas
	$(BIN)/lint-imports

schemas: install ## regenerate schemas/json from the models
	$(BIN)/python -m schemas.registry

bench: install kafka ## measure end-to-end throughput (writes docs/benchmarks.md)
	@$(BIN)/active-learners bench

SEEDS ?= 2000
SEED ?= 0
simulate: install ## seeded schedules of Kafka, workers and crashes over the real stages (SEEDS=2000, SEED=0)
	@$(BIN)/active-learners simulate --seeds $(SEEDS) --seed $(SEED)

soak: install kafka ## 3 workers, a schedule of faults, garbage; every check (writes docs/reliability.md)
	@$(BIN)/active-learners soak

down: ## stop everything the Makefile started: worker and notifier first (waited for), then the broker
	@for p in worker notifier; do \
	  if [ -f $(RUN)/$$p.pid ] && kill -0 $$(cat $(RUN)/$$p.pid) 2>/dev/null; then \
	    pid=$$(cat $(RUN)/$$p.pid); kill $$pid; \
	    for i in $$(seq 1 40); do kill -0 $$pid 2>/dev/null || break; sleep 0.5; done; \
	    if kill -0 $$pid 2>/dev/null; then kill -9 $$pid; echo "$$p: killed (still running after 20 s)"; \
	    else echo "$$p: stopped"; fi; \
	  fi; rm -f $(RUN)/$$p.pid; done
	@$(KAFKA) stop

clean: down ## remove local state, broker data and the virtualenv
	rm -rf .state $(RUN) .kafka/data .kafka/logs $(VENV) .venv-3.*
