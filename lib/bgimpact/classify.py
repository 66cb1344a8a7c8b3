"""Classification of every (image, variant): planned, decoded in DataLoader workers, batched
through the model once, and streamed to ``data/predictions/<model>.csv``.

Rows follow CONTRACTS.md (:data:`bgimpact.tables.PREDICTION_COLUMNS`), ordered by image id and
then variant in CONTRACTS order. An image is written with all of its variants or not at all:
images whose variant files are missing are skipped before inference, images with an unreadable
file are skipped when it is met. Rows are written as they are predicted into a temporary file
that replaces the output only at the end, so memory does not grow with the dataset.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf
from tqdm import tqdm

from bgimpact.config import ClassifyConfig, ConfigError, ModelConfig
from bgimpact.files import ImageReadError, atomic_write, discover_images, read_rgb
from bgimpact.models import Classifier, Preprocess, check_output, load_classifier
from bgimpact.runtime import StageSummary, pick_device, usable_cores
from bgimpact.tables import PREDICTION_COLUMNS, read_images_table

TOP_K = 5
#: Probabilities are written with this fixed format (deterministic text, 1e-8 resolution).
PROB_FORMAT = "{:.8f}"

_INTERPOLATION = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


@dataclass(frozen=True)
class ImageItem:
    """One source image to classify with every variant."""

    image_id: str
    synset: str
    label: int
    original: Path


def variant_path(modified: Path, variant: str, item: ImageItem) -> Path:
    """Where variant ``variant`` of ``item`` lives (the original photo for ``original``)."""
    if variant == "original":
        return item.original
    return modified / variant / item.synset / f"{item.image_id}.png"


def select_variants(known: Sequence[str], wanted: Sequence[str] | None) -> tuple[str, ...]:
    """``wanted`` (all when ``None``) in the order of ``known``; unknown names are an error."""
    if wanted is None:
        return tuple(known)
    unknown = [v for v in wanted if v not in known]
    if unknown or not wanted:
        raise ConfigError(
            f"variants: unknown {', '.join(unknown) or '(none given)'} (known: {', '.join(known)})"
        )
    return tuple(v for v in known if v in set(wanted))


def _listing(folder: Path) -> set[str]:
    """File names in ``folder`` (empty when it does not exist)."""
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def plan_items(
    table: pd.DataFrame, images: Path, modified: Path, variants: Sequence[str]
) -> tuple[list[ImageItem], dict[str, str]]:
    """The images of ``table`` whose every variant file exists, sorted by id, and the skipped.

    Returns ``(items, skipped)`` with ``skipped`` mapping image id to the reason (the first
    missing file and the variants missing). Existence is checked by listing each
    ``<variant>/<synset>`` folder once.
    """
    synsets = sorted(set(table["synset"]))
    present = [s for s in synsets if (Path(images) / s).is_dir()]
    originals = {r.image_id: r.path for r in discover_images(images, present)}
    listings: dict[tuple[str, str], set[str]] = {}
    items: list[ImageItem] = []
    skipped: dict[str, str] = {}
    for row in table.sort_values("image_id").itertuples(index=False):
        image_id, synset = str(row.image_id), str(row.synset)
        original = originals.get(image_id)
        if original is None:
            where = Path(images) / synset / f"{image_id}.*"
            skipped[image_id] = f"original not found ({where})"
            continue
        item = ImageItem(image_id, synset, int(row.label), original)
        missing = []
        for variant in variants:
            if variant == "original":
                continue
            key = (variant, synset)
            if key not in listings:
                listings[key] = _listing(Path(modified) / variant / synset)
            if f"{image_id}.png" not in listings[key]:
                missing.append(variant)
        if missing:
            first = variant_path(Path(modified), missing[0], item)
            skipped[image_id] = f"missing variant(s) {', '.join(missing)} (e.g. {first})"
            continue
        items.append(item)
    return items, skipped


def prepare(rgb: np.ndarray, pre: Preprocess) -> torch.Tensor:
    """Resize the shorter side, centre-crop: a ``3 x crop x crop`` uint8 tensor.

    The same operations (PIL, antialiased) as torchvision's ``ImageClassification`` preset, so
    the model sees what its published accuracy was measured with; normalisation is left to
    :func:`normalize`, on the batch, on the device.
    """
    image = Image.fromarray(rgb)
    image = tvf.resize(
        image, [pre.resize], interpolation=_INTERPOLATION[pre.interpolation], antialias=True
    )
    image = tvf.center_crop(image, [pre.crop, pre.crop])
    return tvf.pil_to_tensor(image)


def normalization(pre: Preprocess, device: torch.device | str = "cpu") -> torch.Tensor:
    """``2 x 1 x 3 x 1 x 1``: scale ``1 / (255 std)`` and shift ``mean / std`` for uint8 input."""
    scale = [1.0 / (255.0 * s) for s in pre.std]
    shift = [m / s for m, s in zip(pre.mean, pre.std, strict=True)]
    return torch.tensor([scale, shift], dtype=torch.float32, device=device).view(2, 1, 3, 1, 1)


def normalize(batch: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """uint8 ``N x 3 x H x W`` to float32 ``(x / 255 - mean) / std`` (memory format kept)."""
    return batch.float().mul_(affine[0]).sub_(affine[1])


class VariantDataset(Dataset):
    """Item ``k`` is variant ``k % V`` of image ``k // V``: ``(uint8 tensor, k, error)``.

    An unreadable file gives a zero tensor and the error message instead of raising, so that
    the caller can skip its image as a whole.
    """

    def __init__(
        self, items: Sequence[ImageItem], variants: Sequence[str], modified: Path, pre: Preprocess
    ) -> None:
        self.items = list(items)
        self.variants = tuple(variants)
        self.modified = Path(modified)
        self.pre = pre

    def __len__(self) -> int:
        return len(self.items) * len(self.variants)

    def path(self, index: int) -> Path:
        """File of item ``index``."""
        nv = len(self.variants)
        return variant_path(self.modified, self.variants[index % nv], self.items[index // nv])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        try:
            return prepare(read_rgb(self.path(index)), self.pre), index, ""
        except ImageReadError as exc:
            return torch.zeros(3, self.pre.crop, self.pre.crop, dtype=torch.uint8), index, str(exc)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # workers decode; the main process owns the cores for the model


def make_loader(
    dataset: Dataset, batch_size: int, num_workers: int, pin_memory: bool = False
) -> DataLoader:
    """In-order batches; decoding and resizing run in ``num_workers`` processes."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        worker_init_fn=_worker_init if num_workers else None,
        pin_memory=pin_memory,
    )


#: ``num_workers: auto`` on the CPU: one DataLoader worker per this many cores.
CPU_CORES_PER_WORKER = 8
#: ``num_workers: auto`` on a GPU: at most this many DataLoader workers.
MAX_GPU_WORKERS = 16


def loader_workers(cfg: ClassifyConfig, device: torch.device, cores: int | None = None) -> int:
    """DataLoader worker processes: ``classify.num_workers``, or for ``auto``:

    - CUDA: every core but one (at most :data:`MAX_GPU_WORKERS`), so that decoding keeps up
      with the GPU;
    - CPU: one per :data:`CPU_CORES_PER_WORKER` cores (none below that). The model's threads
      already use every core, so a worker only takes cores from them: on 2 cores,
      EfficientNet-Lite0 ran 1.3x (default allocator) to 2x (tcmalloc) faster with decoding
      in the main process and 2 model threads than with 2 workers and 1 thread.
    """
    if cfg.num_workers != "auto":
        return int(cfg.num_workers)
    cores = cores or usable_cores()
    if device.type == "cuda":
        return max(1, min(MAX_GPU_WORKERS, cores - 1))
    return cores // CPU_CORES_PER_WORKER


def model_threads(cfg: ClassifyConfig, workers: int) -> int:
    """Torch threads for the model: ``classify.threads``, or when 0 the usable cores not
    given to the ``workers`` DataLoader processes, at least 1."""
    if cfg.threads > 0:
        return cfg.threads
    return max(1, usable_cores() - workers)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads, restoring the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Batch:
    """Top-k predictions of one batch (on the CPU)."""

    index: torch.Tensor  #: dataset indices
    top: torch.Tensor  #: ``N x k`` class indices, most probable first
    prob: torch.Tensor  #: ``N x k`` float32 softmax probabilities
    errors: list[str] = field(default_factory=list)  #: "" where the file was read


class Runner:
    """The model on its device with inference settings (channels_last, CUDA autocast)."""

    def __init__(
        self, clf: Classifier, cfg: ClassifyConfig, device: torch.device | None = None
    ) -> None:
        self.clf = clf
        self.device = device if device is not None else pick_device(cfg.device)
        self.channels_last = cfg.channels_last
        memory = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = clf.module.eval().to(self.device, memory_format=memory)
        self.affine = normalization(clf.preprocess, self.device)
        self.amp_dtype: torch.dtype | None = None
        if cfg.amp and self.device.type == "cuda":  # CPU stays fp32: bf16 there is far slower
            bf16 = torch.cuda.is_bf16_supported()
            self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
        self._checked = False

    @torch.inference_mode()
    def inputs(self, batch: torch.Tensor) -> torch.Tensor:
        """A uint8 batch moved to the device, normalised, in the model's memory format."""
        x = batch.to(self.device, non_blocking=True)
        if self.channels_last:  # reorder the uint8 bytes, not the 4x larger floats
            x = x.contiguous(memory_format=torch.channels_last)
        return normalize(x, self.affine)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, k: int = TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k ``(classes, probabilities)`` of normalised inputs; softmax in float32."""
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            logits = self.model(x)
        if not self._checked:
            check_output(self.clf.model_id, logits)
            self._checked = True
        prob, top = logits.float().softmax(dim=1).topk(k, dim=1)
        return top.cpu(), prob.cpu()

    def predict(self, loader: DataLoader) -> Iterator[Batch]:
        """Predictions of every batch of ``loader``, in order."""
        for batch, index, errors in loader:
            top, prob = self.forward(self.inputs(batch))
            yield Batch(index, top, prob, list(errors))


def _row(item: ImageItem, variant: str, model_id: str, top: list[int], prob: list[float]) -> list:
    row: list = [item.image_id, item.synset, item.label, variant, model_id]
    for t, p in zip(top, prob, strict=True):
        row += [t, PROB_FORMAT.format(p)]
    return row


def rows_by_image(
    dataset: VariantDataset, batches: Iterator[Batch], model_id: str
) -> Iterator[tuple[ImageItem, list[list], str]]:
    """Group in-order predictions by image: ``(item, rows, error)``, one per image.

    ``rows`` holds the CSV rows of every variant; when a file of the image could not be read,
    ``error`` is its message and ``rows`` is empty.
    """
    nv = len(dataset.variants)
    current, rows, error = -1, [], ""
    for batch in batches:
        tops, probs = batch.top.tolist(), batch.prob.tolist()
        for j, k in enumerate(batch.index.tolist()):
            if k // nv != current:
                if current >= 0:
                    yield dataset.items[current], [] if error else rows, error
                current, rows, error = k // nv, [], ""
            if batch.errors[j]:
                error = error or batch.errors[j]
            elif not error:
                item, variant = dataset.items[current], dataset.variants[k % nv]
                rows.append(_row(item, variant, model_id, tops[j], probs[j]))
    if current >= 0:
        yield dataset.items[current], [] if error else rows, error


def write_predictions(
    clf: Classifier,
    items: Sequence[ImageItem],
    variants: Sequence[str],
    modified: Path,
    out: Path,
    cfg: ClassifyConfig,
    summary: StageSummary | None = None,
    progress: bool | None = None,
) -> int:
    """Classify every variant of ``items`` and write the predictions CSV at ``out``.

    Rows are streamed to a temporary file renamed over ``out`` at the end. Images with an
    unreadable file are skipped whole (recorded in ``summary``). Returns the number of rows.
    ``progress``: a tqdm bar (``None``: only on a terminal).
    """
    summary = summary if summary is not None else StageSummary("classify")
    dataset = VariantDataset(items, variants, modified, clf.preprocess)
    rows_written = 0
    device = pick_device(cfg.device)
    workers = loader_workers(cfg, device)
    with torch_threads(model_threads(cfg, workers)), atomic_write(out, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(PREDICTION_COLUMNS)
        if not len(dataset):
            return 0
        runner = Runner(clf, cfg, device)
        loader = make_loader(dataset, cfg.batch_size, workers, device.type == "cuda")
        disable = None if progress is None else not progress
        with tqdm(total=len(dataset), unit="img", desc=f"classify {clf.model_id}",
                  disable=disable, mininterval=1.0) as bar:  # fmt: skip
            for item, rows, error in rows_by_image(dataset, runner.predict(loader), clf.model_id):
                if error:
                    summary.skip(item.image_id, error)
                else:
                    writer.writerows(rows)
                    rows_written += len(rows)
                    summary.done += 1
                bar.update(len(dataset.variants))
    return rows_written


def classify(
    model_id: str,
    model_cfg: ModelConfig,
    cfg: ClassifyConfig,
    *,
    table: Path,
    images: Path,
    modified: Path,
    out: Path,
    variants: Sequence[str],
    summary: StageSummary | None = None,
    progress: bool | None = None,
) -> int:
    """The classify stage: load the model (missing weights stop here, before any write), plan
    the images of ``table`` (skipping those with missing variants), write ``out``.

    Returns the number of rows written.
    """
    if cfg.batch_size < 1 or (cfg.num_workers != "auto" and cfg.num_workers < 0):
        raise ConfigError(
            f"classify: batch_size must be >= 1 and num_workers 'auto' or >= 0, got "
            f"{cfg.batch_size} and {cfg.num_workers}"
        )
    clf = load_classifier(model_id, model_cfg)
    frame = read_images_table(table)
    items, skipped = plan_items(frame, images, modified, variants)
    if summary is not None:
        for image_id, reason in skipped.items():
            summary.skip(image_id, reason)
    return write_predictions(clf, items, variants, modified, out, cfg, summary, progress)
