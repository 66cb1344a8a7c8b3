"""The CSV tables of CONTRACTS.md: column lists, atomic writing, and validated reading."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bgimpact.files import atomic_write

IMAGES_COLUMNS: tuple[str, ...] = (
    "image_id", "synset", "label", "width", "height", "object_fraction", "mask_ok",
)  # fmt: skip

PREDICTION_COLUMNS: tuple[str, ...] = (
    "image_id", "synset", "label", "variant", "model",
    "top1", "prob1", "top2", "prob2", "top3", "prob3", "top4", "prob4", "top5", "prob5",
)  # fmt: skip


class TableError(ValueError):
    """A table does not follow its schema; the message names file, column and first bad row."""


def write_csv(frame: pd.DataFrame, path: str | Path, float_format: str | None = None) -> None:
    """Write ``frame`` without its index, atomically."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, float_format=float_format, lineterminator="\n")
    with atomic_write(path, "w") as handle:
        handle.write(buffer.getvalue())


def _bad(path: Path | str, column: str, frame: pd.DataFrame, mask: pd.Series, what: str) -> None:
    if mask.any():
        pos = int(mask.to_numpy().nonzero()[0][0])
        value = frame[column].iloc[pos]
        value = value.item() if hasattr(value, "item") else value  # 1.5, not np.float64(1.5)
        raise TableError(f"{path}: column {column!r}, line {pos + 2}: {what}, "
                         f"got {value!r}")  # fmt: skip


def read_images_table(path: str | Path) -> pd.DataFrame:
    """Read ``images.csv``; requires ``image_id, synset, label, object_fraction, mask_ok``.

    ``width``/``height`` are optional (the thesis reference lacks them); extra columns are kept.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: images table not found")
    frame = pd.read_csv(path, dtype={"image_id": str, "synset": str})
    required = ("image_id", "synset", "label", "object_fraction", "mask_ok")
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {', '.join(missing)}")
    _bad(path, "image_id", frame, frame["image_id"].duplicated(), "duplicate image id")
    label = pd.to_numeric(frame["label"], errors="coerce")
    _bad(path, "label", frame, ~label.between(0, 999) | label.isna(), "label outside 0..999")
    frac = pd.to_numeric(frame["object_fraction"], errors="coerce")
    _bad(path, "object_fraction", frame, ~frac.between(0, 1) | frac.isna(), "not in [0, 1]")
    truth = {"true": True, "false": False, "1": True, "0": False}
    ok = frame["mask_ok"].map(lambda v: truth.get(str(v).strip().lower()))
    _bad(path, "mask_ok", frame, ok.isna(), "not a boolean")
    frame["label"] = label.astype(int)
    frame["object_fraction"] = frac.astype(float)
    frame["mask_ok"] = ok.astype(bool)
    return frame


#: Columns a predictions table must have; the top-2..5 pairs may be absent or left empty.
PREDICTION_REQUIRED: tuple[str, ...] = (
    "image_id", "synset", "label", "variant", "model", "top1", "prob1",
)  # fmt: skip


def _labels(path: Path, frame: pd.DataFrame, column: str, optional: bool) -> pd.Series:
    """``column`` as integers in 0..999 (nullable when ``optional``), or a TableError."""
    raw = frame[column]
    value = pd.to_numeric(raw, errors="coerce")
    empty = raw.isna()
    fractional = value.notna() & (value % 1 != 0)
    bad = (value.isna() & ~empty) | ~(value.between(0, 999) | value.isna()) | fractional
    if not optional:
        bad |= empty
    _bad(path, column, frame, bad, "label outside 0..999")
    return value.astype("Int64") if optional else value.astype(int)


def _probabilities(path: Path, frame: pd.DataFrame, column: str, optional: bool) -> pd.Series:
    """``column`` as floats in [0, 1] (NaN where empty and ``optional``), or a TableError."""
    raw = frame[column]
    value = pd.to_numeric(raw, errors="coerce")
    bad = (value.isna() & ~raw.isna()) | ~(value.between(0, 1) | value.isna())
    if not optional:
        bad |= raw.isna()
    _bad(path, column, frame, bad, "probability outside [0, 1]")
    return value.astype(float)


def read_predictions(path: str | Path, variants: Sequence[str]) -> pd.DataFrame:
    """Read a ``data/predictions/<model>.csv`` table and validate it.

    Refuses missing columns, variants not in ``variants``, labels outside 0..999, probabilities
    outside [0, 1] and repeated (image, variant) rows, naming file, column and first bad row.
    Returns every column of :data:`PREDICTION_COLUMNS`: ``label``/``top1`` as int, ``top2..top5``
    as nullable ``Int64`` and ``prob2..prob5`` as float, empty (NA) where only the top-1 is known.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: predictions table not found")
    text = ("image_id", "synset", "variant", "model")
    try:
        frame = pd.read_csv(path, dtype=dict.fromkeys(text, str), keep_default_na=False,
                            na_values=[""])  # fmt: skip
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TableError(f"{path}: not a readable CSV table ({exc})") from None
    missing = [c for c in PREDICTION_REQUIRED if c not in frame.columns]
    for k in range(2, 6):
        pair = (f"top{k}", f"prob{k}")
        missing += [c for c in pair if c not in frame.columns and any(p in frame for p in pair)]
    if missing:
        raise TableError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in text:
        _bad(path, column, frame, frame[column].isna(), "empty value")
    known = list(variants)
    _bad(path, "variant", frame, ~frame["variant"].isin(known),
         f"unknown variant (known: {', '.join(known)})")  # fmt: skip
    frame["label"] = _labels(path, frame, "label", optional=False)
    frame["top1"] = _labels(path, frame, "top1", optional=False)
    frame["prob1"] = _probabilities(path, frame, "prob1", optional=False)
    for k in range(2, 6):
        top, prob = f"top{k}", f"prob{k}"
        if top not in frame.columns:
            frame[top] = pd.array([pd.NA] * len(frame), dtype="Int64")
            frame[prob] = np.nan
            continue
        frame[top] = _labels(path, frame, top, optional=True)
        frame[prob] = _probabilities(path, frame, prob, optional=True)
        unpaired = frame[top].isna() != frame[prob].isna()
        _bad(path, prob, frame, unpaired, f"{top} and {prob} must both be given or both be empty")
    duplicated = frame.duplicated(["image_id", "variant"])
    _bad(path, "variant", frame, duplicated, "second prediction for the same image and variant")
    return frame
