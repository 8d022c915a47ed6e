"""privacy_audit over every registered family (the registry iterated, as in test_user_distributions).

For each non-point-mass family, from parameters near its common initialisation: the users'
log-densities (privacy_audit.likelihood) equal the record's torch log_prob; the KL matrix equals a
Monte Carlo estimate ``E_f[log f - log g]`` from the record's own seeded sampler within z = 5
standard errors; Hellinger respects Le Cam's bounds against the exact 1-D TV; Bayes misattribution
by Monte Carlo agrees with exact 1-D quadrature within the two error bars; the Chernoff rate and
the multi-upload curve run.  A family registered later is checked without editing this file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import constraints

from idfree_core.families import FAMILY_SPECS, get_family_spec
from privacy_audit.divergences import check_params, divergence_matrix
from privacy_audit.likelihood import user_log_density
from privacy_audit.misattribution import bayes_misattribution
from privacy_audit.multi_upload import misattribution_by_uploads

CONTINUOUS = [n for n, s in FAMILY_SPECS.items() if not s.is_point_mass]


def users(name: str, n: int, d: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` users around the family's common initialisation (positive parameters scaled by
    U(0.6, 1.6), real ones shifted by N(0, 0.3 * (1 + |init|)))."""
    spec, rng = get_family_spec(name), np.random.default_rng(seed)
    init = spec.initial_params()
    out = {}
    for k in spec.param_names:
        v = float(init[k])
        if spec.constraints[k] is constraints.positive:
            out[k] = v * rng.uniform(0.6, 1.6, (n, d))
        else:
            out[k] = v + rng.normal(0, 0.3 * (1 + abs(v)), (n, d))
    return out


@pytest.mark.parametrize("name", CONTINUOUS)
def test_log_density_equals_torch_log_prob(name):
    spec = get_family_spec(name)
    p = users(name, 5, 3, 0)
    x = spec.sample({k: torch.as_tensor(v[:1]) for k, v in p.items()}, (7,), torch.Generator().manual_seed(1))[:, 0]
    got = user_log_density(name, p)(x).numpy()
    want = spec.torch_distribution(p).log_prob(x[:, None, :]).sum(-1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-8)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_kl_matrix_matches_monte_carlo(name):
    spec = get_family_spec(name)
    p = users(name, 3, 2, 2)
    kl = divergence_matrix(name, p, "kl")
    assert np.all(np.diag(kl) == 0) and np.all(kl >= 0)
    n_mc = 40000
    for i in range(3):
        x = spec.sample({k: torch.as_tensor(v[[i]]) for k, v in p.items()}, (n_mc,), torch.Generator().manual_seed(i))
        lf = spec.torch_distribution(p).log_prob(x).sum(-1).numpy()   # (n_mc, 3)
        for j in range(3):
            diff = lf[:, i] - lf[:, j]
            se = diff.std(ddof=1) / math.sqrt(n_mc)
            assert abs(diff.mean() - kl[i, j]) <= 5 * se + 1e-9, (i, j, diff.mean(), kl[i, j])


@pytest.mark.parametrize("name", CONTINUOUS)
def test_hellinger_within_le_cam_bounds_of_exact_tv(name):
    p = users(name, 4, 1, 3)
    tv = divergence_matrix(name, p, "tv")
    h = divergence_matrix(name, p, "hellinger")
    h2 = h**2
    assert np.all(h2 <= tv + 1e-9) and np.all(tv <= np.sqrt(h2 * (2 - h2)) + 1e-9)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_misattribution_monte_carlo_agrees_with_exact(name):
    p = users(name, 3, 1, 4)
    exact = bayes_misattribution(name, p, method="exact")
    mc = bayes_misattribution(name, p, method="monte_carlo", target_halfwidth=0.004, random_state=5)
    assert exact.method == "exact" and mc.method == "monte_carlo"
    assert abs(mc.value - exact.value) <= mc.error + exact.error, (mc, exact)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_multi_upload_curve_and_chernoff_rate(name):
    p = users(name, 3, 2, 6)
    curve = misattribution_by_uploads(name, p, uploads=(1, 4), target_halfwidth=0.01, random_state=0)
    one, four = curve.by_uploads_per_user
    assert four["value"] <= one["ci"][1]
    assert 0 < curve.chernoff_rate < math.inf


@pytest.mark.parametrize("name", list(FAMILY_SPECS))
def test_check_params_is_the_record_validation(name):
    spec = get_family_spec(name)
    p = users(name, 2, 3, 7) if not spec.is_point_mass else {"value": np.zeros((2, 3))}
    fam, out = check_params(name, p)
    assert fam == name and set(out) == set(spec.param_names)
    with pytest.raises(ValueError, match="keys"):
        check_params(name, {"nope": np.ones((2, 1))})
    with pytest.raises(ValueError, match="NaN"):
        check_params(name, {k: np.full((2, 1), np.nan) for k in spec.param_names})
