"""Family-generic numerics: elementwise divergences by quadrature, seeded draws, torch parameters.

Every family is a product of univariate laws, so a divergence between two users is a sum over
coordinates of 1-D integrals.  Where ``torch.distributions.kl`` has a closed form registered
(Beta, Normal) :func:`kl_elementwise` uses it; otherwise (Kumaraswamy: no registered KL) it
integrates in quantile space,

    KL(f || g) = int_0^1 [log f(F^-1(u)) - log g(F^-1(u))] du,

and the log-affinity ``log int f^lam g^(1-lam) = log int_0^1 exp((1 - lam) (log g - log f)(F^-1(u))) du``
(``lam = 1/2``: the Bhattacharyya coefficient; ``0 < lam < 1``: the Chernoff function, bounded by
1 by Hoelder) the same way.  The rule is composite 16-point Gauss-Legendre on :data:`U_CUTS`, whose
pieces shrink geometrically towards ``u = 0`` and ``u = 1`` (the log-densities of bounded-support
laws behave like ``log x`` there; quantiles that round onto an endpoint are moved to the nearest
float inside the support); the mass outside ``[1e-12, 1 - 1e-12]`` is dropped (an error of order
``1e-12`` times the integrand there).  Checked against the closed forms in
``tests/test_family_numeric.py`` (Kumaraswamy(1, b) is Beta(1, b); Beta and Normal vs torch's KL).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["U_CUTS", "quantile_nodes", "kl_elementwise", "log_affinity_elementwise", "log_ratio_at_quantiles",
           "log_affinity_from_ratio", "seeded_draws", "params_from_torch"]

_TAIL = [10.0 ** -k for k in range(12, 1, -1)]
U_CUTS = np.array([0.0] + _TAIL + [0.02, 0.05] + list(np.linspace(0.1, 0.9, 9)) + [0.95, 0.98]
                  + [1 - t for t in _TAIL[::-1]] + [1.0])
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)


def quantile_nodes() -> tuple[np.ndarray, np.ndarray]:
    """``(u, w)``: the composite Gauss-Legendre rule on ``[0, 1]`` (pieces :data:`U_CUTS`)."""
    a, b = U_CUTS[:-1, None], U_CUTS[1:, None]
    u = (a + b) / 2 + (b - a) / 2 * _NODES[None]
    w = (b - a) / 2 * _WEIGHTS[None]
    return u.ravel(), w.ravel()


def _broadcast(p: dict, q: dict) -> tuple[dict, dict, tuple]:
    shape = np.broadcast_shapes(*[np.shape(v) for v in (*p.values(), *q.values())])
    return ({k: np.broadcast_to(np.asarray(v, np.float64), shape) for k, v in p.items()},
            {k: np.broadcast_to(np.asarray(v, np.float64), shape) for k, v in q.items()}, shape)


def log_ratio_at_quantiles(spec, p: dict, q: dict, chunk: int = 1 << 20):
    """``(log g - log f)(F^-1(u))`` at the nodes, shape ``(*shape, n_nodes)``, and the weights."""
    p, q, shape = _broadcast(p, q)
    u, w = quantile_nodes()
    out = np.empty(shape + (u.size,))
    flat_p = {k: v.reshape(-1) for k, v in p.items()}
    flat_q = {k: v.reshape(-1) for k, v in q.items()}
    flat = out.reshape(-1, u.size)
    lo, hi = spec.support
    step = max(1, chunk // u.size)
    for i in range(0, flat.shape[0], step):
        sl = slice(i, min(flat.shape[0], i + step))
        f = spec.scipy_distribution({k: v[sl, None] for k, v in flat_p.items()})
        g = spec.scipy_distribution({k: v[sl, None] for k, v in flat_q.items()})
        x = f.ppf(u[None])
        if math.isfinite(lo) and math.isfinite(hi):  # quantiles that round onto an endpoint
            x = np.clip(x, np.nextafter(lo, hi), np.nextafter(hi, lo))
        with np.errstate(divide="ignore", invalid="ignore"):
            flat[sl] = g.logpdf(x) - f.logpdf(x)
    return out, w


def kl_elementwise(spec, p: dict, q: dict) -> np.ndarray:
    """``KL(f_p || f_q)`` per element (broadcast), nats: torch's registry, else quantile quadrature."""
    try:
        with torch.no_grad():
            val = torch.distributions.kl_divergence(spec.torch_distribution(p), spec.torch_distribution(q))
        return np.asarray(val.numpy(), dtype=np.float64)
    except NotImplementedError:
        pass
    r, w = log_ratio_at_quantiles(spec, p, q)
    return np.maximum(-(np.where(np.isfinite(r), r, -np.inf) @ w), 0.0)


def log_affinity_elementwise(spec, p: dict, q: dict, lam) -> np.ndarray:
    """``log int f_p^lam f_q^(1-lam)`` per element for ``0 <= lam <= 1`` (``<= 0``), by quadrature.

    ``lam`` broadcasts against the parameters; ``lam = 1/2`` gives ``log BC``.
    """
    return log_affinity_from_ratio(*log_ratio_at_quantiles(spec, p, q), lam)


def log_affinity_from_ratio(r: np.ndarray, w: np.ndarray, lam) -> np.ndarray:
    """:func:`log_affinity_elementwise` from precomputed :func:`log_ratio_at_quantiles` (any ``lam``)."""
    lam = np.asarray(lam, dtype=np.float64)
    if np.any((lam < 0) | (lam > 1)):
        raise ValueError("lam: the quadrature log-affinity needs 0 <= lam <= 1")
    lam = np.broadcast_to(lam, r.shape[:-1])[..., None]
    with np.errstate(over="ignore", invalid="ignore"):
        terms = np.where(np.isfinite(r), (1 - lam) * r, np.where(lam == 1, 0.0, -np.inf))
    top = np.max(terms, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        val = np.log(np.exp(terms - top) @ w) + top[..., 0]
    return np.minimum(val, 0.0)


def seeded_draws(spec, params: dict, sample_shape: tuple, generator: torch.Generator) -> torch.Tensor:
    """Draws of shape ``(*sample_shape, *params' shape)`` from ``spec``'s elementwise law, seeded.

    Inverse CDF of ``torch.rand(generator=)`` where torch implements ``icdf`` (draws of a
    bounded-support law are kept strictly inside it, as ``torch.distributions.Beta`` does);
    otherwise ``sample()`` under a forked global RNG seeded from ``generator``.
    """
    dist = spec.torch_distribution(params)
    shape = torch.Size(sample_shape) + dist.batch_shape
    try:
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        x = dist.icdf(u)
    except NotImplementedError:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return dist.sample(torch.Size(sample_shape)).to(torch.float64)
    lo, hi = spec.support
    if math.isfinite(lo) and math.isfinite(hi):
        eps = torch.finfo(x.dtype).eps * (hi - lo)
        x = x.clamp(lo + eps, hi - eps)
    return x


def params_from_torch(spec, dist) -> dict[str, np.ndarray]:
    """``{name: (N, D) float64}`` of a batched torch distribution of ``spec`` (``Independent`` unwrapped).

    Uses ``spec.torch_attrs`` (parameter name -> attribute); a distribution of another type is a
    one-line ``ValueError``.
    """
    while isinstance(dist, torch.distributions.Independent):
        dist = dist.base_dist
    probe = spec.torch_distribution({k: np.ones((1, 1)) for k in spec.param_names})
    kinds = tuple(c for c in type(probe).__mro__
                  if c.__module__.startswith("torch.distributions") and c is not torch.distributions.Distribution)
    base = kinds[0] if kinds else type(probe)
    if not spec.torch_attrs or not isinstance(dist, base):
        raise ValueError(f"params: a {type(dist).__name__} distribution does not match family {spec.name!r}")
    n = dist.batch_shape[0] if len(dist.batch_shape) else 1
    return {k: getattr(dist, a).detach().double().reshape(n, -1).numpy() for k, a in spec.torch_attrs.items()}
