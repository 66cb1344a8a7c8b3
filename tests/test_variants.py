"""Exact pixel tests of the variant functions on small hand-made arrays."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from bgimpact import variants as var

# A 4 x 5 image whose every pixel is distinct (so a pixel from the wrong place shows), an
# L-shaped object touching the right border, and a scene of distinct pixels too.
IMAGE = (np.arange(4 * 5 * 3).reshape(4, 5, 3) * 4 + 3).astype(np.uint8)
MASK = np.array(
    [
        [0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1],
        [0, 1, 0, 0, 1],
        [0, 0, 0, 0, 1],
    ],
    dtype=bool,
)
SCENE = (255 - np.arange(4 * 5 * 3).reshape(4, 5, 3) * 2).astype(np.uint8)


def expected(object_pixel, background_pixel) -> np.ndarray:
    """The variant by explicit per-pixel rule (independent of the implementation)."""
    out = np.zeros_like(IMAGE)
    for y in range(4):
        for x in range(5):
            out[y, x] = object_pixel(y, x) if MASK[y, x] else background_pixel(y, x)
    return out


def test_no_bg_keeps_object_and_blacks_background() -> None:
    out = var.remove_background(IMAGE, MASK)
    np.testing.assert_array_equal(out, expected(lambda y, x: IMAGE[y, x], lambda y, x: 0))
    assert out.dtype == np.uint8 and out.shape == IMAGE.shape
    # border pixels: object on the right edge kept, background corner and hole black
    assert out[3, 4].tolist() == IMAGE[3, 4].tolist()
    assert out[0, 0].tolist() == [0, 0, 0] and out[2, 2].tolist() == [0, 0, 0]


def test_no_fg_keeps_background_and_blacks_object() -> None:
    out = var.remove_foreground(IMAGE, MASK)
    np.testing.assert_array_equal(out, expected(lambda y, x: 0, lambda y, x: IMAGE[y, x]))
    assert out[1, 1].tolist() == [0, 0, 0] and out[3, 4].tolist() == [0, 0, 0]
    assert out[2, 2].tolist() == IMAGE[2, 2].tolist()  # the hole inside the L is background


def test_fill_background_uses_the_colour_exactly() -> None:
    out = var.fill_background(IMAGE, MASK, (250, 0, 7))
    np.testing.assert_array_equal(out, expected(lambda y, x: IMAGE[y, x], lambda y, x: (250, 0, 7)))


def test_composite_takes_background_from_the_scene() -> None:
    out = var.composite(IMAGE, MASK, SCENE)
    np.testing.assert_array_equal(out, expected(lambda y, x: IMAGE[y, x], lambda y, x: SCENE[y, x]))


def test_variants_do_not_modify_their_inputs() -> None:
    image, mask, scene = IMAGE.copy(), MASK.copy(), SCENE.copy()
    var.remove_background(image, mask)
    var.remove_foreground(image, mask)
    var.composite(image, mask, scene)
    assert (image == IMAGE).all() and (mask == MASK).all() and (scene == SCENE).all()


def test_object_pixels_that_are_black_stay_object() -> None:
    image = IMAGE.copy()
    image[1, 1] = (0, 0, 0)
    out = var.fill_background(image, MASK, (9, 9, 9))
    assert out[1, 1].tolist() == [0, 0, 0] and out[0, 0].tolist() == [9, 9, 9]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: var.remove_background(IMAGE, MASK[:3]), "mask must be a boolean 4x5"),
        (lambda: var.remove_background(IMAGE, MASK.astype(np.uint8)), "mask must be a boolean"),
        (lambda: var.remove_background(IMAGE[..., 0], MASK), "image must be H x W x 3 uint8"),
        (lambda: var.composite(IMAGE, MASK, SCENE[:3]), "background must be"),
        (lambda: var.fill_background(IMAGE, MASK, (256, 0, 0)), "0..255"),
        (lambda: var.fill_background(IMAGE, MASK, (1.5, 0, 0)), "three integers"),
        (lambda: var.fit_scene(SCENE, (3, 3), "zoom"), "unknown scene fit 'zoom'"),
    ],
)
def test_bad_arguments_are_rejected(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------ scene fitting


def two_colour_scene() -> np.ndarray:
    """2 x 4: left half red, right half blue."""
    scene = np.zeros((2, 4, 3), np.uint8)
    scene[:, :2] = (255, 0, 0)
    scene[:, 2:] = (0, 0, 255)
    return scene


def test_stretch_resizes_the_whole_scene() -> None:
    # Same width, three times the height: every column keeps its colour exactly.
    out = var.fit_scene(two_colour_scene(), (6, 4), "stretch")
    assert out.shape == (6, 4, 3)
    assert (out[:, :2] == (255, 0, 0)).all() and (out[:, 2:] == (0, 0, 255)).all()


def test_stretch_is_pil_lanczos_resize_to_w_h() -> None:
    """The thesis: ``scene.resize((W, H), Image.LANCZOS)``, aspect ratio not kept."""
    rng = np.random.default_rng(1)
    scene = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    out = var.fit_scene(scene, (17, 11), "stretch")
    ref = np.asarray(Image.fromarray(scene).resize((11, 17), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(out, ref)


def test_cover_crops_the_centre_of_a_wide_scene() -> None:
    # 2 x 8 scene, column x has red 30 * x; a 2 x 2 image needs no scaling (scale = 1), so
    # cover takes the centre columns 3 and 4 unchanged, where stretch squeezes all 8.
    scene = np.zeros((2, 8, 3), np.uint8)
    scene[..., 0] = np.arange(8) * 30
    scene[..., 1] = 7
    out = var.fit_scene(scene, (2, 2), "cover")
    assert out[..., 0].tolist() == [[90, 120], [90, 120]]
    assert (out[..., 1] == 7).all() and (out[..., 2] == 0).all()
    assert not np.array_equal(var.fit_scene(scene, (2, 2), "stretch"), out)


def test_cover_crops_the_centre_of_a_tall_scene() -> None:
    scene = np.zeros((8, 2, 3), np.uint8)
    scene[..., 2] = (np.arange(8) * 30)[:, None]
    out = var.fit_scene(scene, (2, 2), "cover")
    assert out[..., 2].tolist() == [[90, 90], [120, 120]]


def test_cover_box_keeps_the_aspect_ratio() -> None:
    assert var.cover_box((8, 2), (2, 2)) == (3.0, 0.0, 5.0, 2.0)
    assert var.cover_box((400, 300), (300, 400)) == (87.5, 0.0, 312.5, 300.0)  # 225 x 300 = 3:4
    assert var.cover_box((500, 375), (1000, 750)) == (0.0, 0.0, 500.0, 375.0)  # same shape


@pytest.mark.parametrize("fit", ["stretch", "cover"])
@pytest.mark.parametrize("size", [(13, 3), (2, 9), (5, 7), (40, 60)])
def test_a_uniform_scene_stays_uniform_at_any_size(fit, size) -> None:
    scene = np.full((5, 7, 3), (10, 200, 30), np.uint8)
    out = var.fit_scene(scene, size, fit)
    assert out.shape == (*size, 3)
    assert (out == (10, 200, 30)).all()


@pytest.mark.parametrize("fit", ["stretch", "cover"])
def test_a_scene_of_the_image_size_is_used_as_is(fit) -> None:
    np.testing.assert_array_equal(var.fit_scene(SCENE, (4, 5), fit), SCENE)


def test_scenic_keeps_object_pixels_at_their_place() -> None:
    fitter = var.SceneFitter({"red": two_colour_scene()}, "stretch")
    image = np.full((6, 4, 3), 77, np.uint8)
    mask = np.zeros((6, 4), bool)
    mask[2:4, 1:3] = True  # a 2 x 2 object across the red/blue boundary of the scene
    out = fitter.composite("red", image, mask)
    assert (out[2:4, 1:3] == 77).all()
    bg = ~mask
    assert (out[:, :2][bg[:, :2]] == (255, 0, 0)).all()
    assert (out[:, 2:][bg[:, 2:]] == (0, 0, 255)).all()


def test_scene_fitter_resizes_once_per_size() -> None:
    fitter = var.SceneFitter({"a": SCENE, "b": SCENE[::-1].copy()}, "stretch")
    for size in [(6, 4), (6, 4), (3, 9), (6, 4), (3, 9)]:
        for name in ("a", "b"):
            out = fitter.get(name, size)
            assert out.shape == (*size, 3) and not out.flags.writeable
    assert fitter.resizes == 4  # 2 scenes x 2 sizes
    np.testing.assert_array_equal(fitter.get("b", (3, 9)), var.fit_scene(SCENE[::-1], (3, 9)))


def test_scene_fitter_drops_least_recently_used_sizes() -> None:
    fitter = var.SceneFitter({"a": SCENE}, "cover", capacity=2)
    for size in [(6, 4), (3, 9), (6, 4), (7, 7), (6, 4), (3, 9)]:
        fitter.get("a", size)
    # (3, 9) was dropped when (7, 7) came (least recently used), so it is resized again.
    assert fitter.resizes == 4


def test_scene_fitter_is_thread_safe_and_resizes_once() -> None:
    fitter = var.SceneFitter({"a": np.full((300, 400, 3), 5, np.uint8)}, "stretch")
    results = []

    def get() -> None:
        results.append(fitter.get("a", (120, 90)))

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fitter.resizes == 1
    assert all(r is results[0] for r in results)
