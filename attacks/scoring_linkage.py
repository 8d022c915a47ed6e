"""Scoring a linkage attack against the oracle: top-k hits and pair ROC, honestly about chance.

:func:`score_linkage` (module of :mod:`attacks.scoring`'s partition scoring, same conventions):
``linkage_top1`` / ``linkage_top5`` with Wilson CIs and exact hypergeometric baselines, and the
ROC of uniformly sampled same-user and different-user pairs (:func:`sample_pairs`,
:func:`roc_metrics`: AUC and TPR at fixed FPRs) with a percentile bootstrap over queries; every
advantage CI combines the value's CI with a permutation null (:func:`attacks.scoring.advantage_interval`).
"""

from __future__ import annotations

import numpy as np

from attacks.base import AttackResult, check_random_state, proportion_ci
from attacks.scoring import advantage_interval

TARGET_FPRS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}


def sample_pairs(q_codes: np.ndarray, r_codes: np.ndarray, n_pairs: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(query_index, reference_index, same_user)``: up to ``n_pairs`` uniform same-user pairs and
    as many uniform different-user pairs among all (query, reference) pairs: O(n_pairs), not O(n^2)."""
    n_users = int(max(q_codes.max(), r_codes.max())) + 1
    ref_count = np.bincount(r_codes, minlength=n_users)
    order = _stable_order(r_codes, n_users)
    starts = np.concatenate([[0], np.cumsum(ref_count)[:-1]])
    m = ref_count[q_codes].astype(np.float64)
    qi_parts, ri_parts, lab_parts = [], [], []
    if m.sum() > 0:  # same-user pairs: query with prob. prop. to its same-user references
        n_same = int(min(n_pairs, m.sum()))
        qi = rng.choice(q_codes.size, n_same, p=m / m.sum())
        u = q_codes[qi]
        ri = order[starts[u] + rng.integers(0, ref_count[u])]
        qi_parts.append(qi), ri_parts.append(ri), lab_parts.append(np.ones(n_same, bool))
    other = r_codes.size - m
    if other.sum() > 0:  # different-user pairs: query prop. to its other-user references, then rejection
        qi = rng.choice(q_codes.size, n_pairs, p=other / other.sum())
        ri = rng.integers(0, r_codes.size, n_pairs)
        bad = r_codes[ri] == q_codes[qi]
        while bad.any():
            ri[bad] = rng.integers(0, r_codes.size, int(bad.sum()))
            bad = r_codes[ri] == q_codes[qi]
        qi_parts.append(qi), ri_parts.append(ri), lab_parts.append(np.zeros(n_pairs, bool))
    return np.concatenate(qi_parts), np.concatenate(ri_parts), np.concatenate(lab_parts)


def _stable_order(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """``np.argsort(codes, kind="stable")``; codes below 2**16 as uint16, which numpy sorts by radix
    (160,000 codes: 1.1 ms against 10 ms), the same permutation."""
    return np.argsort(codes.astype(np.uint16) if n_codes <= 2**16 else codes, kind="stable")


def roc_metrics(scores: np.ndarray, same: np.ndarray, weight: np.ndarray | None = None,
                order: np.ndarray | None = None) -> dict[str, float]:
    """AUC and TPR at the target FPRs from the weighted ROC curve (linear interpolation).

    The ROC points are the cumulative weighted positives / negatives above each distinct threshold
    (as ``sklearn.metrics.roc_curve``, against which the tests check it); ``order`` (scores sorted
    descending) can be passed to reuse one sort across bootstrap reweightings.  Interpolating between
    ROC points is achievable by randomizing between two thresholds, so a scorer without information
    (all ties) gets TPR = FPR, the chance baseline; the AUC is the trapezoid area.
    """
    scores = np.asarray(scores, dtype=np.float64)
    w = np.ones(scores.size) if weight is None else np.asarray(weight, dtype=np.float64)
    if order is None:
        order = np.argsort(-scores, kind="mergesort")
    s, pos, ws = scores[order], same[order], w[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last index of each distinct score
    tp = np.cumsum(ws * pos)[last]
    fp = np.cumsum(ws * ~pos)[last]
    tpr = np.r_[0.0, tp / tp[-1]] if tp[-1] > 0 else np.r_[0.0, tp]
    fpr = np.r_[0.0, fp / fp[-1]] if fp[-1] > 0 else np.r_[0.0, fp]
    out = {"auc": float(np.trapezoid(tpr, fpr))}
    for key, target in TARGET_FPRS.items():
        out[key] = float(np.interp(target, fpr, tpr))
    return out


def _topk_hits(q_codes, r_codes, topk, k) -> np.ndarray:
    return (r_codes[topk[:, :k]] == q_codes[:, None]).any(axis=1)


def score_linkage(name: str, q_codes: np.ndarray, r_codes: np.ndarray, topk: np.ndarray, pair_scores, *,
                  knowledge: str = "embeddings", features: str = "embedding", n_pairs: int = 10000,
                  n_permutations: int = 50, n_bootstrap: int = 100, confidence: float = 0.95,
                  random_state=0, extra_details: dict | None = None) -> list[AttackResult]:
    """Linkage metrics of a fitted attack, each with CI, chance baseline and advantage CI.

    * ``linkage_top1`` / ``linkage_top5``: share of queries with a same-user reference among their
      top 1 / 5 candidates; Wilson CI; baseline exact: a random set of ``k`` references contains the
      query user's ``m_u`` references with probability ``1 - C(R - m_u, k) / C(R, k)``, averaged over queries.
    * ``auc``, ``tpr_at_1pct_fpr``, ``tpr_at_0.1pct_fpr``: over ``n_pairs`` uniform same-user and
      ``n_pairs`` uniform different-user pairs scored by ``pair_scores(query_idx, ref_idx)``;
      percentile-bootstrap CI over queries; baselines 0.5 and the FPR.  The ROC points (down-sampled
      to <= 200) are in ``details["roc"]``; the epsilon lower bound of the same pairs
      (:func:`attacks.headline.epsilon_lower_bound`) in ``details["epsilon"]`` of the ``auc`` row.
    * Advantage CIs combine the value's CI with the permutation null (user codes shuffled within the
      queries and within the references, pairs re-sampled) as in :func:`advantage_interval`.
    """
    from scipy.stats import hypergeom

    rng = check_random_state(random_state)
    q_codes, r_codes = np.asarray(q_codes, np.int64), np.asarray(r_codes, np.int64)
    nq, nr = q_codes.size, r_codes.size
    ref_count = np.bincount(r_codes, minlength=int(max(q_codes.max(), r_codes.max())) + 1)
    details = {"n_queries": int(nq), "n_references": int(nr), "n_permutations": int(n_permutations),
               **(extra_details or {})}
    results = []
    perms = [(rng.permutation(q_codes), rng.permutation(r_codes)) for _ in range(int(n_permutations))]
    for metric, k in (("linkage_top1", 1), ("linkage_top5", 5)):
        k_eff = min(k, topk.shape[1], nr)
        hits = _topk_hits(q_codes, r_codes, topk, k_eff)
        v = float(hits.mean())
        ci = proportion_ci(int(hits.sum()), nq, confidence)
        m, inv = np.unique(ref_count[q_codes], return_inverse=True)  # one sf per distinct reference count
        base = float(np.mean(hypergeom.sf(0, nr, m, k_eff)[inv]))
        null = [_topk_hits(pq, pr, topk, k_eff).mean() for pq, pr in perms]
        b, adv, adv_ci = advantage_interval(v, ci, null, confidence, baseline=base)
        results.append(AttackResult(name=name, metric=metric, value=v, ci=ci, baseline=b, advantage=adv,
                                    advantage_ci=adv_ci, ceiling=None, n=int(nq), knowledge=knowledge, features=features,
                                    details=dict(details, k=int(k_eff), ci_method="wilson",
                                                 baseline_method="exact (hypergeometric)")))
    same_available = np.any(ref_count[q_codes] > 0)
    diff_available = np.any(ref_count[q_codes] < nr)
    if not (same_available and diff_available):
        return results
    qi, ri, same = sample_pairs(q_codes, r_codes, n_pairs, rng)
    scores = pair_scores(qi, ri)
    order = np.argsort(-scores, kind="mergesort")
    values = roc_metrics(scores, same, order=order)
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(same, scores)
    keep = np.unique(np.linspace(0, fpr.size - 1, min(200, fpr.size)).round().astype(int))
    boot = {key: [] for key in values}
    for _ in range(int(n_bootstrap)):
        w = np.bincount(rng.integers(0, nq, nq), minlength=nq)[qi].astype(np.float64)
        if same[w > 0].all() or not same[w > 0].any():
            continue
        for key, val in roc_metrics(scores, same, w, order).items():
            boot[key].append(val)
    null = {key: [] for key in values}
    for pq, pr in perms:
        pqi, pri, psame = sample_pairs(pq, pr, n_pairs, rng)
        for key, val in roc_metrics(pair_scores(pqi, pri), psame).items():
            null[key].append(val)
    from attacks.headline import epsilon_lower_bound

    eps = epsilon_lower_bound(scores, same, confidence, random_state=rng)  # drawn last: other figures unchanged
    tail = (1.0 - confidence) / 2.0
    baselines = {"auc": 0.5, **TARGET_FPRS}
    for key, v in values.items():
        lo, hi = np.quantile(boot[key], [tail, 1.0 - tail]) if boot[key] else (v, v)
        ci = (float(min(lo, v)), float(max(hi, v)))
        b, adv, adv_ci = advantage_interval(v, ci, null[key], confidence, baseline=baselines[key])
        d = dict(details, n_pairs_same=int(same.sum()), n_pairs_different=int((~same).sum()),
                 ci_method="bootstrap over queries", pair_sampling="uniform same-user and different-user pairs")
        if key == "auc":
            d["roc"] = {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}
            d["epsilon"] = eps
        results.append(AttackResult(name=name, metric=key, value=v, ci=ci, baseline=b, advantage=adv,
                                    advantage_ci=adv_ci, ceiling=None, n=int(same.size), knowledge=knowledge,
                                    features=features, details=d))
    return results
