"""Clustering attacks: group anonymous uploads by user without any labels.

The adversary standardizes the features (embeddings go through a logit first when every value lies
in (0, 1), as Beta-family uploads do; :func:`attacks.features.gaussianize`) and then fits:

* ``kmeans``: Lloyd's algorithm with k-means++ seeding (Arthur & Vassilvitskii 2007), ``n_init``
  restarts keeping the lowest inertia; mini-batch k-means (Sculley 2010) above ``large_n`` uploads.
* ``gmm``: a Gaussian mixture fitted by EM (Dempster, Laird & Rubin 1977), initialised from the
  best of the k-means restarts plus ``n_init`` k-means++ starts, keeping the highest likelihood;
  covariance "full" when the dimension is small relative to the cluster sizes, else "diag".
* ``agglomerative``: Ward linkage (Ward 1963); above ``large_n`` it is fitted on a random
  subsample and the rest assigned to the nearest subsample centroid.
* ``hdbscan``: density-based (Campello, Moulavi & Sander 2013; ``sklearn.cluster.HDBSCAN``) on a
  PCA projection; noise points get label ``-1``; subsampled like agglomerative.
* ``auto``: the Gaussian mixture with model selection over the number of users and the
  covariance type by BIC = ``-2 log L + p log n`` (Schwarz 1978).

When ``n_users`` is unknown every method except ``hdbscan`` uses the BIC-selected number of
clusters: a coarse geometric grid of ``k`` refined around the best value, on at most ``bic_max_n``
uploads.  The GMMs scored are diagonal up to ``SPHERICAL_ABOVE_DIM`` dimensions and spherical above
(``d + 2`` parameters per component instead of ``2d + 1``): on weakly separated users in many
dimensions the diagonal penalty ``(2d + 1) log n`` per user swamps the likelihood gain and BIC
badly underestimates the user count (simulate default, 50 users in 64 dimensions: 21 diagonal vs
30 spherical), while standardized (logit) features are close to isotropic within a user.  In few
dimensions per-dimension variances matter more and the diagonal model is kept (a heuristic switch,
not a model-selection result).

Large pools (:func:`attacks.scale.at_scale`: e.g. 200,000 uploads of 2,000 users) fit ``gmm``/``auto``
and ``kmeans`` on a row subsample and assign every upload in one chunked float32 pass
(:mod:`attacks.scale`; no covariance-type selection, diagonal); ``details["fit"]`` says what was fitted on what.
"""

from __future__ import annotations

import warnings

import numpy as np

from attacks.base import Attack, AttackResult, check_random_state, register_attack
from idfree_core.seeding import seed_int
from attacks.features import build_features, standardized_embedding
from attacks.knn import predict_chunked
from attacks.scale import at_scale, fit_scaled_mixture, kmeans_labels
from attacks.scoring import bayes_attribution_ceiling, score_partition
from idfree_core.errors import InputError

METHODS = ("kmeans", "gmm", "agglomerative", "hdbscan", "auto")
SPHERICAL_ABOVE_DIM = 16  # user-count selection: spherical GMMs above this dimension (module doc)


def _kmeans(x: np.ndarray, k: int, n_init: int, rng, large_n: int):
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if x.shape[0] > large_n:
        model = MiniBatchKMeans(n_clusters=k, init="k-means++", n_init=n_init, batch_size=4096,
                                max_no_improvement=10, random_state=seed_int(rng, bits=31))
    else:
        model = KMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=seed_int(rng, bits=31))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x)
    return model


def _covariance_type(x: np.ndarray, k: int) -> str:
    d = x.shape[1]
    per_cluster = x.shape[0] / max(k, 1)
    return "full" if d <= 8 and per_cluster >= 10 * d else "diag"


def _gmm(x: np.ndarray, k: int, n_init: int, rng, covariance_type: str | None = None, kmeans_labels=None):
    """Best-likelihood GMM over a k-means-initialised start and ``n_init`` k-means++ starts."""
    from sklearn.mixture import GaussianMixture

    cov = covariance_type or _covariance_type(x, k)
    best, best_ll = None, -np.inf
    starts = []
    if kmeans_labels is not None:
        means = np.stack([x[kmeans_labels == j].mean(axis=0) if np.any(kmeans_labels == j) else x[rng.integers(x.shape[0])]
                          for j in range(k)])
        starts.append(dict(means_init=means, n_init=1))
    starts.append(dict(init_params="k-means++", n_init=max(1, n_init)))
    for kw in starts:
        model = GaussianMixture(n_components=k, covariance_type=cov, reg_covar=1e-4, max_iter=300, tol=1e-4,
                                random_state=seed_int(rng, bits=31), **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x)
        ll = model.score(x)
        if ll > best_ll:
            best, best_ll = model, ll
    return best


def fit_mixture(x: np.ndarray, k: int, n_init: int, rng, select_covariance: bool = True, large_n: int = 20000):
    """GMM with ``k`` components initialised from the best k-means; covariance type chosen by BIC.

    Fitted on a random subsample of ``large_n`` rows when the data are larger.
    """
    xs = x if x.shape[0] <= large_n else x[rng.choice(x.shape[0], large_n, replace=False)]
    km = _kmeans(xs, k, n_init, rng, large_n)
    types = ("spherical", "diag", "tied") + (("full",) if x.shape[1] <= 16 else ()) if select_covariance else (None,)
    fits = [_gmm(xs, k, n_init, rng, t, kmeans_labels=km.labels_) for t in types]
    return min(fits, key=lambda m: m.bic(xs))


def select_n_clusters(x: np.ndarray, k_max: int | None = None, n_init: int = 2, max_n: int = 5000,
                      covariance_type: str = "auto", random_state=0) -> tuple[int, dict[int, float]]:
    """Number of clusters minimising BIC of a GMM: geometric grid, then refinement around the best.

    ``covariance_type="auto"``: diagonal up to :data:`SPHERICAL_ABOVE_DIM` dimensions, else spherical.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1 if x.shape[0] < 20000 else None):  # small fits: no thread overhead
        return _select_n_clusters(x, k_max, n_init, max_n, covariance_type, random_state)


def _select_n_clusters(x, k_max, n_init, max_n, covariance_type, random_state):
    rng = check_random_state(random_state)
    if covariance_type == "auto":
        covariance_type = "diag" if x.shape[1] <= SPHERICAL_ABOVE_DIM else "spherical"
    if x.shape[0] > max_n:
        x = x[rng.choice(x.shape[0], max_n, replace=False)]
    n = x.shape[0]
    k_max = int(min(k_max or max(2, n // 5), n // 2, 512)) if n >= 4 else 1
    bic: dict[int, float] = {}

    def evaluate(k: int) -> float:
        if k not in bic:
            km = _kmeans(x, k, n_init, rng, large_n=10**9)
            gm = _gmm(x, k, 0, rng, covariance_type, kmeans_labels=km.labels_) if k > 1 else _gmm(x, 1, 1, rng, covariance_type)
            bic[k] = float(gm.bic(x))
        return bic[k]

    grid = sorted({1, *[int(round(v)) for v in np.geomspace(2, max(2, k_max), num=12)]} & set(range(1, k_max + 1)))
    for k in grid:
        evaluate(k)
    best = min(bic, key=bic.get)
    lower = max([k for k in grid if k < best], default=best)
    upper = min([k for k in grid if k > best], default=best)
    step = max(1, (upper - lower) // 8)
    for k in range(lower, upper + 1, step):
        evaluate(k)
    return min(bic, key=bic.get), bic


def _assign_nearest(x: np.ndarray, centers: np.ndarray, block: int = 8192) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.int64)
    c2 = (centers**2).sum(axis=1)
    for s in range(0, x.shape[0], block):
        xb = x[s:s + block]
        out[s:s + block] = np.argmin(c2[None, :] - 2.0 * xb @ centers.T, axis=1)
    return out


class ClusteringAttack(Attack):
    """Unsupervised attribution: cluster the pool and read clusters as users.

    Fitted state: ``labels_`` (per upload, ``-1`` = noise), ``n_clusters_``, ``n_users_estimated_``
    (``n_users`` if given, else the BIC choice), ``bic_`` (k -> BIC when selected), ``model_``.
    """

    name = "clustering"

    @classmethod
    def for_suite(cls, ctx, spec, features):
        """The adversary's own user-count estimate; with the oracle's count also the "n_users known"
        adversary (the same fitted instance when the estimate equals the truth: no refit)."""
        k = ctx.n_users(features)
        est = spec(n_users=k, features=features, mixture_cache=ctx.fits, random_state=ctx.seed())
        out = [(est, {"n_users": ctx.n_users_method})]
        if spec.known_n_variant and ctx.n_true is not None:
            known = est if k == ctx.n_true else spec(n_users=ctx.n_true, features=features, mixture_cache=ctx.fits,
                                                     random_state=ctx.seed())
            out.append((known, {"n_users": ctx.n_users_method, "known_n": True}))
        return out

    def suite_summary(self, ctx) -> None:
        if "clustering" not in ctx.summary:
            k, crit = ctx.estimates.get(self.features, (self.n_users_estimated_, {}))
            ctx.summary["clustering"] = {**self.summary(), "bic": {int(j): float(v) for j, v in sorted(crit.items())},
                                         "n_users_selected_by": ctx.n_users_method}
            ctx.summary["n_users_estimated"] = k

    def __init__(self, method: str = "auto", n_users: int | None = None, features: str = "embedding",
                 n_init: int = 4, large_n: int = 20000, bic_max_n: int = 5000, subsample: int = 5000,
                 min_cluster_size: int | None = None, n_permutations: int = 100, mixture_cache: dict | None = None,
                 random_state=0):
        self.method = method
        self.n_users = n_users
        self.features = features
        self.n_init = n_init
        self.large_n = large_n
        self.bic_max_n = bic_max_n
        self.subsample = subsample
        self.min_cluster_size = min_cluster_size
        self.n_permutations = n_permutations
        self.mixture_cache = mixture_cache
        self.random_state = random_state

    def _check(self, pool) -> None:
        if self.method not in METHODS:
            raise InputError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        if self.n_users is not None and (int(self.n_users) < 1 or int(self.n_users) > pool.n):
            raise InputError(f"n_users must be between 1 and the pool size {pool.n}, got {self.n_users}")
        if int(self.n_init) < 1:
            raise InputError(f"n_init must be >= 1, got {self.n_init}")

    def _features(self, pool, rng) -> np.ndarray:
        seed = seed_int(rng, bits=31)  # drawn whatever the features, so later draws do not depend on them
        return standardized_embedding(pool) if self.features == "embedding" else build_features(pool, self.features, seed)

    def fit(self, pool) -> "ClusteringAttack":
        from threadpoolctl import threadpool_limits

        self._check(pool)
        # small problems run faster single-threaded (no OpenMP spin-up or oversubscription)
        with threadpool_limits(limits=1 if pool.n < self.large_n else None):
            return self._fit(pool)

    def _fit(self, pool) -> "ClusteringAttack":
        self.other_start_labels_ = {}
        if self.features == "both":
            return self._fit_both(pool)
        rng = check_random_state(self.random_state)
        x = self._features(pool, rng)
        self.bic_ = None
        k = None
        if self.method != "hdbscan":
            if self.n_users is not None:
                k = int(self.n_users)
            else:
                k, self.bic_ = select_n_clusters(x, n_init=2, max_n=self.bic_max_n, random_state=rng)
        method = "gmm" if self.method == "auto" else self.method
        self.fit_details_ = None
        if method in ("kmeans", "gmm") and at_scale(x.shape[0], k):  # large pools: attacks.scale
            if method == "kmeans":
                labels, self.model_, self.fit_details_ = kmeans_labels(x, k, seed_int(rng, bits=31))
            else:
                fit = fit_scaled_mixture(x, k, seed_int(rng, bits=31), cache=self.mixture_cache)
                self.model_, labels, self.fit_details_ = fit.model, fit.labels, fit.details
        elif method == "kmeans":
            self.model_ = _kmeans(x, k, self.n_init, rng, self.large_n)
            labels = self.model_.labels_
        elif method == "gmm":
            self.model_ = fit_mixture(x, k, self.n_init, rng, select_covariance=self.method == "auto",
                                      large_n=self.large_n)
            labels = predict_chunked(self.model_, x)  # (n, K) log-densities in blocks
        elif method == "agglomerative":
            labels = self._agglomerative(x, k, rng)
        else:
            labels = self._hdbscan(x, rng)
        self.labels_ = np.asarray(labels, dtype=np.int64)
        self.n_clusters_ = int(np.unique(self.labels_[self.labels_ >= 0]).size)
        self.n_users_estimated_ = int(k) if k is not None else self.n_clusters_
        return self

    def _fit_both(self, pool) -> "ClusteringAttack":
        """Embeddings and text as evidence (:mod:`attacks.evidence`): the same method on each modality
        alone, its two partitions starting the joint evidence mixture; the joint fit's labels.

        The fit EM reached from the start that was *not* kept is a second adversary of its own
        (``other_start_labels_``, scored as ``clustering[METHOD][joint, MODALITY start]``): no
        likelihood criterion tells which start attributes better (200,000 uploads of 2,000 users: the
        embedding-started fit is worse held-out than one component, yet attributes 0.047 against the
        text-started fit's 0.013), and an auditor reports the stronger of two attacks any adversary can run."""
        from attacks.evidence import combine_partitions

        singles = [type(self)(**{**self.get_params(), "features": f}).fit(pool) for f in ("embedding", "text")]
        self.labels_, self.model_, xj = combine_partitions(pool, [s.labels_ for s in singles],
                                                           random_state=seed_int(self.random_state, bits=31))
        self.other_start_labels_ = {name: np.asarray(self.model_.predict_start(xj, j), dtype=np.int64)
                                    for j, name in enumerate(("embedding", "text")) if j != self.model_.start_}
        self.bic_ = singles[self.model_.start_].bic_
        self.fit_details_ = getattr(self.model_, "fit_details_", None)  # large pools: attacks.evidence.fit_subsampled
        self.n_clusters_ = int(np.unique(self.labels_).size)
        self.n_users_estimated_ = int(self.n_users) if self.n_users is not None else self.model_.n_components_
        return self

    def _agglomerative(self, x, k, rng) -> np.ndarray:
        from sklearn.cluster import AgglomerativeClustering

        idx = np.arange(x.shape[0]) if x.shape[0] <= self.subsample else rng.choice(x.shape[0], self.subsample, replace=False)
        self.model_ = AgglomerativeClustering(n_clusters=min(k, idx.size), linkage="ward").fit(x[idx])
        if idx.size == x.shape[0]:
            return self.model_.labels_
        sub = self.model_.labels_
        centers = np.stack([x[idx][sub == j].mean(axis=0) for j in range(sub.max() + 1)])
        return _assign_nearest(x, centers)

    def _hdbscan(self, x, rng) -> np.ndarray:
        from sklearn.cluster import HDBSCAN
        from sklearn.decomposition import PCA

        n = x.shape[0]
        if x.shape[1] > 10 and n > 11:
            x = PCA(n_components=10, random_state=seed_int(rng, bits=31)).fit_transform(x)
        idx = np.arange(n) if n <= self.subsample else rng.choice(n, self.subsample, replace=False)
        mcs = self.min_cluster_size or max(5, idx.size // 200)
        self.model_ = HDBSCAN(min_cluster_size=min(mcs, max(2, idx.size)), copy=True).fit(x[idx])
        sub = self.model_.labels_
        if idx.size == n or sub.max() < 0:
            return sub if idx.size == n else np.full(n, -1)
        centers = np.stack([x[idx][sub == j].mean(axis=0) for j in range(sub.max() + 1)])
        return _assign_nearest(x, centers)

    def summary(self) -> dict:
        """What the attack found without any oracle: cluster count, sizes and the user estimate."""
        sizes = np.bincount(self.labels_[self.labels_ >= 0]) if self.n_clusters_ else np.zeros(0, dtype=int)
        return {"name": self.name, "method": self.method, "features": self.features,
                "n_clusters": self.n_clusters_, "n_users_estimated": self.n_users_estimated_,
                "n_noise": int((self.labels_ < 0).sum()), "cluster_sizes": sorted(sizes.tolist(), reverse=True),
                "bic": None if self.bic_ is None else {int(k): float(v) for k, v in sorted(self.bic_.items())}}

    @property
    def knowledge(self) -> str:
        return {"embedding": "embeddings", "text": "text", "both": "embeddings+text"}[self.features]

    def score(self, pool, oracle, distributions=None) -> list[AttackResult]:
        """``ari``, ``nmi`` and ``attribution_accuracy`` (ceiling from the true distributions)."""
        self._check_fitted(pool, "labels_")
        truth, users = oracle.codes_for(pool)
        rng = check_random_state(self.random_state)
        ceiling, cdetails = bayes_attribution_ceiling(distributions, users, truth)
        extra = {"method": self.method, "n_users_estimated": self.n_users_estimated_,
                 "n_users_given": self.n_users}
        if getattr(self, "fit_details_", None):
            extra["fit"] = self.fit_details_
        out = score_partition(f"clustering[{self.method}]", truth, self.labels_, knowledge=self.knowledge,
                              features=self.features, ceiling=ceiling, ceiling_details=cdetails,
                              n_permutations=self.n_permutations, random_state=rng, extra_details=extra)
        for start, labels in self.other_start_labels_.items():  # features="both" (_fit_both)
            how = (f"the joint evidence mixture EM reached from the {start}-only partition; the joint fit's "
                   "start choice kept the other start")
            out += score_partition(f"clustering[{self.method}][joint, {start} start]", truth, labels,
                                   knowledge=self.knowledge, features=self.features, ceiling=ceiling,
                                   ceiling_details=cdetails, n_permutations=self.n_permutations, random_state=rng,
                                   extra_details={**extra, "start": how})
        return out


_METRICS = ("ari", "nmi", "attribution_accuracy")
_ALL = ("embedding", "text", "both")
register_attack("clustering[auto]", ClusteringAttack, group="clustering", features=_ALL, metrics=_METRICS,
                known_n_variant=True, method="auto")
register_attack("clustering[kmeans]", ClusteringAttack, group="clustering", features=_ALL, metrics=_METRICS,
                method="kmeans")
for _m in ("gmm", "agglomerative", "hdbscan"):  # not in the default suite (slower or dominated), battery only
    register_attack(f"clustering[{_m}]", ClusteringAttack, group="clustering", features=_ALL, metrics=_METRICS,
                    in_suite=False, method=_m)
