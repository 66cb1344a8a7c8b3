"""Metrics of the background experiment: pure functions on the images and predictions tables.

The two tables are first joined into image × variant matrices (:func:`join_tables`); every figure
is then a ratio of sums over images (accuracy = correct / present, mean confidence = sum of
top-1 probabilities / present, ...), so one bootstrap over images (:func:`bootstrap_ratios`)
gives an interval for all of them at once. :func:`evaluate` returns the JSON-ready nested dict
written to ``metrics/<model>.json``; :func:`compare_models` holds the paired McNemar tests.
Nothing here reads or writes files.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bgimpact.config import BootstrapConfig, ClassConfig, EvaluateConfig
from bgimpact.tables import TableError

ORIGINAL = "original"
TOP_K = 5
#: McNemar uses the exact binomial test below this many discordant pairs, else chi-square.
MCNEMAR_EXACT_BELOW = 25
#: Bootstrap weights are built in blocks of at most this many (resample, image) cells.
_BOOTSTRAP_BLOCK = 4_000_000


# --------------------------------------------------------------------------- joined tables


@dataclass(frozen=True)
class Joined:
    """The images table and one model's predictions as image × variant matrices.

    Rows follow the images table (minus excluded images); columns follow ``variants``.
    """

    model: str
    image_ids: np.ndarray  # (n,) str
    synsets: np.ndarray  # (n,) str
    labels: np.ndarray  # (n,) int: the true ImageNet-1k index
    fraction: np.ndarray  # (n,) float: object_fraction
    variants: tuple[str, ...]
    present: np.ndarray  # (n, V) bool: a prediction exists
    top: np.ndarray  # (n, V, TOP_K) int16: top-k labels, -1 where unknown or absent
    prob1: np.ndarray  # (n, V) float: top-1 probability, NaN where absent
    failed_masks: int  # images whose mask_ok is false in the images table
    excluded: int  # of those, how many were left out

    @property
    def top1(self) -> np.ndarray:
        """(n, V) top-1 labels, -1 where absent."""
        return self.top[:, :, 0]

    @property
    def correct(self) -> np.ndarray:
        """(n, V) bool: top-1 equals the true label."""
        return self.present & (self.top1 == self.labels[:, None])

    def column(self, variant: str) -> int:
        """Index of ``variant`` among the columns."""
        return self.variants.index(variant)


def _first_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def join_tables(
    images: pd.DataFrame,
    predictions: pd.DataFrame,
    variants: Sequence[str],
    exclude_failed_masks: bool = True,
    source: str = "predictions",
) -> Joined:
    """Join a validated images table and one model's validated predictions table.

    ``variants`` gives the column order (variants without predictions are left out);
    ``original`` must be among those predicted. Prediction rows of images missing from the
    images table, or whose label/synset disagree with it, are refused (TableError naming
    ``source`` and the row). Images with ``mask_ok`` false are dropped when
    ``exclude_failed_masks``; they are counted either way.
    """
    all_ids = pd.Index(images["image_id"].astype(str))
    pred_ids = predictions["image_id"].astype(str)
    pos = all_ids.get_indexer(pred_ids)
    if (pos < 0).any():
        row = _first_row(pos < 0)
        raise TableError(
            f"{source}: line {row + 2}: image id {pred_ids.iloc[row]!r} is not in the images table"
        )
    for column in ("label", "synset"):
        expected = images[column].to_numpy()[pos]
        bad = predictions[column].to_numpy() != expected
        if bad.any():
            row = _first_row(bad)
            raise TableError(
                f"{source}: column {column!r}, line {row + 2}: "
                f"{predictions[column].iloc[row]!r} disagrees with the images table "
                f"({expected[row]!r} for image {pred_ids.iloc[row]!r})"
            )
    models = pd.unique(predictions["model"].astype(str))
    if len(models) > 1:
        raise TableError(
            f"{source}: predictions of several models ({', '.join(models)}); "
            "expected one file per model"
        )
    failed = ~images["mask_ok"].to_numpy(dtype=bool)
    keep = ~failed if exclude_failed_masks else np.ones(len(images), dtype=bool)
    new_index = np.full(len(images), -1)
    new_index[keep] = np.arange(int(keep.sum()))
    rows = new_index[pos]
    predicted = set(predictions["variant"])
    order = tuple(v for v in variants if v in predicted)
    if ORIGINAL not in order:
        raise TableError(f"{source}: no predictions for the {ORIGINAL!r} variant")
    cols = pd.Index(order).get_indexer(predictions["variant"])
    if (cols < 0).any():
        row = _first_row(cols < 0)
        raise TableError(
            f"{source}: column 'variant', line {row + 2}: unknown variant "
            f"{predictions['variant'].iloc[row]!r}"
        )
    sel = rows >= 0
    rows, cols = rows[sel], cols[sel]
    n, v = int(keep.sum()), len(order)
    present = np.zeros((n, v), dtype=bool)
    present[rows, cols] = True
    top = np.full((n, v, TOP_K), -1, dtype=np.int16)
    for k in range(TOP_K):
        values = predictions.get(f"top{k + 1}")
        if values is not None:
            top[rows, cols, k] = values.to_numpy(dtype=float, na_value=-1)[sel].astype(np.int16)
    prob1 = np.full((n, v), np.nan)
    prob1[rows, cols] = predictions["prob1"].to_numpy(dtype=float)[sel]
    return Joined(
        model=str(models[0]) if len(models) else "",
        image_ids=images["image_id"].to_numpy(dtype=str)[keep],
        synsets=images["synset"].to_numpy(dtype=str)[keep],
        labels=images["label"].to_numpy(dtype=int)[keep],
        fraction=images["object_fraction"].to_numpy(dtype=float)[keep],
        variants=order,
        present=present,
        top=top,
        prob1=prob1,
        failed_masks=int(failed.sum()),
        excluded=int((failed & ~keep).sum()),
    )


# --------------------------------------------------------------------------- building blocks


def lenient_map(groups: Sequence[Sequence[int]], size: int = 1000) -> np.ndarray:
    """Label -> representative of its group of interchangeable labels (overlapping groups merge).

    Two labels count as the same class leniently when their representatives are equal.
    """
    parent = np.arange(size)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    for group in groups:
        roots = [find(int(label)) for label in group]
        if roots:
            low = min(roots)
            for root in roots:
                parent[root] = low
    return np.array([find(x) for x in range(size)])


def size_bins(
    fraction: np.ndarray,
    quantiles: Sequence[float],
    scope: str = "pooled",
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Bin index per image (0 .. len(quantiles)) from quantile edges of ``fraction``.

    Edges are the ``quantiles`` of ``fraction`` (linear interpolation, as numpy/pandas) over all
    images (``pooled``) or within each value of ``groups`` (``per_class``); an image whose
    fraction equals an edge falls in the lower bin, as ``pandas.qcut``. Returns the bin codes
    and the edges (key ``"all"`` when pooled, else one key per group).
    """
    fraction = np.asarray(fraction, dtype=float)
    codes = np.zeros(len(fraction), dtype=int)
    if scope == "pooled":
        edges = np.quantile(fraction, quantiles) if len(fraction) else np.zeros(len(quantiles))
        return np.searchsorted(edges, fraction, side="left"), {"all": edges.tolist()}
    if scope != "per_class" or groups is None:
        raise ValueError(f"size bins: scope {scope!r} needs 'pooled' or 'per_class' with groups")
    all_edges: dict[str, list[float]] = {}
    for group in pd.unique(groups):
        members = groups == group
        edges = np.quantile(fraction[members], quantiles)
        codes[members] = np.searchsorted(edges, fraction[members], side="left")
        all_edges[str(group)] = edges.tolist()
    return codes, all_edges


def precision_recall_f1(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    average: str,
    studied: Sequence[int] | None = None,
) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1 (scikit-learn, zero_division=0).

    ``weighted``: over every label seen (the 1000-way labels, as the thesis), weighted by true
    support, so recall equals accuracy. ``macro``: unweighted mean over the studied classes
    (``studied``, or the true labels present) that occur among the true labels; a prediction
    outside them counts against the true class's recall only.
    """
    if len(y_true) == 0:
        return None, None, None
    if average == "weighted":
        labels = None
    else:
        present = np.unique(y_true)
        labels = present if studied is None else np.intersect1d(present, np.asarray(studied))
    from sklearn.metrics import precision_recall_fscore_support  # slow import, used here only

    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=average, zero_division=0
    )
    return float(p), float(r), float(f)


def most_frequent_wrong(
    groups: np.ndarray, predicted: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per group (0..n_groups-1): the most frequent value of ``predicted`` and its count.

    Called with the wrong predictions only. Ties go to the smaller label; a group without
    entries gets label -1 and count 0.
    """
    label = np.full(n_groups, -1)
    count = np.zeros(n_groups, dtype=int)
    if len(groups) == 0:
        return label, count
    pairs, counts = np.unique(np.stack([groups, predicted]), axis=1, return_counts=True)
    order = np.lexsort((pairs[1], -counts, pairs[0]))
    pairs, counts = pairs[:, order], counts[order]
    first = np.ones(len(counts), dtype=bool)
    first[1:] = pairs[0, 1:] != pairs[0, :-1]
    label[pairs[0, first]] = pairs[1, first]
    count[pairs[0, first]] = counts[first]
    return label, count


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """Paired McNemar test of two classifiers on the same images.

    Uses the discordant pairs only: ``only_a`` (a right, b wrong) and ``only_b``. Below
    :data:`MCNEMAR_EXACT_BELOW` discordant pairs the exact two-sided binomial test
    (p = min(1, 2·P[X <= min(only_a, only_b)]), X ~ Bin(only_a + only_b, 1/2)); otherwise the
    chi-square test with continuity correction ((|only_a - only_b| - 1)² / (only_a + only_b),
    1 degree of freedom).
    """
    from scipy import stats  # slow import, used here only

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    if discordant < MCNEMAR_EXACT_BELOW:
        method = "exact binomial"
        statistic = float(min(only_a, only_b))
        p = min(1.0, 2.0 * stats.binom.cdf(min(only_a, only_b), discordant, 0.5))
        p = 1.0 if discordant == 0 else p
    else:
        method = "chi-square with continuity correction"
        statistic = (abs(only_a - only_b) - 1) ** 2 / discordant
        p = float(stats.chi2.sf(statistic, 1))
    return {
        "images": len(a),
        "only_a": only_a,
        "only_b": only_b,
        "statistic": float(statistic),
        "p_value": float(p),
        "method": method,
    }


# --------------------------------------------------------------------------- bootstrap


def bootstrap_weights(n: int, samples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of (resamples, n) counts: how often each image is drawn in each resample.

    Each resample draws ``n`` images with replacement (seeded, reproducible); blocks keep the
    memory at a few tens of MB whatever ``samples`` and ``n``.
    """
    rng = np.random.default_rng(seed)
    block = max(1, min(samples, _BOOTSTRAP_BLOCK // max(n, 1)))
    done = 0
    while done < samples:
        b = min(block, samples - done)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(float)
        done += b


def bootstrap_ratios(
    num: np.ndarray,
    den: np.ndarray,
    samples: int,
    seed: int,
    groups: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """(samples, K) bootstrap replicates of ``num[:, k].sum() / den[:, k].sum()``.

    ``num`` and ``den`` are (n, K): per-image numerator and denominator of K statistics. All
    statistics share the resamples, so differences between them are paired. ``groups`` may
    declare (image indices, column indices) pairs covering the columns, where a column is zero
    outside its images (per class, per size bin): only those images enter its products. A
    resample whose denominator is 0 gives NaN.
    """
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    n, k = num.shape
    if groups is None:
        groups = [(np.arange(n), np.arange(k))]
    parts = [
        (rows, cols, np.hstack([num[rows][:, cols], den[rows][:, cols]])) for rows, cols in groups
    ]
    out = np.full((samples, k), np.nan)
    start = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        for weights in bootstrap_weights(n, samples, seed):
            stop = start + len(weights)
            for rows, cols, stacked in parts:
                sums = weights[:, rows] @ stacked
                out[start:stop, cols] = sums[:, : len(cols)] / sums[:, len(cols) :]
            start = stop
    return out


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval per column (NaN replicates ignored)."""
    tail = (1.0 - level) / 2.0
    if replicates.ndim == 1:
        replicates = replicates[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        low, high = np.nanquantile(replicates, [tail, 1.0 - tail], axis=0)
    return low, high


class _Ratios:
    """Named ratio statistics sum(num)/sum(den) over images, bootstrapped together."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self._num: list[np.ndarray] = []
        self._den: list[np.ndarray] = []
        self._groups: dict[str, tuple[np.ndarray | None, list[int]]] = {}

    def add(self, name: str, num: np.ndarray, den: np.ndarray, group: str = "", rows=None) -> None:
        """Register num/den; statistics of one ``group`` are zero outside its ``rows``."""
        self.index[name] = len(self._num)
        self._groups.setdefault(group, (rows, []))[1].append(len(self._num))
        self._num.append(np.asarray(num, dtype=float))
        self._den.append(np.asarray(den, dtype=float))

    def solve(self, boot: BootstrapConfig) -> None:
        num, den = np.column_stack(self._num), np.column_stack(self._den)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.values = num.sum(axis=0) / den.sum(axis=0)
        everyone = np.arange(num.shape[0])
        groups = [
            (everyone if rows is None else np.flatnonzero(rows), np.array(cols))
            for rows, cols in self._groups.values()
        ]
        self.reps = bootstrap_ratios(num, den, boot.samples, boot.seed, groups)
        self.level = boot.level
        self.low, self.high = percentile_interval(self.reps, boot.level)

    def value(self, name: str) -> float | None:
        return _num(self.values[self.index[name]]) if name in self.index else None

    def ci(self, name: str) -> dict[str, float | None]:
        i = self.index[name]
        return {"low": _num(self.low[i]), "high": _num(self.high[i])}

    def diff(self, a: str, b: str) -> tuple[float | None, dict[str, float | None]]:
        """a - b with its paired percentile interval."""
        ia, ib = self.index[a], self.index[b]
        low, high = percentile_interval(self.reps[:, ia] - self.reps[:, ib], self.level)
        value = _num(self.values[ia] - self.values[ib])
        return value, {"low": _num(low[0]), "high": _num(high[0])}


def _num(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else x


# --------------------------------------------------------------------------- evaluation

#: The ratio statistics of a full block: name -> (numerator, denominator) array names.
_FULL = {
    "accuracy": ("C", "P"),
    "lenient_accuracy": ("L", "P"),
    "top5_accuracy": ("T5", "K5"),
    "confidence": ("prob", "P"),
    "confidence_correct": ("probC", "C"),
    "confidence_incorrect": ("probW", "W"),
}


def _modified_variants(data: Joined, config: EvaluateConfig) -> list[str]:
    if config.modified_variants is None:
        return [v for v in data.variants if v != ORIGINAL]
    missing = [v for v in config.modified_variants if v not in data.variants]
    if missing:
        raise TableError(f"evaluate.modified_variants: no predictions for {', '.join(missing)}")
    return list(config.modified_variants)


def evaluate(
    data: Joined,
    config: EvaluateConfig,
    classes: Mapping[str, ClassConfig] | None = None,
) -> dict[str, Any]:
    """All figures of one model as the nested dict of ``metrics/<model>.json``.

    Sections: ``settings``, ``overall`` (counts; ``original`` and ``modified``: the variants of
    ``config.modified_variants`` pooled), ``variants.<v>``, ``size.<bin>``, ``classes.<synset>``.
    Accuracies carry a bootstrap interval (``*_ci``); variants and the pooled block carry the
    accuracy and confidence drop relative to ``original`` with their paired intervals.
    """
    modified = _modified_variants(data, config)
    n = len(data.labels)
    if n == 0:
        raise TableError("no images to evaluate (all excluded or none predicted)")
    vi = {v: i for i, v in enumerate(data.variants)}
    mod_cols = [vi[v] for v in modified]
    present = data.present
    correct = data.correct
    canon = lenient_map(config.lenient_groups)
    top1 = np.where(present, data.top1, 0)
    lenient = present & (canon[top1] == canon[data.labels][:, None])
    known5 = present & (data.top >= 0).all(axis=2)
    ok5 = known5 & (data.top == data.labels[:, None, None]).any(axis=2)
    prob = np.where(present, data.prob1, 0.0)
    arrays = {
        "P": present,
        "C": correct,
        "W": present & ~correct,
        "L": lenient,
        "K5": known5,
        "T5": ok5,
        "prob": prob,
        "probC": prob * correct,
        "probW": prob * (present & ~correct),
    }
    arrays = {k: np.asarray(v, dtype=float) for k, v in arrays.items()}
    has_top5 = bool(known5.any())
    blocks = {v: [i] for v, i in vi.items()}
    blocks["modified"] = mod_cols

    ratios = _Ratios()

    def add(prefix: str, cols: list[int], rows: np.ndarray | None, names: Sequence[str]) -> None:
        group = prefix.rsplit("/", 1)[0]
        for name in names:
            if name == "top5_accuracy" and not has_top5:
                continue
            a, b = _FULL[name]
            num, den = arrays[a][:, cols].sum(axis=1), arrays[b][:, cols].sum(axis=1)
            if rows is not None:
                num, den = num * rows, den * rows
            ratios.add(f"{prefix}/{name}", num, den, group, rows)

    for key, cols in blocks.items():
        add(f"v/{key}", cols, None, list(_FULL))
    bin_codes, edges = size_bins(
        data.fraction, config.size_bins.quantiles, config.size_bins.scope, data.synsets
    )
    bin_labels = config.size_bins.labels
    for b, _ in enumerate(bin_labels):
        rows = bin_codes == b
        for key, cols in blocks.items():
            names = list(_FULL) if key in (ORIGINAL, "modified") else ["accuracy"]
            add(f"s/{b}/{key}", cols, rows, names)
    synsets = sorted(set(data.synsets.tolist()))
    for synset in synsets:
        rows = data.synsets == synset
        for key, cols in blocks.items():
            add(f"c/{synset}/{key}", cols, rows, ["accuracy", "lenient_accuracy"])
    ratios.solve(config.bootstrap)

    def block(prefix: str, names: Sequence[str], drops: bool, orig_prefix: str) -> dict:
        out: dict[str, Any] = {}
        for name in names:
            key = f"{prefix}/{name}"
            if key not in ratios.index:
                if name == "top5_accuracy":
                    out[name] = None
                continue
            out[name] = ratios.value(key)
            if name.endswith("accuracy"):
                out[f"{name}_ci"] = ratios.ci(key)
        if drops:
            for name, label in (("accuracy", "accuracy_drop"), ("confidence", "confidence_drop")):
                if f"{prefix}/{name}" in ratios.index:
                    value, ci = ratios.diff(f"{orig_prefix}/{name}", f"{prefix}/{name}")
                    out[label], out[f"{label}_ci"] = value, ci
        return out

    def prf(cols: list[int]) -> dict[str, float | None]:
        mask = present[:, cols]
        y_true = np.broadcast_to(data.labels[:, None], mask.shape)[mask]
        y_pred = data.top1[:, cols][mask]
        studied = [c.index for c in classes.values()] if classes else None
        p, r, f = precision_recall_f1(y_true, y_pred, config.average, studied)
        return {"precision": p, "recall": r, "f1": f}

    def variant_block(key: str, cols: list[int]) -> dict:
        out = {
            "images": int(present[:, cols].any(axis=1).sum()),
            "predictions": int(present[:, cols].sum()),
            "correct": int(correct[:, cols].sum()),
        }
        out |= block(f"v/{key}", list(_FULL), key != ORIGINAL, f"v/{ORIGINAL}")
        out |= prf(cols)
        return out

    variants_out = {v: variant_block(v, [i]) for v, i in vi.items()}
    modified_out = variant_block("modified", mod_cols)

    size_out: dict[str, Any] = {}
    for b, label in enumerate(bin_labels):
        rows = bin_codes == b
        frac = data.fraction[rows]
        size_out[label] = {
            "images": int(rows.sum()),
            "object_fraction": {
                "min": _num(frac.min()) if len(frac) else None,
                "median": _num(np.median(frac)) if len(frac) else None,
                "max": _num(frac.max()) if len(frac) else None,
            },
            ORIGINAL: block(f"s/{b}/{ORIGINAL}", list(_FULL), False, ""),
            "modified": block(f"s/{b}/modified", list(_FULL), True, f"s/{b}/{ORIGINAL}"),
            "variants": {
                v: block(f"s/{b}/{v}", ["accuracy"], v != ORIGINAL, f"s/{b}/{ORIGINAL}") for v in vi
            },
        }

    n_classes, n_var = len(synsets), len(data.variants)
    class_code = pd.Index(synsets).get_indexer(data.synsets)
    wrong = present & ~correct
    img, col = np.nonzero(wrong)
    wrong_label, wrong_count = most_frequent_wrong(
        class_code[img] * n_var + col, data.top1[img, col].astype(int), n_classes * n_var
    )
    classes_out: dict[str, Any] = {}
    for c, synset in enumerate(synsets):
        rows = data.synsets == synset
        info = classes.get(synset) if classes else None
        per_variant = {}
        for key in [*vi, "modified"]:
            entry = block(f"c/{synset}/{key}", ["accuracy", "lenient_accuracy"], False, "")
            if key != "modified":
                g = c * n_var + vi[key]
                entry["wrong_label"] = int(wrong_label[g]) if wrong_count[g] else None
                entry["wrong_count"] = int(wrong_count[g])
            per_variant[key] = entry
        classes_out[synset] = {
            "name": info.name if info else synset,
            "label": int(data.labels[rows][0]),
            "images": int(rows.sum()),
            "variants": per_variant,
        }

    return {
        "model": data.model,
        "settings": {
            "average": config.average,
            "exclude_failed_masks": config.exclude_failed_masks,
            "modified_variants": modified,
            "size_bins": {
                "scope": config.size_bins.scope,
                "quantiles": list(config.size_bins.quantiles),
                "labels": list(bin_labels),
                "edges": edges,
            },
            "lenient_groups": [list(g) for g in config.lenient_groups],
            "bootstrap": {
                "samples": config.bootstrap.samples,
                "seed": config.bootstrap.seed,
                "level": config.bootstrap.level,
                "method": "percentile interval; images resampled with replacement",
            },
        },
        "overall": {
            "images": n + data.excluded,
            "evaluated_images": n,
            "failed_masks": data.failed_masks,
            "excluded_failed_masks": data.excluded,
            "variants": len(data.variants),
            "missing_predictions": int((~present).sum()),
            ORIGINAL: variants_out[ORIGINAL],
            "modified": modified_out,
        },
        "variants": variants_out,
        "size": size_out,
        "classes": classes_out,
    }


# --------------------------------------------------------------------------- model comparison


def compare_models(a: Joined, b: Joined) -> dict[str, Any]:
    """Paired McNemar test per variant between two models, on the images both predicted."""
    common = np.intersect1d(a.image_ids, b.image_ids)
    ia = pd.Index(a.image_ids).get_indexer(common)
    ib = pd.Index(b.image_ids).get_indexer(common)
    out: dict[str, Any] = {}
    for variant in (v for v in a.variants if v in b.variants):
        ca, cb = a.column(variant), b.column(variant)
        both = a.present[ia, ca] & b.present[ib, cb]
        right_a = a.correct[ia, ca][both]
        right_b = b.correct[ib, cb][both]
        test = mcnemar(right_a, right_b)
        out[variant] = {
            "accuracy_a": _num(right_a.mean()) if len(right_a) else None,
            "accuracy_b": _num(right_b.mean()) if len(right_b) else None,
            **test,
        }
    return {"model_a": a.model, "model_b": b.model, "variants": out}


# --------------------------------------------------------------------------- output helpers


def round_floats(value: Any, digits: int = 6) -> Any:
    """Round every float in a nested structure: ``digits`` decimals, or 3 significant digits
    below 10**-digits (p-values); NaN and inf become None."""
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [round_floats(v, digits) for v in value]
    if isinstance(value, float | np.floating):
        x = float(value)
        if math.isnan(x) or math.isinf(x):
            return None
        if x != 0 and abs(x) < 10.0**-digits:
            return float(f"{x:.3g}")
        return round(x, digits)
    if isinstance(value, np.integer):
        return int(value)
    return value


def variant_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """One row per variant plus ``modified``: accuracy with its interval (low, high), lenient
    and top-5 accuracy, mean confidence, and the drops from ``original``."""
    rows = []
    entries = {**metrics["variants"], "modified": metrics["overall"]["modified"]}
    for variant, m in entries.items():
        rows.append(
            {
                "model": metrics["model"],
                "variant": variant,
                "accuracy": m["accuracy"],
                "low": m["accuracy_ci"]["low"],
                "high": m["accuracy_ci"]["high"],
                "lenient_accuracy": m["lenient_accuracy"],
                "top5_accuracy": m["top5_accuracy"],
                "confidence": m["confidence"],
                "accuracy_drop": m.get("accuracy_drop", 0.0),
                "confidence_drop": m.get("confidence_drop", 0.0),
            }
        )
    return pd.DataFrame(rows)


def size_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Long table, one row per size bin and ``series`` (original / modified): median object
    fraction of the bin, accuracy with its interval (low, high) and mean confidence."""
    rows = []
    for label, m in metrics["size"].items():
        for series in (ORIGINAL, "modified"):
            entry = m[series]
            ci = entry.get("accuracy_ci") or {"low": None, "high": None}
            rows.append(
                {
                    "model": metrics["model"],
                    "size": label,
                    "series": series,
                    "object_fraction": m["object_fraction"]["median"],
                    "accuracy": entry.get("accuracy"),
                    "low": ci["low"],
                    "high": ci["high"],
                    "confidence": entry.get("confidence"),
                }
            )
    return pd.DataFrame(rows)


def confidence_histogram(
    data: Joined, modified: Sequence[str] | None = None, bins: int = 20
) -> pd.DataFrame:
    """Long table: share of top-1 confidences per bin of [0, 1] (bin centre ``confidence``),
    for the originals and the pooled ``modified`` variants (``series``)."""
    modified = [v for v in data.variants if v != ORIGINAL] if modified is None else modified
    edges = np.linspace(0.0, 1.0, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    parts = []
    for series, cols in (
        (ORIGINAL, [data.column(ORIGINAL)]),
        ("modified", [data.column(v) for v in modified]),
    ):
        values = data.prob1[:, cols][data.present[:, cols]]
        counts, _ = np.histogram(values, bins=edges)
        parts.append(
            pd.DataFrame(
                {
                    "model": data.model,
                    "series": series,
                    "confidence": centres,
                    "share": counts / max(len(values), 1),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)
