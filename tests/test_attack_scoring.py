"""Shared attack scoring (attacks.scoring / attacks.base): metrics against independent references,
chance baselines against exact answers, interval coverage under the null, and bad inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score, roc_curve

from attacks import scoring, scoring_linkage
from attacks.base import AttackResult, proportion_ci
from idfree_core.uploads import UserDistributions

labels = st.integers(2, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 4), min_size=n, max_size=n), st.lists(st.integers(-1, 5), min_size=n, max_size=n)))


def _singletons(pred: np.ndarray) -> np.ndarray:
    out = pred.copy()
    noise = out < 0
    out[noise] = out.max(initial=0) + 1 + np.arange(noise.sum())
    return out


@settings(max_examples=60, deadline=None)
@given(labels)
def test_table_metrics_match_sklearn_and_brute_force(pair):
    truth, pred = np.unique(pair[0], return_inverse=True)[1], np.asarray(pair[1])
    table, noise = scoring.contingency(truth, pred)
    m = scoring.partition_metrics(table, noise)
    ref = _singletons(pred)
    assert m["ari"] == pytest.approx(adjusted_rand_score(truth, ref), abs=1e-9)
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(truth, ref), abs=1e-9)
    # pairwise precision / recall by enumerating all pairs
    same_t = truth[:, None] == truth[None, :]
    same_p = ref[:, None] == ref[None, :]
    iu = np.triu_indices(truth.size, 1)
    tp = (same_t & same_p)[iu].sum()
    assert m["pairwise_precision"] == pytest.approx(tp / same_p[iu].sum() if same_p[iu].sum() else 0.0)
    assert m["pairwise_recall"] == pytest.approx(tp / same_t[iu].sum() if same_t[iu].sum() else 0.0)
    # matched accuracy: brute force over injective maps of clusters to users (small tables only)
    k, n_users = table.shape[1], table.shape[0]
    if k <= 6:
        best = 0
        cols = list(range(k))
        for users in itertools.permutations(range(max(n_users, k)), k):
            best = max(best, sum(table[u, c] for u, c in zip(users, cols) if u < n_users))
        assert m["attribution_accuracy"] == pytest.approx(best / truth.size)


def test_permutation_baseline_matches_exact_two_by_two():
    """Two users, two clusters: the matched accuracy under random labels is hypergeometric."""
    n1, n2, a1 = 30, 20, 25  # user sizes and size of cluster 0
    n = n1 + n2
    truth = np.repeat([0, 1], [n1, n2])
    pred = np.repeat([0, 1], [a1, n - a1])
    # x = overlap of user 0 and cluster 0 ~ Hypergeom(n, n1, a1); matched = max(x + (n2 - a1 + x), n - that)
    x = np.arange(0, min(n1, a1) + 1)
    diag = x + (n2 - (a1 - x))
    exact = float(np.sum(stats.hypergeom.pmf(x, n, n1, a1) * np.maximum(diag, n - diag)) / n)
    null = scoring.permutation_null(truth, pred, n_permutations=3000, random_state=1)["attribution_accuracy"]
    se = null.std(ddof=1) / np.sqrt(null.size)
    assert abs(null.mean() - exact) < 4 * se
    assert exact > 1 / 2 + 0.05  # matching inflates chance well above 1/N


def test_null_intervals_cover_zero_at_nominal_rate():
    """Labels independent of users: each advantage CI contains 0 in >= ~95% of replicates."""
    rng = np.random.default_rng(7)
    misses = {m: 0 for m in ("ari", "nmi", "attribution_accuracy")}
    reps = 60
    for _ in range(reps):
        truth = rng.integers(0, 5, 120)
        pred = rng.integers(0, 4, 120)
        for r in scoring.score_partition("null", truth, pred, n_permutations=60, n_bootstrap=60, random_state=rng):
            misses[r.metric] += not (r.advantage_ci[0] <= 0 <= r.advantage_ci[1])
    for metric, k in misses.items():
        # at most 5% expected; 9/60 has probability < 0.01 under Binomial(60, 0.05)
        assert k <= 8, (metric, k)


def test_informative_labels_have_positive_advantage_and_efficiency():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(4), 50)
    pred = np.where(rng.random(200) < 0.8, truth, rng.integers(0, 4, 200))
    res = {r.metric: r for r in scoring.score_partition("x", truth, pred, ceiling=0.9, random_state=0)}
    acc = res["attribution_accuracy"]
    assert acc.advantage_ci[0] > 0 and res["ari"].advantage_ci[0] > 0 and res["nmi"].advantage_ci[0] > 0
    assert acc.ci == proportion_ci(round(acc.value * 200), 200)
    assert acc.efficiency == pytest.approx(acc.value / 0.9)
    assert res["ari"].ceiling is None
    row = acc.to_dict()
    assert row["advantage"] == pytest.approx(row["value"] - row["baseline"])
    assert {"pairwise_precision", "pairwise_recall", "n_clusters", "n_users_true"} <= set(row["details"])


def test_advantage_interval_formula():
    null = np.linspace(0.0, 1.0, 1001)
    b, adv, (lo, hi) = scoring.advantage_interval(0.8, (0.7, 0.85), null, confidence=0.95)
    assert b == pytest.approx(0.5)
    assert lo == pytest.approx(0.3 - np.hypot(0.1, 0.475))
    assert hi == pytest.approx(0.3 + np.hypot(0.05, 0.475))


def test_roc_metrics_match_sklearn_with_weights_and_ties():
    rng = np.random.default_rng(3)
    s = np.round(rng.normal(size=4000), 1)
    y = rng.random(4000) < 0.3 + 0.2 * (s > 0)
    w = rng.integers(0, 3, 4000).astype(float)
    got = scoring_linkage.roc_metrics(s, y, w)
    fpr, tpr, _ = roc_curve(y, s, sample_weight=w)
    assert got["auc"] == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert got["tpr_at_1pct_fpr"] == pytest.approx(np.interp(0.01, fpr, tpr))
    tied = scoring_linkage.roc_metrics(np.zeros(100), np.arange(100) % 2 == 0)
    assert tied == pytest.approx({"auc": 0.5, "tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001})


def test_sample_pairs_are_labelled_right_and_uniform():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 4, 50)
    r = np.repeat(np.arange(4), [5, 10, 20, 40])
    qi, ri, same = scoring_linkage.sample_pairs(q, r, 20000, rng)
    assert np.array_equal(same, q[qi] == r[ri])
    # same-user pairs are uniform over all same-user pairs: reference counts follow user sizes^2 * queries
    pos = ri[same]
    counts = np.bincount(pos, minlength=r.size)
    expected = np.bincount(q, minlength=4)[r].astype(float)  # each reference pairs with its user's queries
    expected = expected / expected.sum() * counts.sum()
    keep = expected > 0
    assert stats.chisquare(counts[keep], expected[keep]).pvalue > 1e-3


def test_linkage_topk_baseline_is_exact():
    """A scorer that ranks references at random hits at the hypergeometric baseline."""
    rng = np.random.default_rng(2)
    q = rng.integers(0, 5, 400)
    r = rng.integers(0, 5, 60)
    topk = np.argsort(rng.random((400, 60)), axis=1)[:, :5]
    res = {x.metric: x for x in scoring_linkage.score_linkage("rand", q, r, topk, lambda a, b: rng.random(a.size),
                                                      n_permutations=40, random_state=0)}
    for metric in ("linkage_top1", "linkage_top5", "auc", "tpr_at_1pct_fpr"):
        assert res[metric].advantage_ci[0] <= 0 <= res[metric].advantage_ci[1], metric
    m = np.bincount(r, minlength=5)[q]
    assert res["linkage_top1"].baseline == pytest.approx(np.mean(m / 60))
    assert res["auc"].baseline == 0.5 and res["tpr_at_1pct_fpr"].baseline == 0.01
    assert len(res["auc"].details["roc"]["fpr"]) <= 200


def _two_gaussians(mu: float, sigma: float, dim: int = 1) -> UserDistributions:
    mean = np.array([[-mu] + [0.0] * (dim - 1), [mu] + [0.0] * (dim - 1)])
    return UserDistributions("gaussian", ("a", "b"), {"mean": mean, "std": np.full((2, dim), sigma)})


def test_bayes_ceiling_two_gaussians_closed_form():
    """Equal priors, means +-mu: the MAP attributor is right with probability Phi(mu / sigma)."""
    truth = np.repeat([0, 1], 50)
    c, det = scoring.bayes_attribution_ceiling(_two_gaussians(0.5, 1.0), ("a", "b"), truth)
    assert c == pytest.approx(stats.norm.cdf(0.5), abs=2e-3)
    assert det["ceiling_ci"][0] <= c <= det["ceiling_ci"][1]
    c3, _ = scoring.bayes_attribution_ceiling(_two_gaussians(0.5, 1.0, dim=3), ("b", "a"), truth,
                                              target_halfwidth=0.004)
    assert c3 == pytest.approx(stats.norm.cdf(0.5), abs=0.01)  # extra dims carry nothing; names mapped


def test_bayes_ceiling_static_and_missing_users():
    d = UserDistributions("static", ("a", "b", "c"), {"value": np.array([[0.0], [0.0], [1.0]])})
    truth = np.repeat([0, 1, 2], [10, 30, 60])
    c, _ = scoring.bayes_attribution_ceiling(d, ("a", "b", "c"), truth)
    assert c == pytest.approx(0.9)  # a and b are indistinguishable: pick b
    none, det = scoring.bayes_attribution_ceiling(d, ("a", "zz", "c"), truth)
    assert none is None and "zz" in det["ceiling_error"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="equal length"):
        scoring.score_partition("x", np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="unknown metric"):
        AttackResult("x", "accuracy", 0.5, (0, 1), 0.5, 0, (0, 0), None, 1, "embeddings")


def test_every_attack_on_one_pool_reports_the_same_ceiling():
    """The ceiling depends on the pool and the distributions only, and is computed once."""
    truth = np.repeat([0, 1], 50)
    d = _two_gaussians(0.5, 1.0)
    scoring._ceiling_cached.cache_clear()
    first, _ = scoring.bayes_attribution_ceiling(d, ("a", "b"), truth)
    second, _ = scoring.bayes_attribution_ceiling(d, ("a", "b"), truth)
    assert first == second and scoring._ceiling_cached.cache_info().hits == 1


@pytest.mark.parametrize("kw", [dict(n_permutations=0), dict(n_bootstrap=0), dict(n_permutations=2.5),
                                dict(n_permutations=True)])
def test_score_partition_refuses_no_permutations_or_bootstrap_in_one_line(kw):
    from idfree_core.errors import InputError

    truth = np.repeat(np.arange(3), 10)
    with pytest.raises(InputError, match="n_permutations and n_bootstrap must be integers >= 1"):
        scoring.score_partition("a", truth, truth, **kw)
