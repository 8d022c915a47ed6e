"""Bayes-optimal misattribution against closed forms, divergence matrices, and the CLI command."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from idfree_core.uploads import UserDistributions, write_user_distributions
from privacy_audit.divergences import LinearLogDensity
from privacy_audit.misattribution import bayes_misattribution, divergence_matrix
from reports import cli

FAST = settings(max_examples=8, deadline=None, derandomize=True)


def gauss(means, stds):
    return {"mean": np.asarray(means, float), "std": np.asarray(stds, float)}


# --------------------------------------------------------------------------- closed forms


@FAST
@given(st.floats(-3, 3), st.floats(0.01, 4), st.floats(0.1, 3))
def test_two_gaussians_1d_exact(mu, gap, sigma):
    est = bayes_misattribution("gaussian", gauss([[mu], [mu + gap]], [[sigma], [sigma]]))
    truth = stats.norm.cdf(-gap / (2 * sigma))
    assert est.method == "exact"
    assert est.ci[0] - 1e-9 <= truth <= est.ci[1] + 1e-9
    assert abs(est.value - truth) < 1e-7


@FAST
@given(st.integers(2, 6), st.integers(0, 10_000), st.floats(0.2, 4.0))
def test_two_gaussians_mahalanobis_monte_carlo(dim, seed, scale):
    rng = np.random.default_rng(seed)
    std = rng.uniform(0.3, 2.0, dim)
    m1 = rng.normal(size=dim)
    step = rng.normal(size=dim)
    m2 = m1 + scale * step / np.linalg.norm(step / std)   # Mahalanobis distance == scale
    est = bayes_misattribution("gaussian", gauss([m1, m2], [std, std]), confidence=0.999,
                               target_halfwidth=0.01, random_state=seed)
    truth = stats.norm.cdf(-scale / 2)
    assert est.method == "monte_carlo" and est.converged
    assert est.ci[0] <= truth <= est.ci[1]
    assert est.ci[1] - est.ci[0] <= 0.02 + 1e-12


@FAST
@given(st.floats(0.05, 0.95), st.floats(0.2, 3.0), st.floats(0.3, 2.0))
def test_unequal_priors_1d(p, gap, sigma):
    # MAP threshold shifts by sigma^2 log(p / (1 - p)) / gap from the midpoint.
    t = gap / 2 + sigma**2 * math.log(p / (1 - p)) / gap
    truth = p * stats.norm.sf(t / sigma) + (1 - p) * stats.norm.cdf((t - gap) / sigma)
    params = gauss([[0.0], [gap]], [[sigma], [sigma]])
    exact = bayes_misattribution("gaussian", params, priors=[p, 1 - p])
    assert abs(exact.value - truth) < 1e-7
    mc = bayes_misattribution("gaussian", params, priors=[3 * p, 3 * (1 - p)], method="monte_carlo",
                              confidence=0.999, target_halfwidth=0.01)
    assert mc.ci[0] <= truth <= mc.ci[1]


@FAST
@given(st.integers(0, 10_000))
def test_beta_1d_exact_matches_monte_carlo(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 6))
    params = {"alpha": rng.uniform(0.5, 8, (n, 1)), "beta": rng.uniform(0.5, 8, (n, 1))}
    exact = bayes_misattribution("beta", params)
    mc = bayes_misattribution("beta", params, method="monte_carlo", confidence=0.999,
                              target_halfwidth=0.01, random_state=seed)
    assert exact.method == "exact" and exact.error < 1e-6
    assert mc.ci[0] - exact.error <= exact.value <= mc.ci[1] + exact.error


def test_beta_1d_exact_against_direct_quadrature():
    a, b = np.array([2.0, 3.5]), np.array([5.0, 2.0])
    f = lambda x: min(stats.beta.pdf(x, a[0], b[0]), stats.beta.pdf(x, a[1], b[1])) / 2  # noqa: E731
    truth = integrate.quad(f, 0, 1, limit=200, points=[0.3, 0.5, 0.6])[0]
    est = bayes_misattribution("beta", {"alpha": a[:, None], "beta": b[:, None]})
    assert abs(est.value - truth) < 1e-8


@pytest.mark.parametrize("family, params", [
    ("gaussian", gauss(np.zeros((5, 3)), np.ones((5, 3)))),
    ("gaussian", gauss(np.zeros((4, 1)), np.ones((4, 1)))),
    ("beta", {"alpha": np.full((3, 4), 2.0), "beta": np.full((3, 4), 5.0)}),
    ("static", {"value": np.ones((6, 2))}),
])
def test_identical_users_give_n_minus_one_over_n(family, params):
    n = next(iter(params.values())).shape[0]
    est = bayes_misattribution(family, params)
    assert est.value == pytest.approx((n - 1) / n, abs=1e-9)


def test_well_separated_users_are_identified():
    means = np.arange(6)[:, None] * np.ones((6, 4)) * 100.0
    est = bayes_misattribution("gaussian", gauss(means, np.ones((6, 4))))
    assert est.value < 1e-6 and est.ci[1] < 0.005
    assert bayes_misattribution("gaussian", gauss(means[:, :1], np.ones((6, 1)))).value < 1e-9


def test_static_ties_use_priors():
    values = np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 2.0]])
    est = bayes_misattribution("static", {"value": values}, priors=[0.2, 0.5, 0.3])
    assert est.value == pytest.approx(0.2) and est.method == "exact"
    assert bayes_misattribution("static", {"value": np.eye(3)}).value == 0.0


def test_ci_coverage_over_seeds():
    params = gauss([[0.0, 0.0], [0.6, 0.8]], [[1.0, 1.0], [1.0, 1.0]])   # Mahalanobis 1
    truth = stats.norm.cdf(-0.5)
    hits = sum(
        est.ci[0] <= truth <= est.ci[1]
        for est in (bayes_misattribution("gaussian", params, target_halfwidth=0.02, min_samples=256,
                                         batch_size=256, random_state=seed) for seed in range(40)))
    assert hits >= 34   # nominal 95%: P(hits < 34) < 1% for a calibrated interval


def test_per_user_and_reproducibility():
    params = gauss([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]], np.ones((3, 2)))
    a = bayes_misattribution("gaussian", params, random_state=7)
    b = bayes_misattribution("gaussian", params, random_state=7)
    assert a == b
    per = np.asarray(a.per_user)
    assert per[2] < 0.01 < per[0]
    # The overall error is the prior-weighted mean of the per-user errors.
    assert per.mean() == pytest.approx(a.value, abs=3 * a.error)
    assert json.loads(json.dumps(a.to_dict()))["ci"] == list(a.ci)


@pytest.mark.parametrize("family", ["beta", "gaussian"])
def test_matrix_log_density_equals_torch_log_prob(family):
    rng = np.random.default_rng(1)
    n, d = 7, 5
    if family == "beta":
        params = {"alpha": rng.uniform(0.3, 9, (n, d)), "beta": rng.uniform(0.3, 9, (n, d))}
        x = rng.uniform(0.001, 0.999, (11, d))
        dist = torch.distributions.Beta(torch.tensor(params["alpha"]), torch.tensor(params["beta"]))
    else:
        params = gauss(rng.normal(0, 3, (n, d)), rng.uniform(0.1, 3, (n, d)))
        x = rng.normal(0, 4, (11, d))
        dist = torch.distributions.Normal(torch.tensor(params["mean"]), torch.tensor(params["std"]))
    got = LinearLogDensity(family, params)(torch.tensor(x)).numpy()
    want = dist.log_prob(torch.tensor(x)[:, None, :]).sum(-1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-8)


def test_accepts_torch_distributions():
    loc, scale = torch.tensor([[0.0, 1.0], [2.0, 0.0]]), torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    dist = torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)
    a = bayes_misattribution("gaussian", dist, random_state=3)
    b = bayes_misattribution("gaussian", gauss(loc.numpy(), scale.numpy()), random_state=3)
    assert a.value == b.value
    with pytest.raises(ValueError, match="does not match"):
        bayes_misattribution("beta", dist)


@pytest.mark.parametrize("call, match", [
    (lambda: bayes_misattribution("poisson", {"rate": np.ones((2, 1))}), "family"),
    (lambda: bayes_misattribution("gaussian", {"mean": np.ones((2, 1))}), "keys"),
    (lambda: bayes_misattribution("gaussian", gauss([[np.nan], [0]], [[1], [1]])), "NaN"),
    (lambda: bayes_misattribution("gaussian", gauss([[0], [0]], [[1], [-1]])), "> 0"),
    (lambda: bayes_misattribution("beta", {"alpha": np.ones((2, 2)), "beta": np.ones((3, 2))}), "shape"),
    (lambda: bayes_misattribution("gaussian", gauss([[0], [1]], [[1], [1]]), priors=[1, -1]), "priors"),
    (lambda: bayes_misattribution("gaussian", gauss([[0], [1]], [[1], [1]]), priors=[1]), "priors"),
    (lambda: bayes_misattribution("gaussian", gauss([[0, 0], [1, 1]], np.ones((2, 2))), method="exact"), "D=1"),
    (lambda: bayes_misattribution("gaussian", gauss([[0], [1]], [[1], [1]]), confidence=1.5), "confidence"),
    (lambda: bayes_misattribution("gaussian", gauss([[0], [1]], [[1], [1]]), random_state="x"), "random_state"),
    (lambda: divergence_matrix("gaussian", gauss([[0], [1]], [[1], [1]]), kind="chi2"), "kind"),
])
def test_bad_input_is_one_line_value_error(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- divergences


def _random_params(family, n, d, seed):
    rng = np.random.default_rng(seed)
    if family == "beta":
        return {"alpha": rng.uniform(0.7, 6, (n, d)), "beta": rng.uniform(0.7, 6, (n, d))}
    return gauss(rng.normal(0, 1, (n, d)), rng.uniform(0.4, 2, (n, d)))


@pytest.mark.parametrize("family", ["beta", "gaussian"])
@pytest.mark.parametrize("kind", ["tv", "tv_lower", "tv_upper", "hellinger", "js"])
def test_symmetric_divergences(family, kind):
    params = _random_params(family, 4, 2, 3)
    m = divergence_matrix(family, params, kind, n_samples=2000)
    np.testing.assert_allclose(m, m.T, atol=1e-12)
    assert np.all(np.diag(m) == 0) and np.all(m >= 0)
    assert np.all(m <= (math.log(2) if kind == "js" else 1.0) + 1e-12)


@pytest.mark.parametrize("family", ["beta", "gaussian"])
def test_kl_matches_torch_registry_pairwise(family):
    params = _random_params(family, 4, 3, 4)
    m = divergence_matrix(family, params, "kl")
    names = ("alpha", "beta") if family == "beta" else ("mean", "std")
    cls = torch.distributions.Beta if family == "beta" else torch.distributions.Normal
    for i in range(4):
        for j in range(4):
            p = cls(*(torch.tensor(params[k][i]) for k in names))
            q = cls(*(torch.tensor(params[k][j]) for k in names))
            assert m[i, j] == pytest.approx(float(torch.distributions.kl_divergence(p, q).sum()), abs=1e-10)
    assert not np.allclose(m, m.T)   # KL is not symmetric


def test_gaussian_kl_and_hellinger_closed_forms():
    m1, s1, m2, s2 = 0.3, 0.7, -1.1, 1.9
    params = gauss([[m1], [m2]], [[s1], [s2]])
    kl = math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
    assert divergence_matrix("gaussian", params, "kl")[0, 1] == pytest.approx(kl)
    bc = integrate.quad(lambda x: math.sqrt(stats.norm.pdf(x, m1, s1) * stats.norm.pdf(x, m2, s2)), -30, 30)[0]
    assert divergence_matrix("gaussian", params, "hellinger")[0, 1] == pytest.approx(math.sqrt(1 - bc), rel=1e-7)


def test_beta_hellinger_against_quadrature():
    a, b = [2.0, 0.8], [5.0, 1.7]
    bc = integrate.quad(lambda x: math.sqrt(stats.beta.pdf(x, a[0], b[0]) * stats.beta.pdf(x, a[1], b[1])), 0, 1)[0]
    h = divergence_matrix("beta", {"alpha": np.array(a)[:, None], "beta": np.array(b)[:, None]}, "hellinger")
    assert h[0, 1] == pytest.approx(math.sqrt(1 - bc), rel=1e-6)


def test_tv_1d_equal_variance_closed_form_and_monte_carlo():
    params = gauss([[0.0], [1.3]], [[0.8], [0.8]])
    tv = divergence_matrix("gaussian", params, "tv")[0, 1]
    assert tv == pytest.approx(2 * stats.norm.cdf(1.3 / 1.6) - 1, abs=1e-8)
    beta = {"alpha": np.array([[2.0], [4.0]]), "beta": np.array([[5.0], [3.0]])}
    exact = divergence_matrix("beta", beta, "tv")[0, 1]
    rng = np.random.default_rng(0)
    x = stats.beta.rvs(2.0, 5.0, size=200_000, random_state=rng)
    g = np.clip(1 - stats.beta.pdf(x, 4.0, 3.0) / stats.beta.pdf(x, 2.0, 5.0), 0, None)
    half = 3.3 * g.std() / math.sqrt(g.size)
    assert abs(g.mean() - exact) < half


def test_tv_sandwich_and_monte_carlo_in_2d():
    params = _random_params("gaussian", 3, 2, 5)
    lo = divergence_matrix("gaussian", params, "tv_lower")
    hi = divergence_matrix("gaussian", params, "tv_upper")
    tv = divergence_matrix("gaussian", params, "tv", n_samples=40_000)
    assert np.all(lo <= tv + 0.01) and np.all(tv <= hi + 0.01)
    # Equal-covariance pair: TV = 2 Phi(delta/2) - 1 exactly.
    eq = gauss([[0.0, 0.0], [0.9, 1.2]], [[1.0, 2.0], [1.0, 2.0]])
    delta = math.hypot(0.9, 0.6)
    assert divergence_matrix("gaussian", eq, "tv", n_samples=40_000)[0, 1] == pytest.approx(
        2 * stats.norm.cdf(delta / 2) - 1, abs=0.01)


def test_static_divergences():
    m = divergence_matrix("static", {"value": np.array([[1.0], [1.0], [2.0]])}, "tv")
    np.testing.assert_array_equal(m, [[0, 0, 1], [0, 0, 1], [1, 1, 0]])


# --------------------------------------------------------------------------- CLI


@pytest.fixture()
def dist_file(tmp_path):
    d = UserDistributions(family="gaussian", users=("ann", "bob"),
                          params={"mean": np.array([[0.0], [1.0]]), "std": np.array([[1.0], [1.0]])})
    path = tmp_path / "user_distributions.json"
    write_user_distributions(d, path)
    return path


def test_cli_distributions_json(dist_file, tmp_path, capsys):
    priors = tmp_path / "priors.json"
    priors.write_text('{"ann": 1, "bob": 1}')
    assert cli.main(["misattribution", "--distributions", str(dist_file), "--priors", str(priors), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bayes"]["method"] == "exact"
    assert out["bayes"]["value"] == pytest.approx(stats.norm.cdf(-0.5), abs=1e-7)
    assert len(out["bayes"]["ci"]) == 2 and "bound" not in out


def test_cli_constraints_and_both(dist_file, capsys):
    assert cli.main(["misattribution", "--users", "10", "--dim", "8", "--lr", "1e-4", "--clip", "5",
                     "--steps", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 < out["bound"] <= 0.9 and out["proximity"]["family"] == "beta" and "bayes" not in out
    assert cli.main(["misattribution", "--distributions", str(dist_file), "--lr", "1e-3", "--steps", "20",
                     "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert {"bayes", "bound", "proximity"} <= set(both) and both["proximity"]["n_users"] == 2
    assert cli.main(["misattribution", "--users", "4", "--dim", "2", "--lr", "0.01", "--clip", "1",
                     "--steps", "3", "--std", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "Proximity lower bound" in text and "gaussian" in text


@pytest.mark.parametrize("content, argv_extra", [
    (None, []),
    ("{not json", []),
    ('{"family": "gaussian", "users": {"a": {"mean": [0], "std": [-1]}}}', []),
    ('{"family": "gaussian", "users": {"a": {"mean": [0], "std": [1]}, "b": {"mean": [1], "std": [1]}}}',
     ["--priors", "MISSING"]),
    ('{"family": "gaussian", "users": {"a": {"mean": [0], "std": [1]}}}', ["--lr", "-1", "--steps", "3"]),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, capsys, content, argv_extra):
    path = tmp_path / "d.json"
    if content is not None:
        path.write_text(content)
    argv = ["misattribution", "--distributions", str(path)] + [
        str(tmp_path / "nope.json") if a == "MISSING" else a for a in argv_extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]


def test_cli_needs_a_mode(capsys):
    assert cli.main(["misattribution", "--json"]) == 2
    assert "--distributions" in capsys.readouterr().err
