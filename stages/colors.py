#!/usr/bin/env python
"""Stage colors: per class, the low/high contrast colours from KMeans over object pixels.

Reads the images with ``mask_ok`` and writes colors.json: per synset
``{"low": [r, g, b], "high": [r, g, b]}`` (params ``colors``).
"""

from bgimpact.cli import StageCLI, run_stage
from bgimpact.variant_io import default_workers
from bgimpact.variant_stages import compute_colors


def main() -> int:
    cli = StageCLI(__doc__)
    cli.path("--images", "data.images", "original photos, <images>/<synset>/<file>")
    cli.path("--masks", "data.masks", "object masks, <masks>/<synset>/<image_id>.png")
    cli.path("--table", "data.table", "images.csv listing the images")
    cli.path("--out", "data.colors", "colours file to write")
    cli.option("--workers", type=int, default=default_workers(), help="threads for image I/O")
    args = cli.parse()
    cfg = cli.params.colors
    summary, colors = compute_colors(
        args.table, args.images, args.masks, args.out, cfg, args.workers
    )
    fallback = sorted(s for s, c in colors.items() if c.fallback)
    summary.report(classes=len(colors), fallback=",".join(fallback) or "none")
    return 0


if __name__ == "__main__":
    run_stage(main)
