"""Segmentation building blocks: category pick, fractions, overlays, GrabCut, DeepLabV3 pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as nnf
import torchvision.models as tvm
from PIL import Image

from bgimpact.config import VOC_CATEGORIES, SegmentConfig
from bgimpact.files import ImageRecord, read_rgb
from bgimpact.overlay import OVERLAY_ALPHA, OVERLAY_COLOR, draw_overlay
from bgimpact.segmentation import (
    DeepLabSegmenter,
    ShapeBatcher,
    category_index,
    grabcut_mask,
    head_logits,
    is_mask_ok,
    labels_from_logits,
    load_deeplab,
    normalize,
    object_fraction,
    pick_category,
    preprocess,
    segmenter_weights,
)
from bgimpact.weights import WeightsError
from conftest import FIXTURE_IMAGES

CAT = 8  # VOC label of "cat"

# ----------------------------------------------------------------------------- config -> weights


def test_segmenter_weights_names_the_torchvision_download() -> None:
    assert segmenter_weights(SegmentConfig()) == ("deeplabv3_resnet101", "COCO_WITH_VOC_LABELS_V1")
    mobile = SegmentConfig(method="deeplabv3_mobilenet_v3_large", weights="DEFAULT")
    assert segmenter_weights(mobile) == ("deeplabv3_mobilenet_v3_large", "DEFAULT")


@pytest.mark.parametrize(
    "cfg",
    [
        SegmentConfig(method="grabcut"),
        SegmentConfig(method="provided", provided_masks=Path("masks")),
        SegmentConfig(method="deeplabv3_resnet50", weights="models/deeplab.pth"),
    ],
)
def test_segmenter_weights_none_without_a_download(cfg: SegmentConfig) -> None:
    assert segmenter_weights(cfg) is None


# ----------------------------------------------------------------------------- pure functions


def test_category_index_follows_the_voc_labels() -> None:
    assert VOC_CATEGORIES[category_index("dog")] == "dog"
    assert (category_index("bird"), category_index("cat"), category_index("dog"),
            category_index("sheep")) == (3, 8, 12, 17)  # fmt: skip
    with pytest.raises(ValueError, match="'unicorn'"):
        category_index("unicorn")


def test_pick_category_keeps_only_the_class_category() -> None:
    # A dog (12) with a person (15) beside it and a cat (8) in the corner.
    labels = np.array(
        [
            [0, 0, 15, 15, 0],
            [12, 12, 15, 15, 0],
            [12, 12, 0, 8, 8],
        ],
        dtype=np.uint8,
    )
    expected_dog = [
        [False, False, False, False, False],
        [True, True, False, False, False],
        [True, True, False, False, False],
    ]
    assert pick_category(labels, "dog").tolist() == expected_dog
    assert pick_category(labels, "cat").sum() == 2
    assert not pick_category(labels, "sheep").any()
    # Categories are looked up by name in the segmenter's own list.
    assert pick_category(np.array([[1, 2]]), "dog", ["__background__", "cat", "dog"]).tolist() == [
        [False, True]
    ]


def test_object_fraction() -> None:
    mask = np.zeros((4, 3), dtype=bool)
    mask[0, :] = True
    assert object_fraction(mask) == 0.25
    assert object_fraction(np.ones((2, 2), dtype=bool)) == 1.0
    assert object_fraction(np.zeros((5, 7), dtype=bool)) == 0.0
    assert object_fraction(np.array([[0, 255]], dtype=np.uint8)) == 0.5
    with pytest.raises(ValueError):
        object_fraction(np.zeros((0, 3), dtype=bool))


def test_is_mask_ok() -> None:
    assert is_mask_ok(0.001, 0.001)
    assert not is_mask_ok(0.000999, 0.001)
    assert not is_mask_ok(0.0, 0.0)  # an empty mask never counts as found
    assert is_mask_ok(1e-9, 0.0)


# ----------------------------------------------------------------------------- overlay


def test_overlay_tints_the_object_and_keeps_the_background() -> None:
    image = np.full((40, 60, 3), (10, 100, 200), dtype=np.uint8)
    mask = np.zeros((40, 60), dtype=bool)
    mask[10:30, 20:45] = True
    out = draw_overlay(image, mask, thickness=2)
    assert out.shape == image.shape and out.dtype == np.uint8
    a = OVERLAY_ALPHA
    pixel = (10, 100, 200)
    tinted = [round((1 - a) * v + a * c) for v, c in zip(pixel, OVERLAY_COLOR, strict=True)]
    assert out[20, 30].tolist() == tinted  # inside the object
    assert out[10, 30].tolist() == list(OVERLAY_COLOR)  # on its border: the outline
    assert out[0, 0].tolist() == [10, 100, 200]  # background untouched
    assert out[20, 50].tolist() == [10, 100, 200]
    assert (out[:8] == image[:8]).all() and (out[32:] == image[32:]).all()
    assert (image == (10, 100, 200)).all()  # the input is not modified


def test_overlay_of_an_empty_mask_is_the_photo() -> None:
    image = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    out = draw_overlay(image, np.zeros((9, 7), dtype=bool))
    assert (out == image).all() and out is not image


def test_overlay_rejects_a_mask_of_another_size() -> None:
    with pytest.raises(ValueError, match="mask"):
        draw_overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5), bool))


# ----------------------------------------------------------------------------- GrabCut


def _disc_photo(h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A bright orange disc on dark green noise, and the disc's true mask."""
    rng = np.random.default_rng(1)
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[..., 1] = rng.integers(40, 90, (h, w))
    image[..., 0] = rng.integers(0, 30, (h, w))
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 3) ** 2
    image[disc] = (240, 150, 30)
    return image, disc


def test_grabcut_finds_a_distinct_object() -> None:
    image, disc = _disc_photo()
    mask = grabcut_mask(image, margin=0.05, iterations=3, max_side=400)
    assert mask.shape == disc.shape and mask.dtype == bool
    iou = (mask & disc).sum() / (mask | disc).sum()
    assert iou > 0.95


def test_grabcut_on_a_downscaled_copy_returns_a_full_size_mask() -> None:
    image, disc = _disc_photo(150, 200)
    mask = grabcut_mask(image, margin=0.05, iterations=3, max_side=64)
    assert mask.shape == (150, 200)
    assert (mask & disc).sum() / (mask | disc).sum() > 0.85


def test_grabcut_is_deterministic() -> None:
    image = read_rgb(next(FIXTURE_IMAGES.glob("n02105641/*")))
    first = grabcut_mask(image, 0.05, 2, 96)
    assert (grabcut_mask(image, 0.05, 2, 96) == first).all()


def test_grabcut_of_a_tiny_image_is_empty() -> None:
    assert not grabcut_mask(np.zeros((2, 2, 3), np.uint8), 0.05, 1, 400).any()


# ----------------------------------------------------------------------------- DeepLabV3 pieces


def test_preprocessing_equals_the_weights_own_transforms() -> None:
    weights = tvm.get_model_weights("deeplabv3_mobilenet_v3_large").COCO_WITH_VOC_LABELS_V1
    path = next(FIXTURE_IMAGES.glob("n02124075/*"))  # portrait, 335 x 500
    rgb = read_rgb(path)
    ours = normalize(preprocess(rgb, 520)[None])[0]
    theirs = weights.transforms()(Image.fromarray(rgb))
    assert ours.shape == theirs.shape == (3, 776, 520)
    assert torch.equal(ours, theirs)


def test_labels_from_logits_upsample_bilinear_then_argmax() -> None:
    # Class 0 scores 1 -> 0 from left to right, class 1 the reverse: 2 columns become 4.
    logits = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    labels = labels_from_logits(logits, (3, 4))
    assert labels.dtype == torch.uint8
    assert labels.tolist() == [[0, 0, 1, 1]] * 3
    # A 3-class map is taken straight to an odd photo size.
    big = torch.zeros(3, 2, 2)
    big[2, 1, 1] = 5.0
    assert labels_from_logits(big, (5, 7)).shape == (5, 7)
    assert labels_from_logits(big, (5, 7))[4, 6] == 2
    # Exactly torch's argmax of the upsampled scores, ties (to the first class) included.
    rand = torch.randn(21, 9, 11, generator=torch.Generator().manual_seed(0))
    rand[5:7, :3] = 9.0  # classes 5 and 6 tie in the top rows: argmax says 5
    expected = nnf.interpolate(rand[None], size=(37, 45), mode="bilinear", align_corners=False)
    assert torch.equal(labels_from_logits(rand, (37, 45)), expected.argmax(dim=1)[0].byte())
    assert (labels_from_logits(rand, (37, 45))[:8] == 5).all()


def test_shape_batcher_groups_equal_shapes() -> None:
    batcher = ShapeBatcher(batch_size=2, max_pending=4)
    assert batcher.add("a", 1) == []
    assert batcher.add("b", 2) == []
    assert batcher.add("a", 3) == [[1, 3]]
    assert batcher.add("c", 4) == []
    assert batcher.drain() == [[2], [4]]
    assert batcher.pending == 0


def test_shape_batcher_bounds_what_waits() -> None:
    batcher = ShapeBatcher(batch_size=3, max_pending=3)
    out = [batcher.add(k, i) for i, k in enumerate(["a", "a", "b", "c"])]
    assert out == [[], [], [], [[0, 1]]]  # 4 waiting > 3: the fullest bucket goes
    assert batcher.drain() == [[2], [3]]


def _save_deeplab(path: Path, aux: bool) -> None:
    torch.manual_seed(0)
    model = tvm.get_model(
        "deeplabv3_mobilenet_v3_large", weights=None, weights_backbone=None, aux_loss=aux
    )
    torch.save(model.state_dict(), path)


@pytest.mark.parametrize("aux", [True, False])
def test_load_deeplab_from_a_checkpoint_with_or_without_aux_head(tmp_path: Path, aux: bool) -> None:
    path = tmp_path / "deeplab.pth"
    _save_deeplab(path, aux)
    model, categories = load_deeplab("deeplabv3_mobilenet_v3_large", str(path))
    assert model.aux_classifier is None and not model.training
    assert categories == VOC_CATEGORIES
    expected = torch.load(path, weights_only=True)["classifier.4.weight"]
    assert torch.equal(model.classifier[4].weight, expected)


def test_load_deeplab_rejects_a_checkpoint_of_another_model(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(WeightsError, match=r"other\.pth: does not fit the model"):
        load_deeplab("deeplabv3_mobilenet_v3_large", str(path))


def test_head_logits_are_the_models_scores_before_its_upsampling() -> None:
    torch.manual_seed(0)
    model = tvm.get_model(
        "deeplabv3_mobilenet_v3_large", weights=None, weights_backbone=None
    ).eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.inference_mode():
        ours = torch.nn.functional.interpolate(
            head_logits(model, x), size=(64, 80), mode="bilinear", align_corners=False
        )
        assert torch.allclose(ours, model(x)["out"], atol=1e-5)


def test_deeplab_segmenter_batches_one_shape_and_returns_each_photo_size() -> None:
    torch.manual_seed(0)
    model = tvm.get_model("deeplabv3_mobilenet_v3_large", weights=None, weights_backbone=None)
    last = model.classifier[-1]
    with torch.no_grad():  # every pixel scores highest as "cat"
        last.weight.zero_()
        last.bias.zero_()
        last.bias[CAT] = 1.0
    segmenter = DeepLabSegmenter(model, VOC_CATEGORIES, 32, 2, torch.device("cpu"))
    small = np.zeros((30, 40, 3), np.uint8)
    large = np.full((60, 80, 3), 200, np.uint8)  # same aspect: the same resized shape
    record = ImageRecord("x", "n00000000", Path("x.jpg"))
    items = [segmenter.prepare(record, small), segmenter.prepare(record, large)]
    assert segmenter.batch_key(items[0]) == segmenter.batch_key(items[1]) == (3, 32, 42)
    cats, dogs = segmenter.segment(items, ["cat", "dog"])
    assert cats.shape == (30, 40) and cats.all()
    assert dogs.shape == (60, 80) and not dogs.any()
