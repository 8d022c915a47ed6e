"""Deployment policies: the thresholds of the scorecard (``reports.scorecard``) read from TOML.

A policy file (``examples/policy.toml``, documented in ``docs/policy.md``) has a ``[thresholds]``
table, one entry per threat of :data:`reports.scorecard.THREATS` (a missing one takes the default
below), and an optional ``[gate]`` table with ``fail_on_inconclusive``.  Identifier columns always
fail: their threshold can only be 0.  ``attack --policy`` and ``report --policy`` exit with
:data:`EXIT_POLICY_FAILED` (1) when a row fails; bad input (e.g. an unreadable policy) exits 2.
"""

from __future__ import annotations

import argparse
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from idfree_core.errors import InputError
from reports.scorecard import THREATS, failed

EXIT_PASS, EXIT_POLICY_FAILED = 0, 1
DEFAULT_THRESHOLDS: dict[str, float] = {**{t: 0.10 for t in THREATS}, "identifier_columns": 0.0}
MAX_POLICY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Policy:
    """Scorecard thresholds (normalised advantage; identifier columns: 0) and the gate's strictness."""

    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    fail_on_inconclusive: bool = False
    name: str = "default"
    source: str = "built-in defaults (examples/policy.toml)"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "thresholds": dict(self.thresholds),
                "fail_on_inconclusive": self.fail_on_inconclusive}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "policy") -> "Policy":
        unknown = sorted(set(data) - {"name", "thresholds", "gate"})
        if unknown:
            raise InputError(f"{source}: unknown key(s) {unknown}; allowed: name, thresholds, gate")
        table = data.get("thresholds", {})
        if not isinstance(table, Mapping):
            raise InputError(f"{source}: [thresholds] must be a table")
        bad = sorted(set(table) - set(THREATS))
        if bad:
            raise InputError(f"{source}: unknown threat(s) {bad} in [thresholds]; known: {list(THREATS)}")
        thresholds = dict(DEFAULT_THRESHOLDS)
        for key, value in table.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0 <= value <= 1:
                raise InputError(f"{source}: thresholds.{key} must be a number in [0, 1], got {value!r}")
            thresholds[key] = float(value)
        if thresholds["identifier_columns"] != 0:
            raise InputError(f"{source}: thresholds.identifier_columns must be 0: an identifier column always fails")
        gate = data.get("gate", {})
        if not isinstance(gate, Mapping) or sorted(set(gate) - {"fail_on_inconclusive"}):
            raise InputError(f"{source}: [gate] allows only fail_on_inconclusive = true|false")
        strict = gate.get("fail_on_inconclusive", False)
        if not isinstance(strict, bool):
            raise InputError(f"{source}: gate.fail_on_inconclusive must be true or false")
        name = data.get("name", Path(source).stem)
        if not isinstance(name, str):
            raise InputError(f"{source}: name must be a string")
        return cls(thresholds=thresholds, fail_on_inconclusive=strict, name=name, source=source)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy TOML file; every problem is one :class:`InputError` line."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--policy {p}: file not found")
    if p.stat().st_size > MAX_POLICY_BYTES:
        raise InputError(f"--policy {p}: larger than {MAX_POLICY_BYTES} bytes; not a policy file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"--policy {p}: not valid TOML ({' '.join(str(exc).split()) or 'too deeply nested'})") from None
    return Policy.from_dict(data, source=str(p))


def add_policy_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", metavar="TOML", default=None,
                        help="gate on a deployment policy (e.g. examples/policy.toml): exit 1 when any scorecard "
                             "row FAILs (0 pass, 1 policy failure, 2 bad input)")


def gate(rows, policy: Policy) -> tuple[int, str]:
    """``(exit code, one line)`` of a scorecard under ``policy``."""
    bad = failed(rows, policy.fail_on_inconclusive)
    if not bad:
        counts = {v: sum(r.verdict == v for r in rows) for v in ("PASS", "INCONCLUSIVE", "NOT RUN")}
        told = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        return EXIT_PASS, f"policy {policy.name}: PASS ({len(rows)} rows, none failed: {told})"
    names = ", ".join(f"{r.label} {r.verdict}" for r in bad)
    return EXIT_POLICY_FAILED, f"policy {policy.name}: FAIL ({names})"


def attack_scorecard(report, identifiers, policy_path: str | None):
    """Scorecard rows of an :class:`attacks.suite.AttackReport` and the policy (default if no path)."""
    from reports.scorecard import build_scorecard

    policy = load_policy(policy_path) if policy_path else Policy()
    return build_scorecard(report.results, policy, report.marginal, identifiers), policy
