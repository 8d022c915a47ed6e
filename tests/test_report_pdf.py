"""The PDF report: at least 6 pages, every section present, the frontier table as extractable text."""

import sys
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader

from idfree_core.errors import InputError
from reports import pareto
from reports.pdf import write_report
from reports.sweep import ResultsStore, SweepSpec, run_sweep
from reports.sweep.results import results_frame

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fake point functions (_fake_points.py)

SPEC = """
name = "pdf-test"
[grid]
family = ["gaussian", "beta", "static"]
spread = [0.02, 0.1, 0.3]
n_users = [5]
seed = [0]
"""
VERDICTS = [{"family": "beta", "text": "linearly dependent: finite Beta mixtures are not identifiable",
             "latex": r"\mathrm{B}(a,b) = \frac{a}{a+b}\mathrm{B}(a+1,b) + \frac{b}{a+b}\mathrm{B}(a,b+1)"},
            {"family": "gaussian", "text": "linearly independent", "latex": None}]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pdf")
    spec = SweepSpec.from_toml_string(SPEC)
    run_sweep(spec, tmp / "res", workers=1, point_fn="_fake_points:fake_point", progress=False)
    info = write_report(tmp / "res", tmp / "report.pdf", verdicts=VERDICTS)
    reader = PdfReader(tmp / "report.pdf")
    pages = [p.extract_text() for p in reader.pages]
    with ResultsStore(tmp / "res", create=False) as store:
        frame = results_frame(store.rows())
    return tmp, spec, info, pages, frame


def test_at_least_six_pages_with_every_section(report):
    _, spec, info, pages, _ = report
    assert len(pages) == info["pages"] >= 6
    text = "\n".join(pages)
    for needle in ("IDfree-PL privacy audit: sweep report", spec.spec_hash, "Versions:", "numpy",
                   "Executive summary", "RECOMMENDED SETTING", "CAVEATS", "well separated",
                   "Privacy-utility trade-off", "Frontier table: accuracy vs misattribution",
                   "Frontier table: accuracy vs reid_advantage", "Scorecard", "Most exposed users", "CONTENTS",
                   "PROVENANCE", "Git commit", "page 2 of", "Per-setting results",
                   "Accuracy: central, static and IDfree-PL", "Pooled upload embeddings", "linkage ROC",
                   "each attack against its ceiling", "identifiability of finite mixtures",
                   "proximity lower bound", "Accuracy by prediction-entropy bin", "pdf-test",
                   "Misattribution when an adversary links m uploads", "uploads linked to one device",
                   "Deployment identifiability, linked uploads and DP terms", "Allman, Matias and Rhodes",
                   "deployment_identifiable", "dp_epsilon_m20", "proximity_tightness", "proximity_bound_observed"):
        assert needle in text, needle


def test_multi_upload_columns_and_deployment_verdicts_reach_the_frame(report):
    *_, frame = report
    sampled = frame[frame["family"] != "static"]
    # the fake errors fall with m; the columns carry the stored numbers, not defaults
    assert (sampled["misattribution_m20"] < sampled["misattribution_m5"]).all()
    assert (sampled["misattribution_m5"] <= sampled["misattribution"] + 1e-12).all()
    np.testing.assert_allclose(sampled["misattribution_m20_hi"] - sampled["misattribution_m20"], 0.02, atol=1e-9)
    assert set(sampled["deployment_identifiable"]) == {1.0}
    assert frame.loc[frame["family"] == "static", "deployment_identifiable"].isna().all()
    tight = sampled["proximity_tightness"].to_numpy(float)
    np.testing.assert_allclose(tight[sampled["misattribution"].to_numpy(float) > 0], 0.5)
    observed = sampled["proximity_tightness_observed"].to_numpy(float)
    np.testing.assert_allclose(observed[sampled["misattribution"].to_numpy(float) > 0], 0.8)


def test_frontier_table_is_text(report):
    _, _, info, pages, frame = report
    table_page = next(p for p in pages[1:] if "Frontier table: accuracy vs misattribution" in p)
    from reports.recommend import aggregate_seeds

    table = pareto.frontier_table(aggregate_seeds(frame))
    lines = table_page.splitlines()
    for _, row in table.iterrows():
        acc = f"{row['accuracy']:.3f} [{row['accuracy_lo']:.3f}, {row['accuracy_hi']:.3f}]"
        mis = f"{row['misattribution']:.3f} [{row['misattribution_lo']:.3f}, {row['misattribution_hi']:.3f}]"
        match = [ln for ln in lines if acc in ln and mis in ln]
        assert len(match) == 1 and row["family"] in match[0]
        assert ("<= knee" in match[0]) == bool(row["knee"])
    rec = info["recommended"]
    summary = next(p for p in pages[1:] if "Executive summary" in p)
    assert f"family={rec['family']}" in summary and f"{100 * rec['accuracy']:.1f}%" in summary
    marked = pareto.mark_frontier(aggregate_seeds(frame))
    assert (f"{int(marked['on_frontier'].sum())} of {len(frame)} settings are Pareto-optimal (accuracy vs "
            f"misattribution); {int(marked['ci_dominated'].sum())} are dominated even allowing for their 95% "
            "CIs") in " ".join(summary.split())


def test_failed_report_leaves_existing_pdf_untouched(tmp_path):
    target = tmp_path / "report.pdf"
    target.write_bytes(b"old")
    with ResultsStore(tmp_path / "empty") as store:
        store.bind("h", {})
    with pytest.raises(InputError, match="no finished sweep points"):
        write_report(tmp_path / "empty", target, verdicts=VERDICTS)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "report.pdf"]  # no temp file left
    with pytest.raises(InputError, match="no sweep results"):
        write_report(tmp_path / "nowhere", target, verdicts=VERDICTS)


def test_failed_points_get_their_own_page(tmp_path):
    spec = SweepSpec.from_toml_string(SPEC.replace("[grid]", f"[base]\ncalls_file = \"{tmp_path / 'c'}\"\n"
                                                             "fail_family = \"beta\"\n[grid]"))
    run_sweep(spec, tmp_path / "res", workers=1, point_fn="_fake_points:counting_point", progress=False)
    write_report(tmp_path / "res", tmp_path / "r.pdf", verdicts=VERDICTS)
    text = "\n".join(p.extract_text() for p in PdfReader(tmp_path / "r.pdf").pages)
    assert "Failed points (3; retried on the next run)" in text
    assert text.count("error: ValueError: deliberate failure for beta") == 3
    assert "3 sweep point(s) failed" in text
