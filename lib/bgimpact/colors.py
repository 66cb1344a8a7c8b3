"""Per-class contrast colours: KMeans over a seeded sample of the class's object pixels.

``low`` is the mean of the KMeans centres, ``high`` the centre farthest (Euclidean, RGB) from that
mean (the thesis's definition). Both are rounded to the nearest integer (``numpy.rint``: halves to
even) and clipped to 0..255.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bgimpact.files import DatasetError

log = logging.getLogger("bgimpact")

RGB = tuple[int, int, int]

#: KMeans restarts (fixed, so that results do not depend on the scikit-learn default).
N_INIT = 4


@dataclass(frozen=True)
class ClassColors:
    """The two background colours of one class."""

    low: RGB
    high: RGB
    pixels: int = 0  # object pixels the colours were computed from (0: fallback)
    fallback: bool = False

    def as_json(self) -> dict[str, list[int]]:
        """The ``{"low": [r, g, b], "high": [r, g, b]}`` entry of colors.json."""
        return {"low": list(self.low), "high": list(self.high)}


def _to_rgb(values: np.ndarray) -> RGB:
    r, g, b = (int(v) for v in np.clip(np.rint(values), 0, 255))
    return (r, g, b)


def low_high(centres: np.ndarray) -> tuple[RGB, RGB]:
    """``low`` = mean of the centres; ``high`` = the centre farthest from that mean.

    Centres are ordered lexicographically first, so a tie goes to the smallest (R, G, B) centre
    whatever order KMeans returned them in.
    """
    centres = np.asarray(centres, dtype=np.float64)
    centres = centres[np.lexsort(centres.T[::-1])]
    mean = centres.mean(axis=0)
    dist = np.sqrt(((centres - mean) ** 2).sum(axis=1))
    return _to_rgb(mean), _to_rgb(centres[int(np.argmax(dist))])


def distinct_colors(pixels: np.ndarray) -> np.ndarray:
    """The distinct rows of ``N x 3`` uint8 pixels, sorted by (R, G, B)."""
    p = np.asarray(pixels, dtype=np.uint8).astype(np.uint32)
    packed = np.unique((p[:, 0] << 16) | (p[:, 1] << 8) | p[:, 2])
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1)


def kmeans_centres(pixels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """KMeans centres of ``N x 3`` RGB pixels (k-means++, ``N_INIT`` restarts, seeded).

    With ``k`` or fewer distinct colours, those colours are the centres (KMeans could only
    duplicate them). KMeans runs on one thread: the result then does not depend on the
    machine's core count, and on a busy machine it is several times faster than OpenMP's.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != 3 or len(pixels) == 0:
        raise ValueError(f"pixels must be a non-empty N x 3 array, got {pixels.shape}")
    distinct = distinct_colors(pixels)
    if len(distinct) <= k:
        return distinct.astype(np.float64)
    # Imported here: scikit-learn takes seconds to load and only the colors stage needs it.
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    model = KMeans(n_clusters=k, init="k-means++", n_init=N_INIT, random_state=seed)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(pixels.astype(np.float64))
    return model.cluster_centers_


def class_colors(pixels: np.ndarray, k: int, seed: int) -> ClassColors:
    """The low/high colours of one class from its (sampled) object pixels."""
    low, high = low_high(kmeans_centres(pixels, k, seed))
    return ClassColors(low, high, pixels=len(pixels))


class PixelSample:
    """A uniform sample without replacement of at most ``size`` pixels from many images.

    Every pixel gets a random key from a generator seeded by ``(seed, image id)``; the sample is
    the ``size`` pixels with the smallest keys, in key order. The result is therefore the same
    whatever order (or thread) the images are added in; :meth:`add` is thread-safe.
    """

    def __init__(self, size: int, seed: int) -> None:
        if size < 1:
            raise ValueError(f"sample size must be at least 1, got {size}")
        self.size = size
        self.seed = seed
        self.seen = 0
        self._keys = np.empty(0, dtype=np.float64)
        self._pixels = np.empty((0, 3), dtype=np.uint8)
        self._lock = threading.Lock()

    def add(self, image_id: str, pixels: np.ndarray) -> None:
        """Offer the ``N x 3`` object pixels of one image."""
        pixels = np.asarray(pixels, dtype=np.uint8).reshape(-1, 3)
        if not len(pixels):
            return
        rng = np.random.default_rng([self.seed, zlib.crc32(image_id.encode("utf-8"))])
        keys = rng.random(len(pixels))
        count = len(pixels)
        keys, pixels = self._smallest(keys, pixels)  # only these can enter the sample
        with self._lock:
            self.seen += count
            keys, pixels = self._smallest(
                np.concatenate([self._keys, keys]), np.concatenate([self._pixels, pixels])
            )
            self._keys, self._pixels = keys, pixels

    def _smallest(self, keys: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(keys) <= self.size:
            return keys, pixels
        part = np.argpartition(keys, self.size - 1)[: self.size]
        return keys[part], pixels[part]

    @property
    def pixels(self) -> np.ndarray:
        """The sampled pixels, ``M x 3`` uint8, ordered by key (M <= size)."""
        return self._pixels[np.argsort(self._keys, kind="stable")]


def colors_from_samples(
    samples: Mapping[str, PixelSample | None],
    k: int,
    seed: int,
    fallback_low: RGB,
    fallback_high: RGB,
) -> dict[str, ClassColors]:
    """Colours per synset; a class without object pixels gets the fallback and a warning."""
    result: dict[str, ClassColors] = {}
    for synset in sorted(samples):
        sample = samples[synset]
        if sample is None or sample.seen == 0:
            log.warning(
                "colors: class %s has no object pixels (no image with mask_ok and a non-empty "
                "mask); using the fallback colours low=%s high=%s",
                synset, list(fallback_low), list(fallback_high),
            )  # fmt: skip
            result[synset] = ClassColors(tuple(fallback_low), tuple(fallback_high), 0, True)
        else:
            result[synset] = class_colors(sample.pixels, k, seed)
    return result


def colors_json(colors: Mapping[str, ClassColors]) -> str:
    """colors.json text: per synset ``{"low": [r, g, b], "high": [r, g, b]}``, one class a
    line, sorted by synset (same colours, same bytes)."""
    lines = [f"  {json.dumps(s)}: {json.dumps(colors[s].as_json())}" for s in sorted(colors)]
    return "{\n" + ",\n".join(lines) + "\n}\n" if lines else "{}\n"


def read_colors(path: str | Path) -> dict[str, ClassColors]:
    """Read colors.json, checking every entry; errors name the file and the synset."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: colours file not found (run the colors stage)") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable colours file ({exc})") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping synset -> {{low, high}}")
    result: dict[str, ClassColors] = {}
    for synset, entry in data.items():
        try:
            low, high = (_checked_rgb(entry[name]) for name in ("low", "high"))
        except (KeyError, TypeError, ValueError):
            raise DatasetError(
                f'{path}: entry {synset!r} must be {{"low": [r, g, b], "high": [r, g, b]}} '
                "with integers 0..255"
            ) from None
        result[synset] = ClassColors(low, high)
    return result


def _checked_rgb(value: object) -> RGB:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255 for v in value)
    ):
        raise ValueError(value)
    return (value[0], value[1], value[2])
