"""Vectorized maximum-likelihood estimators and Cramér-Rao bounds of the built-in families.

Beta MLE from the sufficient statistics ``s1 = E[log x]``, ``s2 = E[log(1 - x)]`` (weighted means
allowed, which makes this the exact weighted M-step of a Beta-mixture EM).  The mean negative
log-likelihood ``L(a, b) = log B(a, b) - (a - 1) s1 - (b - 1) s2`` is convex with gradient
``(psi(a) - psi(a+b) - s1, psi(b) - psi(a+b) - s2)`` and Hessian the per-sample Fisher information

    I(a, b) = [[psi1(a) - psi1(a+b), -psi1(a+b)], [-psi1(a+b), psi1(b) - psi1(a+b)]]

(psi = digamma, psi1 = trigamma), so damped Newton with backtracking converges from the
geometric-mean initialization ``a0 = 1/2 + G_x / (2 (1 - G_x - G_1mx))`` (Johnson, Kotz and
Balakrishnan, Continuous Univariate Distributions vol. 2, eq. 25.33 approximation).

Cramér-Rao bound for k i.i.d. samples: ``Cov >= I^{-1} / k``; Beta uses the matrix above, the
Gaussian ``Var(mu) >= sigma^2 / k`` and ``Var(sigma) >= sigma^2 / (2 k)``.  Moved here from
``attacks.inversion.estimators`` (which re-exports them) so that the family registry holds them.
"""

from __future__ import annotations

import numpy as np
from scipy import special

MIN_PARAM, MAX_PARAM = 1e-3, 1e5


def beta_log_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log x, log(1 - x))`` of unit-interval data."""
    return np.log(x), np.log1p(-x)


def _beta_nll(a, b, s1, s2):
    return special.betaln(a, b) - (a - 1.0) * s1 - (b - 1.0) * s2


def beta_mle_from_stats(s1: np.ndarray, s2: np.ndarray, n_iter: int = 100, tol: float = 1e-9,
                        init: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Beta MLE ``(alpha, beta)`` elementwise from mean log statistics (any broadcastable shapes).

    Damped Newton on the convex mean negative log-likelihood, iterating only on the elements
    not yet converged; parameters are kept in ``[1e-3, 1e5]`` (a sample with no spread, e.g. one
    upload, has its maximum at infinity and stops at the cap).  ``init`` warm-starts ``(a, b)``.
    """
    s1, s2 = np.broadcast_arrays(np.asarray(s1, dtype=np.float64), np.asarray(s2, dtype=np.float64))
    shape = s1.shape
    s1, s2 = s1.reshape(-1), s2.reshape(-1)
    gx, g1x = np.exp(s1), np.exp(s2)
    denom = np.maximum(1.0 - gx - g1x, 1e-12)
    a = np.clip(0.5 + gx / (2.0 * denom), MIN_PARAM, MAX_PARAM)
    b = np.clip(0.5 + g1x / (2.0 * denom), MIN_PARAM, MAX_PARAM)
    if init is not None:
        a = np.clip(np.broadcast_to(np.asarray(init[0], dtype=np.float64), shape).reshape(-1), MIN_PARAM, MAX_PARAM)
        b = np.clip(np.broadcast_to(np.asarray(init[1], dtype=np.float64), shape).reshape(-1), MIN_PARAM, MAX_PARAM)
    active = np.arange(a.size)
    for _ in range(n_iter):
        if active.size == 0:
            break
        aa, bb, t1, t2 = a[active], b[active], s1[active], s2[active]
        dab = special.digamma(aa + bb)
        g1 = special.digamma(aa) - dab - t1
        g2 = special.digamma(bb) - dab - t2
        tab = special.polygamma(1, aa + bb)
        h11 = special.polygamma(1, aa) - tab
        h22 = special.polygamma(1, bb) - tab
        det = np.maximum(h11 * h22 - tab * tab, 1e-300)
        da = (h22 * g1 + tab * g2) / det
        db = (h11 * g2 + tab * g1) / det
        nll = _beta_nll(aa, bb, t1, t2)
        step = np.ones_like(aa)
        na, nb, new = aa, bb, nll
        pending = np.arange(aa.size)
        for _ in range(30):  # backtrack: stay in range and decrease the convex objective
            if pending.size == 0:
                break
            sa = np.clip(aa[pending] - step[pending] * da[pending], MIN_PARAM, MAX_PARAM)
            sb = np.clip(bb[pending] - step[pending] * db[pending], MIN_PARAM, MAX_PARAM)
            val = _beta_nll(sa, sb, t1[pending], t2[pending])
            ok = val <= nll[pending] + 1e-15
            idx = pending[ok]
            na, nb, new = (na.copy(), nb.copy(), new.copy()) if na is aa else (na, nb, new)
            na[idx], nb[idx], new[idx] = sa[ok], sb[ok], val[ok]
            step[pending[~ok]] *= 0.5
            pending = pending[~ok]
        a[active], b[active] = na, nb
        decrease = nll - new
        rel = np.maximum(np.abs(da) / aa, np.abs(db) / bb)
        done = (decrease < tol) | (rel < 1e-8)
        active = active[~done]
    return a.reshape(shape), b.reshape(shape)


def beta_mle(x: np.ndarray, axis: int = 0, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Beta MLE along ``axis`` of unit-interval data ``x`` (optionally weighted)."""
    lx, l1x = beta_log_stats(x)
    if weights is None:
        return beta_mle_from_stats(lx.mean(axis=axis), l1x.mean(axis=axis))
    w = np.asarray(weights, dtype=np.float64)
    return beta_mle_from_stats(np.average(lx, axis=axis, weights=w), np.average(l1x, axis=axis, weights=w))


def gaussian_mle(x: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian MLE ``(mean, std)`` along ``axis`` (``std`` is the biased, ddof=0, estimate)."""
    return np.mean(x, axis=axis), np.std(x, axis=axis)


def beta_crb(alpha: np.ndarray, beta: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cramér-Rao variance bounds ``(Var alpha, Var beta)`` for ``k`` i.i.d. Beta samples."""
    a, b = np.asarray(alpha, dtype=np.float64), np.asarray(beta, dtype=np.float64)
    tab = special.polygamma(1, a + b)
    h11, h22 = special.polygamma(1, a) - tab, special.polygamma(1, b) - tab
    det = h11 * h22 - tab * tab
    return h22 / (det * k), h11 / (det * k)


def gaussian_crb(std: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cramér-Rao variance bounds ``(Var mean, Var std)`` for ``k`` i.i.d. Gaussian samples."""
    v = np.asarray(std, dtype=np.float64) ** 2
    return v / k, v / (2.0 * k)


def gaussian_mle_weighted(x: np.ndarray, axis: int = 0, weights: np.ndarray | None = None):
    """Gaussian MLE along ``axis``, optionally weighted (the exact M-step of a Gaussian-mixture EM)."""
    if weights is None:
        return gaussian_mle(x, axis=axis)
    mean = np.average(x, axis=axis, weights=weights)
    var = np.average((x - np.expand_dims(mean, axis)) ** 2, axis=axis, weights=weights)
    return mean, np.sqrt(var)
