"""Benchmark of the variant stages against a thesis-style loop, in one run, same inputs.

``python -m bgimpact.bench variants [--repeat N] [--workers N]``. Inputs: the 10 fixture photos
(``--repeat`` times over) with GrabCut masks and the 8 fixture scenes from ../shared, else
seeded synthetic photos, ellipse masks and scenes. Both sides write the 12 variants of every
image (no_bg, no_fg, low/high contrast, one per scene, ``scenic.fit: stretch``) as PNGs.

- stages: :mod:`bgimpact.variant_stages` as the pipeline runs them (remove_bg, remove_fg,
  apply_contrast, apply_scenic with every scene): each image decoded once per stage, each
  scene decoded once and resized once per image size, worker threads, the project's PNG
  encoder.
- thesis-style loop: one variant at a time, one image at a time; the photo and mask reloaded
  for every variant, the scene decoded and resized for every image; PNGs saved by Pillow with
  its defaults.
- thesis loop + fast PNG: the same loop saving with the project's encoder, to show how much
  of the gain is the encoder and how much the rest.

The outputs of the three are compared pixel by pixel (PNG is lossless; the encoders differ, so
the bytes do).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from bgimpact import variant_io
from bgimpact.config import ColorsConfig
from bgimpact.files import discover_images, read_mask, read_rgb, save_mask
from bgimpact.variant_io import default_workers, write_png
from bgimpact.variant_stages import (
    apply_contrast,
    apply_scenic,
    compute_colors,
    remove_bg,
    remove_fg,
)

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures"
SCENES = ("city", "jungle", "desert", "water", "sky", "indoor", "mountain", "snow")
SYNTHETIC_SIZES = ((500, 375), (500, 333), (375, 500), (640, 480), (500, 375)) * 2


def _synthetic(root: Path) -> tuple[Path, Path]:
    """Seeded photos (an ellipse on noise) in ``root/images/n00000000`` and plain scenes."""
    rng = np.random.default_rng(0)
    images, scenes = root / "images" / "n00000000", root / "scenes"
    images.mkdir(parents=True)
    scenes.mkdir()
    for i, (w, h) in enumerate(SYNTHETIC_SIZES):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(images / f"synthetic_{i:02d}.jpg", quality=90)
    for i, name in enumerate(SCENES):
        arr = rng.integers(0, 256, (360 + 20 * i, 480, 3), dtype=np.uint8)
        Image.fromarray(arr).save(scenes / f"{name}.jpg", quality=90)
    return images.parent, scenes


def _ellipse(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((xx - w / 2) / (w / 3)) ** 2 + ((yy - h / 2) / (h / 3)) ** 2 < 1


def prepare(root: Path, repeat: int) -> tuple[Path, Path, Path, Path, str]:
    """Photos (symlinked ``repeat`` times), masks, images.csv and scenes under ``root``."""
    if (SHARED / "imagenet").is_dir() and (SHARED / "scenes").is_dir():
        source, scenes, kind = SHARED / "imagenet", SHARED / "scenes", "fixtures + GrabCut masks"
        from bgimpact.segmentation import grabcut_mask  # loads torch: only when needed

        make_mask: Callable[[np.ndarray], np.ndarray] = grabcut_mask
    else:
        source, scenes = _synthetic(root / "synthetic")
        kind, make_mask = "synthetic photos + ellipse masks", lambda a: _ellipse(*a.shape[:2])
    images, masks = root / "images", root / "masks"
    rows = []
    for r in discover_images(source):
        rgb = read_rgb(r.path)
        mask = make_mask(rgb)
        for k in range(repeat):
            image_id = f"{r.image_id}_r{k}"
            link = images / r.synset / f"{image_id}{r.path.suffix}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(r.path.resolve())
            save_mask(mask, masks / r.synset / f"{image_id}.png")
            h, w = mask.shape
            rows.append((image_id, r.synset, 0, w, h, float(mask.mean()), bool(mask.any())))
    table = root / "images.csv"
    columns = ["image_id", "synset", "label", "width", "height", "object_fraction", "mask_ok"]
    pd.DataFrame(rows, columns=columns).to_csv(table, index=False)
    return images, masks, table, scenes, kind


def _save_pil(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)  # Pillow's PNG defaults, as a plain script would


def thesis_loop(
    images: Path, masks: Path, table: Path, scenes: Path, colors: Path, out: Path,
    save: Callable[[np.ndarray, Path], None],
) -> int:  # fmt: skip
    """Every variant, one image at a time, reloading everything; returns files written."""
    frame = pd.read_csv(table, dtype={"image_id": str})
    originals = {r.image_id: r.path for r in discover_images(images)}
    palette = json.loads(colors.read_text())
    written = 0

    def each(variant: str, build: Callable[[np.ndarray, np.ndarray, str], np.ndarray]) -> None:
        nonlocal written
        for row in frame.itertuples(index=False):
            image = read_rgb(originals[row.image_id])
            mask = read_mask(masks / row.synset / f"{row.image_id}.png")
            result = build(image, mask, row.synset)
            save(result, out / variant / row.synset / f"{row.image_id}.png")
            written += 1

    def filled(colour: str) -> Callable[[np.ndarray, np.ndarray, str], np.ndarray]:
        def build(image: np.ndarray, mask: np.ndarray, synset: str) -> np.ndarray:
            result = image.copy()
            result[~mask] = palette[synset][colour]
            return result

        return build

    def no_fg(image: np.ndarray, mask: np.ndarray, _synset: str) -> np.ndarray:
        result = image.copy()
        result[mask] = 0
        return result

    def no_bg(image: np.ndarray, mask: np.ndarray, _synset: str) -> np.ndarray:
        result = image.copy()
        result[~mask] = 0
        return result

    def scenic(name: str) -> Callable[[np.ndarray, np.ndarray, str], np.ndarray]:
        def build(image: np.ndarray, mask: np.ndarray, _synset: str) -> np.ndarray:
            scene = Image.fromarray(read_rgb(scenes / f"{name}.jpg"))  # reloaded every time
            h, w = mask.shape
            result = np.asarray(scene.resize((w, h), Image.Resampling.LANCZOS)).copy()
            result[mask] = image[mask]
            return result

        return build

    each("no_bg", no_bg)
    each("no_fg", no_fg)
    each("low_contrast", filled("low"))
    each("high_contrast", filled("high"))
    for name in SCENES:
        each(name, scenic(name))
    return written


def stages(
    images: Path, masks: Path, table: Path, scenes: Path, colors: Path, out: Path, workers: int
) -> int:
    """The variant stages as the pipeline runs them; returns files written."""
    done = remove_bg(table, images, masks, out, workers).done
    done += remove_fg(table, images, masks, out, workers).done
    done += 2 * apply_contrast(table, images, masks, colors, out, workers).done
    summary, _ = apply_scenic(table, images, masks, scenes, SCENES, "stretch", out, workers)
    return done + len(SCENES) * summary.done


def compare(a: Path, b: Path) -> int:
    """Number of PNGs, after checking both trees hold the same files with equal pixels."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    files_b = sorted(p.relative_to(b) for p in b.rglob("*.png"))
    if files_a != files_b:
        raise AssertionError(f"different files: {len(files_a)} in {a}, {len(files_b)} in {b}")
    for rel in files_a:
        with Image.open(a / rel) as x, Image.open(b / rel) as y:
            if x.mode != y.mode or not np.array_equal(np.asarray(x), np.asarray(y)):
                raise AssertionError(f"{rel}: pixels differ")
    return len(files_a)


def _timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    """``fn()``, its wall seconds and the CPU seconds of this process (all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    count = fn()
    return count, time.perf_counter() - wall, time.process_time() - cpu


def run(argv: list[str] | None = None) -> None:
    """Print images/s of the stages and of the thesis-style loop, and check equal outputs."""
    parser = argparse.ArgumentParser(prog="python -m bgimpact.bench variants", description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="times over the 10 photos")
    parser.add_argument("--workers", type=int, default=default_workers(), help="stage threads")
    args = parser.parse_args(argv)
    logging.getLogger("bgimpact").setLevel(logging.ERROR)  # no per-stage warnings here
    variant_io.PROGRESS = False
    with tempfile.TemporaryDirectory(prefix="bench_variants_") as tmp:
        root = Path(tmp)
        images, masks, table, scenes, kind = prepare(root, max(1, args.repeat))
        colors = root / "colors.json"
        (_, colours), t_colors, _ = _timed(
            lambda: compute_colors(table, images, masks, colors, ColorsConfig(), args.workers)
        )
        n = len(pd.read_csv(table))
        files, t_stage, c_stage = _timed(
            lambda: stages(images, masks, table, scenes, colors, root / "stages", args.workers)
        )
        _, t_thesis, c_thesis = _timed(
            lambda: thesis_loop(images, masks, table, scenes, colors, root / "thesis", _save_pil)
        )
        _, t_fast, c_fast = _timed(
            lambda: thesis_loop(images, masks, table, scenes, colors, root / "fast", write_png)
        )
        checked = compare(root / "stages", root / "thesis") + compare(
            root / "stages", root / "fast"
        )
    variants = files // n if n else 0
    machine = f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    print(f"variants: {n} images x {variants} variants = {files} PNGs ({kind}); "
          f"workers={args.workers}, {machine}")  # fmt: skip
    rows = [
        ("stages (remove_bg, remove_fg, apply_contrast, apply_scenic)", t_stage, c_stage),
        ("thesis-style loop (Pillow PNG defaults)", t_thesis, c_thesis),
        ("thesis-style loop + the stages' PNG encoder", t_fast, c_fast),
    ]
    for name, secs, cpu in rows:
        print(f"  {name:<62} {secs:6.2f} s  {n / secs:6.2f} images/s  {files / secs:6.1f} PNG/s"
              f"  (CPU {cpu:6.2f} s)")  # fmt: skip
    print(f"  speed-up vs thesis-style loop: {t_thesis / t_stage:.1f}x wall (target >= 5x), "
          f"{c_thesis / c_stage:.1f}x CPU time; without the encoder's share: "
          f"{t_fast / t_stage:.1f}x wall, {c_fast / c_stage:.1f}x CPU")  # fmt: skip
    print(f"  outputs identical: yes ({checked} PNG pairs, pixel-equal)")
    print(
        f"  colors (KMeans k=5 over {len(colours)} classes, not in the figures): {t_colors:.2f} s"
    )
