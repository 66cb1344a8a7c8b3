"""Background variants as pure array functions: arrays in, new arrays out, inputs never modified.

Images are ``H x W x 3`` uint8 RGB arrays, masks ``H x W`` boolean arrays (True = object).
Every variant keeps the object pixels exactly as they are, at their place and size, and replaces
only the background (or, for ``no_fg``, only the object).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from PIL import Image

Fit = Literal["stretch", "cover"]
FITS: tuple[str, ...] = ("stretch", "cover")

#: Resampling filter for scenes (the thesis: ``PIL.Image.resize(..., Image.LANCZOS)``).
SCENE_RESAMPLE = Image.Resampling.LANCZOS


def _check(image: np.ndarray, mask: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2] or mask.dtype != np.bool_:
        raise ValueError(
            f"mask must be a boolean {image.shape[0]}x{image.shape[1]} array, "
            f"got {mask.shape} {mask.dtype}"
        )


def _rgb(color: Sequence[int]) -> np.ndarray:
    rgb = np.asarray(color)
    if rgb.shape != (3,) or not np.issubdtype(rgb.dtype, np.integer):
        raise ValueError(f"colour must be three integers, got {color!r}")
    if rgb.min() < 0 or rgb.max() > 255:
        raise ValueError(f"colour values must be in 0..255, got {color!r}")
    return rgb.astype(np.uint8)


def composite(image: np.ndarray, mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    """The object pixels of ``image`` over ``background`` (an image of the same size)."""
    _check(image, mask)
    if background.shape != image.shape or background.dtype != np.uint8:
        raise ValueError(
            f"background must be {image.shape} uint8 like its image, "
            f"got {background.shape} {background.dtype}"
        )
    return np.where(mask[..., None], image, background)


def fill_background(image: np.ndarray, mask: np.ndarray, color: Sequence[int]) -> np.ndarray:
    """Object pixels unchanged, every background pixel set to ``color`` (RGB 0..255)."""
    _check(image, mask)
    return np.where(mask[..., None], image, _rgb(color))


def remove_background(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Variant ``no_bg``: object pixels unchanged, background (0, 0, 0)."""
    _check(image, mask)
    return image * mask[..., None]  # x * True = x, x * False = 0 (uint8), faster than where


def remove_foreground(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Variant ``no_fg``: background pixels unchanged, object (0, 0, 0)."""
    _check(image, mask)
    return image * ~mask[..., None]


def cover_box(scene_size: tuple[int, int], size: tuple[int, int]) -> tuple[float, ...]:
    """The centred region ``(left, top, right, bottom)`` of a ``scene_size = (w, h)`` scene that,
    scaled to ``size = (w, h)`` with its aspect ratio kept, covers it exactly."""
    sw, sh = scene_size
    w, h = size
    if sw * h > w * sh:  # scene is wider than the target: crop its sides
        cw = sh * w / h
        return ((sw - cw) / 2, 0.0, (sw + cw) / 2, float(sh))
    ch = sw * h / w  # scene is taller (or the same shape): crop top and bottom
    return (0.0, (sh - ch) / 2, float(sw), (sh + ch) / 2)


def fit_scene(scene: np.ndarray, size: tuple[int, int], fit: Fit = "stretch") -> np.ndarray:
    """The scene resized to ``size = (height, width)`` with Lanczos.

    ``stretch`` resizes the whole scene to W x H (the thesis); ``cover`` keeps its aspect ratio,
    scaling it until it covers W x H and cropping the overflow equally on both sides (one
    resampling of the cropped region, no intermediate rounding).
    """
    h, w = size
    if h < 1 or w < 1:
        raise ValueError(f"target size must be positive, got {h}x{w}")
    if scene.ndim != 3 or scene.shape[2] != 3 or scene.dtype != np.uint8:
        raise ValueError(f"scene must be H x W x 3 uint8, got {scene.shape} {scene.dtype}")
    pil = Image.fromarray(scene)
    if fit == "stretch":
        box = None
    elif fit == "cover":
        box = cover_box(pil.size, (w, h))
    else:
        raise ValueError(f"unknown scene fit {fit!r} (choose from {', '.join(FITS)})")
    if box is None and pil.size == (w, h):
        return scene.copy()
    return np.asarray(pil.resize((w, h), SCENE_RESAMPLE, box=box))


class SceneFitter:
    """Decoded scenes, each fitted to an image size at most once while that size stays cached.

    Thread-safe: concurrent requests for the same (scene, size) wait for one resize. Up to
    ``capacity`` fitted scenes are kept (least recently used dropped), so processing images
    grouped by size resizes each scene once per distinct size with bounded memory.
    """

    def __init__(self, scenes: Mapping[str, np.ndarray], fit: Fit, capacity: int = 64) -> None:
        if fit not in FITS:
            raise ValueError(f"unknown scene fit {fit!r} (choose from {', '.join(FITS)})")
        self.scenes = dict(scenes)
        self.fit: Fit = fit
        self.capacity = max(1, capacity)
        self.resizes = 0
        self._cache: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._pending: dict[tuple[str, int, int], threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, scene: str, size: tuple[int, int]) -> np.ndarray:
        """Scene ``scene`` fitted to ``size = (height, width)`` (read-only array, shared)."""
        key = (scene, int(size[0]), int(size[1]))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            key_lock = self._pending.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
            fitted = fit_scene(self.scenes[scene], key[1:], self.fit)
            fitted.setflags(write=False)
            with self._lock:
                self.resizes += 1
                self._cache[key] = fitted
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
                self._pending.pop(key, None)
            return fitted

    def composite(self, scene: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Scenic variant: the object of ``image`` over ``scene`` fitted to the image's size."""
        return composite(image, mask, self.get(scene, image.shape[:2]))
