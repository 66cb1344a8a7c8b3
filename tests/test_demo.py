"""The built-in demo (``make demo``): its data set, its params, and the whole pipeline on it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bgimpact import demo
from bgimpact.config import ConfigError, load_params
from bgimpact.files import discover_images, read_rgb
from bgimpact.preflight import check_inputs
from conftest import REPO, default_params


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo set written once by ``python -m bgimpact.demo --build-only``."""
    root = tmp_path_factory.mktemp("demo_build")
    assert demo.main(["--dir", str(root), "--build-only", "--repo", str(REPO)]) == 0
    return root


def test_photos_are_shipped_files_under_their_imagenet_synsets(built: Path) -> None:
    params = load_params(built / "params.yaml")
    records = discover_images(built / params.data.images, list(params.classes))
    assert {(r.image_id, r.synset) for r in records} == {
        ("chelsea", "n02124075"), ("coffee", "n07920052"), ("rocket", "n03773504"),
        ("motorcycle_left", "n03785016"), ("motorcycle_right", "n03785016"),
        ("flower", "n11939491"),
    }  # fmt: skip
    for record in records:
        source = demo.PHOTOS[record.image_id][1].locate()
        assert record.path.read_bytes() == source.read_bytes()


def test_scenes_are_rgb_jpegs_of_the_shipped_pictures(built: Path) -> None:
    params = load_params(built / "params.yaml")
    assert params.scenes == ("grass", "gravel", "brick", "space", "temple")
    for scene in params.scenes:
        rgb = read_rgb(built / params.data.scenes / f"{scene}.jpg")
        source = read_rgb(demo.SCENES[scene].locate())
        assert rgb.shape == source.shape and rgb.shape[2] == 3
        # JPEG at quality 95: close to the source, not equal.
        assert np.abs(rgb.astype(int) - source.astype(int)).mean() < 3
    grass = read_rgb(built / params.data.scenes / "grass.jpg")
    assert np.abs(grass[..., 0].astype(int) - grass[..., 2].astype(int)).max() <= 2  # grey


def test_params_are_the_repository_params_with_the_demo_inputs(built: Path) -> None:
    params = load_params(built / "params.yaml")
    repo = load_params(REPO / "params.yaml")
    assert params.segment.method == "grabcut"
    assert params.classify.models == ("efficientnet_lite0",)
    assert params.models["efficientnet_lite0"] == repo.models["efficientnet_lite0"]
    assert params.colors == repo.colors and params.scenic == repo.scenic
    assert {s: (c.name, c.index) for s, c in params.classes.items()} == {
        "n02124075": ("Egyptian cat", 285), "n07920052": ("espresso", 967),
        "n03773504": ("missile", 657), "n03785016": ("moped", 665), "n11939491": ("daisy", 985),
    }  # fmt: skip
    # Each class's own index is in its lenient group; the groups do not overlap.
    groups = params.evaluate.lenient_groups
    assert (504, 967, 968) in groups and (665, 670) in groups
    for synset, c in params.classes.items():
        own = [g for g in groups if c.index in g]
        assert len(own) <= 1, synset
    assert len({i for g in groups for i in g}) == sum(len(g) for g in groups)
    # Every path is inside the demo folder.
    for key in ("images", "scenes", "masks", "modified", "predictions", "metrics", "report"):
        path = getattr(params.data, key)
        assert not path.is_absolute() and ".." not in path.parts, key


def test_inputs_pass_the_preflight_check(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(built)
    result = check_inputs(load_params("params.yaml"))
    assert result.ok, result.problems
    assert sum(result.images.values()) == 6 and result.images["n03785016"] == 2


def test_second_build_rewrites_nothing(built: Path) -> None:
    files = sorted(p for p in built.rglob("*") if p.is_file())
    stamps = [p.stat().st_mtime_ns for p in files]
    counts = demo.build(built, REPO / "params.yaml")
    assert counts["written"] == 0
    assert [p.stat().st_mtime_ns for p in files] == stamps


def test_base_params_without_the_demo_model_are_rejected(tmp_path: Path) -> None:
    base = default_params()
    del base["models"]["efficientnet_lite0"]
    with pytest.raises(ConfigError, match=r"models\.efficientnet_lite0"):
        demo.demo_params(base)


def test_missing_package_file_is_named() -> None:
    with pytest.raises(FileNotFoundError, match=r"skimage does not ship data/nothing\.png"):
        demo.Shipped("skimage", "data/nothing.png").locate()
    with pytest.raises(FileNotFoundError, match="'no_such_package' is not installed"):
        demo.Shipped("no_such_package", "x.png").locate()


# --------------------------------------------------------------------------- end to end


def snapshot(*folders: Path) -> dict[str, int]:
    """Path -> mtime of every file under ``folders`` (missing folders: nothing)."""
    return {str(p): p.stat().st_mtime_ns for f in folders if f.exists()
            for p in f.rglob("*") if p.is_file()}  # fmt: skip


def run_demo(folder: Path) -> subprocess.CompletedProcess:
    """``python -m bgimpact.demo --dir folder`` from the repository, with no network at all."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(https_proxy=dead, HTTPS_PROXY=dead, http_proxy=dead, HTTP_PROXY=dead,
               HF_HUB_OFFLINE="1")  # fmt: skip
    return subprocess.run([sys.executable, "-m", "bgimpact.demo", "--dir", str(folder)],
                          cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_offline_in_its_own_folder(tmp_path: Path) -> None:
    main_outputs = snapshot(REPO / "data", REPO / "metrics")
    folder = tmp_path / "demo"
    result = run_demo(folder)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for stage in ("segment", "remove_bg", "remove_fg", "colors", "apply_contrast",
                  "apply_scenic@space", "classify@efficientnet_lite0",
                  "evaluate@efficientnet_lite0", "report"):  # fmt: skip
        assert f"Running stage '{stage}'" in result.stdout, stage
    # It ends by saying where the report is.
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("  report:  ")
    report = Path(last.split(":", 1)[1].strip())
    assert report == folder / "metrics" / "report" / "index.html" and report.is_file()

    params = load_params(folder / "params.yaml")
    predictions = pd.read_csv(folder / "data" / "predictions" / "efficientnet_lite0.csv")
    assert len(predictions) == 6 * len(params.variants)
    assert set(predictions["variant"]) == set(params.variants)
    # EfficientNet-Lite0 recognises every demo photo (a class of its lenient group, if any).
    groups = {i: set(g) for g in params.evaluate.lenient_groups for i in g}
    original = predictions[predictions["variant"] == "original"]
    for row in original.itertuples():
        assert row.top1 in groups.get(row.label, {row.label}), row.image_id
    metrics = json.loads((folder / "metrics" / "efficientnet_lite0.json").read_text())
    assert metrics["overall"]["original"]["lenient_accuracy"] == 1.0
    # The printed table is the metrics' per-variant accuracy, in CONTRACTS order.
    lines = result.stdout.splitlines()
    start = lines.index("efficientnet_lite0 on the demo: top-1 accuracy (lenient), mean confidence")
    table = [line.split() for line in lines[start + 1 : start + 1 + len(params.variants)]]
    assert [row[0] for row in table] == list(params.variants)
    for name, accuracy, _, confidence in table:
        m = metrics["variants"][name]
        assert float(accuracy) == pytest.approx(m["accuracy"], abs=5e-4)
        assert float(confidence) == pytest.approx(m["confidence"], abs=5e-4)

    assert snapshot(REPO / "data", REPO / "metrics") == main_outputs  # main outputs untouched

    again = run_demo(folder)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Running stage" not in again.stdout  # nothing changed, nothing recomputed
    assert again.stdout.strip().splitlines()[-1] == last
