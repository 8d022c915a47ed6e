"""Subcommands of ``idfree-audit``; shared output helpers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from idfree_core.jsonable import to_jsonable


SEED_MAX = 2**63 - 1


def seed_arg(text: str) -> int:
    """``--seed``: an integer in [0, 2**63 - 1] (the range every seeded component accepts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {SEED_MAX}], got {text[:40]!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {SEED_MAX}], got {text[:40]!r}")
    return value


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    """``--progress``: bars on stderr even off a terminal (:func:`idfree_core.progress.want_progress`)."""
    parser.add_argument("--progress", action="store_true",
                        help="draw progress on stderr even when it is not a terminal (a log file, CI); "
                             "without it progress shows only on a terminal, with or without --json "
                             "(stdout stays pure JSON)")


def progress_wanted(args: argparse.Namespace) -> bool:
    from idfree_core.progress import want_progress

    return want_progress(getattr(args, "progress", False))


def dumps(obj: Any) -> str:
    """Strict JSON (no NaN): numpy scalars/arrays converted, non-finite floats become null."""
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(dumps(obj) + "\n")
