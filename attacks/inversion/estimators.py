"""Vectorized maximum-likelihood estimators and Cramér-Rao bounds for Beta and Gaussian coordinates.

Beta MLE from the sufficient statistics ``s1 = E[log x]``, ``s2 = E[log(1 - x)]`` (weighted means
allowed, which makes this the exact weighted M-step of a Beta-mixture EM).  The mean negative
log-likelihood ``L(a, b) = log B(a, b) - (a - 1) s1 - (b - 1) s2`` is convex with gradient
``(psi(a) - psi(a+b) - s1, psi(b) - psi(a+b) - s2)`` and Hessian the per-sample Fisher information

    I(a, b) = [[psi1(a) - psi1(a+b), -psi1(a+b)], [-psi1(a+b), psi1(b) - psi1(a+b)]]

(psi = digamma, psi1 = trigamma), so damped Newton with backtracking converges from the
geometric-mean initialization ``a0 = 1/2 + G_x / (2 (1 - G_x - G_1mx))`` (Johnson, Kotz and
Balakrishnan, Continuous Univariate Distributions vol. 2, eq. 25.33 approximation).

Cramér-Rao bound for k i.i.d. samples: ``Cov >= I^{-1} / k``; Beta uses the matrix above, the
Gaussian ``Var(mu) >= sigma^2 / k`` and ``Var(sigma) >= sigma^2 / (2 k)``.  For an asymptotically
normal unbiased estimator with variance ``v`` the expected absolute error is ``sqrt(2 v / pi)``,
the scale on which :func:`crb_mae` reports the bound.
"""

from __future__ import annotations

import numpy as np

from idfree_core.errors import InputError
from idfree_core.families.estimators import (MAX_PARAM, MIN_PARAM, beta_crb,  # noqa: F401
                                            beta_log_stats, beta_mle, beta_mle_from_stats, gaussian_crb,
                                            gaussian_mle)

EPS = 1e-6


def to_unit_interval(embedding: np.ndarray, loc=None, scale=None) -> np.ndarray:
    """Invert ``embedding = loc + scale * x`` and clip into the open unit interval (float64)."""
    x = np.asarray(embedding, dtype=np.float64)
    if loc is not None:
        x = x - np.asarray(loc, dtype=np.float64)
    if scale is not None:
        x = x / np.asarray(scale, dtype=np.float64)
    return np.clip(x, EPS, 1.0 - EPS)


def infer_unit_transform(embedding: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(loc, scale)`` mapping the data into (0, 1) when it is outside; ``(None, None)`` if inside.

    Used when the Beta transform is not known: per-coordinate min/max with a 1% margin.
    """
    x = np.asarray(embedding, dtype=np.float64)
    if x.min() > 0.0 and x.max() < 1.0:
        return None, None
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.maximum(hi - lo, 1e-12)
    return lo - 0.01 * span, span * 1.02


def crb_mae(variances: np.ndarray) -> np.ndarray:
    """Expected absolute error ``sqrt(2 v / pi)`` of a normal estimator with variance ``v``."""
    return np.sqrt(2.0 * np.asarray(variances) / np.pi)


def check_family(family: str) -> str:
    if family not in ("beta", "gaussian"):
        raise InputError(f"family must be 'beta' or 'gaussian', got {family!r}")
    return family
