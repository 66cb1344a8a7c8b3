"""Rebuild the thesis's figures from its per-image results: ``python -m bgimpact.thesis``.

``--ref FOLDER`` holds ``images.csv`` and ``predictions_<model>.csv`` (the schema of
CONTRACTS.md, e.g. ``../shared/reference/thesis``). Evaluation runs with the thesis's settings
(:func:`thesis_config`: images with a failed mask kept, weighted precision/recall/F1, size bins
from pooled quantiles, every variant pooled as "modified") and writes ``OUT/<model>.json``,
``OUT/comparison.json`` and ``OUT/report/index.html``. Where the models are the thesis's own,
the figures it published are printed and put in the report beside the rebuilt ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bgimpact.cli import USER_ERRORS
from bgimpact.config import EvaluateConfig, Params, load_params
from bgimpact.evaluation import ModelResult, compare, evaluate_model, write_json
from bgimpact.metrics import ORIGINAL
from bgimpact.report import render_report
from bgimpact.runtime import setup_logging
from bgimpact.tables import TableError, read_images_table

#: Figures the thesis published (accuracies; mean top-1 confidence on the originals, printed
#: as a percentage with two decimals; small objects: originals and all 12 variants pooled).
PUBLISHED: dict[str, dict[str, float]] = {
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
        "confidence_original": 0.8519,
        "small_original": 0.884545,
        "small_modified": 0.552828,
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
        "confidence_original": 0.6853,
        "small_original": 0.954545,
        "small_modified": 0.705480,
    },
}
#: How close a rebuilt figure must be: 1e-6, or half a unit of the printed percentage.
TOLERANCE = {"confidence_original": 5e-5}
DEFAULT_TOLERANCE = 1e-6
#: The variant the thesis's headline "modified" figure left out by mistake.
THESIS_BUG_VARIANT = "no_bg"


def thesis_config(base: EvaluateConfig) -> EvaluateConfig:
    """``base`` with the thesis's settings: failed masks kept, weighted P/R/F1, every variant
    pooled, size bins from pooled 0.33/0.66 quantiles (small/medium/large)."""
    bins = dataclasses.replace(
        base.size_bins, quantiles=(0.33, 0.66), labels=("small", "medium", "large"), scope="pooled"
    )
    return dataclasses.replace(
        base, average="weighted", exclude_failed_masks=False, modified_variants=None, size_bins=bins
    )


def find_models(ref: Path, preferred: Sequence[str] = ()) -> dict[str, Path]:
    """``predictions_<model>.csv`` files of ``ref``: the ``preferred`` models first."""
    found = {p.stem.removeprefix("predictions_"): p for p in ref.glob("predictions_*.csv")}
    if not found:
        raise TableError(f"{ref}: no predictions_<model>.csv file")
    order = [m for m in preferred if m in found] + sorted(m for m in found if m not in preferred)
    return {m: found[m] for m in order}


def rebuilt_figures(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The published kinds of figure, taken from a model's metrics."""
    out: dict[str, float | None] = {v: m["accuracy"] for v, m in metrics["variants"].items()}
    out["confidence_original"] = metrics["variants"][ORIGINAL]["confidence"]
    small = metrics["size"].get("small")
    if small:
        out["small_original"] = small[ORIGINAL].get("accuracy")
        out["small_modified"] = small["modified"].get("accuracy")
    return out


def check_published(model: str, metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each published figure of ``model`` beside the rebuilt one, and whether they agree."""
    rebuilt = rebuilt_figures(metrics)
    rows = []
    for key, published in PUBLISHED.get(model, {}).items():
        value = rebuilt.get(key)
        tolerance = TOLERANCE.get(key, DEFAULT_TOLERANCE)
        ok = value is not None and abs(value - published) <= tolerance
        rows.append({"figure": key, "published": published, "rebuilt": value, "match": ok})
    return rows


def headline_as_published(result: ModelResult) -> dict[str, Any]:
    """The thesis's headline "modified" accuracy: every variant except original pooled, but
    with ``no_bg`` left out by the thesis's bug; and the correct figure beside it."""
    data = result.data
    cols = [i for i, v in enumerate(data.variants) if v not in (ORIGINAL, THESIS_BUG_VARIANT)]
    correct, present = data.correct[:, cols].sum(), data.present[:, cols].sum()
    return {
        "modified_without_no_bg": float(correct / present) if present else None,
        "modified_all_variants": result.metrics["overall"]["modified"]["accuracy"],
    }


def run(
    ref: Path, out: Path, params: Params, images: Path | None = None, modified: Path | None = None
) -> list[ModelResult]:
    """Evaluate every model of ``ref`` with the thesis's settings and write the outputs."""
    config = thesis_config(params.evaluate)
    table = read_images_table(ref / "images.csv")
    results = []
    checks: dict[str, list[dict[str, Any]]] = {}
    for model, path in find_models(ref, params.classify.models).items():
        result = evaluate_model(table, path, params.variants, config, params.classes, model)
        checks[model] = check_published(model, result.metrics)
        thesis = {"headline": headline_as_published(result)}
        if checks[model]:
            thesis["published"] = {c["figure"]: c["published"] for c in checks[model]}
            thesis["published_matched"] = sum(c["match"] for c in checks[model])
            thesis["published_figures"] = len(checks[model])
        write_json({**result.metrics, "thesis": thesis}, out / f"{model}.json")
        results.append(result)
    comparison = compare(results)
    write_json(comparison, out / "comparison.json")
    notes = [
        f"Rebuilt from <code>{ref}</code> with the thesis's settings: images whose "
        "segmentation failed kept, weighted precision/recall/F1 over the 1000-way labels "
        "(recall then equals accuracy), size bins from pooled 0.33/0.66 quantiles.",
        "The thesis's headline “modified” figure pooled the variants without "
        f"<code>{THESIS_BUG_VARIANT}</code> (a bug); “modified” here pools all of them. "
        "Both are given in the table below and in each model's JSON (<code>thesis.headline"
        "</code>).",
    ]
    render_report(
        out / "report",
        results,
        comparison,
        params.report,
        images=images,
        modified=modified,
        classes=params.classes,
        title="bgimpact: the thesis's figures rebuilt",
        notes=notes,
        extra_html=_published_html(results, checks),
    )
    for result in results:
        _print_summary(result, checks[result.model])
    return results


def _published_html(results: Sequence[ModelResult], checks: Mapping[str, list]) -> str:
    rows = []
    for result in results:
        head = headline_as_published(result)
        rows.append(
            f"<tr><td class='l'>{result.model}</td><td class='l'>modified, no_bg left out "
            f"(as published)</td><td>–</td><td>{head['modified_without_no_bg']:.6f}</td>"
            "<td>–</td></tr>"
        )
        for c in checks[result.model]:
            value = "–" if c["rebuilt"] is None else f"{c['rebuilt']:.6f}"
            rows.append(
                f"<tr><td class='l'>{result.model}</td><td class='l'>{c['figure']}</td>"
                f"<td>{c['published']:.6f}</td><td>{value}</td>"
                f"<td>{'yes' if c['match'] else 'NO'}</td></tr>"
            )
    return (
        "<h2>Published vs rebuilt</h2><table><thead><tr><th class='l'>model</th>"
        "<th class='l'>figure</th><th>published</th><th>rebuilt</th><th>agrees</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _print_summary(result: ModelResult, checks: list[dict[str, Any]]) -> None:
    overall = result.metrics["overall"]
    head = headline_as_published(result)
    line = (
        f"{result.model}: original {overall[ORIGINAL]['accuracy']:.6f}, modified "
        f"{overall['modified']['accuracy']:.6f} (as published, without no_bg: "
        f"{head['modified_without_no_bg']:.6f})"
    )
    if checks:
        matched = sum(c["match"] for c in checks)
        line += f"; published figures rebuilt: {matched}/{len(checks)}"
        for c in checks:
            if not c["match"]:
                line += f"\n  differs: {c['figure']} published {c['published']}"
                line += f" rebuilt {c['rebuilt']}"
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bgimpact.thesis --ref FOLDER --out FOLDER``."""
    parser = argparse.ArgumentParser(
        prog="python -m bgimpact.thesis",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--ref", type=Path, required=True, help="folder with images.csv and predictions_<model>.csv"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("metrics/thesis"),
        help="output folder (default: metrics/thesis)",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file: classes, scenes, lenient groups, bootstrap, report",
    )
    parser.add_argument("--images", type=Path, help="original photos, for the example grid")
    parser.add_argument("--modified", type=Path, help="variants, for the example grid")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        if not (args.ref / "images.csv").is_file():
            raise TableError(f"{args.ref}: no images.csv (expected the thesis reference folder)")
        run(args.ref, args.out, load_params(args.params), args.images, args.modified)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}/<model>.json and {args.out / 'report' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
