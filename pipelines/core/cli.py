"""What every job shares at its edge: argument types, logging and the exit code on errors."""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import date

from pipelines.core.errors import FraudScoringError

log = logging.getLogger("fraud_scoring")

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def calendar_date(text: str) -> date:
    """An argparse type: a real calendar date written ``YYYY-MM-DD``, nothing else.

    Example::

        calendar_date("2013-09-02")   # date(2013, 9, 2)
        calendar_date("2013-02-30")   # ArgumentTypeError
    """
    if not _ISO_DATE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date written YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a real calendar date") from None


def job_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every job takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--env",
        default="local",
        help="config in conf/ (local, cluster) or a path to a .toml file (default: local)",
    )
    return parser


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a job's ``main``; an expected error prints one clear line and exits non-zero."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # XGBoost logs every training call and prediction at INFO; MLflow's Spark flavor says at
    # INFO that it copies a model to a temporary folder, in words that read like a failure.
    for chatty in ("XGBoost-PySpark", "mlflow.spark"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return main(argv)
    except FraudScoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def git_commit(directory: str) -> str:
    """The checked-out commit of ``directory`` (``-dirty`` if it has changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "-C", directory, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", directory, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
