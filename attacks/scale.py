"""Large pools: mixtures fitted on a row subsample, one chunked float32 E-step over all rows, sparse posteriors.

On a pool of ``n`` rows with ``k`` mixture components the attacks switch to this path when
:func:`at_scale` (``n >= SCALE_ROWS`` and ``n k >= SCALE_WORK``, e.g. 200,000 uploads of 2,000 users);
smaller pools keep their methods unchanged.  What is fitted on what:

* **Mixture** (:func:`fit_scaled_mixture`): a diagonal Gaussian MAP-EM mixture
  (:class:`attacks.sparse_em.CandidateMixture`: :class:`attacks.mixture_em.DiagonalMixture` whose E-step
  covers each row's ``N_CANDIDATES`` nearest means, Neal & Hinton 1998; chunked torch float32,
  ``O(rows k d)`` per refresh, ``O(rows N_CANDIDATES d)`` per iteration) fitted on a uniform random subsample of :func:`fit_rows` rows (``ROWS_PER_COMPONENT``
  per component, between ``FIT_MIN_ROWS`` and ``FIT_MAX_ROWS``), one plain k-means++ start (seeded on
  ``FIT_MIN_ROWS`` of them), at most
  ``MAX_ITER`` iterations; then a single E-step over *all* rows gives each row's MAP component and
  its ``TOP_M`` most probable components with their log posteriors (posteriors under
  ``MIN_POSTERIOR`` dropped).  Cost ``O(fit_rows k d MAX_ITER + n k d)``, memory ``O(n TOP_M)``
  plus blocks.  The BIC choice of covariance type of the small-pool path is not made (diagonal).
* **Sharing**: fits are cached per suite run (``cache``: a dict held by the
  :class:`attacks.suite.SuiteContext`), keyed by a fingerprint of the feature matrix and ``k``, so
  the clustering attacks (``clustering[auto]``, ``clustering[em]``, their "n_users known" variants
  with the same ``k``) and the likelihood-ratio linkage use one fit.
* **k-means** (:func:`kmeans_labels`): :func:`attacks.kmeans.kmeans_fit` (k-means++ seeding, float32
  Lloyd via faiss) on :func:`fit_rows` rows, one start, every row assigned to its nearest centre.
* **Linkage scores** (:func:`sparse_topk`, :func:`sparse_log_pair`): ``sum_c P(c | q) P(c | r)`` over
  the components the two rows share among their top ``TOP_M``: a sparse product over row blocks and a
  per-row top-k, instead of a dense ``queries x references x k`` product.  Exact ties are broken at
  random; a query sharing a component with fewer than ``k`` references is completed with random
  references (their truncated score is 0).

* **User count** (:func:`estimate_users_at_scale`): the rule of :func:`attacks.oracle_free.estimate_users`
  (:func:`attacks.mixture_order.combine_user_counts`) with the three criteria read off one coarse
  held-out search on a row subsample, instead of full held-out and AIC/BIC grids of two variants each:
  its cost is that of about one fit of the largest ``k`` on the fitting subsample.
* **EM attribution** (:class:`attacks.em.EMAttribution`): the shared mixture above (Gaussian diagonal,
  no variant selection, split-merge moves or family refinement); the MAP labels and max posteriors
  are read off the one E-step over all rows.

Each attack reports ``details["fit"]`` (what was fitted on what).
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from idfree_core.seeding import check_random_state, seed_int

SCALE_ROWS = 50000
SCALE_WORK = 2**25  # rows x components (about 33.5M)
ROWS_PER_COMPONENT = 20
FIT_MIN_ROWS = 20000
FIT_MAX_ROWS = 100000
MAX_ITER = 12
TOP_M = 8
N_CANDIDATES = 8  # candidate components per row of the sparse E-step (attacks.sparse_em) ...
REFRESH = 4  # ... recomputed every this many E-steps
MIN_POSTERIOR = 1e-8


def at_scale(n: int, k: int) -> bool:
    """Whether a pool of ``n`` rows with ``k`` components takes the scalable path (module doc)."""
    return int(n) >= SCALE_ROWS and int(n) * int(k) >= SCALE_WORK and int(k) >= 2


def fit_rows(n: int, k: int) -> int:
    """Rows of the fitting subsample: ``ROWS_PER_COMPONENT k`` within ``[FIT_MIN_ROWS, FIT_MAX_ROWS]``."""
    return int(min(n, max(k, np.clip(ROWS_PER_COMPONENT * int(k), FIT_MIN_ROWS, FIT_MAX_ROWS))))


HELDOUT_MAX_N = 20000  # user count at scale: rows (train + validation) of the held-out search ...
HELDOUT_ROWS_PER_COMPONENT = 5  # ... and at least this many training rows per component of the largest k
GRID_RATIO = 2.0  # ... on a geometric grid of this ratio, refined around the choice ...
REFINE_ROUNDS = 2  # ... this many times (3 points between its tried neighbours each); then, while the
PATIENCE = 3  # grid points past the best before the climb stops (10-iteration fits dip: 60,000 x 32, 600 users:
# held-out best at 29 among 1..108, then 210 and 408 higher still)
GROW_REACH = 4  # work budget (the coarse search's largest fit) lets a search on more rows reach GROW_REACH
GROW_MIN = 1.5  # times its choice with at least GROW_MIN times the rows, the search is repeated on
GROW_ROUNDS = 2  # those rows (at most GROW_ROUNDS times): held-out likelihood's choice grows with the rows
# per user (60,000 uploads of 600 users, noise 1.5: 29 on 20,000 rows, 408 on all 60,000)


def _candidate_mixture(k, **kwargs):
    """The scale path's :class:`attacks.sparse_em.CandidateMixture`: ``N_CANDIDATES`` candidates per row,
    refreshed every ``REFRESH`` E-steps."""
    from attacks.sparse_em import CandidateMixture

    return CandidateMixture(k, n_candidates=N_CANDIDATES, refresh=REFRESH, **kwargs)


def estimate_users_at_scale(x: np.ndarray, k_max: int, random_state=0) -> tuple[int, tuple[int, int], dict]:
    """The user count of :func:`attacks.oracle_free.estimate_users` at scale (module doc), same rule and
    return value: :func:`attacks.mixture_order.combine_user_counts` of AIC's, BIC's and held-out
    likelihood's (one-standard-error) choices, all three read off one coarse held-out search
    (:func:`attacks.mixture_order.estimate_n_components` on ``HELDOUT_MAX_N`` rows: Gaussian diagonal
    only, 10 EM iterations from plain k-means++ with the candidate E-step
    (:class:`attacks.sparse_em.CandidateMixture`), a ratio-``GRID_RATIO`` grid climbed until ``PATIENCE``
    values in a row below the best, then ``REFINE_ROUNDS`` rounds of 3 points between the tried neighbours of the
    chosen ``k``); AIC ``-2 log L + 2 p`` and BIC ``-2 log L + p log n``
    (``p = (k - 1) + 2 k d``) from the training log-likelihoods of the same fits (candidate-restricted:
    a lower bound, tight when each row's posterior lies within its candidates).
    ``k <= 0.75 HELDOUT_MAX_N / HELDOUT_ROWS_PER_COMPONENT`` (3,000).  Where that choice is small, the
    search is repeated on more rows (``GROW_*``): as many as let the largest fit of the first search
    (its training rows x components, the budget) reach ``GROW_REACH`` times the choice; the criteria
    are read off the last search."""
    from attacks.mixture_order import OrderSearch, estimate_n_components, information_criterion, user_count_estimate

    n = x.shape[0]
    train = 0.75 * HELDOUT_MAX_N
    budget = train * (int(train) // HELDOUT_ROWS_PER_COMPONENT)  # training rows x components of the largest fit
    search = OrderSearch(variants=("gaussian-diag",), max_iter=10, n_refine=3, patience=PATIENCE, init_trials=1,
                         grid_ratio=GRID_RATIO, refine_rounds=REFINE_ROUNDS, mixture=_candidate_mixture)
    rows, rounds = min(n, HELDOUT_MAX_N), 0
    while True:
        cap = int(min(k_max, int(0.75 * rows) // HELDOUT_ROWS_PER_COMPONENT, budget // (0.75 * rows)))
        fits: dict = {}
        seed = random_state if rounds == 0 else _round_seed(random_state, rounds)
        k_ho, (lo, hi), _ = estimate_n_components(x, k_max=cap, max_n=rows, random_state=seed, rule="one_se",
                                                  search=search, train_ll=fits)
        more = int(min(n, budget // (0.75 * GROW_REACH * max(k_ho, 1))))  # rows at which GROW_REACH x k_ho fits
        if more < GROW_MIN * rows or rounds >= GROW_ROUNDS:
            break
        rows, rounds = more, rounds + 1
    d = x.shape[1]
    crit = {name: {k: information_criterion(ll, k, d, n, name) for k, (ll, n) in fits.items()}
            for name in ("aic", "bic")}
    k_aic, k_bic = (min(crit[c], key=crit[c].get) if crit[c] else k_ho for c in ("aic", "bic"))
    return user_count_estimate(k_aic, k_bic, k_ho, (lo, hi))


def _round_seed(random_state, r: int) -> int:
    """The seed of round ``r >= 1`` of the growing count search (round 0 uses ``random_state`` itself)."""
    if isinstance(random_state, np.random.Generator):
        return seed_int(random_state, 31)
    return seed_int(np.random.default_rng([int(random_state or 0), int(r)]), 31)


def fingerprint(x: np.ndarray) -> str:
    """A cheap content key of a feature matrix (shape, a strided sample of rows and column sums in float32)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(x.shape).encode())
    sample = np.asarray(x[:: max(1, x.shape[0] // 997)], dtype=np.float32)  # float32: a float64 matrix and
    h.update(sample.tobytes())  # its float32 copy (what the mixtures fit) share one key
    h.update(np.asarray(x, dtype=np.float32).sum(axis=0, dtype=np.float64).tobytes())
    return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class ScaledMixture:
    """A mixture fitted at scale (module doc): ``model`` (:class:`attacks.mixture_em.DiagonalMixture`),
    per-row ``labels``, ``top_components`` ``(n, m)`` (``-1``: dropped) and ``top_log_posterior``
    ``(n, m)`` float32, and ``details`` (what was fitted on what)."""

    model: object
    labels: np.ndarray
    top_components: np.ndarray
    top_log_posterior: np.ndarray
    details: dict

    @property
    def n_components(self) -> int:
        return int(self.model.n_components)


def fit_scaled_mixture(x: np.ndarray, k: int, random_state=0, cache: dict | None = None) -> ScaledMixture:
    """Diagonal MAP-EM mixture on a subsample, then one E-step over all rows (module doc); cached."""
    from attacks.mixture_em import VARIANTS

    key = (fingerprint(x), int(k))
    if cache is not None and key in cache:
        return cache[key]
    rng = check_random_state(random_state)
    n = x.shape[0]
    m = fit_rows(n, k)
    sub = np.sort(rng.choice(n, m, replace=False)) if m < n else np.arange(n)
    model = _candidate_mixture(int(k), n_init=1, max_iter=MAX_ITER, init_sample=min(m, FIT_MIN_ROWS), init_trials=1,
                               random_state=seed_int(rng, 31), **VARIANTS["gaussian-diag"]).fit(x[sub])
    top, logp = model.predict_top(x, TOP_M)
    labels = top[:, 0].copy()
    drop = logp < np.log(MIN_POSTERIOR)
    drop[:, 0] = False
    top[drop] = -1
    logp[drop] = -np.inf
    details = {"method": "diagonal Gaussian MAP-EM with a candidate-restricted E-step (attacks.sparse_em) on a row "
                         "subsample, then one candidate E-step on all rows",
               "n_candidates": N_CANDIDATES,
               "fitted_on_rows": int(m), "n_rows": int(n), "n_components": int(k), "n_iter": int(model.n_iter_),
               "max_iter": MAX_ITER, "top_m_posteriors": int(top.shape[1]), "min_posterior": MIN_POSTERIOR}
    out = ScaledMixture(model, labels, top, logp, details)
    if cache is not None:
        cache[key] = out
    return out


def kmeans_labels(x: np.ndarray, k: int, random_state=0) -> tuple[np.ndarray, object, dict]:
    """k-means at scale (module doc): ``(labels, KMeansResult, details)``."""
    from attacks.kmeans import kmeans_fit

    m = fit_rows(x.shape[0], k)
    res = kmeans_fit(x, int(k), n_iter=20, seed_sample=min(m, 20000), fit_sample=m, random_state=random_state)
    return res.labels, res, {"method": "k-means++ seeding, 20 float32 Lloyd iterations (attacks.kmeans), one start",
                             "fitted_on_rows": int(m), "n_rows": int(x.shape[0]), "n_components": int(k)}


def _csr(idx: np.ndarray, logp: np.ndarray, n_cols: int):
    from scipy.sparse import csr_matrix

    keep = idx >= 0
    rows = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape)[keep]
    return csr_matrix((np.exp(logp[keep].astype(np.float64)), (rows, idx[keep])), shape=(idx.shape[0], n_cols))


def sparse_topk(q_idx, q_logp, r_idx, r_logp, n_components: int, k: int, rng, budget: int = 2**23) -> np.ndarray:
    """Top-``k`` references per query by ``sum_c P(c | q) P(c | r)`` from top-m posteriors (module doc)."""
    rng = check_random_state(rng)
    q, r = _csr(q_idx, q_logp, n_components), _csr(r_idx, r_logp, n_components)
    rt = r.T.tocsr()
    n_q, n_r = q.shape[0], r.shape[0]
    k = int(min(k, n_r))
    refs_per_comp = np.diff(rt.indptr)
    per_query = np.bincount(np.repeat(np.arange(n_q), np.diff(q.indptr)), weights=refs_per_comp[q.indices],
                            minlength=n_q)
    ends = np.cumsum(per_query)
    out = np.empty((n_q, k), dtype=np.int64)
    s = 0
    while s < n_q:  # row blocks of about ``budget`` candidate pairs
        e = max(s + 1, int(np.searchsorted(ends, (ends[s - 1] if s else 0.0) + budget, side="right")))
        sim = (q[s:e] @ rt).tocoo()
        rows, cols, vals = sim.row, sim.col, sim.data
        order = np.lexsort((rng.random(rows.size), -vals, rows))
        rows, cols = rows[order], cols[order]
        first = np.searchsorted(rows, np.arange(e - s))
        count = np.diff(np.append(first, rows.size))
        rank = np.arange(rows.size) - first[rows]
        take = rank < k
        block = np.full((e - s, k), -1, dtype=np.int64)
        block[rows[take], rank[take]] = cols[take]
        for i in np.flatnonzero(count < k):  # fewer than k sharing references: random completion
            have = block[i, :count[i]]
            extra = rng.choice(n_r, size=min(n_r, k + have.size), replace=False)
            extra = extra[~np.isin(extra, have)][: k - have.size]
            block[i, count[i]:] = extra
        out[s:e] = block
        s = e
    return out


def sparse_log_pair(q_idx, q_logp, r_idx, r_logp, qi: np.ndarray, ri: np.ndarray, block: int = 65536) -> np.ndarray:
    """``log sum_c P(c | q) P(c | r)`` over shared top-m components for pairs ``(qi, ri)`` (``-inf``: none)."""
    from scipy.special import logsumexp

    out = np.empty(qi.size)
    for s in range(0, qi.size, block):
        a, b = q_idx[qi[s:s + block]], r_idx[ri[s:s + block]]
        la, lb = q_logp[qi[s:s + block]].astype(np.float64), r_logp[ri[s:s + block]].astype(np.float64)
        same = (a[:, :, None] == b[:, None, :]) & (a[:, :, None] >= 0)
        terms = np.where(same, la[:, :, None] + lb[:, None, :], -np.inf)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[s:s + block] = logsumexp(terms.reshape(terms.shape[0], -1), axis=1)
    return out
