"""Per-point theory: many uploads per device, DP terms, and the deployment-level verdict.

For the trained user distributions of one sweep point this records, next to the per-upload
Bayes misattribution the point already has:

* ``by_uploads_per_user``: Bayes misattribution when the adversary links ``m`` uploads of one
  device (:func:`privacy_audit.multi_upload.misattribution_by_uploads`; exact for Gaussians
  sharing one std, Monte Carlo with a CI otherwise) and the Chernoff rate it decays at;
* ``dp``: the worst pair's per-upload privacy loss as epsilon(delta) composed over ``m`` uploads
  (:func:`privacy_audit.dp.privacy_in_dp_terms`: exact mu-GDP for equal-std Gaussians, the
  privacy-loss distribution otherwise);
* ``deployment``: whether the K-user mixture of *these* users is identifiable with K known
  (:func:`privacy_audit.identifiability.deployment.decide_deployment`: Kruskal ranks of three
  coordinate blocks, Allman, Matias and Rhodes 2009).

Each part that cannot be computed for this point records ``{"error": "..."}`` instead of failing
the point; the report prints that reason rather than a number.
"""

from __future__ import annotations

import math
import re
from typing import Any

UPLOADS = (1, 5, 20)
DP_UPLOADS = (1, 20)
DELTA = 1e-5
#: importance samples per privacy-loss curve (the CLI's 4096 gives CIs about half as wide)
DP_SAMPLES = 1024


_UPLOAD_COLUMN = re.compile(r"misattribution_m(\d+)")
_DP_COLUMN = re.compile(r"dp_epsilon_m(\d+)")


def upload_counts(columns) -> list[int]:
    """The numbers of linked uploads ``m > 1`` with a ``misattribution_m<m>`` column (sorted)."""
    return sorted(int(m.group(1)) for c in columns if (m := _UPLOAD_COLUMN.fullmatch(str(c))))


def dp_columns(columns) -> list[str]:
    """The ``dp_epsilon_m<m>`` columns, in increasing ``m``."""
    found = [(int(m.group(1)), str(c)) for c in columns if (m := _DP_COLUMN.fullmatch(str(c)))]
    return [c for _, c in sorted(found)]


def _error(exc: BaseException) -> dict[str, str]:
    text = str(exc).strip().splitlines()
    return {"error": f"{type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")}


def _finite(x) -> float | None:
    x = None if x is None else float(x)
    return x if x is not None and math.isfinite(x) else None


def _epsilon(x) -> float | str | None:
    """JSON-safe epsilon: ``"inf"`` where the loss is unbounded (distinct point masses), None if unknown."""
    x = None if x is None else float(x)
    return "inf" if x == math.inf else _finite(x)


def theory_metrics(dist, seed: int, uploads=UPLOADS, delta: float = DELTA, target_halfwidth: float = 0.01) -> dict:
    """``{"by_uploads_per_user": {...}, "dp": {...}, "deployment": {...}}`` for one point's users."""
    from privacy_audit.dp import privacy_in_dp_terms
    from privacy_audit.identifiability.deployment import decide_deployment
    from privacy_audit.multi_upload import misattribution_by_uploads

    params = dict(dist.params)
    out: dict[str, Any] = {}
    try:
        curve = misattribution_by_uploads(dist.family, params, uploads=uploads, random_state=seed,
                                          target_halfwidth=target_halfwidth)
        out["by_uploads_per_user"] = {
            "rows": [{"m": int(r["m"]), "value": float(r["value"]), "ci": [float(c) for c in r["ci"]],
                      "method": r["method"]} for r in curve.by_uploads_per_user],
            "chernoff_rate": _finite(curve.chernoff_rate), "pairs": curve.pairs}
    except (ValueError, ArithmeticError, RuntimeError, NotImplementedError, KeyError) as exc:
        out["by_uploads_per_user"] = _error(exc)
    try:
        dp = privacy_in_dp_terms(dist.family, params, uploads=DP_UPLOADS, delta=delta, n_samples=DP_SAMPLES,
                                 random_state=seed)
        out["dp"] = {"model": dp.model, "delta": float(dp.delta), "gdp_mu_per_upload": _finite(dp.gdp_mu_per_upload),
                     "epsilon": {k: _epsilon(v) for k, v in dp.epsilon.items()},
                     "worst_pair": [int(i) for i in dp.worst_pair]}
    except (ValueError, ArithmeticError, RuntimeError, NotImplementedError, KeyError) as exc:
        out["dp"] = _error(exc)
    try:
        v = decide_deployment(dist.family, params, loc=getattr(dist, "loc", None), scale=getattr(dist, "scale", None),
                              random_state=seed)
        out["deployment"] = {"identifiable": v.identifiable, "method": v.method,
                             "kruskal_ranks": [int(r) for r in v.kruskal_ranks], "required": int(v.required),
                             "reason": v.reason}
    except (ValueError, ArithmeticError, RuntimeError, NotImplementedError, KeyError) as exc:
        out["deployment"] = _error(exc)
    return out


def flatten_theory(theory: dict | None, out: dict) -> None:
    """Columns for :func:`reports.sweep.results.flatten_row`: ``misattribution_m<m>`` (+ CI),
    ``dp_epsilon_m<m>``, ``chernoff_rate``, ``deployment_identifiable`` (1, 0 or NaN)."""
    nan = float("nan")
    theory = theory or {}
    curve = theory.get("by_uploads_per_user") or {}
    for r in curve.get("rows", []):
        m = int(r["m"])
        if m == 1:
            continue  # the per-upload value is the point's ``misattribution`` column
        lo, hi = (r.get("ci") or [None, None])[:2]
        out[f"misattribution_m{m}"] = float(r["value"])
        out[f"misattribution_m{m}_lo"] = nan if lo is None else float(lo)
        out[f"misattribution_m{m}_hi"] = nan if hi is None else float(hi)
    rate = curve.get("chernoff_rate")
    out["chernoff_rate"] = nan if rate is None else float(rate)
    for key, value in ((theory.get("dp") or {}).get("epsilon") or {}).items():
        if key.startswith("m="):
            out[f"dp_epsilon_m{key[2:]}"] = nan if value is None else float(value)
    ident = (theory.get("deployment") or {}).get("identifiable", None)
    out["deployment_identifiable"] = nan if ident is None else float(bool(ident))
