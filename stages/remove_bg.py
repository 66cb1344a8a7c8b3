#!/usr/bin/env python
"""Stage remove_bg: variant ``no_bg``, each object on a black (0, 0, 0) background.

Writes ``<modified>/no_bg/<synset>/<image_id>.png`` for every row of images.csv.
"""

from bgimpact.cli import StageCLI, run_stage
from bgimpact.variant_io import default_workers
from bgimpact.variant_stages import remove_bg


def main() -> int:
    cli = StageCLI(__doc__)
    cli.path("--images", "data.images", "original photos, <images>/<synset>/<file>")
    cli.path("--masks", "data.masks", "object masks, <masks>/<synset>/<image_id>.png")
    cli.path("--table", "data.table", "images.csv listing the images")
    cli.path("--out", "data.modified", "variants folder; writes <out>/no_bg/")
    cli.option("--workers", type=int, default=default_workers(), help="threads for image I/O")
    args = cli.parse()
    summary = remove_bg(args.table, args.images, args.masks, args.out, args.workers)
    summary.report()
    return 0


if __name__ == "__main__":
    run_stage(main)
