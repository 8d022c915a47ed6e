"""Proofs of linear independence (hence identifiability of finite mixtures).

* **Teicher's transform-ordering criterion** (Teicher 1963, Theorem 2): let ``M: F -> phi_F`` be a
  linear one-to-one map (here the moment generating function, which determines the law when finite
  on an interval around 0) and let ``<`` be a total order on the family such that ``F1 < F2``
  implies (i) ``S(phi_1) subset S(phi_2)`` and (ii) ``lim_{t -> t1} phi_2(t) / phi_1(t) = 0`` for
  some ``t1`` in the closure of ``S(phi_1)``.  Then finite mixtures are identifiable.  The order is
  lexicographic over the parameters (data in the family); each level is checked with sympy limits
  (``t -> sup S(phi_1)`` via ``t = t1 - u`` or ``t = 1/u``, on the log-ratio), with a numeric
  sanity check of the limit.  The transform itself is checked against numerical ``E e^{tX}``.
* **Exponential polynomials with rational coefficients** (characteristic function
  ``phi(s) = exp(i mu s) R_theta(s)``): ``sum_j c_j e^{i mu_j s} R_j(s) = 0`` forces, for every
  distinct mu, ``sum c_j R_j = 0`` (exponential polynomials with distinct frequencies and
  rational coefficients are independent), and rational functions with pairwise disjoint pole sets
  are independent (look at a pole).  Covers Laplace location-scale.
* **Distinct kinks** for one-parameter families whose members are entire except for one kink at
  an injective location ``p(theta)`` (e.g. a fixed-scale Laplace location family entered raw).
* **Distinct exponential rates / generalised Vandermonde** for one-parameter exponential families
  ``f = A(theta) h(x) exp(eta(theta) T(x))``: distinct members have distinct ``eta``, and
  ``sum_j c_j e^{eta_j u} = 0`` on a set of u containing an interval (continuous, T non-constant)
  or an unbounded infinite set (discrete, infinite support, T a non-constant polynomial) forces
  ``c = 0``.

Every prover checks its preconditions against the density itself before it argues (a failed
precondition is a note, never a verdict): sampled members must pass the density screens of
support.py; the exponential-family argument needs ``h(x) != 0`` where it divides by it (shown
by sympy's assumptions on ``x = lo + k``, k a non-negative integer, for a pmf; numerically
non-zero at a point of continuity for a density) and, for a pmf, an effective support that is
unbounded above (``binomial(2, x) p**x (1-p)**(2-x)`` declared on ``0,oo`` lives on {0, 1, 2}
and is dependent).
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

from ..families import Family, Transform, check_transform
from .budget import Work
from .support import check_member, effective_support

__all__ = ["prove_teicher", "prove_cf_rational", "prove_exponential_family", "prove_kinks"]

_U = sp.Symbol("u", positive=True)


def members_are_densities(family: Family, work: Work) -> tuple[bool, str]:
    """Precondition shared by all provers: the family has members that are densities (the
    verdict concerns those; linear independence of a set passes to its subsets)."""
    from .support import density_points

    why = "no parameter point in the domain"
    for point in density_points(family):
        work.spend()
        ok, why = check_member(family, point)
        if ok:
            return True, ""
    return False, f"precondition failed: no sampled member is a density ({why})"


def _limit_is_zero(ratio: sp.Expr, t: sp.Symbol, t1: sp.Expr) -> tuple[bool, str]:
    """``lim_{t -> t1^-} ratio = 0`` by sympy (log-ratio after substitution, or directly)."""
    sub = ratio.subs(t, 1 / _U) if t1 == sp.oo else ratio.subs(t, t1 - _U)
    for attempt in ("log", "direct"):
        try:
            if attempt == "log":
                L = sp.expand(sp.expand_log(sp.log(sp.factor(sp.powsimp(sub))), force=True))
                lim = sp.limit(L, _U, 0, "+")
                if lim == -sp.oo:
                    return True, "log-ratio -> -oo"
            else:
                lim = sp.limit(sub, _U, 0, "+")
                if lim == 0:
                    return True, "ratio -> 0"
        except (RecursionError, NotImplementedError, ValueError, TypeError, AttributeError):
            continue
    return False, f"sympy could not show the limit is 0 (last result: {lim if 'lim' in dir() else '?'})"


def _numeric_limit_sanity(ratio: sp.Expr, t: sp.Symbol, t1: sp.Expr, rng) -> bool:
    """Evaluate the ratio near t1 at random positive/real parameter values: must shrink to ~0."""
    syms = sorted(ratio.free_symbols - {t}, key=lambda s: s.name)
    for _ in range(3):
        vals = {s: sp.Float(rng.uniform(0.3, 2.0) if s.is_positive else rng.uniform(-2, 2), 15)
                for s in syms}
        r = ratio.subs(vals)
        t1v = t1.subs(vals)
        seq = []
        with mpmath.workdps(30):
            for k in (2, 4, 8, 16):
                tv = sp.Float(10.0**k if t1v == sp.oo else 1.0, 30) if t1v == sp.oo \
                    else t1v - sp.Float(10.0**-k, 30)
                if t1v == sp.oo:
                    tv = sp.Float(2.0**k, 30)
                v = sp.N(r.subs(t, tv), 30)
                if not v.is_number:
                    return False
                seq.append(abs(complex(v)))
        if not (seq[-1] < 1e-3 or (seq[-1] < seq[0] * 1e-2)):
            return False
    return True


def prove_teicher(family: Family, tr: Transform, work: Work, random_state: int = 0):
    """Teicher (1963) Theorem 2 with the family's MGF and lexicographic order; (ok, text)."""
    if tr.kind != "mgf" or not tr.order:  # the MGF domain is the interval (tr.inf, tr.sup)
        return False, "no MGF with an order"
    names = [n for n, _ in tr.order]
    if sorted(names) != sorted(family.param_names):
        return False, "the order must rank every parameter exactly once"
    ok, why = members_are_densities(family, work)
    if not ok:
        return False, why
    work.spend()
    ok, note = check_transform(family, tr, random_state=random_state)
    if not ok:
        return False, f"the stated MGF failed its numerical check ({note})"
    rng = np.random.default_rng(random_state)
    t = tr.t
    delta = sp.Symbol("delta", positive=True)
    lines = [f"MGF phi(t) = {tr.expr} for {tr.inf} < t < {tr.sup} (checked numerically: {note})."]
    lines.append("Order: F1 < F2 iff, at the first differing parameter in ("
                 + ", ".join(f"{n} {'decreasing' if d == 'desc' else 'increasing'}"
                             for n, d in tr.order) + "), F1 comes first.")
    for j, (name, direction) in enumerate(tr.order):
        work.spend(5)  # simplifications and two limits
        P1, P2 = {}, {}
        for i, (nm, d) in enumerate(tr.order):
            p = family.symbol(nm)
            s1 = sp.Symbol(f"{nm}_1", **p.assumptions0)
            s2 = sp.Symbol(f"{nm}_2", **p.assumptions0)
            if i < j:
                P1[p] = P2[p] = s2
            elif i == j:
                if d == "desc":
                    P2[p], P1[p] = s2, s2 + delta
                else:
                    P1[p], P2[p] = s1, s1 + delta
            else:
                P1[p], P2[p] = s1, s2
        T1, T2 = tr.expr.subs(P1), tr.expr.subs(P2)
        sup1, sup2 = tr.sup.subs(P1), tr.sup.subs(P2)
        if sup1 != sp.oo and sp.simplify(sup1).is_positive is not True:
            return False, f"domain of the MGF does not contain (0, {sup1})"
        incl = (sup2 == sp.oo) if sup1 == sp.oo else (
            sup2 == sp.oo or sp.factor(sp.simplify(sup2 - sup1)).is_nonnegative is True)
        inf1, inf2 = tr.inf.subs(P1), tr.inf.subs(P2)
        if inf1 != -sp.oo and sp.simplify(inf1).is_negative is not True:
            return False, f"domain of the MGF does not contain ({inf1}, 0)"
        incl = incl and ((inf2 == -sp.oo) if inf1 == -sp.oo else (
            inf2 == -sp.oo or sp.factor(sp.simplify(inf1 - inf2)).is_nonnegative is True))
        if not incl:
            return False, (f"level {name}: could not show S(phi_1) = ({inf1}, {sup1}) is a subset "
                           f"of S(phi_2) = ({inf2}, {sup2})")
        ratio = sp.powsimp(T2 / T1)
        zero, how = _limit_is_zero(ratio, t, sup1)
        if not zero:
            lim = None
            try:
                lim = sp.limit(ratio.subs(t, 1 / _U) if sup1 == sp.oo else ratio.subs(t, sup1 - _U),
                               _U, 0, "+")
            except (RecursionError, NotImplementedError, ValueError, TypeError):
                pass
            return False, (f"level {name}: phi_2/phi_1 does not tend to 0 as t -> {sup1} "
                           f"(limit {lim}); Teicher's criterion does not apply with this order")
        if not _numeric_limit_sanity(ratio, t, sup1, rng):
            return False, f"level {name}: numeric sanity check of the limit failed"
        lines.append(f"Level {name}: F1 with {name} {'larger' if direction == 'desc' else 'smaller'}"
                     f" by delta > 0 (earlier parameters equal, later ones arbitrary): "
                     f"S(phi_1) = ({inf1}, {sup1}) is contained in S(phi_2) = ({inf2}, {sup2}) and "
                     f"phi_2/phi_1 = {ratio} -> 0 as t -> {sup1}^- (sympy limit, {how}).")
    lines.append("The MGF is finite on an open interval around 0, so it determines the law and "
                 "F -> phi is linear and one-to-one; by Teicher (1963, Theorem 2) finite mixtures "
                 "are identifiable, i.e. the family is linearly independent (Yakowitz and "
                 "Spragins 1968).")
    return True, " ".join(lines)


def prove_cf_rational(family: Family, tr: Transform, work: Work, random_state: int = 0):
    """cf = exp(i mu s) R_theta(s), R rational with pairwise disjoint pole sets; (ok, text)."""
    if tr.kind != "cf" or tr.location is None:
        return False, "no characteristic function with a location parameter"
    m = family.symbol(tr.location)
    s = tr.t
    R = sp.simplify(tr.expr * sp.exp(-sp.I * m * s))
    if m in R.free_symbols or not R.is_rational_function(s):
        return False, "cf is not exp(i mu s) times a rational function of s free of mu"
    rest = [p for p in family.params if p != m]
    if len(rest) != 1:
        return False, "pole argument implemented for exactly one non-location parameter"
    ok, why = members_are_densities(family, work)
    if not ok:
        return False, why
    work.spend()
    ok, note = check_transform(family, tr, random_state=random_state)
    if not ok:
        return False, f"the stated cf failed its numerical check ({note})"
    r = rest[0]
    z = sp.Symbol("z")  # complex: poles of a real rational function are usually complex
    den = sp.denom(sp.together(R)).subs(s, z)
    poles = sp.solve(den, z)
    if not poles:
        return False, "R has no poles"
    r1 = sp.Symbol(f"{r.name}_1", **r.assumptions0)
    r2 = sp.Symbol(f"{r.name}_2", **r.assumptions0)
    for p in poles:
        for q in poles:
            work.spend()
            sols = sp.solve(sp.Eq(p.subs(r, r1), q.subs(r, r2)), r2)
            if any(sp.simplify(v - r1) != 0 for v in sols):
                return False, f"poles {p} may coincide for distinct {r.name}"
    return True, (
        f"Characteristic function phi({s}) = {tr.expr} = exp(i {m} {s}) R({s}) with R = {R} rational "
        f"(checked numerically: {note}). If sum_j c_j phi_j(s) = 0 for distinct members, group the "
        f"terms by {m}: exponential polynomials with distinct frequencies and rational "
        f"coefficients are linearly independent, so for each {m} the rational functions satisfy "
        f"sum c_j R_j = 0. R has poles {s} in {poles}; for distinct {r.name} the pole sets are disjoint "
        f"(sympy solve), so near a pole of R_j every other term is analytic and c_j = 0. Hence the "
        "family is linearly independent and, by Yakowitz and Spragins (1968), finite mixtures are "
        "identifiable (the cf determines the law).")


def _kind(T: sp.Expr, x: sp.Symbol):
    """``x**k`` -> ("x", k); ``log(x)**k`` -> ("log", k); anything else -> None."""
    base, k = T.as_base_exp()
    if not (k.is_Integer and k >= 1):
        return None
    if base == x:
        return ("x", int(k))
    if base == sp.log(x):
        return ("log", int(k))
    return None


def prove_exponential_family(family: Family, work: Work):
    """Exponential family ``A(theta) h(x) exp(sum_j eta_j(theta) T_j(x))``; (ok, text).

    Allowed statistics: powers of x plus possibly ``log x`` (regime A) or powers of ``log x``
    only (regime B, ``u = log x``).  Distinct members then differ in their exponent by
    ``D(x) = c log x + Q(x)`` (or ``Q(log x)``) with D non-constant, so ``D -> +-oo`` as
    ``x -> oo`` and the members are totally ordered by growth: divide by the fastest-growing term
    and let x -> oo to get its coefficient 0, then induct.  A relation on the support interval
    extends to (0, oo) or R because the exponentials are real-analytic (identity theorem).
    """
    if family.expr.atoms(sp.Piecewise, sp.Heaviside, sp.Abs, sp.Min, sp.Max):
        return False, "not a smooth family"
    x, params = family.var, set(family.params)
    lo, hi = family.support
    positive_support = bool(lo >= 0)
    # force=True (log(u*v) = log u + log v) is valid where the factors are positive: only used
    # when the support lies in [0, oo); otherwise sympy's assumption-aware expansion is used.
    L = sp.expand(sp.expand_log(sp.log(family.expr), force=positive_support))
    eta: dict[sp.Expr, sp.Expr] = {}
    for term in sp.Add.make_args(L):
        if x not in term.free_symbols or not (term.free_symbols & params):
            continue  # log A(theta) or log h(x)
        xpart, thpart = term.as_independent(*params, as_Add=False)
        if thpart.free_symbols & {x} or xpart.free_symbols & params:
            return False, f"term {term} couples x and the parameters non-multiplicatively"
        num, T = xpart.as_coeff_Mul()
        eta[T] = eta.get(T, 0) + num * thpart
        work.spend()
    eta = {T: e for T, e in eta.items() if sp.simplify(e) != 0}
    if not eta:
        return False, "no parameter-dependent exponent: not an exponential family"
    kinds = {T: _kind(T, x) for T in eta}
    if any(k is None for k in kinds.values()):
        bad = [str(T) for T, k in kinds.items() if k is None]
        return False, f"statistics {bad} are not powers of x or of log x"
    logs = sorted(k[1] for k in kinds.values() if k[0] == "log")
    xs = sorted(k[1] for k in kinds.values() if k[0] == "x")
    if logs and not positive_support:
        return False, "log x statistic needs a support inside [0, oo)"
    ok, why = members_are_densities(family, work)
    if not ok:
        return False, why
    h = sp.exp(sp.Add(*[t for t in sp.Add.make_args(L)
                        if x in t.free_symbols and not (t.free_symbols & params)]))
    eff_lo, eff_hi, vanish = effective_support(family)
    if family.discrete:
        if eff_hi != sp.oo or logs:
            return False, ("precondition failed: needs a pmf whose effective support is unbounded "
                           "above and polynomial statistics"
                           + (f" ({vanish})" if vanish else "")
                           + "; a finite support only bounds the mixture order")
        k = sp.Symbol("k", integer=True, nonnegative=True)
        start = eff_lo if eff_lo.is_finite else sp.Integer(0)
        work.spend()
        if sp.simplify(h.subs(x, start + k)).is_positive is not True:
            return False, (f"precondition failed: could not show h({x}) = {h} > 0 at every integer "
                           f"{x} >= {start} (needed to divide by it as {x} -> oo)")
        regime = "x -> oo along the integers of the support"
    elif logs and xs and logs != [1]:
        return False, "mixes powers of log x with powers of x"
    elif not _nonzero_somewhere(h, x, lo, hi):
        return False, f"precondition failed: h({x}) = {h} was not shown non-zero on the support"
    else:
        regime = ("x -> oo after extending the relation from the support interval by analyticity"
                  if hi != sp.oo else "x -> oo")
    stats = ", ".join(f"{T} (eta = {e})" for T, e in eta.items())
    var = "log x" if logs and not xs else "x"
    return True, (
        f"log f = {L} is log A(theta) + log h(x) + sum_j eta_j(theta) T_j(x) with statistics "
        f"{stats}. Two members with equal exponents are proportional, hence the same "
        f"distribution; for distinct members the exponent difference D(x) is a non-constant "
        f"{'polynomial in log x' if var == 'log x' else 'combination c log x + Q(x), Q a polynomial'}"
        f", so D -> +oo or -oo as {regime}. The members are thus totally ordered by growth; in "
        "sum_i c_i f_i = 0 divide by the fastest-growing member: the others vanish in the limit, "
        "so its coefficient is 0, and induct (a generalised Vandermonde / Teicher-type tail "
        "argument). So the family is linearly independent and, by Yakowitz and Spragins (1968), "
        "finite mixtures are identifiable.")


def _nonzero_somewhere(h: sp.Expr, x: sp.Symbol, lo: sp.Expr, hi: sp.Expr) -> bool:
    """h finite and non-zero at a point of the support, hence (continuity of the whitelisted
    functions away from their poles) on an interval, where the relation can be divided by h."""
    mid = (lo + hi) / 2 if lo.is_finite and hi.is_finite else \
        lo + 1 if lo.is_finite else hi - 1 if hi.is_finite else sp.Integer(0)
    for xv in (mid, mid + sp.Rational(1, 7)):
        try:
            v = complex(sp.N(h.subs(x, xv), 20))
        except (TypeError, ValueError):
            continue
        if np.isfinite(v.real) and np.isfinite(v.imag) and abs(v) > 1e-12:
            return True
    return False


_ENTIRE = (sp.exp, sp.sin, sp.cos, sp.sinh, sp.cosh, sp.erf, sp.erfc)


def _entire_in(e: sp.Expr, x: sp.Symbol) -> bool:
    """Conservative syntactic test that ``e`` is an entire function of x."""
    if x not in e.free_symbols:
        return True
    if e == x:
        return True
    if isinstance(e, (sp.Add, sp.Mul)):
        return all(_entire_in(a, x) for a in e.args)
    if isinstance(e, sp.Pow):
        base, ex = e.args
        if x in ex.free_symbols:
            return x not in base.free_symbols and base.is_positive is True and _entire_in(ex, x)
        return ex.is_Integer and ex >= 0 and _entire_in(base, x)
    if isinstance(e, _ENTIRE):
        return _entire_in(e.args[0], x)
    return False


def prove_kinks(family: Family, work: Work):
    """Distinct singular points: each member is entire in x except for one kink at ``p(theta)``.

    If ``sum_j c_j f_j = 0`` and member i's kink ``p_i`` is not a kink of any other member, the
    others are analytic near ``p_i`` while f_i's left and right branches (entire functions)
    differ in some derivative at ``p_i``, so ``c_i = 0``.  Needs one parameter, one kink point
    per member, from ``Abs``/``Heaviside`` of arguments linear in x, and an injective ``p``.
    """
    if len(family.params) != 1 or family.discrete:
        return False, "kink argument implemented for one-parameter continuous families"
    ok, why = members_are_densities(family, work)
    if not ok:
        return False, why
    th, x, e = family.params[0], family.var, family.expr
    atoms = [a for a in e.atoms(sp.Abs, sp.Heaviside) if x in a.free_symbols]
    if not atoms or e.atoms(sp.Piecewise, sp.Min, sp.Max):
        return False, "no Abs/Heaviside kinks"
    if not _entire_in(e.xreplace({a: sp.Dummy() for a in atoms}), x):
        return False, "the expression is not entire in x away from its kinks"
    points, signs = set(), {}
    for a in atoms:
        arg = a.args[0]
        if not arg.is_polynomial(x) or sp.Poly(arg, x).degree() != 1:
            return False, f"kink argument {arg} is not linear in x"
        alpha, beta = sp.Poly(arg, x).all_coeffs()
        if alpha.is_positive is not True and alpha.is_negative is not True:
            return False, f"sign of the slope of {arg} is unknown"
        points.add(sp.simplify(-beta / alpha))
        signs[a] = 1 if alpha.is_positive else -1
    if len(points) != 1:
        return False, "members have several kink points"
    (p,) = points
    lo, hi = family.support
    inside = (lo == -sp.oo or (p - lo).is_positive) and (hi == sp.oo or (hi - p).is_positive)
    if not inside or th not in p.free_symbols:
        return False, f"kink {p} does not move with {th} inside the support"
    th1 = sp.Symbol(f"{th.name}_1", **th.assumptions0)
    th2 = sp.Symbol(f"{th.name}_2", **th.assumptions0)
    if any(sp.simplify(v - th1) != 0 for v in sp.solve(sp.Eq(p.subs(th, th1), p.subs(th, th2)), th2)):
        return False, f"the kink {p} is not injective in {th}"

    def side(s):
        return e.xreplace({a: (s * signs[a] * a.args[0] if isinstance(a, sp.Abs)
                               else sp.Integer(1 if s * signs[a] > 0 else 0)) for a in atoms})
    right, left = side(1), side(-1)
    if not (_entire_in(right, x) and _entire_in(left, x)):
        return False, "one-sided branches are not entire"
    for k in range(4):
        work.spend()
        jump = sp.simplify(sp.diff(right - left, x, k).subs(x, p))
        if jump.is_zero is False and jump.is_finite:
            return True, (
                f"Each member is entire in {x} except at its kink {x} = {p}, where the branches "
                f"{right} (right) and {left} (left) differ in derivative {k} by {jump} != 0. The "
                f"kink map {th} -> {p} is injective, so in sum_j c_j f_j = 0 every other member is "
                f"analytic near member i's kink while f_i is not: c_i = 0 for every i. So the "
                "family is linearly independent and, by Yakowitz and Spragins (1968), finite "
                "mixtures are identifiable.")
    return False, "no derivative jump could be shown at the kink"
