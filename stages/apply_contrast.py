#!/usr/bin/env python
"""Stage apply_contrast: variants ``low_contrast`` and ``high_contrast``.

Each object is kept and its background filled with its class's low or high colour from
colors.json; writes ``<modified>/{low,high}_contrast/<synset>/<image_id>.png``.
"""

from bgimpact.cli import StageCLI, run_stage
from bgimpact.variant_io import default_workers
from bgimpact.variant_stages import apply_contrast


def main() -> int:
    cli = StageCLI(__doc__)
    cli.path("--images", "data.images", "original photos, <images>/<synset>/<file>")
    cli.path("--masks", "data.masks", "object masks, <masks>/<synset>/<image_id>.png")
    cli.path("--table", "data.table", "images.csv listing the images")
    cli.path("--colors", "data.colors", "colours per class (the colors stage)")
    cli.path("--out", "data.modified", "variants folder; writes <out>/{low,high}_contrast/")
    cli.option("--workers", type=int, default=default_workers(), help="threads for image I/O")
    args = cli.parse()
    summary = apply_contrast(
        args.table, args.images, args.masks, args.colors, args.out, args.workers
    )
    summary.report()
    return 0


if __name__ == "__main__":
    run_stage(main)
