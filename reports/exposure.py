"""Per-user exposure: the mean misattribution hides the worst user, so the report lists the most exposed.

``per_user_exposure`` combines, per user, the Bayes-optimal misattribution of that user's uploads
(``MisattributionEstimate.per_user``: P(MAP attributor wrong | upload from this user)) with the
linkage attack's top-1 success on that user's later uploads (from ``AttackReport.summary["linkage"]
["links"]`` and the oracle codes).  Low misattribution and high linkage mean an exposed user.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np


def per_user_exposure(per_user_misattribution: Sequence[float] | None, linkage: Mapping[str, Any] | None,
                      codes: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    """One dict per user: ``user, misattribution, linkage_top1, n_links`` (None where not measured)."""
    codes = np.asarray(codes)
    n = len(names)
    hits, tries = np.zeros(n), np.zeros(n)
    links = (linkage or {}).get("links") or []
    if links and not (linkage or {}).get("links_truncated"):
        q = np.array([int(l["query"]) for l in links])
        r = np.array([int(l["linked"]) for l in links])
        np.add.at(tries, codes[q], 1)
        np.add.at(hits, codes[q], (codes[q] == codes[r]).astype(float))
    mis = list(per_user_misattribution) if per_user_misattribution is not None else [None] * n
    out = []
    for u in range(n):
        m = mis[u] if u < len(mis) else None
        out.append({"user": str(names[u]),
                    "misattribution": None if m is None or not math.isfinite(float(m)) else float(m),
                    "linkage_top1": float(hits[u] / tries[u]) if tries[u] else None, "n_links": int(tries[u])})
    return out


def most_exposed(users: Sequence[Mapping[str, Any]], k: int = 10) -> list[Mapping[str, Any]]:
    """The ``k`` most exposed users: lowest misattribution first, then highest linkage success."""
    def key(u):
        m = u.get("misattribution")
        lk = u.get("linkage_top1")
        return (math.inf if m is None else m, -(lk if lk is not None else -1.0))

    return sorted(users, key=key)[:k]
