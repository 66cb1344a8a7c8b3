"""The CSV tables of CONTRACTS.md: column lists, atomic writing, and validated reading."""

from __future__ import annotations

import io
from pathlib import Path

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
        raise TableError(f"{path}: column {column!r}, row {pos + 2} (line {pos + 2}): {what}, "
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
