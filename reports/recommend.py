"""The deployable recommendation: settings aggregated across seeds, a complete config, a TOML snippet.

* :func:`aggregate_seeds`: points that differ only in ``seed`` form one setting.  Each metric's
  value is the mean over seeds; its interval is the wider of (a) the Student-t 95% CI of that mean
  across seeds (``mean +- t_{0.975, k-1} s / sqrt(k)``, k >= 2 seeds) and (b) the mean of the
  per-seed CIs, so that neither seed-to-seed variation nor within-run sampling error is hidden.
  With one seed the point's own CI is kept.
* :func:`recommend`: the knee (:func:`reports.pareto.knee`) of IDfree-PL accuracy against the
  normalised re-identification advantage (``reports.scorecard.reid_advantage``) over the sampled
  families (the static baseline is an identifier, never recommended); when the policy leaves some
  settings without a FAIL, only those are candidates.  The result names no seed.
* :func:`complete_config`: every deployable field (family, spread, lr, clip, steps or epochs,
  n_tokens, preset, model) resolved through ``reports.sweep.point.simulation_config``, so no field is null.
* :func:`knob_effects`: for each swept knob, whether changing it alone moved accuracy, Bayes
  misattribution or the advantage beyond the CIs (e.g. ``clip`` under AdamW with small steps).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from idfree_core.families import get_family_spec, point_mass_families
from reports import pareto
from reports.sweep.theory import dp_columns, upload_counts

KNOBS = ("family", "spread", "lr", "clip", "steps", "n_users")
METRIC_COLUMNS = ("accuracy", "misattribution", "reid_advantage", "accuracy_central", "accuracy_static")
PRIVACY = "reid_advantage"


def _key(row: Mapping[str, Any]) -> tuple:
    return tuple("nan" if (isinstance(row.get(k), float) and not math.isfinite(row.get(k))) or row.get(k) is None
                 else row.get(k) for k in KNOBS)


def aggregate_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per setting (``KNOBS``), metrics averaged over seeds (module doc); ``n_seeds``, ``point_ids``."""
    groups: dict[tuple, list[int]] = {}
    for i, row in frame.iterrows():
        groups.setdefault(_key(row), []).append(i)
    out = []
    for gid, idx in enumerate(groups.values()):
        part = frame.loc[idx]
        first = part.iloc[0]
        row: dict[str, Any] = {k: first.get(k) for k in KNOBS if k in frame}
        row.update(point_id=f"setting-{gid + 1}", n_seeds=len(part), point_ids=list(part["point_id"]),
                   seeds=sorted(int(s) for s in part["seed"].dropna()) if "seed" in part else [])
        for col in METRIC_COLUMNS + tuple(f"misattribution_m{m}" for m in upload_counts(part.columns)):
            if col not in part:
                continue
            v = part[col].to_numpy(float)
            lo, hi = part[f"{col}_lo"].to_numpy(float), part[f"{col}_hi"].to_numpy(float)
            if not np.isfinite(v).any():
                row[col] = row[f"{col}_lo"] = row[f"{col}_hi"] = np.nan
                continue
            mean = float(np.nanmean(v))
            w_lo, w_hi = float(np.nanmean(lo)), float(np.nanmean(hi))
            k = int(np.isfinite(v).sum())
            if k >= 2:
                half = float(stats.t.ppf(0.975, k - 1) * np.nanstd(v, ddof=1) / math.sqrt(k))
                w_lo, w_hi = min(w_lo, mean - half), max(w_hi, mean + half)
            row[col], row[f"{col}_lo"], row[f"{col}_hi"] = mean, w_lo, w_hi
        for col in ("misattribution_max", "proximity_bound", "proximity_tightness", "proximity_bound_observed",
                    "proximity_tightness_observed", "chernoff_rate",
                    "deployment_identifiable", *dp_columns(part.columns)):
            if col in part:
                row[col] = float(np.nanmean(part[col].to_numpy(float))) if part[col].notna().any() else np.nan
        out.append(row)
    return pd.DataFrame(out)


def knob_effects(frame: pd.DataFrame, metrics: Sequence[str] = ("accuracy", "misattribution", PRIVACY)) -> dict:
    """``{knob: {"effect": bool, "largest": {metric: |diff|}}}`` for knobs with more than one value.

    Two settings that differ only in ``knob`` show an effect when, for some metric, their (seed-
    aggregated) CIs do not overlap; a knob with no such pair had no measurable effect here.
    """
    agg = aggregate_seeds(frame)
    out = {}
    for knob in KNOBS:
        if knob == "family" or knob not in agg or agg[knob].nunique(dropna=True) < 2:
            continue
        others = [k for k in KNOBS if k != knob and k in agg]
        effect, largest = False, {m: 0.0 for m in metrics if m in agg}
        buckets: dict[str, list[int]] = {}
        for i, r in agg.iterrows():
            buckets.setdefault(repr([str(r[k]) for k in others]), []).append(i)
        for idx in buckets.values():
            g = agg.loc[idx]
            if len(g) < 2:
                continue
            for m in largest:
                v, lo, hi = (g[c].to_numpy(float) for c in (m, f"{m}_lo", f"{m}_hi"))
                if not np.isfinite(v).all():
                    continue
                largest[m] = max(largest[m], float(v.max() - v.min()))
                effect |= bool(lo.max() > hi.min())  # some pair of intervals is disjoint
        out[knob] = {"effect": effect, "largest": largest}
    return out


# SimulationConfig spread fields with a flag of their own in ``idfree-audit simulate``
SIMULATE_SPREAD_FLAGS = {"std": "--std", "beta_concentration": "--beta-concentration"}


def default_spread(family: str, cfg) -> float:
    """Standard deviation of the family's common initial marginal at ``cfg``'s spread setting
    (Beta: ``sqrt(10 / (49 (7c + 1)))``; Gaussian: ``cfg.std``; point masses: 0)."""
    spec = get_family_spec(family)
    setting = getattr(cfg, spec.spread_field) if spec.spread_field else None
    return float(spec.scipy_distribution(spec.initial_params(setting, "classify")).std())


def candidates(agg: pd.DataFrame, passing: Sequence[str] | None = None) -> pd.DataFrame:
    """Settings the recommendation may pick: sampled families, with a finite privacy axis; policy-passing
    ones (``passing``: setting ids) when there are any."""
    c = agg[~agg["family"].isin(point_mass_families()) & np.isfinite(agg[PRIVACY].to_numpy(float))
            & np.isfinite(agg["accuracy"].to_numpy(float))]
    if c.empty:
        c = agg[np.isfinite(agg["accuracy"].to_numpy(float))]
    if passing:
        ok = c[c["point_id"].isin(passing)]
        if len(ok):
            return ok
    return c


def pick(agg: pd.DataFrame, passing: Sequence[str] | None = None) -> Mapping[str, Any]:
    """The knee setting (module doc) as a dict (a row of :func:`aggregate_seeds`)."""
    cand = candidates(agg, passing)
    if cand.empty:
        raise ValueError("no finished sweep points to recommend from")
    privacy = PRIVACY if np.isfinite(cand[PRIVACY].to_numpy(float)).any() else "misattribution"
    rec = pareto.recommend(cand, "accuracy", privacy)
    return agg.set_index("point_id").loc[rec["point_id"]].to_dict() | {"point_id": rec["point_id"],
                                                                       "privacy_axis": privacy}


def _known() -> set[str]:
    """Keys a point config may carry into SimulationConfig: its fields and the grid keys."""
    from dataclasses import fields

    from idfree_core.pipeline import SimulationConfig
    from reports.sweep.spec import GRID_KEYS

    return {f.name for f in fields(SimulationConfig)} | set(GRID_KEYS) | {"attacks"}


def complete_config(setting: Mapping[str, Any], point_config: Mapping[str, Any],
                    n_tokens: int | None = None) -> dict[str, Any]:
    """All deployable fields of ``setting`` (no null): the effective SimulationConfig of one of its points."""
    from reports.sweep.point import simulation_config

    cfg = simulation_config({k: v for k, v in point_config.items() if k != "seed" and k in _known()})
    family = str(cfg.family)
    spread = point_config.get("spread")
    if spread is None:  # not swept: the std of the family's initial marginal (Beta(2c, 5c), N(0.1, std^2), ...)
        spread = default_spread(family, cfg)
    out: dict[str, Any] = {"family": family, "spread": float(spread), "lr": float(cfg.device_lr),
                           "clip": float(cfg.device_clip)}
    if cfg.device_max_steps is not None:
        out["steps"] = int(cfg.device_max_steps)
    else:
        out["epochs"] = int(cfg.device_epochs)
    out["n_tokens"] = int(n_tokens or cfg.n_tokens or 1)
    out["preset"] = str(getattr(cfg, "preset", None) or "fast")
    out["model"] = str(getattr(cfg, "model", None) or "compact")
    out["n_users"] = int(cfg.n_users)  # the population the numbers were measured on (not a deployment knob)
    return out


def toml_snippet(config: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> str:
    """A sweep spec holding exactly the recommended setting (``idfree-audit sweep`` accepts it)."""
    def lit(v):
        return f'"{v}"' if isinstance(v, str) else (repr(v) if isinstance(v, float) else str(v))

    fixed = {k: v for k, v in (base or {}).items()
             if k not in ("n_tokens", "device_epochs", "seed", "preset", "model") and k in _known()}
    lines = ["# recommended setting (idfree-audit report); run it with: idfree-audit sweep THIS.toml --out DIR",
             'name = "recommended"', "", "[base]", f"n_tokens = {config['n_tokens']}",
             f"preset = {lit(config['preset'])}"]
    if "epochs" in config:
        lines.append(f"device_epochs = {config['epochs']}")
    lines += [f"{k} = {lit(v)}" for k, v in sorted(fixed.items()) if isinstance(v, (str, int, float, bool))]
    lines += ["", "[grid]", f'family = ["{config["family"]}"]']
    if not get_family_spec(config["family"]).is_point_mass:
        lines.append(f"spread = [{config['spread']!r}]")
    lines += [f"lr = [{config['lr']!r}]", f"clip = [{config['clip']!r}]"]
    if "steps" in config:
        lines.append(f"steps = [{config['steps']}]")
    if config.get("n_users") is not None:
        lines.append(f"n_users = [{int(config['n_users'])}]")
    lines.append(f"model = [{lit(config.get('model', 'compact'))}]")
    return "\n".join(lines) + "\n"


def simulate_args(config: Mapping[str, Any]) -> list[str]:
    """The same setting as ``idfree-audit simulate`` flags."""
    args = ["--family", config["family"], "--model", config.get("model", "compact"), "--preset", config["preset"]]
    spec = get_family_spec(config["family"])
    if spec.spread_field is not None:  # the family's spread knob: its own flag, else --set FIELD=VALUE
        setting = spec.setting_from_spread(config["spread"])
        flag = SIMULATE_SPREAD_FLAGS.get(spec.spread_field)
        args += [flag, repr(setting)] if flag else ["--set", f"{spec.spread_field}={setting!r}"]
    args += ["--device-lr", repr(config["lr"]), "--device-clip", repr(config["clip"])]
    args += ["--device-steps", str(config["steps"])] if "steps" in config else ["--set",
                                                                                 f"device_epochs={config['epochs']}"]
    if config.get("n_users") is not None:
        args += ["--users", str(int(config["n_users"]))]
    return args + ["--set", f"n_tokens={config['n_tokens']}"]
