"""params.yaml loading and validation: every rejection names the offending key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgimpact.config import ConfigError, load_params, params_from_dict
from conftest import REPO, default_params


def test_repository_params_carry_the_thesis_defaults() -> None:
    params = load_params(REPO / "params.yaml")
    assert len(params.classes) == 10
    assert params.classes["n02123394"].index == 283
    assert params.classes["n02105641"].index == 229
    assert {c.voc for c in params.classes.values()} == {"bird", "dog", "cat", "sheep"}
    assert params.classes["n02412080"].voc == "sheep"
    assert params.segment.method == "deeplabv3_resnet101"
    assert params.classify.models == ("resnet50", "convnext_base")
    assert params.classify.num_workers == "auto"
    for model_id in ("resnet50", "convnext_base"):
        model = params.model(model_id)
        assert (model.weights, model.resize, model.crop) == ("IMAGENET1K_V1", 256, 224)
    assert params.variants == (
        "original", "no_bg", "no_fg", "low_contrast", "high_contrast",
        "city", "jungle", "desert", "water", "sky", "indoor", "mountain", "snow",
    )  # fmt: skip


def test_lists_become_tuples_and_paths_become_paths() -> None:
    params = params_from_dict(default_params())
    assert params.data.masks == Path("data/masks")
    assert params.colors.fallback_low == (128, 128, 128)
    assert params.models["efficientnet_lite0"].mean == (0.498, 0.498, 0.498)


def _with(path: tuple[str, ...], value: object) -> dict:
    data = default_params()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("segment", "methd"), "grabcut", "unknown key segment.methd"),
        (("classify", "batch_size"), "32", "classify.batch_size: expected an integer"),
        (("classify", "batch_size"), 0, "classify.batch_size: must be at least 1"),
        (("classify", "amp"), "yes", "classify.amp: expected bool"),
        (("classify", "num_workers"), "many", "classify.num_workers: invalid value 'many'"),
        (("classify", "num_workers"), -1, "classify.num_workers: must be 'auto' or 0 or more"),
        (("segment", "min_object_fraction"), True, "min_object_fraction: expected a number"),
        (("segment", "method"), "sam", "segment.method: unknown method 'sam'"),
        (("classes", "n0153443"), {"name": "x", "index": 1, "voc": "bird"}, "classes.n0153443"),
        (("classes", "n01534433", "index"), 1000, "classes.n01534433.index: 1000 is outside"),
        (("classes", "n01534433", "voc"), "junco", "classes.n01534433.voc: 'junco' is not"),
        (("classes", "n01534433", "colour"), "grey", "unknown key classes.n01534433.colour"),
        (("scenes",), ["city", "city"], "scenes[1]: 'city' is listed twice"),
        (("scenic", "fit"), "zoom", "scenic.fit: 'zoom' is not one of"),
        (("colors", "fallback_low"), [1, 2], "colors.fallback_low: expected 3 values"),
        (("colors", "fallback_high"), [0, 0, 256], "colors.fallback_high: RGB values"),
        (("classify", "models"), ["resnet50", "vit"], "classify.models: 'vit' has no entry"),
        (("models", "resnet50", "arch"), "resnet50", "models.resnet50.arch"),
        (("models", "resnet50", "crop"), 22.5, "models.resnet50.crop: expected an integer"),
        (("evaluate", "average"), "micro", "evaluate.average: 'micro' is not one of"),
        (("evaluate", "size_bins", "quantiles"), [0.66, 0.33], "evaluate.size_bins.quantiles"),
        (("evaluate", "modified_variants"), ["original"], "evaluate.modified_variants"),
        (("segment", "method"), "provided", "segment.provided_masks: required"),
        (("tpyo",), 1, "unknown key tpyo"),
    ],
)
def test_invalid_params_are_rejected_naming_the_key(
    path: tuple[str, ...], value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        params_from_dict(_with(path, value))


def test_missing_required_key_is_named() -> None:
    data = default_params()
    del data["classes"]["n01534433"]["index"]
    with pytest.raises(ConfigError, match=r"classes.n01534433.index: missing required key"):
        params_from_dict(data)


def test_load_params_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("classes: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{bad}: not valid YAML"):
        load_params(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_params(tmp_path / "absent.yaml")
