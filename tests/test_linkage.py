"""Linkage attacks: exact neighbours, splits, strength on separated and static users, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from attacks.linkage import LikelihoodRatioLinkage, NearestNeighbourLinkage, knn_blocked, split_queries
from attacks.neighbors import knn_pruned
from idfree_core.errors import InputError
from idfree_core.uploads import UploadPool, anonymize


def session_pool(n_users=10, per_user=30, dim=8, spread=3.0, noise=1.0, seed=0, sessions=True):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, spread, size=(n_users, dim))
    emb = np.repeat(means, per_user, axis=0) + rng.normal(0, noise, size=(n_users * per_user, dim))
    session = np.tile((np.arange(per_user) >= per_user * 2 // 3).astype(np.int64), n_users) if sessions else None
    return anonymize(emb.astype(np.float32), np.repeat(np.arange(n_users), per_user), session=session, rng=rng)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_blocked_knn_is_exact(metric):
    rng = np.random.default_rng(1)
    refs, queries = rng.normal(size=(700, 12)), rng.normal(size=(230, 12))
    idx, dist = knn_blocked(queries, refs, k=4, metric=metric, block_size=64)
    ref_idx = NearestNeighbors(n_neighbors=4, algorithm="brute", metric=metric).fit(refs).kneighbors(queries)[1]
    assert (idx == ref_idx).mean() > 0.999  # float32 vs float64: at most a rare near-tie swap
    assert np.all(np.diff(dist, axis=1) >= -1e-5)


@pytest.mark.parametrize("clustered,metric", [(True, "euclidean"), (True, "cosine"), (False, "euclidean")])
def test_pruned_knn_is_exact_and_prunes_only_where_it_pays(clustered, metric):
    """Cell pruning returns scikit-learn's brute-force neighbours; on one isotropic Gaussian (where
    the triangle inequality prunes nothing in 16 dimensions) it falls back to brute force."""
    rng = np.random.default_rng(2)
    n_users, dim = 60, 16
    means = rng.normal(0.0, 1.0, size=(n_users, dim)) if clustered else np.zeros((n_users, dim))
    noise = 0.15 if clustered else 1.0
    refs = np.repeat(means, 100, axis=0) + rng.normal(0, noise, size=(6000, dim))
    queries = means[rng.integers(n_users, size=900)] + rng.normal(0, noise, size=(900, dim))
    idx, dist, stats = knn_pruned(queries, refs, k=5, metric=metric, n_cells=120, return_stats=True)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=5, algorithm="brute", metric=metric).fit(refs).kneighbors(queries)
    assert (idx == ref_idx).mean() > 0.999  # float32 vs float64: at most a rare near-tie swap
    assert np.allclose(dist, ref_dist, atol=1e-3)
    if clustered:
        assert stats["distance_fraction"] < 0.5 and stats["fallback_fraction"] < 0.1
    else:
        assert stats["fallback_fraction"] > 0.9


def test_pruned_and_brute_linkage_agree():
    pool, oracle = session_pool(n_users=20, per_user=60, dim=6, spread=2.0, seed=5)
    brute = NearestNeighbourLinkage(algorithm="brute", random_state=0).fit(pool)
    pruned = NearestNeighbourLinkage(algorithm="pruned", random_state=0).fit(pool)
    assert pruned.search_["algorithm"] == "pruned" and brute.search_["algorithm"] == "brute"
    assert (pruned.topk_ == brute.topk_).mean() > 0.999
    with pytest.raises(InputError, match="algorithm"):
        NearestNeighbourLinkage(algorithm="kd_tree").fit(pool)
    with pytest.raises(InputError, match="n_probe"):
        knn_pruned(np.zeros((2, 3)), np.zeros((5, 3)), 1, n_probe=0)
    with pytest.raises(InputError, match="fallback_fraction"):
        knn_pruned(np.zeros((2, 3)), np.zeros((5, 3)), 1, fallback_fraction=0.0)


def test_sessions_define_queries_and_random_half_otherwise():
    pool, _ = session_pool()
    ref, qry, how = split_queries(pool, np.random.default_rng(0))
    assert how == "sessions" and np.all(pool.session[ref] == 0) and np.all(pool.session[qry] >= 1)
    flat, _ = session_pool(sessions=False)
    ref, qry, how = split_queries(flat, np.random.default_rng(0))
    assert how == "random_half" and abs(ref.size - qry.size) <= 1
    assert np.intersect1d(ref, qry).size == 0 and ref.size + qry.size == flat.n


@pytest.mark.parametrize("attack", [NearestNeighbourLinkage, lambda **kw: LikelihoodRatioLinkage(n_clusters=10, **kw)])
def test_separated_users_are_linked(attack):
    pool, oracle = session_pool()
    fitted = attack(random_state=0).fit(pool)
    res = {r.metric: r for r in fitted.score(pool, oracle)}
    assert set(res) == {"linkage_top1", "linkage_top5", "auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr"}
    assert res["linkage_top1"].value >= 0.95 and res["linkage_top1"].advantage_ci[0] > 0.5
    assert res["auc"].value > 0.95 and res["tpr_at_1pct_fpr"].advantage_ci[0] > 0
    assert res["linkage_top1"].baseline == pytest.approx(0.1)  # 20 references of each of 10 users
    roc = res["auc"].details["roc"]
    assert roc["fpr"][0] == 0.0 and roc["tpr"][-1] == 1.0 and np.all(np.diff(roc["fpr"]) >= 0)
    links = fitted.links(pool)
    assert len(links["query_upload_id"]) == int((pool.session >= 1).sum())
    assert set(links["linked_upload_id"]) <= set(pool.upload_id[pool.session == 0].tolist())


def test_likelihood_ratio_beats_nearest_neighbour_on_overlapping_users():
    """Per-upload NN is noisy; the mixture pools evidence across a user's references."""
    pool, oracle = session_pool(n_users=5, per_user=60, dim=6, spread=0.9, noise=1.0, seed=3)
    top1 = {}
    for attack in (NearestNeighbourLinkage(random_state=0), LikelihoodRatioLinkage(n_clusters=5, random_state=0)):
        top1[type(attack).__name__] = next(r for r in attack.fit(pool).score(pool, oracle) if r.metric == "linkage_top1")
    nn, lr = top1["NearestNeighbourLinkage"], top1["LikelihoodRatioLinkage"]
    assert lr.value > nn.value and lr.ci[0] > nn.baseline


def test_static_embeddings_fully_linkable_without_sessions():
    rng = np.random.default_rng(4)
    emb = np.repeat(rng.normal(size=(40, 16)), 6, axis=0) + rng.normal(0, 1e-3, size=(240, 16))
    pool, oracle = anonymize(emb.astype(np.float32), np.repeat(np.arange(40), 6), rng=rng)
    res = {r.metric: r for r in NearestNeighbourLinkage(random_state=0).fit(pool).score(pool, oracle)}
    # random halves: a query whose user has no reference cannot be linked, so the bound is the share
    # of queries with a same-user reference
    nn = NearestNeighbourLinkage(random_state=0).fit(pool)
    codes, _ = oracle.codes_for(pool)
    possible = np.isin(codes[nn.query_rows_], codes[nn.reference_rows_]).mean()
    assert res["linkage_top1"].value >= 0.95 * possible and res["linkage_top1"].value <= possible


def test_bad_inputs():
    pool, oracle = session_pool(n_users=3, per_user=6)
    only_later = UploadPool(upload_id=np.arange(4), embedding=np.zeros((4, 2)), session=np.ones(4, int))
    with pytest.raises(InputError, match="session-0"):
        NearestNeighbourLinkage().fit(only_later)
    with pytest.raises(InputError, match="metric"):
        NearestNeighbourLinkage(metric="manhattan").fit(pool)
    with pytest.raises(InputError, match="k must"):
        NearestNeighbourLinkage(k=0).fit(pool)
    with pytest.raises(InputError, match="text"):
        NearestNeighbourLinkage(features="text").fit(pool)
    with pytest.raises(InputError, match="n_clusters"):
        LikelihoodRatioLinkage(n_clusters=10**6).fit(pool)
    with pytest.raises(InputError, match="before fit"):
        LikelihoodRatioLinkage().score(pool, oracle)
    with pytest.raises(InputError, match="at least 2"):
        NearestNeighbourLinkage().fit(UploadPool(upload_id=[0], embedding=np.zeros((1, 2))))
