# bgimpact: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      := $(VENV)/bin/python
EXTRAS      ?= --extra test
# Stages and the tools they call find the project's environment first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYTHONUNBUFFERED := 1
# tcmalloc (Debian libtcmalloc-minimal4) makes batched CPU inference about 2x faster; used when present.
TCMALLOC    := $(firstword $(wildcard /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib/libtcmalloc_minimal.so.4))
WITH_MALLOC := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC),)

REF ?= $(if $(wildcard ../shared/reference/thesis/images.csv),../shared/reference/thesis,)
OUT ?= metrics/thesis

.PHONY: help setup test lint bench reproduce thesis clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$$(command -v uv || echo python3 -m uv) sync --frozen $(EXTRAS)
	@touch $@

setup: $(VENV)/.synced ## Create .venv from uv.lock (installs uv if missing) with the test extra

lint: setup ## ruff on the package, stages and tests
	$(VENV)/bin/ruff check lib stages tests

test: setup lint ## Lint, then the whole test suite (the README's test command)
	$(PYTHON) -m pytest

bench: setup ## Benchmarks: stage throughput next to the pure model forward (CPU figures)
	$(WITH_MALLOC) $(PYTHON) -m bgimpact.bench all

reproduce: setup ## dvc repro of the main pipeline, then dvc metrics show
	$(PYTHON) -m bgimpact.preflight
	$(WITH_MALLOC) dvc repro
	dvc metrics show

thesis: setup ## Rebuild the thesis's figures: make thesis REF=<folder> OUT=<folder>
	@[ -n "$(REF)" ] || { echo "error: set REF=<folder with images.csv and predictions_<model>.csv>"; exit 2; }
	$(PYTHON) -m bgimpact.thesis --ref "$(REF)" --out "$(OUT)"

clean: ## Remove caches of the tools (keeps .venv, data and the DVC cache)
	rm -rf .pytest_cache .ruff_cache
	find lib stages tests -name __pycache__ -type d -prune -exec rm -rf {} +
