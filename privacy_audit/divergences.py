"""Per-user parameter arrays, batched log-densities and pairwise divergence matrices.

Users' distributions are products over ``D`` independent coordinates of a registered family
(:mod:`idfree_core.families`), given as plain arrays ``params[name]`` of shape ``(N, D)`` (Beta
``alpha``/``beta``, Gaussian ``mean``/``std``, Kumaraswamy ``a``/``b``, a static point mass
``value``); :func:`check_params` is the family record's ``validate``.  All users' log-densities at
a block of samples come from :mod:`privacy_audit.likelihood` (one GEMM for the exponential families).

**Divergences** (:func:`divergence_matrix`), summed over independent coordinates:
KL through the ``torch.distributions.kl`` registry (families without a registered KL, e.g.
Kumaraswamy: quantile quadrature, :mod:`idfree_core.families.numeric`); Hellinger through the
Bhattacharyya coefficient ``BC = prod_d BC_d`` (Gaussian closed form; Beta
``BC_d = B((a1+a2)/2, (b1+b2)/2) / sqrt(B(a1, b1) B(a2, b2))``; otherwise quadrature), with ``H^2 = 1 - BC``;
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
from privacy_audit.likelihood import LinearLogDensity, TorchLogDensity, family_spec, user_log_density
from privacy_audit.quadrature import integrate_mixture_1d

__all__ = ["check_params", "torch_distribution", "LinearLogDensity", "TorchLogDensity", "user_log_density",
           "log_bhattacharyya_matrix", "divergence_matrix", "quad_1d", "KINDS"]

KINDS = ("kl", "tv", "tv_lower", "tv_upper", "hellinger", "js")


def check_params(family: str, params) -> tuple[str, dict[str, np.ndarray]]:
    """``(family, float64 (N, D) arrays)``: the family record's :meth:`~idfree_core.families.FamilySpec.validate`
    (one-line ``ValueError``), also accepting a batched torch distribution and ``(N,)`` arrays (D = 1)."""
    spec = family_spec(family)
    if isinstance(params, torch.distributions.Distribution):
        params = spec.params_from_torch(params)
    if not isinstance(params, Mapping):
        raise ValueError(f"params: expected a dict with keys {list(spec.param_names)}")
    if set(params) != set(spec.param_names):
        raise ValueError(f"params: {family} needs exactly the keys {list(spec.param_names)}, got {sorted(params)}")
    shaped = {}
    for name in spec.param_names:
        try:
            arr = np.asarray(params[name], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"params[{name!r}]: not a numeric array") from None
        shaped[name] = arr[:, None] if arr.ndim == 1 else arr
    return family, spec.validate(shaped, where="params")


def torch_distribution(family: str, params: dict[str, np.ndarray], index=slice(None)):
    """The users' ``torch.distributions`` objects (batch ``(N, D)``), for sampling and the KL registry."""
    spec = family_spec(family)
    if spec.is_point_mass:
        raise ValueError(f"family: {family!r} has no density (point masses)")
    return spec.torch_distribution({k: torch.as_tensor(params[k][index]) for k in spec.param_names})


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
    """``KL(f_i || f_j)`` summed over coordinates: the record's elementwise KL (torch's registry,
    else quantile quadrature, :mod:`idfree_core.families.numeric`)."""
    spec = family_spec(family)
    n, d = next(iter(p.values())).shape
    out = np.empty((n, n))
    for sl in _chunks(n, n * d * (1 if _has_torch_kl(spec) else 400)):
        out[sl] = spec.kl_divergence({k: v[sl, None, :] for k, v in p.items()},
                                     {k: v[None] for k, v in p.items()}).sum(-1)
    return out


def _has_torch_kl(spec) -> bool:
    one = {k: np.ones((1, 1)) for k in spec.param_names}
    try:
        torch.distributions.kl_divergence(spec.torch_distribution(one), spec.torch_distribution(
            {k: 2 * v for k, v in one.items()}))
    except NotImplementedError:
        return False
    return True


def _beta_log_bc(p, sl):
    a1, b1 = p["alpha"][sl, None, :], p["beta"][sl, None, :]
    a2, b2 = p["alpha"][None], p["beta"][None]
    return special.betaln((a1 + a2) / 2, (b1 + b2) / 2) - 0.5 * (special.betaln(a1, b1) + special.betaln(a2, b2))


def _gaussian_log_bc(p, sl):
    m1, s1 = p["mean"][sl, None, :], p["std"][sl, None, :]
    m2, s2 = p["mean"][None], p["std"][None]
    v = s1**2 + s2**2
    return -((m1 - m2) ** 2) / (4 * v) - 0.5 * np.log(v / (2 * s1 * s2))


# closed-form elementwise log BC; other families: the record's quadrature log-affinity at 1/2
LOG_BC = {"beta": _beta_log_bc, "gaussian": _gaussian_log_bc}


def log_bhattacharyya_matrix(family: str, params) -> np.ndarray:
    """``log BC(f_i, f_j)`` for all pairs (closed forms, summed over coordinates; <= 0)."""
    family, p = check_params(family, params)
    n, d = next(iter(p.values())).shape
    out = np.empty((n, n))
    spec = family_spec(family)
    closed = LOG_BC.get(family)
    for sl in _chunks(n, n * d * (1 if closed is not None else 400)):
        if spec.is_point_mass:
            rows = np.concatenate([p[k] for k in spec.param_names], axis=1)
            same = np.all(rows[sl, None, :] == rows[None], axis=-1)
            out[sl] = np.where(same, 0.0, -np.inf)
            continue
        if closed is not None:
            val = closed(p, sl)
        else:
            val = spec.log_affinity({k: v[sl, None, :] for k, v in p.items()}, {k: v[None] for k, v in p.items()}, 0.5)
        out[sl] = np.minimum(val.sum(-1), 0.0)
    np.fill_diagonal(out, 0.0)
    return out


def _pairwise_1d(family, p, kind) -> np.ndarray:
    n = next(iter(p.values())).shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            sub = {k: v[[i, j]] for k, v in p.items()}
            logd = user_log_density(family, sub)

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
    logd = user_log_density(family, p)
    acc = np.zeros((n, n))
    gen = torch_generator(random_state)
    for i in range(n):
        idx = torch.full((n_samples,), i, dtype=torch.long)
        L = logd.joint(logd.draw(idx, 1, gen), 1)
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
    if family_spec(family).is_point_mass:
        rows = np.concatenate([p[k] for k in family_spec(family).param_names], axis=1)
        same = np.all(rows[:, None, :] == rows[None], axis=-1)
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
