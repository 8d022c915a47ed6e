"""clustering[collapsed]: the evidence-scored partition search (attacks/collapsed.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from attacks.collapsed import CollapsedAttribution, NormalGammaPrior, agglomerate, cluster_stats
from attacks.em import EMAttribution
from idfree_core.errors import InputError
from test_heldout_variant import giant_pool


def _accuracy(attack, pool, oracle):
    return next(r.value for r in attack.score(pool, oracle) if r.metric == "attribution_accuracy")


def test_evidence_is_the_chain_of_its_own_predictives():
    """log p(x_1..x_n) = sum_i log p(x_i | x_<i): the closed-form evidence against scipy's Student-t at the
    posterior predictive parameters (the chain rule ties the two formulas of the module doc together)."""
    rng = np.random.default_rng(0)
    x = rng.normal(0.7, 1.9, size=(25, 3))
    prior = NormalGammaPrior(m0=np.array([0.0, 1.0, -1.0]), kappa0=np.array([0.5, 2.0, 1.0]), a0=2.0,
                             b0=np.array([1.0, 3.0, 0.5]), alpha=None)
    chain = 0.0
    for i in range(x.shape[0]):
        n, s, q = cluster_stats(x[:i], np.zeros(i, dtype=np.int64), 1)
        df, loc, scale2 = prior.predictive_params(n, s, q)
        chain += float(stats.t.logpdf(x[i], df[0], loc[0], np.sqrt(scale2[0])).sum())
    n, s, q = cluster_stats(x, np.zeros(x.shape[0], dtype=np.int64), 1)
    assert prior.log_evidence(n, s, q)[0] == pytest.approx(chain, rel=1e-9, abs=1e-8)


def test_agglomeration_ends_at_k_and_merges_the_closest():
    """Two tight groups cut into six pieces come back as the two groups."""
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(-5, 0.3, (60, 2)), rng.normal(5, 0.3, (60, 2))])
    pieces = np.repeat(np.arange(6), 20)
    prior = NormalGammaPrior.from_partition(x, pieces)
    ids = agglomerate(prior, *cluster_stats(x, pieces, 6), 2)
    assert sorted(np.unique(ids)) == [0, 1]
    assert len(set(ids[:3])) == 1 and len(set(ids[3:])) == 1 and ids[0] != ids[3]


def test_known_n_search_keeps_a_dominant_user_whole_where_em_cuts_it():
    """One user of 1,500 uploads and 25 of 15: at the true count EM cuts the dominant user (0.15-0.20 of
    Bayes), the evidence search separates the small users."""
    pool, oracle, _, bayes = giant_pool(3)
    coll = _accuracy(CollapsedAttribution(n_users=26, random_state=0).fit(pool), pool, oracle)
    em = _accuracy(EMAttribution(n_users=26, random_state=0).fit(pool), pool, oracle)
    assert coll >= 0.85 * bayes and coll > em + 0.2, (coll, em, bayes)


def test_restarts_keep_the_partition_of_highest_evidence():
    """One search can stop in a partition that cuts the dominant user (this pool and random state: 0.68 of
    Bayes at one restart); three restarts under one prior keep the highest evidence (0.87), and the first
    restart is the one-restart search itself, so the kept evidence is never below it."""
    pool, oracle, _, bayes = giant_pool(2, small=30, giant=2000)
    one = CollapsedAttribution(n_users=31, n_init=1, random_state=9).fit(pool)
    three = CollapsedAttribution(n_users=31, n_init=3, random_state=9).fit(pool)
    assert three.restart_log_evidence_[0] == pytest.approx(one.log_evidence_)
    assert three.log_evidence_ == max(three.restart_log_evidence_) >= one.log_evidence_
    assert _accuracy(one, pool, oracle) < 0.75 * bayes < 0.85 * bayes <= _accuracy(three, pool, oracle)


def test_fit_is_seeded_and_reports_its_state():
    pool, _, _, _ = giant_pool(4, small=6, per_small=30, giant=200)
    a = CollapsedAttribution(n_users=7, random_state=5).fit(pool)
    b = CollapsedAttribution(n_users=7, random_state=5).fit(pool)
    assert np.array_equal(a.labels_, b.labels_)
    assert a.labels_.max() < 7 and a.n_clusters_initial_ >= 7
    assert 0.0 < a.expected_accuracy_ <= 1.0 and a.expected_accuracy_ci_[0] <= a.expected_accuracy_ <= a.expected_accuracy_ci_[1] + 1e-12


@pytest.mark.parametrize("kw, needle", [({"oversegment": 0.5}, "oversegment"), ({"n_users": 10 ** 6}, "n_users"),
                                        ({"n_init": 0}, "n_init"), ({"n_init": 2.5}, "n_init")])
def test_bad_parameters_raise_one_line_errors(kw, needle):
    pool, _, _, _ = giant_pool(5, small=4, per_small=20, giant=100)
    with pytest.raises(InputError, match=needle):
        CollapsedAttribution(**kw).fit(pool)


class _Ctx:
    """The part of attacks.suite.SuiteContext that for_suite reads."""

    n_users_method = "by a test"

    def __init__(self, n, k, n_true):
        self.pool = type("P", (), {"n": n})()
        self.k, self.n_true, self.skipped = k, n_true, []

    def n_users(self, features):
        return self.k

    def transform(self, features):
        return None

    def seed(self):
        return 7

    def skip(self, note):
        self.skipped.append(note)


@pytest.mark.parametrize("n, k, n_true, rows", [(6000, 200, 200, 1), (6000, 150, 200, 2), (6000, 200, None, 1),
                                                 (40000, 20, 20, 0), (20000, 20, 160, 0)])
def test_suite_builds_one_instance_per_count_and_skips_large_pools(n, k, n_true, rows):
    from attacks.base import registered_attacks

    spec = next(e for e in registered_attacks("clustering") if e.name == "clustering[collapsed]")
    ctx = _Ctx(n, k, n_true)
    out = CollapsedAttribution.for_suite(ctx, spec, "embedding")
    assert len({id(a) for a, _ in out}) == rows
    if rows == 0:
        assert out == [] and "clustering[collapsed]" in ctx.skipped[0]
    else:
        assert [o.get("known_n", False) for _, o in out] == [False] + [True] * (n_true is not None)
        assert {a.n_users for a, _ in out} == {k, n_true} - {None}


def test_every_registered_attack_refuses_to_score_before_fit_and_on_another_pool():
    """Attack._check_fitted, shared by the score methods: one-line InputErrors, never an AttributeError."""
    from attacks.base import registered_attacks

    pool, oracle, _, _ = giant_pool(7, small=3, per_small=20, giant=60)
    other, _, _, _ = giant_pool(8, small=3, per_small=20, giant=61)
    for entry in registered_attacks():
        if entry.needs_distributions or entry.needs_model:
            continue
        with pytest.raises(InputError, match="before fit"):
            entry().score(pool, oracle)
    fitted = CollapsedAttribution(n_users=4).fit(pool)
    with pytest.raises(InputError, match=f"fitted on {pool.n} uploads, the pool has {other.n}"):
        fitted.score(other, oracle)
