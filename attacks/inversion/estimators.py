"""Helpers of the inversion attacks around the family estimators.

The Beta/Gaussian maximum-likelihood estimators and Cramér-Rao bounds live with the family
registry (:mod:`idfree_core.families.estimators`, where the equations are cited) and are re-exported
here; this module adds the unit-interval transforms and the CRB's expected-absolute-error scale
``sqrt(2 v / pi)`` (:func:`crb_mae`).
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
