#!/usr/bin/env python
"""Evaluate one model's predictions: accuracy, confidence, P/R/F1, size bins, classes, intervals.

Writes <metrics>/<model>.json (the figures, tracked by `dvc metrics`) and the tables of
<plots>/<model>/ (accuracy per variant, confidence histogram, accuracy per size bin) drawn by
`dvc plots show`. Settings come from the `evaluate` section of params.yaml.
"""

from __future__ import annotations

from bgimpact.cli import StageCLI, run_stage
from bgimpact.evaluation import evaluate_model, plot_tables, write_json, write_tables
from bgimpact.runtime import StageSummary
from bgimpact.tables import read_images_table


def main() -> int:
    cli = StageCLI(__doc__)
    params = cli.params
    cli.option("--model", required=True, help="model id (an entry of classify.models)")
    cli.path("--table", "data.table", "images table (image_id, synset, label, ..., mask_ok)")
    cli.path("--predictions", "data.predictions", "predictions folder, reads <model>.csv")
    cli.path("--metrics", "data.metrics", "output folder, writes <model>.json")
    cli.path("--plots", "data.plots", "output folder, writes <model>/*.csv for DVC plots")
    args = cli.parse()

    summary = StageSummary(f"evaluate {args.model}")
    result = evaluate_model(
        read_images_table(args.table),
        args.predictions / f"{args.model}.csv",
        params.variants,
        params.evaluate,
        params.classes,
        model=args.model,
    )
    write_json(result.metrics, args.metrics / f"{args.model}.json")
    write_tables(plot_tables(result), args.plots / args.model)
    overall = result.metrics["overall"]
    summary.done = overall["evaluated_images"]
    summary.report(
        "images",
        excluded_failed_masks=overall["excluded_failed_masks"],
        original=f"{overall['original']['accuracy']:.4f}",
        modified=f"{overall['modified']['accuracy']:.4f}",
    )
    return 0


if __name__ == "__main__":
    run_stage(main)
