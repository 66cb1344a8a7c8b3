"""Run-time helpers shared by the stages: device choice, logging, and the end-of-stage summary."""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when a device is picked, not by every stage
    import torch

log = logging.getLogger("bgimpact")


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr as ``bgimpact <level>: message`` (INFO, or DEBUG when verbose)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity, else the machine's), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores)


def pick_device(spec: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU; otherwise the device named (``cuda:1``)."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available")
    return device


@dataclass
class StageSummary:
    """Counts what a stage did and prints one summary line at the end."""

    stage: str
    done: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def skip(self, item: str, reason: str) -> None:
        """Record and log an item that was not processed."""
        self.skipped[item] = reason
        log.warning("%s: skipped %s: %s", self.stage, item, reason)

    @property
    def seconds(self) -> float:
        """Wall time since the summary was created."""
        return time.perf_counter() - self.started

    def line(self, unit: str = "images", **extra: object) -> str:
        """One line: counts, seconds and rate, then any extra ``key=value`` figures."""
        secs = self.seconds
        rate = self.done / secs if secs > 0 else 0.0
        parts = [f"{self.stage}: {self.done} {unit}", f"{len(self.skipped)} skipped"]
        parts += [f"{k}={v}" for k, v in extra.items()]
        parts += [f"{secs:.1f} s", f"{rate:.2f} {unit}/s"]
        return ", ".join(parts)

    def report(self, unit: str = "images", **extra: object) -> None:
        """Print the summary line (stdout) and list skipped items (stderr)."""
        for item, reason in self.skipped.items():
            print(f"  skipped {item}: {reason}", file=sys.stderr)
        print(self.line(unit, **extra), flush=True)
