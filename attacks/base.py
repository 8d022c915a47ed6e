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
implements it for partitions (clustering) and links (linkage).

Extension point (issue 12): subclass :class:`Attack` (scikit-learn ``BaseEstimator`` semantics:
``get_params``/``set_params``, :func:`sklearn.base.clone` works) and call :func:`register_attack`
with a name and its tags.  :func:`registered_attacks` is what ``run_attacks`` iterates and what the
``check_attack`` battery (``tests/conformance/test_attack_null.py``) runs over.  The registered name is
the result name (the ``name`` field of every :class:`AttackResult` it produces starts with it) in
the JSON, the CLI table and the PDF.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import inspect
from typing import Any, Callable, ClassVar

import numpy as np
from scipy import stats

from idfree_core.seeding import check_random_state, seed_int  # noqa: F401  (re-exported: the one seeding helper)

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


def proportion_ci(successes: int, trials: int, confidence: float = 0.95, method: str = "wilson") -> tuple[float, float]:
    """Confidence interval for a binomial proportion (scipy's ``binomtest``: Wilson or exact)."""
    if trials <= 0:
        return (0.0, 1.0)
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=confidence, method=method)
    return (float(ci.low), float(ci.high))




# --------------------------------------------------------------------------- the base class


class Attack:
    """Base class of every attack: hyperparameters in ``__init__`` only, ``fit(pool)`` returns self.

    ``get_params``/``set_params`` follow scikit-learn's ``BaseEstimator`` (parameters are the
    ``__init__`` signature, read back from attributes of the same name), so
    ``sklearn.base.clone(attack)`` returns an unfitted copy.  Subclasses implement ``fit`` and
    ``score(pool, oracle, distributions=None) -> list[AttackResult]``, and may override
    :meth:`for_suite` to say how ``run_attacks`` builds them from its context.
    """

    name: ClassVar[str] = "attack"

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._param_names()}

    def set_params(self, **params) -> "Attack":
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for {type(self).__name__}; expected one of {sorted(valid)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def _check_fitted(self, pool, attr: str = "labels_", n_fitted: int | None = None) -> None:
        """One-line ``InputError`` unless ``fit`` ran (it set ``attr``) on a pool of ``pool.n`` uploads
        (``n_fitted``: the fitted size where ``attr`` is not a per-upload array)."""
        from idfree_core.errors import InputError

        if not hasattr(self, attr):
            raise InputError(f"{type(self).__name__}.score called before fit(pool)")
        n = int(getattr(self, attr).shape[0] if n_fitted is None else n_fitted)
        if n != pool.n:
            raise InputError(f"the attack was fitted on {n} uploads, the pool has {pool.n}")

    @classmethod
    def for_suite(cls, ctx, spec: "RegisteredAttack", features: str) -> list[tuple["Attack", dict]]:
        """The instances ``run_attacks`` fits for this registration on ``features``, each with
        scoring options (``{"known_n": bool}``); default: one instance from the registered defaults."""
        return [(spec(features=features, random_state=ctx.seed()) if "features" in cls._param_names()
                 else spec(random_state=ctx.seed()), {})]


@dataclass(frozen=True)
class RegisteredAttack:
    """One registry entry: ``name`` (the result name), the class, its default hyperparameters and tags.

    Tags: ``group`` (suite group: clustering, linkage, inversion, attribute), ``needs_oracle``
    (the attack only makes sense scored: e.g. parameter inversion selects linked uploads with it),
    ``features`` (feature sets it supports), ``metrics`` (metrics it reports), ``in_suite``
    (``run_attacks`` runs it), ``null_battery`` (the conformance battery runs it),
    ``known_n_variant`` (the suite also runs the "n_users known" adversary with the oracle's count),
    ``needs_distributions`` (scored against the true user distributions only: the battery passes them)
    and ``needs_model`` (probes the cloud model: the battery passes a model whose answers depend on
    the embedding).  Attacks with either tag are built by ``for_suite`` from the context.
    Calling the entry builds an instance: ``entry(**overrides)``.
    """

    name: str
    cls: type
    defaults: dict
    group: str
    needs_oracle: bool = False
    features: tuple = ("embedding",)
    metrics: tuple = ()
    in_suite: bool = True
    null_battery: bool = True
    known_n_variant: bool = False
    needs_distributions: bool = False
    needs_model: bool = False

    def __call__(self, **overrides):
        return self.cls(**{**self.defaults, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "class": self.cls.__name__, "defaults": dict(self.defaults), "group": self.group,
                "needs_oracle": self.needs_oracle, "features": list(self.features), "metrics": list(self.metrics),
                "needs_distributions": self.needs_distributions, "needs_model": self.needs_model}


ATTACK_REGISTRY: dict[str, RegisteredAttack] = {}
# modules whose import registers attacks (imported by registered_attacks(): no import cycles here)
ATTACK_MODULES = ("attacks.clustering", "attacks.em", "attacks.collapsed", "attacks.linkage", "attacks.inversion")


def register_attack(name: str, cls: type, *, group: str, needs_oracle: bool = False, features=("embedding",),
                    metrics=(), in_suite: bool = True, null_battery: bool = True, known_n_variant: bool = False,
                    needs_distributions: bool = False, needs_model: bool = False, **defaults) -> RegisteredAttack:
    """Register ``cls`` (with default hyperparameters ``defaults``) under ``name`` with its tags."""
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise ValueError(f"register_attack({name!r}): unknown metric {bad[0]!r}")
    entry = RegisteredAttack(name=name, cls=cls, defaults=dict(defaults), group=group, needs_oracle=needs_oracle,
                             features=tuple(features), metrics=tuple(metrics), in_suite=in_suite,
                             null_battery=null_battery, known_n_variant=known_n_variant,
                             needs_distributions=needs_distributions, needs_model=needs_model)
    ATTACK_REGISTRY[name] = entry
    return entry


def registered_attacks(group: str | None = None) -> list[RegisteredAttack]:
    """Every registered attack (importing :data:`ATTACK_MODULES` first), in registration order."""
    import importlib

    for module in ATTACK_MODULES:
        importlib.import_module(module)
    return [e for e in ATTACK_REGISTRY.values() if group is None or e.group == group]
