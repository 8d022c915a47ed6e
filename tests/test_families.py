"""privacy_audit.families: registry, safe parsing of user densities, product families."""

import json

import pytest
import sympy as sp

from privacy_audit.families import (BUILTIN, Family, ProductFamily, Transform, check_transform,
                                    family_from_density, get_family, parse_support)

EXPECTED = {"beta", "gaussian", "gamma", "exponential", "laplace", "uniform", "bernoulli",
            "binomial", "poisson"}


def test_registry_has_every_required_family():
    assert EXPECTED <= set(BUILTIN)
    for name in EXPECTED:
        f = get_family(name.upper())
        assert isinstance(f, Family) and f.name == name and f.builtin


def test_unknown_family_is_one_line_listing_names():
    with pytest.raises(ValueError) as exc:
        get_family("weibull")
    msg = str(exc.value)
    assert "\n" not in msg and "weibull" in msg and all(n in msg for n in EXPECTED)


def test_binomial_with_other_fixed_n():
    f = get_family("binomial(n=3)")
    assert f.support_points() == [0, 1, 2, 3]
    assert get_family("binomial").support_points() == list(range(6))


def test_density_substitutes_and_checks_domain():
    f = get_family("beta")
    d = f.density(a=2, b=3)
    x = f.var
    assert sp.simplify(d - 12 * x * (1 - x) ** 2) == 0  # Beta(2,3) = x(1-x)^2 / B(2,3)
    with pytest.raises(ValueError, match="outside the domain"):
        f.density(a=-1, b=3)
    with pytest.raises(ValueError, match="parameters must be exactly"):
        f.density(a=1)
    with pytest.raises(ValueError, match="outside the domain"):
        get_family("uniform").density(a=2, b=1)


def test_members_are_seeded_and_in_domain():
    f = get_family("uniform")
    m1, m2 = f.members(20, random_state=3), f.members(20, random_state=3)
    assert m1 == m2 and m1 != f.members(20, random_state=4)
    assert all(m["a"] < m["b"] for m in m1)
    assert all(0 < m["p"] < 1 for m in get_family("bernoulli").members(10))
    with pytest.raises(ValueError):
        f.members(0)


def test_family_from_density_parses_beta():
    f = family_from_density("x**(a-1)*(1-x)**(b-1)/beta(a,b)", "x", ["a", "b"], "0,1",
                            positive=["a"])
    ref = get_family("beta")
    sub = {f.symbol("a"): sp.Integer(3), f.symbol("b"): sp.Rational(1, 2)}
    ref_sub = {ref.symbol("a"): sp.Integer(3), ref.symbol("b"): sp.Rational(1, 2)}
    xv = sp.Rational(1, 3)
    assert sp.simplify(f.expr.subs(sub).subs(f.var, xv) - ref.expr.subs(ref_sub).subs(ref.var, xv)) == 0
    assert f.symbol("a").is_positive and f.symbol("b").is_positive is None
    assert f.support == (0, 1) and not f.discrete and not f.builtin
    g = family_from_density("x^2*c", "x", "c", "0,1")  # ^ means power, params as a string
    assert g.expr == g.symbol("c") * g.var**2


MALICIOUS = [
    "__import__('os').system('touch {p}')",
    "x.__class__.__mro__[1].__subclasses__()",
    "(lambda: __import__('os').system('touch {p}'))()",
    "exec('open(\"{p}\", \"w\")')",
    "eval('1')",
    "getattr(x, '__class__')",
    "open('{p}', 'w')",
    "x[0]",
    "exp(x=1)",
    "'a' * 3",
    "[x, x]",
    "x if x else x",
    "Symbol('y')",
    "sympify('x')",
    "x; import os",
    "x" * 3000,
]


@pytest.mark.parametrize("template", MALICIOUS)
def test_malicious_expressions_rejected_without_executing(template, tmp_path):
    marker = tmp_path / "pwned"
    text = template.format(p=marker)
    with pytest.raises(ValueError) as exc:
        family_from_density(text, "x", ["a"], "0,1")
    assert "\n" not in str(exc.value)
    assert not marker.exists()


@pytest.mark.parametrize("kwargs", [
    dict(var="__class__"), dict(var="x", params=["x"]), dict(params=["lambda"]),
    dict(params=["exp"]), dict(params=["a", "a"]), dict(params=[]), dict(support="1,0"),
    dict(support="0"), dict(support="a,b"), dict(expr="a*2"), dict(positive=["q"]),
    dict(expr="x*y"),
])
def test_bad_family_arguments(kwargs):
    args = dict(expr="x*a", var="x", params=["a"], support="0,1")
    args.update(kwargs)
    with pytest.raises(ValueError) as exc:
        family_from_density(args.pop("expr"), args.pop("var"), args.pop("params"),
                            args.pop("support"), **args)
    assert "\n" not in str(exc.value)


def test_parse_support_forms():
    assert parse_support("0,1") == (0, 1)
    assert parse_support("-oo,oo") == (-sp.oo, sp.oo)
    assert parse_support(" 0 , oo ") == (0, sp.oo)
    assert parse_support("-pi,pi") == (-sp.pi, sp.pi)


def test_check_transform_catches_a_wrong_transform():
    f = get_family("gaussian")
    right = f.transforms[0]
    assert check_transform(f, right)[0]
    mu, sigma = f.symbol("mu"), f.symbol("sigma")
    wrong = Transform("mgf", right.t, sp.exp(mu * right.t + sigma**2 * right.t**2), sp.oo,
                      right.order)
    ok, note = check_transform(f, wrong)
    assert not ok and "closed form" in note


def test_product_family_expression_and_validation():
    pf = ProductFamily((get_family("beta"), get_family("gaussian")))
    assert pf.name == "product(beta, gaussian)"
    names = {s.name for s in pf.expr.free_symbols}
    assert names == {"x_1", "a_1", "b_1", "x_2", "mu_2", "sigma_2"}
    with pytest.raises(ValueError):
        ProductFamily(())
    with pytest.raises(ValueError):
        ProductFamily(("beta",))


def test_describe_is_json_friendly():
    for f in BUILTIN.values():
        text = json.loads(json.dumps(f.describe()))
        assert text.startswith(f.name) and str(f.var) in text
