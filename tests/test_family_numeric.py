"""idfree_core.families.numeric: quadrature divergences, seeded draws and torch parameters of a family.

Closed forms to check against: Kumaraswamy(1, b) is Beta(1, b) and Kumaraswamy(a, 1) is Beta(a, 1)
(Jones 2009); Beta and Normal KL are registered in torch.distributions.kl, and the generic
quantile quadrature applied to them must reproduce those.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import special

from idfree_core.families import get_family_spec, point_mass_families, spread_families
from idfree_core.families.numeric import log_ratio_at_quantiles

KUM, BETA, NORM = (get_family_spec(n) for n in ("kumaraswamy", "beta", "gaussian"))


def test_kumaraswamy_kl_by_quadrature_equals_beta_closed_form():
    b1, b2 = np.array([[2.0, 0.7, 5.0]]), np.array([[5.0, 3.0, 1.2]])
    ones = np.ones_like(b1)
    want = BETA.kl_divergence({"alpha": ones, "beta": b1}, {"alpha": ones, "beta": b2})
    got = KUM.kl_divergence({"a": ones, "b": b1}, {"a": ones, "b": b2})
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # and with a != 1: Kumaraswamy(a, 1) = Beta(a, 1)
    a1, a2 = np.array([[3.0]]), np.array([[0.8]])
    got = KUM.kl_divergence({"a": a1, "b": np.ones((1, 1))}, {"a": a2, "b": np.ones((1, 1))})
    want = BETA.kl_divergence({"alpha": a1, "beta": np.ones((1, 1))}, {"alpha": a2, "beta": np.ones((1, 1))})
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize("spec, p, q", [
    (BETA, {"alpha": [[2.0, 0.6]], "beta": [[5.0, 0.9]]}, {"alpha": [[3.0, 1.5]], "beta": [[2.5, 4.0]]}),
    (NORM, {"mean": [[0.1, -1.0]], "std": [[0.2, 2.0]]}, {"mean": [[0.3, 0.5]], "std": [[0.25, 1.0]]}),
])
def test_quadrature_fallback_reproduces_torch_kl(spec, p, q):
    r, w = log_ratio_at_quantiles(spec, p, q)
    quad = -(r @ w)
    np.testing.assert_allclose(quad, spec.kl_divergence(p, q), rtol=1e-7)


def test_log_affinity_half_is_the_beta_bhattacharyya_coefficient():
    a1, b1, a2, b2 = 2.0, 5.0, 3.5, 2.0
    want = special.betaln((a1 + a2) / 2, (b1 + b2) / 2) - 0.5 * (special.betaln(a1, b1) + special.betaln(a2, b2))
    got = BETA.log_affinity({"alpha": [[a1]], "beta": [[b1]]}, {"alpha": [[a2]], "beta": [[b2]]}, 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    same = KUM.log_affinity({"a": [[2.0]], "b": [[3.0]]}, {"a": [[2.0]], "b": [[3.0]]}, 0.3)
    assert abs(float(same[0, 0])) < 1e-12
    with pytest.raises(ValueError, match="lam"):
        KUM.log_affinity({"a": [[2.0]], "b": [[3.0]]}, {"a": [[2.0]], "b": [[3.0]]}, 1.5)


def test_seeded_draws_are_reproducible_and_have_the_right_mean():
    params = {"a": torch.full((1, 2), 2.0, dtype=torch.float64), "b": torch.tensor([[5.0, 1.5]], dtype=torch.float64)}
    x1 = KUM.sample(params, (20000,), torch.Generator().manual_seed(3))
    x2 = KUM.sample(params, (20000,), torch.Generator().manual_seed(3))
    assert torch.equal(x1, x2) and x1.shape == (20000, 1, 2)
    assert float(x1.min()) > 0 and float(x1.max()) < 1
    ref = KUM.scipy_distribution({k: v.numpy() for k, v in params.items()})
    mean, sd = ref.mean()[0], ref.std()[0]
    z = (x1.mean(0)[0].numpy() - mean) / (sd / np.sqrt(20000))
    assert np.all(np.abs(z) < 5)


def test_params_from_torch_round_trip_and_mismatch():
    a, b = torch.tensor([[2.0, 3.0], [1.5, 4.0]]), torch.tensor([[5.0, 1.0], [2.0, 2.0]])
    dist = torch.distributions.Independent(torch.distributions.Kumaraswamy(a, b), 1)
    back = KUM.params_from_torch(dist)
    np.testing.assert_allclose(back["a"], a.numpy())
    np.testing.assert_allclose(back["b"], b.numpy())
    with pytest.raises(ValueError, match="does not match"):
        BETA.params_from_torch(dist)


def test_registry_helpers():
    assert point_mass_families() == {"static"}
    assert {"beta", "gaussian", "kumaraswamy"} <= set(spread_families())
    assert NORM.location_scale_normal and not KUM.location_scale_normal
