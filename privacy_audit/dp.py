"""Privacy in differential-privacy terms: the per-upload privacy loss between pairs of users.

An upload of user ``i`` is a mechanism output; "neighbouring inputs" are two users ``i, j``.

* **Gaussians sharing one std per coordinate** are exactly ``mu``-GDP with the Mahalanobis distance
  ``mu_ij = ||(mu_i - mu_j) / s||`` (Dong, Roth and Su 2019, Thm. 2.7); the mechanism is
  ``mu``-GDP for ``mu = max_ij mu_ij`` (all pairs, one GEMM), ``m`` uploads compose to
  ``mu sqrt(m)`` (their Cor. 3.3), and ``delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)``
  (their Cor. 2.13), inverted for ``eps(delta)`` by bisection.
* **Otherwise** (Beta, unequal stds) through the privacy-loss distribution of ``L = log f_i / f_j``:
  ``delta_ij(eps) = E_i[(1 - e^(eps - L))_+]``, estimated by importance sampling from the
  exponentially tilted member ``f_lam ~ f_i^lam f_j^(1-lam)`` (weights
  ``e^((1-lam) L + m K(lam))``, :mod:`privacy_audit.expfam`), with a CI from the weights' standard
  error, and bounded above with certainty by the Chernoff bound
  ``eps_ij(delta) <= inf_t (m K(1 + t) - log delta) / t`` (``delta <= P_i(L > eps)``).  The pairs
  are those with the largest symmetrised KL (all pairs for small ``N``); an ``eps`` found for any
  pair is a valid *lower* bound on the mechanism's ``eps``.
* **Attribution.**  If every pair satisfies ``(eps, delta)``-DP then, for ``N`` users with a
  uniform prior, ``P(correct attribution) <= (e^eps + (N - 1) delta) / (e^eps + N - 1)``
  (Lee and Clifton 2012 for ``delta = 0``; the ``delta`` term follows from summing
  ``P_i(A_i) <= e^eps P_j(A_i) + delta`` over ``j != i``).  The converse fails: an average
  misattribution rate, however high, implies no DP guarantee (one exposed user suffices).
* **Other families** (no natural form in :mod:`privacy_audit.expfam`, e.g. Kumaraswamy): the report
  says "not available" (``epsilon`` values ``None``) rather than guessing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import optimize, stats

from idfree_core.seeding import torch_generator
from privacy_audit.divergences import check_params
from privacy_audit.expfam import GEOMETRIC_MIXTURE, log_mgf, symmetrised_kl
from privacy_audit.likelihood import LinearLogDensity, family_spec

__all__ = ["DPReport", "gdp_delta", "gdp_epsilon", "attribution_bound", "privacy_in_dp_terms"]

NO_GUARANTEE = ("Measured average misattribution implies no differential-privacy guarantee: the DP "
                "numbers are per pair of users and the worst pair decides.")
NOT_AVAILABLE = ("No DP numbers for the {family} family: the tilted privacy-loss sampler and the Chernoff "
                 "epsilon bound need its exponential-family natural form, which privacy_audit.expfam does not "
                 "have (the misattribution figures above do not depend on it).")
PLD_PAIRS = 3


def gdp_delta(eps: float, mu: float) -> float:
    """``delta(eps)`` of ``mu``-GDP (Dong, Roth and Su 2019, Cor. 2.13)."""
    if mu <= 0:
        return 0.0
    if math.isinf(mu):
        return 1.0
    return float(max(0.0, stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * stats.norm.cdf(-eps / mu - mu / 2)
                     if eps < 700 else 0.0))


def gdp_epsilon(delta: float, mu: float) -> float:
    """Smallest ``eps >= 0`` with ``delta(eps) <= delta`` for ``mu``-GDP."""
    if gdp_delta(0.0, mu) <= delta:
        return 0.0
    hi = max(1.0, mu * mu / 2 + mu * 10)
    return float(optimize.brentq(lambda e: gdp_delta(e, mu) - delta, 0.0, hi, xtol=1e-12))


def attribution_bound(eps: float, delta: float, n_users: int) -> float:
    """Largest correct-attribution probability allowed by ``(eps, delta)``-DP between all pairs."""
    if n_users < 2:
        return 1.0
    if eps > 700:
        return 1.0
    e = math.exp(eps)
    return float(min(1.0, (e + (n_users - 1) * delta) / (e + n_users - 1)))


@dataclass(frozen=True)
class DPReport:
    """DP view of the users' distributions; ``to_dict()`` is the ``dp`` JSON block."""

    model: str
    n_users: int
    delta: float
    worst_pair: tuple[int, int]
    epsilon: dict
    gdp_mu_per_upload: float | None = None
    epsilon_ci: dict | None = None
    epsilon_upper: dict | None = None
    attribution: dict = field(default_factory=dict)
    pairs: str = "all"
    statement: str = NO_GUARANTEE

    def to_dict(self) -> dict:
        out = asdict(self)
        out["worst_pair"] = list(self.worst_pair)
        out["epsilon"] = {"delta": self.delta, **self.epsilon}
        return out


def _common_std(family: str, p: dict) -> bool:
    return family_spec(family).location_scale_normal and bool(np.all(p["std"] == p["std"][:1]))


def _max_mahalanobis(p: dict) -> tuple[float, tuple[int, int]]:
    z = p["mean"] / p["std"][:1]
    sq = np.einsum("nd,nd->n", z, z)
    d2 = np.maximum(sq[:, None] + sq[None] - 2 * z @ z.T, 0.0)
    k = int(np.argmax(d2))
    i, j = divmod(k, d2.shape[0])
    return float(math.sqrt(d2[i, j])), (int(min(i, j)), int(max(i, j)))


def _chernoff_epsilon(family, pi, pj, m, delta) -> tuple[float, float]:
    """``(eps upper bound, t*)``: ``inf_t (m K(1 + t) - log delta) / t`` over a log grid of ``t``."""
    t = np.logspace(-4, 3, 400)
    k = log_mgf(family, {a: np.broadcast_to(v, (t.size, v.shape[-1])) for a, v in pi.items()},
                {a: np.broadcast_to(v, (t.size, v.shape[-1])) for a, v in pj.items()}, 1 + t)
    val = (m * k - math.log(delta)) / t
    best = int(np.nanargmin(np.where(np.isfinite(val), val, np.inf)))
    return float(max(0.0, val[best])) if np.isfinite(val[best]) else math.inf, float(t[best])


def _pld_delta_curve(family, pair_params, m, lam, n_samples, gen):
    """Importance-sampled ``delta(eps)`` for ``x ~ f_0`` vs ``f_1`` (rows of ``pair_params``)."""
    pi = {k: v[:1] for k, v in pair_params.items()}
    pj = {k: v[1:] for k, v in pair_params.items()}
    tilt = GEOMETRIC_MIXTURE[family](pi, pj, lam)
    logd = LinearLogDensity(family, pair_params)
    lf = logd.joint(logd.draw_from(tilt, n_samples, m, gen), m).numpy()
    L = lf[:, 0] - lf[:, 1]
    logw = (1 - lam) * L + m * float(log_mgf(family, pi, pj, lam)[0])

    def curve(eps: float) -> tuple[float, float]:
        v = np.zeros_like(L)  # only where L > eps, in log space (np.where computed exp(logw) on every draw: overflow)
        hit = L > eps
        v[hit] = np.exp(logw[hit] + np.log(-np.expm1(eps - L[hit])))
        return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))

    return curve


def _tilt_for(family, pi, pj, m, eps, lam_hi) -> float:
    """``lam`` in ``[1, lam_hi]`` with tilted mean ``m K'(lam) = eps`` (the saddle point)."""
    def slope(lam, h=1e-5):
        return m * float(log_mgf(family, pi, pj, lam + h)[0] - log_mgf(family, pi, pj, lam - h)[0]) / (2 * h) - eps

    if lam_hi <= 1 + 2e-5 or slope(1 + 1e-5) >= 0:
        return 1.0
    if slope(lam_hi) <= 0:
        return float(lam_hi)
    return float(optimize.brentq(slope, 1 + 1e-5, lam_hi, xtol=1e-8))


def _solve_eps(curve, delta, z, hi):
    """``eps`` where the estimate (and its CI ends) cross ``delta`` (bisection; curves decrease)."""
    out = []
    for shift in (0.0, -z, z):   # point estimate, then the lower and upper ends of delta's CI
        f = lambda e, s=shift: curve(e)[0] + s * curve(e)[1] - delta  # noqa: E731
        if f(0.0) <= 0:
            out.append(0.0)
        elif f(hi) > 0:
            out.append(hi)
        else:
            out.append(float(optimize.brentq(f, 0.0, hi, xtol=1e-6)))
    return out[0], (out[1], out[2])


def privacy_in_dp_terms(family: str, params, uploads=(1, 5, 20), delta: float = 1e-5, *,
                        n_samples: int = 4096, confidence: float = 0.95, random_state=0) -> DPReport:
    """Per-upload privacy loss of the worst pair of users and its composition over ``uploads``."""
    family, p = check_params(family, params)
    if not (0 < delta < 1):
        raise ValueError(f"delta: expected a number in (0, 1), got {delta!r}")
    ms = [int(m) for m in (uploads if np.ndim(uploads) else [uploads])]
    if any(m < 1 for m in ms):
        raise ValueError("uploads: expected positive integers")
    n = next(iter(p.values())).shape[0]
    spec = family_spec(family)
    if spec.is_point_mass:
        rows = np.concatenate([p[k] for k in spec.param_names], axis=1)
        same = bool(np.all(rows == rows[:1]))
        eps = {f"m={m}": (0.0 if same else math.inf) for m in ms}
        return DPReport("point masses", n, delta, (0, min(1, n - 1)), eps,
                        attribution={k: attribution_bound(v, delta, n) for k, v in eps.items()})
    if _common_std(family, p):
        mu, pair = _max_mahalanobis(p)
        eps = {f"m={m}": gdp_epsilon(delta, mu * math.sqrt(m)) for m in ms}
        return DPReport("gdp (exact, all pairs)", n, delta, pair, eps, gdp_mu_per_upload=mu,
                        attribution={k: attribution_bound(v, delta, n) for k, v in eps.items()})
    if GEOMETRIC_MIXTURE.get(family) is None:
        J = symmetrised_kl(family, p) if n > 1 else np.zeros((1, 1))
        i, j = divmod(int(np.argmax(np.triu(J, 1))), n) if n > 1 else (0, 0)
        return DPReport(f"not available for family {family!r}", n, delta, (i, j), {f"m={m}": None for m in ms},
                        pairs="none (worst_pair: the largest symmetrised KL)", statement=NOT_AVAILABLE.format(family=family) + " " + NO_GUARANTEE)
    J = symmetrised_kl(family, p)
    order = np.argsort(-np.triu(J, 1), axis=None)[:max(1, PLD_PAIRS)]
    pairs = [divmod(int(k), n) for k in order]
    gen = torch_generator(random_state)
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    best = {}
    for m in ms:
        for i, j in pairs:
            for a, b in ((i, j), (j, i)):
                pa, pb = ({k: v[[a]] for k, v in p.items()}, {k: v[[b]] for k, v in p.items()})
                upper, t = _chernoff_epsilon(family, pa, pb, m, delta)
                hi = upper if math.isfinite(upper) else 1e3
                pab = {k: v[[a, b]] for k, v in p.items()}
                est, ci = _solve_eps(_pld_delta_curve(family, pab, m, 1 + t, n_samples, gen), delta, z, hi)
                lam = _tilt_for(family, pa, pb, m, est, 1 + t)   # second pass: tilt to E[L] = eps
                est, ci = _solve_eps(_pld_delta_curve(family, pab, m, lam, n_samples, gen), delta, z, hi)
                if f"m={m}" not in best or est > best[f"m={m}"][0]:
                    best[f"m={m}"] = (est, ci, min(upper, 1e300), (a, b))
    eps = {k: v[0] for k, v in best.items()}
    exhaustive = n * (n - 1) // 2 <= PLD_PAIRS
    worst = best[f"m={ms[0]}"][3]
    # The attribution bound needs a guarantee for every pair: only the certified (Chernoff) upper
    # bounds over all pairs give one.
    attribution = ({k: attribution_bound(v[2], delta, n) for k, v in best.items()} if exhaustive else {})
    return DPReport("pld (importance-sampled, tilted)", n, delta, (int(worst[0]), int(worst[1])), eps,
                    epsilon_ci={k: list(v[1]) for k, v in best.items()},
                    epsilon_upper={k: v[2] for k, v in best.items()}, attribution=attribution,
                    pairs="all" if exhaustive else f"top-{PLD_PAIRS}-by-symmetrised-KL (eps is a lower bound "
                                                   f"on the worst pair's)")
