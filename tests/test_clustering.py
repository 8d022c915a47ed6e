"""Clustering attacks: strength against the Bayes ceiling, static IDs, model selection, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attacks.clustering import ClusteringAttack, select_n_clusters
from attacks.features import build_features, gaussianize
from idfree_core.errors import InputError
from idfree_core.uploads import Oracle, UserDistributions, anonymize


def known_users_pool(family: str, n_users: int, dim: int, per_user: int, spread: float, seed: int,
                     affine: bool = False):
    """Users with known Gaussian (mean 0.1 + spread * N(0,1), std 0.2) or Beta (log-normal jitter
    of alpha=2, beta=5) distributions; uploads sampled with torch.distributions."""
    g = torch.Generator().manual_seed(seed)
    if family == "gaussian":
        mean = 0.1 + spread * torch.randn(n_users, dim, generator=g, dtype=torch.float64)
        std = torch.full((n_users, dim), 0.2, dtype=torch.float64)
        dist, params = torch.distributions.Normal(mean, std), {"mean": mean.numpy(), "std": std.numpy()}
    else:
        a = 2.0 * torch.exp(spread * torch.randn(n_users, dim, generator=g, dtype=torch.float64))
        b = 5.0 * torch.exp(spread * torch.randn(n_users, dim, generator=g, dtype=torch.float64))
        dist, params = torch.distributions.Beta(a, b), {"alpha": a.numpy(), "beta": b.numpy()}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        x = dist.sample((per_user,)).permute(1, 0, 2).reshape(-1, dim).numpy()
    loc = scale = None
    if affine:
        loc, scale = np.linspace(-1.0, 0.5, dim), np.full(dim, 2.0)
        x = loc + scale * x
    users = [f"u{i}" for i in range(n_users)]
    pool, oracle = anonymize(x.astype(np.float32), np.repeat(users, per_user), rng=np.random.default_rng(seed))
    return pool, oracle, UserDistributions(family, tuple(users), params, loc=loc, scale=scale)


# (family, users, dim, uploads per user, spread): spreads chosen so the Bayes ceiling is ~0.87-0.93
STRENGTH = [
    ("gaussian", 4, 6, 150, 0.25, False),
    ("gaussian", 8, 16, 80, 0.16, False),
    ("beta", 3, 8, 150, 0.45, False),
    ("beta", 5, 12, 100, 0.45, True),
]


@pytest.mark.parametrize("family,n_users,dim,per_user,spread,affine", STRENGTH)
def test_best_attack_reaches_90pct_of_bayes_ceiling(family, n_users, dim, per_user, spread, affine):
    pool, oracle, dists = known_users_pool(family, n_users, dim, per_user, spread, seed=0, affine=affine)
    best = None
    for method in ("kmeans", "auto"):
        res = ClusteringAttack(method=method, n_users=n_users, random_state=0).fit(pool).score(pool, oracle, dists)
        acc = next(r for r in res if r.metric == "attribution_accuracy")
        best = acc if best is None or acc.value > best.value else best
    assert 1.0 / n_users + 0.3 < best.ceiling < 0.97, "configuration should be informative but not trivial"
    assert best.efficiency >= 0.9, (best.value, best.ceiling)
    assert best.advantage_ci[0] > 0
    assert best.ci[0] <= best.details["ceiling_ci"][1]  # no attack beats the Bayes optimum beyond noise


def test_static_embeddings_unknown_user_count():
    rng = np.random.default_rng(1)
    value = rng.normal(size=(12, 16))
    emb = np.repeat(value, 20, axis=0) + rng.normal(0, 1e-3, size=(240, 16))
    pool, oracle = anonymize(emb.astype(np.float32), np.repeat(np.arange(12), 20), rng=rng)
    attack = ClusteringAttack(method="auto", random_state=0).fit(pool)
    assert attack.n_users_estimated_ == 12
    res = {r.metric: r for r in attack.score(pool, oracle)}
    assert res["ari"].value >= 0.9 and res["attribution_accuracy"].value >= 0.95
    assert res["attribution_accuracy"].details["n_users_true"] == 12


def test_bic_selects_the_number_of_separated_users():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 6, size=(5, 3))
    x = np.repeat(centers, 60, axis=0) + rng.normal(size=(300, 3))
    k, bic = select_n_clusters(x, random_state=0)
    assert k == 5 and bic[5] < bic[1]


def test_summary_without_oracle_and_determinism():
    pool, _, _ = known_users_pool("gaussian", 3, 4, 50, 1.0, seed=2)
    a = ClusteringAttack(method="kmeans", random_state=4).fit(pool)
    b = ClusteringAttack(method="kmeans", random_state=4).fit(pool)
    assert np.array_equal(a.labels_, b.labels_)
    s = a.summary()
    assert s["n_clusters"] == a.n_clusters_ == len(s["cluster_sizes"]) and sum(s["cluster_sizes"]) == pool.n
    assert s["n_users_estimated"] == 3 and s["bic"] is not None


@pytest.mark.parametrize("method", ["agglomerative", "hdbscan", "gmm"])
def test_other_methods_find_separated_users(method):
    pool, oracle, _ = known_users_pool("gaussian", 4, 3, 60, 2.0, seed=6)
    n_users = None if method == "hdbscan" else 4
    res = {r.metric: r for r in ClusteringAttack(method=method, n_users=n_users, subsample=150,
                                                 random_state=0).fit(pool).score(pool, oracle)}
    assert res["ari"].value >= 0.8, res["ari"].value  # subsampled fit + nearest-centroid assignment


def test_logit_features_for_unit_interval_and_text_features():
    pool, oracle, _ = known_users_pool("beta", 3, 4, 40, 0.5, seed=1)
    x = gaussianize(pool.embedding)
    z = np.log(pool.embedding / (1 - pool.embedding))
    assert np.allclose(x, (z - z.mean(0)) / z.std(0), atol=1e-4)
    texts = np.array([f"word{u} common text" for u in oracle.users_for(pool.upload_id)], dtype=object)
    tpool = type(pool)(upload_id=pool.upload_id, embedding=pool.embedding, text=texts)
    for features in ("text", "both"):
        assert build_features(tpool, features).shape[0] == pool.n
        res = {r.metric: r for r in ClusteringAttack(method="kmeans", n_users=3, features=features,
                                                     random_state=0).fit(tpool).score(tpool, oracle)}
        assert res["ari"].value > 0.9 and res["ari"].knowledge in ("text", "embeddings+text")


def test_bad_inputs():
    pool, oracle, _ = known_users_pool("gaussian", 2, 2, 10, 1.0, seed=0)
    with pytest.raises(InputError, match="method"):
        ClusteringAttack(method="spectral").fit(pool)
    with pytest.raises(InputError, match="n_users"):
        ClusteringAttack(n_users=pool.n + 1).fit(pool)
    with pytest.raises(InputError, match="text"):
        ClusteringAttack(features="text").fit(pool)
    with pytest.raises(InputError, match="features"):
        ClusteringAttack(features="pixels").fit(pool)
    with pytest.raises(InputError, match="before fit"):
        ClusteringAttack().score(pool, oracle)
    fitted = ClusteringAttack(method="kmeans", n_users=2).fit(pool)
    wrong = Oracle(upload_id=np.arange(1000, 1000 + pool.n), user=["a"] * pool.n)
    with pytest.raises(InputError, match="oracle"):
        fitted.score(pool, wrong)
    with pytest.raises(InputError, match="fitted on"):
        fitted.score(pool.select(np.arange(5)), oracle)
