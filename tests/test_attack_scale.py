"""The large-pool path (attacks.scale), exercised on small pools by lowering its thresholds."""

import numpy as np
import pytest

from attacks import em as em_module
from attacks import linkage, scale
from attacks.clustering import ClusteringAttack
from attacks.knn import topk_inner
from attacks.linkage import LikelihoodRatioLinkage
from idfree_core.uploads import anonymize


def _pool(n_users=30, per_user=60, dim=8, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_users, dim))
    users = np.repeat(np.arange(n_users), per_user)
    emb = means[users] + noise * rng.normal(size=(users.size, dim))
    session = np.tile((np.arange(per_user) >= per_user * 4 // 5).astype(np.int64), n_users)
    return anonymize(emb.astype(np.float32), users, session=session, rng=np.random.default_rng(seed))


@pytest.fixture
def small_scale(monkeypatch):
    monkeypatch.setattr(scale, "SCALE_ROWS", 100)
    monkeypatch.setattr(scale, "SCALE_WORK", 100)
    monkeypatch.setattr(linkage, "SPARSE_MIN_COMPONENTS", 2)


def test_thresholds():
    assert not scale.at_scale(20000, 100) and scale.at_scale(200000, 2000) and not scale.at_scale(10**6, 1)
    assert scale.fit_rows(200000, 2000) == 40000 and scale.fit_rows(5000, 10) == 5000


def test_scaled_clustering_and_linkage_share_one_fit_and_recover_users(small_scale):
    pool, oracle = _pool()
    cache: dict = {}
    clu = ClusteringAttack(method="auto", n_users=30, mixture_cache=cache, random_state=0).fit(pool)
    lr = LikelihoodRatioLinkage(n_clusters=30, mixture_cache=cache, random_state=1).fit(pool)
    assert len(cache) == 1 and lr.model_ is clu.model_
    acc = next(r for r in clu.score(pool, oracle) if r.metric == "attribution_accuracy")
    assert acc.value > 0.9 and acc.details["fit"]["fitted_on_rows"] == pool.n
    top1 = next(r for r in lr.score(pool, oracle) if r.metric == "linkage_top1")
    assert top1.value > 0.9 and "fit" in top1.details
    km = ClusteringAttack(method="kmeans", n_users=30, random_state=0).fit(pool)
    assert next(r for r in km.score(pool, oracle) if r.metric == "attribution_accuracy").value > 0.8
    assert km.fit_details_["method"].startswith("k-means++")


def test_sparse_topk_matches_dense_products_without_truncation():
    rng = np.random.default_rng(2)
    k = 12
    lq = np.log(rng.dirichlet(np.full(k, 0.3), size=200)).astype(np.float32)
    lr = np.log(rng.dirichlet(np.full(k, 0.3), size=500)).astype(np.float32)
    idx_q = np.argsort(-lq, axis=1)
    idx_r = np.argsort(-lr, axis=1)
    sq, sr = np.take_along_axis(lq, idx_q, 1), np.take_along_axis(lr, idx_r, 1)
    top = scale.sparse_topk(idx_q, sq, idx_r, sr, k, 5, np.random.default_rng(0))
    dense = topk_inner(np.exp(lq), np.exp(lr), 5, np.random.default_rng(0))
    g = np.exp(lq).astype(np.float64) @ np.exp(lr).T.astype(np.float64)
    rows = np.arange(200)[:, None]
    np.testing.assert_allclose(g[rows, top], g[rows, dense], rtol=1e-5)
    pair = scale.sparse_log_pair(idx_q, sq, idx_r, sr, np.arange(200), top[:, 0])
    np.testing.assert_allclose(pair, np.log(g[np.arange(200), top[:, 0]]), rtol=1e-5)


def test_em_attribution_at_scale_shares_the_clustering_fit(small_scale):
    from attacks.em import EMAttribution

    pool, oracle = _pool()
    cache: dict = {}
    clu = ClusteringAttack(method="auto", n_users=30, mixture_cache=cache, random_state=0).fit(pool)
    em = EMAttribution(n_users=30, mixture_cache=cache, random_state=3).fit(pool)
    assert len(cache) == 1 and em.model_ is clu.model_  # em_features (float32) and gaussianize (float64) share a key
    np.testing.assert_array_equal(em.labels_, clu.labels_)
    acc = next(r for r in em.score(pool, oracle) if r.metric == "attribution_accuracy")
    assert acc.value > 0.9 and acc.details["fit"]["n_rows"] == pool.n and em.variant_ == "gaussian-diag"
    assert np.all((em.max_posterior_ > 0) & (em.max_posterior_ <= 1 + 1e-6)) and em.expected_accuracy_ > 0.5


def test_fingerprint_ignores_float64_vs_float32_but_not_content():
    x = np.random.default_rng(0).normal(size=(500, 4))
    assert scale.fingerprint(x) == scale.fingerprint(x.astype(np.float32))
    y = x.copy()
    y[1, 0] += 1.0
    assert scale.fingerprint(x) != scale.fingerprint(y)


def test_user_count_at_scale_finds_separated_users_and_a_single_one(small_scale):
    from attacks.oracle_free import estimate_users

    pool, _ = _pool(n_users=30, per_user=60)
    k, (lo, hi), by = estimate_users(np.asarray(pool.embedding), random_state=0)  # dispatched to the scale path
    assert set(by) == {"aic", "bic", "heldout"} and lo <= k <= hi
    assert 25 <= k <= 60, (k, by)  # 30 users; the coarse single-start search overcounts (43-50, main's full one: 34)
    null, _ = _pool(n_users=1, per_user=1800)
    k0, _, by0 = scale.estimate_users_at_scale(np.asarray(null.embedding), 180, random_state=0)
    assert k0 <= 2, by0


def test_user_count_at_scale_grows_the_subsample_where_it_holds_too_few_rows_per_user(small_scale, monkeypatch):
    """40 weakly separated users x 100 uploads: 1,600 subsampled rows (30 per user) undercount; the search
    repeated on all 4,000 rows, within the first search's work budget, gets within a factor 2."""
    import attacks.mixture_order as mo
    from attacks.oracle_free import estimate_users

    monkeypatch.setattr(scale, "HELDOUT_MAX_N", 1600)
    rows_searched = []
    search = mo.estimate_n_components
    monkeypatch.setattr(mo, "estimate_n_components",
                        lambda x, **kw: rows_searched.append(kw["max_n"]) or search(x, **kw))
    counts = {}
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        users = np.repeat(np.arange(40), 100)
        x = 0.9 * rng.normal(size=(40, 8))[users] + rng.normal(size=(users.size, 8))
        x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
        for grow in (0, 2):
            monkeypatch.setattr(scale, "GROW_ROUNDS", grow)
            rows_searched.clear()
            counts[seed, grow] = estimate_users(x, random_state=0)[0]
            assert rows_searched[0] == 1600 and (len(rows_searched) == 1 or rows_searched[-1] == users.size)
    assert all(20 <= counts[s, 2] <= 80 for s in (0, 1)), counts
    assert min(counts[s, 0] for s in (0, 1)) < 20, counts  # one subsample alone: outside a factor 2 (8)


def test_scaled_gaussian_mixture_inversion_shares_the_fit_and_recovers_users(small_scale):
    """Gaussian mixture inversion at scale: the clustering attack's candidate-restricted fit, shared
    through the suite's cache (same labels), users attributed far above chance (1/30; the cheap fit,
    one start and 12 iterations, reaches 0.81-0.87 on these pools where dense EM reaches 0.96-1.0),
    and the fitted means mapped back to the embedding's scale near the users' means."""
    from attacks.inversion.mixture import MixtureInversion

    pool, oracle = _pool(seed=3)
    truth, _ = oracle.codes_for(pool)
    cache: dict = {}
    inv = MixtureInversion(family="gaussian", n_components=30, mixture_cache=cache, random_state=0).fit(pool)
    clu = ClusteringAttack(method="auto", n_users=30, mixture_cache=cache, random_state=1).fit(pool)
    assert len(cache) == 1 and "candidate" in inv.fit_details_["method"]
    assert np.array_equal(inv.labels_, clu.labels_)
    acc = next(r for r in inv.score(pool, oracle) if r.metric == "attribution_accuracy")
    assert acc.value > 0.75
    means = np.stack([pool.embedding[truth == u].mean(0) for u in range(30)])
    comp = np.bincount(inv.labels_, minlength=30)
    fitted = inv.params_["mean"][comp >= 30]  # components holding about one user's uploads or more
    nearest = np.sqrt(((fitted[:, None, :] - means[None]) ** 2).sum(-1)).min(1)
    assert fitted.shape[0] >= 15 and np.median(nearest) < 0.2  # users' means: sd 1 per dimension
    assert inv.params_["std"].shape == (30, 8) and np.all(inv.params_["std"] > 0)


def test_oracle_free_risk_at_scale_is_sparse_and_matches_the_dense_path(small_scale, monkeypatch):
    """The scale path of the oracle-free risk (sparse top-m posteriors, normal intervals) agrees with the
    dense small-pool path on separated users, and holds no uploads x users posterior matrix."""
    from attacks import oracle_free
    from attacks.mixture_em import DiagonalMixture

    pool, _ = _pool(n_users=20, per_user=50, noise=0.3, seed=3)
    monkeypatch.setattr(em_module, "BOOTSTRAP_MAX_ROWS", 100)
    calls = []
    monkeypatch.setattr(DiagonalMixture, "predict_proba", lambda self, x: calls.append(x.shape) or 1 / 0)
    at = oracle_free.oracle_free_risk(pool, n_users=20, n_users_range=(15, 25), random_state=0)
    assert calls == []  # the dense posterior matrix of the small-pool path is never built
    monkeypatch.undo()
    dense = oracle_free.oracle_free_risk(pool, n_users=20, n_users_range=(15, 25), random_state=0)
    for part in ("attribution", "linkage"):
        a, d = at[part], dense[part]
        assert a["risk"] > 0.8 and abs(a["risk"] - d["risk"]) < 0.1, (part, a, d)
        lo, hi = a["risk_ci"]
        assert lo <= a["risk"] <= hi and 0 < hi - lo < 0.2, a


def test_sparse_linkage_risk_equals_the_dense_formula_without_truncation():
    rng = np.random.default_rng(5)
    k = 9
    lq = np.log(rng.dirichlet(np.full(k, 0.4), size=300))
    lr = np.log(rng.dirichlet(np.full(k, 0.4), size=400))
    from attacks.oracle_free import linkage_risk, sparse_linkage_risk

    dense = linkage_risk(lq, lr, np.random.default_rng(0), n_boot=50)
    idx_q, idx_r = np.argsort(-lq, 1), np.argsort(-lr, 1)
    sparse = sparse_linkage_risk(idx_q, np.take_along_axis(lq, idx_q, 1), idx_r, np.take_along_axis(lr, idx_r, 1), k,
                                 np.random.default_rng(0), n_boot=50)
    for key in ("attack_rate", "control_rate", "risk"):
        assert sparse[key] == pytest.approx(dense[key], rel=1e-9), key


def test_delta_method_interval_matches_the_bootstrap(monkeypatch):
    """The normal interval of the linkage risk (A - C) / (1 - C) used above BOOTSTRAP_MAX_ROWS agrees with
    the percentile bootstrap of the small-pool path (a sign error in dR/dC widens it by about 40 %)."""
    from attacks import oracle_free

    rng = np.random.default_rng(7)
    best = rng.beta(6, 2, 4000)
    control = np.clip(0.3 * best + rng.beta(2, 8, 4000), 0, 0.99)
    boot = oracle_free._link_rates(best, control, 500, np.random.default_rng(0), 2000, 0.95)["risk_ci"]
    monkeypatch.setattr(em_module, "BOOTSTRAP_MAX_ROWS", 100)
    normal = oracle_free._link_rates(best, control, 500, np.random.default_rng(0), 2000, 0.95)["risk_ci"]
    width = boot[1] - boot[0]
    assert abs(normal[0] - boot[0]) < 0.1 * width and abs(normal[1] - boot[1]) < 0.1 * width, (normal, boot)


def test_bootstrap_mean_is_normal_above_the_row_limit(monkeypatch):
    """Above BOOTSTRAP_MAX_ROWS the mean's interval is the normal one (no n_boot x n weights), agreeing with
    the bootstrap below it."""
    rng = np.random.default_rng(3)
    v = rng.beta(2, 5, 4000)
    boot = em_module.bootstrap_mean(v, np.random.default_rng(0), n_boot=2000)
    monkeypatch.setattr(em_module, "BOOTSTRAP_MAX_ROWS", 100)
    normal = em_module.bootstrap_mean(v, object(), n_boot=2000)  # a generator that cannot draw: none drawn
    assert normal == em_module.normal_interval(float(v.mean()), v)
    width = boot[1] - boot[0]
    assert abs(normal[0] - boot[0]) < 0.1 * width and abs(normal[1] - boot[1]) < 0.1 * width, (normal, boot)
