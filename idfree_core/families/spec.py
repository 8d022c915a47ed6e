"""``FamilySpec``: everything the toolkit knows about one user-embedding family, in one record.

A family is a product over embedding coordinates of one univariate distribution with named
parameters (``param_names``, each with a ``torch.distributions.constraints`` constraint).  The
record gives

* the **torch distribution** (:meth:`FamilySpec.torch_distribution`, elementwise, optionally mapped
  by a shared affine ``loc + scale * x``) used for sampling and log-densities, and its **scipy**
  twin (:meth:`FamilySpec.scipy_distribution`) used by the conformance battery;
* the **file contract**: :meth:`FamilySpec.validate` (per-user ``(N, D)`` arrays) and
  :meth:`FamilySpec.json_schema` (one user's object in ``user_distributions.json``);
* the **common initialisation**: the configuration knob that sets the spread (``spread_field``, a
  ``SimulationConfig`` field), :meth:`setting_from_spread` and :meth:`initial_params`;
* estimation: ``mle(x, axis, weights=None)`` (weighted: the M-step of a mixture EM) and ``crb(params, k)`` (Cramér-Rao variance bounds) where known;
* the ``nn.Module`` holding one user's trainable parameters (:meth:`user_module`), the key of the
  family in ``privacy_audit.families.BUILTIN`` (``identifiability``), and ``is_point_mass``.

This module imports only torch, numpy, scipy and :mod:`idfree_core.errors` (it sits below every
package; see ``tests/test_layering.py``).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.distributions import AffineTransform, Distribution, TransformedDistribution, constraints

from idfree_core.errors import InputError

__all__ = ["FamilySpec", "PARAM_BOUND"]

# Largest parameter magnitude (and smallest positive parameter) accepted from a file: embeddings are
# float32 (|x| < 3.4e38), and past these bounds the float64 arithmetic of densities and samplers
# (squares, ratios, gamma functions) overflows or divides by ~0 instead of meaning anything.
PARAM_BOUND = 1e12


def _no_spread(spread):
    raise InputError("this family has no spread setting (a point mass)")


@dataclass(frozen=True, eq=False)
class FamilySpec:
    """One family (see the module docstring).  Fields holding callables are not part of ``to_dict``.

    ``torch_factory(params)``: constrained parameter tensors -> elementwise Distribution.
    ``scipy_factory(**params, loc=, scale=)``: -> frozen ``scipy.stats`` distribution.
    ``module``: the ``UserDistribution`` subclass, or its ``"module:Class"`` path (imported lazily,
    so that this record stays a leaf).  ``params_from_setting(setting, task)``: the constrained
    initial parameters for a spread setting (``None``: the family's default).
    """

    name: str
    param_names: tuple[str, ...]
    constraints: Mapping[str, constraints.Constraint]
    torch_factory: Callable[[dict], Distribution] = field(repr=False)
    scipy_factory: Callable[..., Any] = field(repr=False)
    module: str | type = field(repr=False)
    params_from_setting: Callable[[float | None, str], dict] = field(repr=False)
    spread_field: str | None = None
    spread_to_setting: Callable[[float], float] = field(default=_no_spread, repr=False)
    max_spread: float = math.inf
    module_options: Callable[[str], dict] = field(default=lambda task: {}, repr=False)
    mle: Callable[..., dict] | None = field(default=None, repr=False)
    crb: Callable[..., dict] | None = field(default=None, repr=False)
    identifiability: str | None = None
    is_point_mass: bool = False
    affine: bool = False
    support: tuple[float, float] = (-math.inf, math.inf)
    description: str = ""
    title: str = ""  # display name in messages ("Beta"); defaults to ``name``
    mixture_identifiability: str = ""  # what theory says of finite mixtures of the family (attack findings)
    # parameter name -> attribute of the torch distribution (``Beta.concentration1`` for ``alpha``)
    torch_attrs: Mapping[str, str] = field(default_factory=dict)
    # N(mean, std^2) per coordinate, parameters ("mean", "std"): closed-form pairwise Bayes error,
    # m uploads reduce to one with std / sqrt(m), Gaussian DP (privacy_audit relies on these)
    location_scale_normal: bool = False
    mode: Callable[..., Any] | None = field(default=None, repr=False)  # elementwise mode (a cut point)

    def __post_init__(self) -> None:
        if set(self.constraints) != set(self.param_names):
            raise ValueError(f"family {self.name!r}: constraints must name exactly {list(self.param_names)}")
        if self.torch_attrs and set(self.torch_attrs) != set(self.param_names):
            raise ValueError(f"family {self.name!r}: torch_attrs must name exactly {list(self.param_names)}")
        if self.location_scale_normal and self.param_names != ("mean", "std"):
            raise ValueError(f"family {self.name!r}: location_scale_normal needs parameters ('mean', 'std')")

    # ------------------------------------------------------------------ distributions
    def torch_distribution(self, params: Mapping[str, Any], loc=None, scale=None) -> Distribution:
        """Elementwise ``torch.distributions`` object of constrained ``params`` (tensors or arrays).

        With ``loc``/``scale`` (families with ``affine``): the law of ``loc + scale * x``.
        """
        tensors = {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v, dtype=np.float64))
                   for k, v in self._pick(params).items()}
        dist = self.torch_factory(tensors)
        if loc is None and scale is None:
            return dist
        if not self.affine:
            raise InputError(f"family {self.name!r} takes no affine transform (loc, scale)")
        ref = next(iter(tensors.values()))
        loc = torch.as_tensor(0.0 if loc is None else loc, dtype=ref.dtype)
        scale = torch.as_tensor(1.0 if scale is None else scale, dtype=ref.dtype)
        return TransformedDistribution(dist, [AffineTransform(loc, scale)], validate_args=False)

    def scipy_distribution(self, params: Mapping[str, Any], loc=None, scale=None):
        """The frozen ``scipy.stats`` distribution of the same law (for checks)."""
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in self._pick(params).items()}
        if (loc is not None or scale is not None) and not self.affine:
            raise InputError(f"family {self.name!r} takes no affine transform (loc, scale)")
        return self.scipy_factory(**arrays, loc=0.0 if loc is None else loc, scale=1.0 if scale is None else scale)

    def _pick(self, params: Mapping[str, Any]) -> dict:
        if not isinstance(params, Mapping) or set(params) != set(self.param_names):
            got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
            raise InputError(f"{self.name} parameters must be exactly {list(self.param_names)}, got {got}")
        return {k: params[k] for k in self.param_names}

    # ------------------------------------------------------------------ validation / files
    def validate(self, params: Mapping[str, Any], n_rows: int | None = None, where: str = "") -> dict[str, np.ndarray]:
        """``params`` as float64 ``(N, D)`` arrays of one shape, finite and inside the constraints.

        Raises :class:`InputError` (a ``ValueError``) with one line; ``where`` prefixes it.
        """
        pre = f"{where}: " if where else ""
        try:
            params = self._pick(params)
        except InputError as exc:
            raise InputError(pre + str(exc)) from None
        out, shape = {}, None
        for name in self.param_names:
            try:
                arr = np.asarray(params[name], dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise InputError(f"{pre}parameter {name!r} is not a numeric array") from None
            rows = n_rows if n_rows is not None else (arr.shape[0] if arr.ndim == 2 else "N")
            if arr.ndim != 2 or arr.shape[0] != rows or arr.shape[1] < 1:
                raise InputError(f"{pre}parameter {name!r} must have shape (n_users={rows}, D), got {arr.shape}")
            if shape is not None and arr.shape != shape:
                raise InputError(f"{pre}parameter {name!r} has shape {arr.shape}, expected {shape}")
            shape = arr.shape
            if not np.all(np.isfinite(arr)):
                raise InputError(f"{pre}parameter {name!r} contains NaN or infinite values")
            if self.constraints[name] is constraints.positive and np.any(arr <= 0):
                raise InputError(f"{pre}{self.title or self.name} parameter {name!r} must be > 0")
            if np.any(np.abs(arr) > PARAM_BOUND):
                raise InputError(f"{pre}parameter {name!r} has values past +-{PARAM_BOUND:.0e} "
                                 f"(max |value| {float(np.abs(arr).max()):.3g}); embeddings are float32")
            if self.constraints[name] is constraints.positive and np.any(arr < 1 / PARAM_BOUND):
                raise InputError(f"{pre}{self.title or self.name} parameter {name!r} has values below "
                                 f"{1 / PARAM_BOUND:.0e} (min {float(arr.min()):.3g})")
            out[name] = arr
        return out

    def json_schema(self) -> dict:
        """JSON schema of one user's object in ``user_distributions.json``."""
        number = {"type": "number"}
        items = {k: {"type": "array", "minItems": 1,
                     "items": ({**number, "exclusiveMinimum": 0} if c is constraints.positive else number)}
                 for k, c in self.constraints.items()}
        return {"type": "object", "properties": items, "required": list(self.param_names),
                "additionalProperties": False}

    # ------------------------------------------------------------------ initialisation
    def setting_from_spread(self, spread: float) -> float:
        """The value of ``spread_field`` whose common initial marginal has standard deviation ``spread``."""
        if self.spread_field is None:
            raise InputError(f"family {self.name!r} has no spread (a point mass)")
        spread = float(spread)
        if not 0 < spread < self.max_spread:
            raise InputError(f"spread {spread!r} is out of reach for the {self.title or self.name} family: "
                             f"must be in (0, {self.max_spread:.4f})")
        return self.spread_to_setting(spread)

    def initial_params(self, setting: float | None = None, task: str = "classify") -> dict[str, float]:
        """Constrained common initial parameters for a ``spread_field`` value (``None``: default)."""
        return dict(self.params_from_setting(setting, task))

    def init_from_spread(self, spread: float | None, task: str = "classify") -> dict[str, float]:
        """Constrained initial parameters whose marginal standard deviation is ``spread``."""
        return self.initial_params(None if spread is None else self.setting_from_spread(spread), task)

    # ------------------------------------------------------------------ the nn.Module
    def user_module(self) -> type:
        """The ``UserDistribution`` subclass holding one user's trainable parameters."""
        if isinstance(self.module, type):
            return self.module
        path, _, cls = self.module.partition(":")
        return getattr(importlib.import_module(path), cls)

    def module_init(self, params: Mapping[str, float], task: str = "classify") -> dict:
        """Keyword arguments of :meth:`user_module` for constrained initial ``params``."""
        return {**{f"init_{k}": v for k, v in self._pick(params).items()}, **self.module_options(task)}

    def make_module(self, n_tokens: int, dim: int, **init):
        """``user_module()(n_tokens, dim, **init)``; bad options are one-line :class:`InputError`s."""
        try:
            return self.user_module()(n_tokens, dim, **init)
        except TypeError as exc:
            raise InputError(f"bad options for family {self.name!r}: {exc}") from None

    # ------------------------------------------------------------------ numerics (families/numeric.py)
    def params_from_torch(self, dist) -> dict[str, np.ndarray]:
        """``(N, D)`` parameter arrays of a batched torch distribution of this family."""
        from idfree_core.families.numeric import params_from_torch
        return params_from_torch(self, dist)

    def kl_divergence(self, p: Mapping[str, Any], q: Mapping[str, Any]) -> np.ndarray:
        """Elementwise ``KL(f_p || f_q)``: torch's KL registry, else quantile quadrature."""
        from idfree_core.families.numeric import kl_elementwise
        return kl_elementwise(self, p, q)

    def log_affinity(self, p: Mapping[str, Any], q: Mapping[str, Any], lam=0.5) -> np.ndarray:
        """Elementwise ``log int f_p^lam f_q^(1-lam)`` (``0 <= lam <= 1``) by quantile quadrature."""
        from idfree_core.families.numeric import log_affinity_elementwise
        return log_affinity_elementwise(self, p, q, lam)

    def sample(self, params: Mapping[str, Any], sample_shape=(), generator=None) -> torch.Tensor:
        """Seeded elementwise draws (inverse CDF of ``torch.rand(generator=)`` where available)."""
        from idfree_core.families.numeric import seeded_draws
        return seeded_draws(self, params, tuple(sample_shape), generator or torch.Generator().manual_seed(0))

    def to_dict(self) -> dict:
        return {"name": self.name, "param_names": list(self.param_names),
                "constraints": {k: ("positive" if c is constraints.positive else "real")
                                for k, c in self.constraints.items()},
                "spread_field": self.spread_field, "max_spread": self.max_spread,
                "identifiability": self.identifiability, "is_point_mass": self.is_point_mass,
                "affine": self.affine, "support": list(self.support), "description": self.description,
                "location_scale_normal": self.location_scale_normal,
                "has_mle": self.mle is not None, "has_crb": self.crb is not None}
