"""The evaluate and report stages, the HTML report, and DVC's metrics and plots on their output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bgimpact.config import ReportConfig, load_params
from bgimpact.evaluation import compare, evaluate_model
from bgimpact.report import label_name, pick_examples, render_report
from bgimpact.tables import read_images_table
from conftest import FIXTURE_IMAGES, REPO, default_params, dvc_repo_copy, run_dvc, write_params

MODELS = ("resnet50", "convnext_base")
VARIANTS = ("original", "no_bg", "no_fg", "city")


def make_tables(folder: Path, seed: int = 0) -> dict[str, dict[str, bool]]:
    """images.csv for the 10 fixture photos and predictions/<model>.csv for two models.

    Returns, per model, which (image, variant) predictions are right.
    """
    classes = load_params(REPO / "params.yaml").classes
    ids = sorted(p.stem for p in FIXTURE_IMAGES.glob("*/*.JPEG"))
    synsets = [i.split("_")[0] for i in ids]
    images = pd.DataFrame(
        {
            "image_id": ids,
            "synset": synsets,
            "label": [classes[s].index for s in synsets],
            "width": 100,
            "height": 80,
            "object_fraction": np.linspace(0.05, 0.6, len(ids)),
            "mask_ok": [True] * (len(ids) - 1) + [False],
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    images.to_csv(folder / "images.csv", index=False)
    rng = np.random.default_rng(seed)
    right: dict[str, dict[str, bool]] = {}
    (folder / "predictions").mkdir(exist_ok=True)
    for model in MODELS:
        rows = []
        for variant in VARIANTS:
            for image in images.itertuples():
                ok = bool(rng.random() < (0.9 if variant == "original" else 0.5))
                right.setdefault(model, {})[f"{image.image_id}/{variant}"] = ok
                rows.append(
                    {
                        "image_id": image.image_id,
                        "synset": image.synset,
                        "label": image.label,
                        "variant": variant,
                        "model": model,
                        "top1": image.label if ok else 349 if image.label == 348 else 348,
                        "prob1": round(float(rng.uniform(0.2, 1.0)), 4),
                    }
                )
        pd.DataFrame(rows).to_csv(folder / "predictions" / f"{model}.csv", index=False)
    return right


def make_variant_images(modified: Path, variant: str = "no_bg", count: int = 3) -> None:
    """Solid-colour stand-ins for a few variant images (the rest stay missing)."""
    for path in sorted(FIXTURE_IMAGES.glob("*/*.JPEG"))[:count]:
        out = modified / variant / path.parent.name / f"{path.stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (30, 160, 90)).save(out)


def accuracy(right: dict[str, bool], variant: str, excluded: set[str]) -> float:
    hits = [
        ok
        for key, ok in right.items()
        if key.endswith(f"/{variant}") and key.split("/")[0] not in excluded
    ]
    return sum(hits) / len(hits)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("tables")
    right = make_tables(folder)
    make_variant_images(folder / "modified")
    return folder, right


@pytest.fixture(scope="module")
def results(tables):
    folder, _ = tables
    params = load_params(REPO / "params.yaml")
    images = read_images_table(folder / "images.csv")
    return [
        evaluate_model(
            images,
            folder / "predictions" / f"{m}.csv",
            params.variants,
            params.evaluate,
            params.classes,
            model=m,
        )
        for m in MODELS
    ]


def figures_of(page: str) -> list[str]:
    return re.findall(r"<img src='([^']+)'", page)


def test_report_page_and_figures(tmp_path, tables, results):
    folder, _ = tables
    out = tmp_path / "report"
    out.mkdir()
    (out / "fig_stale.png").write_bytes(b"old")
    params = load_params(REPO / "params.yaml")
    page_path = render_report(
        out,
        results,
        compare(results),
        ReportConfig(examples=3, seed=1),
        images=FIXTURE_IMAGES,
        modified=folder / "modified",
        classes=params.classes,
    )
    page = page_path.read_text()
    names = figures_of(page)
    assert names == [
        "fig_accuracy.png",
        "fig_confidence.png",
        "fig_size.png",
        "fig_classes_resnet50.png",
        "fig_classes_convnext_base.png",
        "fig_examples.png",
    ]
    for name in names:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 400
    assert sorted(p.name for p in out.glob("*.png")) == sorted(names)  # stale figure removed
    # self-contained: no scripts, no remote resources
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "resnet50 vs convnext_base" in page
    assert "exact binomial" in page  # 10 images: few discordant pairs
    assert "Persian cat" in page


def test_report_without_photos_skips_the_grid(tmp_path, results):
    page = render_report(tmp_path, results, {}, ReportConfig(), images=tmp_path / "absent")
    text = page.read_text()
    assert "fig_examples.png" not in figures_of(text)
    assert "No example grid" in text
    assert not (tmp_path / "fig_examples.png").exists()


def test_pick_examples_seeded_and_existing(results):
    first = pick_examples(results[0], FIXTURE_IMAGES, 4, seed=3)
    assert first == pick_examples(results[0], FIXTURE_IMAGES, 4, seed=3)
    assert len(first) == 4
    assert len({results[0].data.synsets[row] for row, _ in first}) == 4  # one per class
    for row, path in first:
        assert path.is_file() and path.stem == results[0].data.image_ids[row]
    assert pick_examples(results[0], None, 4, seed=3) == []
    assert pick_examples(results[0], FIXTURE_IMAGES, 0, seed=3) == []


def test_label_names():
    params = load_params(REPO / "params.yaml")
    assert label_name(285, params.classes) == "Egyptian cat"
    assert label_name(None) == "-"
    assert label_name(349) in ("bighorn", "#349")  # ImageNet's name when torchvision is present


def run_stage(stage: str, params: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "stages" / f"{stage}.py"), "--params", str(params), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)


def stage_params(root: Path, data: Path) -> Path:
    params = default_params()
    params["data"].update(
        {
            "images": str(FIXTURE_IMAGES),
            "table": str(data / "images.csv"),
            "predictions": str(data / "predictions"),
            "modified": str(data / "modified"),
            "metrics": str(root / "metrics"),
            "plots": str(root / "metrics" / "plots"),
            "report": str(root / "metrics" / "report"),
        }
    )
    params["evaluate"]["bootstrap"]["samples"] = 200
    return write_params(root, params)


def test_stages_write_metrics_plots_and_report(tmp_path, tables):
    folder, right = tables
    params = stage_params(tmp_path, folder)
    result = run_stage("evaluate", params, "--model", "resnet50")
    assert result.returncode == 0, result.stderr
    assert "evaluate resnet50: 9 images, 0 skipped, excluded_failed_masks=1" in result.stdout
    result = run_stage("report", params)
    assert result.returncode == 0, result.stderr
    failed = {sorted(p.stem for p in FIXTURE_IMAGES.glob("*/*.JPEG"))[-1]}
    metrics = json.loads((tmp_path / "metrics" / "resnet50.json").read_text())
    assert set(metrics) >= {"overall", "variants", "size", "classes"}
    for variant in VARIANTS:
        expected = accuracy(right["resnet50"], variant, failed)
        assert metrics["variants"][variant]["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert metrics["overall"]["excluded_failed_masks"] == 1
    assert set(metrics["size"]) == {"small", "medium", "large"}
    plots = tmp_path / "metrics" / "plots" / "resnet50"
    table = pd.read_csv(plots / "accuracy.csv")
    assert table["variant"].tolist() == [*VARIANTS, "modified"]
    assert table["series"].eq("resnet50").all()
    assert {p.name for p in plots.iterdir()} == {"accuracy.csv", "confidence.csv", "size.csv"}
    comparison = json.loads((tmp_path / "metrics" / "comparison.json").read_text())
    assert set(comparison["resnet50_vs_convnext_base"]["variants"]) == set(VARIANTS)
    combined = pd.read_csv(tmp_path / "metrics" / "plots" / "all_models" / "accuracy.csv")
    assert combined["series"].tolist() == [m for m in MODELS for _ in range(len(VARIANTS) + 1)]
    page = (tmp_path / "metrics" / "report" / "index.html").read_text()
    assert "fig_examples.png" in page


def test_evaluate_stage_refuses_bad_predictions(tmp_path, tables):
    folder, _ = tables
    data = tmp_path / "data"
    (data / "predictions").mkdir(parents=True)
    (data / "images.csv").write_bytes((folder / "images.csv").read_bytes())
    frame = pd.read_csv(folder / "predictions" / "resnet50.csv")
    frame.loc[7, "prob1"] = 1.5
    bad = data / "predictions" / "resnet50.csv"
    frame.to_csv(bad, index=False)
    result = run_stage("evaluate", stage_params(tmp_path, data), "--model", "resnet50")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: column 'prob1', line 9: probability outside [0, 1], got 1.5"
    )
    assert not (tmp_path / "metrics" / "resnet50.json").exists()


@pytest.mark.slow
def test_dvc_metrics_and_plots_render(tmp_path):
    """evaluate and report run by `dvc repro`; `dvc metrics show` and `dvc plots show` work."""
    repo = tmp_path / "repo"
    repo.mkdir()
    params = default_params()
    params["data"]["images"] = str(FIXTURE_IMAGES)
    params["evaluate"]["bootstrap"]["samples"] = 100
    dvc_repo_copy(repo, params)
    right = make_tables(repo / "data", seed=1)
    (repo / "data" / "modified").mkdir()
    run_dvc(repo, "repro", "--single-item", *(f"evaluate@{m}" for m in MODELS), "report")
    shown = json.loads(run_dvc(repo, "metrics", "show", "--json").stdout)
    files = shown[""]["data"]
    for model in MODELS:
        value = files[f"metrics/{model}.json"]["data"]["variants"]["original"]["accuracy"]
        last = sorted(p.stem for p in FIXTURE_IMAGES.glob("*/*.JPEG"))[-1]
        assert value == pytest.approx(accuracy(right[model], "original", {last}), abs=1e-6)
    assert "metrics/comparison.json" in files
    plots = json.loads(run_dvc(repo, "plots", "show", "--json").stdout)
    assert "errors" not in plots or not plots["errors"]
    expected = {
        f"metrics/plots/{m}/{t}.csv"
        for m in (*MODELS, "all_models")
        for t in ("accuracy", "confidence", "size")
    }
    assert set(plots["data"]) == expected
    for name, entries in plots["data"].items():
        spec = entries[0]["content"]
        assert entries[0]["type"] == "vega"
        values = spec["data"]["values"]
        assert values, name
        assert "<DVC_METRIC" not in json.dumps(spec), name  # every anchor filled
        assert {"series", "panel", "rev"} <= set(values[0]), name
    accuracy_all = plots["data"]["metrics/plots/all_models/accuracy.csv"][0]["content"]
    assert len(accuracy_all["data"]["values"]) == 2 * (len(VARIANTS) + 1)
    page = run_dvc(repo, "plots", "show", "-o", str(tmp_path / "page"))
    assert page.returncode == 0
    html = (tmp_path / "page" / "index.html").read_text()
    assert html.count("vegaEmbed") >= len(expected)
