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
(``eta = E[T]``) is one matrix product over all pairs (:func:`symmetrised_kl`).
"""

from __future__ import annotations

import numpy as np
from scipy import special

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
    """``J_ij = KL(f_i||f_j) + KL(f_j||f_i)`` for all pairs, ``(N, N)``, by one GEMM."""
    theta = np.concatenate(NATURAL[family](p), axis=1)
    eta = np.concatenate(MEAN_STATISTICS[family](p), axis=1)
    d = np.einsum("nf,nf->n", theta, eta)
    cross = theta @ eta.T
    return np.maximum(d[:, None] + d[None] - cross - cross.T, 0.0)


def chernoff_information(family: str, p: dict, pairs: np.ndarray, iters: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """``(C, lam*)`` per pair: ``C_ij = max_{0<lam<1} -K_ij(lam)`` (nats; golden section, ``-K`` is
    concave).  The error of attributing ``m`` uploads decays as ``exp(-m min_ij C_ij)`` (Chernoff
    1952; Leang and Johnson 1997 for several hypotheses)."""
    pi = {k: v[pairs[:, 0]] for k, v in p.items()}
    pj = {k: v[pairs[:, 1]] for k, v in p.items()}
    lo, hi = np.zeros(len(pairs)), np.ones(len(pairs))
    g = (np.sqrt(5) - 1) / 2
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = -log_mgf(family, pi, pj, x1), -log_mgf(family, pi, pj, x2)
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
        f1n[need1] = -log_mgf(family, {k: v[need1] for k, v in pi.items()}, {k: v[need1] for k, v in pj.items()}, x1[need1])
        f2n[need2] = -log_mgf(family, {k: v[need2] for k, v in pi.items()}, {k: v[need2] for k, v in pj.items()}, x2[need2])
        f1, f2 = f1n, f2n
    lam = (lo + hi) / 2
    return np.maximum(-log_mgf(family, pi, pj, lam), 0.0), lam
