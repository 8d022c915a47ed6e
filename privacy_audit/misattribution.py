"""Bayes-optimal misattribution: how often even the best attributor names the wrong user.

An upload ``x`` comes from user ``n`` with prior ``pi_n`` and density ``f_n``.  The optimal
attributor is MAP over users, ``argmax_n pi_n f_n(x)``, and its error (the ceiling for every attack
in ``attacks/``) is

    P(error) = 1 - int max_n pi_n f_n(x) dx = E_{x ~ sum_n pi_n f_n}[1 - max_n post_n(x)],

with ``post_n(x) = pi_n f_n(x) / sum_m pi_m f_m(x)``.

* ``method="exact"`` (1-D): QUADPACK on ``sum_n pi_n f_n - max_n pi_n f_n`` (non-negative, so
  small errors keep their relative accuracy); ``ci`` is the value +- the reported integration error.
  Static point masses are always exact: ``P(correct) = sum over distinct values of max pi_n``.
* ``method="monte_carlo"``: ``x`` drawn from the mixture with ``torch.distributions``; the
  estimator ``1 - max_n post_n(x)`` (the conditional expectation of the MAP error indicator given
  ``x``, so lower variance) with a Student-t interval, adding blocks of samples until the
  half-width is at most ``target_halfwidth``.  All users' log-densities at a block of samples are
  one float64 matrix product for the exponential families, the family's torch log-density
  otherwise (:mod:`privacy_audit.likelihood`).  Per-user
  error ``P(MAP != n | n) = E[post_n(x) 1{MAP(x) != n}] / pi_n`` comes for free.

The proximity bound (:func:`proximity_bound`) and divergence matrices (:func:`divergence_matrix`)
live in :mod:`privacy_audit.proximity` and :mod:`privacy_audit.divergences` and are re-exported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from idfree_core.seeding import seed_int
from privacy_audit.divergences import _chunks, check_params, divergence_matrix, quad_1d, torch_distribution
from privacy_audit.likelihood import family_spec, user_log_density
from privacy_audit.sampling import mean_interval, required_samples, user_indices
from privacy_audit.proximity import (ProximityBound, proximity_bound,
                                     proximity_bound_from_trajectories)

__all__ = ["MisattributionEstimate", "bayes_misattribution", "divergence_matrix", "ProximityBound",
           "proximity_bound", "proximity_bound_from_trajectories"]

METHODS = ("auto", "exact", "monte_carlo")


@dataclass(frozen=True)
class MisattributionEstimate:
    """Bayes-optimal misattribution ``value`` with its interval ``ci`` at level ``confidence``.

    ``error`` is the integration-error estimate (exact) or the CI half-width (Monte Carlo);
    ``per_user[n] = P(MAP attributor is wrong | upload from user n)`` (Monte Carlo only; NaN for
    users with prior 0); ``converged`` is False when ``max_samples`` ran out before the target;
    ``interval`` names the rule behind ``ci`` (``quadrature``, ``student_t``,
    ``empirical_bernstein``, ``exact``); ``uploads_per_user`` is the number ``m`` of uploads the
    attributor sees, known to share one user.
    """

    value: float
    ci: tuple[float, float]
    method: str
    n_samples: int
    confidence: float
    error: float
    converged: bool = True
    per_user: tuple[float, ...] | None = None
    interval: str = "quadrature"
    uploads_per_user: int = 1

    def to_dict(self) -> dict:
        out = asdict(self)
        out["ci"] = list(self.ci)
        out["per_user"] = None if self.per_user is None else [None if math.isnan(v) else v
                                                              for v in self.per_user]
        return out


def _check_priors(priors, n: int) -> np.ndarray:
    if priors is None:
        return np.full(n, 1.0 / n)
    try:
        pi = np.asarray(priors, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("priors: not a numeric array") from None
    if pi.shape != (n,):
        raise ValueError(f"priors: expected {n} values (one per user), got shape {pi.shape}")
    if not np.all(np.isfinite(pi)) or np.any(pi < 0) or pi.sum() <= 0:
        raise ValueError("priors: must be finite, non-negative and not all zero")
    return pi / pi.sum()


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _static_error(values: np.ndarray, pi: np.ndarray) -> float:
    _, inverse = np.unique(values, axis=0, return_inverse=True)
    best = np.zeros(inverse.max() + 1)
    np.maximum.at(best, inverse.ravel(), pi)
    return float(max(0.0, 1.0 - best.sum()))


def _exact_1d(family, p, pi) -> tuple[float, float]:
    """``int sum_n pi_n f_n - max_n pi_n f_n`` with the integrator of :mod:`privacy_audit.quadrature`."""
    dist = torch_distribution(family, p)   # log_prob in (x - m) / s form: no cancellation for spikes
    logpi = torch.as_tensor(np.log(pi))

    def integrand(x: np.ndarray):
        out, labels = np.zeros(x.shape), np.zeros(x.shape, dtype=np.int64)
        for sl in _chunks(x.size, pi.size):
            lf = dist.log_prob(torch.as_tensor(x[sl], dtype=torch.float64)[:, None, None])[..., 0] + logpi
            m, arg = lf.max(dim=1, keepdim=True)
            m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
            # sum of the non-maximal terms directly: "sum - 1" would lose terms below 1e-16.
            rest = torch.exp(lf - m).scatter_(1, arg, 0.0).sum(1)
            out[sl] = (torch.exp(m[:, 0]) * rest).numpy()
            labels[sl] = arg[:, 0].numpy()
        return out, labels

    value, err = quad_1d(integrand, family, p)
    return value, err + 1e-10 * abs(value)   # floating-point evaluation of the densities


def _monte_carlo(family, p, pi, *, confidence, target, max_samples, min_samples, batch_size, seed,
                 progress, uploads=1):
    """Adaptive Monte Carlo; sampling of block k+1 (one worker thread) overlaps the GEMM of block k."""
    from concurrent.futures import ThreadPoolExecutor

    n_users, dim = next(iter(p.values())).shape
    logd = user_log_density(family, p)
    logpi = torch.as_tensor(np.log(pi))
    tpi = torch.as_tensor(pi)
    block = batch_size or int(min(8192, max(256, (1 << 22) // max(n_users, 2 * dim * uploads))))
    bound = 1.0 - 1.0 / n_users   # 1 - max_n post_n(x) lies in [0, 1 - 1/N]
    total, sums = 0, np.zeros(3)
    per_user = torch.zeros(n_users, dtype=torch.float64)
    halfwidth, converged, rule = math.inf, False, "none"
    gen = torch.Generator().manual_seed(seed)

    def plan(done: int) -> int:
        """Size of the next block from the statistics so far (deterministic, so reproducible)."""
        want = block
        if total >= min_samples and total > 1:
            var = max(0.0, (sums[1] - sums[0] ** 2 / total) / (total - 1))
            factor = 1.0 if rule == "student_t" else 2.0
            want = int(min(block, max(256, 1.1 * factor * required_samples(var, target, confidence) - done)))
        return int(min(want, max_samples - done))

    def draw(n: int) -> torch.Tensor:
        return logd.draw(user_indices(tpi, n, gen), uploads, gen)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=max_samples, unit="sample", desc="misattribution")
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(draw, plan(0))
        while pending is not None:
            feats = pending.result()
            n_b = feats.shape[0]
            nxt = plan(total + n_b)
            pending = pool.submit(draw, nxt) if nxt > 0 else None
            lf = logd.joint(feats, uploads) + logpi
            post = torch.softmax(lf, dim=1)
            top, arg = post.max(dim=1)
            g = 1.0 - top
            g2 = g * g
            sums += (float(g.sum()), float(g2.sum()), float((g2 * g).sum()))
            post.scatter_(1, arg[:, None], 0.0)
            per_user += post.sum(0)
            total += n_b
            if bar is not None:
                bar.update(n_b)
            if total >= max(min_samples, 2):
                _, halfwidth, rule = mean_interval(total, *sums, confidence, bound)
                if halfwidth <= target:
                    converged = True
                    break
        if pending is not None:
            pending.result()  # the speculative block is discarded
    if bar is not None:
        bar.close()
    mean, halfwidth, rule = mean_interval(total, *sums, confidence, bound)
    return mean, halfwidth, total, converged, (per_user / (total * tpi)).numpy(), rule


def bayes_misattribution(family: str, params, priors=None, method: str = "auto", *,
                         confidence: float = 0.95, target_halfwidth: float = 0.005,
                         max_samples: int = 2_000_000, min_samples: int = 2048,
                         batch_size: int | None = None, random_state=0,
                         progress: bool = False, uploads_per_user: int = 1) -> MisattributionEstimate:
    """Error probability of the MAP attributor over ``N`` users (see the module docstring).

    ``family``: a registered family name (:mod:`idfree_core.families`); ``params`` maps its
    parameter names (``alpha``/``beta``, ``mean``/``std``, ``a``/``b``, ``value``) to ``(N, D)``
    arrays (independent coordinates); ``priors`` (N,)
    non-negative weights, normalised (uniform if None).  ``method="auto"`` integrates exactly when
    ``D == 1`` (and for point masses) and uses Monte Carlo otherwise.

    ``uploads_per_user = m``: the attributor sees ``m`` i.i.d. uploads known to come from one user
    and uses their joint likelihood (summed sufficient statistics, :mod:`privacy_audit.sampling`).
    Gaussian users sharing one std per coordinate reduce exactly to one upload with std
    ``s / sqrt(m)`` (``xbar`` is sufficient, the spread around it has the same law for everyone);
    otherwise Monte Carlo.  Point masses do not depend on ``m``.
    """
    family, p = check_params(family, params)
    n_users, dim = next(iter(p.values())).shape
    pi = _check_priors(priors, n_users)
    if method not in METHODS:
        raise ValueError(f"method: unknown method {method!r}; expected one of {list(METHODS)}")
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValueError(f"confidence: expected a number in (0, 1), got {confidence!r}")
    if not (isinstance(target_halfwidth, (int, float)) and target_halfwidth > 0
            and math.isfinite(target_halfwidth)):
        raise ValueError(f"target_halfwidth: expected a positive number, got {target_halfwidth!r}")
    max_samples = _positive_int(max_samples, "max_samples")
    min_samples = _positive_int(min_samples, "min_samples")
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
    uploads = _positive_int(uploads_per_user, "uploads_per_user")
    seed = seed_int(random_state)
    ceiling = 1.0 - float(pi.max())

    spec = family_spec(family)
    if spec.is_point_mass:
        if method == "monte_carlo":
            raise ValueError(f"method: point masses ({family} family) are always integrated exactly")
        v = _static_error(np.concatenate([p[k] for k in spec.param_names], axis=1), pi)
        return MisattributionEstimate(v, (v, v), "exact", 0, float(confidence), 0.0, interval="exact",
                                      uploads_per_user=uploads)
    if method == "exact" and dim > 1:
        raise ValueError(f"method: exact integration is implemented for D=1, got D={dim}; use monte_carlo")
    keep = pi > 0
    pk = {k: v[keep] for k, v in p.items()}
    if int(keep.sum()) == 1:
        return MisattributionEstimate(0.0, (0.0, 0.0), "exact", 0, float(confidence), 0.0, interval="exact",
                                      uploads_per_user=uploads)
    if uploads > 1 and spec.location_scale_normal and np.all(pk["std"] == pk["std"][:1]):
        pk, mc_uploads = {"mean": pk["mean"], "std": pk["std"] / math.sqrt(uploads)}, 1
    else:
        mc_uploads = uploads
    if method == "exact" and mc_uploads > 1:
        raise ValueError("method: exact integration of several uploads needs Gaussian users sharing one std")
    if method == "exact" or (method == "auto" and dim == 1 and mc_uploads == 1):
        v, err = _exact_1d(family, pk, pi[keep])
        v = float(min(max(v, 0.0), ceiling))
        return MisattributionEstimate(v, (max(0.0, v - err), min(ceiling, v + err)), "exact", 0,
                                      float(confidence), float(err), uploads_per_user=uploads)
    mean, hw, n, converged, pu, rule = _monte_carlo(
        family, pk, pi[keep], confidence=float(confidence), target=float(target_halfwidth),
        max_samples=max_samples, min_samples=min_samples, batch_size=batch_size, seed=seed,
        progress=progress, uploads=mc_uploads)
    per_user = np.full(n_users, np.nan)
    per_user[keep] = pu
    mean = min(max(mean, 0.0), ceiling)
    return MisattributionEstimate(
        float(mean), (float(max(0.0, mean - hw)), float(min(ceiling, mean + hw))), "monte_carlo",
        n, float(confidence), float(hw), converged, tuple(float(v) for v in per_user), rule, uploads)
