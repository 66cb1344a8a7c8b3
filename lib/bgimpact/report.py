"""The HTML report: matplotlib figures saved as PNG beside a self-contained ``index.html``.

Nothing is fetched from the network: the page has inline CSS, no scripts, and refers to its
figures by relative file names, so the folder can be opened or copied anywhere.
"""

from __future__ import annotations

import ast
import functools
import html
import importlib.util
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from bgimpact.config import ClassConfig, ReportConfig
from bgimpact.evaluation import ModelResult
from bgimpact.files import IMAGE_SUFFIXES, ImageReadError, atomic_write, read_rgb
from bgimpact.metrics import ORIGINAL

log = logging.getLogger("bgimpact")

FIGURE_PREFIX = "fig_"
_DPI = 100
_THUMB = 160


# --------------------------------------------------------------------------- labels


@functools.cache
def imagenet_names() -> tuple[str, ...] | None:
    """The 1000 ImageNet-1k class names, read from torchvision's source without importing it
    (importing torch takes seconds); None when torchvision is not installed."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "models" / "_meta.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "_IMAGENET_CATEGORIES" for t in node.targets
        ):
            names = ast.literal_eval(node.value)
            return tuple(names) if len(names) == 1000 else None
    return None


def label_name(label: int | None, classes: Mapping[str, ClassConfig] | None = None) -> str:
    """A readable name for an ImageNet-1k index: the studied class's name, else ImageNet's."""
    if label is None or label < 0:
        return "-"
    for c in (classes or {}).values():
        if c.index == label:
            return c.name
    names = imagenet_names()
    return names[label] if names else f"#{label}"


# --------------------------------------------------------------------------- figures


def _subplots(
    nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (8, 5), **kwargs: Any
) -> tuple[Figure, Any]:
    """A figure drawn by Agg, without pyplot's global state."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())


def _colors(n: int) -> list:
    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _rows(metrics: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    return [*metrics["variants"].items(), ("modified (pooled)", metrics["overall"]["modified"])]


def _err(entry: Mapping[str, Any], key: str) -> tuple[float, float, float]:
    value = entry.get(key)
    ci = entry.get(f"{key}_ci") or {}
    if value is None:
        return np.nan, 0.0, 0.0
    low = ci.get("low") if ci.get("low") is not None else value
    high = ci.get("high") if ci.get("high") is not None else value
    return value, max(value - low, 0.0), max(high - value, 0.0)


def figure_accuracy(results: Sequence[ModelResult]) -> Figure:
    """Accuracy and accuracy drop per variant, every model side by side, with intervals."""
    labels = [name for name, _ in _rows(results[0].metrics)]
    y = np.arange(len(labels))
    height = 0.8 / len(results)
    fig, axes = _subplots(
        1, 2, figsize=(12, 1.0 + 0.32 * len(labels) * max(len(results), 2)), sharey=True
    )
    for k, (result, color) in enumerate(zip(results, _colors(len(results)), strict=True)):
        rows = dict(_rows(result.metrics))
        offset = y - 0.4 + height * (k + 0.5)
        for ax, key in zip(axes, ("accuracy", "accuracy_drop"), strict=True):
            vals = np.array([_err(rows.get(name, {}), key) for name in labels])
            ax.barh(
                offset,
                vals[:, 0],
                height,
                xerr=vals[:, 1:].T,
                color=color,
                label=result.model,
                error_kw={"elinewidth": 0.8, "capsize": 1.5},
            )
            for yy, v in zip(offset, vals[:, 0], strict=True):
                if np.isfinite(v):
                    ax.text(max(v, 0) + 0.01, yy, f"{v:.3f}", va="center", fontsize=7)
    axes[0].set_yticks(y, labels)
    axes[0].invert_yaxis()
    axes[0].set_xlim(0, 1.12)
    axes[0].set_xlabel("top-1 accuracy (bars: 95 % bootstrap interval)")
    axes[1].set_xlabel("accuracy drop from original")
    axes[1].axvline(0, color="black", linewidth=0.8)
    axes[0].legend(loc="lower right", fontsize=8)
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Accuracy per variant")
    fig.tight_layout()
    return fig


def figure_confidence(results: Sequence[ModelResult]) -> Figure:
    """Top-1 confidence: histogram originals vs pooled variants, and box plots per variant."""
    fig, axes = _subplots(
        len(results),
        2,
        figsize=(13, 3.6 * len(results)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1, 2]},
    )
    bins = np.linspace(0, 1, 21)
    for (left, right), result in zip(axes, results, strict=True):
        data = result.data
        modified = result.metrics["settings"]["modified_variants"]
        orig = data.column(ORIGINAL)
        cols = [data.column(v) for v in modified]
        for values, label, color in (
            (data.prob1[:, orig][data.present[:, orig]], "original", "tab:blue"),
            (data.prob1[:, cols][data.present[:, cols]], "modified (pooled)", "tab:orange"),
        ):
            weights = np.full(len(values), 1.0 / max(len(values), 1))
            left.hist(
                values,
                bins=bins,
                weights=weights,
                histtype="step",
                linewidth=1.6,
                label=label,
                color=color,
            )
        left.set_xlabel("top-1 confidence")
        left.set_ylabel("share of predictions")
        left.set_title(result.model)
        left.legend(fontsize=8, loc="upper left")
        per_variant = [data.prob1[:, i][data.present[:, i]] for i in range(len(data.variants))]
        right.boxplot(per_variant, showfliers=False, widths=0.6)
        right.set_xticks(range(1, len(data.variants) + 1), data.variants, rotation=40, ha="right")
        means = [v.mean() if len(v) else np.nan for v in per_variant]
        right.plot(
            range(1, len(means) + 1), means, "D", color="tab:red", markersize=4, label="mean"
        )
        right.set_ylim(0, 1)
        right.set_ylabel("top-1 confidence")
        right.set_title(f"{result.model}: per variant")
        right.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def figure_size(results: Sequence[ModelResult]) -> Figure:
    """Accuracy per object-size bin: originals vs pooled variants, one panel per model."""
    fig, axes = _subplots(
        1, len(results), figsize=(4.5 * len(results) + 1, 3.8), squeeze=False, sharey=True
    )
    for ax, result in zip(axes[0], results, strict=True):
        size = result.metrics["size"]
        x = np.arange(len(size))
        for k, (series, color) in enumerate(((ORIGINAL, "tab:blue"), ("modified", "tab:orange"))):
            vals = np.array([_err(size[b][series], "accuracy") for b in size])
            bars = ax.bar(
                x - 0.2 + 0.4 * k,
                vals[:, 0],
                0.4,
                yerr=vals[:, 1:].T,
                color=color,
                label="original" if k == 0 else "modified (pooled)",
                error_kw={"elinewidth": 0.8, "capsize": 2},
            )
            ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
        ax.set_xticks(x, [f"{b}\n(n={size[b]['images']})" for b in size])
        ax.set_ylim(0, 1.25)
        ax.set_title(result.model)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("top-1 accuracy")
    axes[0][0].legend(fontsize=8, loc="upper center", ncols=2)
    fig.suptitle("Accuracy by object size (share of the image covered by the object)")
    fig.tight_layout()
    return fig


def figure_heatmap(result: ModelResult) -> Figure:
    """Accuracy per class × variant, annotated."""
    classes = result.metrics["classes"]
    variants = list(result.metrics["variants"])
    grid = np.array(
        [[classes[s]["variants"][v]["accuracy"] or np.nan for v in variants] for s in classes],
        dtype=float,
    )
    fig, ax = _subplots(figsize=(1.0 + 0.75 * len(variants), 1.2 + 0.45 * len(classes)))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(variants)), variants, rotation=40, ha="right")
    ax.set_yticks(range(len(classes)), [f"{c['name']} ({s})" for s, c in classes.items()])
    fig.colorbar(image, ax=ax, fraction=0.03, label="top-1 accuracy")
    ax.set_title(f"{result.model}: accuracy per class and variant")
    fig.tight_layout()
    return fig


def _find_original(root: Path, synset: str, image_id: str) -> Path | None:
    folder = root / synset
    if not folder.is_dir():
        return None
    for path in folder.glob(f"{image_id}.*"):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return path
    return None


def pick_examples(
    result: ModelResult, images: Path | None, count: int, seed: int
) -> list[tuple[int, Path]]:
    """Up to ``count`` images (row index, original file), one class after another, seeded;
    only images whose original file exists under ``images``."""
    if images is None or count < 1 or not Path(images).is_dir():
        return []
    data = result.data
    rng = np.random.default_rng(seed)
    synsets = list(dict.fromkeys(data.synsets))
    rng.shuffle(synsets)
    pools = {s: list(rng.permutation(np.flatnonzero(data.synsets == s))) for s in synsets}
    picked: list[tuple[int, Path]] = []
    tries = 0
    while len(picked) < count and any(pools.values()) and tries < 50 * count:
        for s in synsets:
            if len(picked) == count or not pools[s]:
                continue
            row = int(pools[s].pop())
            tries += 1
            path = _find_original(Path(images), s, str(data.image_ids[row]))
            if path is not None:
                picked.append((row, path))
    return picked


def _thumbnail(path: Path) -> np.ndarray | None:
    try:
        image = Image.fromarray(read_rgb(path))
    except (ImageReadError, OSError):
        return None
    image.thumbnail((_THUMB, _THUMB))
    return np.asarray(image)


def figure_examples(
    results: Sequence[ModelResult],
    examples: Sequence[tuple[int, Path]],
    modified: Path | None,
    classes: Mapping[str, ClassConfig] | None = None,
) -> Figure:
    """Grid: one row per example image, one column per variant, each model's top-1 below
    (green when right, red when wrong)."""
    first = results[0].data
    variants = first.variants
    n_rows, n_cols = len(examples), len(variants)
    cell_h = 1.6 + 0.2 * len(results)
    fig, axes = _subplots(n_rows, n_cols, figsize=(1.6 * n_cols, cell_h * n_rows), squeeze=False)
    for r, (row, original) in enumerate(examples):
        image_id, synset = str(first.image_ids[row]), str(first.synsets[row])
        for c, variant in enumerate(variants):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if variant == ORIGINAL:
                path: Path | None = original
            else:
                path = None if modified is None else modified / variant / synset / f"{image_id}.png"
            thumb = _thumbnail(path) if path is not None and path.is_file() else None
            if thumb is None:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", color="grey")
            else:
                ax.imshow(thumb)
            if r == 0:
                ax.set_title(variant, fontsize=8)
            if c == 0:
                ax.set_ylabel(
                    f"{label_name(int(first.labels[row]), classes)}\n{image_id}", fontsize=7
                )
            for k, result in enumerate(results):
                data = result.data
                hits = np.flatnonzero(data.image_ids == image_id)
                if not hits.size or variant not in data.variants:
                    continue
                i, j = int(hits[0]), data.column(variant)
                if not data.present[i, j]:
                    continue
                ok = bool(data.correct[i, j])
                name = label_name(int(data.top1[i, j]), classes)[:18]
                ax.text(
                    0.5,
                    -0.04 - 0.13 * k,
                    f"{result.model[:10]}: {name}",
                    transform=ax.transAxes,
                    ha="center",
                    va="top",
                    fontsize=6,
                    color="tab:green" if ok else "tab:red",
                )
    fig.subplots_adjust(hspace=0.15 + 0.12 * len(results), wspace=0.05)
    return fig


# --------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.55em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; font-size: 0.9em; } .ci { color: #777; font-size: 0.85em; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _f(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(entry: Mapping[str, Any], key: str) -> str:
    ci = entry.get(f"{key}_ci")
    value = entry.get(key)
    if value is None:
        return "–"
    if not ci or ci.get("low") is None:
        return _f(value)
    return f"{_f(value)} <span class='ci'>[{_f(ci['low'])}, {_f(ci['high'])}]</span>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    head = "".join(
        f"<th class='l'>{h}</th>" if i < left else f"<th>{h}</th>" for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='l'>{c}</td>" if i < left else f"<td>{c}</td>" for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(name: str, alt: str) -> str:
    return f"<p><img src='{_e(name)}' alt='{_e(alt)}'></p>"


def _settings_html(results: Sequence[ModelResult]) -> str:
    s = results[0].metrics["settings"]
    bins = s["size_bins"]
    edges = bins["edges"]
    edge_text = (
        ", ".join(_f(e, 4) for e in edges["all"]) if "all" in edges else "per class (see the JSON)"
    )
    groups = "; ".join(" ≈ ".join(label_name(x) for x in g) for g in s["lenient_groups"]) or "none"
    boot = s["bootstrap"]
    items = [
        ("precision / recall / F1", f"{s['average']} average"),
        ("images with a failed mask", "excluded" if s["exclude_failed_masks"] else "kept"),
        ("modified (pooled)", ", ".join(s["modified_variants"])),
        ("size bins", f"{bins['scope']} quantiles {bins['quantiles']} → edges {edge_text}"),
        ("lenient groups", groups),
        (
            "intervals",
            f"{boot['level']:.0%} {boot['method']}, {boot['samples']} resamples, "
            f"seed {boot['seed']}",
        ),
    ]
    return _table(["setting", "value"], [(_e(k), _e(v)) for k, v in items], left=2)


def _summary_html(results: Sequence[ModelResult]) -> str:
    rows = []
    for r in results:
        o = r.metrics["overall"]
        orig, mod = o[ORIGINAL], o["modified"]
        rows.append(
            [
                _e(r.model),
                str(o["images"]),
                str(o["excluded_failed_masks"]),
                str(o["missing_predictions"]),
                _ci(orig, "accuracy"),
                _ci(mod, "accuracy"),
                _ci(mod, "accuracy_drop"),
                _f(orig["confidence"]),
                _f(mod["confidence"]),
            ]
        )
    return _table(
        [
            "model",
            "images",
            "excluded (failed mask)",
            "missing predictions",
            "accuracy original",
            "accuracy modified",
            "drop",
            "confidence original",
            "confidence modified",
        ],
        rows,
    )


def _variants_html(result: ModelResult) -> str:
    rows = []
    for name, m in _rows(result.metrics):
        rows.append(
            [
                _e(name),
                str(m["predictions"]),
                _ci(m, "accuracy"),
                _ci(m, "accuracy_drop"),
                _ci(m, "lenient_accuracy"),
                _ci(m, "top5_accuracy"),
                _f(m["confidence"]),
                _f(m["confidence_correct"]),
                _f(m["confidence_incorrect"]),
                _f(m.get("confidence_drop")),
                _f(m["precision"]),
                _f(m["recall"]),
                _f(m["f1"]),
            ]
        )
    return _table(
        [
            "variant",
            "n",
            "accuracy",
            "accuracy drop",
            "lenient accuracy",
            "top-5",
            "confidence",
            "conf. correct",
            "conf. wrong",
            "confidence drop",
            "precision",
            "recall",
            "F1",
        ],
        rows,
    )


def _size_html(result: ModelResult) -> str:
    rows = []
    for label, m in result.metrics["size"].items():
        frac = m["object_fraction"]
        rows.append(
            [
                _e(label),
                str(m["images"]),
                f"{_f(frac['min'], 3)} – {_f(frac['max'], 3)}",
                _ci(m[ORIGINAL], "accuracy"),
                _ci(m["modified"], "accuracy"),
                _ci(m["modified"], "accuracy_drop"),
                _f(m[ORIGINAL].get("confidence")),
                _f(m["modified"].get("confidence")),
            ]
        )
    return _table(
        [
            "size",
            "images",
            "object fraction",
            "accuracy original",
            "accuracy modified",
            "drop",
            "confidence original",
            "confidence modified",
        ],
        rows,
    )


def _confusions_html(result: ModelResult, classes: Mapping[str, ClassConfig] | None) -> str:
    variants = list(result.metrics["variants"])
    rows = []
    for synset, c in result.metrics["classes"].items():
        cells = [f"{_e(c['name'])} <span class='ci'>{_e(synset)}</span>"]
        for v in variants:
            entry = c["variants"][v]
            if entry.get("wrong_label") is None:
                cells.append("–")
            else:
                cells.append(
                    f"{_e(label_name(entry['wrong_label'], classes))} "
                    f"<span class='ci'>({entry['wrong_count']})</span>"
                )
        rows.append(cells)
    return _table(["class", *map(_e, variants)], rows)


def _mcnemar_html(comparison: Mapping[str, Any]) -> str:
    parts = []
    for pair in comparison.values():
        a, b = _e(pair["model_a"]), _e(pair["model_b"])
        rows = [
            [
                _e(v),
                str(t["images"]),
                _f(t["accuracy_a"]),
                _f(t["accuracy_b"]),
                str(t["only_a"]),
                str(t["only_b"]),
                _f(t["statistic"], 3),
                f"{t['p_value']:.3g}",
                _e(t["method"]),
            ]
            for v, t in pair["variants"].items()
        ]
        parts.append(
            f"<h3>{a} vs {b}</h3>"
            + _table(
                [
                    "variant",
                    "images",
                    f"accuracy {a}",
                    f"accuracy {b}",
                    f"only {a} right",
                    f"only {b} right",
                    "statistic",
                    "p",
                    "test",
                ],
                rows,
            )
        )
    return "".join(parts)


def render_report(
    out: str | Path,
    results: Sequence[ModelResult],
    comparison: Mapping[str, Any],
    config: ReportConfig,
    images: Path | None = None,
    modified: Path | None = None,
    classes: Mapping[str, ClassConfig] | None = None,
    title: str = "bgimpact report",
    notes: Sequence[str] = (),
    extra_html: str = "",
) -> Path:
    """Write ``out/index.html`` and its figures (``fig_*.png``); returns the page's path.

    The example grid is drawn only when original photos are found under ``images``; stale
    figures of an earlier run are removed.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def save(fig: Figure, name: str) -> str:
        _save(fig, out / name)
        written.append(name)
        return name

    body = [f"<h1>{_e(title)}</h1>"]
    body += [f"<p class='note'>{note}</p>" for note in notes]
    body.append("<h2>Summary</h2>" + _summary_html(results))
    body.append("<h2>Settings</h2>" + _settings_html(results))
    if extra_html:
        body.append(extra_html)
    body.append(
        "<h2>Accuracy per variant</h2>"
        + _img(save(figure_accuracy(results), "fig_accuracy.png"), "accuracy")
    )
    for r in results:
        body.append(f"<h3>{_e(r.model)}</h3>" + _variants_html(r))
    if comparison:
        body.append(
            "<h2>Models compared (paired McNemar test per variant)</h2>" + _mcnemar_html(comparison)
        )
    body.append(
        "<h2>Confidence: originals vs variants</h2>"
        + _img(save(figure_confidence(results), "fig_confidence.png"), "confidence")
    )
    body.append(
        "<h2>Accuracy by object size</h2>"
        + _img(save(figure_size(results), "fig_size.png"), "size")
    )
    for r in results:
        body.append(f"<h3>{_e(r.model)}</h3>" + _size_html(r))
    body.append("<h2>Accuracy per class and variant</h2>")
    for r in results:
        name = save(figure_heatmap(r), f"fig_classes_{r.model}.png")
        body.append(_img(name, f"{r.model} per class"))
    body.append("<h2>Most frequent wrong label per class and variant</h2>")
    for r in results:
        body.append(f"<h3>{_e(r.model)}</h3>" + _confusions_html(r, classes))
    body.append("<h2>Examples</h2>")
    examples = pick_examples(results[0], images, config.examples, config.seed)
    if examples:
        fig = figure_examples(results, examples, modified, classes)
        body.append(_img(save(fig, "fig_examples.png"), "examples"))
    else:
        body.append(
            f"<p class='note'>No example grid: original photos not found under "
            f"{_e(images) if images else '(no image folder given)'}.</p>"
        )
    for stale in out.glob(f"{FIGURE_PREFIX}*.png"):
        if stale.name not in written:
            stale.unlink()
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    path = out / "index.html"
    with atomic_write(path, "w") as handle:
        handle.write(page)
    return path
