"""The one comparable privacy number (attacks.headline): epsilon lower bound, GDP mu, normalised advantage."""

from __future__ import annotations

import numpy as np
from scipy import stats

from attacks.headline import epsilon_lower_bound, gdp_mu
from attacks.inversion.mixture import MixtureInversion
from attacks.linkage import NearestNeighbourLinkage
from tests.conformance.test_attack_null import null_pool, static_pool


def test_epsilon_ci_contains_zero_under_the_null_and_excludes_it_on_separable_scores():
    rng = np.random.default_rng(0)
    same = np.r_[np.ones(3000, bool), np.zeros(3000, bool)]
    null = epsilon_lower_bound(rng.normal(size=same.size), same, random_state=1)
    assert null["ci"][0] <= 0.0 <= null["ci"][1] and null["lower_bound"] == 0.0
    # Gaussian shift mu = 2: the tested log(TPR/FPR) at a fixed threshold t is log(Phi(mu - t) / Phi(-t))
    scores = rng.normal(size=same.size) + 2.0 * same
    sep = epsilon_lower_bound(scores, same, random_state=1)
    t = sep["threshold"]
    closed = np.log(stats.norm.sf(t - 2.0) / stats.norm.sf(t))
    assert sep["ci"][0] <= closed <= sep["ci"][1] and sep["lower_bound"] > 0.5


def test_gdp_mu_inverts_the_gaussian_roc_area():
    mu = 1.3
    auc = stats.norm.cdf(mu / np.sqrt(2))
    out = gdp_mu(auc, (auc - 0.01, auc + 0.01))
    assert abs(out["value"] - mu) < 1e-9 and out["ci"][0] < mu < out["ci"][1]


def test_linkage_headline_null_and_static():
    pool, oracle, *_ = null_pool("gaussian", n_users=4, per_user=40, dim=3, sessions=True, text=False, seed=5)
    res = NearestNeighbourLinkage(random_state=0).fit(pool).score(pool, oracle)
    eps = next(r for r in res if r.metric == "auc").details["epsilon"]
    assert eps["ci"][0] <= 0.0 <= eps["ci"][1]
    pool, oracle, *_ = static_pool(n_users=6, per_user=24, dim=8, seed=3)
    res = NearestNeighbourLinkage(random_state=0).fit(pool).score(pool, oracle)
    from attacks.headline import headline

    h = headline(res)
    assert h["privacy_number"] > 1.0 and h["linkage"]["value"] > 0.9 and h["gdp_mu"]["value"] > 2.0


def test_inversion_partial_finding_matches_its_numbers():
    inv = MixtureInversion(family="gaussian")
    inv.family_, inv.n_components_, inv.bic_ = "gaussian", 50, None

    class Acc:
        value, ci, baseline, ceiling, advantage_ci = 0.6, (0.55, 0.65), 0.1, 0.8, (0.4, 0.6)

    text = inv._finding(Acc, {"fraction_recovered": 0.64, "n_recovered": 32, "median_parameter_error": 0.1,
                              "median_nearest_user_distance": 0.5}, 50)
    assert "32 of 50" in text and "most of the users' distributions were recovered" in text
    assert "not recovered" not in text
    text = inv._finding(Acc, {"fraction_recovered": 0.2, "n_recovered": 10, "median_parameter_error": 0.1,
                              "median_nearest_user_distance": 0.5}, 50)
    assert "only some" in text and "10 of 50" in text
