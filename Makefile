# tipstream: one entry point per job. `make test` is what CI runs (.ci/run).
#
#   make setup   install uv if missing, then the locked environment, compiled (uv sync --frozen)
#   make up      local Kafka 4 (KRaft) + PostgreSQL on loopback, no Docker (idempotent)
#   make test    setup + up + the whole pytest suite, integration tests included
#   make lint    ruff + mypy
#   make demo    setup + up + tipstream demo
#   make bench   setup + up + python -m bench
#   make down    stop Kafka and PostgreSQL (data stays in var/)
#   make clean-var  down, then delete var/ (a clean slate for the dev stack)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# uv from PATH, else the copy pip installs (`python3 -m uv` finds its binary).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PYTEST_ARGS ?=

.PHONY: help setup up test lint demo bench down env clean-var

help:
	@sed -n '3,10p' Makefile

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (as on our development machines),
# Python never caches what it imports, so every worker, CLI call and test subprocess
# compiled its dependencies again: 1.7 s of a worker's start (py-spy, 7 Dec 2026).
setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || \
	  python3 -m pip install --quiet uv || python3 -m pip install --quiet --break-system-packages uv
	$(UV) sync --frozen --compile-bytecode

up: setup
	$(UV) run tipstream dev up

test: up
	$(UV) run pytest $(PYTEST_ARGS)

lint: setup
	$(UV) run ruff check .
	$(UV) run mypy

demo: up
	$(UV) run tipstream demo

bench: up
	$(UV) sync --frozen --compile-bytecode --group bench
	$(UV) run --group bench python -m bench

env: setup
	@$(UV) run tipstream dev env

down:
	@if [ -x .venv/bin/tipstream ]; then $(UV) run tipstream dev down; else echo "dev: nothing set up"; fi

clean-var: down
	rm -rf var/
