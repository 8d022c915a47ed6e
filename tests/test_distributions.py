"""Module-specific behaviour of idfree_core.distributions (the shared battery is in tests/conformance/)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from idfree_core.distributions import (BetaUserDistribution, GaussianUserDistribution, PointMass,
                                       StaticUserEmbedding, make_user_distribution, to_user_distributions)
from idfree_core.errors import InputError
from idfree_core.uploads import UserDistributions

N_TOK, DIM = 2, 3


@pytest.mark.parametrize("scale", [2.5, -0.5, [[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]]])
def test_affine_beta_log_prob_is_the_change_of_variables(scale):
    dist = BetaUserDistribution(N_TOK, DIM, init_alpha=1.7, init_beta=3.2, loc=0.3, scale=scale)
    torch.manual_seed(0)
    x = dist.base_distribution().sample((50,))
    s = torch.as_tensor(scale, dtype=torch.float32).expand(N_TOK, DIM)
    e = 0.3 + s * x
    expected = dist.base_distribution().log_prob(x) - torch.log(s.abs()).sum()
    torch.testing.assert_close(dist.log_prob(e), expected, rtol=1e-4, atol=1e-4)
    # samples land in the affine image of (0, 1), whatever the sign of the scale
    y = dist.sample((2000,))
    lo, hi = torch.minimum(0.3 + 0 * s, 0.3 + s), torch.maximum(0.3 + 0 * s, 0.3 + s)
    assert torch.all((y > lo) & (y < hi))


def test_gaussian_std_is_a_buffer_unless_trained():
    fixed = GaussianUserDistribution(N_TOK, DIM)
    assert [n for n, _ in fixed.named_parameters()] == ["mean"]
    assert "raw_std" in dict(fixed.named_buffers()) and "raw_std" in fixed.state_dict()
    fixed.rsample((8,)).pow(2).sum().backward()
    assert fixed.mean.grad is not None
    trained = GaussianUserDistribution(N_TOK, DIM, train_std=True)
    assert sorted(n for n, _ in trained.named_parameters()) == ["mean", "raw_std"]
    trained.rsample((8,)).pow(2).sum().backward()
    assert trained.raw_std.grad is not None and torch.all(trained.raw_std.grad != 0)
    np.testing.assert_allclose(fixed.export()["std"], 0.2, rtol=1e-6)
    np.testing.assert_allclose(fixed.export()["mean"], 0.1, rtol=1e-6)


def test_defaults_are_the_reference_settings():
    beta = BetaUserDistribution(1, 4).export()
    np.testing.assert_allclose(beta["alpha"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(beta["beta"], 5.0, rtol=1e-6)
    np.testing.assert_allclose(StaticUserEmbedding(1, 4).export()["value"], 0.1, rtol=1e-6)
    assert not GaussianUserDistribution(1, 4).train_std


def test_factory_builds_each_family_and_rejects_bad_options():
    assert isinstance(make_user_distribution("beta", 1, 2, init_alpha=5.0, init_beta=6.0), BetaUserDistribution)
    g = make_user_distribution("gaussian", 5, 2, train_std=True, init_std=0.32)
    assert isinstance(g, GaussianUserDistribution) and g.train_std and g.rsample((3,)).shape == (3, 5, 2)
    np.testing.assert_allclose(g.export()["std"], 0.32, rtol=1e-6)
    assert isinstance(make_user_distribution("static", 1, 2, init=0.0), StaticUserEmbedding)
    with pytest.raises(InputError, match="family"):
        make_user_distribution("dirichlet", 1, 2)
    with pytest.raises(InputError, match="gaussian"):
        make_user_distribution("gaussian", 1, 2, init_alpha=3.0)


def test_init_accepts_flat_exports_but_not_transposed_arrays():
    values = np.arange(1, N_TOK * DIM + 1, dtype=float)
    b = BetaUserDistribution(N_TOK, DIM, init_alpha=values, init_beta=2.0)
    np.testing.assert_allclose(b.export()["alpha"], values, rtol=1e-6)
    with pytest.raises(InputError, match="init_alpha"):
        BetaUserDistribution(N_TOK, DIM, init_alpha=values.reshape(DIM, N_TOK), init_beta=2.0)
    with pytest.raises(InputError, match="scale"):
        BetaUserDistribution(N_TOK, DIM, scale=0.0)
    with pytest.raises(InputError, match="loc"):
        BetaUserDistribution(N_TOK, DIM, loc=math.nan)
    for bad in (-0.1, math.nan, "big"):
        with pytest.raises(InputError, match="jitter"):
            GaussianUserDistribution(N_TOK, DIM, jitter=bad)


def test_jitter_leaves_a_fixed_std_alone():
    g = GaussianUserDistribution(N_TOK, DIM, jitter=0.5, seed=3)
    np.testing.assert_allclose(g.export()["std"], 0.2, rtol=1e-6)
    assert np.ptp(g.export()["mean"]) > 0


def test_stacked_rows_slice_into_single_user_modules():
    """A module over ``n_users * n_tokens`` rows slices row-wise into per-user modules (used by fleets)."""
    n_users = 3
    for family, kw in (("beta", {"loc": -1.0, "scale": 2.0}), ("gaussian", {"train_std": True}), ("static", {})):
        stack = make_user_distribution(family, n_users * N_TOK, DIM, **kw)
        with torch.no_grad():
            for p in stack.parameters():
                p.add_(torch.arange(p.numel(), dtype=p.dtype).view_as(p) / 100)
        for u in range(n_users):
            single = make_user_distribution(family, N_TOK, DIM, **kw)
            rows = slice(u * N_TOK, (u + 1) * N_TOK)
            single.load_state_dict({k: v[rows].clone() for k, v in stack.state_dict().items()})
            expected = {k: v.reshape(n_users, -1)[u] for k, v in stack.export().items()}
            for k, v in single.export().items():
                # softplus takes different SIMD paths for different lengths: equal to float32 rounding
                np.testing.assert_allclose(v, expected[k], rtol=1e-6, atol=0)


def test_to_user_distributions_stacks_and_validates():
    a = BetaUserDistribution(N_TOK, DIM, loc=-1.0, scale=2.0)
    b = BetaUserDistribution(N_TOK, DIM, loc=-1.0, scale=2.0, jitter=0.2, seed=1)
    ud = to_user_distributions(["a", "b"], [a, b])
    assert isinstance(ud, UserDistributions) and ud.family == "beta" and ud.users == ("a", "b")
    np.testing.assert_array_equal(ud.params["alpha"][1], b.export()["alpha"])
    np.testing.assert_array_equal(ud.loc, np.full(N_TOK * DIM, -1.0))
    np.testing.assert_array_equal(ud.scale, np.full(N_TOK * DIM, 2.0))
    with pytest.raises(InputError, match="shared"):
        to_user_distributions(["a", "c"], [a, BetaUserDistribution(N_TOK, DIM, loc=0.0, scale=2.0)])
    with pytest.raises(InputError, match="shared"):
        to_user_distributions(["a", "c"], [a, BetaUserDistribution(N_TOK, DIM)])
    with pytest.raises(InputError, match="family"):
        to_user_distributions(["a", "c"], [a, GaussianUserDistribution(N_TOK, DIM)])
    with pytest.raises(InputError, match="equal length"):
        to_user_distributions(["a"], [a, b])
    with pytest.raises(InputError, match="equal length"):
        to_user_distributions([], [])


def test_point_mass_is_a_reparameterized_dirac():
    v = torch.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    d = PointMass(v, event_dim=2)
    x = d.rsample((4,))
    assert x.shape == (4, 1, 3) and torch.equal(x[2], v.detach())
    x.sum().backward()
    torch.testing.assert_close(v.grad, torch.full_like(v, 4.0))  # d/dv sum_i x_i = 4
    assert torch.equal(d.variance, torch.zeros_like(v)) and d.entropy() == 0
    lp = d.log_prob(torch.stack([v.detach(), v.detach() + 1e-3]))
    assert lp.tolist() == [0.0, -math.inf]


def test_sample_is_detached_and_rsample_is_not():
    for family in ("beta", "gaussian", "static"):
        m = make_user_distribution(family, N_TOK, DIM)
        assert m.rsample((2,)).requires_grad
        assert not m.sample((2,)).requires_grad


@pytest.mark.parametrize("family", ["beta", "gaussian"])
def test_positive_link_is_softplus_by_default_or_exp(family):
    kw = {"train_std": True} if family == "gaussian" else {}
    soft = make_user_distribution(family, N_TOK, DIM, **kw)
    exp = make_user_distribution(family, N_TOK, DIM, link="exp", **kw)
    assert soft.link == "softplus" and exp.link == "exp"
    torch.testing.assert_close(soft.parameter_vector(), exp.parameter_vector())  # same distribution
    raw = "raw_alpha" if family == "beta" else "raw_std"
    vec = soft.parameter_vector().detach()
    value = vec[N_TOK * DIM] if family == "gaussian" else vec[0]
    # softplus: theta = log(1 + e^u); exp: theta = e^u
    assert float(torch.nn.functional.softplus(getattr(soft, raw).detach()).flatten()[0]) == pytest.approx(float(value), rel=1e-6)
    assert float(getattr(exp, raw).detach().exp().flatten()[0]) == pytest.approx(float(value), rel=1e-6)
    with pytest.raises(InputError, match="link"):
        make_user_distribution(family, N_TOK, DIM, link="sigmoid")
