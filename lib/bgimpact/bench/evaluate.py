"""Benchmark of evaluate + report: ``python -m bgimpact.bench evaluate [--ref FOLDER]``.

Runs the real stage scripts on the thesis reference (two 130,000-row predictions files) as the
pipeline does (``evaluate --model`` per model, then ``report``), each in its own process, and
prints wall time and peak memory per process. Then times the metric phases in this process and,
as the baseline, a plain pandas bootstrap that resamples the rows of a table once per resample
(timed on a few resamples and scaled to the configured count).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bgimpact import metrics as mt
from bgimpact.bench.peak import parse_peak
from bgimpact.config import load_params
from bgimpact.tables import read_images_table, read_predictions

REPO = Path(__file__).resolve().parents[3]
DEFAULT_REF = REPO.parent / "shared" / "reference" / "thesis"


def _run_measured(script: list[str]) -> tuple[float, float, float]:
    """Run a stage script in its own process; (wall seconds, CPU seconds, its peak MiB)."""
    cmd = [sys.executable, "-m", "bgimpact.bench.peak", *script]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = proc.stdout.read().decode() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = parse_peak(output)
    if proc.returncode != 0 or peak is None:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{output}")
    return wall, usage.ru_utime + usage.ru_stime, peak


def _stages(ref: Path, params_path: Path, work: Path) -> None:
    params = yaml.safe_load(params_path.read_text())
    models = sorted(p.stem.removeprefix("predictions_") for p in ref.glob("predictions_*.csv"))
    predictions = work / "predictions"
    predictions.mkdir()
    for model in models:
        (predictions / f"{model}.csv").symlink_to((ref / f"predictions_{model}.csv").resolve())
    params["classify"]["models"] = models
    params["data"].update(
        {
            "table": str((ref / "images.csv").resolve()),
            "predictions": str(predictions),
            "images": str(work / "no_images"),
            "modified": str(work / "no_modified"),
            "metrics": str(work / "metrics"),
            "plots": str(work / "metrics" / "plots"),
            "report": str(work / "metrics" / "report"),
        }
    )
    for model in models:
        params["models"].setdefault(model, {"arch": f"torchvision:{model}"})
    bench_params = work / "params.yaml"
    bench_params.write_text(yaml.safe_dump(params, sort_keys=False))
    with open(ref / f"predictions_{models[0]}.csv", "rb") as handle:
        rows = sum(1 for _ in handle) - 1
    print(f"stages on {ref} ({len(models)} models x {rows} rows), one process each:")
    print(f"  {'process':<28}{'wall s':>8}{'CPU s':>8}{'peak MiB':>10}")
    total, cpu_total, peak = 0.0, 0.0, 0.0
    commands = [
        (f"evaluate {m}", ["stages/evaluate.py", "--params", str(bench_params), "--model", m])
        for m in models
    ]
    commands.append(("report", ["stages/report.py", "--params", str(bench_params)]))
    for name, cmd in commands:
        wall, cpu, rss = _run_measured(cmd)
        total, cpu_total, peak = total + wall, cpu_total + cpu, max(peak, rss)
        print(f"  {name:<28}{wall:>8.1f}{cpu:>8.1f}{rss:>10.0f}", flush=True)
    print(f"  {'total (max peak)':<28}{total:>8.1f}{cpu_total:>8.1f}{peak:>10.0f}")
    print(
        f"  load average when done: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
        f"on {os.cpu_count()} CPUs"
    )


def _naive_bootstrap(frame: pd.DataFrame, samples: int, seed: int) -> float:
    """The baseline: resample the images of a long table with pandas, once per resample."""
    rng = np.random.default_rng(seed)
    ids = frame["image_id"].unique()
    indexed = frame.set_index("image_id")
    start = time.perf_counter()
    for _ in range(samples):
        pick = rng.choice(ids, size=len(ids), replace=True)
        sample = indexed.loc[pick]
        (sample["top1"] == sample["label"]).groupby(sample["variant"]).mean()
    return time.perf_counter() - start


def _phases(ref: Path, params_path: Path, baseline_samples: int) -> None:
    params = load_params(params_path)
    model = sorted(p.stem.removeprefix("predictions_") for p in ref.glob("predictions_*.csv"))[0]
    t0 = time.perf_counter()
    images = read_images_table(ref / "images.csv")
    frame = read_predictions(ref / f"predictions_{model}.csv", params.variants)
    t1 = time.perf_counter()
    data = mt.join_tables(images, frame, params.variants, params.evaluate.exclude_failed_masks)
    t2 = time.perf_counter()
    mt.evaluate(data, params.evaluate, params.classes)
    t3 = time.perf_counter()
    boot = params.evaluate.bootstrap
    n, v = data.present.shape
    num = data.correct.astype(float)
    mt.bootstrap_ratios(num, data.present.astype(float), boot.samples, boot.seed)
    t4 = time.perf_counter()
    print(
        f"phases for {model} in this process: read+validate {t1 - t0:.2f} s, "
        f"join {t2 - t1:.2f} s, all metrics with intervals {t3 - t2:.2f} s"
    )
    print(
        f"  vectorised bootstrap alone: {boot.samples} resamples x {n} images x {v} "
        f"variants in {t4 - t3:.2f} s"
    )
    naive = _naive_bootstrap(frame, baseline_samples, boot.seed)
    scaled = naive / baseline_samples * boot.samples
    print(
        f"  baseline, pandas resampling per resample: {baseline_samples} resamples in "
        f"{naive:.2f} s -> about {scaled:.0f} s for {boot.samples} "
        f"({scaled / max(t4 - t3, 1e-9):.0f}x slower)"
    )


def run(argv: list[str] | None = None) -> None:
    """Time evaluate + report on the reference files and print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bgimpact.bench evaluate")
    parser.add_argument(
        "--ref",
        type=Path,
        default=DEFAULT_REF,
        help="folder with images.csv and predictions_<model>.csv",
    )
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--baseline-samples", type=int, default=10)
    args, _ = parser.parse_known_args(argv)  # `bench all` passes every benchmark's options
    if not (args.ref / "images.csv").is_file():
        print(f"skipped: no reference data at {args.ref}")
        return
    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        _stages(args.ref, args.params, Path(tmp))
    _phases(args.ref, args.params, args.baseline_samples)
