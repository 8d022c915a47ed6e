"""One comparable privacy number: normalised re-identification advantage and a DP lower bound.

* **Normalised advantage** of a matched attribution accuracy or a linkage top-1 rate ``v`` with
  chance ``b``: ``(v - b) / (1 - b)``, 0 at chance and 1 for a perfect re-identification, with the
  advantage CI scaled the same way (:func:`normalised_advantage`).
* **Empirical epsilon lower bound** from linkage pair scores (Jagielski, Ullman & Oprea 2020,
  "Auditing differentially private machine learning"; the ``jax_privacy`` auditing recipe): the
  same-user / different-user pair test at a threshold ``t`` has ``TPR`` and ``FPR``; any
  ``epsilon``-DP release (here: pure DP, ``delta = 0``) satisfies ``TPR <= e^epsilon FPR``.  The
  threshold is chosen on one random half of the pairs and evaluated on the other (so the choice does
  not bias the bound); with Clopper-Pearson intervals ``[TPR_lo, TPR_hi]``, ``[FPR_lo, FPR_hi]`` at
  level ``1 - alpha/2`` each, ``epsilon >= log(TPR_lo / FPR_hi)`` holds with confidence ``1 - alpha``.
  Reported: the point value ``log(TPR / FPR)`` with the interval
  ``[log(TPR_lo / FPR_hi), log(TPR_hi / FPR_lo)]``; ``lower_bound = max(0, ci[0])``.  Under the
  null (same-user pairs score like different-user pairs) the interval contains 0.
* **Gaussian-DP mu** (Dong, Roth & Su 2022; as an audit statistic, Nasr et al. 2023, "Tight
  auditing of differentially private machine learning"): a ``mu``-GDP mechanism's ROC is
  ``TPR = Phi(Phi^{-1}(FPR) + mu)`` whose area is ``Phi(mu / sqrt 2)``, so
  ``mu = sqrt(2) Phi^{-1}(AUC)``, with the CI mapped from the AUC's CI.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from idfree_core.seeding import check_random_state

FPR_GRID = (0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001)


def _cp(k: int, n: int, alpha: float) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=1 - alpha, method="exact")
    return float(ci.low), float(ci.high)


def _log_ratio(a: float, b: float) -> float:
    return float(np.log(max(a, 1e-300) / max(b, 1e-300)))


def epsilon_lower_bound(scores: np.ndarray, same: np.ndarray, confidence: float = 0.95,
                        random_state=0) -> dict:
    """Epsilon lower bound from pair scores and same-user labels (module doc); JSON-ready dict."""
    rng = check_random_state(random_state)
    scores, same = np.asarray(scores, np.float64), np.asarray(same, bool)
    half = rng.random(scores.size) < 0.5
    alpha = (1 - confidence) / 2  # two intervals (TPR and FPR), Bonferroni

    def counts(mask, t):
        pos, neg = same & mask, ~same & mask
        return int((scores[pos] >= t).sum()), int(pos.sum()), int((scores[neg] >= t).sum()), int(neg.sum())

    neg_a = np.sort(scores[~same & half])
    if neg_a.size == 0 or not (same & half).any() or not (same & ~half).any() or not (~same & ~half).any():
        return {"value": 0.0, "ci": [0.0, 0.0], "lower_bound": 0.0, "threshold": None, "method": "no pairs"}
    best, best_t = -np.inf, None
    for f in FPR_GRID:
        t = neg_a[min(neg_a.size - 1, int(np.floor((1 - f) * neg_a.size)))]
        tp, p, fp, n = counts(half, t)
        lb = _log_ratio(_cp(tp, p, alpha)[0], _cp(fp, n, alpha)[1])
        if lb > best:
            best, best_t = lb, float(t)
    tp, p, fp, n = counts(~half, best_t)
    tpr, fpr = tp / p, fp / n
    (tlo, thi), (flo, fhi) = _cp(tp, p, alpha), _cp(fp, n, alpha)
    value = _log_ratio(tpr, fpr) if tpr > 0 and fpr > 0 else (0.0 if tpr == 0 else _log_ratio(tpr, 1.0 / n))
    ci = [min(_log_ratio(tlo, fhi), value), max(_log_ratio(thi, max(flo, 1.0 / (n + 1))), value)]
    return {"value": float(value), "ci": [float(ci[0]), float(ci[1])], "lower_bound": float(max(0.0, ci[0])),
            "threshold": best_t, "tpr": float(tpr), "fpr": float(fpr), "n_same": p, "n_different": n,
            "method": "Clopper-Pearson on TPR/FPR at a threshold chosen on the other half of the pairs "
                      "(Jagielski et al. 2020); pure DP (delta = 0)"}


def gdp_mu(auc: float, auc_ci) -> dict:
    """``mu = sqrt(2) Phi^{-1}(AUC)`` with the CI mapped from the AUC's (module doc)."""
    def mu(a):
        return float(np.sqrt(2.0) * stats.norm.ppf(np.clip(a, 1e-9, 1 - 1e-9)))

    return {"value": mu(auc), "ci": [mu(auc_ci[0]), mu(auc_ci[1])],
            "method": "Gaussian-DP mu from the ROC area, AUC = Phi(mu / sqrt 2) (Dong et al. 2022; Nasr et al. 2023)"}


def normalised_advantage(result) -> dict:
    """``(v - b) / (1 - b)`` with the advantage CI scaled alike; attack name and metric kept."""
    room = max(1.0 - result.baseline, 1e-12)
    return {"attack": result.name, "features": result.features, "metric": result.metric,
            "value": float(result.advantage / room),
            "ci": [float(result.advantage_ci[0] / room), float(result.advantage_ci[1] / room)],
            "raw": float(result.value), "chance": float(result.baseline)}


def headline(results, summary: dict | None = None) -> dict:
    """The report's one comparable privacy number and its parts (see the module doc).

    ``attribution`` / ``linkage``: the strongest normalised advantage (by its CI's lower end) over
    attribution-accuracy / linkage-top-1 results; ``epsilon``: the largest epsilon lower bound over
    the linkage attacks, and ``gdp_mu`` the matching attack's mu; ``privacy_number``: the epsilon
    lower bound (the frontier's x-axis).  ``oracle_free``: the model-predicted attribution accuracy
    when the suite ran without an oracle.
    """
    out: dict = {}
    for key, metric in (("attribution", "attribution_accuracy"), ("linkage", "linkage_top1")):
        rows = [normalised_advantage(r) for r in results if r.metric == metric]
        out[key] = max(rows, key=lambda d: (d["ci"][0], d["value"])) if rows else None
    eps = [(r.details["epsilon"], r) for r in results if r.metric == "auc" and "epsilon" in r.details]
    if eps:
        e, r = max(eps, key=lambda t: (t[0]["lower_bound"], t[0]["value"]))
        out["epsilon"] = {**e, "attack": r.name, "features": r.features}
        out["gdp_mu"] = {**gdp_mu(r.value, r.ci), "attack": r.name, "features": r.features}
        out["privacy_number"] = float(e["lower_bound"])
    else:
        out["epsilon"] = out["gdp_mu"] = out["privacy_number"] = None
    if summary and "oracle_free_attribution" in summary:
        out["oracle_free"] = summary["oracle_free_attribution"]
    if summary and summary.get("oracle_free_risk"):
        out["oracle_free_risk"] = summary["oracle_free_risk"]
    return out
