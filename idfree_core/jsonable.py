"""Strict-JSON conversion shared by every writer: numpy values to Python, non-finite floats to null."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays converted and NaN/inf replaced by ``None`` (JSON null).

    JSON has no NaN or Infinity; null means "not available".  Dict keys become strings.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


JSON_LIMITS = {"max_bytes": 512 * 2**20, "max_int_digits": 30}


def loads_bounded(text: str, what: str = "JSON", max_int_digits: int = JSON_LIMITS["max_int_digits"]) -> Any:
    """Strict ``json.loads``: NaN/Infinity, numbers overflowing a float and integers longer than
    ``max_int_digits`` digits are refused, and nesting too deep for the parser is a one-line
    ``ValueError`` (not a ``RecursionError``).  ``what`` names the source in messages."""
    import json

    def bad_constant(name):
        raise ValueError(f"{what}: non-finite number {name} is not allowed")

    def parse_int(s):
        if len(s.lstrip("-")) > max_int_digits:
            raise ValueError(f"{what}: an integer of {len(s.lstrip('-'))} digits is past the limit of {max_int_digits}")
        return int(s)

    def parse_float(s):
        v = float(s)
        if not math.isfinite(v):
            raise ValueError(f"{what}: number {s[:20]} overflows a float")
        return v

    try:
        return json.loads(text, parse_constant=bad_constant, parse_int=parse_int, parse_float=parse_float)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise ValueError(f"{what}: JSON nested too deeply") from None


def read_json_bounded(path, max_bytes: int = JSON_LIMITS["max_bytes"], **kw) -> Any:
    """:func:`loads_bounded` of the regular file ``path``, refused past ``max_bytes`` before reading."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: file not found")
    if not p.is_file():
        raise ValueError(f"{p}: not a regular file")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ValueError(f"{p}: cannot read ({type(exc).__name__})") from None
    if len(raw) > max_bytes:
        raise ValueError(f"{p}: larger than the limit of {max_bytes} bytes (raise it with max_bytes=)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not UTF-8 text") from None
    return loads_bounded(text, str(p), **kw)
