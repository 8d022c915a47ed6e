"""Text-only attacks and the marginal leakage of embeddings beyond text (attacks.text)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from attacks.base import AttackResult, proportion_ci
from attacks.clustering import ClusteringAttack
from attacks.text import FEATURE_SETS, marginal_leakage, mover_difference, run_across_features, text_only_attacks
from idfree_core.uploads import anonymize


def _result(metric, features, value, ci, name="a"):
    return AttackResult(name=name, metric=metric, value=value, ci=ci, baseline=0.0, advantage=value,
                        advantage_ci=ci, ceiling=None, n=100, knowledge="embeddings", features=features)


def test_mover_interval_covers_difference_of_proportions():
    # MOVER on two Wilson intervals is Newcombe's interval: check its coverage by simulation
    rng = np.random.default_rng(0)
    n1, n2, p1, p2 = 80, 120, 0.7, 0.55
    covered = 0
    trials = 1500
    for _ in range(trials):
        x1, x2 = rng.binomial(n1, p1), rng.binomial(n2, p2)
        lo, hi = mover_difference(x1 / n1, proportion_ci(x1, n1), x2 / n2, proportion_ci(x2, n2))
        covered += lo <= p1 - p2 <= hi
    # nominal 95%: the binomial test must not reject coverage >= 0.93
    assert stats.binomtest(covered, trials, 0.93, alternative="less").pvalue > 1e-3


def test_marginal_leakage_pairs_text_with_both_and_orients_the_sign():
    rows = [_result("ari", "text", 0.2, (0.1, 0.3)), _result("ari", "both", 0.6, (0.5, 0.7)),
            _result("ari", "embedding", 0.5, (0.4, 0.6)),
            _result("parameter_error", "text", 2.0, (1.5, 2.5)), _result("parameter_error", "both", 1.0, (0.8, 1.2)),
            _result("nmi", "embedding", 0.5, (0.4, 0.6))]  # no text counterpart: no marginal
    out = {m.metric: m for m in marginal_leakage(rows)}
    assert set(out) == {"ari", "parameter_error"}
    assert out["ari"].marginal == pytest.approx(0.4) and out["ari"].embedding == 0.5
    lo, hi = out["ari"].ci
    assert lo == pytest.approx(0.4 - np.hypot(0.1, 0.1)) and hi == pytest.approx(0.4 + np.hypot(0.1, 0.1))
    # lower is stronger for parameter_error: less error with embeddings = more leakage (positive)
    assert out["parameter_error"].marginal == pytest.approx(1.0)
    assert out["parameter_error"].ci[0] < 1.0 < out["parameter_error"].ci[1]
    assert out["ari"].to_dict()["ci"] == [lo, hi]


def test_marginal_leakage_takes_the_strongest_joint_start_as_the_both_row():
    rows = [_result("attribution_accuracy", "text", 0.02, (0.01, 0.03), name="clustering[auto]"),
            _result("attribution_accuracy", "both", 0.01, (0.00, 0.02), name="clustering[auto]"),
            _result("attribution_accuracy", "both", 0.05, (0.04, 0.06), name="clustering[auto][joint, embedding start]"),
            _result("attribution_accuracy", "text", 0.02, (0.01, 0.03), name="clustering[auto][n_users known]"),
            _result("attribution_accuracy", "both", 0.04, (0.03, 0.05),
                    name="clustering[auto][joint, embedding start][n_users known]")]
    out = {m.name: m for m in marginal_leakage(rows)}
    assert set(out) == {"clustering[auto]", "clustering[auto][n_users known]"}
    assert out["clustering[auto]"].both == 0.05 and out["clustering[auto]"].marginal == pytest.approx(0.03)
    assert out["clustering[auto][n_users known]"].both == 0.04


def _pool(text_informative: bool, embedding_informative: bool, n_users=6, per_user=40, seed=0):
    g = np.random.default_rng(seed)
    torch.manual_seed(seed)
    rows = np.repeat(np.arange(n_users), per_user)
    centres = g.normal(0.0, 4.0 if embedding_informative else 0.0, (n_users, 4))
    emb = torch.distributions.Normal(torch.tensor(centres[rows]), 1.0).sample().numpy()
    vocab = [f"w{i}" for i in range(10 * n_users)]
    texts = []
    for u in rows:
        pool_words = vocab[10 * u:10 * u + 10] if text_informative else vocab
        texts.append(" ".join(g.choice(pool_words, 6)))
    names = np.asarray([f"u{i}" for i in range(n_users)])
    sessions = (g.random(rows.size) < 0.25).astype(int)
    return anonymize(emb, names[rows], text=texts, session=sessions, rng=g)


def _kmeans(n_users):
    return lambda f: ClusteringAttack(method="kmeans", n_users=n_users, features=f, n_permutations=30, random_state=0)


def test_text_alone_identifies_users_and_embeddings_add_nothing_when_they_are_shared():
    pool, oracle = _pool(text_informative=True, embedding_informative=False)
    results = run_across_features(_kmeans(6), pool, oracle)
    acc = {r.features: r for r in results if r.metric == "attribution_accuracy"}
    assert set(acc) == set(FEATURE_SETS)
    assert acc["text"].advantage_ci[0] > 0.3  # text alone re-identifies
    assert acc["embedding"].advantage_ci[0] <= 0.0 <= acc["embedding"].advantage_ci[1]
    (m,) = [m for m in marginal_leakage(results) if m.metric == "attribution_accuracy"]
    assert m.ci[0] <= 0.0  # no significant leakage beyond the text


def test_embeddings_add_leakage_when_text_is_uninformative():
    pool, oracle = _pool(text_informative=False, embedding_informative=True)
    results = run_across_features(_kmeans(6), pool, oracle)
    acc = {r.features: r for r in results if r.metric == "attribution_accuracy"}
    assert acc["text"].advantage_ci[0] <= 0.0 <= acc["text"].advantage_ci[1]
    (m,) = [m for m in marginal_leakage(results) if m.metric == "attribution_accuracy"]
    assert m.ci[0] > 0.2 and m.both > m.text


def test_every_feature_attack_runs_on_text_alone():
    pool, oracle = _pool(text_informative=True, embedding_informative=False, n_users=4, per_user=30, seed=1)
    for name, make in text_only_attacks(random_state=0).items():
        attack = make("text").fit(pool)
        results = attack.score(pool, oracle)
        assert results and all(r.features == "text" and r.knowledge == "text" for r in results), name
        best = max(results, key=lambda r: r.advantage_ci[0])
        assert best.advantage_ci[0] > 0, name
