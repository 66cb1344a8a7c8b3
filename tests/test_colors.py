"""Class colours: KMeans centres, low/high, seeded sampling, fallback, colors.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from bgimpact.colors import (
    ClassColors,
    PixelSample,
    class_colors,
    colors_from_samples,
    colors_json,
    distinct_colors,
    kmeans_centres,
    low_high,
    read_colors,
)
from bgimpact.files import DatasetError


def test_object_pixels_of_an_image_with_two_known_colours() -> None:
    """Object one colour, background another: the background never enters the colours."""
    image = np.zeros((10, 10, 3), np.uint8)
    image[:] = (0, 0, 255)
    mask = np.zeros((10, 10), bool)
    mask[2:6, 3:8] = True
    image[mask] = (200, 0, 0)  # a 0 channel: a non-black test would still keep it, see below
    colors = class_colors(image[mask], k=5, seed=0)
    assert (colors.low, colors.high) == ((200, 0, 0), (200, 0, 0))
    assert colors.pixels == 20


def test_black_object_pixels_count() -> None:
    """Object pixels come from the mask: black ones count (the thesis dropped them)."""
    pixels = np.array([(0, 0, 0)] * 5 + [(0, 0, 30)] * 5 + [(240, 240, 240)] * 5, np.uint8)
    colors = class_colors(pixels, k=3, seed=0)
    # centres are the three colours; mean (80, 80, 90); distances 144.2, 128.1, 271.3
    assert colors.low == (80, 80, 90)
    assert colors.high == (240, 240, 240)


def test_kmeans_finds_three_known_clusters() -> None:
    """More distinct colours than k: real KMeans, symmetric clusters with exact means."""
    centres = np.array([(20, 40, 60), (200, 30, 30), (90, 220, 130)])
    offsets = np.array([(d0, d1, d2) for d0 in (-3, 3) for d1 in (-2, 2) for d2 in (-1, 1)])
    pixels = np.concatenate([c + offsets for c in centres for _ in range(10)]).astype(np.uint8)
    found = kmeans_centres(pixels, k=3, seed=0)
    np.testing.assert_allclose(found[np.lexsort(found.T[::-1])], centres[[0, 2, 1]])
    colors = class_colors(pixels, k=3, seed=0)
    # mean (103.33, 96.67, 73.33) -> (103, 97, 73); farthest centre (90, 220, 130): 136.4
    assert colors.low == (103, 97, 73)
    assert colors.high == (90, 220, 130)


def test_low_high_rounding_and_ties() -> None:
    # mean (125, 50.5, 0.5) rounds half to even: (125, 50, 0)
    low, high = low_high(np.array([(250.0, 101.0, 1.0), (0.0, 0.0, 0.0)]))
    assert low == (125, 50, 0)
    assert high == (0, 0, 0)  # both equally far: the smallest (R, G, B) wins
    assert low_high(np.array([(0.0, 0.0, 0.0), (250.0, 101.0, 1.0)])) == (low, high)


def test_kmeans_is_seeded() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
    a = kmeans_centres(pixels, 5, seed=0)
    np.testing.assert_array_equal(a, kmeans_centres(pixels, 5, seed=0))
    assert a.shape == (5, 3)


def test_distinct_colors_sorted() -> None:
    pixels = np.array([(3, 2, 1), (0, 0, 9), (3, 2, 1), (0, 1, 0)], np.uint8)
    assert distinct_colors(pixels).tolist() == [[0, 0, 9], [0, 1, 0], [3, 2, 1]]


def image_pixels(value: int, n: int) -> np.ndarray:
    return np.stack([np.full(n, value), np.arange(n) % 256, np.arange(n) // 256], 1).astype(
        np.uint8
    )


def test_sample_is_bounded_and_independent_of_order() -> None:
    images = {f"img{i}": image_pixels(i, 500 + 37 * i) for i in range(6)}
    a, b = PixelSample(1000, seed=4), PixelSample(1000, seed=4)
    for name in images:
        a.add(name, images[name])
    for name in reversed(list(images)):
        b.add(name, images[name])
    assert a.seen == sum(len(p) for p in images.values())
    assert a.pixels.shape == (1000, 3)
    np.testing.assert_array_equal(a.pixels, b.pixels)
    # every image is represented, as a uniform sample of 1000 out of 3555 would be
    assert set(a.pixels[:, 0].tolist()) == set(range(6))
    other = PixelSample(1000, seed=5)
    for name in images:
        other.add(name, images[name])
    assert not np.array_equal(other.pixels, a.pixels)


def test_sample_keeps_everything_below_its_size() -> None:
    sample = PixelSample(10_000, seed=0)
    sample.add("a", image_pixels(1, 300))
    sample.add("b", image_pixels(2, 200))
    pixels = sample.pixels
    assert len(pixels) == 500
    assert sorted(map(tuple, pixels.tolist())) == sorted(
        map(tuple, np.concatenate([image_pixels(1, 300), image_pixels(2, 200)]).tolist())
    )


def test_class_without_pixels_gets_fallback_with_warning(caplog) -> None:
    full = PixelSample(100, seed=0)
    full.add("x", np.array([(10, 20, 30)] * 4, np.uint8))
    empty = PixelSample(100, seed=0)
    empty.add("y", np.zeros((0, 3), np.uint8))
    with caplog.at_level(logging.WARNING, logger="bgimpact"):
        colors = colors_from_samples(
            {"n00000002": empty, "n00000001": full, "n00000003": None},
            k=5, seed=0, fallback_low=(128, 128, 128), fallback_high=(255, 0, 255),
        )  # fmt: skip
    assert colors["n00000001"] == ClassColors((10, 20, 30), (10, 20, 30), 4, False)
    for synset in ("n00000002", "n00000003"):
        assert colors[synset] == ClassColors((128, 128, 128), (255, 0, 255), 0, True)
        assert f"class {synset} has no object pixels" in caplog.text


def test_colors_json_round_trip(tmp_path: Path) -> None:
    colors = {
        "n02": ClassColors((1, 2, 3), (4, 5, 6), 10),
        "n01": ClassColors((7, 8, 9), (0, 0, 255), 3),
    }
    text = colors_json(colors)
    assert json.loads(text) == {
        "n01": {"low": [7, 8, 9], "high": [0, 0, 255]},
        "n02": {"low": [1, 2, 3], "high": [4, 5, 6]},
    }
    assert text.index("n01") < text.index("n02") and text.endswith("}\n")
    path = tmp_path / "colors.json"
    path.write_text(text)
    back = read_colors(path)
    assert back["n02"].low == (1, 2, 3) and back["n01"].high == (0, 0, 255)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "colours file not found"),
        ("{", "not a readable colours file"),
        ("[1, 2]", "expected a mapping"),
        ('{"n01": {"low": [1, 2, 3]}}', "entry 'n01' must be"),
        ('{"n01": {"low": [1, 2, 300], "high": [0, 0, 0]}}', "entry 'n01' must be"),
        ('{"n01": {"low": [1, 2.5, 3], "high": [0, 0, 0]}}', "entry 'n01' must be"),
    ],
)
def test_read_colors_errors_name_the_file(tmp_path: Path, content, message) -> None:
    path = tmp_path / "colors.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DatasetError, match=message) as err:
        read_colors(path)
    assert str(path) in str(err.value)
