"""Kumaraswamy MLE and Cramér-Rao bound (idfree_core.families.kumaraswamy_fit) against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from idfree_core.families import get_family_spec
from idfree_core.families.kumaraswamy import kumaraswamy
from idfree_core.families.kumaraswamy_fit import kumaraswamy_crb, kumaraswamy_fisher, kumaraswamy_mle


@pytest.mark.parametrize("a,b", [(2.0, 5.0), (0.7, 1.0), (3.0, 2.0), (1.5, 0.6), (2.0, 1.5), (0.5, 8.0)])
def test_fisher_information_matches_quadrature_of_the_expected_hessian(a, b):
    """-E[d^2 log f] by numerical quadrature (second derivatives written out independently)."""
    pdf = kumaraswamy(a, b).pdf

    def haa(x):
        y = x ** a
        return (1 / a ** 2 + (b - 1) * y * np.log(x) ** 2 / (1 - y) ** 2) * pdf(x)

    def hab(x):
        y = x ** a
        return y * np.log(x) / (1 - y) * pdf(x)

    iaa, iab, ibb = kumaraswamy_fisher(a, b)
    assert iaa == pytest.approx(integrate.quad(haa, 0, 1, limit=200)[0], rel=1e-6)
    assert iab == pytest.approx(integrate.quad(hab, 0, 1, limit=200)[0], rel=1e-6)
    assert ibb == pytest.approx(1 / b ** 2)


def test_fisher_is_continuous_at_the_removable_singularities():
    for b0 in (1.0, 2.0):
        at = np.asarray(kumaraswamy_fisher(1.3, b0))
        near = np.asarray(kumaraswamy_fisher(1.3, b0 + 1e-5))
        assert np.allclose(at, near, rtol=1e-4)


def test_mle_recovers_parameters_and_is_vectorised():
    x = kumaraswamy(2.0, 5.0).rvs(size=(20000, 3), random_state=0)
    a, b = kumaraswamy_mle(x)
    assert a.shape == (3,) and np.allclose(a, 2.0, rtol=0.05) and np.allclose(b, 5.0, rtol=0.08)
    y = np.moveaxis(x.reshape(100, 200, 3), 1, 2)  # (100 groups, 3, 200 samples)
    ga, gb = kumaraswamy_mle(y, axis=2)
    assert ga.shape == (100, 3)
    one_a, one_b = kumaraswamy_mle(y[7, 1])
    assert ga[7, 1] == pytest.approx(one_a, rel=1e-6) and gb[7, 1] == pytest.approx(one_b, rel=1e-6)


def test_mle_is_the_maximum_of_the_log_likelihood():
    x = kumaraswamy(0.8, 3.0).rvs(size=300, random_state=2)
    a, b = kumaraswamy_mle(x)
    ll = lambda a_, b_: kumaraswamy(a_, b_).logpdf(x).sum()  # noqa: E731
    best = ll(a, b)
    for da, db in [(1.01, 1), (0.99, 1), (1, 1.01), (1, 0.99), (1.01, 1.01), (0.99, 0.99)]:
        assert best >= ll(a * da, b * db)


def test_weighted_mle_equals_duplicated_rows():
    x = kumaraswamy(1.5, 2.5).rvs(size=(60, 2), random_state=3)
    w = np.r_[np.full(30, 2.0), np.ones(30)]
    a, b = kumaraswamy_mle(x, weights=w)
    a2, b2 = kumaraswamy_mle(np.vstack([x[:30], x]))
    assert np.allclose(a, a2, rtol=1e-6) and np.allclose(b, b2, rtol=1e-6)
    spec = get_family_spec("kumaraswamy")
    assert np.allclose(spec.mle(x, axis=0, weights=w)["a"], a)


@pytest.mark.parametrize("a,b", [(2.0, 5.0), (0.8, 1.5)])
def test_crb_matches_the_empirical_variance_of_the_mle(a, b):
    """Over R seeded replicates of k samples, the MLE variance's chi-square 99% CI holds the CRB
    (asymptotic efficiency; k = 400 keeps the finite-sample excess below the CI's width)."""
    k, reps = 400, 600
    x = kumaraswamy(a, b).rvs(size=(k, reps), random_state=4)
    ea, eb = kumaraswamy_mle(x)
    va, vb = kumaraswamy_crb(a, b, k)
    for est, bound in ((ea, va), (eb, vb)):
        s2 = est.var(ddof=1)
        lo = (reps - 1) * s2 / stats.chi2.ppf(0.995, reps - 1)
        hi = (reps - 1) * s2 / stats.chi2.ppf(0.005, reps - 1)
        assert lo <= bound * 1.05 and bound <= hi, (bound, lo, hi)
    spec = get_family_spec("kumaraswamy")
    assert spec.crb({"a": a, "b": b}, k)["a"] == pytest.approx(va)
