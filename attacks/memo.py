"""One suite run's memo of derived values: what several attacks compute identically from one pool.

:func:`attacks.suite.run_attacks` runs in a :func:`scope` (:func:`scoped`); inside it :func:`memoized` computes a value
once per key and hands every later caller the same object, which callers must not change in place
(not made read-only: torch warns on non-writable arrays; ``scope(check=True)`` verifies on exit that
no value changed, and the suite's tests run with it).  Outside a scope it just computes.  The keys:

* the standardised embedding matrix (:func:`attacks.features.standardized_embedding`, float64 and
  its float32 copy), keyed by the pool object (kept alive by the memo, so its ``id`` is not reused):
  at 200,000 x 64 the clustering group standardised it seven times, 0.36 s each;
* a partition score's permutation null and bootstrap (:func:`attacks.scoring.score_partition`), keyed
  by the content of the two label vectors (:func:`content_key`): ``clustering[auto]`` and
  ``clustering[em]`` share one mixture at scale and so one partition, which was scored twice.

The memo lives as long as the scope (one suite run), so it holds no memory past it.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
from contextlib import contextmanager
from typing import Any, Callable

import numpy as np


class _Memo(dict):
    """key -> (kept object, value, content key at creation or ``None``); ``check``: record content keys."""

    def __init__(self, check: bool) -> None:
        super().__init__()
        self.check = check


_MEMO: contextvars.ContextVar[_Memo | None] = contextvars.ContextVar("attacks_memo", default=None)


@contextmanager
def scope(check: bool = False):
    """Memoize inside the ``with`` block (nested scopes share the outer one's memo).  ``check``: on exit,
    raise ``RuntimeError`` if a memoized array was changed in place (its content key at creation differs)."""
    token = _MEMO.set(_Memo(check)) if _MEMO.get() is None else None
    try:
        yield
        memo = _MEMO.get()
        if check and memo is not None and memo.check:
            for key, (_, value, created) in memo.items():
                if created is not None and content_key(*_arrays(value)) != created:
                    raise RuntimeError(f"memoized value {key[0]!r} was changed in place by a caller")
    finally:
        if token is not None:
            _MEMO.reset(token)


def scoped(fn: Callable) -> Callable:
    """Decorator: ``fn`` runs inside a :func:`scope`."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with scope():
            return fn(*args, **kwargs)

    return run


def active() -> bool:
    return _MEMO.get() is not None


def memoized(key, compute: Callable[[], Any], keep: Any = None) -> Any:
    """``compute()`` once per ``key`` within the scope (always, outside one); ``keep``: an object held with
    the value (the pool whose ``id`` is in the key)."""
    memo = _MEMO.get()
    if memo is None:
        return compute()
    if key not in memo:
        value = compute()
        arrays = _arrays(value)
        memo[key] = (keep, value, content_key(*arrays) if arrays and memo.check else None)
    return memo[key][1]


def _arrays(value) -> list[np.ndarray]:
    """The arrays in ``value`` (an array, or a dict / tuple / list of them, nested)."""
    if isinstance(value, np.ndarray):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else ()
    return [a for v in items for a in _arrays(v)]


def content_key(*arrays: np.ndarray) -> str:
    """A collision-resistant key of arrays' shapes, dtypes and bytes (blake2b)."""
    h = hashlib.blake2b(digest_size=20)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(repr((a.shape, a.dtype.str)).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()
