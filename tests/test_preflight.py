"""``python -m bgimpact.preflight``: what ``make reproduce`` checks before ``dvc repro``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bgimpact.config import params_from_dict
from bgimpact.preflight import EXIT_MISSING, check_inputs, main
from conftest import (
    FIXTURE_IMAGES,
    FIXTURE_SCENES,
    copy_fixture_images,
    default_params,
    write_params,
)

SYNSETS = sorted(default_params()["classes"])


def project(tmp_path: Path, images: Path, scenes: Path = FIXTURE_SCENES) -> Path:
    """A params file in ``tmp_path`` reading ``images`` and ``scenes``; returns its path."""
    data = default_params()
    data["data"]["images"] = str(images)
    data["data"]["scenes"] = str(scenes)
    return write_params(tmp_path, data)


def test_no_images_stops_with_the_imagenet_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "train"
    images.mkdir()
    (images / "README.txt").write_text("not a photo")
    assert main(["--params", str(project(tmp_path, images))]) == EXIT_MISSING
    err = capsys.readouterr().err
    assert err.startswith(f"error: no images under {images} (params data.images).")
    assert f"{images}/<synset>/<file>" in err
    for synset, c in default_params()["classes"].items():
        assert f"{images / synset}/" in err and c["name"] in err, synset
    # How to link an existing ImageNet copy, for exactly these synsets.
    assert f"for s in {' '.join(default_params()['classes'])}; do" in err
    assert f"cp -rs /path/to/imagenet/train/$s {images}/" in err
    assert "make demo" in err


def test_missing_folder_is_reported_like_an_empty_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--params", str(project(tmp_path, tmp_path / "nowhere"))]) == EXIT_MISSING
    assert "error: no images under" in capsys.readouterr().err


def test_fixtures_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--params", str(project(tmp_path, FIXTURE_IMAGES))]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.strip() == (
        f"preflight: 10 images in 10 classes under {FIXTURE_IMAGES}, 8/8 scenes in {FIXTURE_SCENES}"
    )


def test_missing_classes_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = copy_fixture_images(tmp_path / "train", SYNSETS[:8])
    assert main(["--params", str(project(tmp_path, images))]) == EXIT_MISSING
    err = capsys.readouterr().err
    assert "no images for 2 of 10 classes:" in err
    for synset in SYNSETS[8:]:
        assert f"{images / synset}/" in err
    for synset in SYNSETS[:8]:
        assert f"{images / synset}/" not in err


def test_linked_class_folder_is_refused_linked_files_are_fine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = copy_fixture_images(tmp_path / "train", SYNSETS[1:])
    linked = images / SYNSETS[0]
    linked.symlink_to(FIXTURE_IMAGES / SYNSETS[0], target_is_directory=True)
    params = project(tmp_path, images)
    assert main(["--params", str(params)]) == EXIT_MISSING
    err = capsys.readouterr().err
    assert f"{linked} -> {FIXTURE_IMAGES / SYNSETS[0]}" in err
    assert f"rm {linked} && cp -rs {FIXTURE_IMAGES / SYNSETS[0]} {images}/" in err

    # The suggested fix: a real folder whose files are links.
    linked.unlink()
    linked.mkdir()
    for photo in (FIXTURE_IMAGES / SYNSETS[0]).iterdir():
        (linked / photo.name).symlink_to(photo)
    assert main(["--params", str(params)]) == 0


def test_missing_scene_photos_are_named(tmp_path: Path) -> None:
    scenes = tmp_path / "scenes"
    shutil.copytree(FIXTURE_SCENES, scenes)
    (scenes / "snow.jpg").unlink()
    (scenes / "sky.jpg").unlink()
    data = default_params()
    data["data"].update(images=str(FIXTURE_IMAGES), scenes=str(scenes))
    result = check_inputs(params_from_dict(data))
    assert not result.ok and len(result.problems) == 1
    assert f"  {scenes}/sky.jpg\n  {scenes}/snow.jpg\n" in result.problems[0]
    assert "city.jpg" not in result.problems[0]


def test_provided_masks_folder_must_exist(tmp_path: Path) -> None:
    data = default_params()
    data["data"].update(images=str(FIXTURE_IMAGES), scenes=str(FIXTURE_SCENES))
    data["segment"].update(method="provided", provided_masks=str(tmp_path / "masks"))
    result = check_inputs(params_from_dict(data))
    assert len(result.problems) == 1 and f"mask folder {tmp_path / 'masks'}" in result.problems[0]
    (tmp_path / "masks").mkdir()
    assert check_inputs(params_from_dict(data)).ok


def test_invalid_params_exit_1_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = default_params()
    data["segment"]["method"] = "magic"
    assert main(["--params", str(write_params(tmp_path, data))]) == 1
    assert "segment.method" in capsys.readouterr().err
