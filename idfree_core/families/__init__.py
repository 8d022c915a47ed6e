"""The family registry: one :class:`FamilySpec` per user-embedding family, looked up by name.

Every layer dispatches on a family through this registry instead of comparing family names::

    spec = get_family_spec("beta")
    spec.param_names                      # ("alpha", "beta")
    spec.torch_distribution(params)       # elementwise torch.distributions object
    spec.validate(params)                 # float64 (N, D) arrays, or a one-line InputError
    spec.init_from_spread(0.15)           # common initial parameters of that spread
    spec.user_module()                    # the nn.Module holding one user's parameters

A new family is one :class:`FamilySpec` passed to :func:`register_family_spec` plus what the
conformance battery (``tests/conformance/test_user_distributions.py``) demands: its
``UserDistribution`` module and a scipy twin.  Built-ins: :mod:`idfree_core.families.builtin`.
This package is a leaf (torch, numpy, scipy, :mod:`idfree_core.errors`): every package may import it.
"""

from __future__ import annotations

from idfree_core.errors import InputError
from idfree_core.families.builtin import BETA_MAX_SPREAD, BUILTIN_SPECS
from idfree_core.families.point_mass import PointMass
from idfree_core.families.spec import FamilySpec

__all__ = ["FamilySpec", "FAMILY_SPECS", "get_family_spec", "register_family_spec", "family_names",
           "point_mass_families", "spread_families", "DEFAULT_FAMILY", "PointMass", "BETA_MAX_SPREAD"]

FAMILY_SPECS: dict[str, FamilySpec] = {}
# The family a configuration without one uses (``SimulationConfig.family``'s default; sweep grids).
DEFAULT_FAMILY = "beta"


def register_family_spec(spec: FamilySpec, replace: bool = False) -> FamilySpec:
    """Add ``spec`` to :data:`FAMILY_SPECS` (``replace=True`` to overwrite an existing name)."""
    if not isinstance(spec, FamilySpec):
        raise TypeError(f"expected a FamilySpec, got {type(spec).__name__}")
    if spec.name in FAMILY_SPECS and not replace:
        raise ValueError(f"family {spec.name!r} is already registered")
    FAMILY_SPECS[spec.name] = spec
    return spec


def family_names() -> tuple[str, ...]:
    """Registered family names, in registration order."""
    return tuple(FAMILY_SPECS)


def point_mass_families() -> frozenset[str]:
    """Names of the registered point-mass families: the ID-equivalent baselines (``static``)."""
    return frozenset(n for n, s in FAMILY_SPECS.items() if s.is_point_mass)


def spread_families() -> tuple[str, ...]:
    """Names of the registered families with a spread setting (``spread_field``), in registration order."""
    return tuple(n for n, s in FAMILY_SPECS.items() if s.spread_field is not None)


def get_family_spec(name: str) -> FamilySpec:
    """The record of family ``name``; an unknown name is a one-line :class:`InputError`."""
    spec = FAMILY_SPECS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise InputError(f"unknown family {name!r}; expected one of {list(FAMILY_SPECS)}")
    return spec


for _spec in BUILTIN_SPECS:
    register_family_spec(_spec)
del _spec
