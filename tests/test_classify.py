"""Classification: real predictions of EfficientNet-Lite0, batching, determinism, whole-image
skipping, the CSV schema of CONTRACTS.md, and the stage's errors."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.models as tvm
from PIL import Image
from torchvision.transforms._presets import ImageClassification

from bgimpact.classify import (
    classify,
    loader_workers,
    model_threads,
    plan_items,
    select_variants,
    write_predictions,
)
from bgimpact.cli import parse_workers
from bgimpact.config import ClassifyConfig, ConfigError, ModelConfig, params_from_dict
from bgimpact.files import read_rgb
from bgimpact.models import Classifier, ModelError, Preprocess, load_classifier
from bgimpact.runtime import StageSummary, usable_cores
from bgimpact.tables import IMAGES_COLUMNS, PREDICTION_COLUMNS, read_images_table
from conftest import FIXTURE_IMAGES, FixtureProject, default_params, make_fixture_params

# One model thread: fastest on a small shared CI machine, and what the results must not depend on.
CPU = ClassifyConfig(batch_size=16, num_workers=0, amp=True, channels_last=True, device="cpu",
                     threads=1)  # fmt: skip
PARAMS = params_from_dict(default_params())


def read_predictions(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"image_id": str, "synset": str})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """images.csv of the 10 fixture photos and two stand-in variants: ``no_bg`` (mirrored
    photo) and ``no_fg`` (upside down), lossless PNGs under ``modified/<variant>/<synset>``."""
    root = tmp_path_factory.mktemp("classify_data")
    rows = []
    for path in sorted(FIXTURE_IMAGES.glob("*/*")):
        rgb = read_rgb(path)
        synset = path.parent.name
        rows.append((path.stem, synset, PARAMS.classes[synset].index, rgb.shape[1], rgb.shape[0],
                     0.5, True))  # fmt: skip
        for variant, flip in (("no_bg", np.fliplr), ("no_fg", np.flipud)):
            out = root / "modified" / variant / synset / f"{path.stem}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(flip(rgb))).save(out)
    pd.DataFrame(rows, columns=IMAGES_COLUMNS).to_csv(root / "images.csv", index=False)
    return {"table": root / "images.csv", "images": FIXTURE_IMAGES, "modified": root / "modified"}


@pytest.fixture(scope="module")
def lite() -> Classifier:
    return load_classifier("efficientnet_lite0", PARAMS.model("efficientnet_lite0"))


def run(clf: Classifier, data: dict[str, Path], out: Path, variants: tuple[str, ...],
        cfg: ClassifyConfig = CPU, ids: list[str] | None = None) -> int:  # fmt: skip
    table = read_images_table(data["table"])
    if ids is not None:
        table = table[table["image_id"].isin(ids)]
    items, skipped = plan_items(table, data["images"], data["modified"], variants)
    assert not skipped
    return write_predictions(clf, items, variants, data["modified"], out, cfg, progress=False)


def probs(frame: pd.DataFrame) -> np.ndarray:
    return frame[[f"prob{k}" for k in range(1, 6)]].to_numpy()


def tops(frame: pd.DataFrame) -> np.ndarray:
    return frame[[f"top{k}" for k in range(1, 6)]].to_numpy()


def test_efficientnet_lite0_recognises_the_fixture_photos(
    lite: Classifier, dataset: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "lite.csv"
    assert run(lite, dataset, out, ("original",)) == 10
    frame = read_predictions(out)
    assert tuple(frame.columns) == PREDICTION_COLUMNS
    assert len(frame) == 10 and set(frame["variant"]) == {"original"}
    assert list(frame["image_id"]) == sorted(frame["image_id"])
    assert set(frame["model"]) == {"efficientnet_lite0"}
    p = probs(frame)
    assert ((p >= 0) & (p <= 1)).all()
    assert (np.diff(p, axis=1) <= 0).all()  # most probable first
    assert (p.sum(axis=1) <= 1 + 1e-6).all()
    assert tops(frame).min() >= 0 and tops(frame).max() <= 999
    by_synset = frame.set_index("synset")
    assert by_synset.loc["n02123394", ["label", "top1"]].tolist() == [283, 283]  # Persian cat
    assert by_synset.loc["n02105641", ["label", "top1"]].tolist() == [
        229,
        229,
    ]  # Old English sheepdog
    # A real model that sees: most of the ten photos are recognised, confidently.
    assert (frame["top1"] == frame["label"]).sum() >= 8
    assert by_synset.loc["n02105641", "prob1"] > 0.9


def test_batch_size_does_not_change_predictions(
    lite: Classifier, dataset: dict[str, Path], tmp_path: Path
) -> None:
    variants = ("original", "no_bg")  # 20 inputs: batches of 16 + 4 against 20 of 1
    one, many = tmp_path / "b1.csv", tmp_path / "b16.csv"
    run(lite, dataset, one, variants, dataclasses.replace(CPU, batch_size=1))
    run(lite, dataset, many, variants, dataclasses.replace(CPU, batch_size=16))
    a, b = read_predictions(one), read_predictions(many)
    assert len(a) == 20
    assert a[["image_id", "variant"]].equals(b[["image_id", "variant"]])
    assert (a["top1"] == b["top1"]).all()
    np.testing.assert_allclose(probs(a), probs(b), rtol=0, atol=1e-5)


def test_output_is_identical_with_workers_and_on_rerun(
    lite: Classifier, dataset: dict[str, Path], tmp_path: Path
) -> None:
    variants = ("original", "no_bg", "no_fg")
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    run(lite, dataset, first, variants, dataclasses.replace(CPU, batch_size=8))
    run(lite, dataset, second, variants, dataclasses.replace(CPU, batch_size=8, num_workers=2))
    assert first.read_bytes() == second.read_bytes()
    frame = read_predictions(first)
    # Rows by image id, then variant in CONTRACTS order.
    assert list(frame["variant"][:3]) == ["original", "no_bg", "no_fg"]
    assert list(frame["image_id"]) == sorted(frame["image_id"])
    assert len(frame) == 30
    # The mirrored photo is a different input: its probabilities differ from the original's.
    orig, mirrored = frame[frame.variant == "original"], frame[frame.variant == "no_bg"]
    assert not np.allclose(probs(orig), probs(mirrored))


def test_torchvision_checkpoint_runs_through_the_same_path(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    reference = tvm.resnet50(weights=None).eval()
    with torch.no_grad():
        reference.fc.weight.mul_(0.2)  # softer logits: a spread of probabilities to compare
    checkpoint = tmp_path / "resnet50_random.pth"
    torch.save(reference.state_dict(), checkpoint)
    cfg = ModelConfig(arch="torchvision:resnet50", weights=str(checkpoint), resize=72, crop=64)
    clf = load_classifier("random50", cfg)
    ids = ["n02123394_sample", "n02412080_sample"]
    out = tmp_path / "random50.csv"
    assert run(clf, dataset, out, ("original",), ids=ids) == 2
    frame = read_predictions(out)
    assert list(frame["image_id"]) == ids and set(frame["model"]) == {"random50"}
    # Same numbers as torchvision's own eval preset (PIL resize 72, crop 64, normalise).
    preset = ImageClassification(crop_size=64, resize_size=72)
    for row, image_id in zip(frame.itertuples(), ids, strict=True):
        photo = Image.open(next(FIXTURE_IMAGES.glob(f"*/{image_id}.*"))).convert("RGB")
        with torch.inference_mode():
            p, t = reference(preset(photo)[None]).softmax(dim=1).topk(5)
        assert [getattr(row, f"top{k}") for k in range(1, 6)] == t[0].tolist()
        got = [getattr(row, f"prob{k}") for k in range(1, 6)]
        np.testing.assert_allclose(got, p[0].numpy(), rtol=0, atol=1e-5)


def test_image_with_a_missing_variant_is_skipped_whole(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    variants = ("original", "no_bg", "no_fg")
    table = read_images_table(dataset["table"])
    modified = tmp_path / "modified"
    for variant in ("no_bg", "no_fg"):
        for synset in ("n02123394", "n02124075"):
            src = dataset["modified"] / variant / synset / f"{synset}_sample.png"
            (modified / variant / synset).mkdir(parents=True)
            (modified / variant / synset / src.name).write_bytes(src.read_bytes())
    (modified / "no_fg" / "n02124075" / "n02124075_sample.png").unlink()
    items, skipped = plan_items(table, FIXTURE_IMAGES, modified, variants)
    assert [i.image_id for i in items] == ["n02123394_sample"]
    assert set(skipped) == set(table["image_id"]) - {"n02123394_sample"}
    reason = skipped["n02124075_sample"]
    assert "missing variant(s) no_fg" in reason and "n02124075_sample.png" in reason
    assert "no_bg, no_fg" in skipped["n01534433_sample"]  # no variant folder at all


def test_unreadable_variant_skips_its_image_whole(dataset: dict[str, Path], tmp_path: Path) -> None:
    variants = ("original", "no_bg", "no_fg")
    ids = ["n02105641_sample", "n02123394_sample", "n02124075_sample"]
    modified = tmp_path / "modified"
    for variant in ("no_bg", "no_fg"):
        for image_id in ids:
            synset = image_id.split("_")[0]
            src = dataset["modified"] / variant / synset / f"{image_id}.png"
            (modified / variant / synset).mkdir(parents=True, exist_ok=True)
            (modified / variant / synset / src.name).write_bytes(src.read_bytes())
    bad = modified / "no_fg" / "n02123394" / "n02123394_sample.png"
    bad.write_bytes(b"not a png at all")  # its original and no_bg read fine, then this fails
    table = read_images_table(dataset["table"])
    frame_in = table[table["image_id"].isin(ids)]
    frame_in.to_csv(tmp_path / "images.csv", index=False)
    summary = StageSummary("classify")
    out = tmp_path / "pred.csv"
    rows = classify("efficientnet_lite0", PARAMS.model("efficientnet_lite0"),
                    dataclasses.replace(CPU, batch_size=2), table=tmp_path / "images.csv",
                    images=FIXTURE_IMAGES, modified=modified, out=out, variants=variants,
                    summary=summary, progress=False)  # fmt: skip
    frame = read_predictions(out)
    assert rows == 6 and len(frame) == 6
    assert list(frame["image_id"].unique()) == ["n02105641_sample", "n02124075_sample"]
    assert list(frame["variant"]) == list(variants) * 2
    assert summary.done == 2
    assert list(summary.skipped) == ["n02123394_sample"]
    assert str(bad) in summary.skipped["n02123394_sample"]


def test_variants_are_selected_in_contracts_order() -> None:
    assert select_variants(PARAMS.variants, ["city", "original"]) == ("original", "city")
    assert select_variants(PARAMS.variants, None) == PARAMS.variants
    with pytest.raises(ConfigError, match="unknown nope"):
        select_variants(PARAMS.variants, ["original", "nope"])


def test_model_without_1000_outputs_writes_nothing(
    dataset: dict[str, Path], tmp_path: Path
) -> None:
    head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(3, 10))  # fmt: skip
    pre = Preprocess(40, 32, (0.5,) * 3, (0.5,) * 3)
    clf = Classifier("ten", head.eval(), pre, "test")
    out = tmp_path / "pred" / "ten.csv"
    with pytest.raises(ModelError, match="must output 1000"):
        run(clf, dataset, out, ("original",))
    assert list(out.parent.iterdir()) == []  # no output, no temporary file left


def test_stage_stops_before_writing_when_weights_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = make_fixture_params(tmp_path)
    params["classify"]["models"] = ["resnet50"]
    project = FixtureProject(tmp_path, params)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # no network: the download fails fast
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    result = project.run("classify", "--model", "resnet50", check=False)
    expected = tmp_path / "torch_home" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert result.returncode == 1
    assert f"error: weights file not found: {expected}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not project.path("predictions").exists()


def test_stage_on_the_full_fixture_pipeline(
    varied_project: FixtureProject,
) -> None:
    args = ("--model", "efficientnet_lite0", "--batch-size", "8", "--threads", "1")
    result = varied_project.run("classify", *args)
    out = varied_project.path("predictions") / "efficientnet_lite0.csv"
    frame = read_predictions(out)
    params = params_from_dict(varied_project.params)
    assert tuple(frame.columns) == PREDICTION_COLUMNS
    assert len(frame) == 130 and len(params.variants) == 13
    ids = sorted(p.stem for p in FIXTURE_IMAGES.glob("*/*"))
    assert list(frame["image_id"]) == [i for i in ids for _ in range(13)]
    assert list(frame["variant"]) == list(params.variants) * 10
    assert (frame["label"] == frame["synset"].map(params.label_of)).all()
    assert frame[[f"top{k}" for k in range(1, 6)]].dtypes.eq("int64").all()
    p = probs(frame)
    assert ((p >= 0) & (p <= 1)).all() and (np.diff(p, axis=1) <= 0).all()
    assert "classify efficientnet_lite0: 10 images, 0 skipped, rows=130" in result.stdout


@pytest.mark.parametrize(
    ("num_workers", "device", "cores", "expected"),
    [
        ("auto", "cpu", 2, 0),  # on few cores the model's threads are worth more than workers
        ("auto", "cpu", 8, 1),
        ("auto", "cpu", 32, 4),
        ("auto", "cuda", 2, 1),  # a GPU needs decoding in parallel: every core but one
        ("auto", "cuda", 12, 11),
        ("auto", "cuda", 64, 16),
        (3, "cpu", 2, 3),  # a count is taken as it is
        (0, "cuda", 16, 0),
    ],
)
def test_loader_workers(num_workers: object, device: str, cores: int, expected: int) -> None:
    cfg = dataclasses.replace(CPU, num_workers=num_workers)
    assert loader_workers(cfg, torch.device(device), cores) == expected


def test_model_threads_leave_the_workers_their_cores() -> None:
    auto = dataclasses.replace(CPU, threads=0)
    cores = usable_cores()
    assert model_threads(auto, 0) == cores
    assert model_threads(auto, cores + 3) == 1
    assert model_threads(dataclasses.replace(CPU, threads=3), 0) == 3


def test_parse_workers() -> None:
    assert parse_workers("auto") == "auto"
    assert parse_workers("4") == 4
    for bad in ("-1", "many", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected 'auto' or a count"):
            parse_workers(bad)
