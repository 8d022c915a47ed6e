"""Subcommands of ``idfree-audit``; shared output helpers."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN/Infinity; null means "not available"
    return obj


def dumps(obj: Any) -> str:
    """Strict JSON (no NaN): numpy scalars/arrays converted, non-finite floats become null."""
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False)


def print_json(obj: Any) -> None:
    sys.stdout.write(dumps(obj) + "\n")
