"""Benchmark helpers: the peak memory of a measured process is its own, not its parent's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bgimpact.bench.peak import PEAK_PREFIX, parse_peak
from conftest import REPO

MIB = 1 << 20


def test_peak_is_the_scripts_own_not_its_parents(tmp_path: Path) -> None:
    script = tmp_path / "allocate.py"
    script.write_text(
        "import sys\n"
        f"block = b'\\x01' * (150 * {MIB})  # 150 MiB, resident\n"
        "print('args', sys.argv[1:])\n"
        "sys.exit(3)\n"
    )
    ballast = b"\x01" * (600 * MIB)  # the parent holds 600 MiB when it starts the child
    result = subprocess.run(
        [sys.executable, "-m", "bgimpact.bench.peak", str(script), "--flag", "x"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert len(ballast) == 600 * MIB
    assert result.returncode == 3  # the script's own exit status
    assert "args ['--flag', 'x']" in result.stdout
    peak = parse_peak(result.stderr)
    assert peak is not None, result.stderr
    assert 150 <= peak < 400, peak  # the child's 150 MiB and its interpreter, not the 600


def test_parse_peak_takes_the_last_line() -> None:
    assert parse_peak(f"noise\n{PEAK_PREFIX} 12.5\n{PEAK_PREFIX} 40.0\nmore") == 40.0
    assert parse_peak("no figure here") is None
