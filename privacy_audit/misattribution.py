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
  one float64 matrix product (:class:`privacy_audit.divergences.LinearLogDensity`).  Per-user
  error ``P(MAP != n | n) = E[post_n(x) 1{MAP(x) != n}] / pi_n`` comes for free.

The proximity bound (:func:`proximity_bound`) and divergence matrices (:func:`divergence_matrix`)
live in :mod:`privacy_audit.proximity` and :mod:`privacy_audit.divergences` and are re-exported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy import stats

from privacy_audit.divergences import (LinearLogDensity, _seed, check_params, divergence_matrix,
                                       quad_1d)
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
    users with prior 0); ``converged`` is False when ``max_samples`` ran out before the target.
    """

    value: float
    ci: tuple[float, float]
    method: str
    n_samples: int
    confidence: float
    error: float
    converged: bool = True
    per_user: tuple[float, ...] | None = None

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
    logd = LinearLogDensity(family, p)
    logpi = torch.as_tensor(np.log(pi))

    def integrand(x: float) -> float:
        lf = logd(torch.tensor([[x]], dtype=torch.float64))[0] + logpi
        m = float(lf.max())
        if not math.isfinite(m):
            return 0.0
        return math.exp(m) * max(0.0, float(torch.exp(lf - m).sum()) - 1.0)

    return quad_1d(integrand, family, p)


def _sampler(family, p, pi, logd):
    """``draw(n)``: sufficient statistics ``T(x)`` of ``n`` draws from the mixture (torch.distributions)."""
    users = torch.distributions.Categorical(probs=torch.as_tensor(pi))
    if family == "beta":
        # torch's Beta is the first coordinate of a Dirichlet; keeping both gives log x and log(1 - x).
        conc = torch.stack([torch.as_tensor(p["alpha"]), torch.as_tensor(p["beta"])], dim=-1)
        tiny = torch.finfo(torch.float64).tiny

        def draw(n: int) -> torch.Tensor:
            s = torch.distributions.Dirichlet(conc[users.sample((n,))], validate_args=False).sample()
            return torch.log(s.clamp_min(tiny)).transpose(1, 2).reshape(n, -1)
    else:
        mean, std = torch.as_tensor(p["mean"]), torch.as_tensor(p["std"])

        def draw(n: int) -> torch.Tensor:
            idx = users.sample((n,))
            return logd.features(torch.distributions.Normal(mean[idx], std[idx], validate_args=False).sample())
    return draw


def _monte_carlo(family, p, pi, *, confidence, target, max_samples, min_samples, batch_size, seed,
                 progress):
    """Adaptive Monte Carlo; sampling of block k+1 (one worker thread) overlaps the GEMM of block k."""
    from concurrent.futures import ThreadPoolExecutor

    n_users, dim = next(iter(p.values())).shape
    logd = LinearLogDensity(family, p)
    logpi = torch.as_tensor(np.log(pi))
    block = batch_size or int(min(8192, max(256, (1 << 22) // max(n_users, 2 * dim))))
    z2 = stats.norm.ppf(0.5 + confidence / 2) ** 2
    total = s1 = s2 = 0.0
    per_user = torch.zeros(n_users, dtype=torch.float64)
    halfwidth, converged = math.inf, False

    def plan(done: float) -> int:
        """Size of the next block from the statistics so far (deterministic, so reproducible)."""
        want = block
        if total >= min_samples and total > 1:
            var = max(0.0, (s2 - s1 * s1 / total) / (total - 1))
            want = int(min(block, max(256, 1.1 * z2 * var / target**2 - done)))
        return int(min(want, max_samples - done))

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=max_samples, unit="sample", desc="misattribution")
    with torch.random.fork_rng(devices=[]), ThreadPoolExecutor(max_workers=1) as pool:
        torch.manual_seed(seed)
        draw = _sampler(family, p, pi, logd)
        pending = pool.submit(draw, plan(0.0))
        while pending is not None:
            feats = pending.result()
            n_b = feats.shape[0]
            nxt = plan(total + n_b)
            pending = pool.submit(draw, nxt) if nxt > 0 else None
            lf = torch.addmm(logd.c, feats, logd.W) + logpi
            post = torch.exp(lf - torch.logsumexp(lf, dim=1, keepdim=True))
            top, arg = post.max(dim=1)
            g = 1.0 - top
            s1 += float(g.sum())
            s2 += float((g * g).sum())
            post.scatter_(1, arg[:, None], 0.0)
            per_user += post.sum(0)
            total += n_b
            if bar is not None:
                bar.update(n_b)
            if total >= max(min_samples, 2):
                var = max(0.0, (s2 - s1 * s1 / total) / (total - 1))
                halfwidth = stats.t.ppf(0.5 + confidence / 2, total - 1) * math.sqrt(var / total)
                if halfwidth <= target:
                    converged = True
                    break
        if pending is not None:
            pending.result()  # finish the speculative block inside fork_rng; it is discarded
    if bar is not None:
        bar.close()
    return s1 / total, halfwidth, int(total), converged, (per_user / (total * torch.as_tensor(pi))).numpy()


def bayes_misattribution(family: str, params, priors=None, method: str = "auto", *,
                         confidence: float = 0.95, target_halfwidth: float = 0.005,
                         max_samples: int = 2_000_000, min_samples: int = 2048,
                         batch_size: int | None = None, random_state=0,
                         progress: bool = False) -> MisattributionEstimate:
    """Error probability of the MAP attributor over ``N`` users (see the module docstring).

    ``family`` in ``{"beta", "gaussian", "static"}``; ``params`` maps ``alpha``/``beta``,
    ``mean``/``std`` or ``value`` to ``(N, D)`` arrays (independent coordinates); ``priors`` (N,)
    non-negative weights, normalised (uniform if None).  ``method="auto"`` integrates exactly when
    ``D == 1`` (and for point masses) and uses Monte Carlo otherwise.
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
    seed = _seed(random_state)
    ceiling = 1.0 - float(pi.max())

    if family == "static":
        if method == "monte_carlo":
            raise ValueError("method: point masses (static family) are always integrated exactly")
        v = _static_error(p["value"], pi)
        return MisattributionEstimate(v, (v, v), "exact", 0, float(confidence), 0.0)
    if method == "exact" and dim > 1:
        raise ValueError(f"method: exact integration is implemented for D=1, got D={dim}; use monte_carlo")
    keep = pi > 0
    pk = {k: v[keep] for k, v in p.items()}
    if int(keep.sum()) == 1:
        return MisattributionEstimate(0.0, (0.0, 0.0), "exact", 0, float(confidence), 0.0)
    if method == "exact" or (method == "auto" and dim == 1):
        v, err = _exact_1d(family, pk, pi[keep])
        v = float(min(max(v, 0.0), ceiling))
        return MisattributionEstimate(v, (max(0.0, v - err), min(ceiling, v + err)), "exact", 0,
                                      float(confidence), float(err))
    mean, hw, n, converged, pu = _monte_carlo(
        family, pk, pi[keep], confidence=float(confidence), target=float(target_halfwidth),
        max_samples=max_samples, min_samples=min_samples, batch_size=batch_size, seed=seed,
        progress=progress)
    per_user = np.full(n_users, np.nan)
    per_user[keep] = pu
    mean = min(max(mean, 0.0), ceiling)
    return MisattributionEstimate(
        float(mean), (float(max(0.0, mean - hw)), float(min(ceiling, mean + hw))), "monte_carlo",
        n, float(confidence), float(hw), converged, tuple(float(v) for v in per_user))
