"""The attack protocol and the scoring every attack shares.

An attack is a scikit-learn style estimator: hyperparameters in ``__init__``, ``fit(pool)`` returns
``self`` and sets fitted state ending in ``_``.  It never sees the oracle or the true
distributions while fitting; those arrive only in ``score(pool, oracle, distributions=None)``,
which returns a list of :class:`AttackResult`.

Every result states the random-guess ``baseline``, the ``advantage`` over it with a confidence
interval, and, where the true user distributions are known, the Bayes-optimal ``ceiling`` from
:mod:`privacy_audit.misattribution`.  How each of these is computed (permutation baselines for
matched scores, Wilson/Clopper-Pearson or bootstrap intervals, advantage intervals that contain 0
under the null at least at the nominal rate) is documented in :mod:`attacks.scoring`, which
implements it for partitions (clustering) and links (linkage).  :data:`ATTACK_REGISTRY` lists the
attacks the conformance battery ``tests/conformance/test_attack_null.py`` runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy import stats

# The fixed vocabulary of metric names, with their direction for the *attacker*
# (True: higher means a stronger attack, i.e. less privacy).
METRICS: dict[str, bool] = {
    "ari": True,
    "nmi": True,
    "attribution_accuracy": True,
    "linkage_top1": True,
    "linkage_top5": True,
    "auc": True,
    "tpr_at_1pct_fpr": True,
    "tpr_at_0.1pct_fpr": True,
    "parameter_error": False,
    "attribute_accuracy": True,
}

# What the adversary is assumed to know.
KNOWLEDGE = ("embeddings", "text", "embeddings+text", "embeddings+family")


@dataclass(frozen=True)
class AttackResult:
    """One scored metric of one attack (the JSON row of ``idfree-audit attack``).

    ``advantage = value - baseline``; ``advantage_ci`` is its confidence interval.
    ``ceiling`` is the Bayes-optimal value for the metric when the true user distributions are
    known (``None`` otherwise); ``efficiency = value / ceiling`` where both make sense.
    """

    name: str
    metric: str
    value: float
    ci: tuple[float, float]
    baseline: float
    advantage: float
    advantage_ci: tuple[float, float]
    ceiling: float | None
    n: int
    knowledge: str
    features: str = "embedding"
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; expected one of {sorted(METRICS)}")
        if self.knowledge not in KNOWLEDGE:
            raise ValueError(f"unknown knowledge {self.knowledge!r}; expected one of {KNOWLEDGE}")

    @property
    def efficiency(self) -> float | None:
        if self.ceiling is None or self.ceiling <= 0:
            return None
        return float(self.value / self.ceiling)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci"] = list(self.ci)
        out["advantage_ci"] = list(self.advantage_ci)
        out["efficiency"] = self.efficiency
        return out


@runtime_checkable
class Attack(Protocol):
    """What every attack implements (checked by ``tests/conformance/test_attack_null.py``)."""

    name: str
    random_state: Any

    def fit(self, pool) -> "Attack": ...

    def score(self, pool, oracle, distributions=None) -> list[AttackResult]: ...


def proportion_ci(successes: int, trials: int, confidence: float = 0.95, method: str = "wilson") -> tuple[float, float]:
    """Confidence interval for a binomial proportion (scipy's ``binomtest``: Wilson or exact)."""
    if trials <= 0:
        return (0.0, 1.0)
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method=method)
    return (float(ci.low), float(ci.high))


def check_random_state(seed) -> np.random.Generator:
    """A ``numpy.random.Generator`` from ``None`` (fresh entropy), an int, or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise ValueError(f"random_state must be None, an int or a numpy Generator, got {type(seed).__name__}")


# --------------------------------------------------------------------------- registry
# Every attack the conformance suite (tests/conformance/test_attack_null.py) runs: name -> factory
# taking keyword hyperparameters (``random_state``, ``features``, ...).  Factories import lazily so
# that this module stays import-cycle free; other modules add theirs with :func:`register_attack`.


def _lazy_factory(module: str, cls: str, **defaults):
    def make(**overrides):
        import importlib

        return getattr(importlib.import_module(module), cls)(**{**defaults, **overrides})

    make.__qualname__ = f"{cls}({', '.join(f'{k}={v!r}' for k, v in defaults.items())})"
    return make


ATTACK_REGISTRY: dict[str, Any] = {
    "clustering.kmeans": _lazy_factory("attacks.clustering", "ClusteringAttack", method="kmeans"),
    "clustering.gmm": _lazy_factory("attacks.clustering", "ClusteringAttack", method="gmm"),
    "clustering.agglomerative": _lazy_factory("attacks.clustering", "ClusteringAttack", method="agglomerative"),
    "clustering.hdbscan": _lazy_factory("attacks.clustering", "ClusteringAttack", method="hdbscan"),
    "clustering.auto": _lazy_factory("attacks.clustering", "ClusteringAttack", method="auto"),
    "linkage.nearest_neighbour": _lazy_factory("attacks.linkage", "NearestNeighbourLinkage"),
    "linkage.likelihood_ratio": _lazy_factory("attacks.linkage", "LikelihoodRatioLinkage"),
}


def register_attack(name: str, factory) -> None:
    """Add an attack factory (``factory(**hyperparameters) -> Attack``) to :data:`ATTACK_REGISTRY`."""
    ATTACK_REGISTRY[name] = factory
