"""Figure content: axis labels, number of plotted points, legend entries (fake sweep rows)."""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from reports import figures, pareto
from reports.sweep import SweepSpec, point_id
from reports.sweep.results import results_frame

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fake point functions (_fake_points.py)

SPEC = """
[grid]
family = ["gaussian", "beta", "static"]
spread = [0.02, 0.08, 0.16, 0.32]
n_users = [6]
seed = [0]
"""


@pytest.fixture(scope="module")
def rows():
    out = []
    for i, config in enumerate(SweepSpec.from_toml_string(SPEC).points()):
        metrics = importlib.import_module("_fake_points").fake_point(config)
        arts = metrics.pop("artifacts")
        out.append({"point_id": point_id(config), "index": i, "config": config, "status": "ok",
                    "metrics": metrics, "error": None, "elapsed_s": 0.0, "artifacts": arts})
    return out


@pytest.fixture(scope="module")
def frame(rows):
    return results_frame(rows)


def _errorbars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_pareto_figure_content(frame):
    fig = figures.pareto_figure(frame)
    axes = fig.get_axes()
    assert len(axes) == 2
    assert "re-identification advantage A" in axes[0].get_xlabel() and "more private" in axes[0].get_xlabel()
    assert "Bayes misattribution" in axes[1].get_xlabel()
    for ax, metric in zip(axes, ("reid_advantage", "misattribution")):
        assert ax.get_ylabel() == "IDfree-PL accuracy"
        bars = _errorbars(ax)
        n_points = sum(len(c.lines[0].get_xdata()) for c in bars)
        assert n_points == len(frame)  # every finished point is drawn once
        marked = pareto.mark_frontier(frame, "accuracy", metric)
        faded = sum(len(c.lines[0].get_xdata()) for c in bars if c.lines[0].get_alpha() == 0.25)
        assert faded == int((~marked["on_frontier"]).sum()) > 0
        legend = _legend(ax)
        assert "Pareto frontier" in legend and "knee of this frontier" in legend and "static" in legend
        # the frontier line joins exactly the non-dominated points
        line = next(ln for ln in ax.get_lines() if ln.get_label() == "Pareto frontier")
        assert len(line.get_xdata()) == int(marked["on_frontier"].sum())


def test_accuracy_figure_content(frame):
    ax = figures.accuracy_figure(frame).get_axes()[0]
    legend = _legend(ax)
    assert {"central (no personalization)", "static embedding (ID-equivalent)", "IDfree-PL (beta)",
            "IDfree-PL (gaussian)"} <= set(legend)
    assert ax.get_ylabel() == "test accuracy" and "spread" in ax.get_xlabel()
    assert [len(c.lines[0].get_xdata()) for c in _errorbars(ax)] == [4, 4]


def test_embedding_figure_separation(rows):
    picks = [r for r in rows if r["config"]["family"] == "static"] + \
            [r for r in rows if r["config"]["family"] == "gaussian" and r["config"]["spread"] == 0.32]
    samples = [(r["config"]["family"], r["artifacts"]["embedding"], r["artifacts"]["user"]) for r in picks]
    fig = figures.embedding_figure(samples, random_state=0)
    axes = fig.get_axes()
    assert len(axes) == 2
    sil = []
    for ax, (_, emb, user) in zip(axes, samples):
        assert sum(len(c.get_offsets()) for c in ax.collections) == len(emb)
        assert len(_legend(ax)) == len(np.unique(user))
        assert ax.get_xlabel() == "t-SNE 1"
        sil.append(float(ax.get_title().rsplit(" ", 1)[-1]))
    assert sil[0] > 0.8 > sil[1]  # static users separate, widely sampled ones mix
    big = figures.embedding_figure([("big", np.random.default_rng(0).normal(size=(50, 5)), np.arange(50) % 3)],
                                   tsne_max=20)
    assert big.get_axes()[0].get_xlabel() == "PCA 1"


def test_attack_figure_content(frame, rows):
    import pandas as pd

    attacks = pd.DataFrame([{**a, "family": r["config"]["family"], "spread": r["config"]["spread"]}
                            for r in rows for a in r["metrics"]["attacks"]])
    roc = [(r["config"]["family"], r["artifacts"]["roc_fpr"], r["artifacts"]["roc_tpr"]) for r in rows[:2]]
    ax_roc, ax_clu, ax_ceil = figures.attack_figure(frame, attacks, roc).get_axes()
    assert len(ax_roc.get_lines()) == len(roc) + 1 and ax_roc.get_xscale() == "log"
    assert all("TPR@1%FPR" in t for t in _legend(ax_roc)[:2])
    chance = ax_roc.get_lines()[-1]
    assert np.allclose(chance.get_xdata(), chance.get_ydata()) and len(chance.get_xdata()) > 50
    assert sum(len(c.get_offsets()) for c in ax_ceil.collections) == attacks["ceiling"].notna().sum()
    assert ax_ceil.get_xlabel() == "Bayes-optimal ceiling"
    assert set(_legend(ax_clu)) == {"beta ARI", "gaussian ARI", "static ARI"}


def test_render_math_and_theory_figure(frame):
    good = r"\mathrm{B}(a,b) = \frac{a}{a+b}\,\mathrm{B}(a+1,b) + \frac{b}{a+b}\,\mathrm{B}(a,b+1)"
    assert figures.render_math(good).startswith("$") and figures.render_math(r"\begin{equation}x^2\end{equation}") == "$x^2$"
    assert figures.render_math(r"\unknowncommand{x") is None
    block = "% a comment\nf(x) = x^2\n\\begin{equation}\na + b = 0\n\\end{equation}\n\\nosuch{"
    assert figures.latex_lines(block) == [("$f(x) = x^2$", True), ("$a + b = 0$", True), ("\\nosuch{", False)]
    verdicts = [{"family": "beta", "text": "linearly dependent", "latex": good},
                {"family": "gaussian", "text": "independent", "latex": r"\notacommand{"}]
    fig = figures.theory_figure(verdicts, frame)
    ax_text, ax_bound = fig.get_axes()
    texts = [t.get_text() for t in ax_text.texts]
    assert any(t.startswith("beta: linearly dependent") for t in texts)
    assert any(t.startswith("gaussian: independent") for t in texts)
    assert figures.render_math(good) in texts  # typeset as an equation
    assert r"\notacommand{" in texts  # fallback: plain text
    n_bound = frame["proximity_bound"].notna().sum()
    assert sum(len(c.lines[0].get_xdata()) for c in _errorbars(ax_bound)) == n_bound
    assert ax_bound.get_ylabel() == "proximity lower bound"


def test_entropy_figure_and_tables(rows, frame):
    bins = rows[0]["metrics"]["entropy_bins"] + [{"lo": 1.0, "hi": 2.0, "n": 0, "accuracy": None, "ci": None}]
    ax = figures.entropy_figure([("a", bins), ("b", rows[1]["metrics"]["entropy_bins"])]).get_axes()[0]
    assert [len(c.lines[0].get_xdata()) for c in _errorbars(ax)] == [4, 4]  # empty bin skipped
    assert ax.get_ylabel() == "accuracy in bin" and len(_legend(ax)) == 2
    pages = figures.table_figure(frame, ["family", "spread", "accuracy"], "T", ci=["accuracy"], max_rows=4)
    assert len(pages) == int(np.ceil(len(frame) / 4))
    text = pages[0].texts[1].get_text()
    assert "family" in text and "gaussian" in text and f"{frame['accuracy'][0]:.3f} [" in text


def test_one_accuracy_line_per_family_and_varying_knob(frame):
    import pandas as pd

    two = pd.concat([frame.assign(lr=0.003), frame.assign(lr=0.03)], ignore_index=True)
    ax = figures.accuracy_figure(two).get_axes()[0]
    labels = [t for t in _legend(ax) if t.startswith("IDfree-PL")]
    assert sorted(labels) == ["IDfree-PL (beta, lr=0.003)", "IDfree-PL (beta, lr=0.03)",
                              "IDfree-PL (gaussian, lr=0.003)", "IDfree-PL (gaussian, lr=0.03)"]
    assert [t for t in _legend(ax) if t.startswith("static")] == [
        "static embedding (ID-equivalent, lr=0.003)", "static embedding (ID-equivalent, lr=0.03)"]
