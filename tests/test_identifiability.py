"""privacy_audit.identifiability: verdicts, certificates, proofs, screen, renderings and CLI."""

import functools
import json

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy_audit.families import ProductFamily, family_from_density, get_family
from privacy_audit.identifiability import (Certificate, Verdict, decide, numeric_screen,
                                           verify_certificate)
from privacy_audit.identifiability.decide import _verdict_for
from reports import cli

BUDGET = 60.0  # generous: CI shares 2 cores; the speed claim lives in benchmarks/
DEPENDENT = {"beta", "uniform", "bernoulli", "binomial"}
INDEPENDENT = {"gaussian", "gamma", "exponential", "laplace", "poisson"}


@functools.lru_cache(maxsize=None)
def verdict(name):
    return decide(get_family(name), time_budget=BUDGET)


@functools.lru_cache(maxsize=None)
def custom(expr, params, support, discrete=False, positive=()):
    f = family_from_density(expr, "x", list(params), support, discrete=discrete,
                            positive=list(positive))
    return f, decide(f, time_budget=BUDGET)


@pytest.mark.parametrize("name", sorted(DEPENDENT | INDEPENDENT))
def test_builtin_verdicts_are_correct(name):
    v = verdict(name)
    if name in DEPENDENT:
        assert v.linearly_dependent is True and v.identifiable is False
        assert v.certificate is not None and v.certificate.verified
    else:
        assert v.linearly_dependent is False and v.identifiable is True
        assert v.certificate is None and "independent" in v.reason
    assert "Yakowitz" in v.reason


def _parsed(fam, cert):
    names = {p.name: p for p in fam.params}
    members = [{k: sp.sympify(val, locals=names) for k, val in m.items()} for m in cert.members]
    return members, [sp.sympify(c, locals=names) for c in cert.coefficients]


@pytest.mark.parametrize("fam_factory", [
    lambda: get_family("beta"),
    lambda: family_from_density("x**(a-1)*(1-x)**(b-1)/beta(a,b)", "x", ["a", "b"], "0,1"),
])
def test_beta_gives_the_classic_certificate(fam_factory):
    fam = fam_factory()
    v = decide(fam, time_budget=BUDGET)
    assert v.linearly_dependent is True and v.certificate.verified and v.certificate.symbolic
    a, b = fam.symbol("a"), fam.symbol("b")
    members, coeffs = _parsed(fam, v.certificate)
    by_member = {(m["a"], m["b"]): c for m, c in zip(members, coeffs)}
    assert set(by_member) == {(a, b), (a + 1, b), (a, b + 1)}
    base = by_member[(a, b)]
    # Beta(a, b) = a/(a+b) Beta(a+1, b) + b/(a+b) Beta(a, b+1)
    assert sp.simplify(by_member[(a + 1, b)] / -base - a / (a + b)) == 0
    assert sp.simplify(by_member[(a, b + 1)] / -base - b / (a + b)) == 0


def test_beta_certificate_holds_numerically_with_scipy():
    from scipy import stats

    fam = get_family("beta")
    members, coeffs = _parsed(fam, verdict("beta").certificate)
    rng = np.random.default_rng(0)
    for a0, b0 in rng.uniform(0.3, 6.0, size=(5, 2)):
        sub = {fam.symbol("a"): a0, fam.symbol("b"): b0}
        xs = rng.uniform(0.01, 0.99, 20)
        total = sum(float(c.subs(sub)) * stats.beta(float(m["a"].subs(sub)),
                                                     float(m["b"].subs(sub))).pdf(xs)
                    for m, c in zip(members, coeffs))
        assert np.max(np.abs(total)) < 1e-9


@pytest.mark.parametrize("name", ["beta", "uniform", "bernoulli", "binomial"])
def test_verification_fails_when_a_coefficient_is_perturbed(name):
    fam, cert = get_family(name), verdict(name).certificate
    ok, _ = verify_certificate(fam, cert.members, cert.coefficients, cert.instance)
    assert ok
    for i in range(len(cert.coefficients)):
        bad = list(cert.coefficients)
        bad[i] = f"({bad[i]}) + 1/1000"
        ok, checks = verify_certificate(fam, cert.members, bad, cert.instance)
        assert not ok, checks
    zeroed = list(cert.coefficients)
    zeroed[0] = "0"
    assert not verify_certificate(fam, cert.members, zeroed, cert.instance)[0]


@settings(max_examples=6, deadline=None)
@given(name=st.sampled_from(["uniform", "bernoulli"]),
       scale=st.fractions(min_value=-50, max_value=50, max_denominator=20).filter(lambda q: q != 0),
       bump=st.fractions(min_value=-1, max_value=1, max_denominator=1000).filter(lambda q: q != 0),
       which=st.integers(0, 2))
def test_verification_scale_invariant_and_perturbation_sensitive(name, scale, bump, which):
    fam, cert = get_family(name), verdict(name).certificate
    scaled = [f"({scale}) * ({c})" for c in cert.coefficients]
    assert verify_certificate(fam, cert.members, scaled)[0]
    scaled[which] = f"({scaled[which]}) + ({bump})"
    assert not verify_certificate(fam, cert.members, scaled)[0]


def test_verification_rejects_out_of_domain_and_proportional_members():
    fam = get_family("bernoulli")
    # p = 3/2 is not a Bernoulli parameter although the algebra would go through
    assert not verify_certificate(fam, [{"p": "1/4"}, {"p": "1/2"}, {"p": "3/2"}],
                                  ["1", "-2", "1"])[0]
    f2 = family_from_density("2*x*c", "x", ["c"], "0,1", positive=["c"])
    ok, checks = verify_certificate(f2, [{"c": "1"}, {"c": "2"}], ["2", "-1"])
    assert not ok and "proportional" in checks[-1]


@pytest.mark.parametrize("expr,params,support,discrete,positive,expected", [
    ("x/s**2*exp(-x**2/(2*s**2))", ("s",), "0,oo", False, ("s",), False),  # Rayleigh
    ("lam*exp(-lam*x)", ("lam",), "0,oo", False, ("lam",), False),  # distinct exponential rates
    ("lam**x*exp(-lam)/factorial(x)", ("lam",), "0,oo", True, ("lam",), False),  # Teicher 1960
    ("exp(-(x-mu)**2/2)/sqrt(2*pi)", ("mu",), "-oo,oo", False, (), False),  # Gaussian location
    ("x**(k-1)*exp(-x)/gamma(k)", ("k",), "0,oo", False, ("k",), False),  # Gamma shape
    ("exp(-(x-mu)**2/(2*s**2))/(sqrt(2*pi)*s)", ("mu", "s"), "-oo,oo", False, ("s",), False),
    ("x**(k-1)*exp(-x/t)/(gamma(k)*t**k)", ("k", "t"), "0,oo", False, ("k", "t"), False),
    ("exp(-(log(x)-mu)**2/(2*s**2))/(x*s*sqrt(2*pi))", ("mu", "s"), "0,oo", False, ("s",),
     False),  # lognormal (Teicher 1963 via the Gaussian)
    ("binomial(4,x)*p**x*(1-p)**(4-x)", ("p",), "0,4", True, (), True),  # Binomial(4)
    ("exp(-Abs(x-m))/2", ("m",), "-oo,oo", False, (), False),  # Laplace location (kinks)
    ("Heaviside(x-a)*exp(-(x-a))", ("a",), "-oo,oo", False, (), False),  # shifted exponential
    ("p**x*(1-p)**(1-x)", ("p",), "0,1", True, (), True),  # Bernoulli
    ("Heaviside(x-a)*Heaviside(b-x)/(b-a)", ("a", "b"), "-oo,oo", False, (), True),  # uniform
])
def test_custom_densities_settled_by_the_literature(expr, params, support, discrete, positive,
                                                    expected):
    fam, v = custom(expr, params, support, discrete, positive)
    assert v.linearly_dependent is expected, v.reason
    if expected:
        assert v.certificate.verified
        ok, _ = verify_certificate(fam, v.certificate.members, v.certificate.coefficients,
                                   v.certificate.instance)
        assert ok


def test_independence_reasons_are_written_out():
    g = verdict("gaussian")
    assert "Teicher" in g.method and "sigma" in g.reason and "-> 0" in g.reason
    lap = verdict("laplace")
    assert "pole" in lap.reason and "b" in lap.reason
    assert "Teicher" in verdict("gamma").reason and "theta" in verdict("gamma").reason


def test_finite_support_reason_mentions_bounded_order():
    r = verdict("binomial").reason
    assert "arbitrary order" in r and "2k - 1" in r


def test_unknown_is_honest_under_a_tiny_budget():
    v = decide(get_family("gamma"), time_budget=0.01)
    assert v.linearly_dependent is None and v.identifiable is None and v.certificate is None
    assert "time budget" in v.reason
    assert v.numeric_evidence is not None and v.numeric_evidence["label"].startswith("numeric")


@pytest.mark.parametrize("expr,params,support,positive", [
    ("exp(-Abs(x-m)/b)/(2*b)", ("m", "b"), "-oo,oo", ("b",)),  # Laplace location-scale
    ("(k/l)*(x/l)**(k-1)*exp(-(x/l)**k)", ("k", "l"), "0,oo", ("k", "l")),  # Weibull
])
def test_hard_custom_input_is_not_called_dependent(expr, params, support, positive):
    _, v = custom(expr, params, support, False, positive)
    assert v.linearly_dependent is not True  # both are independent; unknown is acceptable


def test_contradiction_is_reported_as_unknown():
    fam = get_family("beta")
    cert = verdict("beta").certificate.to_dict()
    v = _verdict_for(fam, [("dep", "x", cert), ("ind", "y", "proof")], False, False)
    assert v.linearly_dependent is None and "CONTRADICTION" in v.reason


def test_in_process_mode_matches():
    v = decide(get_family("bernoulli"), time_budget=BUDGET, isolate=False)
    assert v == verdict("bernoulli")


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "soon"])
def test_bad_time_budget(bad):
    with pytest.raises(ValueError):
        decide(get_family("beta"), time_budget=bad)


def test_decide_rejects_non_family():
    with pytest.raises(ValueError):
        decide("beta")


def test_product_families():
    dep = decide(ProductFamily((get_family("gaussian"), get_family("beta"))), time_budget=BUDGET)
    assert dep.linearly_dependent is True and "lifted" in dep.method
    # check the lifted certificate directly: sum c_i prod_j f_j(x_j; theta_ij) == 0
    pf = ProductFamily((get_family("gaussian"), get_family("beta")))
    syms = {s.name: s for s in pf.expr.free_symbols}
    total = 0
    for m, c in zip(dep.certificate.members, dep.certificate.coefficients):
        sub = {syms[k]: sp.sympify(val, locals=syms) for k, val in m.items()}
        total += sp.sympify(c, locals=syms) * pf.expr.subs(sub, simultaneous=True)
    base = dep.certificate.members[0]
    f0 = pf.expr.subs({syms[k]: sp.sympify(val, locals=syms) for k, val in base.items()})
    ratio = sp.powsimp(sp.gammasimp(sp.expand_func(total / f0)))
    assert sp.simplify(ratio) == 0
    ind = decide(ProductFamily((get_family("gaussian"), get_family("exponential"))),
                 time_budget=BUDGET)
    assert ind.linearly_dependent is False and "tensor" in ind.reason.lower()


def test_numeric_screen_is_evidence_with_singular_values():
    s = numeric_screen(get_family("binomial"), n_members=10, random_state=1)
    assert s.numeric_rank <= 6  # pmfs on 6 points: rank at most 6
    sv = np.array(s.singular_values)
    assert np.all(np.diff(sv) <= 1e-12) and "not a proof" in s.label
    assert numeric_screen(get_family("bernoulli"), n_members=5).numeric_rank <= 2
    g1 = numeric_screen(get_family("gaussian"), random_state=7)
    assert g1 == numeric_screen(get_family("gaussian"), random_state=7)
    assert json.dumps(g1.to_dict())
    with pytest.raises(ValueError):
        numeric_screen(get_family("gaussian"), n_members=1)


REQUIRED = {"family", "linearly_dependent", "identifiable", "method", "certificate", "reason"}


def test_json_keys_and_round_trip():
    for name in ("beta", "gaussian"):
        d = verdict(name).to_dict()
        assert REQUIRED <= set(d)
        back = Verdict.from_dict(json.loads(json.dumps(d, allow_nan=False)))
        assert back == verdict(name)
    cert = verdict("beta").to_dict()["certificate"]
    assert {"members", "coefficients", "verified"} <= set(cert)
    assert all(isinstance(c, str) for c in cert["coefficients"])
    assert Certificate.from_dict(cert) == verdict("beta").certificate


def test_latex_contains_the_certificate_equation():
    tex = verdict("beta").to_latex()
    assert r"\begin{equation}" in tex and "= 0" in tex
    assert r"\frac{a}{a + b}" in tex and r"\frac{b}{a + b}" in tex and "a + 1" in tex
    assert r"\operatorname{B}" in tex  # the density itself
    assert "equation" not in verdict("gaussian").to_latex()


def test_text_rendering():
    t = verdict("uniform").to_text()
    assert "LINEARLY DEPENDENT" in t and "certificate:" in t and "f(x; a=1, b=2)" in t
    assert "LINEARLY INDEPENDENT" in verdict("poisson").to_text()


def test_cli_text_json_latex(capsys):
    assert cli.main(["identifiability", "--family", "bernoulli"]) == 0
    assert "LINEARLY DEPENDENT" in capsys.readouterr().out
    assert cli.main(["identifiability", "--density", "x**(a-1)*(1-x)**(b-1)/beta(a,b)",
                     "--var", "x", "--params", "a,b", "--support", "0,1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert REQUIRED <= set(d) and d["linearly_dependent"] is True and d["identifiable"] is False
    assert d["certificate"]["verified"] is True
    assert cli.main(["identifiability", "--density", "lam**x*exp(-lam)/factorial(x)",
                     "--params", "lam", "--positive", "lam", "--support", "0,oo", "--discrete",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["identifiable"] is True
    assert cli.main(["identifiability", "--family", "uniform", "--latex"]) == 0
    assert r"\begin{equation}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["--family", "weibull"],
    ["--density", "__import__('os').system('true')", "--params", "a", "--support", "0,1"],
    ["--density", "a*x"],
    ["--density", "a*x", "--params", "a"],
    ["--density", "a*x", "--params", "a", "--support", "1,0"],
    ["--family", "beta", "--support", "0,1"],
    ["--family", "beta", "--time-budget", "0"],
])
def test_cli_bad_input_is_one_line_exit_2(argv, capsys):
    assert cli.main(["identifiability", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("idfree-audit identifiability: error:")


def test_teicher_rejects_a_wrong_order_or_a_wrong_transform():
    import dataclasses

    from privacy_audit.identifiability.budget import Work
    from privacy_audit.identifiability.independence import prove_teicher

    fam = get_family("gaussian")
    tr = fam.transforms[0]
    far = Work(10**6)
    assert prove_teicher(fam, tr, far)[0]
    ok, why = prove_teicher(fam, dataclasses.replace(tr, order=(("sigma", "asc"), ("mu", "desc"))), far)
    assert not ok and "sigma" in why
    ok, why = prove_teicher(fam, dataclasses.replace(tr, order=(("sigma", "desc"),)), far)
    assert not ok
    ok, why = prove_teicher(fam, dataclasses.replace(tr, expr=tr.expr**2), far)
    assert not ok and "numerical check" in why


def test_exponential_family_prover_refuses_dependent_families():
    from privacy_audit.identifiability.budget import Work
    from privacy_audit.identifiability.independence import prove_exponential_family

    far = Work(10**6)
    for name in ("beta", "bernoulli", "binomial", "uniform"):
        assert not prove_exponential_family(get_family(name), far)[0]
    assert prove_exponential_family(get_family("poisson"), far)[0]
