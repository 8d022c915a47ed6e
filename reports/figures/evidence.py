"""The evidence figures: pooled embeddings, attack panels, theory panel, accuracy by entropy bin.

* Embeddings: t-SNE (van der Maaten and Hinton 2008; ``sklearn.manifold.TSNE``, PCA init) of a
  seeded sample of the pool, or PCA above ``tsne_max`` rows, coloured by true user, with the
  silhouette of the true users in the original space (near 1: users separate; near 0: they mix).
* Attacks: ROC of same-user linkage scores (log FPR axis, TPR at 1% FPR in the legend), clustering
  scores (best ARI / NMI per point) against spread, each attack's value against its Bayes ceiling.
* Theory: each family's identifiability verdict, with the certificate typeset by matplotlib
  mathtext when it parses (plain text otherwise), and the proximity bound against the empirical
  (Bayes) misattribution: a valid lower bound lies on or below the diagonal.
* Entropy bins: accuracy by prediction-entropy bin with CIs (how much the sampled embedding moves
  a prediction, as in the reference implementation's analysis).
"""

from __future__ import annotations

import io
import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import mathtext
from matplotlib.figure import Figure

from attacks.base import METRICS
from reports.figures.tradeoff import FAMILY_COLORS, MARKERS, PAGE, outside_legend, series


def _project(emb: np.ndarray, method: str, random_state: int) -> tuple[np.ndarray, str]:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    emb = np.asarray(emb, dtype=np.float64)
    if emb.shape[1] <= 2:
        return np.pad(emb, ((0, 0), (0, 2 - emb.shape[1]))), "raw"
    if method == "pca":
        return PCA(n_components=2, random_state=random_state).fit_transform(emb), "PCA"
    perplexity = float(min(30.0, max(2.0, (emb.shape[0] - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state, max_iter=500,
                method="exact" if emb.shape[0] <= 400 else "barnes_hut")
    return tsne.fit_transform(emb), "t-SNE"


def user_styles(n: int) -> tuple[list, list[str]]:
    """``(colours, markers)`` for ``n`` users: the 10 ``tab10`` colours, a new marker for each further 10,
    so that no two users of a panel share a colour-marker pair."""
    palette = sns.color_palette("tab10", 10)
    return [palette[i % 10] for i in range(n)], [MARKERS[(i // 10) % len(MARKERS)] for i in range(n)]


def embedding_figure(samples: Sequence[tuple[str, np.ndarray, np.ndarray]], *, tsne_max: int = 1500,
                     max_points: int = 1500, random_state: int = 0) -> Figure:
    """One panel per ``(title, embedding (n, d), user codes (n,))``, coloured by true user."""
    from sklearn.metrics import silhouette_score

    fig = Figure(figsize=PAGE, layout="constrained")
    axes = fig.subplots(1, max(1, len(samples)), squeeze=False)[0]
    rng = np.random.default_rng(random_state)
    for ax, (title, emb, user) in zip(axes, samples):
        emb, user = np.asarray(emb), np.asarray(user)
        if len(emb) > max_points:
            keep = np.sort(rng.choice(len(emb), max_points, replace=False))
            emb, user = emb[keep], user[keep]
        xy, how = _project(emb, "tsne" if len(emb) <= tsne_max else "pca", random_state)
        users = np.unique(user)
        for color, marker, u in zip(*user_styles(len(users)), users):
            sel = user == u
            ax.scatter(xy[sel, 0], xy[sel, 1], s=12, color=color, marker=marker, alpha=0.8, label=f"user {u}")
        sil = silhouette_score(emb, user) if 1 < len(users) < len(user) else float("nan")
        ax.set_title(f"{title}\n{how}, {len(emb)} uploads, {len(users)} users\nsilhouette by user {sil:.2f}",
                     fontsize=9)
        ax.set_xlabel(f"{how} 1")
        ax.set_ylabel(f"{how} 2")
        if len(users) <= 24:  # below the panel, never over the data
            ax.legend(fontsize=6, markerscale=1.5, loc="upper left", bbox_to_anchor=(0.0, -0.12), ncol=4,
                      borderaxespad=0.0)
    fig.suptitle("Pooled upload embeddings coloured by (hidden) true user (10 colours, then a new marker: "
                 "every user has its own colour-marker pair)")
    return fig


def _below_legend(ax) -> None:
    """A legend under the axes (outside the data); nothing when there is nothing labelled."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=6, loc="upper left", bbox_to_anchor=(0.0, -0.16), borderaxespad=0.0)


def attack_figure(frame: pd.DataFrame, attacks: pd.DataFrame,
                  roc: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> Figure:
    """ROC curves, clustering scores vs spread, and attack values against their Bayes ceilings.

    ``attacks`` has one row per attack result: ``name, metric, value, ceiling, family, spread``.
    """
    fig = Figure(figsize=PAGE, layout="constrained")
    ax_roc, ax_clu, ax_ceil = fig.subplots(1, 3)
    for label, fpr, tpr in roc:
        fpr, tpr = np.asarray(fpr, float), np.asarray(tpr, float)
        at1 = float(np.interp(0.01, fpr, tpr)) if len(fpr) > 1 else float("nan")
        ax_roc.plot(np.clip(fpr, 1e-4, 1), tpr, label=f"{label}\nTPR@1%FPR {at1:.2f}")
    chance = np.logspace(-4, 0, 200)  # TPR = FPR, a curve on the log axis, not a straight line
    ax_roc.plot(chance, chance, ":", color="grey", label="chance")
    ax_roc.set_xscale("log")
    ax_roc.set_xlabel("false positive rate (pairs)")
    ax_roc.set_ylabel("true positive rate")
    ax_roc.set_title("linkage ROC")
    _below_legend(ax_roc)
    for metric, marker in (("ari", "o-"),):
        cols = [c for c in frame.columns if c.startswith("attack:") and c.endswith(f":{metric}")]
        if not cols:
            continue
        for family, label, group in series(frame.assign(best=frame[cols].max(axis=1))):
            g = group.groupby("spread", dropna=False, as_index=False)["best"].mean()
            x = g["spread"].fillna(frame["spread"].min() if frame["spread"].notna().any() else 0)
            ax_clu.plot(x, g["best"], marker, color=FAMILY_COLORS.get(family, "grey"),
                        label=f"{label} {metric.upper()}")
    spreads = frame["spread"].dropna()
    if len(spreads) and spreads.min() > 0 and spreads.max() / spreads.min() > 8:
        ax_clu.set_xscale("log")
    ax_clu.set_xlabel("spread (static drawn at the left)")
    ax_clu.set_ylabel("best clustering ARI")
    ax_clu.set_title("clustering attacks")
    _below_legend(ax_clu)
    with_ceiling = attacks.dropna(subset=["ceiling"]) if len(attacks) else attacks
    if len(with_ceiling):  # metrics on the [0, 1] "stronger attack" scale (not parameter errors)
        with_ceiling = with_ceiling[with_ceiling["metric"].map(lambda m: METRICS.get(m, False))]
    for name, group in (with_ceiling.groupby(["name", "metric"]) if len(with_ceiling) else []):
        ax_ceil.scatter(group["ceiling"], group["value"], s=18, label=f"{name[0]} ({name[1]})")
    ax_ceil.plot([0, 1], [0, 1], "k:", label="attack = Bayes ceiling")
    ax_ceil.set_xlabel("Bayes-optimal ceiling")
    ax_ceil.set_ylabel("attack value")
    ax_ceil.set_title("each attack against its ceiling")
    _below_legend(ax_ceil)
    fig.suptitle("What an adversary achieves on the pooled uploads")
    return fig


_WRAPPERS = re.compile(r"\\begin\{(equation|align)\*?\}|\\end\{(equation|align)\*?\}|\\\[|\\\]|\$\$|\\displaystyle")


def render_math(latex: str) -> str | None:
    """``$...$`` mathtext for one LaTeX expression if matplotlib can typeset it, else ``None``."""
    body = " ".join(_WRAPPERS.sub("", latex).replace("$", "").split())
    if not body:
        return None
    expr = f"${body}$"
    try:
        mathtext.math_to_image(expr, io.BytesIO(), dpi=50, format="png")
    except Exception:  # mathtext raises ValueError (and others) on unsupported LaTeX
        return None
    return expr


def latex_lines(latex: str) -> list[tuple[str, bool]]:
    """Split a multi-line LaTeX block (``%`` comments dropped, environments unwrapped) into
    ``(text, is_math)`` lines: mathtext where it parses, the raw LaTeX otherwise."""
    out = []
    for line in _WRAPPERS.sub("\n", latex).splitlines():
        line = line.strip()
        if not line or line.startswith("%"):
            continue
        math = render_math(line)
        out.append((math, True) if math is not None else (line, False))
    return out


def theory_figure(verdicts: Sequence[Mapping[str, Any]], frame: pd.DataFrame) -> Figure:
    """Identifiability verdicts (``{"family", "text", "latex"}``) and bound vs empirical misattribution."""
    fig = Figure(figsize=PAGE, layout="constrained")
    ax_text, ax_bound = fig.subplots(2, 1, height_ratios=[1, 1.3])
    ax_text.axis("off")
    y = 0.97
    for v in verdicts:
        lines = [ln.strip() for ln in str(v.get("text", "")).splitlines() if ln.strip()]
        keep = [ln for ln in lines if ln.split(":")[0] in ("verdict", "method")] or lines[:2]
        ax_text.text(0.0, y, f"{v['family']}: " + " | ".join(keep)[:150], fontsize=10, va="top", weight="bold")
        y -= 0.11
        for text, is_math in (latex_lines(v["latex"]) if v.get("latex") else [])[:3]:
            ax_text.text(0.03, y, text if is_math else text[:120], fontsize=11 if is_math else 9, va="top",
                         family=None if is_math else "monospace")
            y -= 0.15
        y -= 0.03
    ax_text.set_title("identifiability of finite mixtures (Teicher 1963; Yakowitz and Spragins 1968)")
    data = frame.dropna(subset=["proximity_bound", "misattribution"]) if "proximity_bound" in frame else frame.iloc[:0]
    for family, group in data.groupby("family", sort=True):
        ax_bound.errorbar(group["misattribution"], group["proximity_bound"],
                          xerr=np.nan_to_num(np.vstack([group["misattribution"] - group["misattribution_lo"],
                                                        group["misattribution_hi"] - group["misattribution"]]).clip(0)),
                          fmt="o", color=FAMILY_COLORS.get(family, "grey"), capsize=2, label=family)
        for _, row in group.iterrows():
            knobs = ", ".join(f"{k}={row[k]:g}" for k in ("lr", "clip", "steps") if k in row and np.isfinite(row[k]))
            if knobs and row["proximity_bound"] > 0.01:  # the zero bounds would only pile up labels
                ax_bound.annotate(knobs, (row["misattribution"], row["proximity_bound"]), fontsize=8,
                                  xytext=(3, 3), textcoords="offset points")
    top = float(np.nanmax(data[["misattribution", "proximity_bound"]].to_numpy(float))) if len(data) else 1.0
    ax_bound.plot([0, top], [0, top], "k:", label="bound = empirical")
    ax_bound.set_xlabel("empirical Bayes misattribution")
    ax_bound.set_ylabel("proximity lower bound")
    ax_bound.set_title("proximity bound (from lr, clip, steps) vs measured misattribution: valid below the diagonal")
    outside_legend(ax_bound, fontsize=9)
    return fig


def entropy_takeaway(curves: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> str:
    """One sentence: where the accuracy of the most populated curve is highest and lowest, with n."""
    usable = [(label, [b for b in bins if b.get("n", 0) > 0 and b.get("accuracy") is not None]) for label, bins in curves]
    usable = [(label, bins) for label, bins in usable if len(bins) >= 2]
    if not usable:
        return "Too few populated entropy bins to compare."
    label, bins = max(usable, key=lambda c: sum(b["n"] for b in c[1]))
    lo, hi = bins[0], bins[-1]
    trend = "falls" if hi["accuracy"] < lo["accuracy"] else "does not fall"
    return (f"Takeaway ({label}): accuracy {trend} from {lo['accuracy']:.2f} (entropy {lo['lo']:.2f}-{lo['hi']:.2f}, "
            f"n={lo['n']}) to {hi['accuracy']:.2f} (entropy {hi['lo']:.2f}-{hi['hi']:.2f}, n={hi['n']}): predictions "
            "that the sampled embedding moves most are the least reliable; bins with small n have wide CIs.")


def entropy_figure(curves: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> Figure:
    """Accuracy per prediction-entropy bin (``{"lo", "hi", "n", "accuracy", "ci"}``), one line per point;
    every bin is labelled with its n, and a takeaway sentence sits under the title."""
    fig = Figure(figsize=PAGE, layout="constrained")
    ax = fig.subplots()
    for i, (label, bins) in enumerate(curves):
        bins = [b for b in bins if b.get("n", 0) > 0 and b.get("accuracy") is not None]
        if not bins:
            continue
        x = np.array([(b["lo"] + b["hi"]) / 2 for b in bins])
        acc = np.array([b["accuracy"] for b in bins], float)
        ci = np.array([b["ci"] for b in bins], float)
        ax.errorbar(x, acc, yerr=np.vstack([acc - ci[:, 0], ci[:, 1] - acc]).clip(0), fmt=MARKERS[i % len(MARKERS)] + "-",
                    capsize=3, label=f"{label} (n={sum(b['n'] for b in bins)})")
        for xi, ai, b in zip(x, acc, bins):
            ax.annotate(f"n={b['n']}", (xi, ai), fontsize=8, xytext=(4, -10), textcoords="offset points")
    ax.set_xlabel("prediction entropy over sampled user embeddings (nats)")
    ax.set_ylabel("accuracy in bin")
    ax.set_title("Accuracy by prediction-entropy bin (95% CIs; n = test items in the bin)\n"
                 + entropy_takeaway(curves), fontsize=9, wrap=True)
    ax.grid(alpha=0.3)
    outside_legend(ax, fontsize=9)
    return fig
