"""Scoring a partition of the pool against the oracle, honestly about chance.

All partition metrics are computed from the contingency table ``C[i, j]`` = number of uploads of
true user ``i`` put in predicted cluster ``j`` (noise label ``-1`` is kept as a separate column):

* **attribution accuracy**: ``max_M sum_{(i,j) in M} C[i, j] / n`` over one-to-one matchings ``M``
  of clusters to users (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``).  With
  more clusters than users the unmatched clusters count as wrong; noise counts as wrong.
* **ARI** (Hubert & Arabie 1985): ``(t - E t) / (m - E t)`` with ``t = sum_ij C(n_ij, 2)``,
  ``E t = sum_i C(b_i, 2) sum_j C(a_j, 2) / C(n, 2)``, ``m = (sum_i C(b_i, 2) + sum_j C(a_j, 2)) / 2``.
* **NMI** (arithmetic normalisation, as scikit-learn): ``I(U; V) / ((H(U) + H(V)) / 2)``.
* **pairwise precision / recall**: ``t / sum_j C(a_j, 2)`` and ``t / sum_i C(b_i, 2)``.
Noise points are singletons for ARI, NMI and the pairwise scores (they pair with nobody).

Chance, confidence and advantage (:func:`score_partition`):

* ``baseline``: mean of the metric over ``n_permutations`` random relabellings: the predicted
  labels are shuffled relative to the truth (cluster and user sizes kept) and re-matched.  This is
  the exact chance level of a *matched* score, which is well above ``1/N`` (matching inflates it).
* ``ci``: attribution accuracy: Wilson interval (``base.proportion_ci``) on ``correct / n``;
  ARI and NMI: percentile bootstrap over uploads (multinomial resampling of the table's cells).
* ``advantage = value - baseline`` and, with the value's CI half-widths ``w_lo, w_hi`` and the
  permutation null's central ``confidence`` range ``[q_lo, q_hi]`` around its mean ``b``,
  ``advantage_ci = [adv - hypot(w_lo, q_hi - b), adv + hypot(w_hi, b - q_lo)]``: the two
  independent uncertainties (the value's sampling error and chance's fluctuation) in quadrature.
  Under the null (labels independent of users) the value is itself a draw from the permutation
  distribution, so the interval contains 0 whenever ``q_lo <= value <= q_hi``: with probability at
  least ``confidence`` (:func:`advantage_interval`).

Tables of more than a million cells (thousands of users) are scored from their nonzero cells, with
fewer permutations (:mod:`attacks.scoring_sparse`; the details give ``n_permutations`` drawn).
Linkage is scored in :mod:`attacks.scoring_linkage`.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import xlogy

from attacks import memo, scoring_sparse
from attacks.base import AttackResult, check_random_state, proportion_ci
from idfree_core.errors import InputError
from idfree_core.families import get_family_spec


def _comb2(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x * (x - 1.0) / 2.0


def contingency(truth: np.ndarray, pred: np.ndarray, n_true: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(C, noise)``: the ``(n_true, K)`` table over clusters ``0..K-1`` and per-user noise counts."""
    truth = np.asarray(truth, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    n_true = int(truth.max()) + 1 if n_true is None else int(n_true)
    k = int(pred.max()) + 1 if pred.size and pred.max() >= 0 else 0
    flat = truth * (k + 1) + (pred + 1)
    table = np.bincount(flat, minlength=n_true * (k + 1)).reshape(n_true, k + 1)
    return table[:, 1:], table[:, 0]


def matched_correct(table: np.ndarray) -> int:
    """Uploads correctly attributed under the best one-to-one matching of clusters to users."""
    if table.size == 0:
        return 0
    rows, cols = linear_sum_assignment(table, maximize=True)
    return int(table[rows, cols].sum())


def pair_counts(table: np.ndarray, noise: np.ndarray) -> tuple[float, float, float, float]:
    """``(same_both, same_pred, same_true, total)`` pair counts (noise points are singletons)."""
    n = table.sum() + noise.sum()
    t = _comb2(table).sum()
    return float(t), float(_comb2(table.sum(axis=0)).sum()), float(_comb2(table.sum(axis=1) + noise).sum()), float(_comb2(n))


def ari_from_table(table: np.ndarray, noise: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) from the contingency table."""
    t, sp, st, total = pair_counts(table, noise)
    if total == 0:
        return 1.0
    expected = sp * st / total
    mx = (sp + st) / 2.0
    if mx == expected:  # both partitions trivial (one cluster, or all singletons): sklearn returns 1
        return 1.0
    return float((t - expected) / (mx - expected))


def nmi_from_table(table: np.ndarray, noise: np.ndarray) -> float:
    """Normalized mutual information, arithmetic mean normalisation (scikit-learn's default)."""
    n = float(table.sum() + noise.sum())
    b = table.sum(axis=1) + noise  # true user sizes
    a = table.sum(axis=0)  # cluster sizes (noise singletons separately)
    h_true = -xlogy(b / n, b / n).sum()
    n_noise = float(noise.sum())
    h_pred = -xlogy(a / n, a / n).sum() + n_noise / n * np.log(n)
    n_pred_clusters = int((a > 0).sum() + n_noise)
    if (b > 0).sum() == 1 and n_pred_clusters == 1:
        return 1.0
    if (b > 0).sum() == 1 or n_pred_clusters == 1:
        return 0.0
    outer = np.outer(b, a) / n**2
    pij = table / n
    mi = float(np.sum(xlogy(pij, np.where(pij > 0, pij / np.where(outer > 0, outer, 1.0), 1.0))))
    # each noise point of user i: p_ij = 1/n, p_i p_j = b_i/n * 1/n
    mi += float(np.sum(noise / n * np.log(np.where(b > 0, n / np.maximum(b, 1), 1.0))))
    denom = (h_true + h_pred) / 2.0
    return float(max(mi, 0.0) / denom) if denom > 0 else 0.0


def partition_metrics(table: np.ndarray, noise: np.ndarray) -> dict[str, float]:
    """All partition scores of one contingency table (see the module docstring)."""
    n = float(table.sum() + noise.sum())
    t, sp, st, _ = pair_counts(table, noise)
    return {
        "attribution_accuracy": matched_correct(table) / n,
        "ari": ari_from_table(table, noise),
        "nmi": nmi_from_table(table, noise),
        "pairwise_precision": t / sp if sp > 0 else 0.0,
        "pairwise_recall": t / st if st > 0 else 0.0,
    }


def advantage_interval(value: float, value_ci: tuple[float, float], null: np.ndarray,
                       confidence: float = 0.95, baseline: float | None = None) -> tuple[float, float, tuple[float, float]]:
    """``(baseline, advantage, advantage_ci)`` from the value's CI and samples of the null.

    ``baseline`` defaults to the null mean ``b``; half-widths add in quadrature:
    ``[adv - hypot(value - ci_lo, q_hi - b), adv + hypot(ci_hi - value, b - q_lo)]`` with
    ``q_lo, q_hi`` the null's ``(1 -/+ confidence) / 2`` quantiles.
    """
    null = np.asarray(null, dtype=np.float64)
    center = float(null.mean())
    b = center if baseline is None else float(baseline)
    tail = (1.0 - confidence) / 2.0
    q_lo, q_hi = np.quantile(null, [tail, 1.0 - tail])
    n_lo, n_hi = max(center - q_lo, 0.0), max(q_hi - center, 0.0)
    w_lo, w_hi = max(value - value_ci[0], 0.0), max(value_ci[1] - value, 0.0)
    adv = float(value - b)
    return b, adv, (float(adv - np.hypot(w_lo, n_hi)), float(adv + np.hypot(w_hi, n_lo)))


def permutation_null(truth: np.ndarray, pred: np.ndarray, n_permutations: int = 100, random_state=0) -> dict[str, np.ndarray]:
    """Partition metrics over ``n_permutations`` shuffles of ``pred`` relative to ``truth``."""
    rng = check_random_state(random_state)
    n_true = int(truth.max()) + 1
    out: dict[str, list[float]] = {}
    for _ in range(int(n_permutations)):
        table, noise = contingency(truth, rng.permutation(pred), n_true)
        for key, v in partition_metrics(table, noise).items():
            out.setdefault(key, []).append(v)
    return {k: np.asarray(v) for k, v in out.items()}


def bootstrap_metrics(table: np.ndarray, noise: np.ndarray, keys=("ari", "nmi"), n_bootstrap: int = 200,
                      random_state=0) -> dict[str, np.ndarray]:
    """Bootstrap over uploads: resampling rows is a multinomial draw of the table's cells."""
    rng = check_random_state(random_state)
    cells = np.concatenate([table.ravel(), noise])
    n = int(cells.sum())
    p = cells / n
    out: dict[str, list[float]] = {k: [] for k in keys}
    fns = {"ari": ari_from_table, "nmi": nmi_from_table}
    for _ in range(int(n_bootstrap)):
        draw = rng.multinomial(n, p)
        t, z = draw[: table.size].reshape(table.shape), draw[table.size:]
        for k in keys:
            out[k].append(fns[k](t, z))
    return {k: np.asarray(v) for k, v in out.items()}


def score_partition(name: str, truth: np.ndarray, pred: np.ndarray, *, knowledge: str = "embeddings",
                    features: str = "embedding", ceiling: float | None = None, ceiling_details: dict | None = None,
                    n_permutations: int = 100, n_bootstrap: int = 200, confidence: float = 0.95,
                    random_state=0, extra_details: dict | None = None) -> list[AttackResult]:
    """AttackResults ``ari``, ``nmi``, ``attribution_accuracy`` for predicted labels ``pred``.

    ``truth`` are integer user codes aligned with ``pred`` (``-1`` in ``pred`` = noise).
    ``ceiling`` is the Bayes-optimal attribution accuracy (attached to ``attribution_accuracy``).
    """
    truth = np.asarray(truth, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    if truth.shape != pred.shape or truth.ndim != 1:
        raise ValueError(f"truth and pred must be 1-D of equal length, got {truth.shape} and {pred.shape}")
    if isinstance(n_permutations, bool) or int(n_permutations) != n_permutations or n_permutations < 1 \
            or isinstance(n_bootstrap, bool) or int(n_bootstrap) != n_bootstrap or n_bootstrap < 1:
        raise InputError(f"n_permutations and n_bootstrap must be integers >= 1 (the baseline and the CI come from "
                         f"them), got {n_permutations!r} and {n_bootstrap!r}")
    rng = check_random_state(random_state)
    n = int(truth.size)
    n_users, k = int(truth.max()) + 1, max(int(pred.max()) + 1 if pred.size and pred.max() >= 0 else 0, 1)
    if n_users * k > scoring_sparse.LARGE_TABLE:  # thousands of users: nonzero cells only (attacks.scoring_sparse)
        n_permutations = scoring_sparse.n_permutations_at(n_permutations, n_users * k)
        cells = scoring_sparse.sparse_table(truth, pred, n_users, k)
        values = scoring_sparse.cell_metrics(*cells, n_users, k)
        n_pred, noise = int(np.unique(cells[1]).size), cells[3]

        def null_and_bootstrap():
            return (scoring_sparse.permutation_null(truth, pred, n_permutations, rng),
                    scoring_sparse.bootstrap_cells(*cells, n_users, k, ("ari", "nmi"), n_bootstrap, rng))
    else:
        table, noise = contingency(truth, pred)
        values = partition_metrics(table, noise)
        n_pred = int((table.sum(axis=0) > 0).sum())

        def null_and_bootstrap():
            return (permutation_null(truth, pred, n_permutations, rng),
                    bootstrap_metrics(table, noise, ("ari", "nmi"), n_bootstrap, rng))

    # one null and bootstrap per partition in a suite run (attacks.memo): attacks sharing a fit share its labels
    null, boot = (memo.memoized(("partition_null", memo.content_key(truth, pred), int(n_permutations), int(n_bootstrap)),
                                null_and_bootstrap) if memo.active() else null_and_bootstrap())
    tail = (1.0 - confidence) / 2.0
    n_true = int((np.bincount(truth) > 0).sum())
    details = {
        "pairwise_precision": values["pairwise_precision"],
        "pairwise_precision_baseline": float(null["pairwise_precision"].mean()),
        "pairwise_recall": values["pairwise_recall"],
        "pairwise_recall_baseline": float(null["pairwise_recall"].mean()),
        "n_clusters": n_pred, "n_noise": int(noise.sum()), "n_users_true": n_true,
        "n_permutations": int(n_permutations), "n_bootstrap": int(n_bootstrap),
        "baseline_method": "permutation (labels shuffled, sizes kept, re-matched)",
        **(extra_details or {}),
    }
    results = []
    for metric in ("ari", "nmi", "attribution_accuracy"):
        v = values[metric]
        if metric == "attribution_accuracy":
            correct = int(round(v * n))
            ci = proportion_ci(correct, n, confidence)
            ci_method = "wilson"
        else:
            lo, hi = np.quantile(boot[metric], [tail, 1.0 - tail])
            ci = (float(min(lo, v)), float(max(hi, v)))
            ci_method = "bootstrap"
        b, adv, adv_ci = advantage_interval(v, ci, null[metric], confidence)
        d = dict(details, ci_method=ci_method)
        c = None
        if metric == "attribution_accuracy" and ceiling is not None:
            c = float(ceiling)
            d.update(ceiling_details or {})
        results.append(AttackResult(name=name, metric=metric, value=float(v), ci=ci, baseline=b, advantage=adv,
                                    advantage_ci=adv_ci, ceiling=c, n=n, knowledge=knowledge, features=features,
                                    details=d))
    return results


def bayes_attribution_ceiling(distributions, user_names, truth: np.ndarray,
                              random_state=0, **estimator_options) -> tuple[float | None, dict]:
    """Bayes-optimal attribution accuracy ``1 - misattribution`` for the users in the pool.

    ``user_names[c]`` is the user of code ``c`` in ``truth``; priors are each user's share of the
    uploads.  Uses ``privacy_audit.misattribution.bayes_misattribution``; for the ``static`` family
    (point masses) it is exact: users with identical vectors are indistinguishable, so the optimum
    picks the most frequent user of each group of identical vectors.  The Beta family's shared
    affine map is a bijection, which leaves the Bayes error unchanged, so it is ignored here.
    ``estimator_options`` (e.g. ``target_halfwidth``) go to ``bayes_misattribution``.
    Returns ``(None, {"ceiling_error": ...})`` when the ceiling cannot be computed.

    The ceiling is a property of the pool and the distributions, not of the attack: callers pass
    no attack-specific seed, and results are memoized per (distributions, pool users, counts,
    options), so every attack scored on one pool reports the same ceiling, computed once.
    """
    if distributions is None:
        return None, {}
    counts = np.bincount(np.asarray(truth, dtype=np.int64), minlength=len(user_names)).astype(np.float64)
    value, details = _ceiling_cached(distributions, tuple(str(u) for u in user_names), counts.tobytes(),
                                     random_state, tuple(sorted(estimator_options.items())))
    return value, dict(details)


@functools.lru_cache(maxsize=16)
def _ceiling_cached(distributions, user_names: tuple, counts_bytes: bytes, random_state,
                    options: tuple) -> tuple[float | None, dict]:
    counts = np.frombuffer(counts_bytes, dtype=np.float64)
    index = {u: i for i, u in enumerate(distributions.users)}
    missing = [u for u in user_names if u not in index]
    if missing:
        return None, {"ceiling_error": f"{len(missing)} pool users (e.g. {missing[0]!r}) have no distribution"}
    rows = np.asarray([index[u] for u in user_names])
    keep = counts > 0
    rows, priors = rows[keep], counts[keep] / counts.sum()
    params = {k: np.asarray(v)[rows] for k, v in distributions.params.items()}
    if get_family_spec(distributions.family).is_point_mass:
        _, group = np.unique(params["value"], axis=0, return_inverse=True)
        best = np.zeros(int(group.max()) + 1)
        np.maximum.at(best, group.ravel(), priors)
        return float(best.sum()), {"ceiling_method": "exact (point masses)"}
    try:
        from privacy_audit.misattribution import bayes_misattribution
    except ImportError as exc:  # the theory module is optional at run time
        return None, {"ceiling_error": f"privacy_audit.misattribution unavailable ({exc})"}
    try:
        est = bayes_misattribution(distributions.family, params, priors=priors, random_state=random_state,
                                   **dict(options))
    except ValueError as exc:  # a family the theory module does not (yet) cover: no ceiling, said so
        return None, {"ceiling_error": str(exc)}
    lo, hi = est.ci
    return float(1.0 - est.value), {"ceiling_ci": [float(1.0 - hi), float(1.0 - lo)],
                                    "ceiling_method": f"1 - bayes_misattribution ({est.method})"}
