"""The Kumaraswamy(a, b) law on (0, 1): torch sampler with in-support draws, and its scipy twin.

Density ``f(x) = a b x^(a-1) (1 - x^a)^(b-1)``, CDF ``F(x) = 1 - (1 - x^a)^b``, quantile
``F^-1(q) = (1 - (1 - q)^(1/b))^(1/a)`` and raw moments ``E[x^n] = b B(1 + n/a, b)``
(Kumaraswamy 1980; Jones 2009, "Kumaraswamy's distribution: a beta-type distribution with some
tractability advantages", Statist. Methodol. 6).  The inverse CDF is a closed form, so the
pathwise gradient is exact (``torch.distributions.Kumaraswamy``: a transformed uniform).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize, special, stats
from torch.distributions import Kumaraswamy
from torch.distributions.utils import clamp_probs

__all__ = ["InteriorKumaraswamy", "kumaraswamy", "kumaraswamy_std", "b_for_std"]


class InteriorKumaraswamy(Kumaraswamy):
    """``torch.distributions.Kumaraswamy`` whose draws stay strictly inside (0, 1).

    In float32 ``(1 - u)^(1/b)`` rounds to 1 for ``u`` close to 0 and the quantile lands on an
    endpoint (log-density ``-inf``); draws are clamped to ``[eps, 1 - eps]`` as
    ``torch.distributions.Beta`` does for its Dirichlet draws.
    """

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return clamp_probs(super().rsample(sample_shape))


class kumaraswamy_gen(stats.rv_continuous):
    """scipy.stats-style Kumaraswamy(a, b) (closed-form pdf, cdf, ppf and moments)."""

    def _pdf(self, x, a, b):
        return np.exp(self._logpdf(x, a, b))

    def _logpdf(self, x, a, b):
        return np.log(a) + np.log(b) + special.xlogy(a - 1, x) + special.xlog1py(b - 1, -x ** a)

    def _cdf(self, x, a, b):
        return -np.expm1(b * np.log1p(-x ** a))

    def _ppf(self, q, a, b):
        return (-np.expm1(np.log1p(-q) / b)) ** (1.0 / a)

    def _munp(self, n, a, b):
        return b * special.beta(1.0 + n / a, b)


kumaraswamy = kumaraswamy_gen(a=0.0, b=1.0, name="kumaraswamy")


def kumaraswamy_std(a: float, b: float) -> float:
    """Standard deviation of Kumaraswamy(a, b) from the raw moments."""
    m1, m2 = b * special.beta(1.0 + 1.0 / a, b), b * special.beta(1.0 + 2.0 / a, b)
    return math.sqrt(max(m2 - m1 * m1, 0.0))


def b_for_std(a: float, spread: float) -> float:
    """The ``b >= 1`` with ``std(Kumaraswamy(a, b)) == spread`` (decreasing in ``b`` there)."""
    top = kumaraswamy_std(a, 1.0)
    if not 0 < spread < top:
        raise ValueError(f"spread must be in (0, {top:.4f}) for a = {a}")
    log_b = optimize.brentq(lambda lb: kumaraswamy_std(a, math.exp(lb)) - spread, 0.0, math.log(1e12),
                            xtol=1e-13, rtol=1e-14)
    return float(math.exp(log_b))
