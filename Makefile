# bgimpact: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PYTHON      := $(abspath $(VENV))/bin/python
EXTRAS      ?= --extra test
# SETUP_VENV=no uses $(VENV) as it is (the Docker image sets it, with VENV=/opt/venv).
SETUP_VENV  ?= yes
# Stages and the tools they call find the project's environment first.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export PYTHONUNBUFFERED := 1
# tcmalloc (Debian libtcmalloc-minimal4) makes batched CPU inference about 2x faster; used when present.
TCMALLOC    := $(firstword $(wildcard /usr/lib/*/libtcmalloc_minimal.so.4 /usr/lib/libtcmalloc_minimal.so.4))
WITH_MALLOC := $(if $(TCMALLOC),LD_PRELOAD=$(TCMALLOC),)

REF ?= $(if $(wildcard ../shared/reference/thesis/images.csv),../shared/reference/thesis,)
OUT ?= metrics/thesis

.PHONY: help setup test lint bench reproduce thesis clean demo weights docker-build \
	docker-reproduce push pull metrics-diff

DEMO        ?= demo
IMAGE       ?= bgimpact:latest
DOCKER      ?= docker
REMOTE      ?=
# metrics-diff compares A against B; B empty = the workspace.
A           ?= HEAD
B           ?=

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$$(command -v uv || echo python3 -m uv) sync --frozen $(EXTRAS)
	@touch $@

setup: $(if $(filter yes,$(SETUP_VENV)),$(VENV)/.synced) ## Create .venv from uv.lock (installs uv if missing) with the test extra

lint: setup ## ruff on the package, stages and tests; hadolint on the Dockerfile
	$(VENV)/bin/ruff check lib stages tests
	$(VENV)/bin/hadolint Dockerfile

test: setup lint ## Lint, then the whole test suite (the README's test command)
	$(PYTHON) -m pytest

bench: setup ## Benchmarks: stage throughput next to the pure model forward (CPU figures)
	$(WITH_MALLOC) $(PYTHON) -m bgimpact.bench all

demo: setup ## The whole pipeline on a built-in demo set, in demo/ (no ImageNet, no download)
	$(WITH_MALLOC) $(PYTHON) -m bgimpact.demo --dir "$(DEMO)"

reproduce: setup ## dvc repro of the main pipeline, then dvc metrics show (stops early without ImageNet)
	@$(PYTHON) -m bgimpact.preflight
	$(WITH_MALLOC) dvc repro
	dvc metrics show

weights: setup ## Fetch the weights of every model in params.yaml into TORCH_HOME (then run offline)
	$(PYTHON) -m bgimpact.weights --params params.yaml

docker-build: ## Build the CUDA image bgimpact:latest (weights of the default models baked in)
	$(DOCKER) build --tag "$(IMAGE)" .

# The DVC cache is mounted too when it lives outside the repository (`dvc cache dir`).
docker-reproduce: ## make reproduce in the image on all GPUs, repository mounted, files owned by you
	@cache=$$(dvc cache dir 2>/dev/null || true); \
	case "$$cache" in ""|"$(CURDIR)"/*) extra="";; *) extra="--volume $$cache:$$cache";; esac; \
	set -x; $(DOCKER) run --rm --gpus all --ipc=host --user "$$(id -u):$$(id -g)" \
		--volume "$(CURDIR):/repo" $$extra "$(IMAGE)" make reproduce

NEED_REMOTE = @[ -n "$(REMOTE)" ] || dvc remote default >/dev/null 2>&1 || { echo "error: no DVC" \
	"remote; add one: dvc remote add -d storage s3://<bucket>/bgimpact (README, 'Remote storage')"; exit 2; }

push: setup ## Upload the DVC-tracked outputs to the remote: make push [REMOTE=name]
	$(NEED_REMOTE)
	dvc push $(if $(REMOTE),--remote $(REMOTE))

pull: setup ## Download published outputs instead of recomputing them: make pull [REMOTE=name]
	$(NEED_REMOTE)
	dvc pull $(if $(REMOTE),--remote $(REMOTE))

metrics-diff: setup ## How the metrics changed: make metrics-diff [A=HEAD] [B=<rev>, default the workspace]
	dvc metrics diff $(A) $(B)

thesis: setup ## Rebuild the thesis's figures: make thesis [REF=<folder>] [OUT=metrics/thesis]
	@[ -n "$(REF)" ] || { echo "error: set REF=<folder with images.csv and predictions_<model>.csv>" >&2; exit 2; }
	@[ -f "$(REF)/images.csv" ] || { echo "error: $(REF): no images.csv (REF=<folder with images.csv and predictions_<model>.csv>)" >&2; exit 2; }
	$(PYTHON) -m bgimpact.thesis --ref "$(REF)" --out "$(OUT)" --params params.yaml
	@echo "open $(OUT)/report/index.html"

clean: ## Remove caches of the tools (keeps .venv, data and the DVC cache)
	rm -rf .pytest_cache .ruff_cache
	find lib stages tests -name __pycache__ -type d -prune -exec rm -rf {} +
