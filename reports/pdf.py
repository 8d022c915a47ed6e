"""The multi-page PDF report of a sweep (matplotlib ``PdfPages``), written atomically.

Pages: title with table of contents and provenance; the scorecard (``reports.scorecard``, one row
per threat with PASS / FAIL / INCONCLUSIVE under the policy); executive summary with the
deployable recommendation (``reports.recommend``) as a TOML snippet; Pareto frontiers on the one
privacy axis (normalised re-identification advantage A) with the Bayes misattribution beside it;
frontier and settings tables as real text; most exposed users; accuracies; pooled embeddings
(static, lowest and highest spread, and the recommended setting); attack panels; theory panel;
accuracy by entropy bin.  Every page carries "page i of n".  Every number comes from the
results store via :func:`reports.analysis.analyse`.
"""

from __future__ import annotations

import datetime as _dt
import glob
import io
import textwrap
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages

from idfree_core.atomic import atomic_path
from idfree_core.families import FAMILY_SPECS, point_mass_families
from reports import figures, pareto
from reports.analysis import Analysis, analyse
from reports.figures.tradeoff import varying_knobs
from reports.policy import Policy
from reports.provenance import provenance_text
from reports.summary import exposure_text, scorecard_text, setting_text, summary_text
from reports.sweep.store import ResultsStore
from reports.sweep.theory import dp_columns, upload_counts


def _family_verdicts(families: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for name in families:
        spec = FAMILY_SPECS.get(name)
        if spec is not None and spec.is_point_mass:
            out.append({"family": name, "text": "a point mass per user: identical to an identifier", "latex": None})
            continue
        try:
            from privacy_audit.families import get_family
            from privacy_audit.identifiability import decide

            v = decide(get_family(spec.identifiability if spec is not None and spec.identifiability else name))
            out.append({"family": name, "text": v.to_text(), "latex": v.to_latex()})
        except Exception as exc:  # the theory panel reports what it could not compute
            out.append({"family": name, "text": f"verdict unavailable: {type(exc).__name__}: {exc}", "latex": None})
    return out


def _pick_points(frame: pd.DataFrame, recommended: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, point_id): the static point, the lowest and highest spread of the series whose
    misattribution changes most across spread, and a point of the recommended setting."""
    picks = []
    point_mass = frame["family"].isin(point_mass_families())
    static = frame[point_mass]
    if len(static):
        picks.append((str(static.iloc[0]["family"]), static.iloc[0]["point_id"]))
    sampled = frame[~point_mass].dropna(subset=["spread"])
    if len(sampled):
        ranked = sorted(figures.series(sampled), key=lambda s: -float(np.ptp(s[2]["misattribution"].to_numpy(float))))
        _, label, g = ranked[0]
        g = g.sort_values(["spread", "seed"] if "seed" in g else ["spread"])
        for row in (g.iloc[0], g.iloc[-1]):
            if row["point_id"] not in [p for _, p in picks]:
                picks.append((f"{label}, spread {row['spread']:g}", row["point_id"]))
    rec = recommended["point_ids"][0]
    picks = [(lab, pid) for lab, pid in picks if pid != rec][:3]
    picks.append((f"RECOMMENDED ({recommended['point_id']})", rec))
    return picks


def _numbered(settings: pd.DataFrame) -> pd.DataFrame:
    out = settings.copy()
    out.insert(0, "number", range(1, len(out) + 1))
    return out


DEPLOYMENT_NOTE = (
    "deployment_identifiable: 1 = the mixture of these K trained users is identifiable with K known, certified by "
    "Kruskal ranks of three coordinate blocks (Allman, Matias and Rhodes 2009); 0 = provably not (e.g. two "
    "identical users); '-' = unknown; a fraction = certified for that share of seeds. Family-level "
    "non-identifiability (mixtures of unbounded order) does not protect a deployment with a known number of "
    "users. misattribution_m<m>: Bayes misattribution when m uploads are known to share a device. "
    "chernoff_rate: nats per linked upload at which that error decays. dp_epsilon_m<m>: the worst pair's "
    "epsilon at delta = 1e-5 over m uploads (exact mu-GDP for equal-std Gaussians, else an importance-sampled "
    "privacy-loss estimate, a lower bound on the mechanism's epsilon). Measured average misattribution implies no "
    "DP guarantee. proximity_tightness: the guaranteed proximity bound (worst case over the training "
    "constraints) as a share of the Bayes value; *_observed: the bound from what the devices actually did (the "
    "observed drift, and Fano with these users' own mutual information).")


def deployment_sections(settings: pd.DataFrame) -> list[tuple[str, Any]]:
    """The multi-upload curves and the deployment / DP table (absent from sweeps stored before them)."""
    out: list[tuple[str, Any]] = []
    curve = figures.uploads_figure(settings)
    if curve is not None:
        out.append(("Many uploads per device", curve))
    ms = upload_counts(settings.columns)
    extra = ([f"misattribution_m{m}" for m in ms] + ["chernoff_rate"]
             + dp_columns(settings.columns)
             + ["deployment_identifiable", "proximity_bound", "proximity_tightness", "proximity_bound_observed",
                "proximity_tightness_observed"])
    extra = [c for c in extra if c in settings]
    if "deployment_identifiable" in extra:
        title = "Deployment identifiability, linked uploads and DP terms"
        keys = [c for c in ("number", "family", "spread") if c in settings] + varying_knobs(settings)
        for page in figures.table_figure(settings, keys + extra, title, ci=[f"misattribution_m{m}" for m in ms],
                                         note=textwrap.fill(DEPLOYMENT_NOTE, 130)):
            out.append((title, page))
    return out


def build_pages(results_dir: str | Path, verdicts: Sequence[Mapping[str, Any]] | None = None,
                policy: Policy | None = None, argv: Sequence[str] | None = None):
    """``(pages, analysis)``: the report's figures, in page order, each labelled with its section title."""
    a = analyse(results_dir, policy, argv)
    frame, rows = a.frame, a.rows
    picks = _pick_points(frame, a.setting)
    with ResultsStore(results_dir, create=False) as store:
        arts = {pid: store.artifacts(pid) for _, pid in picks}
    ok = {r["point_id"]: r for r in rows if r["status"] == "ok"}
    n_failed = sum(r["status"] == "failed" for r in rows)
    attacks = pd.DataFrame([{**at, "family": r["config"].get("family"), "spread": r["config"].get("spread")}
                            for r in ok.values() for at in (r["metrics"].get("attacks") or [])])
    desc = next((r["metrics"].get("data_description") for r in ok.values() if r["metrics"].get("data_description")),
                "persona corpus (built-in)")
    spec = a.spec
    settings = _numbered(a.settings)
    sections: list[tuple[str, Any]] = [
        ("Scorecard", figures.text_page("Scorecard: one row per threat", scorecard_text(a), fontsize=8, monospace=True)),
        ("Executive summary and deployable recommendation",
         figures.text_page("Executive summary", summary_text(a, n_failed), fontsize=8.5)),
        ("Privacy-utility trade-off", figures.pareto_figure(settings))]
    cols = [c for c in ("number",) + pareto.SETTING_COLUMNS if c in settings and c != "seed"] + ["n_seeds"]
    for privacy in ("reid_advantage", "misattribution"):
        if not np.isfinite(settings[privacy].to_numpy(float)).any():
            continue  # not measured in this sweep (e.g. no attribution or linkage attack run)
        table = pareto.frontier_table(settings, "accuracy", privacy)
        table = table.merge(settings[["point_id", "number", "n_seeds"]], on="point_id")
        table["knee"] = np.where(table["knee"], "<= knee", "")
        title = f"Frontier table: accuracy vs {privacy}"
        for page in figures.table_figure(
                table, cols + ["accuracy", privacy, "knee"], title, ci=["accuracy", privacy],
                note=f"Non-dominated settings ({pareto.direction('accuracy')} accuracy, {pareto.direction(privacy)} "
                     f"{privacy} is better), most private first; means over seeds, 95% CIs across seeds."):
            sections.append((title, page))
    ci_cols = ["accuracy", "misattribution", "reid_advantage"]
    for page in figures.table_figure(settings, cols + ci_cols + ["proximity_bound"], "Per-setting results",
                                     ci=ci_cols, note="One row per setting (numbers as in the trade-off figure); "
                                                      "means over seeds with 95% CIs across seeds."):
        sections.append(("Per-setting results", page))
    sections.append(("Most exposed users", figures.text_page("Most exposed users (recommended setting)",
                                                             exposure_text(a), fontsize=9, monospace=True)))
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        body = "\n".join(f"{setting_text(r['config'])}\n    error: {r['error']}" for r in failed[:30])
        sections.append(("Failed points", figures.text_page(f"Failed points ({len(failed)}; retried on the next run)",
                                                            body, 8.5, True)))
    sections.append(("Accuracy", figures.accuracy_figure(frame)))
    mis = frame.set_index("point_id")["misattribution"]
    samples = [(f"{label} (misattribution {mis[pid]:.2f})", arts[pid]["embedding"], arts[pid]["user"])
               for label, pid in picks if {"embedding", "user"} <= set(arts[pid])]
    sections.append(("Pooled upload embeddings", figures.embedding_figure(samples)))
    roc = [(label, arts[pid]["roc_fpr"], arts[pid]["roc_tpr"]) for label, pid in picks
           if {"roc_fpr", "roc_tpr"} <= set(arts[pid])]
    sections.append(("Attacks", figures.attack_figure(frame, attacks, roc)))
    families = sorted(frame["family"].unique())
    sections.extend(deployment_sections(settings))
    sections.append(("Theory", figures.theory_figure(verdicts if verdicts is not None else _family_verdicts(families),
                                                     frame)))
    sections.append(("Accuracy by prediction-entropy bin", figures.entropy_figure(
        [(label, ok[pid]["metrics"].get("entropy_bins") or []) for label, pid in picks])))
    toc, seen = [], set()
    for i, (name, _) in enumerate(sections):
        if name not in seen:
            seen.add(name)
            toc.append(f"  {i + 2:>3}  {name}")
    title = "\n".join([
        f"Sweep: {spec.get('name', '?')}  {spec.get('description', '')}",
        f"Date (UTC): {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M}",
        f"Points: {len(frame)} finished, {n_failed} failed; settings: {len(a.settings)}; "
        f"results: {Path(results_dir).resolve()}",
        f"Grid: {spec.get('grid', {})}", f"Fixed settings: {spec.get('base', {})}",
        f"Attacks: {spec.get('attacks', [])}", f"Data: {desc}", "", "CONTENTS (page):"] + toc
        + ["", "PROVENANCE (to reproduce):", provenance_text(a.provenance)])
    pages = [figures.text_page("IDfree-PL privacy audit: sweep report", title, fontsize=8.5)] + [p for _, p in sections]
    return pages, a


def remove_stale_temps(out: str | Path, older_than_s: float = 600.0) -> list[Path]:
    """Delete temp files ``.<name>.*.pdf`` that an earlier killed run left beside ``out``."""
    out = Path(out)
    now, gone = time.time(), []
    if not out.parent.is_dir():
        return gone
    for p in out.parent.glob(f".{glob.escape(out.name)}.*.pdf"):
        try:
            st = p.stat()
            if st.st_size == 0 or now - st.st_mtime > older_than_s:
                p.unlink()
                gone.append(p)
        except OSError:
            continue
    return gone


def _number_pages(pages) -> None:
    n = len(pages)
    for i, fig in enumerate(pages):
        fig.text(0.98, 0.012, f"page {i + 1} of {n}", ha="right", va="bottom", fontsize=8, color="0.3")


def write_report(results_dir: str | Path, out: str | Path, verdicts: Sequence[Mapping[str, Any]] | None = None,
                 policy: Policy | None = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Write the PDF report of the sweep in ``results_dir`` to ``out`` (atomically); return a summary
    with the ``scorecard`` rows, the ``recommended`` complete config and the provenance."""
    pages, a = build_pages(results_dir, verdicts, policy, argv)
    _number_pages(pages)
    buf = io.BytesIO()  # render in memory: a kill while rendering leaves no temp file behind
    with PdfPages(buf, metadata={"Title": "IDfree-PL privacy audit", "Creator": "idfree-audit"}) as pdf:
        for fig in pages:
            pdf.savefig(fig)
    remove_stale_temps(out)
    with atomic_path(out, suffix=".pdf") as tmp:
        tmp.write_bytes(buf.getvalue())
    return {"pdf": str(out), "pages": len(pages), "recommended": a.recommended(),
            "scorecard": [r.to_dict() for r in a.scorecard], "policy": a.policy.to_dict(),
            "provenance": dict(a.provenance)}
