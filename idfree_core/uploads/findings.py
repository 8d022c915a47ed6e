"""Identifier-like columns in an uploads file: by normalised name and by content.

A pool carrying a column that identifies the user or the device is a privacy finding whatever the
embeddings do.  A column (other than the contract's ``upload_id``, ``embedding``/``emb_*``,
``text``, ``label``, ``session``) is flagged when

* **its name** says so once normalised (case, surrounding blanks, ``-``/``.``/spaces to ``_``,
  camelCase split): the whole name matches :data:`IDENTIFIER_PATTERN` or one of its words is an
  identifier word (``user``, ``email``, ``ip``, ``android``, ``device``, ...), so ``user-id``,
  ``client_ip``, ``android_id``, ``hashed_email``, ``user_hash``, ``" user"`` and ``"USER_ID "`` are;
* **its content** groups the uploads like users: with the oracle, its groups agree with the
  oracle's users (purity and inverse purity both >= :data:`AGREEMENT`); without it, a discrete
  column (strings or integers) with repeated values (at least 2 distinct values, on average >= 2
  uploads per value, none holding half the rows), the signature of a per-user key;
* **free text** in it holds e-mail addresses or ``@handles`` (in at least one row).
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np

__all__ = ["IDENTIFIER_PATTERN", "IDENTIFIER_WORDS", "normalise_name", "identifier_like", "identifier_findings"]

CONTRACT = frozenset({"upload_id", "embedding", "text", "label", "session"})
# Column names that identify a user or a device (matched on the normalised name).
IDENTIFIER_PATTERN = re.compile(
    r"^(user|user_?id|uid|userid|username|user_?name|author|account|account_?id|email|"
    r"device|device_?id|client|client_?id|ip|ip_?addr(ess)?|mac|imei|idfa|phone|"
    r"cookie|session_?id|install_?id|advertising_?id)$",
    re.IGNORECASE,
)
IDENTIFIER_WORDS = frozenset({
    "user", "users", "uid", "userid", "username", "author", "account", "email", "e_mail", "mail", "device",
    "client", "ip", "ipv4", "ipv6", "mac", "imei", "idfa", "gaid", "android", "ios", "phone", "msisdn", "cookie",
    "install", "advertising", "handle", "login", "customer", "member", "person", "owner", "sender", "subscriber",
})
AGREEMENT = 0.9
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
HANDLE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{2,30}\b")


def normalise_name(name: str) -> str:
    """``" USER-Id "`` -> ``"user_id"``; ``"clientIP"`` -> ``"client_ip"``."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name).strip())
    s = re.sub(r"[^0-9A-Za-z]+", "_", s).strip("_").lower()
    return s


def _name_flag(name: str) -> bool:
    norm = normalise_name(name)
    if norm in CONTRACT and name == norm:
        return False
    if IDENTIFIER_PATTERN.match(norm) or IDENTIFIER_PATTERN.match(norm.replace("_", "")):
        return True
    words = norm.split("_")
    return any(w in IDENTIFIER_WORDS for w in words) or any("_".join(words[i:i + 2]) in IDENTIFIER_WORDS
                                                           for i in range(len(words) - 1))


def _discrete(values: np.ndarray) -> np.ndarray | None:
    """The column as comparable keys (strings or integers), or ``None`` for continuous/other data."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return arr
    if arr.dtype.kind == "f":
        finite = arr[np.isfinite(arr)]
        return arr if finite.size and np.all(finite == np.round(finite)) else None
    if arr.dtype.kind in "OUS":
        return np.asarray(["" if v is None else str(v) for v in arr.tolist()], dtype=object)
    return None


def _groups(keys: np.ndarray) -> np.ndarray:
    return np.unique(keys.astype(str) if keys.dtype == object else keys, return_inverse=True)[1].reshape(-1)


def _purity(a: np.ndarray, b: np.ndarray) -> float:
    """Share of rows in the majority ``b`` class of their ``a`` group."""
    width = int(b.max()) + 1
    pairs, counts = np.unique(a.astype(np.int64) * width + b, return_counts=True)
    best = np.zeros(int(a.max()) + 1, dtype=np.int64)
    np.maximum.at(best, pairs // width, counts)
    return float(best.sum() / len(a))


def _content_flag(values: np.ndarray, users: np.ndarray | None) -> bool:
    keys = _discrete(values)
    if keys is None:
        return False
    groups = _groups(keys)
    n, k = len(groups), int(groups.max()) + 1 if len(groups) else 0
    if users is not None:
        u = _groups(np.asarray(users, dtype=object))
        return k >= 2 and _purity(groups, u) >= AGREEMENT and _purity(u, groups) >= AGREEMENT
    top = np.bincount(groups).max() if n else 0
    return k >= 2 and n >= 2 * k and top < 0.5 * n


def _text_flag(values: np.ndarray) -> bool:
    arr = np.asarray(values)
    if arr.dtype.kind not in "OUS":
        return False
    return any(isinstance(v, str) and (EMAIL.search(v) or HANDLE.search(v)) for v in arr.tolist())


def identifier_like(name: str, values: np.ndarray, users: np.ndarray | None = None) -> bool:
    """Whether column ``name`` with ``values`` (one per upload) looks like a user/device identifier.

    ``users``: the oracle's user of each row (aligned), to test agreement instead of repetition.
    """
    if _name_flag(name):
        return True
    if str(name) in CONTRACT:
        return False
    return _content_flag(values, users) or _text_flag(values)


def identifier_findings(columns: Mapping[str, np.ndarray], upload_id: np.ndarray | None = None,
                        oracle=None) -> tuple[str, ...]:
    """Names of the identifier-like columns among ``columns`` (name -> one value per upload).

    With an ``oracle`` (and the rows' ``upload_id``) the content test is agreement with its users.
    """
    users = None
    if oracle is not None and upload_id is not None:
        users = oracle.users_for(upload_id)
    return tuple(name for name, values in columns.items()
                 if not re.fullmatch(r"emb_\d+", str(name)) and identifier_like(name, values, users))
