"""I/O for the variant stages: which images to process, reading image + mask, writing PNGs.

The rows of ``images.csv`` name the images; their originals are found under
``<images>/<synset>/`` (any accepted suffix), their masks at ``<masks>/<synset>/<id>.png``.
A missing original or mask, or an unreadable file, skips that image (reported in the summary);
a mask whose size differs from its image stops the stage (the masks do not belong to these
images: run the segment stage again).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from bgimpact.files import ImageReadError, atomic_write, discover_images, read_mask, read_rgb
from bgimpact.runtime import StageSummary, usable_cores
from bgimpact.tables import read_images_table

#: PNG encoding of the variants: deflate with the run-length strategy and the "average" row
#: filter. Fixed, so the same pixels always give the same bytes (with the locked OpenCV, libpng
#: and zlib). Measured on the fixture photos and their variants against Pillow's defaults
#: (zlib level 6, adaptive filters): about 4x faster to write, files about 1 % larger. Encoding
#: dominates the variant stages' time. Lossless either way.
PNG_PARAMS: tuple[int, ...] = (
    cv2.IMWRITE_PNG_COMPRESSION, 1,
    cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
)  # fmt: skip
if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11
    PNG_PARAMS += (cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_AVG)

#: Images in flight per worker thread (bounds memory while keeping the workers busy).
IN_FLIGHT_PER_WORKER = 4

#: Show tqdm progress bars (the benchmark turns them off).
PROGRESS = True


class MaskSizeError(ImageReadError):
    """A mask's size differs from its image's; stops the stage (message names both files)."""


@dataclass(frozen=True)
class ImageItem:
    """One row of images.csv with the files it needs."""

    image_id: str
    synset: str
    image: Path
    mask: Path
    mask_ok: bool
    size: tuple[int, int] | None = None  # (height, width) from images.csv, when it has them

    @property
    def key(self) -> str:
        """``<synset>/<image_id>``, as reported in summaries."""
        return f"{self.synset}/{self.image_id}"


def default_workers() -> int:
    """Worker threads for decoding/encoding: the usable CPUs, at most 8."""
    return min(8, usable_cores())


def in_flight(workers: int) -> int:
    """How many images :func:`for_each_image` keeps submitted at once."""
    return max(1, workers) * IN_FLIGHT_PER_WORKER


def plan(
    table: str | Path | pd.DataFrame,
    images: str | Path,
    masks: str | Path,
    summary: StageSummary,
    mask_ok_only: bool = False,
) -> list[ImageItem]:
    """The images of ``table`` (images.csv, or the frame read from it) to process, ordered by
    size, then synset and id (so equal sizes come together).

    Rows whose original or mask is missing are reported to ``summary`` and left out.
    """
    frame = table if isinstance(table, pd.DataFrame) else read_images_table(table)
    if mask_ok_only:
        frame = frame[frame["mask_ok"]]
    synsets = sorted(set(frame["synset"]))
    originals = {r.image_id: r for r in discover_images(images, synsets)} if synsets else {}
    has_size = {"width", "height"} <= set(frame.columns)
    items = []
    for row in frame.itertuples(index=False):
        record = originals.get(row.image_id)
        key = f"{row.synset}/{row.image_id}"
        if record is None or record.synset != row.synset:
            summary.skip(key, f"original not found in {Path(images) / row.synset}")
            continue
        mask = Path(masks) / row.synset / f"{row.image_id}.png"
        if not mask.is_file():
            summary.skip(key, f"mask not found: {mask}")
            continue
        known = has_size and pd.notna(row.height) and pd.notna(row.width)
        size = (int(row.height), int(row.width)) if known else None
        items.append(
            ImageItem(row.image_id, row.synset, record.path, mask, bool(row.mask_ok), size)
        )
    return sorted(items, key=lambda i: (i.size or (0, 0), i.synset, i.image_id))


def load(item: ImageItem) -> tuple[np.ndarray, np.ndarray]:
    """The image (``H x W x 3`` uint8) and its mask (``H x W`` bool).

    Raises :class:`ImageReadError` for an unreadable file and :class:`MaskSizeError` when the
    mask's size differs from the image's.
    """
    image = read_rgb(item.image)
    mask = read_mask(item.mask)
    if mask.shape != image.shape[:2]:
        h, w = image.shape[:2]
        raise MaskSizeError(
            f"{item.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {item.image} "
            f"is {w}x{h}; the masks do not belong to these images (run the segment stage again)"
        )
    return image, mask


def output_path(out: str | Path, variant: str, item: ImageItem) -> Path:
    """``<out>/<variant>/<synset>/<image_id>.png``."""
    return Path(out) / variant / item.synset / f"{item.image_id}.png"


def encode_png(image: np.ndarray) -> bytes:
    """An ``H x W x 3`` uint8 RGB array as 8-bit RGB PNG bytes (:data:`PNG_PARAMS`)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # OpenCV writes BGR arrays as RGB PNGs
    ok, data = cv2.imencode(".png", bgr, list(PNG_PARAMS))
    if not ok:  # pragma: no cover - OpenCV reports no reason
        raise ValueError("PNG encoding failed")
    return data.tobytes()


def write_png(image: np.ndarray, path: str | Path) -> None:
    """Write an RGB array as a PNG, atomically (same pixels, same bytes)."""
    data = encode_png(image)
    with atomic_write(path) as handle:
        handle.write(data)


def for_each_image(
    items: Iterable[ImageItem],
    work: Callable[[ImageItem], object],
    summary: StageSummary,
    workers: int,
) -> None:
    """Run ``work(item)`` on worker threads with a progress bar; count each success as done.

    An :class:`ImageReadError` skips that image (reported); a :class:`MaskSizeError` or any
    other exception stops the run (pending images are cancelled) and is raised.
    """
    items = list(items)
    window = in_flight(workers)
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(
            total=len(items),
            desc=summary.stage,
            unit="img",
            dynamic_ncols=True,
            disable=not PROGRESS,
        ) as bar,
    ):
        pending: dict[Future, ImageItem] = {}
        queue = iter(items)
        try:
            while True:
                for item in queue:
                    pending[pool.submit(work, item)] = item
                    if len(pending) >= window:
                        break
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    item = pending.pop(future)
                    try:
                        future.result()
                    except MaskSizeError:
                        raise
                    except ImageReadError as exc:
                        summary.skip(item.key, str(exc))
                    else:
                        summary.done += 1
                    bar.update(1)
        except BaseException:
            for future in pending:
                future.cancel()
            raise


class VariantWriter:
    """Writes ``<out>/<variant>/<synset>/<id>.png`` and remembers what it wrote.

    :meth:`prune` then removes files of earlier runs from the variant folders (images that are
    no longer listed or were skipped this time), so a folder holds exactly this run's output.
    """

    def __init__(self, out: str | Path, variants: Iterable[str]) -> None:
        self.out = Path(out)
        self.variants = tuple(variants)
        self.written: set[Path] = set()
        self.removed = 0
        self._lock = threading.Lock()

    def write(self, item: ImageItem, images: Mapping[str, np.ndarray]) -> None:
        """Write one image's variants (``variant -> array``)."""
        for variant, image in images.items():
            if variant not in self.variants:
                raise ValueError(f"variant {variant!r} is not one of {self.variants}")
            path = output_path(self.out, variant, item)
            write_png(image, path)
            with self._lock:
                self.written.add(path)

    def prune(self) -> int:
        """Delete files in the variant folders not written by this run; return how many."""
        removed = 0
        for variant in self.variants:
            folder = self.out / variant
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*"), reverse=True):
                if path.is_file() and path not in self.written:
                    path.unlink()
                    removed += 1
                elif path.is_dir() and not any(path.iterdir()):
                    path.rmdir()
        self.removed += removed
        return removed


def write_variants(
    items: Iterable[ImageItem],
    make: Callable[[ImageItem, np.ndarray, np.ndarray], Mapping[str, np.ndarray]],
    out: str | Path,
    variants: Iterable[str],
    summary: StageSummary,
    workers: int,
) -> VariantWriter:
    """For every item: load image and mask once, ``make`` its variants, write each as a PNG.

    Files of earlier runs that this run did not write are removed from the variant folders.
    """
    writer = VariantWriter(out, variants)

    def work(item: ImageItem) -> None:
        image, mask = load(item)
        writer.write(item, make(item, image, mask))

    for_each_image(items, work, summary, workers)
    writer.prune()
    return writer
