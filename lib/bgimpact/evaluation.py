"""Evaluation at the edges: read the tables, call :mod:`bgimpact.metrics`, write JSON and CSVs.

Used by ``stages/evaluate.py`` (one model), ``stages/report.py`` (all models, comparison) and
``bgimpact.thesis``.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bgimpact import metrics as mt
from bgimpact.config import ClassConfig, EvaluateConfig
from bgimpact.files import atomic_write
from bgimpact.tables import read_predictions, write_csv

log = logging.getLogger("bgimpact")

#: Tables written per model for DVC plots (``plots`` of the evaluate stage in dvc.yaml).
PLOT_FILES = ("accuracy.csv", "confidence.csv", "size.csv")
#: The same tables across models, written by the report stage (top-level ``plots``).
ALL_MODELS = "all_models"


@dataclass(frozen=True)
class ModelResult:
    """One model's joined predictions and its metrics (unrounded)."""

    data: mt.Joined
    metrics: dict[str, Any]

    @property
    def model(self) -> str:
        return self.data.model


def evaluate_model(
    images: pd.DataFrame,
    predictions: str | Path,
    variants: Sequence[str],
    config: EvaluateConfig,
    classes: Mapping[str, ClassConfig] | None = None,
    model: str | None = None,
) -> ModelResult:
    """Read and validate one predictions file, join it to ``images`` and evaluate it.

    ``model`` names the result when the file's ``model`` column is empty of rows.
    """
    frame = read_predictions(predictions, variants)
    data = mt.join_tables(images, frame, variants, config.exclude_failed_masks, str(predictions))
    if model and data.model and data.model != model:
        log.warning("%s: model column says %r, evaluated as %r", predictions, data.model, model)
    if model:
        data = replace(data, model=model)
    return ModelResult(data, mt.evaluate(data, config, classes))


def write_json(value: Mapping[str, Any], path: str | Path) -> None:
    """Write ``value`` as indented JSON with floats rounded (see :func:`metrics.round_floats`)."""
    text = json.dumps(mt.round_floats(dict(value)), indent=2, ensure_ascii=False) + "\n"
    with atomic_write(path, "w") as handle:
        handle.write(text)


def plot_tables(result: ModelResult) -> dict[str, pd.DataFrame]:
    """One model's tables for DVC plots, with the ``series`` (colour) and ``panel`` (facet)
    columns that the project's templates (``.dvc/plots/bgimpact_*.json``) draw by."""
    model = result.model
    accuracy = mt.variant_table(result.metrics).assign(series=model, panel=model)
    modified = result.metrics["settings"]["modified_variants"]
    confidence = mt.confidence_histogram(result.data, modified).assign(panel=model)
    size = mt.size_table(result.metrics).assign(panel=model)
    return {PLOT_FILES[0]: accuracy, PLOT_FILES[1]: confidence, PLOT_FILES[2]: size}


def write_tables(tables: Mapping[str, pd.DataFrame], folder: str | Path) -> list[Path]:
    """Write each table as ``folder/<name>`` (CSV, 6 significant digits)."""
    folder = Path(folder)
    for name, table in tables.items():
        write_csv(table, folder / name, float_format="%.6g")
    return [folder / name for name in tables]


def comparison_tables(results: Sequence[ModelResult]) -> dict[str, pd.DataFrame]:
    """The per-model plot tables stacked: accuracy bars of all models side by side in one
    panel, confidence and size with one panel per model."""
    per_model = [plot_tables(r) for r in results]
    tables = {
        name: pd.concat([t[name] for t in per_model], ignore_index=True) for name in PLOT_FILES
    }
    tables[PLOT_FILES[0]]["panel"] = "all models"
    return tables


def compare(results: Sequence[ModelResult]) -> dict[str, Any]:
    """McNemar tests per variant for every pair of models, keyed ``<a>_vs_<b>``."""
    return {
        f"{a.model}_vs_{b.model}": mt.compare_models(a.data, b.data)
        for a, b in itertools.combinations(results, 2)
    }
