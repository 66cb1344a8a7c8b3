#!/usr/bin/env python
"""Segment the photos: object masks, overlays for people, and data/images.csv.

The object is the pixels of each class's Pascal-VOC category (params `classes.<synset>.voc`),
found by `segment.method`: DeepLabV3 (torchvision weights), GrabCut, or masks you provide.
Unreadable photos are reported and skipped; images whose object covers less than
`segment.min_object_fraction` are kept with mask_ok=false and listed at the end.
"""

from bgimpact.cli import StageCLI, run_stage
from bgimpact.files import discover_images
from bgimpact.segmentation import build_segmenter, run_segmentation


def main() -> int:
    cli = StageCLI(__doc__)
    cli.path("--images", "data.images", "input photos, <folder>/<synset>/<image>")
    cli.path("--masks", "data.masks", "output masks, <folder>/<synset>/<image_id>.png")
    cli.path("--overlays", "data.overlays", "output overlays, <folder>/<synset>/<image_id>.jpg")
    cli.path("--table", "data.table", "output images table (CSV)")
    args = cli.parse()
    params = cli.params
    # Inputs and weights are checked before any output is touched.
    records = discover_images(args.images, list(params.classes))
    segmenter = build_segmenter(params.segment)
    run = run_segmentation(
        records,
        segmenter,
        params.classes,
        masks=args.masks,
        overlays=args.overlays,
        table=args.table,
        min_object_fraction=params.segment.min_object_fraction,
    )
    run.report()
    return 0


if __name__ == "__main__":
    run_stage(main)
