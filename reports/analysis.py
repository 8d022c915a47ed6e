"""Everything the report says, computed once from the results store (the PDF and ``--json`` share it).

``analyse(results_dir, policy)`` returns an :class:`Analysis`: the per-point frame, the settings
aggregated across seeds (``reports.recommend``), the recommended complete config with its TOML
snippet, the scorecard of the recommended setting (``reports.scorecard``; the attack rows of all
its seeds pooled, so the worst seed decides), knobs without a measurable effect, the most exposed
users, and the provenance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from idfree_core.errors import InputError
from reports import recommend as rc
from reports.exposure import most_exposed
from reports.policy import Policy
from reports.provenance import provenance
from reports.scorecard import ScorecardRow, build_scorecard
from reports.sweep.results import results_frame
from reports.sweep.store import ResultsStore


@dataclass(frozen=True)
class Analysis:
    rows: list
    frame: pd.DataFrame
    settings: pd.DataFrame
    setting: Mapping[str, Any]          # the recommended aggregated setting
    config: Mapping[str, Any]           # its complete deployable config
    toml: str
    simulate_args: list
    scorecard: list[ScorecardRow]
    policy: Policy
    effects: Mapping[str, Any]
    exposure: list
    provenance: Mapping[str, Any]
    spec: Mapping[str, Any]
    meta: Mapping[str, str]
    why: str

    @property
    def no_effect(self) -> list[str]:
        return [k for k, v in self.effects.items() if not v["effect"]]

    def recommended(self) -> dict[str, Any]:
        """The JSON ``recommended`` entry: the complete config and its measured numbers (no null)."""
        out: dict[str, Any] = dict(self.config)
        for col in ("accuracy", "misattribution", "reid_advantage"):
            v = self.setting.get(col)
            if v is not None and math.isfinite(v):
                out[col] = float(v)
                out[f"{col}_ci"] = [float(self.setting[f"{col}_lo"]), float(self.setting[f"{col}_hi"])]
        out.update(n_seeds=int(self.setting["n_seeds"]), setting=self.setting["point_id"], why=self.why,
                   no_measurable_effect=self.no_effect, toml=self.toml, simulate_args=list(self.simulate_args))
        return out


def _n_tokens(rows: Sequence[Mapping], ids: Sequence[str]) -> int | None:
    for r in rows:
        if r["point_id"] in ids:
            n = ((r["metrics"] or {}).get("pool") or {}).get("n_tokens")
            if n:
                return int(n)
    return None


def _why(setting: Mapping[str, Any], n_candidates: int, passing: bool, privacy: str) -> str:
    seeds = int(setting["n_seeds"])
    axis = "re-identification advantage A" if privacy == "reid_advantage" else "Bayes misattribution"
    text = (f"knee of the accuracy vs {axis} frontier over {n_candidates} candidate setting(s), "
            f"each the mean over {seeds} seed(s)")
    if passing:
        text += "; only settings with no FAIL on the scorecard were candidates"
    return text + "; the static (ID-equivalent) baseline is never recommended"


def analyse(results_dir: str | Path, policy: Policy | None = None, argv: Sequence[str] | None = None) -> Analysis:
    policy = policy or Policy()
    with ResultsStore(results_dir, create=False) as store:
        rows, meta, spec = store.rows(), store.meta(), store.spec() or {}
    frame = results_frame(rows)
    if frame.empty:
        raise InputError(f"{results_dir}: no finished sweep points to report")
    ok = {r["point_id"]: r for r in rows if r["status"] == "ok"}
    settings = rc.aggregate_seeds(frame)

    def card(setting_row) -> list[ScorecardRow]:
        attacks = [a for pid in setting_row["point_ids"] for a in (ok[pid]["metrics"].get("attacks") or [])]
        return build_scorecard(attacks, policy)

    cards = {s["point_id"]: card(s) for _, s in settings.iterrows()}
    passing = [sid for sid, c in cards.items() if not any(r.verdict == "FAIL" for r in c)]
    setting = rc.pick(settings, passing)
    n_cand = len(rc.candidates(settings, passing))
    first = ok[setting["point_ids"][0]]
    config = rc.complete_config(setting, first["config"], _n_tokens(rows, setting["point_ids"]))
    seeds = sorted({int(s) for s in frame["seed"].dropna()}) if "seed" in frame else []
    users = [dict(u, seed=ok[pid]["config"].get("seed")) for pid in setting["point_ids"]
             for u in (ok[pid]["metrics"].get("per_user") or [])]
    used_passing = bool(passing) and setting["point_id"] in passing and n_cand < len(rc.candidates(settings))
    return Analysis(rows=rows, frame=frame, settings=settings, setting=setting, config=config,
                    toml=rc.toml_snippet(config, spec.get("base")), simulate_args=rc.simulate_args(config),
                    scorecard=cards[setting["point_id"]], policy=policy, effects=rc.knob_effects(frame),
                    exposure=most_exposed(users, 12), provenance=provenance(spec, meta, seeds, argv),
                    spec=spec, meta=meta, why=_why(setting, n_cand, used_passing, setting["privacy_axis"]))
