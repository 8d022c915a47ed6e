"""Seeded draws of summed sufficient statistics, and a mean interval that covers for rare events.

**Draws.**  :class:`privacy_audit.divergences.LinearLogDensity` writes every user's log-density as
``T(x) @ W + c``; for ``m`` uploads known to share a user the joint log-likelihood is
``(sum_k T(x_k)) @ W + m c``, so only the *summed* statistics are needed.  Per family (one dict,
:data:`SUFFICIENT_SAMPLERS`):

* Gaussian: ``sum_k (x_k - c) = m (xbar - c)`` and ``sum_k (x_k - c)^2 = m (xbar - c)^2 +
  s^2 chi^2_{m-1}`` with ``xbar ~ N(mu, s^2 / m)`` independent of the chi-square (Cochran's theorem),
  so ``m`` uploads cost one draw;
* Beta: ``x = G_a / (G_a + G_b)`` from two standard Gamma draws (``torch._standard_gamma``, seeded
  by a ``torch.Generator``; about twice as fast as torch's Dirichlet-based ``Beta.sample``), so
  ``log x = log G_a - log(G_a + G_b)`` and ``log(1 - x) = log G_b - log(G_a + G_b)`` without
  cancellation; ``m`` uploads sum ``m`` draws.

**Interval** (:func:`mean_interval`) for the mean of i.i.d. values in ``[0, R]``: the Student-t
interval when Cochran's rule ``n >= 25 G1^2`` (G1 the sample skewness; Cochran 1977, Sampling
Techniques, Sec. 2.15) says the CLT applies, widened to at least the range term
``7 R log(4/alpha) / (3 (n - 1))`` of the empirical Bernstein bound (what events never seen in ``n``
draws can hide); otherwise the two-sided empirical Bernstein interval (Maurer and Pontil 2009,
Thm. 4) ``sqrt(2 V log(4/alpha) / n) + 7 R log(4/alpha) / (3 (n - 1))``, valid for any
distribution on ``[0, R]``.  Rare events (a misattribution of 1e-3 seen in a handful of draws) are
exactly the skewed case, where the t interval under-covered (8 misses in 60).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

__all__ = ["SUFFICIENT_SAMPLERS", "mean_interval", "user_indices"]

_TINY = torch.finfo(torch.float64).tiny


def user_indices(pi: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` user indices drawn from the prior ``pi`` (seeded)."""
    return torch.multinomial(pi, n, replacement=True, generator=gen)


def _gaussian(p: dict[str, torch.Tensor], center: torch.Tensor, idx: torch.Tensor, m: int,
              gen: torch.Generator) -> torch.Tensor:
    mean, std = p["mean"][idx], p["std"][idx]
    xc = mean - center + std * torch.randn(mean.shape, generator=gen, dtype=torch.float64) / math.sqrt(m)
    sq = m * xc * xc
    if m > 1:  # within-group sum of squares: s^2 chi^2_{m-1} = s^2 * 2 Gamma((m - 1) / 2)
        shape = torch.full(mean.shape, (m - 1) / 2, dtype=torch.float64)
        sq = sq + std * std * 2 * torch._standard_gamma(shape, generator=gen)
    return torch.cat([sq, m * xc], dim=1)


def _beta(p: dict[str, torch.Tensor], center, idx: torch.Tensor, m: int, gen: torch.Generator) -> torch.Tensor:
    a, b = p["alpha"][idx], p["beta"][idx]
    la = torch.zeros_like(a)
    lb = torch.zeros_like(b)
    for _ in range(m):
        ga = torch._standard_gamma(a, generator=gen).clamp_min_(_TINY)
        gb = torch._standard_gamma(b, generator=gen).clamp_min_(_TINY)
        ls = torch.log(ga + gb)
        la += torch.log(ga) - ls
        lb += torch.log(gb) - ls
    return torch.cat([la, lb], dim=1)


SUFFICIENT_SAMPLERS = {"gaussian": _gaussian, "beta": _beta}


def mean_interval(n: int, s1: float, s2: float, s3: float, confidence: float, bound: float
                  ) -> tuple[float, float, str]:
    """``(mean, half-width, rule)`` from the power sums of ``n`` values in ``[0, bound]`` (module doc)."""
    mean = s1 / n
    if n < 2:
        return mean, math.inf, "none"
    var_b = max(0.0, s2 / n - mean * mean)
    var = var_b * n / (n - 1)
    m3 = s3 / n - 3 * mean * s2 / n + 2 * mean**3
    log_term = math.log(4 / (1 - confidence))
    range_term = 7 * bound * log_term / (3 * (n - 1))
    skew2 = m3 * m3 / var_b**3 if var_b > 0 else math.inf
    if n >= 25 * skew2:
        hw = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * math.sqrt(var / n)
        return mean, max(hw, range_term), "student_t"
    return mean, math.sqrt(2 * var * log_term / n) + range_term, "empirical_bernstein"


def required_samples(var: float, target: float, confidence: float) -> float:
    """Samples for a t half-width ``target`` at variance ``var`` (a planning figure)."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return z * z * var / (target * target)


def as_tensors(p: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v, dtype=torch.float64) for k, v in p.items()}
