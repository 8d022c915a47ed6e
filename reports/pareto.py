"""Pareto analysis of privacy against utility: metric directions, non-dominated set, knee.

* Every metric declares its direction (``DIRECTIONS``; attack metrics inherit theirs from
  :data:`attacks.base.METRICS`, where a stronger attack means *less* privacy).
* Non-dominated set: with every objective oriented so that higher is better, point ``a``
  dominates ``b`` iff ``a >= b`` in every objective and ``a > b`` in at least one; the frontier
  is the set of points no other point dominates (brute force, O(n^2 k), exact).
* Uncertainty: ``ci_dominated`` marks points dominated even when each is given the benefit of
  the doubt, i.e. some ``a`` whose *pessimistic* CI end beats ``b``'s *optimistic* end in every
  objective.  Frontier points that are not CI-dominated by anyone are carried with both CIs.
* Knee (Satopää et al. 2011 "Kneedle"; Das 1999): normalise each objective over the frontier to
  [0, 1] (1 = best), draw the chord between the two extreme frontier points and take the
  frontier point farthest from it on the side of the utopia point (1, 1).  With fewer than
  three points, or a frontier on or below the chord, the point nearest the utopia point.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from attacks.base import METRICS

DIRECTIONS: dict[str, str] = {
    "accuracy": "higher",
    "accuracy_central": "higher",
    "accuracy_static": "higher",
    "misattribution": "higher",          # more misattribution = more privacy
    "proximity_bound": "higher",         # a guaranteed lower bound on misattribution
    "best_attack_advantage": "lower",    # a weaker best attack = more privacy
    "reid_advantage": "lower",           # normalised re-identification advantage (reports.scorecard)
    "linkability": "lower",
}
LABELS: dict[str, str] = {
    "accuracy": "IDfree-PL accuracy",
    "misattribution": "Bayes misattribution",
    "best_attack_advantage": "best attack advantage",
    "reid_advantage": "re-identification advantage A",
    "proximity_bound": "proximity bound",
}
SETTING_COLUMNS = ("family", "spread", "lr", "clip", "steps", "n_users", "seed")


def direction(metric: str) -> str:
    """``"higher"`` or ``"lower"`` (is better) for a metric name, incl. ``attack:<name>:<metric>``."""
    if metric in DIRECTIONS:
        return DIRECTIONS[metric]
    base = metric.split(":")[-1]
    if metric.startswith("attack:") and base in METRICS:
        return "lower" if METRICS[base] else "higher"
    raise ValueError(f"metric {metric!r} declares no direction; known: {sorted(DIRECTIONS)}")


def _oriented(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(directions):
        raise ValueError(f"values must be (n, {len(directions)}), got {values.shape}")
    bad = [d for d in directions if d not in ("higher", "lower")]
    if bad:
        raise ValueError(f"directions must be 'higher' or 'lower', got {bad}")
    sign = np.array([1.0 if d == "higher" else -1.0 for d in directions])
    return values * sign


def non_dominated(values, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the Pareto-optimal rows of ``values`` (n, k); rows with NaN never qualify."""
    g = _oriented(values, directions)
    finite = np.all(np.isfinite(g), axis=1)
    ge = np.all(g[:, None, :] >= g[None, :, :], axis=2)   # ge[j, i]: j at least as good as i
    gt = np.any(g[:, None, :] > g[None, :, :], axis=2)
    dominates = ge & gt & finite[:, None] & finite[None, :]
    return finite & ~dominates.any(axis=0)


def ci_dominated(lo, hi, directions: Sequence[str]) -> np.ndarray:
    """Rows dominated even under their CIs: some row's worst case beats this row's best case everywhere."""
    lo_g, hi_g = _oriented(lo, directions), _oriented(hi, directions)
    worst = np.minimum(lo_g, hi_g)   # after orientation the pessimistic end is the smaller one
    best = np.maximum(lo_g, hi_g)
    beats = np.all(worst[:, None, :] > best[None, :, :], axis=2)
    np.fill_diagonal(beats, False)
    return np.nan_to_num(beats, nan=0).astype(bool).any(axis=0)


def knee(values, directions: Sequence[str]) -> int:
    """Index (into ``values``) of the knee of a two-objective frontier (see module docstring)."""
    g = _oriented(values, directions)
    if g.shape[1] != 2 or g.shape[0] == 0:
        raise ValueError("knee needs a non-empty (n, 2) frontier")
    span = g.max(axis=0) - g.min(axis=0)
    z = (g - g.min(axis=0)) / np.where(span > 0, span, 1.0)
    utopia = np.linalg.norm(1.0 - z, axis=1)
    if len(z) < 3:
        return int(np.argmin(utopia))
    a, b = z[np.argmax(z[:, 0])], z[np.argmax(z[:, 1])]
    chord = b - a
    norm = np.linalg.norm(chord)
    if norm == 0:
        return int(np.argmin(utopia))
    # signed distance, positive on the utopia side of the chord
    normal = np.array([chord[1], -chord[0]]) / norm
    if np.dot(np.ones(2) - a, normal) < 0:
        normal = -normal
    dist = (z - a) @ normal
    if dist.max() <= 1e-12:
        return int(np.argmin(utopia))
    return int(np.argmax(dist))


def frontier_table(frame: pd.DataFrame, utility: str = "accuracy", privacy: str = "misattribution") -> pd.DataFrame:
    """Frontier points of ``utility`` vs ``privacy`` with their settings, both CIs and the knee flag.

    Sorted from most private to most useful.  Columns: settings, ``utility``, ``utility_lo/hi``,
    ``privacy``, ``privacy_lo/hi``, ``ci_dominated`` and ``knee``.
    """
    dirs = (direction(utility), direction(privacy))
    if frame.empty:
        raise ValueError("no finished sweep points to analyse")
    marked = mark_frontier(frame, utility, privacy)
    front = marked[marked["on_frontier"]].copy()
    values = front[[utility, privacy]].to_numpy(float)
    front["knee"] = False
    front.loc[front.index[knee(values, dirs)], "knee"] = True
    keep = [c for c in SETTING_COLUMNS if c in front] + [
        "point_id", utility, f"{utility}_lo", f"{utility}_hi", privacy, f"{privacy}_lo", f"{privacy}_hi",
        "ci_dominated", "knee"]
    return front[keep].sort_values(privacy, ascending=dirs[1] == "lower").reset_index(drop=True)


def mark_frontier(frame: pd.DataFrame, utility: str = "accuracy", privacy: str = "misattribution") -> pd.DataFrame:
    """``frame`` with boolean columns ``on_frontier`` and ``ci_dominated`` for the two objectives."""
    cols = [utility, privacy]
    dirs = [direction(c) for c in cols]
    out = frame.copy()
    out["on_frontier"] = non_dominated(out[cols].to_numpy(float), dirs)
    lo = out[[f"{c}_lo" for c in cols]].to_numpy(float)
    hi = out[[f"{c}_hi" for c in cols]].to_numpy(float)
    out["ci_dominated"] = ci_dominated(lo, hi, dirs)
    return out


def recommend(frame: pd.DataFrame, utility: str = "accuracy", privacy: str = "misattribution") -> Mapping:
    """The knee point of the frontier as a plain dict (the executive summary's recommendation)."""
    table = frontier_table(frame, utility, privacy)
    row = table[table["knee"]].iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
