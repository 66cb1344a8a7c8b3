"""File I/O at the edges: atomic writes, robust image decoding, masks, dataset discovery."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})


class ImageReadError(ValueError):
    """A file is not a readable image; the message names the file and the problem."""


class DatasetError(ValueError):
    """The input folder does not follow ``<root>/<synset>/<image>``."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only if the block succeeds.

    A reader never sees a half-written file, and an exception leaves any previous ``path`` intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_image(image: Image.Image | np.ndarray, path: str | Path, **save_kwargs) -> None:
    """Write an image atomically; the format follows the suffix (PNG lossless, JPEG for people)."""
    path = Path(path)
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unsupported output format {path.suffix!r}")
    with atomic_write(path) as handle:
        image.save(handle, format=fmt, **save_kwargs)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F) to 8-bit RGB."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(np.rint(arr / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)).convert(
            "RGB"
        )
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        # Transparent areas become white, as a viewer would show them on a page.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to an ``H x W x 3`` uint8 RGB array, EXIF orientation applied.

    Raises :class:`ImageReadError` naming the file for empty, truncated or non-image files.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            return np.asarray(_to_rgb(image), dtype=np.uint8).copy()
    except ImageReadError:
        raise
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: no such file") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from exc


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a mask PNG as a boolean ``H x W`` array (object = True).

    The file must be single-channel and binary (only 0 and 255); with ``shape`` given it must
    also have that height and width. Errors name the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: mask not found")
    try:
        with Image.open(path) as image:
            image.load()
            arr = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable mask ({exc})") from exc
    if arr.ndim == 3:
        if not (arr == arr[..., :1]).all():
            raise ImageReadError(f"{path}: mask must be single-channel, got {image.mode}")
        arr = arr[..., 0]
    values = np.unique(arr)
    if not set(values.tolist()) <= {0, 255}:
        raise ImageReadError(f"{path}: mask must be binary (0/255), found values {values[:6]}")
    if shape is not None and arr.shape != tuple(shape):
        raise ImageReadError(
            f"{path}: mask is {arr.shape[1]}x{arr.shape[0]} but its image is {shape[1]}x{shape[0]}"
        )
    return arr == 255


def save_mask(mask: np.ndarray, path: str | Path) -> None:
    """Write a boolean mask as an 8-bit single-channel PNG (255 = object, 0 = background)."""
    save_image(Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L"), path)


@dataclass(frozen=True, order=True)
class ImageRecord:
    """One input photo: ``<root>/<synset>/<image_id><suffix>``."""

    image_id: str
    synset: str
    path: Path


def discover_images(root: str | Path, synsets: list[str] | None = None) -> list[ImageRecord]:
    """List the photos under ``root/<synset>/`` sorted by image id.

    Only folders named in ``synsets`` are read when it is given (a missing one is an error);
    image ids (file stems) must be unique across the dataset.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: image folder not found (expected {root}/<synset>/<image>)")
    if synsets is None:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    else:
        folders = [root / s for s in synsets]
        missing = [str(f) for f in folders if not f.is_dir()]
        if missing:
            raise DatasetError(f"class folder(s) not found: {', '.join(missing)}")
    records: list[ImageRecord] = []
    seen: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if path.name.startswith("."):
                continue
            if path.stem in seen:
                raise DatasetError(
                    f"{path}: image id {path.stem!r} is not unique (also {seen[path.stem]})"
                )
            seen[path.stem] = path
            records.append(ImageRecord(path.stem, folder.name, path))
    return sorted(records)
