"""Typed configuration: params.yaml turned into frozen dataclasses, validated on load.

Every section of params.yaml has a dataclass here. Unknown keys, wrong types and bad values are
rejected with a :class:`ConfigError` whose message names the offending key
(``classes.n01534433.index``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

DEFAULT_PARAMS = Path("params.yaml")

#: Categories of torchvision's DeepLabV3 ``COCO_WITH_VOC_LABELS_V1`` weights, index = label id.
VOC_CATEGORIES: tuple[str, ...] = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
    "sofa", "train", "tvmonitor",
)  # fmt: skip

SEGMENT_METHODS = (
    "deeplabv3_resnet101",
    "deeplabv3_resnet50",
    "deeplabv3_mobilenet_v3_large",
    "grabcut",
    "provided",
)

#: Variants every run produces, in CONTRACTS order; one scenic variant per scene follows them.
BASE_VARIANTS: tuple[str, ...] = ("original", "no_bg", "no_fg", "low_contrast", "high_contrast")

_SYNSET = re.compile(r"^n\d{8}$")
_SCENE = re.compile(r"^[a-z][a-z0-9_]*$")


class ConfigError(ValueError):
    """params.yaml (or a dict shaped like it) is invalid; the message names the key."""


RGB = tuple[int, int, int]


@dataclass(frozen=True)
class DataConfig:
    """Where inputs are read and outputs written (paths relative to the repository root)."""

    images: Path = Path("data/train")
    scenes: Path = Path("data/scenarios")
    masks: Path = Path("data/masks")
    overlays: Path = Path("data/overlays")
    table: Path = Path("data/images.csv")
    colors: Path = Path("data/colors.json")
    modified: Path = Path("data/modified")
    predictions: Path = Path("data/predictions")
    metrics: Path = Path("metrics")
    plots: Path = Path("metrics/plots")
    report: Path = Path("metrics/report")


@dataclass(frozen=True)
class ClassConfig:
    """One studied ImageNet class."""

    name: str
    index: int
    voc: str


@dataclass(frozen=True)
class GrabCutConfig:
    """OpenCV GrabCut initialised with a centred rectangle."""

    margin: float = 0.05
    iterations: int = 5
    max_side: int = 400


@dataclass(frozen=True)
class SegmentConfig:
    """How objects are cut out of the photos."""

    method: str = "deeplabv3_resnet101"
    weights: str = "COCO_WITH_VOC_LABELS_V1"
    batch_size: int = 4
    resize: int = 520
    min_object_fraction: float = 0.001
    device: str = "auto"
    provided_masks: Path | None = None
    grabcut: GrabCutConfig = field(default_factory=GrabCutConfig)


@dataclass(frozen=True)
class ColorsConfig:
    """KMeans colours per class for the contrast variants."""

    k: int = 5
    seed: int = 0
    max_pixels: int = 200_000
    fallback_low: RGB = (128, 128, 128)
    fallback_high: RGB = (255, 0, 255)


@dataclass(frozen=True)
class ScenicConfig:
    """How a scene photo is fitted to the image size."""

    fit: Literal["stretch", "cover"] = "stretch"


@dataclass(frozen=True)
class ModelConfig:
    """A classifier: architecture by registry string, weights, and preprocessing.

    Preprocessing fields left as ``None`` default to the weights' own transforms.
    """

    arch: str
    weights: str = "DEFAULT"
    resize: int | None = None
    crop: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = None


@dataclass(frozen=True)
class ClassifyConfig:
    """Which models classify the variants, and how the inference runs."""

    models: tuple[str, ...] = ("resnet50", "convnext_base")
    batch_size: int = 32
    num_workers: int | Literal["auto"] = "auto"
    amp: bool = True
    channels_last: bool = True
    device: str = "auto"
    threads: int = 0


@dataclass(frozen=True)
class SizeBinsConfig:
    """Object-size bins from quantiles of ``object_fraction``."""

    quantiles: tuple[float, ...] = (0.33, 0.66)
    labels: tuple[str, ...] = ("small", "medium", "large")
    scope: Literal["pooled", "per_class"] = "pooled"


@dataclass(frozen=True)
class BootstrapConfig:
    """Seeded bootstrap over images for confidence intervals."""

    samples: int = 1000
    seed: int = 0
    level: float = 0.95


@dataclass(frozen=True)
class EvaluateConfig:
    """How predictions are turned into metrics."""

    average: Literal["weighted", "macro"] = "macro"
    modified_variants: tuple[str, ...] | None = None
    exclude_failed_masks: bool = True
    size_bins: SizeBinsConfig = field(default_factory=SizeBinsConfig)
    lenient_groups: tuple[tuple[int, ...], ...] = ()
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)


@dataclass(frozen=True)
class ReportConfig:
    """The HTML report."""

    examples: int = 4
    seed: int = 0


@dataclass(frozen=True)
class Params:
    """The whole of params.yaml."""

    classes: dict[str, ClassConfig]
    models: dict[str, ModelConfig]
    scenes: tuple[str, ...] = ("city", "jungle", "desert", "water", "sky", "indoor", "mountain",
                               "snow")  # fmt: skip
    data: DataConfig = field(default_factory=DataConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    colors: ColorsConfig = field(default_factory=ColorsConfig)
    scenic: ScenicConfig = field(default_factory=ScenicConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    @property
    def variants(self) -> tuple[str, ...]:
        """All variant ids in CONTRACTS order: the base variants, then one per scene."""
        return BASE_VARIANTS + self.scenes

    @property
    def label_of(self) -> dict[str, int]:
        """Synset -> ImageNet-1k index."""
        return {synset: c.index for synset, c in self.classes.items()}

    def model(self, model_id: str) -> ModelConfig:
        """The ``models.<id>`` entry, or a ConfigError naming the id."""
        try:
            return self.models[model_id]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise ConfigError(f"models.{model_id}: no such model (known: {known})") from None


# --------------------------------------------------------------------------- generic builder


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp``; convert lists to tuples and str to Path."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: {value!r} is not one of {allowed}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = args
        return {
            _convert(k, key_tp, f"{key}.{k}"): _convert(v, val_tp, f"{key}.{k}")
            for k, v in value.items()
        }
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if tp is Path:
        if not isinstance(value, str | Path):
            raise ConfigError(f"{key}: expected a path, got {type(value).__name__}")
        return Path(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # a bug here, not in params


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and missing required ones."""
    where = prefix or "params"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(f"{prefix}.{k}" if prefix else str(k) for k in unknown)
        raise ConfigError(f"unknown key {names} (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: missing required key")
    return cls(**kwargs)


# --------------------------------------------------------------------------- semantic checks


def _check(params: Params) -> None:
    if not params.classes:
        raise ConfigError("classes: at least one class is needed")
    for synset, c in params.classes.items():
        if not _SYNSET.match(synset):
            raise ConfigError(f"classes.{synset}: a synset is 'n' followed by 8 digits")
        if not 0 <= c.index <= 999:
            raise ConfigError(f"classes.{synset}.index: {c.index} is outside 0..999")
        if c.voc not in VOC_CATEGORIES[1:]:
            raise ConfigError(
                f"classes.{synset}.voc: {c.voc!r} is not a DeepLabV3 (VOC) category; "
                f"choose from {', '.join(VOC_CATEGORIES[1:])}"
            )
    seen: set[str] = set()
    for i, scene in enumerate(params.scenes):
        if not _SCENE.match(scene) or scene in BASE_VARIANTS:
            raise ConfigError(f"scenes[{i}]: {scene!r} is not a valid scene name")
        if scene in seen:
            raise ConfigError(f"scenes[{i}]: {scene!r} is listed twice")
        seen.add(scene)
    seg = params.segment
    if seg.method not in SEGMENT_METHODS:
        raise ConfigError(
            f"segment.method: unknown method {seg.method!r} "
            f"(choose from {', '.join(SEGMENT_METHODS)})"
        )
    if seg.method == "provided" and seg.provided_masks is None:
        raise ConfigError("segment.provided_masks: required when segment.method is 'provided'")
    if not 0 <= seg.min_object_fraction < 1:
        raise ConfigError("segment.min_object_fraction: must be in [0, 1)")
    if not 0 <= seg.grabcut.margin < 0.5:
        raise ConfigError("segment.grabcut.margin: must be in [0, 0.5)")
    for key, value in (
        ("segment.batch_size", seg.batch_size),
        ("segment.grabcut.iterations", seg.grabcut.iterations),
        ("segment.resize", seg.resize),
        ("segment.grabcut.max_side", seg.grabcut.max_side),
        ("colors.k", params.colors.k),
        ("colors.max_pixels", params.colors.max_pixels),
        ("classify.batch_size", params.classify.batch_size),
        ("evaluate.bootstrap.samples", params.evaluate.bootstrap.samples),
    ):
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if params.classify.num_workers != "auto" and params.classify.num_workers < 0:
        raise ConfigError("classify.num_workers: must be 'auto' or 0 or more")
    if params.classify.threads < 0:
        raise ConfigError("classify.threads: must be 0 (automatic) or more")
    for key, rgb in (("colors.fallback_low", params.colors.fallback_low),
                     ("colors.fallback_high", params.colors.fallback_high)):  # fmt: skip
        if any(not 0 <= v <= 255 for v in rgb):
            raise ConfigError(f"{key}: RGB values must be in 0..255")
    for model_id in params.classify.models:
        if model_id not in params.models:
            raise ConfigError(f"classify.models: {model_id!r} has no entry under models")
    for model_id, m in params.models.items():
        if ":" not in m.arch:
            raise ConfigError(
                f"models.{model_id}.arch: {m.arch!r} must be '<registry>:<name>', "
                "e.g. 'torchvision:resnet50' or 'timm:efficientnet_lite0'"
            )
    ev = params.evaluate
    q = ev.size_bins.quantiles
    if any(not 0 < v < 1 for v in q) or list(q) != sorted(set(q)):
        raise ConfigError("evaluate.size_bins.quantiles: increasing values strictly inside (0, 1)")
    if len(ev.size_bins.labels) != len(q) + 1:
        raise ConfigError("evaluate.size_bins.labels: need one label more than quantiles")
    if ev.modified_variants is not None:
        for v in ev.modified_variants:
            if v not in params.variants or v == "original":
                raise ConfigError(f"evaluate.modified_variants: {v!r} is not a modified variant")
    for i, group in enumerate(ev.lenient_groups):
        if any(not 0 <= label <= 999 for label in group):
            raise ConfigError(f"evaluate.lenient_groups[{i}]: labels must be in 0..999")
    if not 0 < ev.bootstrap.level < 1:
        raise ConfigError("evaluate.bootstrap.level: must be strictly between 0 and 1")
    if params.report.examples < 0:
        raise ConfigError("report.examples: must be 0 or more")


# --------------------------------------------------------------------------- public API


def params_from_dict(data: Mapping[str, Any]) -> Params:
    """Validate a params mapping and return it as :class:`Params`."""
    params = _build(Params, data, "")
    _check(params)
    return params


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``params.yaml``; errors name the file and the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return params_from_dict(data or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
