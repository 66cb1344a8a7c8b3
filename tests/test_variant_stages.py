"""The variant stages end to end: a tiny hand-made project with exact expected pixels, then the
fixture photos with GrabCut masks (completeness, sizes, determinism, DVC dependencies)."""

from __future__ import annotations

import filecmp
import io
import json
import re
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bgimpact.files import discover_images, read_mask, read_rgb, save_mask
from bgimpact.variant_io import encode_png
from conftest import (
    FIXTURE_SCENES,
    REPO,
    VARIANT_STAGES,
    FixtureProject,
    dvc_repo_copy,
    make_fixture_params,
    run_dvc,
    write_params,
)

A, B = "n01534433", "n02412080"  # junco (13), ram (348)
PALETTE = np.array([(0, 0, 0), (0, 0, 30), (240, 240, 240)], np.uint8)
CITY, WATER = (30, 160, 90), (200, 200, 40)  # uniform scenes: JPEG decodes them exactly
FALLBACK_LOW, FALLBACK_HIGH = (128, 128, 128), (255, 0, 255)


def _image(seed: int, h: int, w: int, mask: np.ndarray, palette: bool) -> np.ndarray:
    """Random background; the object in a position-dependent pattern of PALETTE colours."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if palette:
        yy, xx = np.mgrid[:h, :w]
        image[mask] = PALETTE[((yy + 2 * xx) % 3)[mask]]
    return image


def _rect(h: int, w: int, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[top:bottom, left:right] = True
    return mask


def make_tiny_project(root: Path) -> FixtureProject:
    """Two classes, five rows in images.csv, two uniform scenes.

    - A/a1 (6x8 PNG) and A/a3 (8x6 PNG): mask_ok, objects in PALETTE colours;
    - A/a2 (6x8 JPEG): mask_ok false (its object colours must not enter A's colours);
    - B/b1 (6x8 PNG): mask_ok false, so class B has no usable pixels (fallback colours);
    - B/b2: listed, photo present, mask missing (skipped and reported).
    """
    params = make_fixture_params(root)
    images, scenes = root / "images", root / "scenes"
    params["data"]["images"], params["data"]["scenes"] = str(images), str(scenes)
    params["scenes"] = ["city", "water"]
    masks = Path(params["data"]["masks"])
    specs = {  # id: (synset, suffix, mask, palette object, mask_ok, write mask)
        "a1": (A, ".png", _rect(6, 8, 1, 2, 5, 6), True, True, True),
        "a2": (A, ".jpg", _rect(6, 8, 0, 0, 3, 8), False, False, True),
        "a3": (A, ".png", _rect(8, 6, 2, 0, 8, 3), True, True, True),
        "b1": (B, ".png", _rect(6, 8, 3, 3, 6, 8), False, False, True),
        "b2": (B, ".png", _rect(6, 8, 1, 1, 4, 4), False, True, False),
    }
    rows = []
    for seed, (image_id, (synset, suffix, mask, palette, ok, has_mask)) in enumerate(specs.items()):
        h, w = mask.shape
        (images / synset).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(seed, h, w, mask, palette)).save(
            images / synset / f"{image_id}{suffix}"
        )
        if has_mask:
            save_mask(mask, masks / synset / f"{image_id}.png")
        label = params["classes"][synset]["index"]
        rows.append((image_id, synset, label, w, h, round(float(mask.mean()), 6), ok))
    table = pd.DataFrame(
        rows, columns=["image_id", "synset", "label", "width", "height", "object_fraction",
                       "mask_ok"],
    )  # fmt: skip
    table.to_csv(params["data"]["table"], index=False)
    scenes.mkdir()
    Image.fromarray(np.full((12, 16, 3), CITY, np.uint8)).save(scenes / "city.jpg", quality=95)
    Image.fromarray(np.full((20, 10, 3), WATER, np.uint8)).save(scenes / "water.jpg", quality=95)
    return FixtureProject(root, params)


def original(project: FixtureProject, synset: str, image_id: str) -> np.ndarray:
    (path,) = (project.path("images") / synset).glob(f"{image_id}.*")
    return read_rgb(path)


def mask_of(project: FixtureProject, synset: str, image_id: str) -> np.ndarray:
    return read_mask(project.path("masks") / synset / f"{image_id}.png")


def variant(project: FixtureProject, name: str, synset: str, image_id: str) -> np.ndarray:
    path = project.path("modified") / name / synset / f"{image_id}.png"
    with Image.open(path) as image:
        assert image.mode == "RGB" and image.format == "PNG"
        return np.asarray(image)


WRITTEN = [(A, "a1"), (A, "a2"), (A, "a3"), (B, "b1")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[FixtureProject, dict]:
    """The tiny project after every variant stage, scenes one per run as DVC runs them."""
    project = make_tiny_project(tmp_path_factory.mktemp("tiny"))
    runs = {stage: project.run(stage) for stage in VARIANT_STAGES[:-1]}
    runs["city"] = project.run("apply_scenic", "--scene", "city")
    runs["water"] = project.run("apply_scenic", "--scene", "water")
    return project, runs


def test_no_bg_and_no_fg_are_exact(tiny) -> None:
    project, _ = tiny
    for synset, image_id in WRITTEN:
        image, mask = original(project, synset, image_id), mask_of(project, synset, image_id)
        no_bg = variant(project, "no_bg", synset, image_id)
        no_fg = variant(project, "no_fg", synset, image_id)
        np.testing.assert_array_equal(no_bg[mask], image[mask])
        assert (no_bg[~mask] == 0).all()
        np.testing.assert_array_equal(no_fg[~mask], image[~mask])
        assert (no_fg[mask] == 0).all()


def test_colours_from_mask_ok_object_pixels_only(tiny) -> None:
    project, runs = tiny
    colors = json.loads(project.path("colors").read_text())
    # A: the PALETTE (black pixels included), a2 (mask_ok false) left out; mean (80, 80, 90)
    assert colors[A] == {"low": [80, 80, 90], "high": [240, 240, 240]}
    # B: no mask_ok image with a mask -> fallback, with a warning naming the class
    assert colors[B] == {"low": list(FALLBACK_LOW), "high": list(FALLBACK_HIGH)}
    assert f"class {B} has no object pixels" in runs["colors"].stderr
    assert "fallback=n02412080" in runs["colors"].stdout


def test_contrast_backgrounds_are_the_class_colours(tiny) -> None:
    project, _ = tiny
    colours = {A: ((80, 80, 90), (240, 240, 240)), B: (FALLBACK_LOW, FALLBACK_HIGH)}
    for synset, image_id in WRITTEN:
        image, mask = original(project, synset, image_id), mask_of(project, synset, image_id)
        for name, colour in zip(("low_contrast", "high_contrast"), colours[synset], strict=True):
            out = variant(project, name, synset, image_id)
            np.testing.assert_array_equal(out[mask], image[mask])
            assert (out[~mask] == colour).all()


def test_scenic_backgrounds_and_objects(tiny) -> None:
    project, runs = tiny
    for synset, image_id in WRITTEN:
        image, mask = original(project, synset, image_id), mask_of(project, synset, image_id)
        for name, colour in (("city", CITY), ("water", WATER)):
            out = variant(project, name, synset, image_id)
            assert out.shape == image.shape
            np.testing.assert_array_equal(out[mask], image[mask])
            assert (out[~mask] == colour).all()
    # sizes 6x8 and 8x6: the scene is resized once per size
    assert "scenes=1, fit=stretch, scene_resizes=2" in runs["city"].stdout


def test_missing_mask_is_skipped_and_reported(tiny) -> None:
    project, runs = tiny
    for stage in ("remove_bg", "remove_fg", "apply_contrast", "city", "water"):
        assert "4 images, 1 skipped" in runs[stage].stdout, runs[stage].stdout
        assert f"skipped {B}/b2: mask not found" in runs[stage].stderr
    assert "colors: 2 images, 1 skipped" in runs["colors"].stdout  # mask_ok rows only
    written = sorted(p.relative_to(project.path("modified")).as_posix()
                     for p in project.path("modified").rglob("*.png"))  # fmt: skip
    assert len(written) == 6 * 4 and not any("b2" in p for p in written)


@pytest.mark.parametrize("stage", VARIANT_STAGES)
def test_every_path_is_an_option_in_help(tiny, stage, capsys, monkeypatch) -> None:
    project, _ = tiny
    flags = ["--images", "--masks", "--table", "--out", "--params", "--workers"]
    flags += {"apply_contrast": ["--colors"], "apply_scenic": ["--scenes", "--scene"]}.get(
        stage, []
    )
    script = REPO / "stages" / f"{stage}.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--params", str(project.params_path), "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert set(flags) <= set(re.findall(r"--[a-z]+", text))
    # defaults come from the params file (argparse may wrap a long path anywhere)
    assert str(project.path("masks")) in "".join(text.split())


def test_scenes_by_hand_all_or_several(tmp_path: Path) -> None:
    project = make_tiny_project(tmp_path)
    out = project.run("apply_scenic", "--out", str(tmp_path / "all"))
    assert "scenes=2" in out.stdout
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["city", "water"]
    bad = project.run("apply_scenic", "--scene", "moon", check=False)
    assert bad.returncode == 1
    assert "error: scene(s) moon not in params scenes (city, water)" in bad.stderr


def test_missing_scene_file_stops_before_writing(tmp_path: Path) -> None:
    project = make_tiny_project(tmp_path)
    (project.path("scenes") / "water.jpg").unlink()
    result = project.run("apply_scenic", check=False)
    assert result.returncode == 1
    assert f"error: scene file(s) not found: {project.path('scenes') / 'water.jpg'}" in (
        result.stderr
    )
    assert not project.path("modified").exists()


def test_mask_of_another_size_stops_naming_it(tmp_path: Path) -> None:
    project = make_tiny_project(tmp_path)
    bad = project.path("masks") / A / "a3.png"
    save_mask(np.ones((6, 8), bool), bad)  # a3 is 8 high and 6 wide
    result = project.run("remove_bg", check=False)
    assert result.returncode == 1
    assert f"error: {bad}: mask is 8x6 but its image" in result.stderr
    assert "is 6x8; the masks do not belong to these images" in result.stderr


def test_broken_original_is_skipped_rest_written(tmp_path: Path) -> None:
    project = make_tiny_project(tmp_path)
    broken = project.path("images") / A / "a1.png"
    broken.write_bytes(b"not a png")
    result = project.run("remove_fg")
    assert "remove_fg: 3 images, 2 skipped" in result.stdout
    assert f"skipped {A}/a1: {broken}: not a readable image" in result.stderr
    assert (project.path("modified") / "no_fg" / A / "a3.png").is_file()


def test_rerun_removes_outputs_of_images_no_longer_listed(tmp_path: Path) -> None:
    project = make_tiny_project(tmp_path)
    project.run("remove_bg")
    folder = project.path("modified") / "no_bg"
    stale = folder / B / "old.png"
    stale.write_bytes(b"x")
    (project.path("masks") / A / "a3.png").unlink()
    project.run("remove_bg")
    assert not stale.exists() and not (folder / A / "a3.png").exists()
    assert sorted(p.stem for p in folder.rglob("*.png")) == ["a1", "a2", "b1"]


def test_contrast_needs_colours_for_every_class(tmp_path: Path) -> None:
    project = make_tiny_project(tmp_path)
    project.path("colors").parent.mkdir(parents=True, exist_ok=True)
    project.path("colors").write_text('{"n01534433": {"low": [1, 2, 3], "high": [4, 5, 6]}}\n')
    result = project.run("apply_contrast", check=False)
    assert result.returncode == 1
    assert f"{project.path('colors')}: no colours for class(es) {B}" in result.stderr


def test_png_encoding_is_lossless_and_stable() -> None:
    image = np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    for arr in (image, image[:, ::-1], image[::2]):  # views that are not contiguous too
        data = encode_png(arr)
        assert data == encode_png(arr.copy())
        with Image.open(io.BytesIO(data)) as png:
            assert (png.format, png.mode, png.size) == ("PNG", "RGB", arr.shape[1::-1])
            np.testing.assert_array_equal(np.asarray(png), arr)
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        encode_png(image.astype(np.uint16))


# ------------------------------------------------------------------ fixture photos + GrabCut


def test_fixture_variants_complete(varied_project: FixtureProject) -> None:
    """12 variant folders x 10 images, each the size of its original, RGB PNG."""
    project = varied_project
    names = ["no_bg", "no_fg", "low_contrast", "high_contrast", *project.params["scenes"]]
    assert len(names) == 12
    modified = project.path("modified")
    assert sorted(p.name for p in modified.iterdir()) == sorted(names)
    records = discover_images(project.path("images"))
    assert len(records) == 10
    for name in names:
        assert len(list((modified / name).rglob("*.png"))) == 10, name
        for r in records:
            with Image.open(modified / name / r.synset / f"{r.image_id}.png") as out:
                assert out.mode == "RGB"
                with Image.open(r.path) as src:
                    assert out.size == src.size, (name, r.image_id)
    colors = json.loads(project.path("colors").read_text())
    assert sorted(colors) == sorted(project.params["classes"])


def test_fixture_variants_follow_the_masks(varied_project: FixtureProject) -> None:
    project = varied_project
    colors = json.loads(project.path("colors").read_text())
    for r in discover_images(project.path("images")):
        image, mask = read_rgb(r.path), mask_of(project, r.synset, r.image_id)
        assert 0 < mask.mean() < 1
        for name in ("no_bg", "low_contrast", "high_contrast", "city", "snow"):
            np.testing.assert_array_equal(variant(project, name, r.synset, r.image_id)[mask],
                                          image[mask])  # fmt: skip
        assert (variant(project, "no_bg", r.synset, r.image_id)[~mask] == 0).all()
        high = variant(project, "high_contrast", r.synset, r.image_id)
        assert (high[~mask] == colors[r.synset]["high"]).all()
        no_fg = variant(project, "no_fg", r.synset, r.image_id)
        assert (no_fg[mask] == 0).all()
        np.testing.assert_array_equal(no_fg[~mask], image[~mask])


def test_fixture_variants_are_deterministic(varied_project: FixtureProject, tmp_path) -> None:
    """A second run (one worker thread instead of several) writes byte-identical files."""
    params = json.loads(json.dumps(varied_project.params))
    params["data"]["colors"] = str(tmp_path / "colors.json")
    params["data"]["modified"] = str(tmp_path / "modified")
    again = FixtureProject(tmp_path, params)
    for stage in VARIANT_STAGES:
        again.run(stage, "--workers", "1")
    assert filecmp.cmp(varied_project.path("colors"), again.path("colors"), shallow=False)
    first = sorted(p.relative_to(varied_project.path("modified"))
                   for p in varied_project.path("modified").rglob("*.png"))  # fmt: skip
    second = sorted(p.relative_to(again.path("modified"))
                    for p in again.path("modified").rglob("*.png"))  # fmt: skip
    assert first == second and len(first) == 120
    _, mismatch, errors = filecmp.cmpfiles(
        varied_project.path("modified"), again.path("modified"), first, shallow=False
    )
    assert mismatch == [] and errors == []


@pytest.mark.slow
def test_dvc_reruns_only_what_a_change_touches(varied_project: FixtureProject, tmp_path) -> None:
    """colors.k touches colors + apply_contrast; a scene file or the scene list only scenic."""
    repo = tmp_path / "repo"
    repo.mkdir()
    params = make_fixture_params(repo)
    params["data"]["scenes"] = str(repo / "scenes")  # a copy we may change
    params["colors"]["max_pixels"] = 20_000  # the rerun of colors below, faster
    dvc_repo_copy(repo, params)
    shutil.copytree(FIXTURE_SCENES, repo / "scenes")
    src = varied_project
    for key in ("masks", "overlays", "modified"):
        shutil.copytree(src.path(key), Path(params["data"][key]))
    for key in ("table", "colors"):
        shutil.copy2(src.path(key), Path(params["data"][key]))
    ours = ["segment", "remove_bg", "remove_fg", "colors", "apply_contrast"]
    scenic = [f"apply_scenic@{s}" for s in params["scenes"]]
    run_dvc(repo, "commit", "-f", "-q", *ours, *scenic)

    everything = ours + scenic

    def reproduced(*stages: str, dry: bool = False) -> list[str]:
        """The stages ``dvc repro`` runs (or would run, with ``dry``) for ``stages``."""
        out = run_dvc(repo, "repro", *(["--dry"] if dry else []), *stages).stdout
        return sorted(set(re.findall(r"Running stage '([^']+)'", out)))

    assert reproduced(*everything, dry=True) == []
    before = Path(params["data"]["colors"]).read_text()
    write_params(repo, {**params, "colors": {**params["colors"], "k": 4}})
    assert reproduced(*everything) == ["apply_contrast", "colors"]
    assert Path(params["data"]["colors"]).read_text() != before
    (repo / "scenes" / "water.jpg").write_bytes((repo / "scenes" / "snow.jpg").read_bytes())
    assert reproduced(*everything) == ["apply_scenic@water"]
    write_params(repo, {**params, "colors": {**params["colors"], "k": 4},
                        "scenes": params["scenes"][:-1]})  # fmt: skip
    assert reproduced(*ours, *scenic[:-1], dry=True) == []  # snow dropped: nothing to redo
    write_params(repo, {**params, "colors": {**params["colors"], "k": 4},
                        "scenic": {"fit": "cover"}})  # fmt: skip
    assert reproduced(*everything, dry=True) == sorted(scenic)
