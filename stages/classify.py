#!/usr/bin/env python
"""Classify every image and each of its variants with one model of params.yaml.

Writes <predictions>/<model>.csv: one row per (image, variant) with the true label and the
top-5 ImageNet-1k classes and softmax probabilities (CONTRACTS.md). Images with a missing or
unreadable variant are reported and skipped as a whole.
"""

from __future__ import annotations

import dataclasses

from bgimpact.classify import classify, select_variants
from bgimpact.cli import StageCLI, parse_workers, run_stage
from bgimpact.runtime import StageSummary


def main() -> int:
    cli = StageCLI(__doc__)
    params = cli.params
    cli.option("--model", required=True, help="model id (an entry under models in params)")
    cli.path("--table", "data.table", "images table (image_id, synset, label, ...)")
    cli.path("--images", "data.images", "original photos: <images>/<synset>/<file>")
    cli.path("--modified", "data.modified", "variants: <modified>/<variant>/<synset>/<id>.png")
    cli.path("--predictions", "data.predictions", "output folder, writes <model>.csv")
    cli.option(
        "--variants",
        help="comma-separated subset of variants, run in CONTRACTS order; all when not given",
    )
    cli.option("--batch-size", type=int, help="override classify.batch_size")
    cli.option("--num-workers", type=parse_workers, help="override classify.num_workers")
    cli.option("--threads", type=int, help="override classify.threads (model's torch threads)")
    cli.option("--device", help="override classify.device (auto, cpu, cuda, cuda:N)")
    args = cli.parse()

    keys = ("batch_size", "num_workers", "threads", "device")
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    cfg = dataclasses.replace(params.classify, **overrides)
    wanted = args.variants.split(",") if args.variants else None
    variants = select_variants(params.variants, wanted)
    summary = StageSummary(f"classify {args.model}")
    rows = classify(
        args.model,
        params.model(args.model),
        cfg,
        table=args.table,
        images=args.images,
        modified=args.modified,
        out=args.predictions / f"{args.model}.csv",
        variants=variants,
        summary=summary,
    )
    summary.report("images", rows=rows, variants=len(variants))
    return 0


if __name__ == "__main__":
    run_stage(main)
