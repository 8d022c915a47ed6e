"""Readable figures: a marker per knob value, legends outside the axes, no repeated colour-marker pair
within a panel, n per entropy bin, page numbers on every page."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer

from reports import figures
from reports.sweep import SweepSpec, point_id
from reports.sweep.results import results_frame

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fake point functions (_fake_points.py)

SPEC = """
[grid]
family = ["gaussian", "beta"]
spread = [0.02, 0.1, 0.3]
lr = [0.003, 0.03]
n_users = [6]
seed = [0]
"""


@pytest.fixture(scope="module")
def frame():
    rows = []
    for i, config in enumerate(SweepSpec.from_toml_string(SPEC).points()):
        metrics = importlib.import_module("_fake_points").fake_point(config)
        metrics.pop("artifacts")
        rows.append({"point_id": point_id(config), "index": i, "config": config, "status": "ok",
                     "metrics": metrics, "error": None, "elapsed_s": 0.0})
    return results_frame(rows)


def _outside(fig, ax) -> bool:
    FigureCanvasAgg(fig).draw()
    leg = ax.get_legend()
    a, b = ax.get_window_extent(), leg.get_window_extent()
    return b.x1 <= a.x0 or b.x0 >= a.x1 or b.y1 <= a.y0 or b.y0 >= a.y1


def test_pareto_markers_per_lr_numbers_and_legend_outside(frame):
    fig = figures.pareto_figure(frame)
    for ax in fig.get_axes():
        markers = {}
        for c in ax.containers:
            if isinstance(c, ErrorbarContainer):
                label = c.get_label()
                markers.setdefault("lr=0.003" in label, set()).add(c.lines[0].get_marker())
        assert markers[True].isdisjoint(markers[False])  # lr 0.003 and 0.03 never share a marker
        numbers = sorted(int(t.get_text()) for t in ax.texts)
        assert numbers == list(range(1, len(frame) + 1))  # every point numbered, keyed to the table
        assert _outside(fig, ax)


def test_accuracy_lines_differ_per_lr_and_legend_outside(frame):
    fig = figures.accuracy_figure(frame)
    ax = fig.get_axes()[0]
    styles = {}
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            line = c.lines[0]
            styles.setdefault("lr=0.003" in c.get_label(), set()).add((line.get_marker(), str(line.get_linestyle())))
    assert styles[True].isdisjoint(styles[False])
    assert _outside(fig, ax)


def test_embedding_palette_never_repeats_beyond_ten_users():
    g = np.random.default_rng(0)
    users = np.repeat(np.arange(23), 6)
    emb = g.normal(size=(users.size, 2)) + users[:, None]
    fig = figures.embedding_figure([("many", emb, users)])
    ax = fig.get_axes()[0]
    pairs = [(to_hex(c.get_facecolor()[0]), c.get_paths()[0].vertices.tobytes()) for c in ax.collections]
    assert len(pairs) == 23 and len(set(pairs)) == 23
    assert _outside(fig, ax)


def test_entropy_bins_state_n_and_a_takeaway():
    bins = [{"lo": 0.0, "hi": 0.3, "n": 120, "accuracy": 0.9, "ci": [0.85, 0.94]},
            {"lo": 0.3, "hi": 0.6, "n": 17, "accuracy": 0.6, "ci": [0.4, 0.8]}]
    fig = figures.entropy_figure([("recommended", bins)])
    ax = fig.get_axes()[0]
    texts = [t.get_text() for t in ax.texts]
    assert "n=120" in texts and "n=17" in texts
    assert "Takeaway" in ax.get_title() and "n=120" in ax.get_title() and "falls" in ax.get_title()
    assert _outside(fig, ax)


def test_report_pages_are_numbered_and_scorecard_is_page_two(tmp_path):
    from pypdf import PdfReader

    from reports.pdf import write_report
    from reports.sweep import run_sweep

    run_sweep(SweepSpec.from_toml_string(SPEC), tmp_path / "res", workers=1, point_fn="_fake_points:fake_point",
              progress=False)
    info = write_report(tmp_path / "res", tmp_path / "r.pdf",
                        verdicts=[{"family": "gaussian", "text": "independent", "latex": None}])
    pages = [p.extract_text() for p in PdfReader(tmp_path / "r.pdf").pages]
    n = len(pages)
    assert all(f"page {i + 1} of {n}" in p for i, p in enumerate(pages))
    assert pages[1].startswith("Scorecard") and "PASS" in pages[1] or "FAIL" in pages[1]
    for row in info["scorecard"]:
        assert row["verdict"] in pages[1] and f"{row['threshold']:.3f}" in pages[1]
    contents = pages[0][pages[0].index("CONTENTS"):]
    assert "2  Scorecard" in contents and "Executive summary" in contents
