"""The report's words: scorecard page, executive summary with the deployable recommendation, exposure."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from idfree_core.families import point_mass_families
from reports import figures, pareto
from reports.scorecard import format_scorecard

CAVEATS = (
    "Misattribution is the error of the Bayes-optimal attributor that knows every user's trained "
    "distribution and the number of users; it is a property of these users on this data, not a guarantee "
    "for other populations.",
    "Non-identifiability of finite mixtures of a family (e.g. Beta) does not by itself protect users whose "
    "distributions are well separated: with a known number of users, separated components are recovered "
    "anyway (see the attack panels and the static baseline).",
    "Attacks give lower bounds on what an adversary can do; the strongest attack tried is reported, a "
    "stronger one may exist. The proximity bound holds only under its stated training assumptions "
    "(common initialisation, the listed lr, clipping norm and number of steps).",
    "All intervals are 95% confidence intervals; a setting's interval spans its seeds (mean over seeds, "
    "Student-t across seeds, never narrower than the per-seed intervals).",
)


def _pct(v) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}%"


def _ci(row: Mapping[str, Any], col: str) -> str:
    return f"{_pct(row.get(col))} (95% CI {_pct(row.get(f'{col}_lo'))} to {_pct(row.get(f'{col}_hi'))})"


def scorecard_text(a) -> str:
    """Page 2: the scorecard of the recommended setting under the policy, with plain words."""
    policy = a.policy
    head = [f"Setting scored: the recommended one ({a.setting['point_id']}, {int(a.setting['n_seeds'])} seed(s); "
            "the attack rows of all its seeds pooled, so the worst seed decides).",
            f"Policy: {policy.name} ({policy.source}); INCONCLUSIVE counts as "
            f"{'FAIL' if policy.fail_on_inconclusive else 'not failing'}.",
            "Exit codes of report/attack --policy: 0 pass, 1 policy failure (a FAIL row), 2 bad input.", ""]
    return "\n".join(head) + format_scorecard(a.scorecard)


def setting_text(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in config.items())


def summary_text(a, n_failed: int = 0) -> str:
    """The executive summary: the deployable recommendation, the trend, knobs without effect, caveats."""
    s = a.setting
    lines = ["RECOMMENDED SETTING (deployable; mean over seeds, names no seed):",
             f"  {setting_text(a.config)}",
             f"  why: {a.why}.",
             f"  accuracy {_ci(s, 'accuracy')};",
             f"  re-identification advantage A {_ci(s, 'reid_advantage')} "
             "(0 = the best attribution/linkage attack only guesses, 100% = it re-identifies every upload);",
             f"  Bayes misattribution {_ci(s, 'misattribution')} (the most possible with "
             f"{int(s['n_users']) if np.isfinite(s.get('n_users', np.nan)) else '?'} users is "
             f"{_pct(s.get('misattribution_max'))})."]
    if np.isfinite(s.get("accuracy_central", np.nan)):
        lines.append(f"  Versus no personalisation (central, {_pct(s['accuracy_central'])}) this is "
                     f"{100 * (s['accuracy'] - s['accuracy_central']):+.1f} points; versus the static "
                     f"ID-equivalent embedding ({_pct(s.get('accuracy_static'))}) "
                     f"{100 * (s['accuracy'] - s.get('accuracy_static', np.nan)):+.1f} points.")
        if s["accuracy_lo"] <= s.get("accuracy_central_hi", np.nan):
            lines.append("  (The accuracy intervals overlap those of the central model: at this test-set size the "
                         "gain is not statistically established.)")
    effects = a.effects
    if effects:
        none = [k for k, v in effects.items() if not v["effect"]]
        some = [k for k, v in effects.items() if v["effect"]]
        if none:
            lines.append(f"  No measurable effect in this sweep (every pair of settings differing only in it has "
                         f"overlapping CIs on accuracy, misattribution and A): {', '.join(none)}"
                         + (" (e.g. clipping at a norm the AdamW steps never reach)" if "clip" in none else "") + ".")
        if some:
            lines.append(f"  Knobs with a measurable effect: {', '.join(some)}.")
    marked = pareto.mark_frontier(a.settings, "accuracy", "misattribution")
    lines.append(f"  {int(marked['on_frontier'].sum())} of {len(marked)} settings are Pareto-optimal (accuracy vs "
                 f"misattribution); {int(marked['ci_dominated'].sum())} are dominated even allowing for their 95% CIs.")
    lines += ["", "AS A SWEEP SPEC (idfree-audit sweep accepts it; simulate: "
              + " ".join(a.simulate_args) + "):"]
    lines += ["  " + ln for ln in a.toml.rstrip().splitlines()]
    lines += ["", "TREND ACROSS THE SWEEP:"]
    frame = a.settings
    for _, label, group in figures.series(frame[~frame["family"].isin(point_mass_families())]):
        g = group.groupby("spread", as_index=False)[["accuracy", "misattribution", "reid_advantage"]].mean()
        lo, hi = g.iloc[0], g.iloc[-1]
        lines.append(f"  {label}: spread {lo['spread']:g} -> {hi['spread']:g}: misattribution "
                     f"{_pct(lo['misattribution'])} -> {_pct(hi['misattribution'])}, A {_pct(lo['reid_advantage'])} -> "
                     f"{_pct(hi['reid_advantage'])}, accuracy {_pct(lo['accuracy'])} -> {_pct(hi['accuracy'])}.")
    static = frame[frame["family"].isin(point_mass_families())]
    if len(static):
        st = static.mean(numeric_only=True)
        lines.append(f"  static (one fixed vector per user): misattribution {_pct(st['misattribution'])}, "
                     f"A {_pct(st.get('reid_advantage'))}: linkable as an identifier would be.")
    if n_failed:
        lines.append(f"  {n_failed} sweep point(s) failed and are excluded (see the per-setting table).")
    lines += ["", "CAVEATS:"] + [f"  - {c}" for c in CAVEATS]
    return "\n".join(lines)


def exposure_text(a) -> str:
    users = a.exposure
    if not users:
        return "No per-user measurements in this sweep (older results store, or no Monte Carlo estimate)."
    mean = float(np.nanmean([a.setting.get("misattribution", np.nan)]))
    header = ("user", "seed", "Bayes misattribution", "linkage top-1", "links")
    rows = [header] + [(u["user"], str(u.get("seed")),
                        "-" if u["misattribution"] is None else f"{u['misattribution']:.3f}",
                        "-" if u["linkage_top1"] is None else f"{u['linkage_top1']:.3f}", str(u["n_links"]))
                       for u in users]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    body = [("  ".join(c.ljust(w) for c, w in zip(r, widths))).rstrip() for r in rows]
    body.insert(1, "  ".join("-" * w for w in widths))
    worst = users[0].get("misattribution")
    return (f"Recommended setting: mean Bayes misattribution {mean:.3f}; the most exposed user "
            f"{'n/a' if worst is None else f'{worst:.3f}'}.\nLow misattribution = an optimal attributor rarely "
            "errs on this user's uploads; high linkage top-1 = this user's later uploads link to their earlier ones.\n\n"
            + "\n".join(body))
