"""Peak resident memory of a process, measured so that its parent's memory does not count.

On Linux the ``ru_maxrss`` that ``getrusage``/``wait4`` report for a process started by a large
one includes the parent's resident memory at ``fork`` (the kernel carries it over ``exec``):
a small stage started from a benchmark that holds 1.6 GiB reports 1.6 GiB. ``VmHWM`` of
``/proc/<pid>/status`` belongs to the program's own address space, created by ``exec``.

``python -m bgimpact.bench.peak SCRIPT [ARGS...]`` runs a script as ``__main__`` and prints
``PEAK_PREFIX <MiB>`` on stderr when it exits, however it exits.
"""

from __future__ import annotations

import atexit
import resource
import runpy
import sys

#: Start of the line that :func:`main` prints; :func:`parse_peak` looks for it.
PEAK_PREFIX = "bgimpact-peak-rss-mib:"


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def parse_peak(output: str) -> float | None:
    """The MiB figure of the last :data:`PEAK_PREFIX` line in ``output``, if any."""
    lines = [line for line in output.splitlines() if line.startswith(PEAK_PREFIX)]
    return float(lines[-1].removeprefix(PEAK_PREFIX)) if lines else None


def main(argv: list[str]) -> None:
    """Run ``argv[0]`` with arguments ``argv[1:]``; report its peak memory at exit."""
    if not argv:
        sys.exit("usage: python -m bgimpact.bench.peak SCRIPT [ARGS...]")
    atexit.register(lambda: print(f"{PEAK_PREFIX} {peak_rss_mib():.1f}", file=sys.stderr))
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
