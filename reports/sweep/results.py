"""Flatten stored sweep rows into one pandas DataFrame (one row per finished point).

Columns: the swept settings (``family, spread, lr, clip, steps, n_users, seed``), then each
metric with its confidence interval as ``<metric>``, ``<metric>_lo``, ``<metric>_hi``:
``accuracy`` (IDfree-PL), ``accuracy_central``, ``accuracy_static``, ``misattribution`` (Bayes,
with ``misattribution_max = (N-1)/N``), ``best_attack_advantage`` (and ``best_attack``, its name),
``proximity_bound`` and its ``proximity_tightness`` (bound / Bayes value), the same from the observed
drift (``proximity_bound_observed``, ``proximity_tightness_observed``), the multi-upload,
DP and deployment columns of :func:`reports.sweep.theory.flatten_theory`, per-attack values ``attack:<name>:<metric>``, and the report's one privacy
axis ``reid_advantage`` (``reports.scorecard.reid_advantage``: normalised re-identification
advantage of the strongest attribution or linkage attack, with ``reid_attack`` naming it).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from reports.sweep.theory import flatten_theory

SETTINGS = ("family", "spread", "lr", "clip", "steps", "n_users", "seed")


def _ci(entry: Mapping[str, Any] | None, prefix: str, out: dict) -> None:
    entry = entry or {}
    value = entry.get("value")
    ci = entry.get("ci") or [None, None]
    out[prefix] = np.nan if value is None else float(value)
    out[f"{prefix}_lo"] = np.nan if ci[0] is None else float(ci[0])
    out[f"{prefix}_hi"] = np.nan if ci[1] is None else float(ci[1])


def flatten_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One stored row (``ResultsStore.rows()`` item with status ok) -> a flat dict."""
    config, m = row["config"], row["metrics"] or {}
    out: dict[str, Any] = {"point_id": row["point_id"], "index": row["index"]}
    for key in SETTINGS:
        value = config.get(key)
        out[key] = np.nan if value is None and key != "family" else value
    acc = m.get("accuracy", {})
    _ci(acc.get("idfree"), "accuracy", out)
    _ci(acc.get("central"), "accuracy_central", out)
    _ci(acc.get("static"), "accuracy_static", out)
    _ci(m.get("misattribution"), "misattribution", out)
    out["misattribution_max"] = float((m.get("misattribution") or {}).get("max", np.nan) or np.nan)
    best = m.get("best_attack") or {}
    out["best_attack"] = f"{best.get('name', '?')}:{best.get('metric', '?')}"
    _ci({"value": best.get("advantage"), "ci": best.get("advantage_ci")}, "best_attack_advantage", out)
    bound = m.get("proximity_bound")
    out["proximity_bound"] = np.nan if bound is None else float(bound)
    mis = out["misattribution"]

    def share(b):  # how much of the Bayes misattribution a guaranteed bound captures
        return float(b) / mis if b is not None and np.isfinite(mis) and mis > 0 else np.nan

    out["proximity_tightness"] = share(bound)
    observed = m.get("proximity_bound_observed")
    out["proximity_bound_observed"] = np.nan if observed is None else float(observed)
    out["proximity_tightness_observed"] = share(observed)
    flatten_theory(m.get("theory"), out)
    for ceiling, value in (m.get("ceiling") or {}).items():
        out[f"ceiling_{ceiling}"] = np.nan if value is None else float(value)
    for res in m.get("attacks", []):
        out[f"attack:{res['name']}:{res['metric']}"] = float(res["value"])
    from reports.scorecard import reid_advantage

    adv, (lo, hi), which = reid_advantage(m.get("attacks", []))
    out["reid_advantage"], out["reid_advantage_lo"], out["reid_advantage_hi"] = adv, lo, hi
    out["reid_attack"] = which
    out["elapsed_s"] = row.get("elapsed_s")
    return out


def results_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """DataFrame of the finished points, in grid order."""
    flat = [flatten_row(r) for r in rows if r.get("status", "ok") == "ok"]
    frame = pd.DataFrame(flat)
    if not flat:
        return frame
    return frame.sort_values("index").reset_index(drop=True)
