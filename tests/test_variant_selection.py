"""Variant choice of clustering[em]: Bartlett's equal-variance check that guards the tied model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from attacks.mixture_em import select_variant, variance_homogeneity_p


def _groups(rng, n_groups, per_group, dim, std_range, spread=3.0):
    means = rng.normal(0.0, spread, (n_groups, dim))
    stds = np.exp(rng.uniform(-0.5, 0.5, (n_groups, dim)) * np.log(std_range))
    labels = np.repeat(np.arange(n_groups), per_group)
    return means[labels] + stds[labels] * rng.standard_normal((labels.size, dim)), labels


def test_homogeneity_p_is_uniform_under_equal_variances():
    """Under the null the p-value is ~U(0, 1): 200 draws, KS test against the uniform at 1 %, and the
    rejection rate at 5 % inside its binomial 99.9 % range."""
    rng = np.random.default_rng(3)
    ps = np.array([variance_homogeneity_p(*_groups(rng, 6, 30, 4, std_range=1.0)) for _ in range(200)])
    assert stats.kstest(ps, "uniform").pvalue > 0.01
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 200, 0.05)
    assert lo <= (ps < 0.05).sum() <= hi


def test_homogeneity_p_rejects_four_fold_spreads():
    rng = np.random.default_rng(4)
    assert variance_homogeneity_p(*_groups(rng, 20, 30, 8, std_range=4.0)) < 1e-6


def test_homogeneity_p_degenerate_groupings():
    x = np.random.default_rng(5).standard_normal((10, 2))
    assert variance_homogeneity_p(x, np.zeros(10, dtype=int)) == 1.0  # one group
    assert variance_homogeneity_p(x, np.arange(10)) == 1.0  # no group of 3 rows
    y = np.random.default_rng(6).standard_normal((30, 2))
    y[:, 1] = 2.0  # constant in every group: no evidence, the other dimension decides
    assert variance_homogeneity_p(y, np.repeat([0, 1, 2], 10)) > 1e-3
    y[:10, 0] = 1.0  # one group constant where the others vary: unequal outright
    assert variance_homogeneity_p(y, np.repeat([0, 1, 2], 10)) == 0.0


@pytest.mark.parametrize("seed", [11, 12])
def test_tied_is_not_chosen_when_users_spreads_differ(seed):
    """100 users x 20 uploads in 24 dimensions with four-fold per-dimension std ranges (the 200 x 30
    regime, scaled down): held-out likelihood prefers the tied model (the bias the check guards
    against), the check rejects equal variances, and the choice is a free-variance model."""
    rng = np.random.default_rng(seed)
    x, _ = _groups(rng, 100, 20, 24, std_range=4.0, spread=0.5)
    name, scores, checks = select_variant(x.astype(np.float32), 100, random_state=seed)
    assert max(scores, key=scores.get) == "gaussian-tied"
    assert checks["tied_homogeneity_p"] < 1e-3
    assert name != "gaussian-tied"


def test_tied_is_kept_when_variances_are_equal():
    """Equal spreads, well separated users: held-out likelihood prefers tied and the check keeps it."""
    rng = np.random.default_rng(7)
    x, _ = _groups(rng, 8, 60, 6, std_range=1.0, spread=4.0)
    name, scores, checks = select_variant(x.astype(np.float32), 8, random_state=7)
    assert max(scores, key=scores.get) == "gaussian-tied"
    assert checks["tied_homogeneity_p"] >= 1e-3
    assert name == "gaussian-tied"
