"""Verdict and Certificate result objects and their text / JSON / LaTeX renderings.

A certificate of linear dependence is a finite set of members ``f_1..f_k`` with nonzero exact
coefficients such that ``sum_i c_i f_i(x) = 0`` on the support; by Yakowitz and Spragins (1968)
finite mixtures of a family are identifiable iff the family is linearly independent, so a
certificate proves non-identifiability and an independence proof proves identifiability.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import sympy as sp

__all__ = ["Certificate", "Verdict", "SCOPE"]

SCOPE = ("Family-level statement about finite mixtures of unbounded order. It does not protect a "
         "deployment whose number of users is known or bounded: there the K-user mixture of "
         "product distributions is usually identifiable (Allman, Matias and Rhodes 2009); see "
         "privacy_audit.identifiability.deployment.decide_deployment.")


@dataclass(frozen=True)
class Certificate:
    """``sum_i coefficients[i] * f(x; members[i]) == 0``, members/coefficients as exact strings."""

    members: tuple[dict[str, str], ...]
    coefficients: tuple[str, ...]
    verified: bool
    symbolic: bool = False
    instance: dict[str, str] | None = None
    checks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["members"] = [dict(m) for m in self.members]
        d["coefficients"] = list(self.coefficients)
        d["checks"] = list(self.checks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Certificate":
        return cls(members=tuple(dict(m) for m in d["members"]),
                   coefficients=tuple(d["coefficients"]), verified=bool(d["verified"]),
                   symbolic=bool(d.get("symbolic", False)), instance=d.get("instance"),
                   checks=tuple(d.get("checks", ())))

    def equation_text(self, var: str = "x") -> str:
        terms = []
        for c, m in zip(self.coefficients, self.members):
            args = ", ".join(f"{k}={v}" for k, v in m.items())
            terms.append(f"({c}) f({var}; {args})")
        return " + ".join(terms) + " = 0"


@dataclass(frozen=True)
class Verdict:
    """Linear (in)dependence of a family and hence (non-)identifiability of its finite mixtures."""

    family: str
    linearly_dependent: bool | None
    identifiable: bool | None
    method: str
    certificate: Certificate | None
    reason: str
    numeric_evidence: dict[str, Any] | None = None
    density: str = ""
    variable: str = "x"
    density_latex: str = ""

    @property
    def status(self) -> str:
        if self.linearly_dependent is None:
            return "unknown"
        return "dependent" if self.linearly_dependent else "independent"

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "linearly_dependent": self.linearly_dependent,
                "identifiable": self.identifiable, "method": self.method,
                "certificate": None if self.certificate is None else self.certificate.to_dict(),
                "reason": self.reason, "numeric_evidence": self.numeric_evidence,
                "density": self.density, "variable": self.variable,
                "density_latex": self.density_latex, "scope": SCOPE}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Verdict":
        cert = d.get("certificate")
        return cls(family=d["family"], linearly_dependent=d["linearly_dependent"],
                   identifiable=d["identifiable"], method=d["method"],
                   certificate=None if cert is None else Certificate.from_dict(cert),
                   reason=d["reason"], numeric_evidence=d.get("numeric_evidence"),
                   density=d.get("density", ""), variable=d.get("variable", "x"),
                density_latex=d.get("density_latex", ""))

    def to_text(self) -> str:
        head = {"dependent": "LINEARLY DEPENDENT -> finite mixtures NOT identifiable",
                "independent": "LINEARLY INDEPENDENT -> finite mixtures identifiable",
                "unknown": "UNKNOWN (no proof either way within the time budget)"}[self.status]
        lines = [f"family: {self.family}", f"density: f({self.variable}) = {self.density}",
                 f"verdict: {head}", f"method: {self.method}"]
        if self.certificate is not None:
            c = self.certificate
            lines.append("certificate: " + c.equation_text(self.variable))
            kind = "symbolic parameters" if c.symbolic else "exact values"
            lines.append(f"  verified: {c.verified} ({kind})")
            if c.instance:
                lines.append(f"  instance checked at: {c.instance}")
        lines.append("reason: " + self.reason)
        if self.numeric_evidence:
            ne = self.numeric_evidence
            sv = ", ".join(f"{v:.3g}" for v in ne.get("singular_values", [])[:12])
            lines.append(f"numeric evidence (not a proof): rank {ne.get('numeric_rank')} of "
                         f"{ne.get('n_members')} sampled members; singular values {sv}")
        return "\n".join(lines)

    def to_latex(self) -> str:
        """The verdict as LaTeX; a certificate becomes ``\\sum_i c_i f(x; theta_i) = 0``."""
        x = self.variable
        out = [f"% identifiability verdict for {self.family}: {self.status}"]
        if self.density_latex:
            out.append(rf"f({x}) = {self.density_latex}")
        if self.certificate is not None:
            terms = []
            for c, m in zip(self.certificate.coefficients, self.certificate.members):
                coef = _tex(c)
                args = ", ".join(f"{_tex_name(k)} = {_tex(v)}" for k, v in m.items())
                terms.append(rf"\left({coef}\right) f\left({x};\, {args}\right)")
            out.append(r"\begin{equation}" + "\n" + " + ".join(terms) + " = 0\n" +
                       r"\end{equation}")
        return "\n".join(out)


def _tex(s: str) -> str:
    """LaTeX of an exact string, parsed with the safe whitelist parser (never ``eval``)."""
    import re

    from ..safe_parse import SAFE_CONSTANTS, SAFE_FUNCTIONS, safe_parse

    names = set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", s)) - set(SAFE_FUNCTIONS) - set(SAFE_CONSTANTS)
    try:
        return sp.latex(safe_parse(s, {n: sp.Symbol(n) for n in names}, "latex"))
    except ValueError:
        return r"\text{" + re.sub(r"([_%&#$])", r"\\\1", s) + "}"


def _tex_name(name: str) -> str:
    return sp.latex(sp.Symbol(name))
