"""Systematic search for certificates of linear dependence, and their verification.

Three searches, all ending in the same verification (which is what makes a certificate a proof):

* *parameter shifts* (symbolic): members ``f(x; theta + s)`` for small integer shift vectors ``s``
  around a symbolic base ``theta``; each ratio ``g_s = f(x; theta + s) / f(x; theta)`` is
  simplified (``expand_func``, ``gammasimp``, ``powsimp``) and split into
  ``sum_k coeff_k(theta) phi_k(x)``; matching the coefficients of every ``phi_k`` gives a linear
  system ``M c = 0`` whose exact nullspace (over rational functions of theta) yields candidates.
  For Beta this finds ``Beta(a, b) = a/(a+b) Beta(a+1, b) + b/(a+b) Beta(a, b+1)``
  (from ``x + (1 - x) = 1``).
* *cells* (concrete): for piecewise / indicator densities at rational parameters, the support is
  cut at every breakpoint; on each open cell every member is one smooth branch, and coefficient
  matching runs cell by cell (e.g. ``U(0, 2) = (U(0, 1) + U(1, 2)) / 2`` almost everywhere).
* *finite support*: pmfs on ``m`` points live in ``R^m`` so any ``m + 1`` members are dependent;
  the exact nullspace of the ``m x (m + 1)`` matrix of pmf values is the certificate.  The
  points are those of the *effective* support (support.py): a declared ``0,oo`` whose pmf has a
  factor ``binomial(2, x)`` has the three points 0, 1, 2.

Verification: ``sum_i c_i f_i`` simplifies symbolically to 0 (on every cell, or at every support
point), every coefficient is nonzero, the members lie in the domain, and an independent
30-digit mpmath evaluation at several points agrees.  A perturbed coefficient fails it.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import sympy as sp

from ..families import Family
from .budget import Work
from .support import check_member, effective_points

__all__ = ["verify_certificate", "search_shifts", "search_cells", "search_finite_support",
           "is_zero", "valid_member"]

Point = Mapping[str, sp.Expr]


def _member(family: Family, point: Point) -> sp.Expr:
    return family.expr.subs({family.symbol(k): sp.sympify(v) for k, v in point.items()},
                            simultaneous=True)


def valid_member(family: Family, point: Point) -> bool:
    """In the domain and, for user families, a density by the screens of support.py."""
    if not family.in_domain(point):
        return False
    if family.builtin:
        return True
    return check_member(family, point)[0]


def _valid_base(family: Family) -> dict[str, sp.Expr] | None:
    if family.builtin:
        return family.base_point()
    vals = [sp.Integer(v) for v in (0, 1, 2, 3, -1)] + [sp.Rational(1, 2), sp.Rational(1, 3)]
    for combo in itertools.product(vals, repeat=len(family.params)):
        point = dict(zip(family.param_names, combo))
        if valid_member(family, point):
            return point
    return None


def _normal(e: sp.Expr) -> sp.Expr:
    e = sp.gammasimp(sp.expand_func(e))
    return sp.powsimp(e)


def is_zero(e: sp.Expr) -> bool:
    """Symbolic zero test by simplification (never by sampling)."""
    e = sp.sympify(e)
    if e == 0:
        return True
    e = _normal(e)
    if e == 0 or sp.cancel(sp.together(sp.expand(e))) == 0:
        return True
    return sp.simplify(e) == 0


def _split(g: sp.Expr, x: sp.Symbol) -> dict[sp.Expr, sp.Expr]:
    """``g = sum_k coeff_k * phi_k(x)``: coefficients free of x, grouped by x-dependent part."""
    g = sp.expand(sp.powsimp(g), power_exp=True, mul=True, multinomial=True)
    out: dict[sp.Expr, sp.Expr] = {}
    for term in sp.Add.make_args(g):
        coeff, phi = term.as_independent(x, as_Add=False)
        out[phi] = out.get(phi, 0) + coeff
    return out


def _find_relation(decomps: Sequence[Mapping[Any, sp.Expr]], work: Work, max_size: int = 5):
    """Smallest subset containing member 0 with a 1-dim nullspace and all-nonzero coefficients."""
    n = len(decomps)
    for size in range(2, min(max_size, n) + 1):
        for rest in itertools.combinations(range(1, n), size - 1):
            work.spend()
            idx = (0,) + rest
            keys = sorted({k for i in idx for k in decomps[i]}, key=sp.default_sort_key)
            if len(keys) >= size:  # more equations than unknowns can still have a nullspace
                pass
            M = sp.Matrix([[decomps[i].get(k, 0) for i in idx] for k in keys])
            null = M.nullspace(simplify=True)
            if len(null) != 1:
                continue
            v = [sp.factor(sp.cancel(e)) for e in null[0]]
            if any(e.is_zero or e == 0 for e in v):
                continue
            v = [sp.factor(sp.cancel(e / -v[0])) for e in v]
            return list(idx), v
    return None


def _in_domain_symbolic(family: Family, point: Point) -> bool:
    for name, v in point.items():
        iv = family.domain[name]
        v = sp.sympify(v)
        if iv == sp.Interval(-sp.oo, sp.oo):
            ok = v.is_real
        elif iv == sp.Interval.open(0, sp.oo):
            ok = v.is_positive
        else:
            ok = bool(iv.contains(v)) if v.is_number else None
        if ok is not True:
            return False
    return not family.constraints


def search_shifts(family: Family, work: Work):
    """Symbolic parameter-shift search; returns ``(members, coefficients)`` or None."""
    if any(family.expr.atoms(t) for t in (sp.Piecewise, sp.Heaviside)):
        return None
    shiftable = [p.name for p in family.params if family.domain[p.name].sup == sp.oo]
    if not shiftable:
        return None
    steps = (0, 1, 2) if len(shiftable) == 1 else (0, 1)
    base = {p.name: p for p in family.params}
    cands = []
    for s in itertools.product(steps, repeat=len(shiftable)):
        point = dict(base)
        for name, k in zip(shiftable, s):
            point[name] = base[name] + k
        cands.append(point)
    f0 = family.expr
    decomps = []
    for point in cands:
        work.spend()
        decomps.append(_split(_normal(_member(family, point) / f0), family.var))
    found = _find_relation(decomps, work)
    if found is None:
        return None
    idx, coeffs = found
    return [cands[i] for i in idx], coeffs


def _breakpoints(exprs: Sequence[sp.Expr], x: sp.Symbol) -> list[sp.Expr]:
    pts = set()
    for e in exprs:
        args = [r.lhs - r.rhs for r in e.atoms(sp.core.relational.Relational)]
        args += [h.args[0] for h in e.atoms(sp.Heaviside)] + [a.args[0] for a in e.atoms(sp.Abs)]
        for a in args:
            if x in a.free_symbols:
                # only polynomial conditions: then solve() returns every real root, so the
                # truth value of each condition is constant on each open cell
                if not a.is_polynomial(x):
                    raise ValueError(f"breakpoint condition {a} is not polynomial in {x}")
                for r in sp.solve(a, x):
                    if r.is_real and r.is_number:
                        pts.add(sp.nsimplify(r))
    return sorted(pts)


def _cells(exprs, x, support):
    lo, hi = support
    inner = [p for p in _breakpoints(exprs, x) if bool(lo < p) and bool(p < hi)]
    edges = [lo] + inner + [hi]
    cells = []
    for a, b in zip(edges[:-1], edges[1:]):
        if a.is_finite and b.is_finite:
            mid = (a + b) / 2
        elif a.is_finite:
            mid = a + 1
        elif b.is_finite:
            mid = b - 1
        else:
            mid = sp.Integer(0)
        cells.append((a, b, mid))
    return cells


def _branch(e: sp.Expr, x: sp.Symbol, mid: sp.Expr) -> sp.Expr:
    """The smooth expression that ``e`` equals on the open cell containing ``mid``."""
    e = sp.piecewise_fold(e.rewrite(sp.Piecewise))
    if isinstance(e, sp.Piecewise):
        for ex, cond in e.args:
            if bool(sp.sympify(cond).subs(x, mid)):
                return _branch(ex, x, mid)
        return sp.Integer(0)
    return e


def search_cells(family: Family, work: Work):
    """Concrete coefficient matching cell by cell at rational parameters near the base point."""
    if family.discrete:
        return None
    base = _valid_base(family)
    if base is None:
        return None
    names = family.param_names
    steps = (0, 1, 2) if len(names) == 1 else (0, 1)
    cands = []
    for s in itertools.product(steps, repeat=len(names)):
        point = {n: base[n] + k for n, k in zip(names, s)}
        work.spend()
        if valid_member(family, point):
            cands.append(point)
    if len(cands) < 2:
        return None
    exprs = [_member(family, p) for p in cands]
    cells = _cells(exprs, family.var, family.support)
    decomps = []
    for e in exprs:
        work.spend()
        d = {}
        for ci, (_, _, mid) in enumerate(cells):
            for phi, c in _split(_normal(_branch(e, family.var, mid)), family.var).items():
                d[(ci, phi)] = d.get((ci, phi), 0) + c
        decomps.append(d)
    found = _find_relation(decomps, work)
    if found is None:
        return None
    idx, coeffs = found
    return [cands[i] for i in idx], coeffs


def search_finite_support(family: Family, work: Work):
    """Any ``m + 1`` pmfs on ``m`` (effective) support points are dependent: exact nullspace."""
    pts, _ = effective_points(family)
    if pts is None:
        return None
    first = family.param_names[0]
    iv = family.domain[first]
    m = len(pts)
    if iv.inf.is_finite and iv.sup.is_finite:
        vals = [iv.inf + (iv.sup - iv.inf) * sp.Rational(j, m + 2) for j in range(1, m + 2)]
    else:  # unknown range: try points of (0, 1) (probabilities), then positive values
        vals = [sp.Rational(j, m + 2) for j in range(1, m + 2)] + \
            [1 + sp.Rational(j, 2) for j in range(0, m + 2)]
    cands = []
    base = _valid_base(family) if len(family.params) > 1 else {}
    if base is None:
        return None
    for v in vals:
        work.spend()
        point = dict(base, **{first: v})
        if valid_member(family, point):
            cands.append(point)
        if len(cands) == m + 1:
            break
    if len(cands) < m + 1:
        return None
    exprs = [_member(family, c) for c in cands]
    work.spend(len(pts))
    M = sp.Matrix([[e.subs(family.var, sp.Integer(k)) for e in exprs] for k in pts])
    null = M.nullspace()
    if not null:
        return None
    v = list(null[0])
    keep = [i for i, e in enumerate(v) if e != 0]
    if len(keep) < 2:
        return None
    first_c = v[keep[0]]
    return [cands[i] for i in keep], [sp.radsimp(v[i] / -first_c) for i in keep]


def _numeric_check(family: Family, exprs, coeffs, subs, n_points: int = 7) -> tuple[bool, str]:
    x = family.var
    S = sum(sp.sympify(c).subs(subs) * e.subs(subs) for c, e in zip(coeffs, exprs))
    scale_terms = [sp.sympify(c).subs(subs) * e.subs(subs) for c, e in zip(coeffs, exprs)]
    lo, hi = family.support
    if family.discrete:
        start = int(lo) if lo.is_finite else -3
        xs = list(range(start, start + n_points))
        if hi.is_finite:
            xs = [k for k in xs if k <= int(hi)]
    else:
        a = float(lo) if lo.is_finite else -3.0
        b = float(hi) if hi.is_finite else a + 6.0
        xs = [sp.Rational(a + (b - a) * (j + 0.37) / n_points).limit_denominator(10**6)
              for j in range(n_points)]
    worst = 0.0
    for xv in xs:
        val = abs(sp.N(S.subs(x, xv), 30))
        scale = sum(abs(sp.N(t.subs(x, xv), 30)) for t in scale_terms)
        if not (val.is_number and scale.is_number):
            return False, f"numeric check: not a number at {x}={xv}"
        rel = float(val / scale) if scale != 0 else float(val)
        worst = max(worst, rel)
    ok = worst < 1e-20
    return ok, f"30-digit evaluation at {len(xs)} points: max relative residual {worst:.1e}"


def _pairwise_distinct(family: Family, exprs, subs) -> tuple[bool, str]:
    """No two members proportional (i.e. the same distribution): f_i/f_j non-constant in x."""
    x = family.var
    lo, hi = family.support
    if family.discrete:
        start = int(lo) if lo.is_finite else 0
        xs = list(range(start, start + 8))
        if hi.is_finite:
            xs = [k for k in xs if k <= int(hi)]
    else:
        a = float(lo) if lo.is_finite else -3.0
        b = float(hi) if hi.is_finite else a + 6.0
        xs = [sp.Rational(a + (b - a) * (j + 0.41) / 8).limit_denominator(10**6) for j in range(8)]
    vals = [[sp.N(e.subs(subs).subs(x, xv), 30) for xv in xs] for e in exprs]
    for i in range(len(exprs)):
        for j in range(i + 1, len(exprs)):
            ratios = [complex(vi / vj) for vi, vj in zip(vals[i], vals[j]) if vj != 0 and vi != 0]
            zero_i = [v == 0 for v in vals[i]]
            zero_j = [v == 0 for v in vals[j]]
            if zero_i != zero_j:
                continue
            if len(ratios) >= 2 and max(abs(r - ratios[0]) for r in ratios) <= 1e-12 * abs(ratios[0]):
                return False, f"members {i + 1} and {j + 1} are proportional (the same distribution)"
    return True, "members pairwise distinct (ratios non-constant at 30 digits)"


def _exact(v: Any, symbols: Mapping[str, sp.Symbol], what: str) -> sp.Expr:
    """Exact value from a sympy object, a number or a string (parsed with the safe parser)."""
    from ..safe_parse import safe_parse

    if isinstance(v, sp.Basic):
        return v
    if isinstance(v, (int, float)):
        return sp.nsimplify(v)
    return safe_parse(str(v), symbols, what)


def verify_certificate(family: Family, members: Sequence[Point], coefficients: Sequence[Any],
                       instance: Point | None = None) -> tuple[bool, list[str]]:
    """Prove ``sum c_i f(x; members_i) == 0`` on the support; returns ``(ok, checks)``.

    Members, coefficients and the instance may be sympy objects or exact strings (as in a
    :class:`Certificate`); strings are parsed with the safe whitelist parser.
    """
    x = family.var
    names = {p.name: p for p in family.params}
    coeffs = [_exact(c, names, "coefficient") for c in coefficients]
    members = [{k: _exact(v, names, f"member value of {k}") for k, v in m.items()} for m in members]
    if instance is not None:
        instance = {k: _exact(v, {}, f"instance value of {k}") for k, v in instance.items()}
    if any(set(m) != set(names) for m in members):
        return False, [f"every member must give exactly the parameters {sorted(names)}"]
    if len(coeffs) != len(members) or len(coeffs) < 2:
        return False, ["need at least two members with one coefficient each"]
    exprs = [_member(family, m) for m in members]
    checks: list[str] = []
    subs = {family.symbol(k): sp.sympify(v) for k, v in (instance or {}).items()}
    concrete = all(sp.sympify(v).is_number for m in members for v in m.values())
    # domain and nonzero coefficients
    for m in members:
        ok = family.in_domain(m) if concrete else _in_domain_symbolic(family, m)
        if ok and concrete and not family.builtin:
            ok = valid_member(family, m)
        if not ok:
            return False, checks + [f"member {dict((k, str(v)) for k, v in m.items())} not shown "
                                    "to lie in the parameter domain"]
    for c in coeffs:
        if c.is_zero or (subs and sp.sympify(c).subs(subs).is_zero is not False):
            return False, checks + [f"coefficient {c} is (or may be) zero"]
    checks.append("members lie in the parameter domain; all coefficients nonzero")
    distinct, note = _pairwise_distinct(family, exprs, subs)
    if not distinct:
        return False, checks + [note]
    checks.append(note)
    S = sum(c * e for c, e in zip(coeffs, exprs))
    pts, vanish = effective_points(family)
    if pts is not None:
        sym = all(is_zero(S.subs(x, k)) for k in pts)
        checks.append(f"exact: the combination vanishes at each of the {len(pts)} points "
                      f"{pts[0]}..{pts[-1]} of the support"
                      + (f"; outside them every member is 0 because the parameter-free {vanish}"
                         if vanish else ""))
    elif S.atoms(sp.Piecewise, sp.Heaviside, sp.Abs) and concrete:
        cells = _cells(exprs, x, family.support)
        sym = all(is_zero(sum(c * _branch(e, x, mid) for c, e in zip(coeffs, exprs)))
                  for _, _, mid in cells)
        checks.append(f"symbolic: the combination simplifies to 0 on each of the {len(cells)} open "
                      "cells between breakpoints (so almost everywhere on the support)")
    else:
        sym = is_zero(S) or is_zero(S / exprs[0])
        checks.append("symbolic: sum_i c_i f_i simplifies to 0 identically in x"
                      + ("" if concrete else " and in the parameters"))
    if not sym:
        return False, checks[:-1] + ["symbolic simplification did not reach 0"]
    if not concrete and not subs:
        return False, checks + ["no instance given for the numeric cross-check"]
    ok, note = _numeric_check(family, exprs, coeffs, subs)
    checks.append(note)
    return ok, checks
