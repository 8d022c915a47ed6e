"""Symbolic parametric families (sympy) and the built-in registry.

A :class:`Family` is a density (or pmf) ``f(x; theta)`` as a sympy expression, its variable, its
parameters with their domain (one sympy ``Interval`` per parameter plus optional relational
constraints such as ``a < b``), its support and, where known, a transform (moment or probability
generating function, characteristic function) used by Teicher's (1963) ordering criterion.
Transforms given as data are *checked* numerically against ``E[exp(t X)]`` (quadrature/series)
by :func:`check_transform` before a proof relies on them.

User families come from :func:`family_from_density`, which parses a density string with
``sympy.parsing.sympy_parser.parse_expr`` only after an AST whitelist (names, numbers, arithmetic
and a fixed set of math functions; no attributes, subscripts, lambdas, strings or dunders), with
empty ``__builtins__``.  :class:`ProductFamily` models independent coordinates
``f(x_1..x_d) = prod_j f_j(x_j)`` of a multi-dimensional embedding.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import sympy as sp

from .safe_parse import SAFE_CONSTANTS, SAFE_FUNCTIONS, check_name, parse_support, safe_parse

__all__ = ["Family", "Transform", "ProductFamily", "BUILTIN", "get_family",
           "family_from_density", "parse_support", "check_transform", "SAFE_FUNCTIONS",
           "SAFE_CONSTANTS", "safe_parse"]

@dataclass(frozen=True)
class Transform:
    """An integral transform of the family, given as data and checked before use.

    ``kind``: "mgf" (``E e^{tX}`` on ``t < sup``), or "cf" (``E e^{itX}``, all real t).
    ``sup``/``inf``: ends of the MGF's domain of convergence (``oo``/``-oo`` or expressions in
    the params).
    ``order``: lexicographic total order for Teicher's criterion, ``((param, "desc"|"asc"), ...)``:
    F1 precedes F2 when, at the first differing parameter, F1's value is larger ("desc") or
    smaller ("asc").  ``location``: for a cf of the form ``exp(i s mu) R(s)``, the parameter mu.
    """

    kind: str
    t: sp.Symbol
    expr: sp.Expr
    sup: sp.Expr = sp.oo
    order: tuple[tuple[str, str], ...] = ()
    location: str | None = None
    inf: sp.Expr = -sp.oo


@dataclass(frozen=True)
class Family:
    """A parametric family ``{f(x; theta): theta in domain}`` of densities (or pmfs)."""

    name: str
    expr: sp.Expr
    var: sp.Symbol
    params: tuple[sp.Symbol, ...]
    domain: Mapping[str, sp.Interval]
    support: tuple[sp.Expr, sp.Expr]
    discrete: bool = False
    constraints: tuple[sp.Basic, ...] = ()
    transforms: tuple[Transform, ...] = ()
    builtin: bool = False
    normalized: bool = True
    description: str = ""
    references: tuple[str, ...] = field(default=())

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def symbol(self, name: str) -> sp.Symbol:
        for p in self.params:
            if p.name == name:
                return p
        raise ValueError(f"family {self.name}: unknown parameter {name!r} "
                         f"(valid: {', '.join(self.param_names)})")

    def in_domain(self, point: Mapping[str, Any]) -> bool:
        """Whether concrete parameter values lie in the stated domain and constraints."""
        subs = {}
        for p in self.params:
            if p.name not in point:
                return False
            v = sp.nsimplify(point[p.name]) if not isinstance(point[p.name], sp.Basic) \
                else point[p.name]
            if not bool(self.domain[p.name].contains(v)):
                return False
            subs[p] = v
        return all(bool(c.subs(subs)) for c in self.constraints)

    def density(self, **params: Any) -> sp.Expr:
        """The member ``f(x; params)`` as a sympy expression in ``self.var``."""
        missing = [n for n in self.param_names if n not in params]
        extra = [n for n in params if n not in self.param_names]
        if missing or extra:
            raise ValueError(f"family {self.name}: parameters must be exactly "
                             f"{', '.join(self.param_names)} (missing {missing}, unknown {extra})")
        values = {n: sp.nsimplify(v) if isinstance(v, (int, float)) else sp.sympify(v)
                  for n, v in params.items()}
        if all(v.is_number for v in values.values()) and not self.in_domain(values):
            raise ValueError(f"family {self.name}: parameters {params} are outside the domain")
        return self.expr.subs({self.symbol(n): v for n, v in values.items()}, simultaneous=True)

    def base_point(self) -> dict[str, sp.Expr]:
        """A simple rational point of the domain (used for concrete searches and examples)."""
        cands = [_nice_values(self.domain[n]) for n in self.param_names]
        for combo in itertools.product(*cands):
            point = dict(zip(self.param_names, combo))
            if self.in_domain(point):
                return point
        raise ValueError(f"family {self.name}: could not find a simple point in the domain")

    def members(self, n: int = 8, random_state: int | np.random.Generator | None = 0
                ) -> list[dict[str, float]]:
        """``n`` parameter points drawn from (a bounded part of) the domain, seeded."""
        if int(n) < 1:
            raise ValueError(f"members: n must be >= 1, got {n}")
        rng = random_state if isinstance(random_state, np.random.Generator) \
            else np.random.default_rng(random_state)
        out: list[dict[str, float]] = []
        for _ in range(1000 * int(n)):
            point = {}
            for name in self.param_names:
                lo, hi = _sampling_range(self.domain[name])
                point[name] = float(rng.uniform(lo, hi))
            if all(bool(c.subs({self.symbol(k): v for k, v in point.items()}))
                   for c in self.constraints):
                out.append(point)
                if len(out) == n:
                    return out
        raise ValueError(f"family {self.name}: could not sample {n} members of the domain")

    def lambdify(self):
        """Numeric density ``f(x, *params)`` (numpy/scipy), vectorised over x."""
        return sp.lambdify((self.var, *self.params), self.expr, modules=["scipy", "numpy"])

    def support_points(self, limit: int = 60) -> list[int] | None:
        """The integer support points of a discrete family with finite support (<= limit)."""
        lo, hi = self.support
        if not self.discrete or not (lo.is_finite and hi.is_finite):
            return None
        lo_i, hi_i = int(sp.ceiling(lo)), int(sp.floor(hi))
        if hi_i - lo_i + 1 > limit:
            return None
        return list(range(lo_i, hi_i + 1))

    def describe(self) -> str:
        dom = ", ".join(f"{n} in {self.domain[n]}" for n in self.param_names)
        cons = "".join(f", {c}" for c in self.constraints)
        kind = "pmf" if self.discrete else "density"
        return (f"{self.name}: {kind} f({self.var}; {', '.join(self.param_names)}) = {self.expr}"
                f" on [{self.support[0]}, {self.support[1]}]; {dom}{cons}")


@dataclass(frozen=True)
class ProductFamily:
    """Independent coordinates: ``f(x_1..x_d; theta_1..theta_d) = prod_j f_j(x_j; theta_j)``."""

    components: tuple[Family, ...]

    def __post_init__(self):
        comps = tuple(self.components)
        if not comps or not all(isinstance(c, Family) for c in comps):
            raise ValueError("ProductFamily: components must be a non-empty list of Family")
        object.__setattr__(self, "components", comps)

    @property
    def name(self) -> str:
        return "product(" + ", ".join(c.name for c in self.components) + ")"

    def coordinate(self, j: int, f: Family) -> tuple[sp.Expr, sp.Symbol, dict]:
        """Component j's density with its variable and parameters renamed with suffix ``_j``."""
        xj = sp.Symbol(f"{f.var.name}_{j + 1}", **f.var.assumptions0)
        ren = {p: sp.Symbol(f"{p.name}_{j + 1}", **p.assumptions0) for p in f.params}
        ren[f.var] = xj
        return f.expr.subs(ren, simultaneous=True), xj, ren

    @property
    def expr(self) -> sp.Expr:
        return sp.Mul(*[self.coordinate(j, f)[0] for j, f in enumerate(self.components)])


def _nice_values(interval: sp.Interval) -> list[sp.Expr]:
    cands = [sp.Integer(v) for v in (0, 1, 2, 3, -1)] + [sp.Rational(1, 2), sp.Rational(1, 3),
                                                          sp.Rational(2, 3), sp.Rational(1, 4)]
    good = [c for c in cands if bool(interval.contains(c))]
    return good or [interval.inf + 1 if interval.inf.is_finite else interval.sup - 1]


def _sampling_range(interval: sp.Interval) -> tuple[float, float]:
    lo, hi = interval.inf, interval.sup
    if lo.is_finite and hi.is_finite:
        w = float(hi - lo)
        return float(lo) + 0.05 * w, float(hi) - 0.05 * w
    if lo.is_finite:
        return float(lo) + 0.5, float(lo) + 4.0
    if hi.is_finite:
        return float(hi) - 4.0, float(hi) - 0.5
    return -2.0, 2.0


def _param_symbol(name: str, interval: sp.Interval) -> sp.Symbol:
    if interval.inf.is_finite and interval.inf >= 0 and interval.left_open or \
            (interval.inf.is_finite and interval.inf > 0):
        return sp.Symbol(name, positive=True)
    return sp.Symbol(name, real=True)


def _make(name, expr_fn, var, params, support, discrete=False, constraints=(), transforms=(),
          description="", references=()):
    """Build a built-in family; ``params`` maps name -> Interval; ``expr_fn(x, **symbols)``."""
    x = sp.Symbol(var, integer=True) if discrete else sp.Symbol(var, real=True)
    syms = {n: _param_symbol(n, iv) for n, iv in params.items()}
    expr = expr_fn(x, **syms)
    trans = tuple(tf(syms) for tf in transforms)
    cons = tuple(c(syms) for c in constraints)
    return Family(name=name, expr=expr, var=x, params=tuple(syms.values()), domain=dict(params),
                  support=(sp.sympify(support[0]), sp.sympify(support[1])), discrete=discrete,
                  constraints=cons, transforms=trans, builtin=True, description=description,
                  references=tuple(references))


_T = sp.Symbol("t", real=True)
_POS = sp.Interval.open(0, sp.oo)
_REAL = sp.Interval(-sp.oo, sp.oo)
_UNIT = sp.Interval.open(0, 1)


MAX_BINOMIAL_N = 100  # the finite-support certificate is an exact (n+1) x (n+2) nullspace


def binomial_family(n: int = 5) -> Family:
    """Binomial(n, p) with fixed n: pmfs on {0..n}, a space of dimension n + 1."""
    if isinstance(n, bool) or int(n) != n or not 1 <= n <= MAX_BINOMIAL_N:
        raise ValueError(f"binomial: n must be an integer between 1 and {MAX_BINOMIAL_N}, got {n}")
    n = int(n)
    return _make(
        "binomial" if n == 5 else f"binomial(n={n})",
        lambda x, p: sp.binomial(n, x) * p**x * (1 - p) ** (n - x), "x", {"p": _UNIT}, (0, n),
        discrete=True,
        transforms=(lambda s: Transform("mgf", _T, (1 - s["p"] + s["p"] * sp.exp(_T)) ** n),),
        description=f"Binomial with fixed n={n}", references=("Teicher 1961",))


BUILTIN: dict[str, Family] = {
    "beta": _make("beta", lambda x, a, b: x ** (a - 1) * (1 - x) ** (b - 1) / sp.beta(a, b),
                  "x", {"a": _POS, "b": _POS}, (0, 1), description="Beta(a, b) on (0, 1)"),
    "kumaraswamy": _make("kumaraswamy", lambda x, a, b: a * b * x ** (a - 1) * (1 - x**a) ** (b - 1),
                         "x", {"a": _POS, "b": _POS}, (0, 1),
                         description="Kumaraswamy(a, b) on (0, 1)", references=("Jones 2009",)),
    "gaussian": _make(
        "gaussian",
        lambda x, mu, sigma: sp.exp(-(x - mu) ** 2 / (2 * sigma**2)) / (sp.sqrt(2 * sp.pi) * sigma),
        "x", {"mu": _REAL, "sigma": _POS}, (-sp.oo, sp.oo),
        transforms=(lambda s: Transform("mgf", _T, sp.exp(s["mu"] * _T + s["sigma"] ** 2 * _T**2 / 2),
                                        sp.oo, (("sigma", "desc"), ("mu", "desc"))),),
        description="Gaussian location-scale N(mu, sigma^2)", references=("Teicher 1963",)),
    "gamma": _make(
        "gamma",
        lambda x, k, theta: x ** (k - 1) * sp.exp(-x / theta) / (sp.gamma(k) * theta**k),
        "x", {"k": _POS, "theta": _POS}, (0, sp.oo),
        transforms=(lambda s: Transform("mgf", _T, (1 - s["theta"] * _T) ** (-s["k"]),
                                        1 / s["theta"], (("theta", "desc"), ("k", "desc"))),),
        description="Gamma(shape k, scale theta)", references=("Teicher 1963",)),
    "exponential": _make(
        "exponential", lambda x, lam: lam * sp.exp(-lam * x), "x", {"lam": _POS}, (0, sp.oo),
        transforms=(lambda s: Transform("mgf", _T, s["lam"] / (s["lam"] - _T), s["lam"],
                                        (("lam", "asc"),)),),
        description="Exponential(rate lam)", references=("Teicher 1963",)),
    "laplace": _make(
        "laplace", lambda x, mu, b: sp.exp(-sp.Abs(x - mu) / b) / (2 * b), "x",
        {"mu": _REAL, "b": _POS}, (-sp.oo, sp.oo),
        transforms=(
            lambda s: Transform("mgf", _T, sp.exp(s["mu"] * _T) / (1 - s["b"] ** 2 * _T**2),
                                1 / s["b"], (("b", "desc"), ("mu", "desc")), inf=-1 / s["b"]),
            lambda s: Transform("cf", _T, sp.exp(sp.I * s["mu"] * _T) / (1 + s["b"] ** 2 * _T**2),
                                sp.oo, (), "mu")),
        description="Laplace location-scale (mu, b)"),
    "uniform": _make(
        "uniform",
        lambda x, a, b: sp.Piecewise((1 / (b - a), sp.And(x >= a, x <= b)), (0, True)),
        "x", {"a": _REAL, "b": _REAL}, (-sp.oo, sp.oo), constraints=(lambda s: s["a"] < s["b"],),
        description="Uniform(a, b), a < b"),
    "bernoulli": _make("bernoulli", lambda x, p: p**x * (1 - p) ** (1 - x), "x", {"p": _UNIT},
                       (0, 1), discrete=True, description="Bernoulli(p) on {0, 1}",
                       references=("Teicher 1961",)),
    "binomial": binomial_family(5),
    "poisson": _make(
        "poisson", lambda x, lam: lam**x * sp.exp(-lam) / sp.factorial(x), "x", {"lam": _POS},
        (0, sp.oo), discrete=True,
        transforms=(lambda s: Transform("mgf", _T, sp.exp(s["lam"] * (sp.exp(_T) - 1)), sp.oo,
                                        (("lam", "desc"),)),),
        description="Poisson(lam)", references=("Teicher 1960",)),
}


def get_family(name: str) -> Family:
    """A built-in family by name (case-insensitive); ``binomial(n=10)`` picks another fixed n."""
    key = str(name).strip().lower().replace(" ", "")[:100]
    if key in BUILTIN:
        return BUILTIN[key]
    if key.startswith("binomial(n=") and key.endswith(")") and key[11:-1].isdigit():
        if len(key[11:-1]) > 4:  # checked on the digits, before any conversion
            raise ValueError(f"binomial: n must be an integer between 1 and {MAX_BINOMIAL_N}")
        return binomial_family(int(key[11:-1]))
    raise ValueError(f"unknown family {name!r}; valid: {', '.join(sorted(BUILTIN))}, binomial(n=N)")


def family_from_density(expr: str, var: str, params: list[str] | tuple[str, ...],
                        support: str | tuple, discrete: bool = False, name: str | None = None,
                        positive: list[str] | tuple[str, ...] = (),
                        domain: Mapping[str, str | tuple] | None = None) -> Family:
    """A family from a density string, parsed safely (see module docstring).

    ``positive`` names parameters constrained to ``(0, oo)``; ``domain`` maps a parameter to a
    ``"LO,HI"`` open interval.  Other parameters range over the reals (the verdict then holds
    wherever the expression is a density).  Normalisation is irrelevant to linear dependence.
    """
    var = check_name(var, "var")
    if isinstance(params, str):
        params = [p for p in params.split(",") if p.strip()]
    names = [check_name(p, "params") for p in params]
    if var in names or len(set(names)) != len(names):
        raise ValueError("params: names must be distinct and differ from the variable")
    if not names:
        raise ValueError("params: at least one parameter is required")
    domain = dict(domain or {})
    for p in positive:
        if p not in names:
            raise ValueError(f"positive: {p!r} is not one of the parameters {names}")
        domain.setdefault(p, "0,oo")
    intervals = {}
    for n in names:
        if n in domain:
            lo, hi = parse_support(domain[n], f"domain of {n}")
            intervals[n] = sp.Interval.open(lo, hi)
        else:
            intervals[n] = _REAL
    lo, hi = parse_support(support)
    x = sp.Symbol(var, integer=True) if discrete else sp.Symbol(var, real=True)
    syms = {n: _param_symbol(n, intervals[n]) for n in names}
    density = safe_parse(expr, {var: x, **syms}, "density")
    if x not in density.free_symbols:
        raise ValueError(f"density: expression does not depend on the variable {var!r}")
    return Family(name=name or f"custom: {expr}", expr=density, var=x,
                  params=tuple(syms.values()), domain=intervals, support=(lo, hi),
                  discrete=bool(discrete), builtin=False, normalized=False,
                  description="user-defined density")


def _numeric_expectation(family: Family, weight, point: Mapping[str, Any]) -> complex:
    """``sum/integral of weight(x) f(x; point)`` over the support (mpmath quad / nsum)."""
    import mpmath

    member = family.expr.subs({family.symbol(k): sp.nsimplify(v) for k, v in point.items()})
    f = sp.lambdify(family.var, member, modules="mpmath")
    lo, hi = family.support
    with mpmath.workdps(18):
        g = lambda s: weight(s) * f(s)  # noqa: E731
        if family.discrete:
            return complex(mpmath.nsum(g, [int(lo), mpmath.inf if hi == sp.oo else int(hi)]))
        a = -mpmath.inf if lo == -sp.oo else mpmath.mpf(float(lo))
        b = mpmath.inf if hi == sp.oo else mpmath.mpf(float(hi))
        splits = {float(v) for v in point.values()} | {-4.0, -1.0, 0.0, 1.0, 4.0}
        pts = [a] + [mpmath.mpf(c) for c in sorted(splits) if a < c < b] + [b]
        return complex(mpmath.quad(g, pts))


def check_transform(family: Family, transform: Transform, n_points: int = 1,
                    random_state: int = 0, rtol: float = 1e-6) -> tuple[bool, str]:
    """Check a transform given as data against numerical ``E e^{tX}`` / ``E e^{itX}``."""
    import mpmath

    rng = np.random.default_rng(random_state)
    lines = []
    for point in family.members(n_points, rng):
        subs = {family.symbol(k): sp.nsimplify(round(v, 3)) for k, v in point.items()}
        exact_point = {k: sp.nsimplify(round(v, 3)) for k, v in point.items()}
        sup = transform.sup.subs(subs)
        for frac in (-0.5, 0.4):
            tv = frac if not sup.is_finite else frac * float(sup)
            closed = complex(sp.N(transform.expr.subs(subs).subs(transform.t, tv)))
            k = 1j if transform.kind == "cf" else 1
            num = _numeric_expectation(family, lambda s, tv=tv, k=k: mpmath.exp(k * tv * s),
                                       exact_point)
            ok = abs(num - closed) <= rtol * max(1.0, abs(closed))
            at = {k: str(v) for k, v in exact_point.items()}
            lines.append(f"t={tv:.3g} at {at}: closed form {closed.real:.8g}, "
                         f"numerical {num.real:.8g}")
            if not ok:
                return False, "; ".join(lines)
    return True, "; ".join(lines)
