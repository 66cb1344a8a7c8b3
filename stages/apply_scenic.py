#!/usr/bin/env python
"""Stage apply_scenic: one variant per scene, each object moved onto the scene.

The object keeps its pixels, place and size; the background is ``<scenes>/<scene>.jpg`` fitted
to the image size (params ``scenic.fit``: stretch or cover). Writes
``<modified>/<scene>/<synset>/<image_id>.png``. The pipeline runs one scene per stage
(``--scene city``); by hand, repeat ``--scene`` or leave it out for every scene in params.
"""

from bgimpact.cli import StageCLI, run_stage
from bgimpact.variant_io import default_workers
from bgimpact.variant_stages import apply_scenic, select_scenes


def main() -> int:
    cli = StageCLI(__doc__)
    cli.path("--images", "data.images", "original photos, <images>/<synset>/<file>")
    cli.path("--masks", "data.masks", "object masks, <masks>/<synset>/<image_id>.png")
    cli.path("--table", "data.table", "images.csv listing the images")
    cli.path("--scenes", "data.scenes", "scene photos, <scenes>/<scene>.jpg")
    cli.path("--out", "data.modified", "variants folder; writes <out>/<scene>/")
    cli.option(
        "--scene",
        action="append",
        metavar="NAME",
        help="scene to apply, repeatable (default: every scene in params `scenes`)",
    )
    cli.option("--workers", type=int, default=default_workers(), help="threads for image I/O")
    args = cli.parse()
    scenes = select_scenes(args.scene, cli.params.scenes)
    summary, fitter = apply_scenic(
        args.table, args.images, args.masks, args.scenes, scenes, cli.params.scenic.fit,
        args.out, args.workers,
    )  # fmt: skip
    summary.report(scenes=len(scenes), fit=fitter.fit, scene_resizes=fitter.resizes)
    return 0


if __name__ == "__main__":
    run_stage(main)
