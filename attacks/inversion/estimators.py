"""Helpers of the inversion attacks around the family records (:mod:`idfree_core.families`).

The maximum-likelihood estimators and Cramér-Rao bounds live with the family registry
(``FamilySpec.mle`` / ``FamilySpec.crb``; Beta and Gaussian in :mod:`idfree_core.families.estimators`,
Kumaraswamy in :mod:`idfree_core.families.kumaraswamy_fit`, where the equations are cited; the
Beta/Gaussian functions are re-exported here).  This module adds what the attacks need around
them, driven by the record and never by a family's name: the map of uploads into the family's
``support`` (inverting the shared affine map ``embedding = loc + scale * x`` of ``affine``
families), its inference when unknown, the choice of a family from data (:func:`guess_family`) and
the CRB's expected-absolute-error scale ``sqrt(2 v / pi)`` (:func:`crb_mae`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from idfree_core.errors import InputError
from idfree_core.families import FAMILY_SPECS, FamilySpec, get_family_spec
from idfree_core.families.estimators import (MAX_PARAM, MIN_PARAM, beta_crb,  # noqa: F401
                                            beta_log_stats, beta_mle, beta_mle_from_stats, gaussian_crb,
                                            gaussian_mle)

EPS = 1e-6
GUESS_MAX_N = 5000  # rows used to compare the likelihoods of candidate families (guess_family)


def parametric_families() -> tuple[str, ...]:
    """Registered families the inversion attacks can estimate: not a point mass, with ``mle`` and ``crb``."""
    return tuple(n for n, s in FAMILY_SPECS.items() if not s.is_point_mass and s.mle is not None
                 and s.crb is not None)


def parametric_spec(family) -> FamilySpec:
    """The record of ``family`` if it is parametric (see :func:`parametric_families`), else a one-line error."""
    if isinstance(family, FamilySpec):
        family = family.name
    if family not in parametric_families():
        raise InputError(f"family must be one of {list(parametric_families())} (a registered family with an MLE "
                         f"and a Cramer-Rao bound), got {family!r}")
    return get_family_spec(family)


def real_line_family() -> str:
    """The first registered parametric family supported on the whole real line (fits point masses + noise)."""
    for name in parametric_families():
        if FAMILY_SPECS[name].support == (-math.inf, math.inf):
            return name
    raise InputError("no registered parametric family is supported on the whole real line")


def is_unit_affine(spec: FamilySpec) -> bool:
    """Uploads of ``spec`` are ``loc + scale * x`` with ``x`` in (0, 1) (the map the EM features invert)."""
    return spec.affine and tuple(spec.support) == (0.0, 1.0)


def is_bounded(spec: FamilySpec) -> bool:
    lo, hi = spec.support
    return math.isfinite(lo) and math.isfinite(hi)


def to_family_space(spec: FamilySpec, embedding: np.ndarray, loc=None, scale=None) -> np.ndarray:
    """Uploads as samples of ``spec`` (float64): the affine map inverted (``affine`` families only) and
    clipped into the open ``support`` (a relative margin ``EPS`` from each finite end)."""
    x = np.asarray(embedding, dtype=np.float64)
    if spec.affine:
        if loc is not None:
            x = x - np.asarray(loc, dtype=np.float64)
        if scale is not None:
            x = x / np.asarray(scale, dtype=np.float64)
    lo, hi = spec.support
    if not (math.isfinite(lo) or math.isfinite(hi)):
        return x
    width = (hi - lo) if is_bounded(spec) else 1.0
    return np.clip(x, lo + EPS * width if math.isfinite(lo) else None, hi - EPS * width if math.isfinite(hi) else None)


def to_unit_interval(embedding: np.ndarray, loc=None, scale=None) -> np.ndarray:
    """Invert ``embedding = loc + scale * x`` and clip into the open unit interval (float64)."""
    x = np.asarray(embedding, dtype=np.float64)
    if loc is not None:
        x = x - np.asarray(loc, dtype=np.float64)
    if scale is not None:
        x = x / np.asarray(scale, dtype=np.float64)
    return np.clip(x, EPS, 1.0 - EPS)


def infer_transform(spec: FamilySpec, embedding: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(loc, scale)`` mapping the data into a bounded ``support`` when they leave it (``affine`` families);
    ``(None, None)`` when they are inside or the family has no affine map / unbounded support.

    Used when the shared transform is not known: per-coordinate min/max with a 1% margin.
    """
    if not (spec.affine and is_bounded(spec)):
        return None, None
    x = np.asarray(embedding, dtype=np.float64)
    lo, hi = spec.support
    if x.min() > lo and x.max() < hi:
        return None, None
    mn, mx = x.min(axis=0), x.max(axis=0)
    span = np.maximum(mx - mn, 1e-12)
    scale = span * 1.02 / (hi - lo)
    return mn - 0.01 * span - scale * lo, scale


def infer_unit_transform(embedding: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """:func:`infer_transform` for a family on (0, 1) (kept for callers of the unit-interval map)."""
    x = np.asarray(embedding, dtype=np.float64)
    if x.min() > 0.0 and x.max() < 1.0:
        return None, None
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.maximum(hi - lo, 1e-12)
    return lo - 0.01 * span, span * 1.02


def _support_width(spec: FamilySpec) -> float:
    lo, hi = spec.support
    return hi - lo


def _inside(spec: FamilySpec, x: np.ndarray) -> bool:
    lo, hi = spec.support
    return bool(x.size) and x.min() > lo and x.max() < hi


def _loglik(spec: FamilySpec, x: np.ndarray) -> np.ndarray:
    """Per-row log-likelihood of ``x`` under the per-coordinate MLE of ``spec`` (product over columns)."""
    fit = spec.mle(x, axis=0)
    return spec.scipy_distribution(fit).logpdf(x).sum(axis=1)


def guess_family(embedding: np.ndarray, transform=None, random_state=0, compare: bool = True) -> str:
    """The registered parametric family the (transformed) data most plausibly come from.

    Candidates: every :func:`parametric_families` member whose ``support`` contains the data; the
    narrowest support wins (data inside (0, 1) are not modelled on the real line).  Among candidates
    of equal support the first registered one is kept unless another fits better by Vuong's test for
    non-nested models (Vuong 1989, Econometrica 57: the mean per-row log-likelihood difference of
    per-coordinate MLE fits over its standard error exceeds 1.96), on at most ``GUESS_MAX_N`` rows;
    ``compare=False`` skips that test (the first registered family of the narrowest support).
    """
    x = np.asarray(embedding, dtype=np.float64)
    if transform is not None:
        loc, scale = transform
        x = (x - (0.0 if loc is None else np.asarray(loc))) / (1.0 if scale is None else np.asarray(scale))
    x = x.reshape(x.shape[0], -1) if x.ndim > 1 else x[:, None]
    cands = [FAMILY_SPECS[n] for n in parametric_families() if _inside(FAMILY_SPECS[n], x)]
    if not cands:
        return real_line_family()
    width = min(_support_width(s) for s in cands)
    cands = [s for s in cands if _support_width(s) == width]
    if len(cands) == 1 or x.shape[0] < 10 or not compare:
        return cands[0].name
    if x.shape[0] > GUESS_MAX_N:
        x = x[np.random.default_rng(random_state).choice(x.shape[0], GUESS_MAX_N, replace=False)]
    best, best_ll = cands[0], _loglik(cands[0], x)
    for spec in cands[1:]:
        ll = _loglik(spec, x)
        diff = ll - best_ll
        sd = diff.std(ddof=1)
        z = diff.mean() / (sd / math.sqrt(diff.size)) if sd > 0 else 0.0
        if np.isfinite(z) and z > stats.norm.ppf(0.975):
            best, best_ll = spec, ll
    return best.name


def crb_mae(variances: np.ndarray) -> np.ndarray:
    """Expected absolute error ``sqrt(2 v / pi)`` of a normal estimator with variance ``v``."""
    return np.sqrt(2.0 * np.asarray(variances) / np.pi)


def crb_error(spec: FamilySpec, params: dict, k) -> np.ndarray:
    """Cramér-Rao error per user: the mean over parameters and coordinates of ``crb_mae(Var / k)``
    (``params`` maps names to ``(n_users, D)``; ``k`` a number or ``(n_users,)`` sample counts)."""
    v = spec.crb(params, 1)
    k = np.asarray(k, dtype=np.float64)
    per = [crb_mae(v[name]).mean(axis=1) for name in spec.param_names]
    return (sum(per) / len(per)) / np.sqrt(k)


def param_distance(spec: FamilySpec, t: dict, c: dict) -> np.ndarray:
    """Mean over parameters of the mean absolute coordinate difference, ``t`` ``(N, D)`` vs ``c`` ``(K, D)``
    -> ``(N, K)`` (or elementwise for equal shapes with ``c`` already aligned)."""
    per = [np.abs(t[n][:, None, :] - c[n][None]).mean(-1) for n in spec.param_names]
    return sum(per) / len(per)
