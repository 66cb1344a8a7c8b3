"""stages/segment.py end to end: GrabCut on the fixtures, bad files, DeepLabV3 from a local
checkpoint, missing weights offline, and `dvc repro segment`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.models as tvm
from PIL import Image

from bgimpact.config import ClassConfig
from bgimpact.files import (
    DatasetError,
    ImageRecord,
    discover_images,
    read_mask,
    read_rgb,
    save_mask,
)
from bgimpact.segmentation import GrabCutSegmenter, ProvidedSegmenter, run_segmentation
from bgimpact.tables import IMAGES_COLUMNS, read_images_table
from conftest import (
    FIXTURE_IMAGES,
    REPO,
    FixtureProject,
    default_params,
    dvc_repo_copy,
    make_fixture_params,
    run_dvc,
)

DOG_SYNSET, BIRD_SYNSET = "n02105641", "n01534433"  # Old English sheepdog (347x480), junco
FAST_GRABCUT = {"margin": 0.05, "iterations": 2, "max_side": 128}


def _fixture_photo(synset: str) -> Path:
    return next((FIXTURE_IMAGES / synset).iterdir())


def _small_project(root: Path, synsets: list[str], segment: dict | None = None) -> FixtureProject:
    """A project over a private copy of some fixture photos, classes limited to ``synsets``."""
    params = make_fixture_params(root)
    params["classes"] = {s: params["classes"][s] for s in synsets}
    images = root / "photos"
    for synset in synsets:
        (images / synset).mkdir(parents=True)
        shutil.copy2(_fixture_photo(synset), images / synset)
    params["data"]["images"] = str(images)
    params["segment"]["grabcut"] = dict(FAST_GRABCUT)
    params["segment"].update(segment or {})
    return FixtureProject(root, params)


# ----------------------------------------------------------------------------- GrabCut, fixtures


def test_grabcut_segments_the_ten_fixture_photos(segmented_project: FixtureProject) -> None:
    project = segmented_project
    table = pd.read_csv(project.path("table"), dtype={"image_id": str, "synset": str})
    assert tuple(table.columns) == IMAGES_COLUMNS
    assert len(table) == 10
    assert table["image_id"].tolist() == sorted(table["image_id"])
    read_images_table(project.path("table"))  # the validated reader accepts it
    classes = project.params["classes"]
    for row in table.itertuples():
        photo = read_rgb(_fixture_photo(row.synset))
        assert (row.height, row.width) == photo.shape[:2]
        assert row.label == classes[row.synset]["index"]
        mask_path = project.path("masks") / row.synset / f"{row.image_id}.png"
        mask = read_mask(mask_path, photo.shape[:2])
        assert row.object_fraction == pytest.approx(mask.mean(), abs=1e-6)
        assert 0.02 < row.object_fraction < 0.95, row.image_id
        assert row.mask_ok
        with Image.open(project.path("overlays") / row.synset / f"{row.image_id}.jpg") as overlay:
            assert overlay.size == (row.width, row.height) and overlay.mode == "RGB"


def test_bad_files_are_reported_and_skipped(tmp_path: Path) -> None:
    project = _small_project(tmp_path, [DOG_SYNSET, BIRD_SYNSET])
    images = project.path("images")
    bad = {
        images / DOG_SYNSET / "empty.jpg": b"",
        images / DOG_SYNSET / "cut.JPEG": _fixture_photo(DOG_SYNSET).read_bytes()[:2000],
        images / BIRD_SYNSET / "text.png": b"not an image at all\n",
    }
    for path, content in bad.items():
        path.write_bytes(content)
    # A CMYK photo is converted and segmented; a class not in params is not read at all.
    Image.open(_fixture_photo(BIRD_SYNSET)).convert("CMYK").save(images / BIRD_SYNSET / "cmyk.jpg")
    (images / "n09999999").mkdir()
    (images / "n09999999" / "other.jpg").write_bytes(b"")

    result = project.run("segment")

    for path in bad:
        assert str(path) in result.stderr
    assert "other.jpg" not in result.stderr
    assert "segment: 3 images, 3 skipped" in result.stdout
    table = read_images_table(project.path("table"))
    assert sorted(table["image_id"]) == sorted(
        ["cmyk", _fixture_photo(DOG_SYNSET).stem, _fixture_photo(BIRD_SYNSET).stem]
    )
    masks = sorted(p.name for p in project.path("masks").rglob("*.png"))
    assert masks == sorted(f"{i}.png" for i in table["image_id"])
    cmyk = table.set_index("image_id").loc["cmyk"]
    assert (cmyk["width"], cmyk["height"]) == (500, 375)


def _records(root: Path, synsets: list[str]) -> list[ImageRecord]:
    for synset in synsets:
        (root / synset).mkdir(parents=True)
        shutil.copy2(_fixture_photo(synset), root / synset)
    return discover_images(root, synsets)


def _classes(synsets: list[str]) -> dict[str, ClassConfig]:
    return {s: ClassConfig(**c) for s, c in default_params()["classes"].items() if s in synsets}


def test_no_readable_image_is_an_error(tmp_path: Path) -> None:
    records = _records(tmp_path / "photos", [DOG_SYNSET])
    records[0].path.write_bytes(b"")
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match="none of the 1 images could be segmented"):
        run_segmentation(records, GrabCutSegmenter(0.05, 1, 64), _classes([DOG_SYNSET]),
                         out / "masks", out / "overlays", out / "images.csv", 0.001)  # fmt: skip
    assert not (out / "images.csv").exists()


def test_provided_masks_are_validated_and_used(tmp_path: Path) -> None:
    synsets = [DOG_SYNSET, BIRD_SYNSET, "n02123394"]
    records = _records(tmp_path / "photos", synsets)
    given = tmp_path / "given"
    dog = records[[r.synset for r in records].index(DOG_SYNSET)]
    bird = records[[r.synset for r in records].index(BIRD_SYNSET)]
    dog_mask = np.zeros((480, 347), dtype=bool)
    dog_mask[100:300, 50:250] = True
    save_mask(dog_mask, given / DOG_SYNSET / f"{dog.image_id}.png")
    save_mask(np.ones((10, 10), dtype=bool), given / BIRD_SYNSET / f"{bird.image_id}.png")
    # n02123394 has no mask file at all.
    out = tmp_path / "out"
    run = run_segmentation(records, ProvidedSegmenter(given), _classes(synsets), out / "masks",
                           out / "overlays", out / "images.csv", 0.001)  # fmt: skip

    assert run.table["image_id"].tolist() == [dog.image_id]
    assert run.table.loc[0, "object_fraction"] == pytest.approx(dog_mask.mean(), abs=1e-6)
    written = read_mask(out / "masks" / DOG_SYNSET / f"{dog.image_id}.png", (480, 347))
    assert (written == dog_mask).all()
    assert set(run.summary.skipped) == {str(r.path) for r in records if r is not dog}
    reasons = " ".join(run.summary.skipped.values())
    assert "mask is 10x10 but its image is 500x375" in reasons and "mask not found" in reasons
    with pytest.raises(DatasetError, match="provided masks not found"):
        ProvidedSegmenter(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- DeepLabV3


def _dog_everywhere_checkpoint(path: Path) -> Path:
    """Random-initialised DeepLabV3-MobileNetV3 whose head labels every pixel "dog".

    Saved with the auxiliary head, as torchvision's own checkpoint files are.
    """
    torch.manual_seed(0)
    model = tvm.get_model(
        "deeplabv3_mobilenet_v3_large", weights=None, weights_backbone=None, aux_loss=True
    )
    last = model.classifier[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[12] = 1.0  # VOC "dog"
    torch.save(model.state_dict(), path)
    return path


def test_deeplab_from_a_local_checkpoint_end_to_end(tmp_path: Path) -> None:
    checkpoint = _dog_everywhere_checkpoint(tmp_path / "deeplab.pth")
    project = _small_project(
        tmp_path,
        [DOG_SYNSET, BIRD_SYNSET],
        {"method": "deeplabv3_mobilenet_v3_large", "weights": str(checkpoint), "resize": 96,
         "batch_size": 2, "device": "cpu"},
    )  # fmt: skip
    result = project.run("segment")

    table = read_images_table(project.path("table")).set_index("synset")
    assert table.loc[DOG_SYNSET, "object_fraction"] == 1.0 and table.loc[DOG_SYNSET, "mask_ok"]
    assert table.loc[BIRD_SYNSET, "object_fraction"] == 0.0
    assert not table.loc[BIRD_SYNSET, "mask_ok"]  # kept in the table, marked
    bird_id = _fixture_photo(BIRD_SYNSET).stem
    assert "mask not ok" in result.stderr and bird_id in result.stderr
    assert "segment: 2 images, 0 skipped, masks_ok=1, masks_failed=1" in result.stdout
    for synset, (width, height) in {DOG_SYNSET: (347, 480), BIRD_SYNSET: (500, 375)}.items():
        image_id = _fixture_photo(synset).stem
        mask = read_mask(project.path("masks") / synset / f"{image_id}.png", (height, width))
        assert mask.all() if synset == DOG_SYNSET else not mask.any()


def test_missing_weights_offline_stops_before_any_output(tmp_path: Path) -> None:
    torch_home = tmp_path / "torch_home"
    torch_home.mkdir()
    params = make_fixture_params(tmp_path)
    params["segment"]["method"] = "deeplabv3_mobilenet_v3_large"
    params["segment"]["weights"] = "COCO_WITH_VOC_LABELS_V1"
    project = FixtureProject(tmp_path, params)
    env = dict(os.environ, TORCH_HOME=str(torch_home))
    # Whatever the network here, no download can happen: every proxy is a closed local port.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[var] = "http://127.0.0.1:9"
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    stage = REPO / "stages" / "segment.py"
    cmd = [sys.executable, str(stage), "--params", str(project.params_path)]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)

    url = tvm.get_model_weights("deeplabv3_mobilenet_v3_large").COCO_WITH_VOC_LABELS_V1.url
    expected = torch_home / "hub" / "checkpoints" / Path(url).name
    assert result.returncode == 1, result.stderr
    assert f"weights file not found: {expected}" in result.stderr
    assert "make weights" in result.stderr and "local checkpoint" in result.stderr
    assert not (tmp_path / "data").exists()  # no mask, overlay or table folder was created
    assert not expected.exists()


# ----------------------------------------------------------------------------- DVC


@pytest.mark.slow
def test_dvc_repro_segment_in_a_repository_copy(tmp_path: Path) -> None:
    params = default_params()
    params["data"]["images"] = str(FIXTURE_IMAGES)
    params["segment"]["method"] = "grabcut"
    params["segment"]["grabcut"] = dict(FAST_GRABCUT)
    repo = dvc_repo_copy(tmp_path / "repo", params)

    result = run_dvc(repo, "repro", "segment")
    assert "Running stage 'segment'" in result.stdout

    table = read_images_table(repo / "data" / "images.csv")
    assert len(table) == 10
    assert len(list((repo / "data" / "masks").rglob("*.png"))) == 10
    assert len(list((repo / "data" / "overlays").rglob("*.jpg"))) == 10
    lock = (repo / "dvc.lock").read_text()
    assert "segment:" in lock and "data/masks" in lock and "data/images.csv" in lock
    status = run_dvc(repo, "status", "segment")
    assert "up to date" in status.stdout.lower() or status.stdout.strip() == ""
    # The outputs were cached: a copy whose masks are lost gets them back from the cache.
    shutil.rmtree(repo / "data" / "masks")
    run_dvc(repo, "checkout", "segment")
    assert len(list((repo / "data" / "masks").rglob("*.png"))) == 10
    restored = np.asarray(Image.open(next((repo / "data" / "masks").rglob("*.png"))))
    assert set(np.unique(restored).tolist()) <= {0, 255}
