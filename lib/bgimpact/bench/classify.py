"""Benchmark of the classify stage: ``python -m bgimpact.bench classify [options]``.

In one run, on the same model and the same inputs (N photos x V variants, built in a temporary
folder from the fixture or dataset photos):

- *forward*: the model alone on already-preprocessed tensors (same batch size, threads,
  memory format as the stage): the ceiling;
- *stage*: :func:`bgimpact.classify.write_predictions`, i.e. DataLoader workers decoding and
  resizing, the model, and the streamed CSV; the target is >= 0.9x the forward rate;
- *thesis loop*: one image at a time, transforms rebuilt per image, batch 1, results collected
  in a list and written with pandas at the end;
- peak RSS of the stage for N and 4N photos (fresh processes), to show it does not grow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from bgimpact.bench.peak import peak_rss_mib
from bgimpact.classify import (
    Runner,
    VariantDataset,
    loader_workers,
    model_threads,
    plan_items,
    torch_threads,
    write_predictions,
)
from bgimpact.cli import parse_workers
from bgimpact.config import ClassifyConfig, load_params
from bgimpact.files import discover_images, read_rgb
from bgimpact.models import Classifier, load_classifier
from bgimpact.runtime import pick_device
from bgimpact.tables import IMAGES_COLUMNS, read_images_table

FIXTURES = Path("../shared/fixtures/imagenet")


def malloc_name() -> str:
    """Which allocator serves this process: tcmalloc when preloaded (``make bench``)."""
    preload = os.environ.get("LD_PRELOAD", "")
    return "tcmalloc" if "tcmalloc" in preload else "default allocator"


def build_inputs(source: Path, root: Path, n: int, variants: int, label_of: dict) -> dict:
    """``n`` photos cycling over those in ``source`` (symlinks with new ids) and ``variants - 1``
    lossless PNG variants each (mirrored / flipped copies); returns the paths for the stage."""
    photos = [r for r in discover_images(source) if r.synset in label_of]
    if not photos:
        raise SystemExit(f"bench classify: no photos of the params' classes under {source}")
    names = ["no_bg", "no_fg", "low_contrast", "high_contrast"][: variants - 1]
    pngs: dict[tuple[str, str], Path] = {}
    for record in photos:  # each distinct photo is encoded once, then linked
        rgb = read_rgb(record.path)
        for k, variant in enumerate(names):
            path = root / "pngs" / variant / f"{record.image_id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(np.flip(rgb, axis=k % 2))).save(path)
            pngs[record.image_id, variant] = path
    rows = []
    for i in range(n):
        record = photos[i % len(photos)]
        image_id = f"{record.synset}_b{i:06d}"
        link = root / "images" / record.synset / f"{image_id}{record.path.suffix}"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(record.path.resolve())
        for variant in names:
            target = root / "modified" / variant / record.synset / f"{image_id}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(pngs[record.image_id, variant])
        rows.append((image_id, record.synset, label_of[record.synset], 0, 0, 0.5, True))
    pd.DataFrame(rows, columns=IMAGES_COLUMNS).to_csv(root / "images.csv", index=False)
    return {
        "table": root / "images.csv",
        "images": root / "images",
        "modified": root / "modified",
        "variants": ("original", *names),
    }


def load(args: argparse.Namespace, tmp: Path) -> tuple[Classifier, ClassifyConfig, dict]:
    """The classifier, the inference settings and the label map from params and options."""
    params = load_params(args.params)
    model_cfg = params.model(args.model)
    if args.random_weights:  # timing only: same architecture, no download
        arch, _, name = model_cfg.arch.partition(":")
        if arch != "torchvision":
            raise SystemExit("--random-weights is for torchvision: models")
        import torchvision.models as tvm

        path = tmp / f"{name}_random.pth"
        torch.save(tvm.get_model(name, weights=None).state_dict(), path)
        model_cfg = dataclasses.replace(model_cfg, weights=str(path))
    cfg = params.classify
    for key in ("batch_size", "num_workers", "threads"):
        if getattr(args, key) is not None:
            cfg = dataclasses.replace(cfg, **{key: getattr(args, key)})
    cfg = dataclasses.replace(cfg, channels_last=not args.no_channels_last)
    return load_classifier(args.model, model_cfg), cfg, params.label_of


def stage_rate(clf: Classifier, cfg: ClassifyConfig, data: dict, n: int, out: Path) -> float:
    """Inputs per second of the stage path (plan, DataLoader, model, CSV) on ``n`` photos."""
    table = read_images_table(data["table"]).head(n)
    started = time.perf_counter()
    items, _ = plan_items(table, data["images"], data["modified"], data["variants"])
    rows = write_predictions(clf, items, data["variants"], data["modified"], out, cfg, None, False)
    return rows / (time.perf_counter() - started)


def forward_rate(clf: Classifier, cfg: ClassifyConfig, data: dict, n: int) -> float:
    """Inputs per second of the model alone on the same inputs, preprocessed beforehand."""
    table = read_images_table(data["table"]).head(n)
    items, _ = plan_items(table, data["images"], data["modified"], data["variants"])
    dataset = VariantDataset(items, data["variants"], data["modified"], clf.preprocess)
    runner = Runner(clf, cfg)
    stacked = torch.stack([dataset[i][0] for i in range(len(dataset))])
    batches = [
        runner.inputs(stacked[i : i + cfg.batch_size])
        for i in range(0, len(stacked), cfg.batch_size)
    ]
    threads = model_threads(cfg, loader_workers(cfg, runner.device))
    with torch_threads(threads):
        runner.forward(batches[0])  # warm-up (the stage's first batch pays it too)
        started = time.perf_counter()
        for x in batches:
            runner.forward(x)
        return len(stacked) / (time.perf_counter() - started)


def thesis_rate(clf: Classifier, data: dict, n: int, out: Path, threads: int) -> float:
    """Inputs per second of a per-image loop: transforms rebuilt for each image, batch 1."""
    from torchvision import transforms

    pre = clf.preprocess
    model = clf.module.to(memory_format=torch.contiguous_format).eval()
    table = read_images_table(data["table"]).head(n)
    items, _ = plan_items(table, data["images"], data["modified"], data["variants"])
    dataset = VariantDataset(items, data["variants"], data["modified"], pre)
    results = []
    started = time.perf_counter()
    with torch_threads(threads):
        for index in range(len(dataset)):
            transform = transforms.Compose([
                transforms.Resize(pre.resize),
                transforms.CenterCrop(pre.crop),
                transforms.ToTensor(),
                transforms.Normalize(pre.mean, pre.std),
            ])  # fmt: skip
            image = Image.open(dataset.path(index)).convert("RGB")
            with torch.no_grad():
                logits = model(transform(image).unsqueeze(0))
            probs = torch.nn.functional.softmax(logits[0], dim=0)
            confidence, predicted = torch.max(probs, 0)
            results.append({"index": index, "top1": int(predicted), "prob1": float(confidence)})
    pd.DataFrame(results).to_csv(out, index=False)
    return len(dataset) / (time.perf_counter() - started)


def decode_ms(clf: Classifier, data: dict, n: int) -> float:
    """Milliseconds per input of what the DataLoader workers do (read, decode, resize, crop)."""
    table = read_images_table(data["table"]).head(n)
    items, _ = plan_items(table, data["images"], data["modified"], data["variants"])
    dataset = VariantDataset(items, data["variants"], data["modified"], clf.preprocess)
    started = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    return 1000 * (time.perf_counter() - started) / len(dataset)


def stage_peak_mib(argv: list[str], n: int) -> float:
    """Peak RSS (MiB) of the main process of a fresh run of the stage path on ``n`` photos
    (its own address space: :func:`bgimpact.bench.peak.peak_rss_mib`)."""
    cmd = [sys.executable, "-m", "bgimpact.bench.classify", *argv, "--rss-child", str(n)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench classify: RSS run failed:\n{result.stderr}")
    return float(json.loads(result.stdout.strip().splitlines()[-1])["peak_mib"])


def run(argv: list[str] | None = None) -> None:
    """Print forward-only, stage and thesis-loop rates and the stage's peak RSS for N and 4N."""
    parser = argparse.ArgumentParser(
        prog="python -m bgimpact.bench classify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model", default="efficientnet_lite0", help="model id in params")
    parser.add_argument("--source", type=Path, help="photos <synset>/<file> (default: fixtures)")
    parser.add_argument("-n", type=int, default=64, help="photos (default: %(default)s)")
    parser.add_argument("--variants", type=int, default=2, help="variants per photo, 1..5")
    parser.add_argument("--batch-size", type=int, help="default: classify.batch_size")
    parser.add_argument("--num-workers", type=parse_workers,
                        help="auto or a count; default: classify.num_workers")  # fmt: skip
    parser.add_argument("--threads", type=int, help="default: classify.threads")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--random-weights", action="store_true", help="torchvision, no download")
    parser.add_argument("--thesis-n", type=int, default=16, help="photos for the thesis loop")
    parser.add_argument("--repeat", type=int, default=2, help="best of R forward/stage runs")
    parser.add_argument("--no-rss", action="store_true", help="skip the N / 4N RSS runs")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 1 <= args.variants <= 5:
        parser.error("--variants: 1..5")
    own_argv = [a for a in (argv or []) if a != "--no-rss"]

    with tempfile.TemporaryDirectory(prefix="bench_classify_") as tmp_name:
        tmp = Path(tmp_name)
        clf, cfg, label_of = load(args, tmp)
        source = args.source or (
            FIXTURES if FIXTURES.is_dir() else load_params(args.params).data.images
        )
        n = args.rss_child or args.n
        data = build_inputs(source, tmp / "data", n, args.variants, label_of)
        if args.rss_child:
            stage_rate(clf, cfg, data, n, tmp / "out.csv")
            print(json.dumps({"peak_mib": peak_rss_mib()}))
            return
        device = pick_device(cfg.device)
        workers = loader_workers(cfg, device)
        threads = model_threads(cfg, workers)
        inputs = n * args.variants
        print(f"model {args.model} ({clf.source}), {inputs} inputs = {n} photos x "
              f"{args.variants} variants, crop {clf.preprocess.crop}, batch {cfg.batch_size}, "
              f"workers {workers} (num_workers {cfg.num_workers}), threads {threads}, "
              f"channels_last {cfg.channels_last}, {device}, {malloc_name()}",
              flush=True)  # fmt: skip
        thesis = thesis_rate(clf, data, min(args.thesis_n, n), tmp / "thesis.csv", threads)
        decode = decode_ms(clf, data, min(args.thesis_n, n))
        forward = stage = 0.0
        for _ in range(args.repeat):  # interleaved, best of each: robust to a busy machine
            forward = max(forward, forward_rate(clf, cfg, data, n))
            stage = max(stage, stage_rate(clf, cfg, data, n, tmp / "stage.csv"))
        print(f"  decode + resize + crop, one process: {decode:8.2f} ms/img "
              f"(forward: {1000 / forward:.2f} ms/img)")  # fmt: skip
        print(f"  forward only, preprocessed tensors : {forward:8.2f} img/s")
        print(f"  stage (DataLoader + model + CSV)   : {stage:8.2f} img/s = "
              f"{stage / forward:.2f}x forward (target >= 0.9x)")  # fmt: skip
        print(f"  thesis loop (batch 1, per image)   : {thesis:8.2f} img/s; "
              f"stage is {stage / thesis:.2f}x faster")  # fmt: skip
    if not args.no_rss:
        small = stage_peak_mib(own_argv, n)
        large = stage_peak_mib(own_argv, 4 * n)
        print(f"  peak RSS, stage process: {n} photos {small:.0f} MiB, {4 * n} photos "
              f"{large:.0f} MiB ({large - small:+.0f} MiB)")  # fmt: skip


if __name__ == "__main__":
    run(sys.argv[1:])
