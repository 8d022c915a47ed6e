"""Parameter inversion: estimate one device's distribution from k of its uploads (MLE vs Cramér-Rao).

The adversary is assumed to have *linked* k uploads of one device (the oracle is used only to
select them: this models the outcome of a successful linkage attack) and to know the family.
From those k fresh samples it computes the maximum-likelihood estimate of the device's
parameters: ``FamilySpec.mle`` of the registered family (e.g. Beta ``alpha, beta``, Gaussian
``mean, std``, Kumaraswamy ``a, b`` per coordinate), after inverting the shared affine map
``embedding = loc + scale * x`` of ``affine`` families (see :mod:`.estimators`).

Scored per k (``parameter_error``, lower is a stronger attack): the mean absolute error of the
parameters, averaged over coordinates, parameters and users, with a bootstrap CI over users.

* ``baseline``: the same estimator fed k uploads drawn at random from the whole pool (no
  linkage).  When all users share one distribution both errors agree, so the advantage is 0.
* ``ceiling``: the Cramér-Rao bound on the same scale, ``sqrt(2 I^{-1} / (pi k))`` per
  parameter (the expected absolute error of an efficient estimator), so
  ``efficiency = error / bound`` tends to 1 as k grows when the MLE is efficient.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from attacks.base import Attack, AttackResult, check_random_state, register_attack
from attacks.inversion import estimators as est
from idfree_core.errors import InputError

NAME = "parameter_inversion"


MIN_BOOTSTRAP = 10  # fewer values: Student-t interval (a percentile bootstrap of 2-9 values undercovers)


def bootstrap_mean_ci(values: np.ndarray, rng: np.random.Generator, confidence: float = 0.95,
                      n_resamples: int = 2000) -> tuple[float, float]:
    """CI of the mean: percentile bootstrap (``scipy.stats.bootstrap``) from ``MIN_BOOTSTRAP`` values,
    the Student-t interval ``mean +- t_{n-1} s / sqrt(n)`` below (the null battery found percentile
    intervals over 2-3 users excluding 0 far above the nominal rate); ``(nan, nan)`` if n < 2."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return (float("nan"), float("nan"))
    if np.ptp(values) == 0:
        return (float(values[0]), float(values[0]))
    if values.size < MIN_BOOTSTRAP:
        half = stats.t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
        return (float(values.mean() - half), float(values.mean() + half))
    res = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method="percentile", random_state=rng)
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def user_params(distributions, user_names, spec) -> dict[str, np.ndarray]:
    """True parameters ``{name: (n_users, D)}`` of family ``spec``, rows ordered like ``user_names``."""
    index = {u: i for i, u in enumerate(distributions.users)}
    missing = [u for u in user_names if u not in index]
    if missing:
        raise InputError(f"distributions: user {missing[0]!r} of the oracle has no distribution "
                         f"({len(missing)} users missing)")
    rows = np.asarray([index[u] for u in user_names])
    return {name: np.asarray(distributions.params[name])[rows] for name in spec.param_names}


class ParameterInversion(Attack):
    """MLE of one device's parameters from k linked uploads, against the Cramér-Rao bound.

    Parameters
    ----------
    family : a registered family with ``mle`` and ``crb`` (:func:`.estimators.parametric_families`),
        or None (take it from the true distributions when scoring).
    k_values : numbers of linked uploads to try (each >= 2: with one upload the MLE is undefined).
    n_repeats : independent draws of the k uploads per user and k (errors averaged).
    confidence : level of the bootstrap intervals.
    """

    name = NAME

    @classmethod
    def for_suite(cls, ctx, spec, features):
        """Only scored: needs the oracle and the true distributions of a family with an MLE and a CRB."""
        d = ctx.distributions
        if ctx.oracle is None:
            ctx.skip("parameter inversion: needs the oracle and the true distributions")
            return []
        if d is None or d.family not in est.parametric_families():
            ctx.skip("parameter inversion: needs the true distributions of a family with an MLE "
                     f"({', '.join(est.parametric_families())})")
            return []
        return [(spec(family=d.family, random_state=ctx.seed()), {})]

    def __init__(self, family=None, k_values=(2, 5, 10, 20, 50), n_repeats=1, confidence=0.95, random_state=0):
        self.family = family
        self.k_values = k_values
        self.n_repeats = n_repeats
        self.confidence = confidence
        self.random_state = random_state

    def fit(self, pool) -> "ParameterInversion":
        """Store the pool's embeddings; the experiment itself needs the oracle (see module doc)."""
        ks = sorted({int(k) for k in self.k_values})
        if not ks or ks[0] < 2:
            raise InputError(f"k_values must be integers >= 2, got {self.k_values!r}")
        if self.family is not None:
            est.parametric_spec(self.family)
        self.k_values_ = tuple(ks)
        self.n_uploads_ = pool.n
        return self

    # ------------------------------------------------------------------ helpers
    def _estimate(self, x: np.ndarray, spec) -> dict[str, np.ndarray]:
        """MLE along axis 1 of ``x`` shaped ``(users, k, D)``."""
        return spec.mle(x, axis=1)

    def _error(self, fit: dict, truth: dict, spec) -> np.ndarray:
        """Per user: the mean over parameters of the mean absolute coordinate error."""
        return sum(np.abs(fit[n] - truth[n]).mean(axis=1) for n in spec.param_names) / len(spec.param_names)

    def score(self, pool, oracle, distributions=None) -> list[AttackResult]:
        """Per-k parameter errors; one result at the largest k that at least two users reach."""
        if not hasattr(self, "k_values_"):
            self.fit(pool)
        if distributions is None or distributions.family not in est.parametric_families():
            return []  # no parametric truth to compare with (a static embedding is its own parameter)
        family = self.family or distributions.family
        spec = est.parametric_spec(family)
        if spec is not est.parametric_spec(distributions.family):
            raise InputError(f"family {family!r} does not match the distributions file ({distributions.family!r})")
        if distributions.dim != pool.dim:
            raise InputError(f"distributions have {distributions.dim} dimensions but the pool has {pool.dim}")
        rng = check_random_state(self.random_state)
        codes, names = oracle.codes_for(pool)
        truth = user_params(distributions, names, spec)
        data = est.to_family_space(spec, pool.embedding, distributions.loc, distributions.scale)
        counts = np.bincount(codes, minlength=len(names))
        members = [np.flatnonzero(codes == u) for u in range(len(names))]
        curves = []
        for k in self.k_values_:
            users = np.flatnonzero(counts >= k)
            if users.size < 2:
                continue
            err_linked = np.zeros(users.size)
            err_random = np.zeros(users.size)
            for _ in range(self.n_repeats):
                linked = np.stack([rng.choice(members[u], size=k, replace=False) for u in users])
                unlinked = np.stack([rng.choice(pool.n, size=k, replace=False) for _ in users])
                sub = {n: v[users] for n, v in truth.items()}
                for idx, acc in ((linked, err_linked), (unlinked, err_random)):
                    acc += self._error(self._estimate(data[idx], spec), sub, spec)
            err_linked /= self.n_repeats
            err_random /= self.n_repeats
            crb = est.crb_error(spec, {n: v[users] for n, v in truth.items()}, k)
            curves.append({
                "k": k, "n_users": int(users.size),
                "error": float(err_linked.mean()),
                "error_ci": list(bootstrap_mean_ci(err_linked, rng, self.confidence)),
                "unlinked_error": float(err_random.mean()),
                "crb_error": float(crb.mean()),
                "ratio_to_crb": float(err_linked.mean() / crb.mean()),
                "_diff": err_linked - err_random,
            })
        if not curves:
            return []
        last = curves[-1]
        diff = last.pop("_diff")
        for c in curves:
            c.pop("_diff", None)
        value, baseline = last["error"], last["unlinked_error"]
        return [AttackResult(
            name=NAME, metric="parameter_error", value=value, ci=tuple(last["error_ci"]),
            baseline=baseline, advantage=value - baseline,
            advantage_ci=bootstrap_mean_ci(diff, rng, self.confidence),
            ceiling=last["crb_error"], n=last["n_users"], knowledge="embeddings+family", features="embedding",
            details={
                "family": family, "k": last["k"], "curves": curves,
                "error_definition": "mean absolute error of the per-coordinate parameters "
                                    + f"({', '.join(spec.param_names)})",
                "ceiling_definition": "Cramer-Rao bound as expected absolute error sqrt(2 v / pi)",
                "assumption": "the adversary has linked k uploads of one device (selected with the oracle) "
                              "and knows the family; baseline = k unlinked uploads drawn at random",
            },
        )]


register_attack(NAME, ParameterInversion, group="inversion", needs_oracle=True, metrics=("parameter_error",),
                needs_distributions=True)  # scored against the true distributions only
