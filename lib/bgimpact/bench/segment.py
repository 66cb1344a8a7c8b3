"""Benchmark of the segment stage: its images/s next to the pure DeepLabV3 forward, in one run.

``python -m bgimpact.bench segment [--method ...] [--repeat N]``. Both sides use the same model
(random-initialised weights: the figures are speed only, no download needed), the same resize,
batch size and batches. The pure forward is ``model(x)["out"]`` on tensors already decoded,
resized and normalised in memory; the stage is :func:`bgimpact.segmentation.run_segmentation`
from files to masks, overlays and images.csv. Photos: the 10 fixture photos of ../shared, else
10 synthetic ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision.models as tvm
from PIL import Image

from bgimpact.config import VOC_CATEGORIES, ClassConfig
from bgimpact.files import ImageRecord, discover_images, read_rgb
from bgimpact.runtime import pick_device
from bgimpact.segmentation import (
    DEEPLAB_METHODS,
    DeepLabSegmenter,
    ShapeBatcher,
    normalize,
    preprocess,
    run_segmentation,
)

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "imagenet"
SYNTHETIC_SIZES = ((500, 375), (500, 333), (375, 500), (640, 480), (500, 375)) * 2


def synthetic_photos(folder: Path) -> Path:
    """Ten seeded photos (an ellipse on noise), ImageNet-like sizes, in ``folder/n00000000``."""
    rng = np.random.default_rng(0)
    out = folder / "n00000000"
    out.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(SYNTHETIC_SIZES):
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        yy, xx = np.mgrid[:h, :w]
        arr[((xx - w / 2) / (w / 3)) ** 2 + ((yy - h / 2) / (h / 3)) ** 2 < 1] = (200, 120, 40)
        Image.fromarray(arr).save(out / f"synthetic_{i:02d}.jpg", quality=90)
    return folder


def repeated(records: list[ImageRecord], times: int, folder: Path) -> list[ImageRecord]:
    """The photos ``times`` over, as symlinks with unique ids (``<id>_r<k>``) in ``folder``."""
    out = []
    for k in range(times):
        for r in records:
            link = folder / r.synset / f"{r.image_id}_r{k}{r.path.suffix}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(r.path.resolve())
            out.append(ImageRecord(link.stem, r.synset, link))
    return sorted(out)


def forward_batches(records: list[ImageRecord], resize: int, batch_size: int) -> list[torch.Tensor]:
    """Normalised float batches, grouped exactly as the stage groups them."""
    batcher = ShapeBatcher(batch_size, max_pending=4 * batch_size)
    groups: list[list[torch.Tensor]] = []
    for r in records:
        tensor = preprocess(read_rgb(r.path), resize)
        groups += batcher.add(tuple(tensor.shape), tensor)
    groups += batcher.drain()
    return [normalize(torch.stack(g)) for g in groups]


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds ``fn`` takes, the device synchronised at both ends."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def run(argv: list[str] | None = None) -> None:
    """Print the stage's images/s, the pure forward's, and their ratio."""
    parser = argparse.ArgumentParser(
        prog="python -m bgimpact.bench segment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--method", choices=DEEPLAB_METHODS, default="deeplabv3_mobilenet_v3_large")
    parser.add_argument("--resize", type=int, default=520, help="shorter side (default 520)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="each photo this many times")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed rounds, pure forward and stage interleaved")  # fmt: skip
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=Path, default=None, help="<folder>/<synset>/<image>")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    torch.manual_seed(0)
    model = tvm.get_model(args.method, weights=None, weights_backbone=None, aux_loss=False)
    segmenter = DeepLabSegmenter(
        model, VOC_CATEGORIES, args.resize, args.batch_size, device, args.method
    )
    with tempfile.TemporaryDirectory(prefix="bgimpact-bench-") as tmp:
        tmp_path = Path(tmp)
        source = args.images or (FIXTURES if FIXTURES.is_dir() else None)
        if source is None:
            source = synthetic_photos(tmp_path / "synthetic")
        records = repeated(discover_images(source), args.repeat, tmp_path / "photos")
        classes = {r.synset: ClassConfig(r.synset, 0, "dog") for r in records}
        batches = [b.to(device) for b in forward_batches(records, args.resize, args.batch_size)]
        model = segmenter.model  # on the device, channels-last on CUDA: as the stage runs it
        if device.type == "cuda":
            batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]

        @torch.inference_mode()
        def pure() -> None:
            for batch in batches:
                model(batch)["out"]

        def stage() -> None:
            out = tmp_path / "out"
            run_segmentation(records, segmenter, classes, out / "masks", out / "overlays",
                             out / "images.csv", 0.001, progress=False)  # fmt: skip

        pure()  # warm-up: the backends prepare their kernels once per input shape
        n = len(records)
        print(f"segment bench: {args.method} (random-initialised weights: speed only), "
              f"resize {args.resize}, batch {args.batch_size}, {device}, {n} images "
              f"({source}, x{args.repeat}), {len(batches)} batches, "
              f"{torch.get_num_threads()} torch threads", flush=True)  # fmt: skip
        best_pure = best_stage = float("inf")
        ratios = []
        for k in range(args.rounds):
            t_pure, t_stage = timed(pure, device), timed(stage, device)
            best_pure, best_stage = min(best_pure, t_pure), min(best_stage, t_stage)
            ratios.append(t_pure / t_stage)
            print(f"  round {k + 1}: pure forward {n / t_pure:.2f} images/s, "
                  f"stage {n / t_stage:.2f} images/s, ratio {ratios[-1]:.2f}",
                  flush=True)  # fmt: skip
    print(f"  pure forward: {n / best_pure:.2f} images/s (best {best_pure:.2f} s)")
    print(f"  stage:        {n / best_stage:.2f} images/s (best {best_stage:.2f} s)")
    print(f"  ratio stage / pure forward: {best_pure / best_stage:.2f} best of each, "
          f"{statistics.median(ratios):.2f} median of the rounds (target >= 0.90); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
