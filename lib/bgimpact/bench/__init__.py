"""Benchmarks: ``python -m bgimpact.bench {segment,variants,classify,evaluate,all}``.

Each benchmark lives in a submodule with a ``run(argv) -> None`` function that prints the stage's
throughput next to its baseline (pure model forward, thesis-style loop) measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = ("segment", "variants", "classify", "evaluate")


def main(argv: list[str] | None = None) -> int:
    """Run one benchmark, or all of them in order."""
    parser = argparse.ArgumentParser(prog="python -m bgimpact.bench", description=main.__doc__)
    parser.add_argument("name", choices=(*BENCHMARKS, "all"))
    args, rest = parser.parse_known_args(argv)
    for name in BENCHMARKS if args.name == "all" else (args.name,):
        print(f"== bench {name}", flush=True)
        importlib.import_module(f"bgimpact.bench.{name}").run(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
