"""``decide(family)``: dependence certificate, independence proof, or an honest "unknown".

By Yakowitz and Spragins (1968) finite mixtures of a family are identifiable iff the family is
linearly independent.  The decision runs every certificate search (dependence.py) and every
independence prover (independence.py) in a forked worker process.  The work is counted in units
(budget.py: candidates, nullspaces, limits, density checks), so the verdict is a function of the
input and ``work_budget`` only, the same on an idle and on a loaded machine.  The wall clock
(``time_budget``) is a safety kill of the worker (sympy can hang inside one step): a killed
worker always gives "unknown", never a different definite verdict.
A user density is first checked to be a density (support.py: real, non-negative, normalisable
at sampled parameter points); a family none of whose sampled members passes is refused.
A verdict is "dependent" only with a verified certificate, "independent" only with a completed
proof; if both were ever found the verdict is "unknown" with the contradiction reported.
For a product family (independent coordinates) a component certificate lifts by multiplying with
a fixed member of the other coordinates, and tensor products of linearly independent sets are
linearly independent (if ``sum c_ij f_i(x) g_j(y) = 0`` then for each y
``sum_i (sum_j c_ij g_j(y)) f_i = 0``, so ``sum_j c_ij g_j = 0`` and ``c = 0``).
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from typing import Any

import sympy as sp

from ..families import Family, ProductFamily
from .budget import DEFAULT_WORK, BudgetExhausted, Work
from .dependence import (search_cells, search_finite_support, search_shifts, valid_member,
                         verify_certificate)
from .independence import (prove_cf_rational, prove_exponential_family, prove_kinks,
                           prove_teicher)
from .screen import numeric_screen
from .support import NOT_A_DENSITY, check_member, density_points, effective_points
from .verdict import Certificate, Verdict

__all__ = ["decide"]

YS = ("By Yakowitz and Spragins (1968), finite mixtures of a family are identifiable iff the "
      "family is linearly independent over the reals.")


def _instance(family: Family, members, coeffs):
    """A concrete parameter point where all members are valid and all coefficients nonzero."""
    names = family.param_names
    grid = [sp.Integer(2), sp.Integer(3), sp.Rational(5, 2), sp.Rational(1, 2), sp.Integer(1),
            sp.Rational(1, 3), sp.Integer(0), sp.Integer(-1)]
    import itertools

    for combo in itertools.product(grid, repeat=len(names)):
        point = dict(zip(names, combo))
        subs = {family.symbol(n): v for n, v in point.items()}
        concrete = [{k: sp.sympify(v).subs(subs) for k, v in m.items()} for m in members]
        cvals = [sp.sympify(c).subs(subs) for c in coeffs]
        if any(not c.is_finite or c.is_zero is not False for c in cvals):
            continue
        if all(valid_member(family, m) for m in concrete):
            return point
    return None


def _certificate(family: Family, found) -> dict | None:
    members, coeffs = found
    symbolic = not all(sp.sympify(v).is_number for m in members for v in m.values())
    instance = _instance(family, members, coeffs) if symbolic else None
    if symbolic and instance is None:
        return None
    ok, checks = verify_certificate(family, members, coeffs, instance)
    return Certificate(members=tuple({k: str(v) for k, v in m.items()} for m in members),
                       coefficients=tuple(str(c) for c in coeffs), verified=ok, symbolic=symbolic,
                       instance=None if instance is None else {k: str(v) for k, v in instance.items()},
                       checks=tuple(checks)).to_dict()


def _check_density(family: Family, work: Work):
    """("refuse", text) when no sampled member is a density, else a note (or None)."""
    if family.builtin:
        return None
    bad = []
    points = density_points(family)
    for point in points:
        work.spend()
        ok, why = check_member(family, point)
        if ok:
            return ("note", "precondition: density", "the expression is a density at "
                    f"{ {k: str(v) for k, v in point.items()} }" + (
                        f"; not at every sampled point ({bad[0]}): the verdict concerns the "
                        "parameter values where it is a density" if bad else ""))
        bad.append(why)
    return ("refuse", f"density: {family.expr} is {NOT_A_DENSITY} at any of the {len(points)} "
            f"sampled parameter points (e.g. {bad[0] if bad else 'no point in the domain'}); "
            "it must be real, non-negative and normalisable on the support")


def _steps(family: Family):
    yield "dependence: finite support", lambda d: ("dep", _cert_or_none(family, search_finite_support, d))
    yield "dependence: parameter shifts", lambda d: ("dep", _cert_or_none(family, search_shifts, d))
    yield "dependence: cells", lambda d: ("dep", _cert_or_none(family, search_cells, d))
    for tr in sorted(family.transforms, key=lambda tr: tr.kind != "cf"):  # cheap pole test first
        if tr.kind == "mgf":
            yield "independence: Teicher MGF ordering", lambda d, tr=tr: ("ind", prove_teicher(family, tr, d))
        elif tr.kind == "cf":
            yield "independence: cf poles", lambda d, tr=tr: ("ind", prove_cf_rational(family, tr, d))
    yield "independence: exponential family", lambda d: ("ind", prove_exponential_family(family, d))
    yield "independence: distinct kinks", lambda d: ("ind", prove_kinks(family, d))


def _cert_or_none(family, search, deadline):
    found = search(family, deadline)
    return None if found is None else _certificate(family, found)


def _run_steps(family: Family, work_budget: int, send) -> None:
    work = Work(work_budget)
    try:
        pre = _check_density(family, work)
    except BudgetExhausted as exc:
        pre = ("refuse", f"density: could not be checked to be a density ({exc})")
    if pre is not None:
        send(pre)
        if pre[0] == "refuse":
            send(("done",))
            return
    done = set()  # one success per kind suffices; the other kind still runs as a cross-check
    for name, step in _steps(family):
        kind_of_step = "dep" if name.startswith("dependence") else "ind"
        if kind_of_step in done:
            continue
        try:
            kind, out = step(work)
        except BudgetExhausted as exc:
            send(("note", name, f"stopped: {exc}"))
            send(("budget",))
            break
        except Exception as exc:  # a failed method is an attempt, never a verdict
            send(("note", name, f"failed: {type(exc).__name__}: {str(exc)[:200]}"))
            continue
        if kind == "dep":
            if out is not None and out["verified"]:
                send(("dep", name, out))
                done.add("dep")
            else:
                send(("note", name, "no verified certificate found" if out is None
                      else "candidate failed verification: " + "; ".join(out["checks"])))
        else:
            ok, text = out
            send(("ind", name, text) if ok else ("note", name, text))
            if ok:
                done.add("ind")
    send(("done",))


def _worker(family, work_budget, conn):
    try:
        _run_steps(family, work_budget, conn.send)
    except BaseException:  # pragma: no cover - reported to the parent
        conn.send(("note", "worker", traceback.format_exc(limit=2)))
        conn.send(("done",))
    finally:
        conn.close()


def _collect(family: Family, time_budget: float, isolate: bool, work_budget: int
             ) -> tuple[list, bool]:
    """Messages of the worker and whether the safety time limit killed it."""
    msgs: list = []
    use_fork = isolate and "fork" in mp.get_all_start_methods() and \
        not mp.current_process().daemon
    if not use_fork:  # no safety kill without fork: the work budget alone bounds the search
        _run_steps(family, work_budget, msgs.append)
        return [m for m in msgs if m[0] != "done"], False
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(family, work_budget, send), daemon=True)
    proc.start()
    send.close()
    deadline = time.monotonic() + time_budget
    finished = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not recv.poll(left):
                break
            try:
                msg = recv.recv()
            except EOFError:
                break
            if msg[0] == "done":
                finished = True
                break
            msgs.append(msg)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        recv.close()
    return msgs, not finished


def _finite_support_note(family: Family) -> str:
    pts, _ = effective_points(family)
    if pts is None:
        return ""
    return (f" The support has {len(pts)} points, so all pmfs lie in a {len(pts)}-dimensional "
            f"space and any {len(pts) + 1} members are linearly dependent: finite mixtures of "
            "arbitrary order are not identifiable, while mixtures of bounded order may be (e.g. "
            "k-component mixtures of Binomial(n, p) are identifiable iff n >= 2k - 1, "
            "Teicher 1961).")


def _mixture_note(family: Family, cert: Certificate) -> str:
    """Two different mixing distributions with the same mixture, read off the certificate."""
    from ..safe_parse import safe_parse

    syms = {p.name: p for p in family.params}
    point = {family.symbol(k): safe_parse(v, {}, "instance") for k, v in (cert.instance or {}).items()}
    cs = [safe_parse(c, syms, "coefficient").subs(point) for c in cert.coefficients]
    if not family.normalized or not all(c.is_real for c in cs) or sp.simplify(sum(cs)) != 0:
        return ""
    tot = sum(c for c in cs if c > 0)

    def mix(sign):
        terms = []
        for c, m in zip(cs, cert.members):
            if sign * c > 0:
                args = ", ".join(f"{k}={safe_parse(v, syms, 'member').subs(point)}"
                                 for k, v in m.items())
                terms.append(f"{sp.nsimplify(sign * c / tot)}*f({args})")
        return " + ".join(terms)
    return (f" Concretely, the mixtures {mix(1)} and {mix(-1)} are the same distribution with "
            "different mixing weights.")


def _verdict_for(family: Family, msgs: list, timed_out: bool, screen: bool) -> Verdict:
    refusals = [m for m in msgs if m[0] == "refuse"]
    if refusals:
        raise ValueError(refusals[0][1])
    notes = [f"{m[1]}: {m[2]}" for m in msgs if m[0] == "note"]
    # a worker killed by the safety time limit gives "unknown" whatever it had found so far
    deps = [] if timed_out else [m for m in msgs if m[0] == "dep"]
    inds = [] if timed_out else [m for m in msgs if m[0] == "ind"]
    common = dict(family=family.name, density=str(family.expr), variable=family.var.name,
                  density_latex=sp.latex(family.expr))
    if deps and inds:
        return Verdict(linearly_dependent=None, identifiable=None, method="contradiction",
                       certificate=None, numeric_evidence=_screen(family),
                       reason="INTERNAL CONTRADICTION: both a certificate and an independence "
                              "proof were found; reporting unknown. Please file a bug. "
                              + " | ".join(m[1] for m in deps + inds), **common)
    if deps:
        cert = Certificate.from_dict(deps[0][2])
        scope = ("for all parameter values in the domain (symbolic certificate; instance "
                 f"{cert.instance} checked numerically)") if cert.symbolic else "at exact parameter values"
        reason = (f"{YS} Found a certificate of linear dependence, {scope}: "
                  f"{cert.equation_text(family.var.name)}. Checks: {'; '.join(cert.checks)}."
                  + _mixture_note(family, cert) + _finite_support_note(family))
        return Verdict(linearly_dependent=True, identifiable=False, method=deps[0][1],
                       certificate=cert, reason=reason,
                       numeric_evidence=_screen(family) if screen else None, **common)
    if inds:
        return Verdict(linearly_dependent=False, identifiable=True, method=inds[0][1],
                       certificate=None, reason=f"{YS} {inds[0][2]}",
                       numeric_evidence=_screen(family) if screen else None, **common)
    why = ("safety time limit (time budget) reached, the worker was killed; " if timed_out
           else "work budget exhausted; " if any(m[0] == "budget" for m in msgs) else "")
    return Verdict(linearly_dependent=None, identifiable=None, method="none",
                   certificate=None, numeric_evidence=_screen(family),
                   reason=(f"{YS} Neither a verified certificate of dependence nor a proof of "
                           f"independence was found ({why}attempts: " + " | ".join(notes) + ")."
                           + _finite_support_note(family)), **common)


def _screen(family: Family) -> dict[str, Any] | None:
    try:
        return numeric_screen(family).to_dict()
    except (ValueError, ArithmeticError, TypeError):
        return None


def _renamer(comp: Family, j: int):
    """Map an exact string over ``comp``'s parameters to the product's names (suffix ``_j``)."""
    from ..safe_parse import safe_parse

    syms = {p.name: p for p in comp.params}
    ren = {p: sp.Symbol(f"{p.name}_{j + 1}", **p.assumptions0) for p in comp.params}
    return lambda text: str(safe_parse(text, syms, "certificate").subs(ren, simultaneous=True))


def _decide_product(fam: ProductFamily, time_budget: float, isolate: bool, screen: bool,
                    work_budget: int) -> Verdict:
    parts = [decide(c, time_budget, isolate=isolate, screen=False, work_budget=work_budget)
             for c in fam.components]
    expr_latex = sp.latex(fam.expr)
    common = dict(family=fam.name, density=str(fam.expr), variable=",".join(
        fam.coordinate(j, c)[1].name for j, c in enumerate(fam.components)),
        density_latex=expr_latex)
    for j, (comp, v) in enumerate(zip(fam.components, parts)):
        if v.linearly_dependent and v.certificate is not None and v.certificate.verified:
            others = {}
            for k, other in enumerate(fam.components):
                if k != j:
                    others.update({f"{n}_{k + 1}": str(val) for n, val in other.base_point().items()})
            ren = _renamer(comp, j)
            members = tuple({**{f"{n}_{j + 1}": ren(val) for n, val in m.items()}, **others}
                            for m in v.certificate.members)
            cert = Certificate(members=members,
                               coefficients=tuple(ren(c) for c in v.certificate.coefficients),
                               verified=True, symbolic=v.certificate.symbolic,
                               instance=None if v.certificate.instance is None else
                               {f"{n}_{j + 1}": val for n, val in v.certificate.instance.items()},
                               checks=v.certificate.checks + (
                                   f"lifted: sum_i c_i f_{j + 1}(x_{j + 1}; theta_i) prod_(k != {j + 1}) "
                                   "f_k(x_k; theta_k^0) factorises and its first factor is 0",))
            return Verdict(linearly_dependent=True, identifiable=False,
                           method=f"product: lifted from coordinate {j + 1} ({v.method})",
                           certificate=cert, reason=(
                               f"{YS} Coordinate {j + 1} ({comp.name}) is linearly dependent: "
                               f"{v.certificate.equation_text(comp.var.name)}. Multiplying this "
                               "identity by a fixed member of the other coordinates gives a "
                               "certificate for the product family."), **common)
    if all(v.linearly_dependent is False for v in parts):
        return Verdict(linearly_dependent=False, identifiable=True,
                       method="product: tensor product of independent families", certificate=None,
                       reason=(f"{YS} Every coordinate family is linearly independent ("
                               + "; ".join(f"{c.name}: {v.method}" for c, v in zip(fam.components, parts))
                               + "). Tensor products of linearly independent sets are linearly "
                               "independent: if sum c_ij f_i(x) g_j(y) = 0 then for every y "
                               "sum_j c_ij g_j(y) = 0 for all i, hence c = 0."), **common)
    return Verdict(linearly_dependent=None, identifiable=None, method="none", certificate=None,
                   reason=f"{YS} Some coordinate is undecided: "
                          + "; ".join(f"{c.name}: {v.status}" for c, v in zip(fam.components, parts)),
                   **common)


def decide(family: Family | ProductFamily, time_budget: float = 60.0, isolate: bool = True,
           screen: bool = False, work_budget: int = DEFAULT_WORK) -> Verdict:
    """Decide linear (in)dependence of ``family`` within ``work_budget`` units of work.

    The verdict depends only on the family and ``work_budget`` (deterministic).
    ``time_budget`` (seconds) is a safety kill of the forked worker; a killed worker gives
    "unknown".  For a :class:`ProductFamily` the budgets apply to the family of each coordinate in turn.
    ``isolate=False`` runs in-process (no safety kill); ``screen`` attaches the numeric SVD
    screen (always attached to "unknown" verdicts).  Raises ``ValueError`` for an expression
    that is not a density (support.py).
    """
    try:
        budget = float(time_budget)
    except (TypeError, ValueError):
        raise ValueError(f"time_budget: expected seconds, got {time_budget!r}") from None
    if not budget > 0 or budget == float("inf"):
        raise ValueError(f"time_budget: must be positive and finite, got {time_budget!r}")
    Work(work_budget)  # validates
    if isinstance(family, ProductFamily):
        return _decide_product(family, budget, isolate, screen, work_budget)
    if not isinstance(family, Family):
        raise ValueError(f"decide: expected a Family or ProductFamily, got {type(family).__name__}")
    msgs, timed_out = _collect(family, budget, isolate, work_budget)
    return _verdict_for(family, msgs, timed_out, screen)
