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


def dumps(obj: Any) -> str:
    """Strict JSON (no NaN): numpy scalars/arrays converted, non-finite floats become null."""
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(dumps(obj) + "\n")
