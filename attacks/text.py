"""Text-only leakage, and the *marginal* leakage the embeddings add beyond what the text reveals.

Every feature-based attack (clustering, linkage) takes ``features="text" | "embedding" | "both"``
(:func:`attacks.features.build_features`: TF-IDF + truncated SVD for text).  An upload's text may
identify its author on its own (style, topics), so the privacy cost of the *embeddings* is the
difference

    marginal = value(both) - value(text)

for the same attack and metric.  Its confidence interval combines the two results' intervals by
the MOVER method (method of variance estimates recovery; Newcombe 1998 for proportions, Zou &
Donner 2008 in general): with ``(l1, u1)`` the interval of ``value(both) = v1`` and ``(l2, u2)``
that of ``value(text) = v2``,

    L = d - sqrt((v1 - l1)^2 + (u2 - v2)^2),   U = d + sqrt((u1 - v1)^2 + (v2 - l2)^2).

This treats the two estimates as independent; both are computed on the same uploads and are
positively correlated, which makes the interval conservative (wider than necessary).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

import numpy as np

from attacks.base import METRICS, AttackResult

FEATURE_SETS = ("text", "embedding", "both")
KNOWLEDGE_OF_FEATURES = {"embedding": "embeddings", "text": "text", "both": "embeddings+text"}


@dataclass(frozen=True)
class MarginalLeakage:
    """What the embeddings add, for one attack and metric, beyond the text alone.

    ``marginal = both - text`` in the attacker's direction of the metric (for a lower-is-stronger
    metric the sign is flipped so that a positive marginal always means *more* leakage).
    """

    name: str
    metric: str
    text: float
    embedding: float | None
    both: float
    marginal: float
    ci: tuple[float, float]
    n: int

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ci"] = list(self.ci)
        return out


def mover_difference(v1: float, ci1: tuple[float, float], v2: float, ci2: tuple[float, float]) -> tuple[float, float]:
    """MOVER confidence interval of ``v1 - v2`` from the two estimates' intervals (module doc)."""
    d = v1 - v2
    lo = d - np.hypot(v1 - ci1[0], ci2[1] - v2)
    hi = d + np.hypot(ci1[1] - v1, v2 - ci2[0])
    return float(lo), float(hi)


_JOINT_START = re.compile(r"\[joint, \w+ start\]")


def marginal_leakage(results: Iterable[AttackResult]) -> list[MarginalLeakage]:
    """Marginal leakage for every (attack, metric) scored with both ``features="text"`` and ``"both"``.

    Under ``"both"`` an attack may score several fits (clustering: the joint fit from each start,
    ``NAME[joint, MODALITY start]``); the strongest of them is the attack's ``both`` row here."""
    table: dict[tuple[str, str], dict[str, AttackResult]] = {}
    for r in results:
        name = _JOINT_START.sub("", r.name) if r.features == "both" else r.name
        by = table.setdefault((name, r.metric), {})
        old = by.get(r.features)
        if old is None or (r.value > old.value if METRICS[r.metric] else r.value < old.value):
            by[r.features] = r
    out = []
    for (name, metric), by in table.items():
        if "text" not in by or "both" not in by:
            continue
        t, b = by["text"], by["both"]
        if not (np.all(np.isfinite(t.ci)) and np.all(np.isfinite(b.ci))):
            continue
        lo, hi = mover_difference(b.value, b.ci, t.value, t.ci)
        sign = 1.0 if METRICS[metric] else -1.0
        marginal = sign * (b.value - t.value)
        ci = (lo, hi) if sign > 0 else (-hi, -lo)
        emb = by.get("embedding")
        out.append(MarginalLeakage(name=name, metric=metric, text=float(t.value),
                                   embedding=None if emb is None else float(emb.value), both=float(b.value),
                                   marginal=float(marginal), ci=(float(ci[0]), float(ci[1])), n=int(b.n)))
    return out


def run_across_features(make_attack: Callable[[str], object], pool, oracle, distributions=None,
                        feature_sets: Iterable[str] = FEATURE_SETS) -> list[AttackResult]:
    """Fit and score ``make_attack(features)`` for each feature set; all results in one list.

    ``make_attack`` builds a fresh attack for a feature set, e.g.
    ``lambda f: ClusteringAttack(features=f, random_state=0)``.
    """
    results: list[AttackResult] = []
    for features in feature_sets:
        attack = make_attack(features).fit(pool)
        results.extend(attack.score(pool, oracle, distributions))
    return results


def text_only_attacks(random_state=0) -> dict[str, Callable[[str], object]]:
    """Factories of the feature-based attacks that run on text alone (clustering and linkage)."""
    from attacks.clustering import ClusteringAttack
    from attacks.linkage import NearestNeighbourLinkage

    return {
        "clustering": lambda f: ClusteringAttack(method="auto", features=f, random_state=random_state),
        "linkage": lambda f: NearestNeighbourLinkage(features=f, random_state=random_state),
    }
