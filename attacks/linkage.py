"""Linkage attacks: link later uploads (session >= 1) to earlier ones (session 0) of the same user.

Queries are the rows with ``session >= 1`` and references the rows with ``session == 0``.  A pool
without later sessions is split at random (seeded) into two halves: references and queries.

* :class:`NearestNeighbourLinkage`: exact k nearest references of every query by brute force
  (:func:`attacks.knn.knn_brute`: faiss ``IndexFlatL2``, or blocked float32 products
  ``||q||^2 - 2 q.r + ||r||^2`` and a per-block ``torch.topk`` without faiss; cosine: the same on
  unit vectors), memory ``O(block * n_refs)``; on large pools the same exact search with
  triangle-inequality cell pruning (:func:`attacks.neighbors.knn_pruned`), which falls back to
  brute force where pruning does not pay.  Pair score: minus the distance (cosine similarity).
* :class:`LikelihoodRatioLinkage`: a Gaussian mixture is fitted without labels to all uploads
  (k-means-initialised EM; covariance type and, when unknown, the number of components chosen by
  BIC; :func:`attacks.clustering.fit_mixture`), giving responsibilities ``g_x(c) = P(c | x)``.
  For a pair drawn at random, ``P(same component | q, r) = sum_c g_q(c) g_r(c)``; with components
  standing for users this is the posterior probability that the pair is same-user, a monotone
  function of the pair likelihood ratio ``p(q, r | same) / p(q, r | different)`` (so ranking by it
  is the Neyman-Pearson test).  Pair score: its log, computed as ``logsumexp`` of float32
  log-responsibilities (no underflow).  Top-k: blockwise float32 products ``G_q G_r^T`` and
  ``torch.topk`` (:func:`attacks.knn.topk_inner`), exact ties (e.g. references assigned with
  certainty to one component) broken uniformly at random; cost ``O(n_q n_r K)``, memory
  ``O(block * n_r)`` plus the ``(n, K)`` float32 responsibilities.

Scoring (:func:`attacks.scoring_linkage.score_linkage`) needs the oracle; :meth:`links` works without it.
"""

from __future__ import annotations

import numpy as np

from attacks.base import Attack, AttackResult, check_random_state, register_attack
from idfree_core.seeding import seed_int
from attacks.features import build_features, standardized_embedding
from attacks.knn import knn_blocked, knn_brute, topk_inner
from attacks.neighbors import knn_pruned
from attacks.scale import at_scale, fit_scaled_mixture, sparse_log_pair, sparse_topk
from idfree_core.errors import InputError

SPARSE_MIN_COMPONENTS = 50  # at scale, sparse top-m posteriors from this many components on (fewer: dense)


def split_queries(pool, rng) -> tuple[np.ndarray, np.ndarray, str]:
    """``(reference_rows, query_rows, how)``: sessions if the pool has later ones, else random halves."""
    sessions = pool.sessions()
    if np.any(sessions >= 1):
        ref, qry = np.flatnonzero(sessions == 0), np.flatnonzero(sessions >= 1)
        if ref.size == 0:
            raise InputError("the pool has no session-0 uploads to link later sessions to")
        return ref, qry, "sessions"
    if pool.n < 2:
        raise InputError(f"linkage needs at least 2 uploads, the pool has {pool.n}")
    perm = rng.permutation(pool.n)
    half = pool.n // 2
    return np.sort(perm[:half]), np.sort(perm[half:]), "random_half"


def _log_responsibilities(model, x: np.ndarray, block: int = 16384) -> np.ndarray:
    """``log P(c | x)`` in float32 (no underflow, unlike float32 probabilities), in blocks of rows."""
    out = np.empty((x.shape[0], model.n_components), dtype=np.float32)
    for s in range(0, x.shape[0], block):
        out[s:s + block] = model._estimate_log_prob_resp(x[s:s + block])[1]
    return out


class _Linkage(Attack):
    """Shared fit/score plumbing: the split, the features, the top-k table and pair scores."""

    name = "linkage"

    def _prepare(self, pool):
        if self.features not in ("embedding", "text", "both"):
            raise InputError(f"features must be 'embedding', 'text' or 'both', got {self.features!r}")
        if int(self.k) < 1:
            raise InputError(f"k must be >= 1, got {self.k}")
        rng = check_random_state(self.random_state)
        self.reference_rows_, self.query_rows_, self.split_ = split_queries(pool, rng)
        seed = seed_int(rng, bits=31)  # drawn whatever the features, so later draws do not depend on them
        if self.features == "embedding" and self._gaussianize:
            x = standardized_embedding(pool)
        else:
            x = build_features(pool, self.features, random_state=seed)
        self.n_fitted_ = pool.n
        return rng, x[self.reference_rows_], x[self.query_rows_]

    @property
    def knowledge(self) -> str:
        return {"embedding": "embeddings", "text": "text", "both": "embeddings+text"}[self.features]

    def links(self, pool) -> dict:
        """Without an oracle: each query's best-linked reference (upload ids) and its pair score."""
        q = self.query_rows_
        best = self.reference_rows_[self.topk_[:, 0]]
        return {"query_upload_id": pool.upload_id[q].tolist(), "linked_upload_id": pool.upload_id[best].tolist(),
                "score": self.pair_scores(np.arange(q.size), self.topk_[:, 0]).tolist(), "split": self.split_}

    def summary(self) -> dict:
        return {"name": self.name, "features": self.features, "split": self.split_,
                "n_queries": int(self.query_rows_.size), "n_references": int(self.reference_rows_.size)}

    def score(self, pool, oracle, distributions=None) -> list[AttackResult]:
        """``linkage_top1``, ``linkage_top5``, ``auc``, ``tpr_at_1pct_fpr``, ``tpr_at_0.1pct_fpr``."""
        from attacks.scoring_linkage import score_linkage

        self._check_fitted(pool, "topk_", n_fitted=getattr(self, "n_fitted_", None))
        truth, _ = oracle.codes_for(pool)
        return score_linkage(self.name, truth[self.query_rows_], truth[self.reference_rows_], self.topk_,
                             self.pair_scores, knowledge=self.knowledge, features=self.features,
                             n_pairs=self.n_pairs, n_permutations=self.n_permutations,
                             random_state=self.random_state, extra_details={"split": self.split_})


class NearestNeighbourLinkage(_Linkage):
    """Link each query to its nearest references (exact: blocked float32 products, or cell pruning on
    large pools; ``search_`` records which, and for pruning the fraction of distances computed)."""

    name = "linkage[nearest_neighbour]"
    _gaussianize = False
    PRUNE_MIN = 50000

    def suite_summary(self, ctx) -> None:
        from attacks.suite import MAX_LINKS_IN_SUMMARY

        links = self.links(ctx.pool)
        n_links = len(links["query_upload_id"])
        ctx.summary["linkage"] = {**self.summary(), "n_links": n_links, "links_truncated": n_links > MAX_LINKS_IN_SUMMARY,
                                  "links": [{"query": q, "linked": r, "score": s} for q, r, s in
                                            list(zip(links["query_upload_id"], links["linked_upload_id"],
                                                     links["score"]))[:MAX_LINKS_IN_SUMMARY]]}

    @classmethod
    def for_suite(cls, ctx, spec, features):
        """Under ``features="both"`` the evidence weights use the suite's user-count estimate."""
        n_clusters = ctx.n_users(features) if features == "both" else None
        return [(spec(features=features, n_clusters=n_clusters, mixture_cache=ctx.fits, random_state=ctx.seed()), {})]

    def __init__(self, metric: str = "euclidean", features: str = "embedding", k: int = 5, block_size: int | None = None,
                 algorithm: str = "auto", n_clusters: int | None = None, n_pairs: int = 10000, n_permutations: int = 50,
                 mixture_cache: dict | None = None, random_state=0):
        self.metric = metric
        self.mixture_cache = mixture_cache  # features="both" at scale: the suite's shared fits (read only)
        self.n_clusters = n_clusters
        self.algorithm = algorithm
        self.features = features
        self.k = k
        self.block_size = block_size
        self.n_pairs = n_pairs
        self.n_permutations = n_permutations
        self.random_state = random_state

    def fit(self, pool) -> "NearestNeighbourLinkage":
        """Exact k nearest references per query; ``algorithm``: ``brute``, ``pruned`` or ``auto``
        (pruned from ``PRUNE_MIN`` references on; both give the same neighbours up to exact ties)."""
        if self.algorithm not in ("auto", "brute", "pruned"):
            raise InputError(f"algorithm must be 'auto', 'brute' or 'pruned', got {self.algorithm!r}")
        rng, xr, xq = self._prepare(pool)
        if self.features == "both":  # distances that add the two modalities' evidence (attacks.evidence)
            xr, xq = self._evidence_split(pool, rng)
        self._xr = np.ascontiguousarray(xr, dtype=np.float32)
        self._xq = np.ascontiguousarray(xq, dtype=np.float32)
        threads = 1 if pool.n < 20000 else None  # small problems: no thread start-up cost
        pruned = self.algorithm == "pruned" or (self.algorithm == "auto" and self._xr.shape[0] >= self.PRUNE_MIN)
        if pruned:
            self.topk_, self.topk_distance_, self.search_ = knn_pruned(
                self._xq, self._xr, self.k, self.metric, threads=threads, random_state=seed_int(rng, bits=31), return_stats=True)
        else:
            if self.block_size:
                self.topk_, self.topk_distance_ = knn_blocked(self._xq, self._xr, self.k, self.metric,
                                                              self.block_size, threads)
            else:
                self.topk_, self.topk_distance_ = knn_brute(self._xq, self._xr, self.k, self.metric, threads=threads)
            self.search_ = {"algorithm": "brute"}
        return self

    def _evidence_split(self, pool, rng):
        """Reference and query rows on both modalities (:func:`attacks.evidence.combine_distances`): each
        modality's features exactly as this attack uses them alone, weighted by their evidence under
        the joint mixture with ``n_clusters`` components (None: :func:`attacks.evidence.estimate_k`)."""
        from attacks.evidence import combine_distances, estimate_k

        parts = []
        for f in ("embedding", "text"):
            single = type(self)(**{**self.get_params(), "features": f})
            parts.append(single._prepare(pool)[1:])  # same random_state: the same split
        k = int(self.n_clusters) if self.n_clusters is not None else estimate_k(pool, random_state=seed_int(rng, bits=31))
        xr, xq = combine_distances(pool, max(1, min(k, pool.n)), parts, random_state=seed_int(rng, bits=31),
                                   cache=self.mixture_cache)
        return xr, xq

    def pair_scores(self, qi: np.ndarray, ri: np.ndarray) -> np.ndarray:
        """Minus the distance (euclidean) or the cosine similarity of query ``qi`` and reference ``ri``."""
        a, b = self._xq[qi], self._xr[ri]
        if self.metric == "cosine":
            na = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            return (a * b).sum(axis=1) / np.where(na > 0, na, 1.0)
        return -np.linalg.norm(a - b, axis=1)


class LikelihoodRatioLinkage(_Linkage):
    """Link through an unsupervised Gaussian mixture: score ``log sum_c P(c | q) P(c | r)``."""

    name = "linkage[likelihood_ratio]"
    _gaussianize = True

    @classmethod
    def for_suite(cls, ctx, spec, features):
        """Reuses the suite's user-count estimate (model selection runs once per feature set)."""
        k = max(1, min(ctx.n_users(features), ctx.n_references()))
        return [(spec(n_clusters=k, features=features, mixture_cache=ctx.fits, random_state=ctx.seed()), {})]

    def __init__(self, n_clusters: int | None = None, features: str = "embedding", k: int = 5, n_init: int = 4,
                 n_pairs: int = 10000, n_permutations: int = 50, mixture_cache: dict | None = None, random_state=0):
        self.n_clusters = n_clusters
        self.features = features
        self.k = k
        self.n_init = n_init
        self.n_pairs = n_pairs
        self.n_permutations = n_permutations
        self.mixture_cache = mixture_cache
        self.random_state = random_state

    def fit(self, pool) -> "LikelihoodRatioLinkage":
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1 if pool.n < 20000 else None):
            return self._fit(pool)

    def _fit(self, pool) -> "LikelihoodRatioLinkage":
        from attacks.clustering import fit_mixture, select_n_clusters

        if self.features == "both":
            return self._fit_both(pool)
        rng, xr, xq = self._prepare(pool)
        if self.n_clusters is not None and not 1 <= int(self.n_clusters) <= pool.n:
            raise InputError(f"n_clusters must be between 1 and the pool size {pool.n}, got {self.n_clusters}")
        x = np.vstack([xr, xq])
        k = int(self.n_clusters) if self.n_clusters is not None else select_n_clusters(x, random_state=rng)[0]
        self.n_clusters_ = k
        self.fit_details_ = None
        if at_scale(x.shape[0], k) and k >= SPARSE_MIN_COMPONENTS:
            return self._fit_at_scale(xr, xq, k, rng)
        self._sparse = None
        self.model_ = fit_mixture(x, k, self.n_init, rng)
        self.reference_log_resp_ = _log_responsibilities(self.model_, xr)
        self.query_log_resp_ = _log_responsibilities(self.model_, xq)
        self.topk_ = self._topk(rng)
        return self

    def _fit_at_scale(self, xr, xq, k, rng) -> "LikelihoodRatioLinkage":
        """Large pools (:mod:`attacks.scale`): the shared subsample-fitted mixture, top-m posteriors of
        every row, sparse top-k; the features in pool order so that the clustering attack's fit is reused."""
        x = np.empty((xr.shape[0] + xq.shape[0], xr.shape[1]), dtype=xr.dtype)
        x[self.reference_rows_], x[self.query_rows_] = xr, xq
        fit = fit_scaled_mixture(x, k, seed_int(rng, bits=31), cache=self.mixture_cache)
        self.model_, self.fit_details_ = fit.model, fit.details
        self._sparse = tuple(a[rows] for rows in (self.query_rows_, self.reference_rows_)
                             for a in (fit.top_components, fit.top_log_posterior))
        self.topk_ = sparse_topk(*self._sparse, k, self.k, rng)
        return self

    def _fit_both(self, pool) -> "LikelihoodRatioLinkage":
        """Embeddings and text as evidence (:mod:`attacks.evidence`): the mixture fitted to the embeddings
        alone keeps its components when the joint evidence mixture finds user evidence in them (else
        the text's mixture does), and the other modality adds its evidence to the posteriors
        (:func:`attacks.evidence.anchored_log_resp`), which give the pair scores."""
        from attacks.evidence import JointMixture, anchored_log_resp, joint_matrix

        singles = [type(self)(**{**self.get_params(), "features": f}).fit(pool) for f in ("embedding", "text")]
        rng = check_random_state(self.random_state)
        self.reference_rows_, self.query_rows_, self.split_ = split_queries(pool, rng)  # the singles' split
        self.n_fitted_ = pool.n
        rows = np.r_[self.reference_rows_, self.query_rows_]
        x, emb = joint_matrix(pool, random_state=seed_int(rng, bits=31))
        x = x[rows]
        if all(s._sparse is not None for s in singles):  # large pools: sparse top-m posteriors throughout
            return self._fit_both_at_scale(singles, x, emb, rng)
        starts = [np.exp(np.vstack([s.reference_log_resp_, s.query_log_resp_]).astype(np.float64)) for s in singles]
        joint = JointMixture().fit(x, starts, primary=emb)
        # the anchor: the embeddings' own mixture when they carry user evidence, else the text's
        anchor, cols = (singles[0], emb) if joint.primary_evidence_ else (singles[1], ~emb)
        _, xr_a, xq_a = anchor._prepare(pool)  # the anchor's own features (same split)
        xa = np.vstack([xr_a, xq_a])
        lr = anchored_log_resp(anchor.model_._estimate_weighted_log_prob(xa), x[:, ~cols])
        self.anchor_ = "embedding" if cols is emb else "text"
        self.model_, self.n_clusters_ = joint, anchor.n_clusters_
        self._sparse, self.fit_details_ = None, None
        n_ref = self.reference_rows_.size
        self.reference_log_resp_, self.query_log_resp_ = lr[:n_ref].astype(np.float32), lr[n_ref:].astype(np.float32)
        self.topk_ = self._topk(rng)
        return self

    def _fit_both_at_scale(self, singles, x, emb, rng) -> "LikelihoodRatioLinkage":
        """:meth:`_fit_both` on large pools (:mod:`attacks.scale`): the joint evidence mixture on a row
        subsample from the singles' MAP labels (:func:`attacks.evidence.fit_subsampled`) picks the anchor;
        the other modality re-weighs the anchor's top-m posteriors of every row
        (:func:`attacks.evidence.anchored_top_log_resp`), which give sparse pair scores; no ``(n, k)`` matrix."""
        from attacks.evidence import anchored_top_log_resp, fit_subsampled

        n_ref = self.reference_rows_.size
        labels = [np.r_[s._sparse[2][:, 0], s._sparse[0][:, 0]] for s in singles]  # rows: references, queries
        joint = fit_subsampled(x, labels, primary=emb, random_state=seed_int(rng, bits=31))
        anchor, cols = (singles[0], emb) if joint.primary_evidence_ else (singles[1], ~emb)
        q_idx, q_logp, r_idx, r_logp = anchor._sparse
        idx = np.vstack([r_idx, q_idx])
        lr = anchored_top_log_resp(idx, np.vstack([r_logp, q_logp]), x[:, ~cols], anchor.n_clusters_)
        self.anchor_ = "embedding" if cols is emb else "text"
        self.model_, self.n_clusters_ = joint, anchor.n_clusters_
        self._sparse = (q_idx, lr[n_ref:], r_idx, lr[:n_ref])
        self.fit_details_ = {**joint.fit_details_, "anchor": self.anchor_, "anchor_fit": anchor.fit_details_,
                             "posteriors": "the anchor's top-m components, re-weighed by the other modality"}
        self.topk_ = sparse_topk(*self._sparse, self.n_clusters_, self.k, rng)
        return self

    @property
    def reference_resp_(self) -> np.ndarray:
        """``P(c | r)`` of the references, float32 ``(n_references, n_clusters)`` (dense, also at scale)."""
        return self._dense(1) if self._sparse is not None else np.exp(self.reference_log_resp_)

    @property
    def query_resp_(self) -> np.ndarray:
        """``P(c | q)`` of the queries, float32 ``(n_queries, n_clusters)`` (dense, also at scale)."""
        return self._dense(0) if self._sparse is not None else np.exp(self.query_log_resp_)

    def _dense(self, which: int) -> np.ndarray:
        idx, logp = self._sparse[2 * which], self._sparse[2 * which + 1]
        out = np.zeros((idx.shape[0], self.n_clusters_), dtype=np.float32)
        rows, cols = np.nonzero(idx >= 0)
        out[rows, idx[rows, cols]] = np.exp(logp[rows, cols])
        return out

    def _topk(self, rng) -> np.ndarray:
        """Top-k references by co-assignment probability, exact ties broken at random: blockwise
        float32 products (:func:`attacks.knn.topk_inner`); queries whose k-th product underflows to
        0 in float32 are ranked again on the log scale (``logsumexp``), in float64."""
        gq, gr = self.query_resp_, self.reference_resp_
        top = topk_inner(gq, gr, self.k, rng)
        tiny = np.flatnonzero(np.einsum("ij,ij->i", gq, gr[top[:, -1]]) <= 1e-30)
        for i in tiny:  # rare: queries far from every component
            s = self._log_pair(np.full(gr.shape[0], i), np.arange(gr.shape[0]))
            key = np.lexsort((rng.random(s.size), -s))
            top[i] = key[:top.shape[1]]
        return top

    def _log_pair(self, qi: np.ndarray, ri: np.ndarray) -> np.ndarray:
        from scipy.special import logsumexp

        out = np.empty(qi.size)
        for s in range(0, qi.size, 8192):
            a = self.query_log_resp_[qi[s:s + 8192]].astype(np.float64)
            out[s:s + 8192] = logsumexp(a + self.reference_log_resp_[ri[s:s + 8192]], axis=1)
        return out

    def pair_scores(self, qi: np.ndarray, ri: np.ndarray) -> np.ndarray:
        """``log sum_c P(c | q) P(c | r)`` for query ``qi`` and reference ``ri`` (log scale, floored at
        ``log 1e-300``; at scale over the pair's shared top-m components)."""
        qi, ri = np.asarray(qi), np.asarray(ri)
        if self._sparse is not None:
            return np.maximum(sparse_log_pair(*self._sparse, qi, ri), np.log(1e-300))
        return np.maximum(self._log_pair(qi, ri), np.log(1e-300))

    def summary(self) -> dict:
        out = {**super().summary(), "n_clusters": int(self.n_clusters_)}
        return {**out, "fit": self.fit_details_} if self.fit_details_ else out

    def score(self, pool, oracle, distributions=None) -> list[AttackResult]:
        from dataclasses import replace

        res = super().score(pool, oracle, distributions)
        if not self.fit_details_:
            return res
        return [replace(r, details={**r.details, "fit": self.fit_details_}) for r in res]


_LINK_METRICS = ("linkage_top1", "linkage_top5", "auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")
register_attack(NearestNeighbourLinkage.name, NearestNeighbourLinkage, group="linkage",
                features=("embedding", "text", "both"), metrics=_LINK_METRICS)
register_attack(LikelihoodRatioLinkage.name, LikelihoodRatioLinkage, group="linkage",
                features=("embedding", "text", "both"), metrics=_LINK_METRICS)
