"""files.py: atomic writes, decoding of every image mode, EXIF orientation, mask validation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bgimpact.files import (
    DatasetError,
    ImageReadError,
    atomic_write,
    discover_images,
    read_mask,
    read_rgb,
    save_image,
    save_mask,
)

# ----------------------------------------------------------------------------- atomic writes


def test_atomic_write_keeps_old_file_and_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "table.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="writer failed"), atomic_write(target, "w") as handle:
        handle.write("half a new fi")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_atomic_write_creates_no_file_when_the_first_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "new" / "mask.png"
    with pytest.raises(ValueError), atomic_write(target) as handle:
        handle.write(b"\x89PNG")
        raise ValueError("encoder error")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_atomic_write_replaces_the_file_on_success(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")
    with atomic_write(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_save_image_keeps_the_previous_image_when_encoding_fails(tmp_path: Path) -> None:
    target = tmp_path / "overlay.jpg"
    save_image(np.full((4, 5, 3), 7, np.uint8), target)
    before = target.read_bytes()
    with pytest.raises(OSError, match="cannot write mode"):
        save_image(Image.new("I;16", (5, 4)), target)  # JPEG has no 16-bit mode
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.jpg"]


# ----------------------------------------------------------------------------- read_rgb modes


def _save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    image.save(path, **kwargs)
    return path


def test_read_rgb_grayscale(tmp_path: Path) -> None:
    arr = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    rgb = read_rgb(_save(Image.fromarray(arr, mode="L"), tmp_path / "g.png"))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert (rgb == arr[..., None]).all()


def test_read_rgb_palette(tmp_path: Path) -> None:
    image = Image.new("P", (3, 1))
    image.putpalette([0, 0, 0, 10, 20, 30, 250, 128, 5] + [0] * (256 * 3 - 9))
    image.putdata([1, 2, 0])
    rgb = read_rgb(_save(image, tmp_path / "p.png"))
    assert rgb.tolist() == [[[10, 20, 30], [250, 128, 5], [0, 0, 0]]]


def test_read_rgb_rgba_composites_transparency_on_white(tmp_path: Path) -> None:
    arr = np.array([[[200, 100, 50, 255], [1, 2, 3, 0]]], dtype=np.uint8)
    rgb = read_rgb(_save(Image.fromarray(arr, mode="RGBA"), tmp_path / "a.png"))
    assert rgb.tolist() == [[[200, 100, 50], [255, 255, 255]]]


def test_read_rgb_cmyk_jpeg(tmp_path: Path) -> None:
    # Pure cyan ink on the left half, no ink on the right: cyan (0, 255, 255) and white.
    image = Image.new("CMYK", (16, 16), (0, 0, 0, 0))
    image.paste((255, 0, 0, 0), (0, 0, 8, 16))
    rgb = read_rgb(_save(image, tmp_path / "c.jpg", quality=100))
    assert rgb.shape == (16, 16, 3)
    assert np.abs(rgb[8, 2].astype(int) - (0, 255, 255)).max() <= 3
    assert np.abs(rgb[8, 13].astype(int) - (255, 255, 255)).max() <= 3


def test_read_rgb_16bit_scales_to_8bit(tmp_path: Path) -> None:
    arr = np.array([[0, 25700, 65535]], dtype=np.uint16)  # 25700 = 100 * 257
    path = _save(Image.fromarray(arr), tmp_path / "d.png")
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")  # really a 16-bit file
    rgb = read_rgb(path)
    assert rgb[..., 0].tolist() == [[0, 100, 255]]
    assert (rgb == rgb[..., :1]).all()


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_read_rgb_applies_exif_orientation(tmp_path: Path, suffix: str) -> None:
    # Stored 12 wide x 8 high, red block in the stored top-left corner. Orientation 6: the
    # stored top row is the visual right column, so it shows 8 wide x 12 high, red top-right.
    arr = np.zeros((8, 12, 3), dtype=np.uint8)
    arr[:4, :4] = (255, 0, 0)
    image = Image.fromarray(arr)
    exif = image.getexif()
    exif[0x0112] = 6
    rgb = read_rgb(_save(image, tmp_path / f"r{suffix}", exif=exif, quality=100))
    assert rgb.shape == (12, 8, 3)
    assert rgb[1, 6, 0] > 200 and rgb[1, 6, 1] < 60  # red top-right
    assert rgb[1, 1].max() < 60 and rgb[10, 6].max() < 60  # dark elsewhere


def test_read_rgb_plain_rgb_is_unchanged(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 9
    assert (read_rgb(_save(Image.fromarray(arr), tmp_path / "x.png")) == arr).all()


# ----------------------------------------------------------------------------- read_rgb errors


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_read_rgb_empty_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.jpg: empty file"):
        read_rgb(path)


def test_read_rgb_truncated_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(_jpeg_bytes()[:600])
    with pytest.raises(ImageReadError, match=r"cut\.jpg: not a readable image"):
        read_rgb(path)


def test_read_rgb_text_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageReadError, match=r"notes\.png: not a readable image"):
        read_rgb(path)


def test_read_rgb_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"gone\.jpg: no such file"):
        read_rgb(tmp_path / "gone.jpg")


# ----------------------------------------------------------------------------- masks


def test_mask_roundtrip_is_binary_single_channel(tmp_path: Path) -> None:
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 1:3] = True
    save_mask(mask, tmp_path / "m.png")
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "L"
        assert sorted(np.unique(np.asarray(image)).tolist()) == [0, 255]
    assert (read_mask(tmp_path / "m.png", (3, 4)) == mask).all()


def test_read_mask_accepts_a_grey_rgb_mask(tmp_path: Path) -> None:
    arr = np.zeros((2, 2, 3), dtype=np.uint8)
    arr[0, 0] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[True, False], [False, False]]


def test_read_mask_rejects_non_binary_values(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 128], [255, 0]], dtype=np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(ImageReadError, match=r"m\.png: mask must be binary"):
        read_mask(tmp_path / "m.png")


def test_read_mask_rejects_a_wrong_size(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((2, 3), dtype=np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(ImageReadError, match=r"m\.png: mask is 3x2 but its image is 4x5"):
        read_mask(tmp_path / "m.png", (5, 4))


def test_read_mask_rejects_colour(tmp_path: Path) -> None:
    arr = np.zeros((2, 2, 3), dtype=np.uint8)
    arr[0, 0] = (255, 0, 0)
    Image.fromarray(arr).save(tmp_path / "m.png")
    with pytest.raises(ImageReadError, match="single-channel"):
        read_mask(tmp_path / "m.png")


def test_read_mask_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"none\.png: mask not found"):
        read_mask(tmp_path / "none.png")
    (tmp_path / "bad.png").write_text("nope")
    with pytest.raises(ImageReadError, match=r"bad\.png: not a readable mask"):
        read_mask(tmp_path / "bad.png")


# ----------------------------------------------------------------------------- discovery


def test_discover_images_reads_only_listed_synsets(tmp_path: Path) -> None:
    for synset, names in {"n00000001": ["b.jpg", "a.PNG", ".hidden.jpg", "notes.txt"],
                          "n00000002": ["c.JPEG"], "n00000003": ["z.jpg"]}.items():  # fmt: skip
        (tmp_path / synset).mkdir()
        for name in names:
            (tmp_path / synset / name).write_bytes(b"x")
    records = discover_images(tmp_path, ["n00000001", "n00000002"])
    assert [(r.image_id, r.synset) for r in records] == [
        ("a", "n00000001"), ("b", "n00000001"), ("c", "n00000002"),
    ]  # fmt: skip
    with pytest.raises(DatasetError, match="n00000009"):
        discover_images(tmp_path, ["n00000009"])


def test_discover_images_rejects_duplicate_ids(tmp_path: Path) -> None:
    for synset in ("n00000001", "n00000002"):
        (tmp_path / synset).mkdir()
        (tmp_path / synset / "same.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not unique"):
        discover_images(tmp_path)
