"""Metrics on hand-made tables with known values, and the predictions reader's refusals."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bgimpact import metrics as mt
from bgimpact.config import BootstrapConfig, ClassConfig, EvaluateConfig, SizeBinsConfig
from bgimpact.tables import TableError, read_images_table, read_predictions

VARIANTS = ("original", "no_bg", "no_fg", "city")
CLASSES = {
    "n00000001": ClassConfig(name="one", index=1, voc="bird"),
    "n00000002": ClassConfig(name="two", index=2, voc="dog"),
}

# image_id, synset, label, object_fraction, mask_ok
IMAGES = [
    ("a1", "n00000001", 1, 0.10, True),
    ("a2", "n00000001", 1, 0.20, True),
    ("a3", "n00000001", 1, 0.30, False),
    ("b1", "n00000002", 2, 0.40, True),
    ("b2", "n00000002", 2, 0.50, True),
    ("b3", "n00000002", 2, 0.60, True),
]
# variant -> image -> (top1, prob1, [top2..top5] or None)
PREDICTIONS = {
    "original": {
        "a1": (1, 0.9, [4, 5, 6, 7]),
        "a2": (1, 0.8, [4, 5, 6, 7]),
        "a3": (3, 0.5, [1, 5, 6, 7]),
        "b1": (2, 0.7, [4, 5, 6, 7]),
        "b2": (5, 0.4, [2, 4, 6, 7]),
        "b3": (2, 0.6, [4, 5, 6, 7]),
    },
    "no_bg": {
        "a1": (3, 0.6, None),
        "a2": (3, 0.5, None),
        "a3": (3, 0.3, None),
        "b1": (2, 0.5, None),
        "b2": (5, 0.2, None),
        "b3": (7, 0.4, [8, 9, 10, 11]),
    },
    "city": {
        "a1": (1, 0.7, None),
        "a2": (3, 0.6, [1, 4, 5, 6]),
        "a3": (1, 0.5, None),
        "b1": (2, 0.9, None),
        "b2": (2, 0.8, [4, 5, 6, 7]),
        "b3": (2, 0.7, None),
    },
}


def images_frame() -> pd.DataFrame:
    return pd.DataFrame(
        IMAGES, columns=["image_id", "synset", "label", "object_fraction", "mask_ok"]
    )


def predictions_frame(model: str = "m") -> pd.DataFrame:
    labels = {i[0]: (i[1], i[2]) for i in IMAGES}
    rows = []
    for variant, preds in PREDICTIONS.items():
        for image_id, (top1, prob1, rest) in preds.items():
            synset, label = labels[image_id]
            row = {
                "image_id": image_id,
                "synset": synset,
                "label": label,
                "variant": variant,
                "model": model,
                "top1": top1,
                "prob1": prob1,
            }
            for k in range(2, 6):
                row[f"top{k}"] = rest[k - 2] if rest else pd.NA
                row[f"prob{k}"] = round(prob1 / k, 3) if rest else np.nan
            rows.append(row)
    frame = pd.DataFrame(rows)
    for k in range(2, 6):
        frame[f"top{k}"] = frame[f"top{k}"].astype("Int64")
    return frame


def config(**kwargs) -> EvaluateConfig:
    base = EvaluateConfig(
        average="macro",
        lenient_groups=((1, 3),),
        size_bins=SizeBinsConfig(quantiles=(0.5,), labels=("small", "large")),
        bootstrap=BootstrapConfig(samples=200, seed=0),
    )
    return dataclasses.replace(base, **kwargs)


def run(exclude: bool = True, **kwargs) -> dict:
    data = mt.join_tables(images_frame(), predictions_frame(), VARIANTS, exclude)
    return mt.evaluate(data, config(exclude_failed_masks=exclude, **kwargs), CLASSES)


@pytest.fixture(scope="module")
def result() -> dict:
    return run()


# --------------------------------------------------------------------------- known values


def test_counts_and_variant_order(result):
    overall = result["overall"]
    assert overall["images"] == 6
    assert overall["evaluated_images"] == 5
    assert overall["failed_masks"] == 1
    assert overall["excluded_failed_masks"] == 1
    # no_fg has no predictions: left out, order follows VARIANTS.
    assert list(result["variants"]) == ["original", "no_bg", "city"]
    assert result["settings"]["modified_variants"] == ["no_bg", "city"]


def test_accuracy_confidence_and_drops(result):
    original, no_bg, city = (result["variants"][v] for v in ("original", "no_bg", "city"))
    assert original["accuracy"] == pytest.approx(4 / 5)
    assert no_bg["accuracy"] == pytest.approx(1 / 5)
    assert city["accuracy"] == pytest.approx(4 / 5)
    assert original["confidence"] == pytest.approx(3.4 / 5)
    assert original["confidence_correct"] == pytest.approx(3.0 / 4)
    assert original["confidence_incorrect"] == pytest.approx(0.4)
    assert no_bg["confidence"] == pytest.approx(2.2 / 5)
    assert no_bg["accuracy_drop"] == pytest.approx(0.6)
    assert no_bg["confidence_drop"] == pytest.approx(3.4 / 5 - 2.2 / 5)
    assert city["accuracy_drop"] == pytest.approx(0.0)
    assert "accuracy_drop" not in original
    modified = result["overall"]["modified"]
    assert modified["accuracy"] == pytest.approx(5 / 10)
    assert modified["predictions"] == 10
    assert modified["accuracy_drop"] == pytest.approx(0.3)


def test_failed_masks_kept_when_asked():
    kept = run(exclude=False)
    assert kept["overall"]["evaluated_images"] == 6
    assert kept["overall"]["excluded_failed_masks"] == 0
    assert kept["overall"]["failed_masks"] == 1
    assert kept["variants"]["original"]["accuracy"] == pytest.approx(4 / 6)
    assert kept["variants"]["city"]["accuracy"] == pytest.approx(5 / 6)


def test_modified_variants_configurable():
    only_city = run(modified_variants=("city",))
    assert only_city["overall"]["modified"]["accuracy"] == pytest.approx(4 / 5)
    with pytest.raises(TableError, match="no_fg"):
        run(modified_variants=("no_fg",))


def test_top5_where_known(result):
    # originals: every top-5 known, b2's label is second -> 5/5
    assert result["variants"]["original"]["top5_accuracy"] == pytest.approx(1.0)
    # no_bg: only b3's top-5 known (7, 8, 9, 10, 11) and it misses label 2
    assert result["variants"]["no_bg"]["top5_accuracy"] == pytest.approx(0.0)
    # city: a2 (3, 1, ...) and b2 (2, ...) known, both hit
    assert result["variants"]["city"]["top5_accuracy"] == pytest.approx(1.0)


def test_top5_null_when_never_known():
    frame = predictions_frame()
    for k in range(2, 6):
        frame[f"top{k}"] = pd.array([pd.NA] * len(frame), dtype="Int64")
        frame[f"prob{k}"] = np.nan
    data = mt.join_tables(images_frame(), frame, VARIANTS, True)
    out = mt.evaluate(data, config(), CLASSES)
    assert out["variants"]["original"]["top5_accuracy"] is None


def test_lenient_beside_strict(result):
    # group {1, 3}: a1/a2 predicted 3 under no_bg count leniently
    assert result["variants"]["no_bg"]["lenient_accuracy"] == pytest.approx(3 / 5)
    assert result["variants"]["original"]["lenient_accuracy"] == pytest.approx(4 / 5)
    assert result["variants"]["city"]["lenient_accuracy"] == pytest.approx(5 / 5)
    strict = run(lenient_groups=())
    assert strict["variants"]["no_bg"]["lenient_accuracy"] == pytest.approx(1 / 5)


def test_lenient_groups_merge_when_overlapping():
    canon = mt.lenient_map([(1, 2), (2, 3), (7, 8)])
    assert canon[1] == canon[2] == canon[3]
    assert canon[7] == canon[8] != canon[1]
    assert canon[4] == 4


def test_precision_recall_f1_macro_and_weighted(result):
    original = result["variants"]["original"]
    # studied labels 1, 2: y_true 1 1 2 2 2, y_pred 1 1 2 5 2
    assert original["precision"] == pytest.approx(1.0)
    assert original["recall"] == pytest.approx((1 + 2 / 3) / 2)
    assert original["f1"] == pytest.approx((1 + 0.8) / 2)
    weighted = run(average="weighted")["variants"]["original"]
    assert weighted["precision"] == pytest.approx(1.0)
    assert weighted["recall"] == pytest.approx(0.8)  # == accuracy over the 1000-way labels
    assert weighted["f1"] == pytest.approx((2 * 1 + 3 * 0.8) / 5)


def test_size_bins_pooled(result):
    # fractions .1 .2 .4 .5 .6, median .4: small = a1 a2 b1 (edge included), large = b2 b3
    small, large = result["size"]["small"], result["size"]["large"]
    assert result["settings"]["size_bins"]["edges"] == {"all": [pytest.approx(0.4)]}
    assert (small["images"], large["images"]) == (3, 2)
    assert small["original"]["accuracy"] == pytest.approx(1.0)
    assert large["original"]["accuracy"] == pytest.approx(0.5)
    assert small["modified"]["accuracy"] == pytest.approx(3 / 6)
    assert large["modified"]["accuracy"] == pytest.approx(2 / 4)
    assert small["modified"]["accuracy_drop"] == pytest.approx(0.5)
    assert small["variants"]["no_bg"]["accuracy"] == pytest.approx(1 / 3)
    assert small["original"]["confidence"] == pytest.approx((0.9 + 0.8 + 0.7) / 3)
    assert small["object_fraction"]["median"] == pytest.approx(0.2)


def test_size_bins_per_class():
    out = run(
        size_bins=SizeBinsConfig(quantiles=(0.5,), labels=("small", "large"), scope="per_class")
    )
    # class 1: .1 .2 -> edge .15: a1 small, a2 large; class 2: .4 .5 .6 -> edge .5
    assert out["settings"]["size_bins"]["edges"]["n00000001"] == [pytest.approx(0.15)]
    small, large = out["size"]["small"], out["size"]["large"]
    assert (small["images"], large["images"]) == (3, 2)
    assert small["original"]["accuracy"] == pytest.approx(2 / 3)
    assert large["original"]["accuracy"] == pytest.approx(1.0)


def test_size_bins_edge_goes_to_lower_bin():
    codes, edges = mt.size_bins(np.array([0.0, 1.0, 2.0, 3.0, 4.0]), [0.25, 0.75])
    assert edges["all"] == [1.0, 3.0]
    assert codes.tolist() == [0, 0, 1, 1, 2]


def test_per_class_accuracy_and_most_frequent_wrong_label(result):
    one, two = result["classes"]["n00000001"], result["classes"]["n00000002"]
    assert (one["name"], one["label"], one["images"]) == ("one", 1, 2)
    assert one["variants"]["original"]["accuracy"] == pytest.approx(1.0)
    assert one["variants"]["no_bg"]["accuracy"] == pytest.approx(0.0)
    assert two["variants"]["no_bg"]["accuracy"] == pytest.approx(1 / 3)
    assert one["variants"]["no_bg"]["lenient_accuracy"] == pytest.approx(1.0)
    # class one under no_bg: 3 twice (a3 excluded)
    assert (one["variants"]["no_bg"]["wrong_label"], one["variants"]["no_bg"]["wrong_count"]) == (
        3,
        2,
    )
    # class two under no_bg: 5 once and 7 once -> tie goes to the smaller label
    assert two["variants"]["no_bg"]["wrong_label"] == 5
    assert two["variants"]["no_bg"]["wrong_count"] == 1
    assert one["variants"]["original"]["wrong_label"] is None
    assert one["variants"]["original"]["wrong_count"] == 0
    assert one["variants"]["modified"]["accuracy"] == pytest.approx(1 / 4)
    kept = run(exclude=False)
    assert kept["classes"]["n00000001"]["variants"]["no_bg"]["wrong_count"] == 3


def test_most_frequent_wrong_function():
    label, count = mt.most_frequent_wrong(np.array([0, 0, 0, 2, 2]), np.array([9, 4, 9, 6, 5]), 3)
    assert label.tolist() == [9, -1, 5]
    assert count.tolist() == [2, 0, 1]


# --------------------------------------------------------------------------- bootstrap


def test_intervals_are_seeded_and_bracket_the_estimate(result):
    again = run()
    assert again["variants"]["no_bg"]["accuracy_ci"] == result["variants"]["no_bg"]["accuracy_ci"]
    assert (
        again["overall"]["modified"]["confidence_drop_ci"]
        == (result["overall"]["modified"]["confidence_drop_ci"])
    )
    other = run(bootstrap=BootstrapConfig(samples=200, seed=1))
    assert (
        other["overall"]["modified"]["confidence_drop_ci"]
        != (result["overall"]["modified"]["confidence_drop_ci"])
    )
    for entry in result["variants"].values():
        ci = entry["accuracy_ci"]
        assert ci["low"] <= entry["accuracy"] <= ci["high"]
    ci = result["variants"]["no_bg"]["accuracy_drop_ci"]
    assert ci["low"] <= 0.6 <= ci["high"]


def test_bootstrap_resamples_images_not_rows():
    """If every image is right or wrong in all variants alike, pooling variants adds no
    information: the pooled interval must equal a single variant's (it would be narrower by
    about sqrt(variants) if rows were resampled independently)."""
    rng = np.random.default_rng(3)
    n = 400
    correct = rng.random(n) < 0.7
    rows = []
    for i in range(n):
        for variant in ("original", "no_bg", "city"):
            rows.append(
                {
                    "image_id": f"i{i}",
                    "synset": "n00000001",
                    "label": 1,
                    "variant": variant,
                    "model": "m",
                    "top1": 1 if correct[i] else 5,
                    "prob1": 0.5,
                }
            )
    images = pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(n)],
            "synset": "n00000001",
            "label": 1,
            "object_fraction": 0.5,
            "mask_ok": True,
        }
    )
    data = mt.join_tables(images, pd.DataFrame(rows), VARIANTS, True)
    out = mt.evaluate(data, config(lenient_groups=()), CLASSES)
    pooled = out["overall"]["modified"]["accuracy_ci"]
    single = out["variants"]["no_bg"]["accuracy_ci"]
    assert pooled == single
    assert single["high"] - single["low"] > 0.05
    # paired drop: no_bg equals original image by image, so every resample's drop is 0
    assert out["variants"]["no_bg"]["accuracy_drop_ci"] == {"low": 0.0, "high": 0.0}


def test_bootstrap_weights_draw_n_images_per_resample():
    blocks = list(mt.bootstrap_weights(50, 7, seed=0))
    weights = np.vstack(blocks)
    assert weights.shape == (7, 50)
    assert (weights.sum(axis=1) == 50).all()
    again = np.vstack(list(mt.bootstrap_weights(50, 7, seed=0)))
    assert (weights == again).all()


def test_bootstrap_ratios_match_a_loop():
    rng = np.random.default_rng(0)
    num = rng.integers(0, 2, size=(30, 3)).astype(float)
    den = np.ones((30, 3))
    reps = mt.bootstrap_ratios(num, den, 20, seed=5)
    weights = np.vstack(list(mt.bootstrap_weights(30, 20, seed=5)))
    for b in range(20):
        for k in range(3):
            expected = (weights[b] * num[:, k]).sum() / (weights[b] * den[:, k]).sum()
            assert reps[b, k] == pytest.approx(expected)
    grouped = mt.bootstrap_ratios(
        num, den, 20, 5, groups=[(np.arange(30), np.array([0, 2])), (np.arange(30), np.array([1]))]
    )
    assert np.allclose(grouped, reps)


# --------------------------------------------------------------------------- McNemar


def test_mcnemar_exact_on_a_known_table():
    # 10 pairs only a right, 2 only b right, plus concordant pairs
    a = np.array([1] * 10 + [0] * 2 + [1] * 30 + [0] * 8, dtype=bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 30 + [0] * 8, dtype=bool)
    out = mt.mcnemar(a, b)
    assert (out["only_a"], out["only_b"], out["images"]) == (10, 2, 50)
    assert out["method"] == "exact binomial"
    # 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert out["p_value"] == pytest.approx(158 / 4096, abs=1e-12)


def test_mcnemar_chi_square_with_continuity_correction():
    a = np.array([1] * 30 + [0] * 10 + [1] * 5, dtype=bool)
    b = np.array([0] * 30 + [1] * 10 + [1] * 5, dtype=bool)
    out = mt.mcnemar(a, b)
    assert out["method"] == "chi-square with continuity correction"
    assert out["statistic"] == pytest.approx((20 - 1) ** 2 / 40)
    # chi-square with 1 degree of freedom: p = erfc(sqrt(x / 2))
    assert out["p_value"] == pytest.approx(math.erfc(math.sqrt(9.025 / 2)), rel=1e-9)


def test_mcnemar_no_discordant_pairs():
    out = mt.mcnemar(np.ones(5, bool), np.ones(5, bool))
    assert out["p_value"] == 1.0


def test_compare_models_counts_discordant_images():
    a = mt.join_tables(images_frame(), predictions_frame("a"), VARIANTS, True)
    frame = predictions_frame("b")
    # model b gets b2's original right and a1's original wrong
    frame.loc[(frame.image_id == "b2") & (frame.variant == "original"), "top1"] = 2
    frame.loc[(frame.image_id == "a1") & (frame.variant == "original"), "top1"] = 9
    b = mt.join_tables(images_frame(), frame, VARIANTS, True)
    out = mt.compare_models(a, b)
    original = out["variants"]["original"]
    assert (out["model_a"], out["model_b"]) == ("a", "b")
    assert (original["only_a"], original["only_b"], original["images"]) == (1, 1, 5)
    assert original["p_value"] == pytest.approx(1.0)
    assert out["variants"]["no_bg"]["only_a"] == 0


# --------------------------------------------------------------------------- join and output


def test_join_refuses_inconsistent_tables():
    frame = predictions_frame()
    frame.loc[3, "image_id"] = "zz"
    with pytest.raises(TableError, match="'zz' is not in the images table"):
        mt.join_tables(images_frame(), frame, VARIANTS)
    frame = predictions_frame()
    frame.loc[4, "label"] = 7
    with pytest.raises(TableError, match="column 'label', line 6"):
        mt.join_tables(images_frame(), frame, VARIANTS)
    frame = predictions_frame()
    with pytest.raises(TableError, match="no predictions for the 'original'"):
        mt.join_tables(images_frame(), frame[frame.variant != "original"], VARIANTS)
    frame.loc[0, "model"] = "other"
    with pytest.raises(TableError, match="several models"):
        mt.join_tables(images_frame(), frame, VARIANTS)


def test_round_floats():
    out = mt.round_floats({"a": 0.123456789, "b": [1.5e-10, float("nan")], "c": np.int64(3)})
    assert out == {"a": 0.123457, "b": [1.5e-10, None], "c": 3}


def test_plot_tables(result):
    data = mt.join_tables(images_frame(), predictions_frame(), VARIANTS, True)
    table = mt.variant_table(result)
    assert table["variant"].tolist() == ["original", "no_bg", "city", "modified"]
    assert table["accuracy"].tolist() == pytest.approx([0.8, 0.2, 0.8, 0.5])
    hist = mt.confidence_histogram(data, ["no_bg", "city"], bins=10)
    original = hist[hist.series == "original"]
    assert original["share"].sum() == pytest.approx(1.0)
    # originals 0.9 0.8 0.7 0.4 0.6: one each in the bins centred .45 .65 .75 .85 .95
    assert original.loc[np.isclose(original.confidence, 0.95), "share"].item() == pytest.approx(0.2)
    size = mt.size_table(result)
    assert size[["size", "series"]].values.tolist() == [
        ["small", "original"],
        ["small", "modified"],
        ["large", "original"],
        ["large", "modified"],
    ]


# --------------------------------------------------------------------------- predictions reader


def write(tmp_path: Path, frame: pd.DataFrame, name: str = "p.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_reader_accepts_top1_only_and_full_tables(tmp_path):
    full = read_predictions(write(tmp_path, predictions_frame()), VARIANTS)
    assert full["top3"].dtype == "Int64"
    assert full.loc[0, "top2"] == 4
    assert pd.isna(full.loc[6, "top2"]) and math.isnan(full.loc[6, "prob2"])
    top1 = predictions_frame().drop(
        columns=[f"{c}{k}" for k in range(2, 6) for c in ("top", "prob")]
    )
    frame = read_predictions(write(tmp_path, top1, "t.csv"), VARIANTS)
    assert frame["top5"].isna().all()
    assert frame["label"].dtype == np.int64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["prob1"]), r"missing column\(s\) prob1"),
        (lambda f: f.drop(columns=["prob3"]), r"missing column\(s\) prob3"),
        (
            lambda f: f.assign(variant=f.variant.where(f.index != 4, "sepia")),
            r"column 'variant', line 6: .*unknown variant.*got 'sepia'",
        ),
        (
            lambda f: f.assign(label=f.label.where(f.index != 2, 1000)),
            r"column 'label', line 4: .*outside 0..999",
        ),
        (
            lambda f: f.assign(top1=f.top1.where(f.index != 0, -1)),
            r"column 'top1', line 2: .*outside 0..999",
        ),
        (
            lambda f: f.assign(top4=f.top4.astype("float").where(f.index != 1, 2.5)),
            r"column 'top4', line 3: .*outside 0..999",
        ),
        (
            lambda f: f.assign(prob1=f.prob1.where(f.index != 7, 1.2)),
            r"column 'prob1', line 9: .*outside \[0, 1\]",
        ),
        (
            lambda f: f.assign(prob2=f.prob2.where(f.index != 0, -0.1)),
            r"column 'prob2', line 2: .*outside \[0, 1\]",
        ),
        (
            lambda f: f.assign(prob1=f.prob1.astype(object).where(f.index != 3, "high")),
            r"column 'prob1', line 5: .*outside \[0, 1\]",
        ),
        (
            lambda f: f.assign(prob2=f.prob2.where(f.index != 0, np.nan)),
            r"column 'prob2', line 2: .*top2 and prob2 must both be given",
        ),
        (lambda f: pd.concat([f, f.iloc[[5]]]), r"column 'variant', line 20: .*second prediction"),
        (
            lambda f: f.assign(top1=f.top1.astype("float").where(f.index != 8, np.nan)),
            r"column 'top1', line 10: .*outside 0..999",
        ),
    ],
)
def test_reader_refuses_bad_tables(tmp_path, change, message):
    path = write(tmp_path, change(predictions_frame()))
    with pytest.raises(TableError, match=message) as info:
        read_predictions(path, VARIANTS)
    assert str(path) in str(info.value)


def test_reader_refuses_missing_and_empty_files(tmp_path):
    with pytest.raises(TableError, match="not found"):
        read_predictions(tmp_path / "none.csv", VARIANTS)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TableError, match=r"empty\.csv: not a readable CSV"):
        read_predictions(tmp_path / "empty.csv", VARIANTS)


def test_images_table_round_trip(tmp_path):
    path = tmp_path / "images.csv"
    images_frame().to_csv(path, index=False)
    table = read_images_table(path)
    data = mt.join_tables(table, predictions_frame(), VARIANTS, True)
    assert data.image_ids.tolist() == ["a1", "a2", "b1", "b2", "b3"]
