"""Argument parsing shared by the stage scripts: every path is an option defaulting to params."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from functools import reduce
from pathlib import Path

from bgimpact.config import ConfigError, Params, load_params
from bgimpact.files import DatasetError, ImageReadError
from bgimpact.runtime import setup_logging
from bgimpact.tables import TableError

#: Errors that stop a stage with a one-line message instead of a traceback (plus
#: ``weights.WeightsError`` once that module is loaded: see :func:`user_errors`).
USER_ERRORS = (ConfigError, DatasetError, TableError, ImageReadError)


def user_errors() -> tuple[type[Exception], ...]:
    """USER_ERRORS, plus WeightsError when ``bgimpact.weights`` was imported.

    Importing it here would load torch and torchvision (seconds) in every stage, also in
    those that never touch a model; a WeightsError can only come from a loaded module.
    """
    weights = sys.modules.get("bgimpact.weights")
    return USER_ERRORS + ((weights.WeightsError,) if weights is not None else ())


def parse_workers(text: str) -> int | str:
    """A ``--num-workers`` value: ``auto`` or a count >= 0 (for argparse's ``type``)."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a count >= 0, got {text!r}")
    return value


def param_value(params: Params, key: str) -> object:
    """The value of a dotted params key, e.g. ``data.masks``."""
    return reduce(getattr, key.split("."), params)


class StageCLI:
    """An argparse parser whose path options default to the values in params.yaml.

    ``--params`` is read first, so ``--help`` shows the defaults that a run would use.
    """

    def __init__(self, description: str | None, argv: Sequence[str] | None = None) -> None:
        self.argv = list(sys.argv[1:] if argv is None else argv)
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--params", type=Path, default=Path("params.yaml"))
        known, _ = pre.parse_known_args(self.argv)
        try:
            self.params = load_params(known.params)
        except ConfigError as exc:
            sys.exit(f"error: {exc}")
        self.parser = argparse.ArgumentParser(
            description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        self.parser.add_argument("--params", type=Path, default=known.params, help="params file")
        self.parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    def path(self, flag: str, key: str, help: str) -> None:
        """Add a path option whose default is the params value at ``key``."""
        default = param_value(self.params, key)
        self.parser.add_argument(flag, type=Path, default=default, help=f"{help} [params: {key}]")

    def option(self, *flags: str, **kwargs: object) -> None:
        """Add any other option (argparse's ``add_argument``)."""
        self.parser.add_argument(*flags, **kwargs)  # type: ignore[arg-type]

    def parse(self) -> argparse.Namespace:
        """Parse the command line and set up logging."""
        args = self.parser.parse_args(self.argv)
        setup_logging(args.verbose)
        return args


def run_stage(main: Callable[[], int | None]) -> None:
    """Run a stage's ``main``; known user errors end it with ``error: <message>`` and exit 1."""
    try:
        code = main()
    except Exception as exc:
        if not isinstance(exc, user_errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code or 0)
