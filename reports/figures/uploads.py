"""Many uploads per device: Bayes misattribution against the number of linked uploads, per setting.

One panel per family, one line per setting (numbered as in the per-setting table), with 95% CIs.
The per-upload value (``m = 1``) is the point's ``misattribution``; ``m > 1`` comes from
``misattribution_m<m>`` (:mod:`reports.sweep.theory`, Bayes-optimal attribution of ``m`` uploads
known to share a user).  Where every setting's curve falls, the per-upload figure overstates the
protection against an adversary who can link a device's uploads (a session, a writing style).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reports.figures.tradeoff import FAMILY_COLORS, LINESTYLES, MARKERS, PAGE
from reports.sweep.theory import upload_counts


def curve(row: pd.Series, ms: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(m, value, lo, hi)`` for one setting, ``m = 1`` first; NaN where not measured."""
    cols = ["misattribution"] + [f"misattribution_m{m}" for m in ms]
    get = lambda c: float(row.get(c, np.nan)) if pd.notna(row.get(c, np.nan)) else np.nan  # noqa: E731
    return (np.array([1] + ms, float), np.array([get(c) for c in cols]),
            np.array([get(f"{c}_lo") for c in cols]), np.array([get(f"{c}_hi") for c in cols]))


def uploads_figure(settings: pd.DataFrame) -> Figure | None:
    """The page described in the module docstring, or None when no setting has a multi-upload value."""
    ms = upload_counts(settings.columns)
    if not ms:
        return None
    rows = [(fam, r) for fam, r in ((r["family"], r) for _, r in settings.iterrows())
            if np.isfinite(curve(r, ms)[1][1:]).any()]
    if not rows:
        return None
    families = sorted({fam for fam, _ in rows})
    fig = Figure(figsize=PAGE, layout="constrained")
    fig.set_label("Many uploads per device")
    axes = np.atleast_1d(fig.subplots(1, len(families), sharey=True, squeeze=False)[0])
    for ax, name in zip(axes, families):
        mine = [r for fam, r in rows if fam == name]
        for i, r in enumerate(mine):
            m, v, lo, hi = curve(r, ms)
            keep = np.isfinite(v)
            err = np.nan_to_num(np.vstack([np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)]))[:, keep]
            label = f"#{r.get('number', i + 1)} spread={r.get('spread', float('nan')):.3g}"
            if "lr" in r and pd.notna(r["lr"]):
                label += f", lr={r['lr']:.3g}"
            ax.errorbar(m[keep], v[keep], yerr=err, marker=MARKERS[i % len(MARKERS)],
                        ls=LINESTYLES[i % len(LINESTYLES)], capsize=3, color=FAMILY_COLORS.get(name, "grey"),
                        alpha=0.35 + 0.65 * (i + 1) / len(mine), label=label)
        ax.set_xscale("log")
        ax.set_xticks([1] + ms, [str(x) for x in [1] + ms])
        ax.set_xlabel("uploads linked to one device (m)")
        ax.set_title(f"{name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel("Bayes misattribution (95% CI)")
    fig.suptitle("Misattribution when an adversary links m uploads of one device (per setting)")
    return fig
