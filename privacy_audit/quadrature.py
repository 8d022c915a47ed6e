"""1-D integrals of mixtures with an honest error bound: breakpoints at every component's scale.

QUADPACK with a handful of breakpoints missed narrow components: on a mixture with spikes it
reported ``+-1e-11`` while off by 30 %.  Here the integration range is cut at quantiles of *every*
component (Gaussian ``m + s z`` for ``z`` in :data:`Z_GRID`; Beta ``ppf(p)`` for ``p`` in
:data:`P_GRID`), so each component, however narrow, spans dozens of sub-intervals.  Each
sub-interval is integrated by Gauss-Legendre on it and on its two halves; the difference is the
(conservative) error estimate of the coarse rule, and intervals whose estimate exceeds the tolerance
are bisected again (vectorised adaptive quadrature).  The value is the refined rule; the reported
error is the sum of the estimates plus the mass outside the range (bounded by the components' tail
probabilities), so it over-states rather than under-states the error.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["integrate_mixture_1d", "breakpoints"]

Z_GRID = np.array([0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.5, 8.0, 10.0, 12.0])
P_GRID = np.concatenate([10.0 ** -np.arange(13, 0, -1), [0.25, 0.5, 0.75], 1 - 10.0 ** -np.arange(1, 14)])
TAIL_P = 1e-13
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)


def breakpoints(family: str, params: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """Sorted cut points covering all components and the probability mass left outside them."""
    if family == "gaussian":
        m, s = params["mean"][:, 0], params["std"][:, 0]
        z = np.concatenate([-Z_GRID[::-1], Z_GRID[1:]])
        pts = (m[:, None] + s[:, None] * z[None]).ravel()
        lo, hi = pts.min(), pts.max()
        outside = stats.norm.cdf((lo - m) / s) + stats.norm.sf((hi - m) / s)
    elif family == "beta":
        a, b = params["alpha"][:, 0], params["beta"][:, 0]
        pts = stats.beta.ppf(P_GRID[None, :], a[:, None], b[:, None]).ravel()
        mode = np.where((a > 1) & (b > 1), (a - 1) / np.maximum(a + b - 2, 1e-300), 0.5)
        pts = np.concatenate([pts, mode])
        pts = pts[np.isfinite(pts) & (pts > 0) & (pts < 1)]
        lo, hi = float(pts.min()), float(pts.max())
        outside = stats.beta.cdf(lo, a, b) + stats.beta.sf(hi, a, b)
    else:
        raise ValueError(f"family: {family!r} has no 1-D density")
    pts = np.unique(pts)
    keep = np.concatenate([[True], np.diff(pts) > 1e-15 * np.maximum(1.0, np.abs(pts[1:]))])
    return pts[keep], float(np.max(outside))


def _gl(func, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    half, mid = (b - a) / 2, (a + b) / 2
    x = mid[:, None] + half[:, None] * _NODES[None]
    return half * (func(x.ravel()).reshape(x.shape) @ _WEIGHTS)


def integrate_mixture_1d(func, family: str, params: dict[str, np.ndarray], *, mass_bound: float = 1.0,
                         rtol: float = 1e-9, atol: float = 1e-15, max_intervals: int = 2_000_000,
                         max_rounds: int = 60) -> tuple[float, float]:
    """``(integral, error bound)`` of a vectorised ``func`` over the mixture's 1-D support.

    ``func(x)`` maps a 1-D array to values; it must be non-negative and at most ``mass_bound``
    times the mixture density, so the mass outside the cut range adds at most
    ``mass_bound * max_n P_n(outside)`` to the error.
    """
    pts, outside = breakpoints(family, params)
    a, b = pts[:-1], pts[1:]
    total, err_total = 0.0, mass_bound * outside
    for _ in range(max_rounds):
        if a.size == 0:
            break
        mid = (a + b) / 2
        coarse = _gl(func, a, b)
        fine = _gl(func, a, mid) + _gl(func, mid, b)
        err = np.abs(fine - coarse)
        tol = np.maximum(rtol * np.abs(fine), atol * (b - a) / max(pts[-1] - pts[0], 1e-300))
        done = (err <= tol) | (b - a <= 1e-14 * np.maximum(1.0, np.abs(mid)))
        total += float(fine[done].sum())
        err_total += float(err[done].sum())
        a, b, mid = a[~done], b[~done], mid[~done]
        if 2 * a.size > max_intervals:
            break
        a, b = np.concatenate([a, mid]), np.concatenate([mid, b])
    if a.size:  # budget spent: count what is left with its full error estimate
        mid = (a + b) / 2
        fine = _gl(func, a, mid) + _gl(func, mid, b)
        total += float(fine.sum())
        err_total += float(np.abs(fine - _gl(func, a, b)).sum())
    return total, err_total
