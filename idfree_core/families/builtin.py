"""The built-in family records: beta, gaussian, static (point mass) and kumaraswamy.

Common initialisations (every user starts from the same parameters; ``privacy_audit``'s bounds
rely on it): Beta ``(2c, 5c)`` for classification and ``(5c, 6c)`` for generation with
concentration ``c`` (``SimulationConfig.beta_concentration``; ``std(Beta(2c, 5c))^2 =
10 / (49 (7c + 1))`` solved for ``c`` given a spread); Gaussian ``mean = 0.1``, ``std``
(``SimulationConfig.std``, trained for generation only); static ``value = 0.1``; Kumaraswamy
``a = 2`` and ``b`` solved so that the marginal standard deviation is ``SimulationConfig.spread``
(default ``b = 5``).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats as st
from torch.distributions import Beta, Normal, constraints

from idfree_core.families import estimators as est
from idfree_core.families.kumaraswamy import InteriorKumaraswamy, b_for_std, kumaraswamy, kumaraswamy_std
from idfree_core.families.kumaraswamy_fit import kumaraswamy_crb, kumaraswamy_mle
from idfree_core.families.point_mass import PointMass
from idfree_core.families.spec import FamilySpec

_MOD = "idfree_core.distributions:"
BETA_MAX_SPREAD = math.sqrt(10 / 49)  # std of the initial Beta(2c, 5c) marginal as c -> 0
KUMARASWAMY_A = 2.0


def _beta_init(c, task):
    c = 1.0 if c is None else float(c)
    return {"alpha": 2.0 * c, "beta": 5.0 * c} if task == "classify" else {"alpha": 5.0 * c, "beta": 6.0 * c}


def _static_scipy(value, loc=0.0, scale=1.0):
    return st.rv_discrete(values=([float(loc + scale * value)], [1.0]))


BETA = FamilySpec(
    name="beta", param_names=("alpha", "beta"),
    constraints={"alpha": constraints.positive, "beta": constraints.positive},
    torch_factory=lambda p: Beta(p["alpha"], p["beta"], validate_args=False),
    scipy_factory=lambda alpha, beta, loc, scale: st.beta(alpha, beta, loc=loc, scale=scale),
    module=_MOD + "BetaUserDistribution", params_from_setting=_beta_init,
    spread_field="beta_concentration", spread_to_setting=lambda s: (10.0 / (49.0 * s ** 2) - 1.0) / 7.0,
    max_spread=BETA_MAX_SPREAD,
    mle=lambda x, axis=0, weights=None: dict(zip(("alpha", "beta"), est.beta_mle(x, axis=axis, weights=weights))),
    crb=lambda p, k: dict(zip(("alpha", "beta"), est.beta_crb(p["alpha"], p["beta"], k))),
    identifiability="beta", affine=True, support=(0.0, 1.0),
    torch_attrs={"alpha": "concentration1", "beta": "concentration0"},
    mode=lambda alpha, beta: np.where((alpha > 1) & (beta > 1),
                                      (alpha - 1) / np.maximum(alpha + beta - 2, 1e-300), 0.5),
    description="Beta(alpha, beta) on (0, 1), optionally mapped by a shared loc + scale * x", title="Beta",
    mixture_identifiability="Beta mixtures are not identifiable, but non-identifiability of the family across all "
                            "finite mixtures does not protect a known number of well-separated users")

GAUSSIAN = FamilySpec(
    name="gaussian", param_names=("mean", "std"),
    constraints={"mean": constraints.real, "std": constraints.positive},
    torch_factory=lambda p: Normal(p["mean"], p["std"], validate_args=False),
    scipy_factory=lambda mean, std, loc, scale: st.norm(loc + scale * mean, abs(scale) * std),
    module=_MOD + "GaussianUserDistribution",
    params_from_setting=lambda s, task: {"mean": 0.1, "std": 0.2 if s is None else float(s)},
    spread_field="std", spread_to_setting=float,
    module_options=lambda task: {"train_std": task == "next_token"},
    mle=lambda x, axis=0, weights=None: dict(zip(("mean", "std"), est.gaussian_mle_weighted(x, axis, weights))),
    crb=lambda p, k: dict(zip(("mean", "std"), est.gaussian_crb(p["std"], k))),
    identifiability="gaussian", description="Gaussian N(mean, std^2) per coordinate", title="Gaussian",
    torch_attrs={"mean": "loc", "std": "scale"}, location_scale_normal=True,
    mixture_identifiability="Gaussian mixtures are identifiable (Teicher 1963), so well-separated users are "
                            "recoverable")

STATIC = FamilySpec(
    name="static", param_names=("value",), constraints={"value": constraints.real},
    torch_factory=lambda p: PointMass(p["value"], event_dim=0),
    scipy_factory=_static_scipy, module=_MOD + "StaticUserEmbedding",
    params_from_setting=lambda s, task: {"value": 0.1},
    is_point_mass=True, torch_attrs={"value": "value"}, description="one fixed vector per user (a point mass): the ID-equivalent baseline")

KUMARASWAMY = FamilySpec(
    name="kumaraswamy", param_names=("a", "b"),
    constraints={"a": constraints.positive, "b": constraints.positive},
    torch_factory=lambda p: InteriorKumaraswamy(p["a"], p["b"], validate_args=False),
    scipy_factory=lambda a, b, loc, scale: kumaraswamy(a, b, loc=loc, scale=scale),
    module=_MOD + "KumaraswamyUserDistribution",
    params_from_setting=lambda s, task: {"a": KUMARASWAMY_A,
                                         "b": 5.0 if s is None else b_for_std(KUMARASWAMY_A, float(s))},
    spread_field="spread", spread_to_setting=float, max_spread=kumaraswamy_std(KUMARASWAMY_A, 1.0),
    mle=lambda x, axis=0, weights=None: dict(zip(("a", "b"), kumaraswamy_mle(x, axis=axis, weights=weights))),
    crb=lambda p, k: dict(zip(("a", "b"), kumaraswamy_crb(p["a"], p["b"], k))),
    affine=True, support=(0.0, 1.0), identifiability="kumaraswamy",
    torch_attrs={"a": "concentration1", "b": "concentration0"},
    mode=lambda a, b: np.where((a > 1) & (b > 1), ((a - 1) / np.maximum(a * b - 1, 1e-300)) ** (1 / a), 0.5),
    description="Kumaraswamy(a, b) on (0, 1): density a b x^(a-1) (1 - x^a)^(b-1) (Jones 2009)",
    title="Kumaraswamy")

BUILTIN_SPECS = (BETA, GAUSSIAN, STATIC, KUMARASWAMY)
