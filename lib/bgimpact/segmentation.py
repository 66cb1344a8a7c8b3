"""Object masks: DeepLabV3 (torchvision), GrabCut (OpenCV), or masks the user provides.

Each photo is segmented, the object is the pixels of its class's Pascal-VOC category (a person
beside the dog stays background), and the stage writes the mask, an overlay for people and one
row of ``images.csv``. Photos are decoded and prepared in background threads and outputs are
written in another, so the model is never kept waiting.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as nnf
import torchvision.models as tvm
import torchvision.transforms.functional as tvf
from PIL import Image
from torch import nn
from torchvision.transforms import InterpolationMode
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from bgimpact.config import VOC_CATEGORIES, ClassConfig, ConfigError, SegmentConfig
from bgimpact.files import (
    DatasetError,
    ImageReadError,
    ImageRecord,
    read_mask,
    read_rgb,
    save_image,
    save_mask,
)
from bgimpact.overlay import draw_overlay
from bgimpact.runtime import StageSummary, pick_device
from bgimpact.tables import IMAGES_COLUMNS, write_csv
from bgimpact.weights import build_torchvision, is_checkpoint_path, load_checkpoint, load_state

log = logging.getLogger("bgimpact.segment")

DEEPLAB_METHODS: tuple[str, ...] = (
    "deeplabv3_resnet101",
    "deeplabv3_resnet50",
    "deeplabv3_mobilenet_v3_large",
)
#: Normalisation of torchvision's DeepLabV3 weights (ImageNet statistics).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Seed of OpenCV's random generator before every GrabCut call (its GMMs start from k-means).
GRABCUT_SEED = 0

T = TypeVar("T")
R = TypeVar("R")


def segmenter_weights(cfg: SegmentConfig) -> tuple[str, str] | None:
    """``(torchvision builder, weights enum name)`` the segmenter downloads, or None.

    None for GrabCut, provided masks and DeepLabV3 from a local checkpoint file.
    """
    if cfg.method in DEEPLAB_METHODS and not is_checkpoint_path(cfg.weights):
        return cfg.method, cfg.weights
    return None


# --------------------------------------------------------------------------- pure functions


def category_index(voc: str, categories: Sequence[str] = VOC_CATEGORIES) -> int:
    """Label id of VOC category ``voc`` (``dog`` -> 12) in the segmenter's ``categories``."""
    try:
        return list(categories).index(voc)
    except ValueError:
        raise ValueError(f"{voc!r} is not a category of the segmenter") from None


def pick_category(
    labels: np.ndarray, voc: str, categories: Sequence[str] = VOC_CATEGORIES
) -> np.ndarray:
    """Boolean object mask: the pixels of a label map that carry category ``voc``, only those."""
    return labels == category_index(voc, categories)


def object_fraction(mask: np.ndarray) -> float:
    """Share of the image covered by the object, in [0, 1]."""
    if mask.size == 0:
        raise ValueError("empty mask (0 pixels)")
    return float(np.count_nonzero(mask)) / mask.size


def is_mask_ok(fraction: float, min_fraction: float) -> bool:
    """A mask is usable when the object covers at least ``min_fraction`` (and is not empty)."""
    return fraction > 0.0 and fraction >= min_fraction


def grabcut_mask(
    rgb: np.ndarray, margin: float = 0.05, iterations: int = 5, max_side: int = 512
) -> np.ndarray:
    """GrabCut object mask of an ``H x W x 3`` uint8 photo, initialised with a centred rectangle.

    The rectangle leaves ``margin`` of the width and height (at least one pixel) on each side as
    sure background. GrabCut runs on a copy whose longer side is at most ``max_side``; the mask
    is scaled back to ``H x W`` (nearest neighbour). Deterministic: OpenCV's random generator is
    seeded before the call. Raises ``cv2.error`` where GrabCut itself fails.
    """
    height, width = rgb.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    small = rgb
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    x0, y0 = max(1, round(sw * margin)), max(1, round(sh * margin))
    if sw - 2 * x0 < 1 or sh - 2 * y0 < 1:
        return np.zeros((height, width), dtype=bool)  # too small for a rectangle inside
    state = np.zeros((sh, sw), dtype=np.uint8)
    bgd_model = np.zeros((1, 65), dtype=np.float64)
    fgd_model = np.zeros((1, 65), dtype=np.float64)
    cv2.setRNGSeed(GRABCUT_SEED)  # the generator is per thread: seed it in the calling one
    # GrabCut's colour models are symmetric in the channels, so RGB works as well as BGR.
    cv2.grabCut(
        np.ascontiguousarray(small),
        state,
        (x0, y0, sw - 2 * x0, sh - 2 * y0),
        bgd_model,
        fgd_model,
        iterations,
        cv2.GC_INIT_WITH_RECT,
    )
    obj = ((state == cv2.GC_FGD) | (state == cv2.GC_PR_FGD)).astype(np.uint8)
    if (sh, sw) != (height, width):
        obj = cv2.resize(obj, (width, height), interpolation=cv2.INTER_NEAREST)
    return obj.astype(bool)


def preprocess(rgb: np.ndarray, resize: int) -> torch.Tensor:
    """``3 x h x w`` uint8 tensor of the photo, its shorter side resized to ``resize``.

    The resize of the DeepLabV3 weights' own transforms (bilinear, antialiased, on the PIL image);
    :func:`normalize` completes them.
    """
    image = tvf.resize(
        Image.fromarray(rgb), [resize], interpolation=InterpolationMode.BILINEAR, antialias=True
    )
    return tvf.pil_to_tensor(image)


def normalize(batch: torch.Tensor) -> torch.Tensor:
    """uint8 ``N x 3 x h x w`` -> float in [0, 1], normalised with the ImageNet mean and std."""
    return tvf.normalize(tvf.convert_image_dtype(batch, torch.float), IMAGENET_MEAN, IMAGENET_STD)


def head_logits(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Class scores of a torchvision DeepLabV3 at its head's resolution (stride 8 or 16).

    ``model(batch)["out"]`` would upsample these to the resized input first; the stage
    upsamples them once, straight to each photo's own size (:func:`labels_from_logits`).
    """
    return model.classifier(model.backbone(batch)["out"])


def labels_from_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 ``H x W`` label map: ``C x h x w`` scores upsampled (bilinear) to ``size``, argmax."""
    # Channels-last makes the per-pixel argmax over C a contiguous reduction (several times faster).
    scores = logits[None].contiguous(memory_format=torch.channels_last)
    scores = nnf.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    # max(dim).indices is argmax (first maximum on ties), about 1.5x faster on the CPU.
    return scores.max(dim=1).indices[0].to(torch.uint8)


# --------------------------------------------------------------------------- segmenters


class Segmenter(Protocol):
    """A method that turns photos into boolean object masks.

    ``prepare`` runs in loader threads, one photo at a time; ``segment`` runs in the main
    thread on a batch of prepared photos sharing one ``batch_key``.
    """

    name: str
    batch_size: int
    workers: int

    def prepare(self, record: ImageRecord, rgb: np.ndarray) -> Any: ...

    def batch_key(self, prepared: Any) -> Hashable: ...

    def segment(self, prepared: list[Any], vocs: list[str]) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class _Prepared:
    tensor: torch.Tensor  # 3 x h x w uint8, resized
    size: tuple[int, int]  # the photo's H, W


class DeepLabSegmenter:
    """Torchvision DeepLabV3: batched inference on images grouped by their resized shape.

    Images in one batch have the same resized shape, so no padding alters what the network
    sees: a mask does not depend on the batch it was computed in.
    """

    def __init__(
        self,
        model: nn.Module,
        categories: Sequence[str],
        resize: int,
        batch_size: int,
        device: torch.device,
        name: str = "deeplabv3",
    ) -> None:
        self.name = name
        self.categories = tuple(categories)
        self.resize = resize
        self.batch_size = batch_size
        self.device = device
        self.cuda = device.type == "cuda"
        self.model = model.eval().to(device)
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        # On the CPU one loader keeps ahead of the network (decoding is ~3 % of a forward) and
        # leaves the cores to the network's own threads; a GPU needs several.
        self.workers = min(8, os.cpu_count() or 1) if self.cuda else 1

    def prepare(self, record: ImageRecord, rgb: np.ndarray) -> _Prepared:
        """Resize to the network's input (in a loader thread); pinned when feeding a GPU."""
        tensor = preprocess(rgb, self.resize)
        if self.cuda:
            tensor = tensor.pin_memory()
        return _Prepared(tensor, (rgb.shape[0], rgb.shape[1]))

    def batch_key(self, prepared: _Prepared) -> Hashable:
        """Images batch together when their resized shapes are equal."""
        return tuple(prepared.tensor.shape)

    @torch.inference_mode()
    def label_maps(self, prepared: list[_Prepared]) -> list[np.ndarray]:
        """One uint8 label map per image, each of its photo's size."""
        if self.cuda:  # copies from the pinned tensors run asynchronously; stacked on the GPU
            batch = torch.stack([p.tensor.to(self.device, non_blocking=True) for p in prepared])
        else:
            batch = torch.stack([p.tensor for p in prepared])
        batch = normalize(batch)
        if self.cuda:
            batch = batch.contiguous(memory_format=torch.channels_last)
        logits = head_logits(self.model, batch)
        pairs = zip(logits, prepared, strict=True)
        return [labels_from_logits(lg, p.size).cpu().numpy() for lg, p in pairs]

    def segment(self, prepared: list[_Prepared], vocs: list[str]) -> list[np.ndarray]:
        """Object masks: the pixels labelled with each image's VOC category."""
        maps = self.label_maps(prepared)
        return [pick_category(m, voc, self.categories) for m, voc in zip(maps, vocs, strict=True)]


class GrabCutSegmenter:
    """OpenCV GrabCut from a centred rectangle; runs in the loader threads, one per core."""

    name = "grabcut"
    batch_size = 1

    def __init__(self, margin: float, iterations: int, max_side: int) -> None:
        self.margin, self.iterations, self.max_side = margin, iterations, max_side
        self.workers = os.cpu_count() or 1

    def prepare(self, record: ImageRecord, rgb: np.ndarray) -> np.ndarray:
        """The mask itself; an empty one (reported as not ok) where GrabCut fails."""
        try:
            return grabcut_mask(rgb, self.margin, self.iterations, self.max_side)
        except cv2.error as exc:
            log.warning("%s: GrabCut failed (%s); empty mask", record.path, exc.msg.strip())
            return np.zeros(rgb.shape[:2], dtype=bool)

    def batch_key(self, prepared: np.ndarray) -> Hashable:
        return None

    def segment(self, prepared: list[np.ndarray], vocs: list[str]) -> list[np.ndarray]:
        return prepared


class ProvidedSegmenter:
    """Masks given by the user under ``<folder>/<synset>/<image_id>.png``, validated."""

    name = "provided"
    batch_size = 1

    def __init__(self, folder: Path) -> None:
        if not Path(folder).is_dir():
            raise DatasetError(
                f"{folder}: folder of provided masks not found (segment.provided_masks; "
                "expected <folder>/<synset>/<image_id>.png)"
            )
        self.folder = Path(folder)
        self.workers = min(4, os.cpu_count() or 1)

    def prepare(self, record: ImageRecord, rgb: np.ndarray) -> np.ndarray:
        """The mask file, which must be binary and of the photo's size (else ImageReadError)."""
        path = self.folder / record.synset / f"{record.image_id}.png"
        return read_mask(path, (rgb.shape[0], rgb.shape[1]))

    def batch_key(self, prepared: np.ndarray) -> Hashable:
        return None

    def segment(self, prepared: list[np.ndarray], vocs: list[str]) -> list[np.ndarray]:
        return prepared


def load_deeplab(method: str, weights: str) -> tuple[nn.Module, tuple[str, ...]]:
    """DeepLabV3 ``method`` with enum ``weights`` or a local checkpoint, and its category names.

    Enum weights come from the torch cache (downloaded when possible, else a WeightsError naming
    the file expected under ``$TORCH_HOME``). A checkpoint may carry the auxiliary head, as
    torchvision's own files do; it is loaded, then dropped with the enum models' too (it only
    helps training).
    """
    if method not in DEEPLAB_METHODS:
        raise ConfigError(f"segment.method: {method!r} is not a DeepLabV3 model")
    if is_checkpoint_path(weights):
        state = load_checkpoint(weights)
        aux = any(key.startswith("aux_classifier.") for key in state)
        model = tvm.get_model(method, weights=None, weights_backbone=None, aux_loss=aux)
        load_state(model, state, weights)
        categories = VOC_CATEGORIES
    else:
        model, member = build_torchvision(method, weights, weights_backbone=None)
        categories = tuple((member.meta if member else {}).get("categories", VOC_CATEGORIES))
    model.aux_classifier = None
    return model.eval(), categories


def build_segmenter(cfg: SegmentConfig) -> Segmenter:
    """The segmenter of ``cfg``, weights loaded once; fails before any output is written."""
    if cfg.method == "grabcut":
        g = cfg.grabcut
        return GrabCutSegmenter(g.margin, g.iterations, g.max_side)
    if cfg.method == "provided":
        if cfg.provided_masks is None:
            raise ConfigError("segment.provided_masks: required when segment.method is 'provided'")
        return ProvidedSegmenter(cfg.provided_masks)
    try:
        device = pick_device(cfg.device)
    except RuntimeError as exc:
        raise ConfigError(f"segment.device: {exc}") from None
    started = time.perf_counter()
    model, categories = load_deeplab(cfg.method, cfg.weights)
    log.info(
        "%s (%s) loaded on %s in %.1f s",
        cfg.method, cfg.weights, device, time.perf_counter() - started,
    )  # fmt: skip
    return DeepLabSegmenter(model, categories, cfg.resize, cfg.batch_size, device, cfg.method)


# --------------------------------------------------------------------------- the run


class ShapeBatcher:
    """Groups items by key into batches of ``batch_size``, holding at most ``max_pending``.

    ``add`` returns the batches that became ready: a full bucket, or the fullest one when too
    many items wait; ``drain`` returns what is left, bucket by bucket.
    """

    def __init__(self, batch_size: int, max_pending: int) -> None:
        self.batch_size = batch_size
        self.max_pending = max(batch_size, max_pending)
        self.buckets: dict[Hashable, list[Any]] = {}
        self.pending = 0

    def add(self, key: Hashable, item: Any) -> list[list[Any]]:
        """Queue ``item`` under ``key``; return any batch to run now."""
        bucket = self.buckets.setdefault(key, [])
        bucket.append(item)
        self.pending += 1
        if len(bucket) >= self.batch_size:
            return [self._pop(key)]
        if self.pending > self.max_pending:
            return [self._pop(max(self.buckets, key=lambda k: len(self.buckets[k])))]
        return []

    def drain(self) -> list[list[Any]]:
        """Every remaining bucket, in the order the buckets were opened."""
        return [self._pop(key) for key in list(self.buckets)]

    def _pop(self, key: Hashable) -> list[Any]:
        batch = self.buckets.pop(key)
        self.pending -= len(batch)
        return batch


def prefetch(
    fn: Callable[[T], R], items: Iterable[T], workers: int, depth: int
) -> Iterator[tuple[T, R | ImageReadError]]:
    """``(item, fn(item))`` in input order, computed up to ``depth`` items ahead in threads.

    An :class:`ImageReadError` raised by ``fn`` is yielded in place of its result; any other
    exception propagates.
    """
    source = iter(items)
    queue: deque[tuple[T, Future[R]]] = deque()
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="bgimpact-load")
    try:
        for item in source:
            queue.append((item, pool.submit(fn, item)))
            if len(queue) >= depth:
                break
        while queue:
            item, future = queue.popleft()
            for nxt in source:
                queue.append((nxt, pool.submit(fn, nxt)))
                break
            try:
                yield item, future.result()
            except ImageReadError as exc:
                yield item, exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _without_path(message: str, path: Path) -> str:
    return message.removeprefix(f"{path}: ")


@dataclass
class SegmentRun:
    """What a run produced: the images table and who failed, with the summary counts."""

    table: pd.DataFrame
    summary: StageSummary
    not_ok: list[tuple[ImageRecord, float]] = field(default_factory=list)
    min_object_fraction: float = 0.0

    def report(self) -> None:
        """List the images whose mask is not ok, the skipped files, then the summary line."""
        for record, fraction in self.not_ok:
            log.warning(
                "mask not ok (object covers %.4f%% < %.4f%% of the image): %s/%s",
                100 * fraction, 100 * self.min_object_fraction, record.synset, record.image_id,
            )  # fmt: skip
        ok = int(self.table["mask_ok"].sum())
        self.summary.report(masks_ok=ok, masks_failed=len(self.not_ok))


def _write_outputs(
    record: ImageRecord,
    rgb: np.ndarray,
    mask: np.ndarray,
    label: int,
    masks: Path,
    overlays: Path,
    min_fraction: float,
) -> dict[str, Any]:
    """Save the mask and the overlay (atomically); the image's row of images.csv."""
    save_mask(mask, masks / record.synset / f"{record.image_id}.png")
    overlay = draw_overlay(rgb, mask)
    save_image(overlay, overlays / record.synset / f"{record.image_id}.jpg", quality=90)
    fraction = object_fraction(mask)
    return {
        "image_id": record.image_id,
        "synset": record.synset,
        "label": label,
        "width": rgb.shape[1],
        "height": rgb.shape[0],
        "object_fraction": fraction,
        "mask_ok": is_mask_ok(fraction, min_fraction),
    }


def run_segmentation(
    records: Sequence[ImageRecord],
    segmenter: Segmenter,
    classes: Mapping[str, ClassConfig],
    masks: Path,
    overlays: Path,
    table: Path,
    min_object_fraction: float,
    progress: bool | None = None,
) -> SegmentRun:
    """Segment every photo; write masks, overlays and ``table`` (sorted by image id).

    Unreadable photos (and invalid provided masks) are reported and skipped; the rest is
    processed. ``progress``: tqdm bar on (True), off (False), or when stderr is a terminal.
    """
    if not records:
        raise DatasetError("no photos to segment: the folders of the classes in params are empty")
    summary = StageSummary("segment")
    rows: list[dict[str, Any]] = []
    writes: deque[Future[dict[str, Any]]] = deque()
    batcher = ShapeBatcher(segmenter.batch_size, max_pending=4 * segmenter.batch_size)
    depth = 2 * segmenter.batch_size + segmenter.workers

    def load(record: ImageRecord) -> tuple[np.ndarray, Any]:
        rgb = read_rgb(record.path)
        return rgb, segmenter.prepare(record, rgb)

    disable = None if progress is None else not progress  # None: on when stderr is a terminal
    bar = tqdm(total=len(records), desc="segment", unit="img", disable=disable, mininterval=0.5)
    writers = min(4, segmenter.workers)
    with (
        bar,
        logging_redirect_tqdm(),
        ThreadPoolExecutor(writers, thread_name_prefix="bgimpact-write") as writer,
    ):

        def run(batch: list[tuple[ImageRecord, np.ndarray, Any]]) -> None:
            found = segmenter.segment(
                [prepared for _, _, prepared in batch],
                [classes[record.synset].voc for record, _, _ in batch],
            )
            for (record, rgb, _), mask in zip(batch, found, strict=True):
                label = classes[record.synset].index
                job = (record, rgb, mask, label, masks, overlays, min_object_fraction)
                writes.append(writer.submit(_write_outputs, *job))
            while len(writes) > 2 * segmenter.batch_size + writers:
                rows.append(writes.popleft().result())
            bar.update(len(batch))

        for record, outcome in prefetch(load, records, segmenter.workers, depth):
            if isinstance(outcome, ImageReadError):
                summary.skip(str(record.path), _without_path(str(outcome), record.path))
                bar.update(1)
                continue
            rgb, prepared = outcome
            for batch in batcher.add(segmenter.batch_key(prepared), (record, rgb, prepared)):
                run(batch)
        for batch in batcher.drain():
            run(batch)
        while writes:
            rows.append(writes.popleft().result())

    if not rows:
        raise DatasetError(f"none of the {len(records)} images could be segmented")
    frame = pd.DataFrame(rows, columns=list(IMAGES_COLUMNS))
    frame = frame.sort_values("image_id", kind="stable").reset_index(drop=True)
    write_csv(frame, table, float_format="%.6f")
    summary.done = len(frame)
    by_id = {r.image_id: r for r in records}
    not_ok = [
        (by_id[row.image_id], float(row.object_fraction))
        for row in frame.itertuples()
        if not row.mask_ok
    ]
    return SegmentRun(frame, summary, not_ok, min_object_fraction)
