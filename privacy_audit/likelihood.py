"""All users' log-likelihoods at a block of uploads, and seeded draws of those uploads.

Two implementations of one interface (:func:`user_log_density` picks by family):

* :class:`LinearLogDensity` (the exponential families with a natural form in
  :data:`LINEAR_FORMS`: Beta, Gaussian): ``log f_n(x) = T(x) @ W + c`` is one float64 GEMM, and
  ``m`` uploads need only the *summed* sufficient statistics (``(sum_k T(x_k)) @ W + m c``), drawn
  directly by :data:`privacy_audit.sampling.SUFFICIENT_SAMPLERS`.

  - Beta: ``log f_n(x) = sum_d (a_nd - 1) log x_d + (b_nd - 1) log(1 - x_d) - log B(a_nd, b_nd)``;
  - Gaussian (diagonal): ``log f_n(x) = [x^2, x] @ [-1/(2 s^2); mu / s^2]^T + c_n`` with
    ``c_n = -sum_d mu_nd^2 / (2 s_nd^2) - sum_d log s_nd - D/2 log 2 pi`` (coordinates centred first
    to limit cancellation).

* :class:`TorchLogDensity` (any other registered family, e.g. Kumaraswamy, which is not an
  exponential family jointly in (a, b)): the features of ``m`` uploads are the uploads
  themselves, ``(B, m, D)``, drawn by the family record's seeded inverse-CDF sampler
  (:meth:`idfree_core.families.FamilySpec.sample`), and the joint log-likelihood is
  ``sum_k sum_d log f_nd(x_kd)`` from the record's torch distribution, evaluated in chunks.

Both expose ``__call__(x) -> (B, N)`` for single uploads ``x`` of shape ``(B, D)``,
``draw(idx, m, gen)`` (features of ``m`` uploads of each user ``idx[b]``) and
``joint(features, m) -> (B, N)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import special

from idfree_core.families import get_family_spec
from privacy_audit.sampling import SUFFICIENT_SAMPLERS, as_tensors

__all__ = ["LinearLogDensity", "TorchLogDensity", "user_log_density", "LINEAR_FORMS", "family_spec"]

_BLOCK = 1 << 22  # float64 elements per chunk of (B, m, N, D) log-densities


def family_spec(family: str):
    """The registry record of ``family``; an unknown name is a one-line ``ValueError``."""
    try:
        return get_family_spec(family)
    except ValueError as exc:
        raise ValueError(f"family: {exc}") from None


def _beta_form(p):
    a, b = p["alpha"], p["beta"]
    W = np.concatenate([a - 1.0, b - 1.0], axis=1).T.copy()
    return None, W, -special.betaln(a, b).sum(axis=1)


def _beta_features(x, center):
    tiny = torch.finfo(torch.float64).tiny
    return torch.cat([torch.log(x.clamp_min(tiny)), torch.log1p(-x).clamp_min(-745.0)], dim=1)


def _gaussian_form(p):
    m, s = p["mean"], p["std"]
    mc, prec = m - m.mean(axis=0), 1.0 / s**2
    W = np.concatenate([-0.5 * prec, mc * prec], axis=1).T.copy()
    c = -0.5 * (mc**2 * prec).sum(axis=1) - np.log(s).sum(axis=1) - 0.5 * m.shape[1] * math.log(2 * math.pi)
    return m.mean(axis=0), W, c


def _gaussian_features(x, center):
    xc = x - center
    return torch.cat([xc * xc, xc], dim=1)


# family name -> (params -> (center, W, c), (x, center) -> T(x)); draws: SUFFICIENT_SAMPLERS
LINEAR_FORMS = {"beta": (_beta_form, _beta_features), "gaussian": (_gaussian_form, _gaussian_features)}


class LinearLogDensity:
    """All users' log-densities at a block of points as ``T(x) @ W + c`` (one float64 GEMM)."""

    def __init__(self, family: str, params: dict[str, np.ndarray]):
        form = LINEAR_FORMS.get(family)
        if form is None or SUFFICIENT_SAMPLERS.get(family) is None:
            raise ValueError(f"family: {family!r} has no linear (exponential-family) log-density here")
        self.family = family
        center, W, c = form[0](params)
        self._features = form[1]
        self.center = None if center is None else torch.as_tensor(center)
        self.W, self.c = torch.as_tensor(W), torch.as_tensor(c)
        self._tp = as_tensors(params)
        self._sampler = SUFFICIENT_SAMPLERS[family]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features(torch.as_tensor(x, dtype=torch.float64), self.center)

    def __call__(self, x) -> torch.Tensor:
        """``(B, N)`` log-densities of the ``N`` users at the ``B`` rows of ``x`` (``(B, D)``)."""
        return torch.addmm(self.c, self.features(x), self.W)

    def draw(self, idx: torch.Tensor, m: int, gen: torch.Generator) -> torch.Tensor:
        """Summed sufficient statistics of ``m`` uploads of each user ``idx[b]``."""
        return self._sampler(self._tp, self.center, idx, m, gen)

    def joint(self, feats: torch.Tensor, m: int) -> torch.Tensor:
        return torch.addmm(m * self.c, feats, self.W)

    def draw_from(self, params: dict[str, np.ndarray], n: int, m: int, gen: torch.Generator) -> torch.Tensor:
        """Features of ``n`` groups of ``m`` uploads from another member ``params`` (one row)."""
        return self._sampler(as_tensors(params), self.center, torch.zeros(n, dtype=torch.long), m, gen)


class TorchLogDensity:
    """The same interface from the family record's torch distribution (any registered family)."""

    def __init__(self, family: str, params: dict[str, np.ndarray]):
        self.spec = family_spec(family)
        if self.spec.is_point_mass:
            raise ValueError(f"family: {family!r} has no density (point masses)")
        self.family = family
        self.params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        self._tp = as_tensors(self.params)
        self.dist = self.spec.torch_distribution(self._tp)  # batch (N, D)
        self.n_users, self.dim = next(iter(self.params.values())).shape

    def __call__(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)
        return self.joint(x[:, None, :], 1)

    def draw(self, idx: torch.Tensor, m: int, gen: torch.Generator) -> torch.Tensor:
        """``(B, m, D)`` uploads: ``m`` i.i.d. draws of each user ``idx[b]``."""
        sub = {k: v[idx] for k, v in self._tp.items()}
        return self.spec.sample(sub, (m,), gen).transpose(0, 1).contiguous()

    def draw_from(self, params: dict[str, np.ndarray], n: int, m: int, gen: torch.Generator) -> torch.Tensor:
        sub = {k: torch.as_tensor(np.asarray(v, np.float64)[[0] * n]) for k, v in params.items()}
        return self.spec.sample(sub, (m,), gen).transpose(0, 1).contiguous()

    def joint(self, feats: torch.Tensor, m: int) -> torch.Tensor:
        """``(B, N)`` joint log-likelihoods ``sum_k sum_d log f_nd(x_kd)`` of ``(B, m, D)`` uploads."""
        B = feats.shape[0]
        out = torch.empty((B, self.n_users), dtype=torch.float64)
        step = max(1, _BLOCK // max(1, feats.shape[1] * self.n_users * self.dim))
        for i in range(0, B, step):
            x = feats[i:i + step, :, None, :]
            out[i:i + step] = self.dist.log_prob(x).sum(-1).sum(1)
        return out


def user_log_density(family: str, params: dict[str, np.ndarray]):
    """:class:`LinearLogDensity` where the family has a natural form here, else :class:`TorchLogDensity`."""
    if LINEAR_FORMS.get(family) is not None and SUFFICIENT_SAMPLERS.get(family) is not None:
        return LinearLogDensity(family, params)
    return TorchLogDensity(family, params)
