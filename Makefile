# The only commands a newcomer needs. Everything installs itself on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

# helm, promtool and prometheus for the deployment checks (`make tools`).
include deploy/tools.mk
# make image, image-run, image-tools (part of make tools) and audit: the image without a Docker engine.
include deploy/image.mk

.PHONY: image lock help install kafka-jars lint typecheck test test-unit test-integration test-failure demo bench clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/'

$(STAMP): pyproject.toml devstack/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,devstack]' -e ./devstack
	touch $(STAMP)

install: $(STAMP) ## create .venv; install sfls, its dev extras and the local stack (pinned by constraints.txt)

kafka-jars: $(STAMP) ## fetch the Apache Kafka broker jars from Maven Central (cached)
	$(BIN)/sfls devstack kafka fetch

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy --strict on shared/, services/, devstack/ and bench/
	$(BIN)/mypy

test: install kafka-jars tools lint typecheck ## everything CI runs: lint, types, unit and integration tests
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: $(STAMP) ## unit tests only: no broker, no emulators, no helm, promtool or Prometheus
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

test-integration: install kafka-jars tools ## integration tests only
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

test-failure: install kafka-jars ## failure-injection scenarios only
	$(BIN)/pytest -m failure $(PYTEST_ARGS)

demo: install kafka-jars ## run the whole pipeline on the local stack and narrate it
	$(BIN)/python -m devstack.demo

bench: install kafka-jars ## run every benchmark and write bench/RESULTS.md
	$(BIN)/python -m bench

clean: ## stop the local stack and remove local state (keeps the jar cache)
	-$(BIN)/sfls devstack down
	rm -rf .devstack .pytest_cache .mypy_cache .ruff_cache

lock: $(STAMP) ## rewrite constraints.txt from the current .venv
	{ echo '# Exact versions CI installs (a lock for `pip install -c`); regenerate with `make lock`.'; \
	  $(BIN)/pip freeze --exclude-editable; } > constraints.txt
