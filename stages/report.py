#!/usr/bin/env python
"""Compare the models and write the HTML report.

Evaluates every model of classify.models as the evaluate stage does, then writes
<metrics>/comparison.json (paired McNemar test per variant for each pair of models), the
across-model tables of <plots>/all_models/ for `dvc plots show`, and <report>/index.html with
its PNG figures (accuracy per variant, confidence, object size, per-class heat maps, example
grid when the photos are present). The page needs no network.
"""

from __future__ import annotations

from bgimpact.cli import StageCLI, run_stage
from bgimpact.config import ConfigError
from bgimpact.evaluation import (
    ALL_MODELS,
    compare,
    comparison_tables,
    evaluate_model,
    write_json,
    write_tables,
)
from bgimpact.report import render_report
from bgimpact.runtime import StageSummary
from bgimpact.tables import read_images_table


def main() -> int:
    cli = StageCLI(__doc__)
    params = cli.params
    cli.option(
        "--models",
        default=",".join(params.classify.models),
        help="comma-separated model ids [params: classify.models]",
    )
    cli.path("--table", "data.table", "images table (image_id, synset, label, ..., mask_ok)")
    cli.path("--predictions", "data.predictions", "predictions folder, reads <model>.csv")
    cli.path("--images", "data.images", "original photos, for the example grid")
    cli.path("--modified", "data.modified", "variants <variant>/<synset>/<id>.png, for the grid")
    cli.path("--metrics", "data.metrics", "output folder, writes comparison.json")
    cli.path("--plots", "data.plots", f"output folder, writes {ALL_MODELS}/*.csv")
    cli.path("--out", "data.report", "output folder, writes index.html and fig_*.png")
    args = cli.parse()

    models = [m for m in args.models.split(",") if m]
    if not models:
        raise ConfigError("--models: no model to report on (classify.models is empty)")
    summary = StageSummary("report")
    images = read_images_table(args.table)
    results = [
        evaluate_model(
            images,
            args.predictions / f"{m}.csv",
            params.variants,
            params.evaluate,
            params.classes,
            model=m,
        )
        for m in models
    ]
    comparison = compare(results)
    write_json(comparison, args.metrics / "comparison.json")
    write_tables(comparison_tables(results), args.plots / ALL_MODELS)
    page = render_report(
        args.out,
        results,
        comparison,
        params.report,
        images=args.images,
        modified=args.modified,
        classes=params.classes,
    )
    summary.done = len(results)
    summary.report("models", page=page)
    return 0


if __name__ == "__main__":
    run_stage(main)
