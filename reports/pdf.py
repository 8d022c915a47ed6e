"""The multi-page PDF report of a sweep (matplotlib ``PdfPages``), written atomically.

Pages: title and provenance; executive summary (the knee of the accuracy-misattribution
frontier as the recommended setting, with its numbers and the caveats); Pareto frontiers; the
frontier tables and the per-setting table as real text; accuracies; pooled embeddings for the
static, lowest- and highest-spread points; attack panels; theory panel; accuracy by entropy bin.
Every number comes from the results store (``reports.sweep.ResultsStore``) via
``reports.sweep.results.results_frame`` and ``reports.pareto``.
"""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages

from idfree_core.atomic import atomic_path
from idfree_core.errors import InputError
from reports import figures, pareto
from reports.sweep.results import results_frame
from reports.sweep.store import ResultsStore

LIBRARIES = ("idfree-audit", "numpy", "scipy", "torch", "scikit-learn", "pandas", "matplotlib", "seaborn",
             "sympy", "dask")
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
    "All intervals are 95% confidence intervals from the sweep's own samples; each seed is its own point.",
)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def _pct(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}%"


def _ci_text(row: Mapping[str, Any], col: str) -> str:
    return f"{_pct(row[col])} (95% CI {_pct(row[f'{col}_lo'])} to {_pct(row[f'{col}_hi'])})"


def _setting_text(row: Mapping[str, Any]) -> str:
    parts = [f"family={row.get('family')}"]
    for key in ("spread", "lr", "clip", "steps", "n_users", "seed"):
        v = row.get(key)
        if v is not None and not (isinstance(v, float) and not np.isfinite(v)):
            parts.append(f"{key}={v:g}" if isinstance(v, (int, float, np.number)) else f"{key}={v}")
    return ", ".join(parts)


def summary_text(frame: pd.DataFrame, n_failed: int = 0) -> str:
    """The executive summary in words: the recommendation, the trend and the caveats."""
    rec = pareto.recommend(frame)
    full = frame.set_index("point_id").loc[rec["point_id"]]
    lines = ["RECOMMENDED SETTING (knee of the accuracy vs Bayes-misattribution frontier):",
             f"  {_setting_text(full)}",
             f"  accuracy {_ci_text(full, 'accuracy')};",
             f"  an optimal adversary misattributes {_ci_text(full, 'misattribution')} of uploads "
             f"(the maximum possible with {int(full['n_users']) if np.isfinite(full['n_users']) else '?'} users is "
             f"{_pct(full['misattribution_max'])});",
             f"  the best attack tried ({full['best_attack']}) beats chance by {_ci_text(full, 'best_attack_advantage')}."]
    if np.isfinite(full.get("accuracy_central", np.nan)):
        lines.append(f"  Versus no personalisation (central, {_pct(full['accuracy_central'])}) this is "
                     f"{100 * (full['accuracy'] - full['accuracy_central']):+.1f} points; versus the static "
                     f"ID-equivalent embedding ({_pct(full['accuracy_static'])}) "
                     f"{100 * (full['accuracy'] - full['accuracy_static']):+.1f} points.")
        if full["accuracy_lo"] <= full["accuracy_central_hi"]:
            lines.append("  (The accuracy intervals overlap those of the central model: at this test-set size the "
                         "gain is not statistically established.)")
    marked = pareto.mark_frontier(frame)
    lines.append(f"  {int(marked['on_frontier'].sum())} of {len(marked)} points are Pareto-optimal; "
                 f"{int(marked['ci_dominated'].sum())} are dominated even allowing for their 95% CIs, the others "
                 "cannot be ruled out on at least one axis.")
    lines += ["", "TREND ACROSS THE SWEEP:"]
    for _, label, group in figures.series(frame[frame["family"] != "static"]):
        g = group.groupby("spread", as_index=False)[["accuracy", "misattribution", "misattribution_max"]].mean()
        lo, hi = g.iloc[0], g.iloc[-1]
        lines.append(f"  {label}: spread {lo['spread']:g} -> {hi['spread']:g}: misattribution "
                     f"{_pct(lo['misattribution'])} -> {_pct(hi['misattribution'])} "
                     f"(max {_pct(hi['misattribution_max'])}), accuracy {_pct(lo['accuracy'])} -> {_pct(hi['accuracy'])}.")
    static = frame[frame["family"] == "static"]
    if len(static):
        s = static.mean(numeric_only=True)
        link = [c for c in frame.columns if c.endswith(":linkage_top1")]
        link_v = float(static[link].max(axis=1).mean()) if link else float("nan")
        lines.append(f"  static (one fixed vector per user): misattribution {_pct(s['misattribution'])}, "
                     f"linkage top-1 {_pct(link_v)}: fully linkable, as an identifier would be.")
    if n_failed:
        lines.append(f"  {n_failed} sweep point(s) failed and are excluded (see the per-setting table).")
    lines += ["", "CAVEATS:"] + [f"  - {c}" for c in CAVEATS]
    return "\n".join(lines)


def _family_verdicts(families: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for family in families:
        if family == "static":
            out.append({"family": "static", "text": "a point mass per user: identical to an identifier", "latex": None})
            continue
        try:
            from privacy_audit.families import get_family
            from privacy_audit.identifiability import decide

            v = decide(get_family(family))
            out.append({"family": family, "text": v.to_text(), "latex": v.to_latex()})
        except Exception as exc:  # the theory panel reports what it could not compute
            out.append({"family": family, "text": f"verdict unavailable: {type(exc).__name__}: {exc}", "latex": None})
    return out


def _pick_points(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, point_id): the static point, and the lowest and highest spread of the sampled series
    (family and varying knobs) whose misattribution changes most across spread."""
    picks = []
    static = frame[frame["family"] == "static"]
    if len(static):
        picks.append(("static", static.iloc[0]["point_id"]))
    sampled = frame[frame["family"] != "static"].dropna(subset=["spread"])
    if len(sampled):
        ranked = sorted(figures.series(sampled), key=lambda s: -float(np.ptp(s[2]["misattribution"].to_numpy(float))))
        _, label, g = ranked[0]
        g = g.sort_values(["spread", "seed"] if "seed" in g else ["spread"])
        for row in (g.iloc[0], g.iloc[-1]):
            if row["point_id"] not in [p for _, p in picks]:
                picks.append((f"{label}, spread {row['spread']:g}", row["point_id"]))
    return picks


def build_pages(results_dir: str | Path, verdicts: Sequence[Mapping[str, Any]] | None = None):
    """The report's figures, in page order, from the store in ``results_dir``."""
    with ResultsStore(results_dir, create=False) as store:
        rows, meta, spec = store.rows(), store.meta(), store.spec() or {}
        frame = results_frame(rows)
        if frame.empty:
            raise InputError(f"{results_dir}: no finished sweep points to report")
        picks = _pick_points(frame)
        arts = {pid: store.artifacts(pid) for _, pid in picks}
    ok = {r["point_id"]: r for r in rows if r["status"] == "ok"}
    n_failed = sum(r["status"] == "failed" for r in rows)
    attacks = pd.DataFrame([{**a, "family": r["config"].get("family"), "spread": r["config"].get("spread")}
                            for r in ok.values() for a in (r["metrics"].get("attacks") or [])])
    desc = next((r["metrics"].get("data_description") for r in ok.values() if r["metrics"].get("data_description")),
                "persona corpus (built-in)")
    versions = _versions()
    title = "\n".join([
        f"Sweep: {spec.get('name', '?')}  {spec.get('description', '')}",
        f"Date (UTC): {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M}",
        f"Spec hash: {meta.get('spec_hash', '?')}",
        f"Points: {len(frame)} finished, {n_failed} failed; results: {Path(results_dir).resolve()}",
        f"Seeds: {sorted({int(s) for s in frame['seed'].dropna()}) if 'seed' in frame else 'n/a'}",
        f"Grid: {spec.get('grid', {})}", f"Fixed settings: {spec.get('base', {})}",
        f"Attacks: {spec.get('attacks', [])}", f"Data: {desc}", "", "Versions:"]
        + [f"  {k} {v}" for k, v in versions.items()])
    pages = [figures.text_page("IDfree-PL privacy audit: sweep report", title, fontsize=10),
             figures.text_page("Executive summary", summary_text(frame, n_failed), fontsize=9.5),
             figures.pareto_figure(frame)]
    ci_cols = ["accuracy", "misattribution", "best_attack_advantage"]
    settings = [c for c in pareto.SETTING_COLUMNS if c in frame]
    for privacy in ("misattribution", "best_attack_advantage"):
        table = pareto.frontier_table(frame, "accuracy", privacy)
        table["knee"] = np.where(table["knee"], "<= knee", "")
        pages += figures.table_figure(
            table, settings + ["accuracy", privacy, "knee"], f"Frontier table: accuracy vs {privacy}",
            ci=["accuracy", privacy],
            note=f"Non-dominated points ({pareto.direction('accuracy')} accuracy, {pareto.direction(privacy)} "
                 f"{privacy} is better), most private first; intervals are 95% CIs.")
    pages += figures.table_figure(frame, settings + ci_cols + ["proximity_bound"], "Per-setting results",
                                  ci=ci_cols, note="One row per finished sweep point (95% CIs).")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        body = "\n".join(f"{_setting_text(r['config'])}\n    error: {r['error']}" for r in failed[:30])
        pages.append(figures.text_page(f"Failed points ({len(failed)}; retried on the next run)", body, 8.5, True))
    pages.append(figures.accuracy_figure(frame))
    mis = frame.set_index("point_id")["misattribution"]
    samples = [(f"{label} (misattribution {mis[pid]:.2f})", arts[pid]["embedding"], arts[pid]["user"])
               for label, pid in picks if {"embedding", "user"} <= set(arts[pid])]
    pages.append(figures.embedding_figure(samples))
    roc = [(label, arts[pid]["roc_fpr"], arts[pid]["roc_tpr"]) for label, pid in picks
           if {"roc_fpr", "roc_tpr"} <= set(arts[pid])]
    pages.append(figures.attack_figure(frame, attacks, roc))
    families = sorted(frame["family"].unique())
    pages.append(figures.theory_figure(verdicts if verdicts is not None else _family_verdicts(families), frame))
    pages.append(figures.entropy_figure([(label, ok[pid]["metrics"].get("entropy_bins") or []) for label, pid in picks]))
    return pages


def write_report(results_dir: str | Path, out: str | Path,
                 verdicts: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Write the PDF report of the sweep in ``results_dir`` to ``out`` (atomically); return a summary."""
    pages = build_pages(results_dir, verdicts)
    with atomic_path(out, suffix=".pdf") as tmp:
        with PdfPages(tmp, metadata={"Title": "IDfree-PL privacy audit", "Creator": "idfree-audit"}) as pdf:
            for fig in pages:
                pdf.savefig(fig)
    with ResultsStore(results_dir, create=False) as store:
        frame = results_frame(store.rows())
    rec = pareto.recommend(frame)
    return {"pdf": str(out), "pages": len(pages), "recommended": rec}
