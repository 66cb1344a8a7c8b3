"""Shared test fixtures. Test data is read from ../shared, never copied into the repository."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURE_IMAGES = SHARED / "fixtures" / "imagenet"
FIXTURE_SCENES = SHARED / "fixtures" / "scenes"
THESIS_REF = SHARED / "reference" / "thesis"

if not FIXTURE_IMAGES.is_dir():  # pragma: no cover - a broken checkout, not a test outcome
    raise RuntimeError(f"test fixtures not found at {FIXTURE_IMAGES} (../shared beside the repo)")


def default_params() -> dict:
    """The repository's params.yaml as a plain dict (a fresh copy each call)."""
    return copy.deepcopy(yaml.safe_load((REPO / "params.yaml").read_text()))


def write_params(folder: Path, data: dict) -> Path:
    """Write ``data`` as ``folder/params.yaml`` and return the path."""
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def make_fixture_params(tmp_path: Path) -> dict:
    """Params for a project in ``tmp_path`` reading the 10 fixture photos and 8 fixture scenes.

    Outputs go under ``tmp_path/data``; segmentation is GrabCut (no weights needed) and the
    classifier the offline EfficientNet-Lite0.
    """
    data = default_params()
    out = tmp_path / "data"
    data["data"] = {
        "images": str(FIXTURE_IMAGES),
        "scenes": str(FIXTURE_SCENES),
        "masks": str(out / "masks"),
        "overlays": str(out / "overlays"),
        "table": str(out / "images.csv"),
        "colors": str(out / "colors.json"),
        "modified": str(out / "modified"),
        "predictions": str(out / "predictions"),
        "metrics": str(tmp_path / "metrics"),
        "plots": str(tmp_path / "metrics" / "plots"),
        "report": str(tmp_path / "metrics" / "report"),
    }
    data["segment"]["method"] = "grabcut"
    data["classify"]["models"] = ["efficientnet_lite0"]
    data["classify"]["num_workers"] = 0
    return data


@pytest.fixture
def fixture_params(tmp_path: Path) -> dict:
    """Params of :func:`make_fixture_params` for this test's ``tmp_path``."""
    return make_fixture_params(tmp_path)


def copy_fixture_images(dest: Path, synsets: list[str] | None = None) -> Path:
    """Copy fixture photos into a temporary ``dest/<synset>/`` tree (for tests that alter it)."""
    for folder in sorted(FIXTURE_IMAGES.iterdir()):
        if synsets is None or folder.name in synsets:
            shutil.copytree(folder, dest / folder.name)
    return dest


class FixtureProject:
    """A throw-away project folder whose params.yaml points at the fixtures.

    Stages run as the user runs them: ``python stages/<name>.py --params <folder>/params.yaml``.
    """

    def __init__(self, root: Path, params: dict) -> None:
        self.root = root
        self.params = params
        self.params_path = write_params(root, params)

    def path(self, key: str) -> Path:
        """A ``data.<key>`` path of this project."""
        return Path(self.params["data"][key])

    def run(self, stage: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``stages/<stage>.py`` with this project's params; output captured as text."""
        cmd = [sys.executable, str(REPO / "stages" / f"{stage}.py"), "--params",
               str(self.params_path), *args]  # fmt: skip
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{stage} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result


@pytest.fixture(scope="session")
def segmented_project(tmp_path_factory: pytest.TempPathFactory) -> FixtureProject:
    """The fixture photos segmented once per session with GrabCut (masks, overlays, images.csv).

    Shared, read-only: tests that change outputs make their own project.
    """
    root = tmp_path_factory.mktemp("fixture_project")
    project = FixtureProject(root, make_fixture_params(root))
    project.run("segment")
    return project


def dvc_repo_copy(dest: Path, params: dict) -> Path:
    """A fresh git + DVC repository at ``dest`` holding this checkout's files and ``params``.

    Files are those git would commit (tracked plus untracked-not-ignored); ``.venv`` stays out.
    Run DVC there with :func:`run_dvc`.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    write_params(dest, params)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "fixture"], cwd=dest, check=True)
    return dest


def run_dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``dvc <args>`` in ``repo`` with the test's Python environment first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    dvc = Path(sys.executable).parent / "dvc"
    result = subprocess.run([str(dvc), *args], cwd=repo, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


#: Stages that build the variants, in pipeline order (apply_scenic applies every scene).
VARIANT_STAGES = ("colors", "remove_bg", "remove_fg", "apply_contrast", "apply_scenic")


@pytest.fixture(scope="session")
def varied_project(segmented_project: FixtureProject) -> FixtureProject:
    """:func:`segmented_project` with colors.json and every variant under data/modified.

    Shared, read-only: tests that change outputs make their own project.
    """
    for stage in VARIANT_STAGES:
        segmented_project.run(stage)
    return segmented_project


def git(repo: Path, *args: str) -> str:
    """Run ``git <args>`` in ``repo`` as a fixed test identity; returns stdout."""
    cmd = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args]
    result = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


#: Scenes of the DVC end-to-end repository: two are enough to exercise the foreach stages and
#: keep one `dvc repro` of the fixtures short (each scene is a stage of its own).
DVC_SCENES = ["city", "water"]


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture pipeline reproduced once per session by ``dvc repro``, results committed.

    A git + DVC repository (:func:`dvc_repo_copy`) whose outputs have relative paths (data/,
    metrics/) and whose inputs are the ../shared fixtures; GrabCut and EfficientNet-Lite0.
    Shared, read-only: to change anything, ``git clone`` it and point the clone's cache at
    this one's (``dvc cache dir --local <repo>/.dvc/cache``), as :func:`clone_with_cache` does.
    """
    root = tmp_path_factory.mktemp("reproduced_repo")
    params = make_fixture_params(root)
    params["scenes"] = list(DVC_SCENES)
    for key, value in params["data"].items():
        if key not in ("images", "scenes"):
            params["data"][key] = Path(value).relative_to(root).as_posix()
    dvc_repo_copy(root, params)
    run_dvc(root, "repro")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "reproduced")
    return root


def clone_with_cache(source: Path, dest: Path) -> Path:
    """``git clone`` of ``source`` into ``dest`` with its outputs checked out from its cache."""
    subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True)
    run_dvc(dest, "cache", "dir", "--local", str(source / ".dvc" / "cache"))
    run_dvc(dest, "checkout")
    return dest
