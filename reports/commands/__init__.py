"""Subcommands of ``idfree-audit``; shared output helpers."""

from __future__ import annotations

import json
import sys
from typing import Any

from idfree_core.jsonable import to_jsonable


def dumps(obj: Any) -> str:
    """Strict JSON (no NaN): numpy scalars/arrays converted, non-finite floats become null."""
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(dumps(obj) + "\n")
