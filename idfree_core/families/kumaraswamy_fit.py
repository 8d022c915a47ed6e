"""Kumaraswamy(a, b) maximum likelihood and Cramér-Rao bounds (Jones 2009, Statist. Methodol. 6, §6).

Mean log-likelihood of (weighted) data ``x`` in (0, 1), with ``S = E[log x]`` and
``T(a) = E[log(1 - x^a)]``::

    l(a, b) = log a + log b + (a - 1) S + (b - 1) T(a).

For fixed ``a`` the maximum in ``b`` is closed form, ``b(a) = -1 / T(a)``, so the MLE maximises the
profile ``lp(a) = log a - log(-T(a)) - 1 + (a - 1) S - T(a)`` over one variable (Jones 2009, eq. 6.2).
:func:`kumaraswamy_mle` does this for every coordinate at once: a grid over ``log a`` brackets the
maximum, ``scipy.optimize.elementwise.find_minimum`` (vectorised Brent-type search) refines it.

Fisher information per sample (``y = x^a ~ Beta(1, b)``, ``log x = log y / a``, integrals by
differentiating the Beta function; Jones 2009, §6)::

    I_bb = 1 / b^2
    I_ab = (psi(2) - psi(b + 1)) / (a (b - 1))                       (b = 1: -psi1(2) / a)
    I_aa = (1 + b / (b - 2) [(psi(2) - psi(b))^2 + psi1(2) - psi1(b)]) / a^2

(removable singularities at ``b = 1`` and ``b = 2`` are evaluated by symmetric averaging).  The
Cramér-Rao bound for ``k`` i.i.d. samples is ``Cov >= I^{-1} / k``.  ``tests/test_kumaraswamy_fit.py``
checks ``I`` against quadrature of the expected negative Hessian and the bound against the empirical
variance of the MLE over seeded replicates.
"""

from __future__ import annotations

import numpy as np
from scipy import special
from scipy.optimize import elementwise

from idfree_core.families.estimators import MAX_PARAM, MIN_PARAM

__all__ = ["kumaraswamy_mle", "kumaraswamy_fisher", "kumaraswamy_crb"]

LOG_A_GRID = np.linspace(np.log(1e-2), np.log(1e3), 48)
EPS = 1e-12


def _moments(lx: np.ndarray, w: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``T(a) = E_w[log(1 - x^a)]`` per column of ``lx = log x`` (n, M); ``a`` (M,)."""
    t = (w * np.log1p(-np.minimum(np.exp(lx * a), 1.0 - 1e-16))).sum(axis=0)
    return np.minimum(t, -1e-300)


def _neg_profile(log_a: np.ndarray, lx: np.ndarray, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    a = np.exp(log_a)
    t = _moments(lx, w, a)
    b = np.clip(-1.0 / t, MIN_PARAM, MAX_PARAM)
    return -(np.log(a) + np.log(b) + (a - 1.0) * s + (b - 1.0) * t)


def kumaraswamy_mle(x: np.ndarray, axis: int = 0, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kumaraswamy MLE ``(a, b)`` along ``axis`` of data in (0, 1), optionally weighted (module doc).

    ``a`` is searched in ``[1e-2, 1e3]`` (a maximum on the edge stops there, as Beta's caps);
    ``b`` is then the closed-form ``-1 / T(a)`` clipped to ``[1e-3, 1e5]``.
    """
    raw = np.asarray(x, dtype=np.float64)
    x = np.clip(np.moveaxis(raw, axis, 0), EPS, 1.0 - 1e-7)
    shape, n = x.shape[1:], x.shape[0]
    lx = np.log(x).reshape(n, -1)
    if weights is None:
        w = np.full((n, 1), 1.0 / n)
    else:  # (n,) along ``axis``, or broadcastable to ``x``
        w = np.asarray(weights, dtype=np.float64)
        w = w[:, None] if w.ndim == 1 else np.moveaxis(np.broadcast_to(w, raw.shape), axis, 0).reshape(n, -1)
        w = w / np.maximum(w.sum(axis=0, keepdims=True), 1e-300)
    m = lx.shape[1]
    s = (w * lx).sum(axis=0) * np.ones(m)
    wfull = np.broadcast_to(w, (n, m))
    grid = np.stack([_neg_profile(np.full(m, g), lx, wfull, s) for g in LOG_A_GRID])  # (G, M)
    j = np.argmin(np.where(np.isfinite(grid), grid, np.inf), axis=0)
    log_a = LOG_A_GRID[j].copy()
    inner = (j > 0) & (j < LOG_A_GRID.size - 1)
    if inner.any():
        idx = np.flatnonzero(inner)
        jj = j[idx]

        def f(t, cols):
            cols = cols.astype(np.int64)
            return _neg_profile(t, lx[:, cols], wfull[:, cols], s[cols])

        res = elementwise.find_minimum(f, (LOG_A_GRID[jj - 1], LOG_A_GRID[jj], LOG_A_GRID[jj + 1]),
                                       args=(idx.astype(np.float64),), tolerances={"xrtol": 1e-9, "xatol": 1e-8})
        ok = np.isfinite(res.x)
        log_a[idx[ok]] = res.x[ok]
    a = np.clip(np.exp(log_a), MIN_PARAM, MAX_PARAM)
    b = np.clip(-1.0 / _moments(lx, wfull, a), MIN_PARAM, MAX_PARAM)
    return a.reshape(shape), b.reshape(shape)


def _aa_term(b: np.ndarray) -> np.ndarray:
    """``b / (b - 2) [(psi(2) - psi(b))^2 + psi1(2) - psi1(b)]`` (b = 2 removable)."""
    def raw(v):
        return v / (v - 2.0) * ((special.digamma(2.0) - special.digamma(v)) ** 2
                                + special.polygamma(1, 2.0) - special.polygamma(1, v))
    near = np.abs(b - 2.0) < 1e-4
    safe = np.where(near, 3.0, b)
    return np.where(near, 0.5 * (raw(2.0 + 1e-4) + raw(2.0 - 1e-4)), raw(safe))


def _ab_term(b: np.ndarray) -> np.ndarray:
    """``(psi(2) - psi(b + 1)) / (b - 1)`` (b = 1: ``-psi1(2)``)."""
    near = np.abs(b - 1.0) < 1e-6
    safe = np.where(near, 2.0, b)
    val = (special.digamma(2.0) - special.digamma(safe + 1.0)) / (safe - 1.0)
    return np.where(near, -special.polygamma(1, 2.0), val)


def kumaraswamy_fisher(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample Fisher information ``(I_aa, I_ab, I_bb)`` of Kumaraswamy(a, b) (module doc)."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return (1.0 + _aa_term(b)) / a ** 2, _ab_term(b) / a, 1.0 / b ** 2


def kumaraswamy_crb(a, b, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cramér-Rao variance bounds ``(Var a, Var b)`` for ``k`` i.i.d. Kumaraswamy samples."""
    iaa, iab, ibb = kumaraswamy_fisher(a, b)
    det = iaa * ibb - iab * iab
    return ibb / (det * k), iaa / (det * k)
