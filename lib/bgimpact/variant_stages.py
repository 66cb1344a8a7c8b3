"""The variant stages as functions: remove_bg, remove_fg, colors, apply_contrast, apply_scenic.

Each reads images.csv, the originals and the masks, and returns the :class:`StageSummary` it
filled (images done, images skipped with the reason). The image arithmetic is in
:mod:`bgimpact.variants` and :mod:`bgimpact.colors`; the file handling in
:mod:`bgimpact.variant_io`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bgimpact import variants
from bgimpact.colors import ClassColors, PixelSample, colors_from_samples, colors_json, read_colors
from bgimpact.config import ColorsConfig, ConfigError
from bgimpact.files import DatasetError, atomic_write, read_rgb
from bgimpact.runtime import StageSummary
from bgimpact.tables import read_images_table
from bgimpact.variant_io import ImageItem, for_each_image, in_flight, load, plan, write_variants

CONTRAST_VARIANTS = ("low_contrast", "high_contrast")

log = logging.getLogger("bgimpact")


def remove_bg(
    table: Path, images: Path, masks: Path, out: Path, workers: int, stage: str = "remove_bg"
) -> StageSummary:
    """Write the ``no_bg`` variant of every image."""
    summary = StageSummary(stage)
    items = plan(table, images, masks, summary)
    write_variants(
        items, lambda _i, image, mask: {"no_bg": variants.remove_background(image, mask)},
        out, ["no_bg"], summary, workers,
    )  # fmt: skip
    return summary


def remove_fg(
    table: Path, images: Path, masks: Path, out: Path, workers: int, stage: str = "remove_fg"
) -> StageSummary:
    """Write the ``no_fg`` variant of every image."""
    summary = StageSummary(stage)
    items = plan(table, images, masks, summary)
    write_variants(
        items, lambda _i, image, mask: {"no_fg": variants.remove_foreground(image, mask)},
        out, ["no_fg"], summary, workers,
    )  # fmt: skip
    return summary


def compute_colors(
    table: Path,
    images: Path,
    masks: Path,
    out: Path,
    config: ColorsConfig,
    workers: int,
    stage: str = "colors",
) -> tuple[StageSummary, dict[str, ClassColors]]:
    """Write colors.json from the object pixels of the images with ``mask_ok``.

    Every class of the table gets an entry; one without object pixels gets the fallback colours.
    """
    summary = StageSummary(stage)
    frame = read_images_table(table)
    items = plan(frame, images, masks, summary, mask_ok_only=True)
    synsets = sorted(set(frame["synset"]))
    samples = {s: PixelSample(config.max_pixels, config.seed) for s in synsets}

    def work(item: ImageItem) -> None:
        image, mask = load(item)
        samples[item.synset].add(item.image_id, image[mask])

    for_each_image(items, work, summary, workers)
    colors = colors_from_samples(
        samples, config.k, config.seed, config.fallback_low, config.fallback_high
    )
    for synset, c in colors.items():
        if not c.fallback:
            log.info("colors: %s: low=%s high=%s from %d of %d object pixels",
                     synset, list(c.low), list(c.high), c.pixels, samples[synset].seen)  # fmt: skip
    with atomic_write(out, "w") as handle:
        handle.write(colors_json(colors))
    return summary, colors


def apply_contrast(
    table: Path,
    images: Path,
    masks: Path,
    colors: Path,
    out: Path,
    workers: int,
    stage: str = "apply_contrast",
) -> StageSummary:
    """Write ``low_contrast`` and ``high_contrast``: the background filled with the class colour."""
    summary = StageSummary(stage)
    items = plan(table, images, masks, summary)
    palette = read_colors(colors)
    missing = sorted({i.synset for i in items} - set(palette))
    if missing:
        raise DatasetError(
            f"{colors}: no colours for class(es) {', '.join(missing)} (run the colors stage again)"
        )

    def make(item: ImageItem, image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        c = palette[item.synset]
        return {
            "low_contrast": variants.fill_background(image, mask, c.low),
            "high_contrast": variants.fill_background(image, mask, c.high),
        }

    write_variants(items, make, out, CONTRAST_VARIANTS, summary, workers)
    return summary


def select_scenes(requested: Sequence[str] | None, known: Sequence[str]) -> list[str]:
    """The scenes to apply: those requested (duplicates dropped), or all ``known`` ones.

    A requested name not in ``known`` (params ``scenes``) is a :class:`ConfigError`.
    """
    scenes = list(dict.fromkeys(requested or known))
    unknown = [s for s in scenes if s not in known]
    if unknown:
        raise ConfigError(
            f"scene(s) {', '.join(unknown)} not in params scenes ({', '.join(known)})"
        )
    return scenes


def load_scenes(folder: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Decode ``<folder>/<name>.jpg`` for every name; a missing or broken file stops the run
    before anything is written (message names every missing file)."""
    paths = {name: Path(folder) / f"{name}.jpg" for name in names}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DatasetError(f"scene file(s) not found: {', '.join(missing)}")
    return {name: read_rgb(path) for name, path in paths.items()}


def apply_scenic(
    table: Path,
    images: Path,
    masks: Path,
    scenes_folder: Path,
    scenes: Sequence[str],
    fit: variants.Fit,
    out: Path,
    workers: int,
    stage: str = "apply_scenic",
) -> tuple[StageSummary, variants.SceneFitter]:
    """Write one variant per scene: the object over the scene fitted to the image size.

    Each scene is decoded once; it is resized once per distinct image size (images are
    processed grouped by size).
    """
    if not scenes:
        raise DatasetError("apply_scenic: no scene to apply")
    # Room for every scene at every size still in flight: each size is then resized once.
    capacity = len(scenes) * (in_flight(workers) + 1)
    fitter = variants.SceneFitter(load_scenes(scenes_folder, scenes), fit, capacity=capacity)
    summary = StageSummary(stage)
    items = plan(table, images, masks, summary)

    def make(_item: ImageItem, image: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        return {scene: fitter.composite(scene, image, mask) for scene in scenes}

    write_variants(items, make, out, scenes, summary, workers)
    return summary, fitter
