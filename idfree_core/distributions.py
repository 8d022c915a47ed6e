"""User-embedding distributions of IDfree-PL: each device holds one and uploads fresh samples.

A user is represented not by an identifier but by a distribution over ``(n_tokens, dim)``
embedding tokens; every upload and every query carries a *fresh* reparameterized sample
``e ~ q_phi`` (Kingma and Welling 2014, the pathwise estimator
``grad_phi E[g(e)] = E[grad_phi g(T_phi(eps))]``), so the cloud never sees a stable vector.

* :class:`BetaUserDistribution`: ``e = loc + scale * x``, ``x_ij ~ Beta(alpha_ij, beta_ij)``
  (pathwise gradients through the Gamma/Dirichlet sampler by implicit reparameterization,
  Figurnov et al. 2018; Jankowiak and Obermeyer 2018, as built into ``torch.distributions.Beta``);
  log-density by the change of variables
  ``log q(e) = log Beta(x) - sum log|scale|`` (``TransformedDistribution``).
* :class:`KumaraswamyUserDistribution`: the same with ``x_ij ~ Kumaraswamy(a_ij, b_ij)`` (closed-form
  quantile, so exact pathwise gradients; Jones 2009).
* :class:`GaussianUserDistribution`: ``e = mean + std * eps``, ``eps ~ N(0, I)``; ``std``
  trainable or a fixed buffer.
* :class:`StaticUserEmbedding`: the ID-equivalent baseline, a point mass (Dirac delta) at one
  trainable vector per user.

Parameters are held *unconstrained* (``phi``) and mapped to their support by a
``torch.distributions`` bijection: ``link="softplus"`` (default, ``SoftplusTransform``, the link
``privacy_audit.proximity`` assumes by default) or ``"exp"`` (``transform_to(constraints.positive)``)
for positive parameters, the identity for real ones; :meth:`UserDistribution.bijection` names it.
By default every user starts from the same ``phi_0`` (the misattribution bounds of
``privacy_audit`` rely on a common initialization); ``jitter``/``seed`` break that on purpose.
Each class names its record in the family registry (:mod:`idfree_core.families`), which supplies
the parameter constraints and the elementwise torch distribution.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution, ExpTransform, Independent, SoftplusTransform, constraints, transform_to
from torch.distributions.transforms import Transform

from idfree_core.errors import InputError
from idfree_core.families import FamilySpec, PointMass, get_family_spec

__all__ = [
    "BetaUserDistribution", "KumaraswamyUserDistribution", "GaussianUserDistribution", "StaticUserEmbedding",
    "PointMass", "UserDistribution", "make_user_distribution", "to_user_distributions",
]


def _check_dims(n_tokens, dim) -> tuple[int, int]:
    for name, v in (("n_tokens", n_tokens), ("dim", dim)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}")
    return int(n_tokens), int(dim)


def _param(value, name: str, shape: tuple[int, int], constraint=constraints.real,
           nonzero: bool = False) -> torch.Tensor:
    """``value`` (scalar or array broadcastable to ``shape``) as float32, validated."""
    try:
        arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value,
                         dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numeric, got {type(value).__name__}") from None
    try:
        flat = arr.ndim == 1 and arr.size == math.prod(shape) > 1  # a flattened export
        arr = np.broadcast_to(arr.reshape(shape) if flat else arr, shape)
    except ValueError:
        raise InputError(f"{name} has shape {arr.shape}, not broadcastable to (n_tokens, dim)={shape}") from None
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite values")
    if constraint is constraints.positive and np.any(arr <= 0):
        raise InputError(f"{name} must be > 0, got min {arr.min():g}")
    if nonzero and np.any(arr == 0):
        raise InputError(f"{name} must be nonzero")
    return torch.tensor(np.array(arr, dtype=np.float32))


LINKS: Mapping[str, Transform] = {"softplus": SoftplusTransform(), "exp": ExpTransform()}


def _link(link: str) -> Transform:
    if link not in LINKS:
        raise InputError(f"link must be one of {sorted(LINKS)}, got {link!r}")
    return LINKS[link]


class UserDistribution(nn.Module):
    """Common interface of a per-user embedding distribution over ``(n_tokens, dim)``.

    Subclasses set ``family`` (a name in :mod:`idfree_core.families`, whose record supplies
    ``arg_constraints`` and the torch distribution) and define :meth:`constrained` (name ->
    constrained tensor); :meth:`distribution` is the record's, made ``Independent`` over the event.
    """

    family: str = ""
    arg_constraints: dict[str, constraints.Constraint] = {}
    has_rsample = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.family:
            try:
                cls.arg_constraints = dict(get_family_spec(cls.family).constraints)
            except InputError:  # a module defined before its record is registered
                pass

    @property
    def spec(self) -> FamilySpec:
        return get_family_spec(self.family)

    def __init__(self, n_tokens: int, dim: int, link: str = "softplus"):
        super().__init__()
        self.n_tokens, self.dim = _check_dims(n_tokens, dim)
        self.link = link
        self._positive = _link(link)

    def bijection(self, name: str) -> Transform:
        """The map from the unconstrained parameter to the constrained parameter ``name``."""
        if self.arg_constraints[name] is constraints.positive:
            return self._positive
        return transform_to(self.arg_constraints[name])

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size((self.n_tokens, self.dim))

    def constrained(self) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def distribution(self) -> Distribution:
        """``Independent`` over ``(n_tokens, dim)`` of the family's elementwise distribution."""
        return Independent(self.spec.torch_distribution(self.constrained()), 2, validate_args=False)

    def rsample(self, sample_shape: Sequence[int] | torch.Size = ()) -> torch.Tensor:
        """Reparameterized embedding sample(s), shape ``(*sample_shape, n_tokens, dim)``."""
        return self.distribution().rsample(torch.Size(sample_shape))

    @torch.no_grad()
    def sample(self, sample_shape: Sequence[int] | torch.Size = ()) -> torch.Tensor:
        """Like :meth:`rsample` but detached (what a device uploads)."""
        return self.rsample(sample_shape).detach()

    def _support_mask(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(x.shape[: x.dim() - 2], dtype=torch.bool, device=x.device)

    def _safe_point(self) -> torch.Tensor:
        return torch.zeros(self.event_shape)

    def log_prob(self, x) -> torch.Tensor:
        """Log-density of embedding(s) ``x`` (``(..., n_tokens, dim)``); ``-inf`` outside the support."""
        ref = next(iter(self.state_dict().values()))
        x = torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
        if x.dim() < 2 or tuple(x.shape[-2:]) != tuple(self.event_shape):
            raise InputError(f"log_prob: x must have shape (..., {self.n_tokens}, {self.dim}), got {tuple(x.shape)}")
        if torch.isnan(x).any():
            raise InputError("log_prob: x contains NaN")
        inside = self._support_mask(x)
        if bool(inside.all()):
            return self.distribution().log_prob(x)
        safe = torch.where(inside[..., None, None], x, self._safe_point().to(x))
        return torch.where(inside, self.distribution().log_prob(safe), -math.inf)

    def parameter_vector(self) -> torch.Tensor:
        """Constrained parameters, flattened in ``arg_constraints`` order (for drift distances)."""
        c = self.constrained()
        return torch.cat([c[k].reshape(-1) for k in self.arg_constraints])

    def unconstrained_vector(self) -> torch.Tensor:
        """The *trainable* unconstrained parameters ``phi``, flattened (what AdamW moves)."""
        return torch.nn.utils.parameters_to_vector(self.parameters())

    def export(self) -> dict[str, np.ndarray]:
        """Constrained parameters flattened to ``(n_tokens * dim,)`` float64 arrays.

        Keys are those of ``user_distributions.json`` (``idfree_core.uploads.FAMILY_PARAMS``).
        """
        with torch.no_grad():
            return {k: v.detach().cpu().double().numpy().reshape(-1).copy()
                    for k, v in self.constrained().items()}

    def export_transform(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Shared affine map ``(loc, scale)`` flattened, or ``None`` (only the unit-interval families may have one)."""
        return None

    def extra_repr(self) -> str:
        return f"n_tokens={self.n_tokens}, dim={self.dim}"


class UnitIntervalUserDistribution(UserDistribution):
    """``e = loc + scale * x`` with ``x_ij`` from a two-parameter law on ``(0, 1)`` (Beta, Kumaraswamy).

    Both parameters are positive, held as ``raw_<name>`` with ``name = link(raw_name)``.
    ``loc``/``scale`` (scalar or broadcastable to ``(n_tokens, dim)``) form a fixed affine map from
    ``(0, 1)`` to embedding space, shared by all users; ``None`` means the identity.
    ``jitter > 0`` perturbs the raw parameters by ``jitter * N(0, 1)`` drawn from ``seed``.
    """

    def __init__(self, n_tokens: int, dim: int, init: dict, loc=None, scale=None, jitter: float = 0.0,
                 seed: int = 0, link: str = "softplus"):
        super().__init__(n_tokens, dim, link)
        shape = (self.n_tokens, self.dim)
        self._names = tuple(self.arg_constraints)
        raw = {k: self._positive.inv(_param(init[k], f"init_{k}", shape, constraints.positive)) for k in self._names}
        _add_jitter(raw, jitter, seed)
        for k in self._names:
            self.register_parameter(f"raw_{k}", nn.Parameter(raw[k]))
        self.has_transform = loc is not None or scale is not None
        self.register_buffer("loc", _param(0.0 if loc is None else loc, "loc", shape))
        self.register_buffer("scale", _param(1.0 if scale is None else scale, "scale", shape, nonzero=True))

    def constrained(self) -> dict[str, torch.Tensor]:
        return {k: self._positive(getattr(self, f"raw_{k}")) for k in self._names}

    def base_distribution(self) -> Distribution:
        """The unmapped law, ``Independent`` over ``(0, 1)^(n_tokens x dim)``."""
        return Independent(self.spec.torch_distribution(self.constrained()), 2, validate_args=False)

    def distribution(self) -> Distribution:
        if not self.has_transform:
            return self.base_distribution()
        base = self.spec.torch_distribution(self.constrained(), self.loc, self.scale)
        return Independent(base, 2, validate_args=False)

    def _support_mask(self, x: torch.Tensor) -> torch.Tensor:
        u = (x - self.loc) / self.scale if self.has_transform else x
        return ((u > 0) & (u < 1)).flatten(x.dim() - 2).all(-1)

    def _safe_point(self) -> torch.Tensor:
        return self.loc + 0.5 * self.scale

    def export_transform(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.has_transform:
            return None
        return (self.loc.double().cpu().numpy().reshape(-1).copy(),
                self.scale.double().cpu().numpy().reshape(-1).copy())

    def extra_repr(self) -> str:
        return super().extra_repr() + (", affine" if self.has_transform else "")


class BetaUserDistribution(UnitIntervalUserDistribution):
    """``e = loc + scale * x`` with ``x_ij ~ Beta(alpha_ij, beta_ij)`` independent per element.

    Pathwise gradients through the Gamma sampler by implicit reparameterization (Figurnov et al.
    2018).  Defaults ``alpha=2, beta=5`` are the reference classification setting (generation: 5, 6).
    """

    family = "beta"

    def __init__(self, n_tokens: int, dim: int, init_alpha=2.0, init_beta=5.0, loc=None, scale=None,
                 jitter: float = 0.0, seed: int = 0, link: str = "softplus"):
        super().__init__(n_tokens, dim, {"alpha": init_alpha, "beta": init_beta}, loc, scale, jitter, seed, link)


class KumaraswamyUserDistribution(UnitIntervalUserDistribution):
    """``e = loc + scale * x`` with ``x_ij ~ Kumaraswamy(a_ij, b_ij)``: a Beta-like law whose
    quantile is a closed form, ``x = (1 - (1 - u)^(1/b))^(1/a)`` (exact pathwise gradients)."""

    family = "kumaraswamy"

    def __init__(self, n_tokens: int, dim: int, init_a=2.0, init_b=5.0, loc=None, scale=None,
                 jitter: float = 0.0, seed: int = 0, link: str = "softplus"):
        super().__init__(n_tokens, dim, {"a": init_a, "b": init_b}, loc, scale, jitter, seed, link)


class GaussianUserDistribution(UserDistribution):
    """``e = mean + std * eps``, ``eps ~ N(0, I)`` (``Independent(Normal(mean, std), 2)``).

    Reference settings: classification ``mean=0.1`` trained, ``std=0.2`` fixed
    (``train_std=False``: ``raw_std`` is a buffer); generation trains both.
    ``std = link(raw_std)`` (softplus by default, or exp).
    """

    family = "gaussian"

    def __init__(self, n_tokens: int, dim: int, init_mean=0.1, init_std=0.2, train_std: bool = False,
                 jitter: float = 0.0, seed: int = 0, link: str = "softplus"):
        super().__init__(n_tokens, dim, link)
        shape = (self.n_tokens, self.dim)
        raw = {"mean": _param(init_mean, "init_mean", shape),
               "std": self._positive.inv(_param(init_std, "init_std", shape, constraints.positive))}
        _add_jitter(raw, jitter, seed, names=("mean", "std") if train_std else ("mean",))
        self.train_std = bool(train_std)
        self.mean = nn.Parameter(raw["mean"])
        if self.train_std:
            self.raw_std = nn.Parameter(raw["std"])
        else:
            self.register_buffer("raw_std", raw["std"])

    def constrained(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "std": self._positive(self.raw_std)}

    def extra_repr(self) -> str:
        return super().extra_repr() + f", train_std={self.train_std}"


class StaticUserEmbedding(UserDistribution):
    """One trainable vector per user (the ID-equivalent baseline): a point mass at ``value``."""

    family = "static"

    def __init__(self, n_tokens: int, dim: int, init=0.1, jitter: float = 0.0, seed: int = 0, init_value=None):
        super().__init__(n_tokens, dim)
        raw = {"value": _param(init if init_value is None else init_value, "init", (self.n_tokens, self.dim))}
        _add_jitter(raw, jitter, seed)
        self.value = nn.Parameter(raw["value"])

    def constrained(self) -> dict[str, torch.Tensor]:
        return {"value": self.value}

    def distribution(self) -> Distribution:
        return PointMass(self.value, event_dim=2)

    def rsample(self, sample_shape: Sequence[int] | torch.Size = ()) -> torch.Tensor:
        return self.value.expand(torch.Size(sample_shape) + self.event_shape)


def _add_jitter(raw: dict[str, torch.Tensor], jitter: float, seed: int, names=None) -> None:
    """In place: ``raw[k] += jitter * N(0, 1)`` (seeded) for ``k`` in ``names`` (default: all)."""
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not math.isfinite(jitter) or jitter < 0:
        raise InputError(f"jitter must be a finite number >= 0, got {jitter!r}")
    if jitter == 0:
        return
    gen = torch.Generator().manual_seed(int(seed))
    for k in (names or tuple(raw)):
        raw[k] = raw[k] + jitter * torch.randn(raw[k].shape, generator=gen)


def make_user_distribution(family: str, n_tokens: int, dim: int, **init) -> UserDistribution:
    """Build a user distribution of a registered ``family`` (:func:`idfree_core.families.get_family_spec`).

    ``init`` goes to the class (e.g. ``init_alpha``, ``init_std``, ``train_std``, ``loc``, ``jitter``).
    """
    return get_family_spec(family).make_module(n_tokens, dim, **init)


def to_user_distributions(users: Sequence[str], modules: Sequence[UserDistribution]):
    """Stack each user's :meth:`~UserDistribution.export` into a ``uploads.UserDistributions``."""
    from idfree_core.uploads import UserDistributions

    users, modules = list(users), list(modules)
    if len(users) != len(modules) or not users:
        raise InputError(f"users ({len(users)}) and modules ({len(modules)}) must be non-empty and of equal length")
    families = {m.family for m in modules}
    if len(families) != 1:
        raise InputError(f"all modules must share one family, got {sorted(families)}")
    exports = [m.export() for m in modules]
    params = {k: np.stack([e[k] for e in exports]) for k in exports[0]}
    transforms = [m.export_transform() for m in modules]
    loc = scale = None
    if any(t is not None for t in transforms):
        first = transforms[0]
        if any(t is None or not (np.array_equal(t[0], first[0]) and np.array_equal(t[1], first[1]))
               for t in transforms):
            raise InputError("the Beta affine map (loc, scale) must be shared by all users")
        loc, scale = first
    return UserDistributions(family=families.pop(), users=tuple(users), params=params, loc=loc, scale=scale)
