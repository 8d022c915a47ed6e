"""The trade-off figures: Pareto frontiers (error bars both ways), accuracies, text tables.

Pareto panels plot IDfree-PL accuracy (y) against a privacy metric (x) for every finished point;
frontier points (``reports.pareto.mark_frontier``) are opaque and joined, dominated ones faded
(alpha 0.25), the knee (``reports.pareto.knee``) is starred.  Tables are drawn as monospaced
``fig.text`` so that the PDF carries them as text (``pdftotext`` finds them).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from idfree_core.families import point_mass_families
from reports import pareto

_PALETTE = sns.color_palette("colorblind", 3)
FAMILY_COLORS = {"beta": _PALETTE[0], "gaussian": _PALETTE[1], "static": _PALETTE[2]}
PAGE = (11.0, 8.5)  # landscape letter, inches


def _err(frame: pd.DataFrame, col: str) -> np.ndarray:
    v, lo, hi = (frame[c].to_numpy(float) for c in (col, f"{col}_lo", f"{col}_hi"))
    return np.nan_to_num(np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)]))


def varying_knobs(frame: pd.DataFrame) -> list[str]:
    """The training knobs (lr, clip, steps, n_users) that take more than one value in ``frame``."""
    return [k for k in ("lr", "clip", "steps", "n_users") if k in frame and frame[k].nunique(dropna=True) > 1]


def series(frame: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """``(family, label, rows)`` per family and per value of each knob that varies (lr, clip, steps, users)."""
    knobs = varying_knobs(frame)
    out = []
    for key, group in frame.groupby(["family"] + knobs, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        extra = ", ".join(f"{k}={v:g}" for k, v in zip(knobs, key[1:]) if pd.notna(v))
        out.append((key[0], f"{key[0]}" + (f", {extra}" if extra else ""), group))
    return out


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))


def outside_legend(ax, **kw) -> None:
    """A legend to the right of the axes, never over the data (constrained layout makes room)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                  fontsize=kw.pop("fontsize", 8), **kw)


def knob_styles(frame: pd.DataFrame) -> tuple[list[str], dict[tuple, tuple[str, object]]]:
    """``(knobs, {values: (marker, linestyle)})``: one distinct marker and line style per combination of
    the knobs other than family and spread (lr, clip, steps, n_users) that vary in ``frame``."""
    knobs = varying_knobs(frame)
    combos = sorted({tuple(r) for r in frame[knobs].itertuples(index=False)}, key=str) if knobs else [()]
    return knobs, {c: (MARKERS[i % len(MARKERS)], LINESTYLES[i % len(LINESTYLES)]) for i, c in enumerate(combos)}


def _combo_label(knobs, combo) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in zip(knobs, combo) if pd.notna(v))


def pareto_figure(frame: pd.DataFrame, privacy: Sequence[str] = ("reid_advantage", "misattribution"),
                  utility: str = "accuracy") -> Figure:
    """One panel per privacy metric: utility against privacy, frontier opaque, dominated faded.

    Colour = family, marker = the other swept knobs (``knob_styles``); each point carries its
    number (column ``number`` when given, else its row position + 1), keyed to the settings table.
    """
    fig = Figure(figsize=PAGE, layout="constrained")
    axes = fig.subplots(1, len(privacy), squeeze=False)[0]
    frame = frame.reset_index(drop=True)
    numbers = frame["number"] if "number" in frame else pd.Series(range(1, len(frame) + 1))
    knobs, styles = knob_styles(frame)
    for ax, metric in zip(axes, privacy):
        marked = pareto.mark_frontier(frame, utility, metric)
        for (family, *combo), group in marked.groupby(["family"] + knobs, sort=True, dropna=False):
            color = FAMILY_COLORS.get(family, "grey")
            marker = styles.get(tuple(combo), ("o", "-"))[0]
            extra = _combo_label(knobs, combo)
            for on, alpha in ((True, 1.0), (False, 0.25)):
                part = group[group["on_frontier"] == on]
                if part.empty:
                    continue
                ax.errorbar(part[metric], part[utility], xerr=_err(part, metric), yerr=_err(part, utility),
                            fmt=marker, color=color, alpha=alpha, capsize=2, ms=6,
                            label=f"{family}" + (f", {extra}" if extra else "") + ("" if on else " (dominated)"))
        for i, row in marked.iterrows():
            if np.isfinite(row[metric]) and np.isfinite(row[utility]):
                ax.annotate(str(numbers.iloc[i]), (row[metric], row[utility]), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
        front = marked[marked["on_frontier"]].sort_values(metric)
        if len(front):
            ax.plot(front[metric], front[utility], "-", color="black", lw=1, label="Pareto frontier")
            k = pareto.knee(front[[utility, metric]].to_numpy(float), (pareto.direction(utility), pareto.direction(metric)))
            ax.plot(front[metric].iloc[k], front[utility].iloc[k], "*", ms=16, color="crimson",
                    mec="black", label="knee of this frontier", zorder=5)
        better = "higher" if pareto.direction(metric) == "higher" else "lower"
        ax.set_xlabel(f"{pareto.LABELS.get(metric, metric)} ({better} = more private)")
        ax.set_ylabel(pareto.LABELS.get(utility, utility))
        ax.set_title(f"accuracy vs {pareto.LABELS.get(metric, metric)}", fontsize=10)
        ax.grid(alpha=0.3)
        outside_legend(ax, fontsize=7)
    fig.suptitle("Privacy-utility trade-off (error bars: 95% CIs; numbers = rows of the settings table)\n"
                 "A = (attack score - chance) / (1 - chance) of the strongest single-upload attribution or "
                 "multi-upload linkage attack", fontsize=10)
    return fig


def accuracy_figure(frame: pd.DataFrame) -> Figure:
    """Accuracy of IDfree-PL per family against spread, with central and static baselines (CIs)."""
    fig = Figure(figsize=PAGE, layout="constrained")
    ax = fig.subplots()
    sampled = frame[~frame["family"].isin(point_mass_families())]
    knobs, styles = knob_styles(frame)
    for family, label, group in series(sampled):
        combo = tuple(group.iloc[0][k] for k in knobs)
        marker, ls = styles.get(combo, ("o", "-"))
        g = group.groupby("spread", as_index=False)[["accuracy", "accuracy_lo", "accuracy_hi"]].mean()
        ax.errorbar(g["spread"], g["accuracy"], yerr=_err(g, "accuracy"), marker=marker, ls=ls, capsize=3,
                    color=FAMILY_COLORS.get(family, "grey"), label=f"IDfree-PL ({label})")
    xmin, xmax = (sampled["spread"].min(), sampled["spread"].max()) if len(sampled) else (0, 1)

    def band(rows, col, label, color, style):
        v, lo, hi = (np.nanmean(rows[c].to_numpy(float)) for c in (col, f"{col}_lo", f"{col}_hi"))
        if np.isfinite(v):
            ax.axhline(v, ls=style, color=color, label=label)
            ax.axhspan(lo, hi, color=color, alpha=0.08)

    if "accuracy_central" in frame:
        band(frame, "accuracy_central", "central (no personalization)", "black", "--")
    if "accuracy_static" in frame:  # one static baseline per value of the varying knobs (e.g. lr)
        groups = frame.groupby(knobs, sort=True) if knobs else [((), frame)]
        for i, (key, rows) in enumerate(groups):
            key = key if isinstance(key, tuple) else (key,)
            extra = _combo_label(knobs, key)
            band(rows, "accuracy_static", "static embedding (ID-equivalent" + (f", {extra})" if extra else ")"),
                 FAMILY_COLORS["static"], LINESTYLES[(i + 1) % len(LINESTYLES)])
    if len(sampled) and xmin > 0 and xmax / xmin > 8:
        ax.set_xscale("log")
    ax.set_xlabel("embedding spread (Gaussian std / Beta spread)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy: central, static and IDfree-PL (95% CIs)")
    ax.grid(alpha=0.3)
    outside_legend(ax, fontsize=8)
    return fig


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return ("inf" if value == np.inf else "-") if not np.isfinite(value) else f"{value:.4g}"
    return str(value)


def format_table(frame: pd.DataFrame, columns: Sequence[str], ci: Sequence[str] = ()) -> str:
    """Fixed-width text of ``columns``; a metric in ``ci`` is shown as ``v [lo, hi]``."""
    out = pd.DataFrame(index=frame.index)
    for col in columns:
        if col in ci:
            out[col] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(v) else "-" for v, lo, hi in
                        frame[[col, f"{col}_lo", f"{col}_hi"]].to_numpy(float)]
        else:
            out[col] = [_fmt(v) for v in frame[col]]
    return out.to_string(index=False)


def text_page(title: str, body: str, fontsize: float = 9.0, monospace: bool = False) -> Figure:
    """A page of text (title + body) drawn as real text."""
    fig = Figure(figsize=PAGE)
    fig.set_label(title)
    fig.text(0.05, 0.94, title, fontsize=16, weight="bold", va="top")
    fig.text(0.05, 0.88, body, fontsize=fontsize, va="top", family="monospace" if monospace else None,
             wrap=not monospace)
    return fig


def table_figure(frame: pd.DataFrame, columns: Sequence[str], title: str, ci: Sequence[str] = (),
                 note: str = "", max_rows: int = 40) -> list[Figure]:
    """The table as monospaced text, split over pages of ``max_rows`` rows."""
    pages = []
    for start in range(0, max(len(frame), 1), max_rows):
        chunk = frame.iloc[start:start + max_rows]
        text = format_table(chunk, columns, ci)
        suffix = "" if len(frame) <= max_rows else f" (rows {start + 1}-{start + len(chunk)} of {len(frame)})"
        body = text + ("\n\n" + note if note else "")
        size = 8.5 if max(map(len, text.splitlines() or [""])) < 150 else 6.5
        pages.append(text_page(title + suffix, body, fontsize=size, monospace=True))
    return pages
