"""Per-user parameter arrays, batched log-densities and pairwise divergence matrices.

Users' distributions are products over ``D`` independent coordinates, given as plain arrays
``params[name]`` of shape ``(N, D)``: Beta ``alpha``/``beta``, Gaussian ``mean``/``std`` or a static
point mass ``value``.

**Log-densities as one matrix product.**  For the exponential families used here the log-density
of every user ``n`` at every sample ``x`` is linear in sufficient statistics ``T(x)``:

* Beta: ``log f_n(x) = sum_d (a_nd - 1) log x_d + (b_nd - 1) log(1 - x_d) - log B(a_nd, b_nd)``,
  i.e. ``[log x, log(1 - x)] @ [a - 1; b - 1]^T - c``;
* Gaussian (diagonal): ``log f_n(x) = [x^2, x] @ [-1/(2 s^2); mu / s^2]^T + c_n`` with
  ``c_n = -sum_d mu_nd^2 / (2 s_nd^2) - sum_d log s_nd - D/2 log 2 pi`` (coordinates are centred
  first to limit cancellation),

so :class:`LinearLogDensity` evaluates ``(B, N)`` log-densities with one float64 GEMM.

**Divergences** (:func:`divergence_matrix`), summed over independent coordinates:
KL through the ``torch.distributions.kl`` registry; Hellinger through the Bhattacharyya
coefficient ``BC = prod_d BC_d`` (Gaussian closed form; Beta
``BC_d = B((a1+a2)/2, (b1+b2)/2) / sqrt(B(a1, b1) B(a2, b2))``), with ``H^2 = 1 - BC``;
total variation exactly by quadrature in 1-D, by Monte Carlo
``TV(f, g) = E_f[(1 - g/f)_+]`` otherwise, and bounded by ``H^2 <= TV <= H sqrt(2 - H^2)``
(Le Cam) and Pinsker ``TV <= sqrt(KL/2)``; Jensen-Shannon (nats) by quadrature or Monte Carlo.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from scipy import special

from idfree_core.seeding import torch_generator
from privacy_audit.quadrature import integrate_mixture_1d
from privacy_audit.sampling import SUFFICIENT_SAMPLERS, as_tensors

FAMILY_PARAMS = {"beta": ("alpha", "beta"), "gaussian": ("mean", "std"), "static": ("value",)}
KINDS = ("kl", "tv", "tv_lower", "tv_upper", "hellinger", "js")


def check_params(family: str, params) -> tuple[str, dict[str, np.ndarray]]:
    """Validate ``family`` and ``params`` (dict of equal-shape ``(N, D)`` finite arrays) -> float64."""
    if family not in FAMILY_PARAMS:
        raise ValueError(f"family: unknown family {family!r}; expected one of {sorted(FAMILY_PARAMS)}")
    if isinstance(params, torch.distributions.Distribution):
        params = _from_torch(family, params)
    if not isinstance(params, Mapping):
        raise ValueError(f"params: expected a dict with keys {list(FAMILY_PARAMS[family])}")
    names = FAMILY_PARAMS[family]
    if set(params) != set(names):
        raise ValueError(f"params: {family} needs exactly the keys {list(names)}, got {sorted(params)}")
    out, shape = {}, None
    for name in names:
        try:
            arr = np.asarray(params[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"params[{name!r}]: not a numeric array") from None
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise ValueError(f"params[{name!r}]: expected shape (N, D), got {arr.shape}")
        if shape is not None and arr.shape != shape:
            raise ValueError(f"params[{name!r}]: shape {arr.shape} differs from {shape}")
        shape = arr.shape
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"params[{name!r}]: contains NaN or infinite values")
        if name in ("alpha", "beta", "std") and np.any(arr <= 0):
            raise ValueError(f"params[{name!r}]: must be > 0")
        out[name] = arr
    return family, out


def _from_torch(family: str, dist) -> dict[str, np.ndarray]:
    """Parameters of a batched ``Beta``/``Normal`` (optionally ``Independent``) as ``(N, D)`` arrays."""
    while isinstance(dist, torch.distributions.Independent):
        dist = dist.base_dist
    if family == "beta" and isinstance(dist, torch.distributions.Beta):
        pairs = {"alpha": dist.concentration1, "beta": dist.concentration0}
    elif family == "gaussian" and isinstance(dist, torch.distributions.Normal):
        pairs = {"mean": dist.loc, "std": dist.scale}
    else:
        raise ValueError(f"params: a {type(dist).__name__} distribution does not match family {family!r}")
    n = dist.batch_shape[0] if len(dist.batch_shape) else 1
    return {k: v.detach().double().reshape(n, -1).numpy() for k, v in pairs.items()}


def torch_distribution(family: str, params: dict[str, np.ndarray], index=slice(None)):
    """The users' ``torch.distributions`` objects (batch ``(N, D)``), for sampling and the KL registry."""
    if family == "beta":
        return torch.distributions.Beta(torch.as_tensor(params["alpha"][index]),
                                        torch.as_tensor(params["beta"][index]))
    if family == "gaussian":
        return torch.distributions.Normal(torch.as_tensor(params["mean"][index]),
                                          torch.as_tensor(params["std"][index]))
    raise ValueError(f"family: {family!r} has no density (point masses)")


class LinearLogDensity:
    """All users' log-densities at a block of points as ``T(x) @ W + c`` (one float64 GEMM)."""

    def __init__(self, family: str, params: dict[str, np.ndarray]):
        self.family = family
        if family == "beta":
            a, b = params["alpha"], params["beta"]
            self.center = None
            self.W = torch.as_tensor(np.concatenate([a - 1.0, b - 1.0], axis=1).T.copy())
            self.c = torch.as_tensor(-special.betaln(a, b).sum(axis=1))
        elif family == "gaussian":
            m, s = params["mean"], params["std"]
            self.center = torch.as_tensor(m.mean(axis=0))
            mc, prec = m - m.mean(axis=0), 1.0 / s**2
            self.W = torch.as_tensor(np.concatenate([-0.5 * prec, mc * prec], axis=1).T.copy())
            self.c = torch.as_tensor(-0.5 * (mc**2 * prec).sum(axis=1) - np.log(s).sum(axis=1)
                                     - 0.5 * m.shape[1] * math.log(2 * math.pi))
        else:
            raise ValueError(f"family: {family!r} has no density (point masses)")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)
        if self.family == "beta":
            tiny = torch.finfo(torch.float64).tiny
            return torch.cat([torch.log(x.clamp_min(tiny)), torch.log1p(-x).clamp_min(-745.0)], dim=1)
        xc = x - self.center
        return torch.cat([xc * xc, xc], dim=1)

    def __call__(self, x) -> torch.Tensor:
        """``(B, N)`` log-densities of the ``N`` users at the ``B`` rows of ``x`` (``(B, D)``)."""
        return torch.addmm(self.c, self.features(x), self.W)


def quad_1d(func, family: str, params: dict[str, np.ndarray]) -> tuple[float, float]:
    """``(integral, error bound)`` of a vectorised ``func`` (at most the users' mean density) over
    the 1-D support (:func:`privacy_audit.quadrature.integrate_mixture_1d`: cut points at every
    user's quantiles, adaptive Gauss-Legendre, tail mass added to the error)."""
    return integrate_mixture_1d(func, family, params)


def _chunks(n: int, per_row: int, budget: int = 1 << 23):
    step = max(1, budget // max(1, per_row))
    for i in range(0, n, step):
        yield slice(i, min(n, i + step))


def _kl_matrix(family, p) -> np.ndarray:
    n, d = next(iter(p.values())).shape
    out = np.empty((n, n))
    q = torch_distribution(family, p)
    qb = type(q)(*[t.unsqueeze(0) for t in ((q.concentration1, q.concentration0) if family == "beta"
                                            else (q.loc, q.scale))])
    for sl in _chunks(n, n * d):
        pa = torch_distribution(family, p, sl)
        pb = type(pa)(*[t.unsqueeze(1) for t in ((pa.concentration1, pa.concentration0) if family == "beta"
                                                 else (pa.loc, pa.scale))])
        out[sl] = torch.distributions.kl.kl_divergence(pb, qb).sum(-1).numpy()
    return out


def log_bhattacharyya_matrix(family: str, params) -> np.ndarray:
    """``log BC(f_i, f_j)`` for all pairs (closed forms, summed over coordinates; <= 0)."""
    family, p = check_params(family, params)
    n, d = next(iter(p.values())).shape
    out = np.empty((n, n))
    for sl in _chunks(n, n * d):
        if family == "beta":
            a1, b1 = p["alpha"][sl, None, :], p["beta"][sl, None, :]
            a2, b2 = p["alpha"][None], p["beta"][None]
            val = special.betaln((a1 + a2) / 2, (b1 + b2) / 2) - 0.5 * (special.betaln(a1, b1)
                                                                         + special.betaln(a2, b2))
        elif family == "gaussian":
            m1, s1 = p["mean"][sl, None, :], p["std"][sl, None, :]
            m2, s2 = p["mean"][None], p["std"][None]
            v = s1**2 + s2**2
            val = -((m1 - m2) ** 2) / (4 * v) - 0.5 * np.log(v / (2 * s1 * s2))
        else:
            same = np.all(p["value"][sl, None, :] == p["value"][None], axis=-1)
            out[sl] = np.where(same, 0.0, -np.inf)
            continue
        out[sl] = np.minimum(val.sum(-1), 0.0)
    np.fill_diagonal(out, 0.0)
    return out


def _pairwise_1d(family, p, kind) -> np.ndarray:
    n = next(iter(p.values())).shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            sub = {k: v[[i, j]] for k, v in p.items()}
            logd = LinearLogDensity(family, sub)

            def integrand(x, logd=logd):
                lf = logd(torch.as_tensor(x, dtype=torch.float64)[:, None]).numpy()
                li, lj = lf[:, 0], lf[:, 1]
                if kind == "tv":   # |f_i - f_j| has a kink where the sign changes
                    return 0.5 * np.abs(np.exp(li) - np.exp(lj)), li > lj
                mix = np.logaddexp(li, lj) - math.log(2)
                with np.errstate(invalid="ignore"):
                    val = np.exp(li) * (li - mix) + np.exp(lj) * (lj - mix)
                return 0.5 * np.where(np.isfinite(val), val, 0.0)

            out[i, j] = out[j, i] = quad_1d(integrand, family, sub)[0]
    return np.clip(out, 0.0, 1.0 if kind == "tv" else math.log(2))


def _pairwise_mc(family, p, kind, n_samples, random_state) -> np.ndarray:
    n = next(iter(p.values())).shape[0]
    logd = LinearLogDensity(family, p)
    acc = np.zeros((n, n))
    gen = torch_generator(random_state)
    tp = as_tensors(p)
    for i in range(n):
        idx = torch.full((n_samples,), i, dtype=torch.long)
        L = torch.addmm(logd.c, SUFFICIENT_SAMPLERS[family](tp, logd.center, idx, 1, gen), logd.W)
        diff = L - L[:, i : i + 1]
        if kind == "tv":
            acc[i] = torch.clamp(1 - torch.exp(diff), min=0).mean(0).numpy()
        else:
            acc[i] = (math.log(2) - torch.logaddexp(torch.zeros(()), diff)).mean(0).numpy()
    out = 0.5 * (acc + acc.T)  # both directions estimate the same symmetric quantity
    np.fill_diagonal(out, 0.0)
    return np.clip(out, 0.0, 1.0 if kind == "tv" else math.log(2))


def divergence_matrix(family: str, params, kind: str = "kl", *, n_samples: int = 20000,
                      random_state=0) -> np.ndarray:
    """Pairwise ``(N, N)`` divergences ``M[i, j] = div(f_i, f_j)`` between users' distributions.

    ``kind``: ``"kl"`` (``KL(f_i || f_j)``, nats, not symmetric), ``"hellinger"`` (``H`` with
    ``H^2 = 1 - BC`` in [0, 1]), ``"tv"`` (exact quadrature in 1-D, Monte Carlo with ``n_samples``
    per user otherwise), ``"tv_lower"`` / ``"tv_upper"`` (``H^2`` and
    ``min(H sqrt(2 - H^2), sqrt(min KL / 2))``), ``"js"`` (Jensen-Shannon, nats, quadrature in 1-D
    or Monte Carlo).  Static point masses: 0 for equal values, else the maximum of each divergence.
    """
    family, p = check_params(family, params)
    if kind not in KINDS:
        raise ValueError(f"kind: unknown divergence {kind!r}; expected one of {list(KINDS)}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 2:
        raise ValueError(f"n_samples: expected an integer >= 2, got {n_samples!r}")
    if family == "static":
        same = np.all(p["value"][:, None, :] == p["value"][None], axis=-1)
        top = {"kl": np.inf, "js": math.log(2)}.get(kind, 1.0)
        return np.where(same, 0.0, top)
    d = next(iter(p.values())).shape[1]
    if kind == "kl":
        out = np.maximum(_kl_matrix(family, p), 0.0)
        np.fill_diagonal(out, 0.0)
        return out
    if kind in ("hellinger", "tv_lower", "tv_upper"):
        h2 = np.clip(-np.expm1(log_bhattacharyya_matrix(family, p)), 0.0, 1.0)
        np.fill_diagonal(h2, 0.0)
        if kind == "hellinger":
            return np.sqrt(h2)
        if kind == "tv_lower":
            return h2
        kl = _kl_matrix(family, p)
        pinsker = np.sqrt(np.maximum(np.minimum(kl, kl.T), 0.0) / 2)
        return np.minimum(np.minimum(np.sqrt(h2 * (2 - h2)), pinsker), 1.0)
    if d == 1:
        return _pairwise_1d(family, p, kind)
    return _pairwise_mc(family, p, kind, int(n_samples), random_state)
