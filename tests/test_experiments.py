"""DVC experiments: ``dvc exp run -S key=value`` reruns what the key feeds, metrics diff shows it.

The experiment changes ``evaluate.bootstrap.seed``: only the evaluation reruns (cheap), the
point estimates stay the same and the bootstrap intervals move, so the difference table lists
exactly the interval bounds (and the seed recorded in the metrics' settings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import clone_with_cache, run_dvc

pytestmark = pytest.mark.slow

METRICS = "metrics/efficientnet_lite0.json"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists kept as values), as DVC names metrics."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def test_exp_run_with_a_param_then_metrics_diff(reproduced_repo: Path, tmp_path: Path) -> None:
    repo = clone_with_cache(reproduced_repo, tmp_path / "exp")
    before = flatten(json.loads((repo / METRICS).read_text()))
    assert before["settings.bootstrap.seed"] == 0

    run = run_dvc(repo, "exp", "run", "-S", "evaluate.bootstrap.seed=7")
    assert "Running stage 'evaluate@efficientnet_lite0'" in run.stdout
    for upstream in ("segment", "remove_bg", "apply_scenic@city", "classify@efficientnet_lite0"):
        assert f"Running stage '{upstream}'" not in run.stdout, upstream
    after = flatten(json.loads((repo / METRICS).read_text()))
    assert after["settings.bootstrap.seed"] == 7

    changed = {k for k in before if before[k] != after.get(k)}
    assert "settings.bootstrap.seed" in changed
    intervals = {k for k in changed if "_ci." in k}
    assert intervals, "a new bootstrap seed moves at least one interval bound"
    # Point estimates do not depend on the seed.
    assert changed == intervals | {"settings.bootstrap.seed"}
    assert after["overall.original.accuracy"] == before["overall.original.accuracy"]

    diff = json.loads(run_dvc(repo, "metrics", "diff", "--json").stdout)
    rows = diff[METRICS]
    assert set(rows) == changed
    for key, row in rows.items():
        assert row["old"] == before[key] and row["new"] == after[key], key

    # The wrapper: `make metrics-diff` prints the table (HEAD against the workspace).
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    venv = Path(sys.executable).parent.parent
    table = run_make(repo, env, "metrics-diff", f"VENV={venv}", "SETUP_VENV=no")
    header = next(line for line in table.splitlines() if line.startswith("Path"))
    assert header.split() == ["Path", "Metric", "HEAD", "workspace", "Change"]
    seed_row = next(line for line in table.splitlines() if "settings.bootstrap.seed" in line)
    assert seed_row.split()[-3:] == ["0", "7", "7"]
    for key in intervals:
        assert key in table
    assert "overall.original.accuracy " not in table


def run_make(repo: Path, env: dict[str, str], *args: str) -> str:
    """Run a target of ``repo``'s Makefile (a copy of this checkout's); returns stdout."""
    cmd = ["make", "--no-print-directory", "-C", str(repo), *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
