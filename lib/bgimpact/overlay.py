"""Masks drawn over their photos, for a person to judge the segmentation at a glance."""

from __future__ import annotations

import cv2
import numpy as np

#: Tint and outline colour of the object (magenta: rare in animal photos and their scenes).
OVERLAY_COLOR: tuple[int, int, int] = (255, 0, 255)
#: Weight of the tint in the object's pixels (the photo keeps ``1 - alpha``).
OVERLAY_ALPHA = 0.4


def outline_thickness(height: int, width: int) -> int:
    """Outline width in pixels: 1 px per 250 px of the longer side, at least 1."""
    return max(1, round(max(height, width) / 250))


def draw_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = OVERLAY_COLOR,
    alpha: float = OVERLAY_ALPHA,
    thickness: int | None = None,
) -> np.ndarray:
    """The photo with the object tinted by ``color`` and outlined; background pixels unchanged.

    ``image`` is ``H x W x 3`` uint8 RGB and ``mask`` a boolean ``H x W`` array (True = object).
    Object pixels become ``round((1 - alpha) * pixel + alpha * color)``; the outline (``thickness``
    pixels, centred on the object's border pixels, so it may reach ``thickness // 2`` pixels into
    the background) is drawn in ``color``. Returns a new array of the image's shape.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask is {mask.shape} but the image is {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = image.copy()
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        return out
    tint = np.asarray(color, dtype=np.float32)
    blended = (1.0 - alpha) * image[mask].astype(np.float32) + alpha * tint
    out[mask] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    if thickness is None:
        thickness = outline_thickness(*mask.shape)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), thickness)
    return out
