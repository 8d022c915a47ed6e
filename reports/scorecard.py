"""The scorecard: one row per threat with value, CI, chance, Bayes ceiling, epsilon bound, verdict.

Every row is measured on one scale, the **normalised re-identification advantage**

    A = (value - chance) / (best - chance),

where ``value`` is the attack's score, ``chance`` its random-guess baseline (permutation-honest,
:mod:`attacks.scoring`) and ``best`` the score of a perfect attacker (1 for accuracies, ARI, AUC and
TPR; 0 for ``parameter_error``, a lower-is-stronger metric).  ``A = 0`` means the adversary does no
better than guessing, ``A = 1`` that it re-identifies every upload; the CI is the attack's
advantage CI on the same scale (an affine map of an interval is an interval).
:func:`normalised_advantage` is the one place this is computed; where an attack result already
carries ``normalized_advantage`` (attacks-strength's AttackReport), that value is used instead.

Verdicts against a policy threshold ``t`` (:mod:`reports.policy`): ``PASS`` when the whole CI lies at
or below ``t``, ``FAIL`` when it lies above, ``INCONCLUSIVE`` when it straddles ``t``, ``NOT RUN``
when no attack measured the threat.  An identifier column (user, device, ip, ...) always FAILs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

# threat -> (label, which attack rows measure it, what the number means for a user)
THREATS: dict[str, tuple[str, str]] = {
    "single_upload_attribution": (
        "single-upload attribution",
        "how much better than guessing an adversary who knows the number of users assigns ONE upload to its "
        "user (0 = a guess, 1 = every upload attributed)"),
    "multi_upload_linkage": (
        "multi-upload linkage",
        "how much better than guessing a later upload is linked to an earlier upload of the same user: "
        "1 means a user's uploads over time form a trail"),
    "clustering_reidentification": (
        "clustering re-identification",
        "how well the pool splits into per-user groups without any labels (adjusted Rand index above chance)"),
    "parameter_inversion": (
        "parameter inversion",
        "how much better than from random uploads an adversary who linked a user's uploads estimates that "
        "user's private distribution (relative error reduction)"),
    "text_only_leakage": (
        "text-only leakage",
        "re-identification from the text alone: present whatever the embeddings do (no embedding setting fixes it)"),
    "marginal_embedding_leakage": (
        "marginal embedding leakage",
        "what the embeddings add beyond the text (attack on text+embeddings minus attack on text)"),
    "identifier_columns": (
        "identifier columns",
        "columns such as user_id, device_id or ip in the uploads: every upload is directly linkable"),
}
PERFECT_LOW = {"parameter_error"}  # metrics where a perfect attacker scores 0 (lower is stronger)
# threat -> (features, metrics) of the AttackResult rows that measure it
_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "single_upload_attribution": ("embedding", ("attribution_accuracy",)),
    "multi_upload_linkage": ("embedding", ("linkage_top1",)),
    "clustering_reidentification": ("embedding", ("ari",)),
    "parameter_inversion": ("embedding", ("parameter_error",)),
    "text_only_leakage": ("text", ("attribution_accuracy", "linkage_top1")),
}
VERDICTS = ("PASS", "FAIL", "INCONCLUSIVE", "NOT RUN")


def _get(row: Any, key: str, default=None):
    return row.get(key, default) if isinstance(row, Mapping) else getattr(row, key, default)


def _epsilon(row: Any) -> float | None:
    """The row's epsilon lower bound: its own field, or ``details["epsilon"]`` of a linkage AUC row
    (Clopper-Pearson on TPR/FPR, :func:`attacks.headline.epsilon_lower_bound`)."""
    own = _get(row, "epsilon_lower_bound")
    if own is not None:
        return float(own)
    eps = (_get(row, "details") or {}).get("epsilon")
    return None if not isinstance(eps, Mapping) or eps.get("lower_bound") is None else float(eps["lower_bound"])


def normalised_advantage(row: Any) -> tuple[float, tuple[float, float]]:
    """``(A, (lo, hi))`` of one attack result (a dict or :class:`attacks.base.AttackResult`); module doc."""
    given = _get(row, "normalized_advantage")
    if given is not None:  # attacks-strength: the AttackResult carries its own normalised advantage
        ci = _get(row, "normalized_advantage_ci") or (given, given)
        return float(given), (float(ci[0]), float(ci[1]))
    metric = _get(row, "metric")
    chance = float(_get(row, "baseline"))
    adv, ci = float(_get(row, "advantage")), _get(row, "advantage_ci")
    best = 0.0 if metric in PERFECT_LOW else 1.0
    span = best - chance
    if not math.isfinite(span) or abs(span) < 1e-12:
        return float("nan"), (float("nan"), float("nan"))
    lo, hi = sorted((float(ci[0]) / span, float(ci[1]) / span))
    return adv / span, (lo, min(hi, 1.0))  # no attacker beats a perfect one


def verdict(ci: Sequence[float], threshold: float | None) -> str:
    """PASS (CI at or below ``threshold``), FAIL (above), INCONCLUSIVE (straddles), NOT RUN (no CI)."""
    lo, hi = (float(ci[0]), float(ci[1])) if ci is not None else (math.nan, math.nan)
    if threshold is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "NOT RUN"
    if hi <= threshold:
        return "PASS"
    if lo > threshold:
        return "FAIL"
    return "INCONCLUSIVE"


@dataclass(frozen=True)
class ScorecardRow:
    """One threat: normalised advantage ``value`` with ``ci`` (module doc), what produced it, the verdict."""

    threat: str
    label: str
    value: float | None
    ci: tuple[float, float] | None
    threshold: float | None
    verdict: str
    attack: str | None = None          # the strongest attack row measuring the threat
    metric: str | None = None
    raw_value: float | None = None     # the attack's own score, before normalisation
    chance: float | None = None        # its random-guess baseline
    ceiling: float | None = None       # Bayes-optimal attacker on the same normalised scale, where known
    epsilon_lower_bound: float | None = None  # where an attack defines one (attacks-strength)
    meaning: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ci"] = None if self.ci is None else list(self.ci)
        return out


def _row(threat: str, threshold, candidates: Iterable[Any]) -> ScorecardRow:
    label, meaning = THREATS[threat]
    scored = [(normalised_advantage(r), r) for r in candidates]
    scored = [(a, r) for a, r in scored if math.isfinite(a[0])]
    if not scored:
        return ScorecardRow(threat, label, None, None, threshold, "NOT RUN", meaning=meaning)
    # the row shown: the strongest established evidence (highest lower CI end above the threshold), else the
    # highest upper CI end; so the verdict of the set is FAIL if any row fails, PASS only if all pass
    t = math.inf if threshold is None else threshold
    (value, ci), best = max(scored, key=lambda s: (s[0][1][0] > t, s[0][1][0] if s[0][1][0] > t else s[0][1][1]))
    eps = [e for _, r in scored if (e := _epsilon(r)) is not None]
    chance, ceiling = float(_get(best, "baseline")), _get(best, "ceiling")
    if ceiling is not None:  # the Bayes ceiling on the same normalised scale
        ceiling = (float(ceiling) - chance) / ((0.0 if _get(best, "metric") in PERFECT_LOW else 1.0) - chance)
    return ScorecardRow(threat, label, value, ci, threshold, verdict(ci, threshold), attack=_get(best, "name"),
                        metric=_get(best, "metric"), raw_value=float(_get(best, "value")), chance=chance,
                        ceiling=ceiling, epsilon_lower_bound=max(eps) if eps else None, meaning=meaning)


def build_scorecard(attacks: Sequence[Any], policy, marginal: Sequence[Any] = (),
                    identifier_columns: Sequence[str] = ()) -> list[ScorecardRow]:
    """The scorecard of one pool: ``attacks`` (AttackResult or their dicts), ``marginal`` leakage rows
    (:class:`attacks.text.MarginalLeakage` or dicts) and the identifier columns found in the uploads."""
    rows = []
    th = policy.thresholds
    for threat, (features, metrics) in _SOURCES.items():
        cands = [r for r in attacks if _get(r, "features", "embedding") == features and _get(r, "metric") in metrics]
        row = _row(threat, th.get(threat), cands)
        if "linkage_top1" in metrics and row.verdict != "NOT RUN":  # the bound lives on the linkage AUC rows
            eps = [e for r in attacks if _get(r, "features", "embedding") == features and (e := _epsilon(r)) is not None]
            if eps and (row.epsilon_lower_bound is None or max(eps) > row.epsilon_lower_bound):
                row = replace(row, epsilon_lower_bound=max(eps))
        rows.append(row)
    rows.append(_marginal_row(marginal, th.get("marginal_embedding_leakage")))
    label, meaning = THREATS["identifier_columns"]
    n_id = len(identifier_columns)
    rows.append(ScorecardRow("identifier_columns", label, float(n_id), (float(n_id), float(n_id)),
                             th.get("identifier_columns", 0), "FAIL" if n_id else "PASS",
                             attack=", ".join(identifier_columns) or None, meaning=meaning))
    return rows


def _marginal_row(marginal: Sequence[Any], threshold) -> ScorecardRow:
    """Marginal leakage on the normalised scale: ``marginal / (1 - text value)`` for top-1 style metrics."""
    label, meaning = THREATS["marginal_embedding_leakage"]
    cands = []
    for m in marginal:
        if _get(m, "metric") not in ("attribution_accuracy", "linkage_top1"):
            continue
        span = 1.0 - float(_get(m, "text"))
        if span <= 1e-12:
            continue
        ci = _get(m, "ci")
        cands.append((float(_get(m, "marginal")) / span, (float(ci[0]) / span, min(1.0, float(ci[1]) / span)), m))
    if not cands:
        return ScorecardRow("marginal_embedding_leakage", label, None, None, threshold, "NOT RUN", meaning=meaning)
    value, ci, m = max(cands, key=lambda c: (c[1][1], c[0]))
    return ScorecardRow("marginal_embedding_leakage", label, value, ci, threshold, verdict(ci, threshold),
                        attack=_get(m, "name"), metric=_get(m, "metric"), raw_value=float(_get(m, "both")),
                        chance=float(_get(m, "text")), meaning=meaning)


def reid_advantage(attacks: Sequence[Any]) -> tuple[float, tuple[float, float], str | None]:
    """The report's one privacy axis: the largest normalised advantage of single-upload attribution and
    multi-upload linkage on the embeddings (``(value, ci, attack)``; NaN when neither was run)."""
    best = (float("nan"), (float("nan"), float("nan")), None)
    for r in attacks:
        if _get(r, "features", "embedding") != "embedding" or _get(r, "metric") not in ("attribution_accuracy",
                                                                                         "linkage_top1"):
            continue
        a, ci = normalised_advantage(r)
        if math.isfinite(a) and not (a <= best[0]):
            best = (a, ci, f"{_get(r, 'name')}:{_get(r, 'metric')}")
    return best


def failed(rows: Sequence[ScorecardRow], fail_on_inconclusive: bool = False) -> list[ScorecardRow]:
    """Rows that make a policy gate fail (FAIL, and INCONCLUSIVE when the policy says so)."""
    bad = {"FAIL", "INCONCLUSIVE"} if fail_on_inconclusive else {"FAIL"}
    return [r for r in rows if r.verdict in bad]


def _num(v, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def format_scorecard(rows: Sequence[ScorecardRow], with_meaning: bool = True) -> str:
    """Fixed-width text of the scorecard (terminal and PDF), plain words under it."""
    header = ("threat", "value [95% CI]", "chance", "Bayes ceiling", "eps LB", "threshold", "verdict", "measured by")
    table = [header]
    for r in rows:
        if r.threat == "identifier_columns":
            value = f"{int(r.value)} column(s)"
            chance, ceil = "-", "-"
        else:
            value = "-" if r.value is None else f"{r.value:+.3f} [{r.ci[0]:+.3f}, {r.ci[1]:+.3f}]"
            chance = "0 (raw " + _num(r.chance) + ")" if r.chance is not None else "0"
            ceil = _num(r.ceiling)
        table.append((r.label, value, chance, ceil, _num(r.epsilon_lower_bound), _num(r.threshold), r.verdict,
                      "-" if r.attack is None else f"{r.attack}" + (f" ({r.metric} {_num(r.raw_value)})"
                                                                    if r.metric else "")))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = []
    for i, row in enumerate(table):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    if with_meaning:
        lines += ["", "value: normalised re-identification advantage A = (score - chance) / (perfect - chance); "
                      "0 = guessing, 1 = every upload re-identified.",
                  "PASS: the whole 95% CI is at or below the threshold; FAIL: above it; INCONCLUSIVE: the CI "
                  "straddles it (more data needed); NOT RUN: no attack measured it.", ""]
        lines += [f"  {r.label}: {r.meaning}." for r in rows]
    return "\n".join(lines)
