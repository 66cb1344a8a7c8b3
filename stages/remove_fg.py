#!/usr/bin/env python
"""Stage remove_fg: variant ``no_fg``, each object blacked out (0, 0, 0), background kept.

Writes ``<modified>/no_fg/<synset>/<image_id>.png`` for every row of images.csv.
"""

from bgimpact.cli import StageCLI, run_stage
from bgimpact.variant_io import default_workers
from bgimpact.variant_stages import remove_fg


def main() -> int:
    cli = StageCLI(__doc__)
    cli.path("--images", "data.images", "original photos, <images>/<synset>/<file>")
    cli.path("--masks", "data.masks", "object masks, <masks>/<synset>/<image_id>.png")
    cli.path("--table", "data.table", "images.csv listing the images")
    cli.path("--out", "data.modified", "variants folder; writes <out>/no_fg/")
    cli.option("--workers", type=int, default=default_workers(), help="threads for image I/O")
    args = cli.parse()
    summary = remove_fg(args.table, args.images, args.masks, args.out, args.workers)
    summary.report()
    return 0


if __name__ == "__main__":
    run_stage(main)
