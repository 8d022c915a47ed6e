"""Conformance battery over every built-in symbolic family (in the style of scipy.stats' tests).

For each family: the density matches scipy.stats, integrates (sums) to 1 and is non-negative at
sampled parameter points; its stated transforms match numerical expectations; its verdict is the
one the literature gives; a certificate (if any) re-verifies and holds numerically; the verdict
survives a JSON round trip.
"""

import functools
import json

import numpy as np
import pytest
import sympy as sp
from scipy import integrate, stats

from idfree_core.families import get_family_spec
from privacy_audit.families import BUILTIN, check_transform
from privacy_audit.identifiability import Verdict, decide, verify_certificate

NAMES = sorted(BUILTIN)
LITERATURE = {"beta": True, "uniform": True, "bernoulli": True, "binomial": True,
              "gaussian": False, "gamma": False, "exponential": False, "laplace": False,
              "poisson": False,
              # Kumaraswamy(1, b) = Beta(1, b) and Kumaraswamy(a, 1) = Beta(a, 1): Beta's dependence
              # 1 = (f(1, 2) + f(2, 1)) / 2 carries over (Jones 2009, Sec. 2)
              "kumaraswamy": True}

SCIPY = {
    "beta": lambda p: stats.beta(p["a"], p["b"]),
    "gaussian": lambda p: stats.norm(p["mu"], p["sigma"]),
    "gamma": lambda p: stats.gamma(p["k"], scale=p["theta"]),
    "exponential": lambda p: stats.expon(scale=1 / p["lam"]),
    "laplace": lambda p: stats.laplace(p["mu"], p["b"]),
    "uniform": lambda p: stats.uniform(p["a"], p["b"] - p["a"]),
    "bernoulli": lambda p: stats.bernoulli(p["p"]),
    "binomial": lambda p: stats.binom(5, p["p"]),
    "poisson": lambda p: stats.poisson(p["lam"]),
    "kumaraswamy": lambda p: get_family_spec("kumaraswamy").scipy_distribution({"a": p["a"], "b": p["b"]}),
}


@functools.lru_cache(maxsize=None)
def verdict(name):
    return decide(BUILTIN[name], time_budget=60.0)


def test_every_builtin_is_covered():
    assert set(NAMES) == set(LITERATURE) == set(SCIPY)


def _numeric(fam, point):
    f = fam.lambdify()
    return lambda x: np.asarray(f(x, *[point[n] for n in fam.param_names]), dtype=float)


@pytest.mark.parametrize("name", NAMES)
def test_density_matches_scipy_and_is_nonnegative(name):
    fam = BUILTIN[name]
    for point in fam.members(3, random_state=11):
        f, ref = _numeric(fam, point), SCIPY[name](point)
        if fam.discrete:
            lo = int(fam.support[0])
            xs = np.arange(lo, lo + 15)
            xs = xs[xs <= float(fam.support[1])]
            np.testing.assert_allclose(f(xs), ref.pmf(xs), rtol=1e-10, atol=1e-14)
        else:
            lo, hi = ref.support()
            xs = np.linspace(max(lo, -8), min(hi, 8), 203)[1:-1]
            np.testing.assert_allclose(f(xs), ref.pdf(xs), rtol=1e-9, atol=1e-12)
        assert np.all(f(xs) >= 0)


@pytest.mark.parametrize("name", NAMES)
def test_density_integrates_to_one(name):
    fam = BUILTIN[name]
    for point in fam.members(2, random_state=5):
        f = _numeric(fam, point)
        lo, hi = (float(v) for v in fam.support)
        if fam.discrete:
            xs = np.arange(int(lo), int(min(hi, 400)) + 1)
            total = float(np.sum(f(xs)))
        else:
            breaks = sorted(v for v in point.values() if lo < v < hi)
            pieces = [lo, *breaks, hi]
            total = sum(integrate.quad(lambda t: float(f(t)), a, b, limit=200)[0]
                        for a, b in zip(pieces[:-1], pieces[1:]))
        assert total == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_transforms_match_expectations(name):
    for tr in BUILTIN[name].transforms:
        ok, note = check_transform(BUILTIN[name], tr, n_points=2, random_state=3)
        assert ok, note


@pytest.mark.parametrize("name", NAMES)
def test_verdict_matches_literature(name):
    v = verdict(name)
    assert v.linearly_dependent is LITERATURE[name]
    assert v.identifiable is (not LITERATURE[name])


@pytest.mark.parametrize("name", [n for n in NAMES if LITERATURE[n]])
def test_certificate_reverifies_and_holds_numerically(name):
    fam, cert = BUILTIN[name], verdict(name).certificate
    ok, checks = verify_certificate(fam, cert.members, cert.coefficients, cert.instance)
    assert ok, checks
    names = {p.name: p for p in fam.params}
    inst = {names[k]: sp.Rational(v) for k, v in (cert.instance or {}).items()}
    rng = np.random.default_rng(2)
    if fam.discrete:
        xs = np.arange(int(fam.support[0]), int(fam.support[1]) + 1)
    else:  # the same points for every member; off the breakpoints (an a.e. identity)
        xs = rng.uniform(0.01, 0.99, 50) * (2.0 if name == "uniform" else 1.0)
        xs = xs[np.abs(xs - np.round(xs)) > 1e-6]
    total = 0.0
    scale = 0.0
    for m, c in zip(cert.members, cert.coefficients):
        point = {k: float(sp.sympify(v, locals=names).subs(inst)) for k, v in m.items()}
        coef = float(sp.sympify(c, locals=names).subs(inst))
        dist = SCIPY[name](point)
        vals = dist.pmf(xs) if fam.discrete else dist.pdf(xs)
        total = total + coef * vals
        scale = scale + abs(coef) * vals
    assert np.max(np.abs(total)) <= 1e-9 * max(1.0, np.max(scale))


@pytest.mark.parametrize("name", NAMES)
def test_verdict_json_round_trip(name):
    v = verdict(name)
    text = json.dumps(v.to_dict(), allow_nan=False)
    assert Verdict.from_dict(json.loads(text)) == v
    assert Verdict.from_dict(json.loads(text)).to_latex() == v.to_latex()
