"""Preconditions checked against the density itself: effective support and being a density.

* **Effective support of a pmf** (:func:`effective_support`).  A declared support such as
  ``0,oo`` can hide a finite one: ``binomial(2, x) p**x (1-p)**(2-x)`` vanishes for every integer
  ``x > 2``.  Parameter-free factors that provably vanish on integer half-lines are recognised
  structurally: ``binomial(n, s x + c)`` (zero for ``s x + c < 0`` or ``> n``, n a non-negative
  integer), ``1/factorial(s x + c)`` and ``1/gamma(s x + c)`` (the reciprocal Gamma function is
  zero at its poles ``0, -1, -2, ...``), each to a positive integer power, and
  ``Heaviside(s x + c)`` (zero for a negative argument), with integer ``s = +-1`` and ``c``.
  Each rule is also checked by exact evaluation at the first excluded points.
* **Being a density** (:func:`check_member`): at a concrete parameter point the member must be
  real, finite and non-negative (to 25 significant digits, relative to the largest value seen) at
  a grid of the support that reaches ``2**+-40`` towards infinite ends and finite endpoints, its
  integral / sum must be finite and positive (mpmath quadrature whose error estimate is below
  ``1e-6`` of the value; the mass between ``|x| = 2**20`` and ``2**40`` must be below ``1e-3``
  of the mass in between, that within ``2**-40`` of a finite end below ``1e-2``), and the tail
  indicator ``|x| f(x)`` at ``|x| = 2**40`` (or ``|x - c| f(x)`` at distance ``2**-40`` of a
  finite end ``c``) must be below ``1e-2`` times the mass: an integrable monotone tail has
  ``|x| f(x) -> 0``.  These are necessary-condition
  screens evaluated numerically; a member failing any of them is not used, and a family none
  of whose sampled members passes is refused.  Borderline densities (tails like ``x**-1.01``)
  are refused as "not shown normalisable" rather than accepted wrongly.
"""

from __future__ import annotations

from typing import Any, Mapping

import sympy as sp

__all__ = ["effective_support", "effective_points", "check_member", "density_points",
           "NOT_A_DENSITY"]

NOT_A_DENSITY = "not a density"
_CACHE: dict[tuple, tuple[bool, str]] = {}


def _linear(arg: sp.Expr, x: sp.Symbol) -> tuple[int, int] | None:
    """``arg = s*x + c`` with integer s in {-1, 1} and integer c, else None."""
    if not arg.is_polynomial(x):
        return None
    poly = sp.Poly(arg, x)
    if poly.degree() != 1:
        return None
    s, c = poly.all_coeffs()
    if s not in (1, -1) or not c.is_Integer:
        return None
    return int(s), int(c)


def _zero_set(factor: sp.Expr, x: sp.Symbol) -> tuple[str, int, int, str] | None:
    """A parameter-free factor's integer zero set as ``(s, c, kind)``: zero when ``s x + c``
    is < 0 (kind "neg"), or < 0 or > n (binomial), with a one-line reason."""
    base, ex = factor.as_base_exp()
    if isinstance(base, sp.binomial) and ex.is_Integer and ex > 0:
        n, k = base.args
        lin = _linear(k, x)
        if lin and n.is_Integer and n >= 0 and x not in n.free_symbols:
            return ("binomial", lin[0], lin[1], int(n))
    if isinstance(base, (sp.factorial, sp.gamma)) and ex.is_Integer and ex < 0:
        lin = _linear(base.args[0], x)
        if lin:
            shift = 0 if isinstance(base, sp.factorial) else -1  # gamma(t) has poles at t <= 0
            return ("recip", lin[0], lin[1] + shift, 0)
    if isinstance(base, sp.Heaviside) and ex.is_Integer and ex > 0:
        lin = _linear(base.args[0], x)
        if lin:
            return ("recip", lin[0], lin[1], 0)
    return None


def effective_support(family) -> tuple[sp.Expr, sp.Expr, str]:
    """``(lo, hi, note)``: the declared integer support cut to where the pmf can be non-zero.

    For continuous families (or when nothing is recognised) the declared support and an empty
    note.  ``note`` states the vanishing factors, so a certificate's check can cite it.
    """
    lo, hi = family.support
    if not family.discrete:
        return lo, hi, ""
    x = family.var
    params = set(family.params)
    notes = []
    for factor in sp.Mul.make_args(family.expr):
        if x not in factor.free_symbols or factor.free_symbols & params:
            continue
        zs = _zero_set(factor, x)
        if zs is None:
            continue
        kind, s, c, n = zs
        # the factor is non-zero only where 0 <= s x + c (<= n for binomial)
        lo_t, hi_t = (-c, sp.oo) if s == 1 else (-sp.oo, c)
        if kind == "binomial":
            lo_t, hi_t = (-c, n - c) if s == 1 else (c - n, c)
        new_lo = lo if (lo_t == -sp.oo or (lo.is_finite and lo >= lo_t)) else sp.Integer(lo_t)
        new_hi = hi if (hi_t == sp.oo or (hi.is_finite and hi <= hi_t)) else sp.Integer(hi_t)
        # cross-check the structural rule exactly at the first excluded integers
        probe = [k for k in ([int(new_hi) + j for j in (1, 2, 3)] if new_hi != hi else [])
                 + ([int(new_lo) - j for j in (1, 2, 3)] if new_lo != lo else [])]
        if any(sp.simplify(factor.subs(x, k)) != 0 for k in probe):
            continue
        if new_lo != lo or new_hi != hi:
            what = (f"binomial({n}, k) = 0 for integers k < 0 or k > {n}" if kind == "binomial"
                    else "1/Gamma and 1/factorial vanish at their poles" if factor.as_base_exp()[1] < 0
                    else "Heaviside(t) = 0 for t < 0")
            notes.append(f"factor {factor} vanishes for integer {x} outside [{new_lo}, {new_hi}] "
                         f"({what})")
        lo, hi = new_lo, new_hi
    if lo.is_finite and hi.is_finite and lo > hi:
        return lo, hi, "the pmf vanishes on the whole support"
    return lo, hi, "; ".join(notes)


def effective_points(family, limit: int = 60) -> tuple[list[int] | None, str]:
    """The integer points of a pmf's effective support when finite (at most ``limit``)."""
    lo, hi, note = effective_support(family)
    if not family.discrete or not (lo.is_finite and hi.is_finite):
        return None, note
    a, b = int(sp.ceiling(lo)), int(sp.floor(hi))
    if b - a + 1 > limit or b < a:
        return None, note
    return list(range(a, b + 1)), note


def density_points(family) -> list[dict]:
    """Simple rational points of the domain, then seeded random members (deterministic)."""
    import itertools

    from ..families import _nice_values

    grids = [_nice_values(family.domain[n])[:4] for n in family.param_names]
    nice = [dict(zip(family.param_names, c)) for c in itertools.product(*grids)]
    nice = [p for p in nice if family.in_domain(p)][:8]
    try:
        return nice + family.members(6, random_state=0)
    except ValueError:
        return nice


def _grid(family, lo, hi) -> list[sp.Expr]:
    """Support points reaching 2**+-40 towards infinite ends and finite endpoints."""
    if family.discrete:
        a = int(lo) if lo.is_finite else -15
        b = int(hi) if hi.is_finite else a + 40
        pts = list(range(a, min(b, a + 40) + 1))
        if not hi.is_finite:
            pts += [a + 2**k for k in (8, 16, 24, 32, 40)]
        if not lo.is_finite:
            pts += [-(2**k) for k in (8, 16, 24, 32, 40)]
        return [sp.Integer(p) for p in pts]
    out: list[sp.Expr] = []
    if lo.is_finite and hi.is_finite:
        w = hi - lo
        out += [lo + w * sp.Rational(j, 16) for j in range(1, 16)]
        out += [lo + w * sp.Integer(2) ** -k for k in (8, 20, 40)]
        out += [hi - w * sp.Integer(2) ** -k for k in (8, 20, 40)]
    elif lo.is_finite:
        out += [lo + sp.Integer(2) ** k for k in range(-40, 41, 4)]
    elif hi.is_finite:
        out += [hi - sp.Integer(2) ** k for k in range(-40, 41, 4)]
    else:
        out += [sp.Integer(0)] + [s * sp.Integer(2) ** k for k in range(-8, 41, 4) for s in (1, -1)]
    return out


def _tail_points(family, lo, hi) -> list[tuple[sp.Expr, sp.Expr]]:
    """``(x, weight)`` with weight = |x| or |x - c| for the tail-mass indicator."""
    far, near = sp.Integer(2) ** 40, sp.Integer(2) ** -40
    out = []
    if hi == sp.oo:
        out.append((far, far))
    if lo == -sp.oo:
        out.append((-far, far))
    if not family.discrete:
        if lo.is_finite:
            out.append((lo + near, near))
        if hi.is_finite:
            out.append((hi - near, near))
    return out


def check_member(family, point: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the member at ``point`` passes the density screens of the module docstring."""
    import mpmath

    subs = {family.symbol(k): (v if isinstance(v, sp.Basic) else sp.Rational(str(round(float(v), 6))))
            for k, v in point.items()}
    key = (family.name, str(family.expr), family.support, tuple(sorted((str(k), str(v)) for k, v in subs.items())))
    if key in _CACHE:
        return _CACHE[key]
    member = family.expr.subs(subs, simultaneous=True)
    lo, hi, _ = effective_support(family)
    at = {k.name: str(v) for k, v in subs.items()}
    result = (True, "")
    try:
        f = sp.lambdify(family.var, member, modules="mpmath")
        with mpmath.workdps(25):
            vals = []
            for xv in _grid(family, lo, hi):
                v = mpmath.mpmathify(f(mpmath.mpf(xv)))
                vals.append((xv, v))
            big = max((abs(v) for _, v in vals if mpmath.isfinite(v)), default=mpmath.mpf(0))
            for xv, v in vals:
                if not mpmath.isfinite(v):
                    result = (False, f"not finite at {family.var}={xv} ({at})")
                    break
                if abs(mpmath.im(v)) > 1e-20 * max(big, 1e-300):
                    result = (False, f"not real at {family.var}={xv} ({at})")
                    break
                if mpmath.re(v) < -1e-20 * big:
                    result = (False, f"negative at {family.var}={xv} ({at})")
                    break
            if result[0]:
                result = _mass_check(family, f, lo, hi, point, at)
    except Exception as exc:  # noqa: BLE001 - any failure to evaluate means "not shown valid"
        result = (False, f"could not be evaluated ({type(exc).__name__}) at {at}")
    _CACHE[key] = result
    return result


def _mass_check(family, f, lo, hi, point, at) -> tuple[bool, str]:
    import mpmath

    if family.discrete:
        if lo.is_finite and hi.is_finite:
            mass = mpmath.fsum(mpmath.re(f(k)) for k in range(int(lo), int(hi) + 1))
            err = 0
        else:
            a = int(lo) if lo.is_finite else -mpmath.inf
            b = int(hi) if hi.is_finite else mpmath.inf
            mass, err = mpmath.nsum(lambda k: mpmath.re(f(k)), [a, b]), 0  # tails: checked below
    else:
        far, near = mpmath.mpf(2) ** 20, mpmath.mpf(2) ** -40
        a = -far if lo == -sp.oo else mpmath.mpf(lo) + near
        b = far if hi == sp.oo else mpmath.mpf(hi) - near
        splits = sorted({float(v) for v in point.values()} | {-4.0, -1.0, 0.0, 1.0, 4.0})
        pts = [a] + [mpmath.mpf(c) for c in splits if a < c < b] + [b]
        mass, err = mpmath.quad(lambda s: mpmath.re(f(s)), pts, error=True)
        ends = [((far, far**2), 1e-3, "|x| = 2**20 and 2**40") if hi == sp.oo else
                ((b, b + near), 1e-2, "2**-40 of the upper end"),
                ((-far**2, -far), 1e-3, "|x| = 2**20 and 2**40") if lo == -sp.oo else
                ((a - near, a), 1e-2, "2**-40 of the lower end")]
        for (t0, t1), tol, where in ends:  # the mass at the ends must be negligible
            tm, te = mpmath.quad(lambda s: mpmath.re(f(s)), [t0, t1], error=True)
            if not (mpmath.isfinite(tm) and abs(tm) <= tol * abs(mass)):
                return False, (f"not shown normalisable: mass {mpmath.nstr(tm, 3)} within "
                               f"{where} against {mpmath.nstr(mass, 3)} elsewhere ({at})")
            err += te
    if not (mpmath.isfinite(mass) and mass > 0):
        return False, f"total mass {mpmath.nstr(mass, 5)} is not finite and positive ({at})"
    if not err <= 1e-6 * mass:
        return False, f"not shown normalisable: integral {mpmath.nstr(mass, 5)} +- {mpmath.nstr(err, 3)} ({at})"
    for xv, w in _tail_points(family, lo, hi):
        v = abs(f(mpmath.mpf(xv)))
        if not (mpmath.isfinite(v) and w * v <= 1e-2 * mass):
            return False, (f"not shown normalisable: |{family.var}| f({family.var}) does not vanish "
                           f"towards the end of the support ({at})")
    return True, ""
