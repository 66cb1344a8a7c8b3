"""The thesis's published figures rebuilt from its per-image results (../shared/reference/thesis).

The expected values are the ones printed in the thesis (and that folder's README), written here
independently of ``bgimpact.thesis.PUBLISHED``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bgimpact import metrics as mt
from bgimpact.config import BootstrapConfig, load_params
from bgimpact.evaluation import ModelResult, evaluate_model
from bgimpact.tables import read_images_table
from bgimpact.thesis import thesis_config
from conftest import REPO, THESIS_REF

MODELS = ("resnet50", "convnext_base")
ACCURACY = {
    "resnet50": {
        "original": 0.8865,
        "no_bg": 0.7629,
        "no_fg": 0.1935,
        "low_contrast": 0.7835,
        "high_contrast": 0.7757,
        "city": 0.7620,
        "jungle": 0.7736,
        "desert": 0.7582,
        "water": 0.7198,
        "sky": 0.7577,
        "indoor": 0.6990,
        "mountain": 0.6980,
        "snow": 0.7462,
    },
    "convnext_base": {
        "original": 0.9433,
        "no_bg": 0.8765,
        "no_fg": 0.2572,
        "low_contrast": 0.8897,
        "high_contrast": 0.8707,
        "city": 0.8392,
        "jungle": 0.8621,
        "desert": 0.8234,
        "water": 0.8593,
        "sky": 0.8259,
        "indoor": 0.7797,
        "mountain": 0.8357,
        "snow": 0.8567,
    },
}
SMALL = {"resnet50": (0.884545, 0.552828), "convnext_base": (0.954545, 0.705480)}
CONFIDENCE_PERCENT = {"resnet50": 85.19, "convnext_base": 68.53}
DEFAULT_ORIGINAL = {"resnet50": 0.889778, "convnext_base": 0.944484}

pytestmark = pytest.mark.skipif(
    not (THESIS_REF / "images.csv").is_file(), reason="thesis reference data not present"
)


def _evaluate(thesis: bool) -> dict[str, ModelResult]:
    params = load_params(REPO / "params.yaml")
    config = thesis_config(params.evaluate) if thesis else params.evaluate
    # point estimates do not depend on the bootstrap: keep it short
    config = dataclasses.replace(config, bootstrap=BootstrapConfig(samples=100, seed=0))
    images = read_images_table(THESIS_REF / "images.csv")
    return {
        m: evaluate_model(
            images,
            THESIS_REF / f"predictions_{m}.csv",
            params.variants,
            config,
            params.classes,
            model=m,
        )
        for m in MODELS
    }


@pytest.fixture(scope="module")
def thesis() -> dict[str, ModelResult]:
    return _evaluate(thesis=True)


@pytest.fixture(scope="module")
def defaults() -> dict[str, ModelResult]:
    return _evaluate(thesis=False)


@pytest.mark.parametrize("model", MODELS)
def test_every_published_accuracy(thesis, model):
    variants = thesis[model].metrics["variants"]
    assert list(variants) == list(ACCURACY[model])
    for variant, expected in ACCURACY[model].items():
        assert variants[variant]["accuracy"] == pytest.approx(expected, abs=1e-6), variant


@pytest.mark.parametrize("model", MODELS)
def test_small_objects_originals_vs_all_variants_pooled(thesis, model):
    small = thesis[model].metrics["size"]["small"]
    assert small["original"]["accuracy"] == pytest.approx(SMALL[model][0], abs=1e-6)
    assert small["modified"]["accuracy"] == pytest.approx(SMALL[model][1], abs=1e-6)
    assert len(thesis[model].metrics["settings"]["modified_variants"]) == 12


@pytest.mark.parametrize("model", MODELS)
def test_mean_confidence_on_originals(thesis, model):
    confidence = thesis[model].metrics["variants"]["original"]["confidence"]
    assert round(confidence * 100, 2) == CONFIDENCE_PERCENT[model]


@pytest.mark.parametrize("model", MODELS)
def test_weighted_recall_equals_accuracy(thesis, model):
    for variant, entry in thesis[model].metrics["variants"].items():
        assert entry["recall"] == pytest.approx(entry["accuracy"], abs=1e-12), variant
        assert entry["precision"] > entry["accuracy"]


def test_thesis_settings_keep_failed_masks(thesis):
    overall = thesis["resnet50"].metrics["overall"]
    assert overall["evaluated_images"] == 10_000
    assert overall["failed_masks"] == 129
    assert overall["excluded_failed_masks"] == 0
    assert thesis["resnet50"].metrics["settings"]["average"] == "weighted"


def test_pooled_size_bins_give_back_the_thesis_categories(thesis):
    images = pd.read_csv(THESIS_REF / "images.csv")
    codes, _ = mt.size_bins(images["object_fraction"].to_numpy(), (0.33, 0.66))
    labels = pd.Series(["small", "medium", "large"]).iloc[codes].to_numpy()
    assert (labels == images["size_category"].to_numpy()).all()
    assert thesis["resnet50"].metrics["size"]["small"]["images"] == 3300


@pytest.mark.parametrize("model", MODELS)
def test_defaults_exclude_failed_masks(defaults, model):
    metrics = defaults[model].metrics
    assert metrics["overall"]["excluded_failed_masks"] == 129
    assert metrics["overall"]["evaluated_images"] == 9871
    assert metrics["variants"]["original"]["accuracy"] == pytest.approx(
        DEFAULT_ORIGINAL[model], abs=1e-6
    )


def test_intervals_bracket_the_figures(defaults):
    for name, entry in defaults["convnext_base"].metrics["variants"].items():
        low, high = entry["accuracy_ci"]["low"], entry["accuracy_ci"]["high"]
        assert low < entry["accuracy"] < high, name
        assert high - low < 0.03, name
    drop = defaults["convnext_base"].metrics["variants"]["no_fg"]["accuracy_drop_ci"]
    assert 0.6 < drop["low"] < drop["high"] < 0.8


def test_mcnemar_between_the_thesis_models(thesis):
    out = mt.compare_models(thesis["resnet50"].data, thesis["convnext_base"].data)
    original = out["variants"]["original"]
    frame = {m: pd.read_csv(THESIS_REF / f"predictions_{m}.csv") for m in MODELS}
    right = {m: (f.top1 == f.label)[f.variant == "original"].to_numpy() for m, f in frame.items()}
    assert original["only_a"] == int((right["resnet50"] & ~right["convnext_base"]).sum())
    assert original["only_b"] == int((~right["resnet50"] & right["convnext_base"]).sum())
    assert original["method"] == "chi-square with continuity correction"
    assert original["p_value"] < 1e-20


def test_make_thesis(tmp_path):
    """`make thesis REF=... OUT=...` writes each model's JSON, the comparison and the report."""
    out = tmp_path / "thesis"
    venv = Path(sys.executable).parent.parent
    env = {**os.environ, "MAKEFLAGS": ""}
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "thesis",
            f"REF={THESIS_REF}",
            f"OUT={out}",
            "SETUP_VENV=no",
            f"VENV={venv}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resnet50: original 0.886500" in result.stdout
    assert "published figures rebuilt: 16/16" in result.stdout
    for model in MODELS:
        metrics = json.loads((out / f"{model}.json").read_text())
        assert metrics["variants"]["original"]["accuracy"] == ACCURACY[model]["original"]
        assert metrics["size"]["small"]["modified"]["accuracy"] == SMALL[model][1]
        assert metrics["thesis"]["published_matched"] == 16
        # the thesis's headline: all variants except original and no_bg pooled
        frame = pd.read_csv(THESIS_REF / f"predictions_{model}.csv")
        kept = frame[~frame.variant.isin(["original", "no_bg"])]
        expected = (kept.top1 == kept.label).mean()
        headline = metrics["thesis"]["headline"]["modified_without_no_bg"]
        assert headline == pytest.approx(expected, abs=1e-6)
    comparison = json.loads((out / "comparison.json").read_text())
    assert set(comparison) == {"resnet50_vs_convnext_base"}
    page = (out / "report" / "index.html").read_text()
    assert "Published vs rebuilt" in page and "NO</td>" not in page
    assert "No example grid" in page
    assert (out / "report" / "fig_accuracy.png").stat().st_size > 10_000


def test_make_thesis_without_reference(tmp_path):
    venv = Path(sys.executable).parent.parent
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "thesis",
            f"REF={tmp_path}",
            f"OUT={tmp_path / 'o'}",
            "SETUP_VENV=no",
            f"VENV={venv}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert f"error: {tmp_path}: no images.csv" in result.stderr
    assert not (tmp_path / "o").exists()
