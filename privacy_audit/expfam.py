"""Exponential-family algebra of the users' product distributions (one dict per operation).

Every family here is an exponential family per coordinate, ``f(x) = exp(theta . T(x) - A(theta))``.
The geometric mixture ``f_i^lam f_j^(1-lam) / Z`` is again a member, with natural parameter
``lam theta_i + (1 - lam) theta_j``, and

    K_ij(lam) = log int f_i^lam f_j^(1-lam) = sum_d A(theta_lam) - lam A(theta_i) - (1-lam) A(theta_j),

the cumulant generating function of the privacy loss ``L = log f_i/f_j`` under ``f_j``
(``E_j[e^{lam L}] = e^{K(lam)}``), which gives the Chernoff information and the tilted samplers of
:mod:`privacy_audit.dp`.  Per family (:data:`GEOMETRIC_MIXTURE`, :data:`LOG_PARTITION`,
:data:`MEAN_STATISTICS`): Beta ``theta = (a - 1, b - 1)``, ``A = log B(a, b)``; Gaussian
``theta = (mu / s^2, -1 / (2 s^2))``, ``A = mu^2 / (2 s^2) + log s``.

The symmetrised KL ``J_ij = KL(f_i||f_j) + KL(f_j||f_i) = (theta_i - theta_j) . (eta_i - eta_j)``
(``eta = E[T]``) is one matrix product over all pairs (:func:`symmetrised_kl`).  A registered family
without a natural form here (Kumaraswamy) gets ``J`` from its KL matrix and ``K_ij(lam)`` for
``0 <= lam <= 1`` (the Chernoff information) by quantile quadrature; the tilted DP samplers need the
natural form and report "not available" for it.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from idfree_core.families import get_family_spec
from idfree_core.families.numeric import log_affinity_from_ratio, log_ratio_at_quantiles

__all__ = ["GEOMETRIC_MIXTURE", "LOG_PARTITION", "log_mgf", "symmetrised_kl", "chernoff_information"]


def _beta_mix(pi, pj, lam):
    return {k: lam * pi[k] + (1 - lam) * pj[k] for k in ("alpha", "beta")}


def _gauss_mix(pi, pj, lam):
    ti, tj = 1 / pi["std"] ** 2, 1 / pj["std"] ** 2
    tau = lam * ti + (1 - lam) * tj
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"mean": (lam * ti * pi["mean"] + (1 - lam) * tj * pj["mean"]) / tau,
                "std": 1 / np.sqrt(tau)}


def _gauss_logz(p):
    return p["mean"] ** 2 / (2 * p["std"] ** 2) + np.log(p["std"])


GEOMETRIC_MIXTURE = {"beta": _beta_mix, "gaussian": _gauss_mix}
LOG_PARTITION = {"beta": lambda p: special.betaln(p["alpha"], p["beta"]), "gaussian": _gauss_logz}
VALID = {"beta": lambda p: (p["alpha"] > 0) & (p["beta"] > 0), "gaussian": lambda p: np.isfinite(p["std"]) & (p["std"] > 0)}
# (natural parameters, mean statistics) for the symmetrised KL; T = (log x, log 1-x) or (x, x^2).
NATURAL = {"beta": lambda p: (p["alpha"], p["beta"]),
           "gaussian": lambda p: (p["mean"] / p["std"] ** 2, -0.5 / p["std"] ** 2)}
MEAN_STATISTICS = {"beta": lambda p: (special.digamma(p["alpha"]) - special.digamma(p["alpha"] + p["beta"]),
                                      special.digamma(p["beta"]) - special.digamma(p["alpha"] + p["beta"])),
                   "gaussian": lambda p: (p["mean"], p["mean"] ** 2 + p["std"] ** 2)}


def log_mgf(family: str, pi: dict, pj: dict, lam) -> np.ndarray:
    """``K_ij(lam)`` summed over coordinates (rows of ``pi``/``pj`` are pairs); ``inf`` where the
    geometric mixture leaves the parameter space (the integral diverges)."""
    lam = np.asarray(lam, dtype=np.float64)[..., None]
    mix = GEOMETRIC_MIXTURE[family](pi, pj, lam)
    A = LOG_PARTITION[family]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        k = A(mix) - lam * A(pi) - (1 - lam) * A(pj)
    ok = VALID[family](mix)
    return np.where(np.all(ok, axis=-1), np.where(ok, k, 0.0).sum(-1), np.inf)


def symmetrised_kl(family: str, p: dict) -> np.ndarray:
    """``J_ij = KL(f_i||f_j) + KL(f_j||f_i)`` for all pairs, ``(N, N)``, by one GEMM (exponential
    families here); other registered families: from the KL matrix of :mod:`privacy_audit.divergences`."""
    if NATURAL.get(family) is None:
        from privacy_audit.divergences import _kl_matrix

        kl = _kl_matrix(family, p)
        J = np.maximum(kl + kl.T, 0.0)
        np.fill_diagonal(J, 0.0)
        return J
    theta = np.concatenate(NATURAL[family](p), axis=1)
    eta = np.concatenate(MEAN_STATISTICS[family](p), axis=1)
    d = np.einsum("nf,nf->n", theta, eta)
    cross = theta @ eta.T
    return np.maximum(d[:, None] + d[None] - cross - cross.T, 0.0)


def _neg_log_mgf(family: str, pi: dict, pj: dict):
    """``(lam, rows) -> -K_ij(lam)`` for the pairs ``rows``: closed form (:func:`log_mgf`) or, for a
    family without a natural form here (e.g. Kumaraswamy), the quantile quadrature of
    :mod:`idfree_core.families.numeric` (``0 <= lam <= 1``, where ``K <= 0`` by Hoelder), whose
    log-ratios are computed once and reused for every ``lam``."""
    if GEOMETRIC_MIXTURE.get(family) is not None:
        return lambda lam, rows: -log_mgf(family, {k: v[rows] for k, v in pi.items()},
                                          {k: v[rows] for k, v in pj.items()}, lam)
    r, w = log_ratio_at_quantiles(get_family_spec(family), pj, pi)   # log f_i - log f_j at F_j^-1(u)
    return lambda lam, rows: -log_affinity_from_ratio(r[rows], w, 1 - np.asarray(lam)[:, None]).sum(-1)


def chernoff_information(family: str, p: dict, pairs: np.ndarray, iters: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """``(C, lam*)`` per pair: ``C_ij = max_{0<lam<1} -K_ij(lam)`` (nats; golden section, ``-K`` is
    concave).  The error of attributing ``m`` uploads decays as ``exp(-m min_ij C_ij)`` (Chernoff
    1952; Leang and Johnson 1997 for several hypotheses)."""
    pi = {k: v[pairs[:, 0]] for k, v in p.items()}
    pj = {k: v[pairs[:, 1]] for k, v in p.items()}
    negk = _neg_log_mgf(family, pi, pj)
    every = np.ones(len(pairs), bool)
    lo, hi = np.zeros(len(pairs)), np.ones(len(pairs))
    g = (np.sqrt(5) - 1) / 2
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = negk(x1, every), negk(x2, every)
    for _ in range(iters):
        left = f1 > f2          # maximum in [lo, x2]
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        x2n = np.where(left, x1, lo + g * (hi - lo))
        x1n = np.where(left, hi - g * (hi - lo), x2)
        f2n = np.where(left, f1, np.nan)
        f1n = np.where(left, np.nan, f2)
        x1, x2 = x1n, x2n
        need1, need2 = np.isnan(f1n), np.isnan(f2n)
        f1n[need1] = negk(x1[need1], need1)
        f2n[need2] = negk(x2[need2], need2)
        f1, f2 = f1n, f2n
    lam = (lo + hi) / 2
    return np.maximum(negk(lam, every), 0.0), lam
