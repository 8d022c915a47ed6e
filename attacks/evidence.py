"""Embeddings and text together as *evidence*: ``features="both"`` never weaker than either alone.

Side by side in one distance or one k-means++ start, the two feature blocks live on incomparable
scales, and a few dozen uninformative text dimensions swamp informative embedding dimensions (or
the reverse).  Here the two modalities are treated as conditionally independent given the user, so
their log-likelihoods add (naive-Bayes evidence), and each dimension's share of the evidence is
learned from the pool by empirical Bayes, without labels:

* :class:`JointMixture`: a Gaussian mixture over both blocks (the embedding block through
  :func:`attacks.features.gaussianize`, the text block the LSA features of
  :func:`attacks.features.text_features`) with one diagonal within-component variance shared by all
  components ("tied": a per-component variance in dozens of uninformative dimensions adds noise of
  its own to every posterior), whose component means are shrunk towards the grand mean by the
  positive-part James-Stein / empirical-Bayes estimate of the between-component variance per
  dimension (Efron & Morris 1973): ``signal_d = max(0, B_d - k w_d / n)``, where ``B_d`` is the
  weighted variance of the raw component means and ``k w_d / n`` what sampling noise alone gives
  it.  A dimension that does not separate components gets ``signal_d = 0``, equal means in every
  component, and adds the same log-likelihood to all of them: nothing to the posteriors.
* Starts: EM is started from partitions (or posteriors) found on each modality alone, normally by
  the very attack that runs under ``features="both"`` (:func:`combine_partitions`), and the fit
  with the lowest joint BIC is kept (the highest likelihood when the starts have equal ``k`` and
  equal shrinkage).  EM does not lower the likelihood of its start, so
  a start from the better single-modality partition is kept unless the joint evidence moves it.
* :meth:`JointMixture.evidence_weights`: per-dimension weights ``lambda_d = 1 / w_d - 1 / t_d``
  (``t_d = w_d + signal_d``): for two uploads of a Gaussian random-effects model,
  ``-sum_d lambda_d (q_d - r_d)^2 / 4`` is, up to terms in ``q`` and ``r`` alone, the log likelihood
  ratio same-user / different-user (the diagonal two-covariance model, Ioffe 2006 "Probabilistic
  linear discriminant analysis"), so Euclidean distance on ``x * sqrt(lambda)`` ranks pairs by
  summed evidence and an uninformative dimension weighs exactly 0.  Nearest-neighbour linkage
  under ``features="both"`` keeps each modality's own geometry and weighs each modality as one
  isotropic block (:func:`modality_weights`, :func:`combine_distances`).
* The number of components under ``features="both"`` with the user count unknown
  (:func:`choose_k`): the embeddings' own estimate when the joint model finds user evidence in
  them, else the text's (BIC counts the effective number of shrunk mean parameters,
  ``sum n_c / (n_c + tau_d)``, the degrees of freedom of a ridge-type estimate).
* Large pools (:func:`attacks.scale.at_scale`, e.g. 200,000 uploads of 2,000 users): no ``(n, k)``
  matrix anywhere.  The starts are single-modality MAP labels (the attack's own at-scale fits, or
  :func:`attacks.scale.fit_scaled_mixture` per modality in :func:`fit_joint`), summed through a sparse
  indicator; the joint mixture is fitted on :func:`attacks.scale.fit_rows` rows
  (:func:`fit_subsampled`), the start chosen on ``CHOOSE_ROWS_FACTOR`` times as many, and every
  E-step, held-out likelihood and prediction runs in row blocks of at most ``BLOCK_CELLS``
  (row, component) entries; likelihood-ratio linkage keeps the anchor's top-m posteriors
  (:func:`anchored_top_log_resp`).

The adversary uses no oracle anywhere: shrinkage, weights, starts and ``k`` come from the pool.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from attacks.scale import at_scale
from idfree_core.errors import InputError
from idfree_core.seeding import check_random_state, seed_int

LOG_2PI = math.log(2.0 * math.pi)
BLOCK = 8192
BLOCK_CELLS = 2**21  # at most this many (row, component) entries per block: rows per block = BLOCK_CELLS / k
DENSE_START_CELLS = 2**24  # label starts with more (row, component) cells: sparse indicator sums
CHOOSE_ROWS_FACTOR = 4  # at scale: the start is chosen on this many times the fitting subsample's rows


def _rows(k: int) -> int:
    """Rows per block of a ``k``-component pass: ``BLOCK``, fewer when ``BLOCK k > BLOCK_CELLS`` (memory
    ``O(BLOCK_CELLS)`` per block whatever ``k``)."""
    return int(max(64, min(BLOCK, BLOCK_CELLS // max(int(k), 1))))


def modality_blocks(pool, random_state=0) -> tuple[np.ndarray, np.ndarray]:
    """``(embedding block, text block)`` of ``pool`` as the single-modality attacks see them: the
    embeddings through :func:`attacks.features.gaussianize`, the text as LSA features."""
    from attacks.features import standardized_embedding, text_features

    if pool.text is None:
        raise InputError("features='both' needs a 'text' column, but the pool has none")
    return standardized_embedding(pool), text_features(pool.text, random_state=random_state)


def _one_hot(labels: np.ndarray) -> np.ndarray:
    """``(n, K)`` indicator of ``labels`` (noise ``-1`` becomes a cluster of its own)."""
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    out = np.zeros((codes.size, int(codes.max()) + 1))
    out[np.arange(codes.size), codes] = 1.0
    return out


class JointMixture:
    """Tied-diagonal Gaussian mixture with empirical-Bayes mean shrinkage, fitted by EM from given
    starts (module doc).

    ``fit(x, starts)``: ``starts`` a list of label vectors or ``(n, k)`` responsibility matrices
    (each fixes its own number of components).  Fitted state: ``weights_ (k,)``, ``means_ (k, d)``,
    ``variance_ (d,)`` (within), ``signal_ (d,)`` (between, shrunk), ``log_likelihood_``, ``bic_``,
    ``start_`` (index of the start kept), ``n_components_``, ``n_iter_``, and ``start_params_`` (the
    ``(weights, means, variance)`` EM reached from every start, kept or not: :meth:`predict_start`).
    """

    def __init__(self, max_iter: int = 100, tol: float = 1e-6, schwarz: bool = True):
        self.max_iter = max_iter
        self.tol = tol
        self.schwarz = schwarz  # Schwarz-correct the held-out choice (:meth:`_choose`); off at scale

    @staticmethod
    def _logp(x, w, mu, var):
        prec = 1.0 / var
        maha = ((x * x) @ prec)[:, None] - 2.0 * x @ (mu * prec).T + (mu * mu * prec).sum(1)
        return np.log(w) - 0.5 * (np.log(var).sum() + x.shape[1] * LOG_2PI) - 0.5 * maha

    def _m_step(self, x, nk, s1, s2):
        n, d = x.shape
        k = nk.size
        safe = np.maximum(nk, 1e-12)
        w = safe / safe.sum()
        raw_mu = s1 / safe[:, None]
        within = np.maximum((s2.sum(0) - (s1 * raw_mu).sum(0)) / n, self._floor)
        grand = s1.sum(0) / n
        between = (nk[:, None] * (raw_mu - grand) ** 2).sum(0) / n
        signal = np.maximum(between - k * within / n, 0.0)  # positive-part James-Stein
        tau = within / np.maximum(signal, 1e-300)  # pseudo-uploads at the grand mean, per dimension
        mu = (s1 + tau * grand) / (nk[:, None] + tau)
        var = within + (nk[:, None] * (raw_mu - mu) ** 2).sum(0) / n  # the shrinkage's extra spread
        dof = float((nk[:, None] / (nk[:, None] + tau)).sum())  # effective mean parameters
        return w, mu, np.maximum(var, self._floor), signal, dof

    def _pass(self, x, w, mu, var):
        """E-step in row blocks: total log-likelihood and the sufficient statistics."""
        k, d = mu.shape
        ll, nk, s1, s2 = 0.0, np.zeros(k), np.zeros((k, d)), np.zeros((k, d))
        b = _rows(k)
        for s in range(0, x.shape[0], b):
            xb = x[s:s + b]
            lp = self._logp(xb, w, mu, var)
            lse = logsumexp(lp, axis=1)
            ll += float(lse.sum())
            r = np.exp(lp - lse[:, None])
            nk += r.sum(0)
            s1 += r.T @ xb
            s2 += r.T @ (xb * xb)
        return ll, (nk, s1, s2)

    @staticmethod
    def _start_stats(x, start):
        """``(n_k, sum_k x, sum_k x^2)`` of a start: labels (noise ``-1`` a cluster of its own) or ``(n, k)``
        responsibilities; labels of many rows and components through a sparse indicator (no ``(n, k)``)."""
        start = np.asarray(start)
        if start.ndim == 1 and start.size * (int(np.unique(start).size)) > DENSE_START_CELLS:
            from scipy.sparse import csr_matrix

            _, codes = np.unique(start, return_inverse=True)
            ind = csr_matrix((np.ones(codes.size), (codes, np.arange(codes.size))), shape=(int(codes.max()) + 1, codes.size))
            return np.bincount(codes).astype(np.float64), ind @ x, ind @ (x * x)
        r = _one_hot(start) if start.ndim == 1 else np.asarray(start, dtype=np.float64)
        return r.sum(0), r.T @ x, r.T @ (x * x)

    def _run(self, x, st):
        prev, it = -np.inf, 0
        for it in range(int(self.max_iter)):
            params = self._m_step(x, *st)
            ll, st = self._pass(x, *params[:3])
            if ll - prev <= self.tol * abs(ll):
                break
            prev = ll
        params = self._m_step(x, *st)
        ll, _ = self._pass(x, *params[:3])
        return ll, params, it + 1

    def fit(self, x, starts, primary=None, x_choose=None) -> "JointMixture":
        """EM from every start; the fit kept is chosen by :meth:`_choose` (``primary``: boolean mask
        of the columns whose evidence decides first, the embedding block; None: likelihood alone) on
        the rows ``x_choose`` (default ``x``; large pools: more rows than the fitting subsample)."""
        x = np.asarray(x, dtype=np.float64)
        n, d = x.shape
        if not starts:
            raise InputError("JointMixture.fit needs at least one start")
        self._floor = 1e-6 * max(float(x.var(0).mean()), 1e-12)
        fits = []
        for start in starts:
            ll, params, n_iter = self._run(x, self._start_stats(x, start))
            fits.append((ll, params, n_iter))
        self.start_ = self._choose(x if x_choose is None else np.asarray(x_choose, dtype=np.float64), fits, primary)
        self.start_params_ = [f[1][:3] for f in fits]
        ll, (w, mu, var, signal, dof), self.n_iter_ = fits[self.start_]
        self.weights_, self.means_, self.variance_, self.signal_ = w, mu, var, signal
        self.log_likelihood_ = float(ll)
        self.n_components_ = int(w.size)
        self.bic_ = -2.0 * ll + ((w.size - 1) + dof + 2 * d) * math.log(n)  # + d grand means, d variances
        return self

    def _heldout_ll(self, x, params, cols) -> np.ndarray:
        """Per-row log-likelihood of the ``cols`` block, two-fold cross-fitted: the block's mixture
        parameters come from the other half's rows (responsibilities of the joint fit ``params``), so
        that a partition of noise gains nothing (in-sample, k-means cells of pure noise do)."""
        w, mu, var = params[:3]
        xc = x[:, cols]
        n, k = x.shape[0], w.size
        fold = np.arange(n) % 2 == 0
        stats = {True: [np.zeros(k), np.zeros((k, xc.shape[1])), np.zeros((k, xc.shape[1]))]}
        stats[False] = [np.zeros_like(a) for a in stats[True]]
        b = _rows(k)
        for s in range(0, n, b):  # responsibilities of the joint fit, in row blocks, summed per fold
            r = np.exp(self._logp(x[s:s + b], w, mu, var))
            r /= r.sum(1, keepdims=True)
            for f in (True, False):
                sel = fold[s:s + b] == f
                rt, xt = r[sel], xc[s:s + b][sel]
                acc = stats[f]
                acc[0] += rt.sum(0)
                acc[1] += rt.T @ xt
                acc[2] += rt.T @ (xt * xt)
        out = np.empty(n)
        for train in (True, False):
            test = np.flatnonzero(fold != train)
            wt, mut, vart = self._m_step(xc[fold == train], *stats[train])[:3]
            for s in range(0, test.size, b):
                rows = test[s:s + b]
                out[rows] = logsumexp(self._logp(xc[rows], wt, mut, vart), axis=1)
        return out

    def _choose(self, x, fits, primary) -> int:
        """The fit with the highest held-out likelihood of the ``primary`` block (:meth:`_heldout_ll`)
        when Vuong's (1989) paired test on its per-row log-likelihoods, Schwarz-corrected for the
        block's effective parameters, is decisive (``z > 1.96``) against every other fit and against
        one component, else the highest joint likelihood.  Embedding clusters are user clusters by
        the system's design (each upload is a draw from its user's distribution), while text also
        clusters by topic and template: on the persona corpus the text-started fit has the higher
        joint likelihood and the lower attribution accuracy.  Sets ``primary_evidence_``: whether the
        kept fit's ``primary`` block decisively beats one component (the block carries user evidence)."""
        by_ll = int(np.argmax([f[0] for f in fits]))
        self.primary_evidence_ = False
        if primary is None or not np.any(primary):
            return by_ll
        cols = np.asarray(primary, dtype=bool)
        n = x.shape[0]
        rows = [self._heldout_ll(x, f[1], cols) for f in fits]
        dof = [self._block_dof(f[1], cols, n) for f in fits]
        one = (np.ones(1), x.mean(0, keepdims=True), np.maximum(x.var(0), self._floor), np.zeros(x.shape[1]))
        rows.append(self._heldout_ll(x, one, cols))  # no user evidence at all in the block
        dof.append(0.0)

        pen = math.log(n) / 2 if self.schwarz else 0.0

        def beats(a: int, b: int) -> bool:
            diff = rows[a] - rows[b]
            gain = diff.sum() - (dof[a] - dof[b]) * pen  # Schwarz-corrected (Vuong 1989)
            return bool(gain > 1.96 * max(diff.std() * math.sqrt(n), 1e-12))

        top = int(np.argmax([r.sum() - p * pen for r, p in zip(rows[:-1], dof[:-1])]))
        if all(beats(top, j) for j in range(len(rows)) if j != top):
            self.primary_evidence_ = True
            return top
        self.primary_evidence_ = beats(by_ll, len(rows) - 1)
        return by_ll

    @staticmethod
    def _block_dof(params, cols, n) -> float:
        """Effective mean parameters of the ``cols`` block: ``sum_{c, d} n_c / (n_c + tau_d)``."""
        w, _, var, signal = params[:4]
        tau = var[cols] / np.maximum(signal[cols], 1e-300)
        nk = w[:, None] * n
        return float((nk / (nk + tau)).sum())

    def log_resp(self, x) -> np.ndarray:
        """``log P(c | x)``, ``(n, k)`` float64."""
        x = np.asarray(x, dtype=np.float64)
        out = np.empty((x.shape[0], self.n_components_))
        b = _rows(self.n_components_)
        for s in range(0, x.shape[0], b):
            lp = self._logp(x[s:s + b], self.weights_, self.means_, self.variance_)
            out[s:s + b] = lp - logsumexp(lp, axis=1, keepdims=True)
        return out

    def predict(self, x) -> np.ndarray:
        """MAP component per row, in row blocks (memory ``O(BLOCK_CELLS)``, no ``(n, k)`` matrix)."""
        b = _rows(self.n_components_)
        return np.concatenate([self.log_resp(x[s:s + b]).argmax(1) for s in range(0, len(x), b)])

    def predict_start(self, x, j: int) -> np.ndarray:
        """MAP component per row under the fit EM reached from start ``j`` (kept or not), in row blocks."""
        w, mu, var = self.start_params_[j]
        x = np.asarray(x, dtype=np.float64)
        b = _rows(w.size)
        return np.concatenate([self._logp(x[s:s + b], w, mu, var).argmax(1) for s in range(0, len(x), b)])

    def evidence_weights(self) -> np.ndarray:
        """``lambda_d = 1 / w_d - 1 / (w_d + signal_d)`` (module doc), ``>= 0``, 0 where no signal."""
        return 1.0 / self.variance_ - 1.0 / (self.variance_ + self.signal_)


def anchored_log_resp(anchor_logp: np.ndarray, other: np.ndarray, max_iter: int = 100, tol: float = 1e-6) -> np.ndarray:
    """``log P(c | x)`` when one modality keeps its own fitted mixture and the other adds evidence.

    ``anchor_logp (n, k)``: ``log pi_c + log p_A(a | c)`` of the anchor modality's mixture (fixed:
    components, weights and covariance structure as that modality's attack fitted them); the other
    modality ``other (n, d)`` gets a tied-diagonal Gaussian per component with the empirical-Bayes
    mean shrinkage of :class:`JointMixture`, fitted by EM with the posteriors
    ``P(c | x) ~ pi_c p_A(a | c) p_B(b | c)``.  Where ``other`` carries no evidence its means shrink to
    the grand mean and the posteriors are exactly the anchor's.
    """
    jm = JointMixture(max_iter=max_iter, tol=tol)
    other = np.asarray(other, dtype=np.float64)
    jm._floor = 1e-6 * max(float(other.var(0).mean()), 1e-12)
    lp0 = np.asarray(anchor_logp, dtype=np.float64)
    lr = lp0 - logsumexp(lp0, axis=1, keepdims=True)
    prev = -np.inf
    for _ in range(int(max_iter)):
        r = np.exp(lr)
        _, mu, var, _, _ = jm._m_step(other, r.sum(0), r.T @ other, r.T @ (other * other))
        lp = lp0 + jm._logp(other, np.ones(mu.shape[0]), mu, var)
        lr, ll = _log_normalise(lp)
        if ll - prev <= tol * abs(ll):
            break
        prev = ll
    return lr


def _log_normalise(lp: np.ndarray) -> tuple[np.ndarray, float]:
    """Row-normalised log posteriors of log joint ``lp (n, k)`` and the total log-likelihood."""
    lse = logsumexp(lp, axis=1, keepdims=True)
    return lp - lse, float(lse.sum())


def anchored_top_log_resp(idx: np.ndarray, logp: np.ndarray, other: np.ndarray, n_components: int,
                          max_iter: int = 100, tol: float = 1e-6) -> np.ndarray:
    """:func:`anchored_log_resp` on sparse anchor posteriors (large pools): ``idx (n, m)`` each row's top
    ``m`` anchor components (``-1``: dropped) and ``logp (n, m)`` their log posteriors; the other
    modality's evidence re-weighs each row's own components only.  Returns ``log P(c | x)`` over
    ``idx``, ``(n, m)`` float32 (``-inf`` where dropped); memory ``O(n m + k d)`` plus row blocks."""
    from scipy.sparse import csr_matrix

    jm = JointMixture(max_iter=max_iter, tol=tol)
    other = np.asarray(other, dtype=np.float64)
    n, d = other.shape
    jm._floor = 1e-6 * max(float(other.var(0).mean()), 1e-12)
    keep = np.asarray(idx) >= 0
    safe = np.where(keep, idx, 0)
    lp0 = np.where(keep, np.asarray(logp, dtype=np.float64), -np.inf)
    lr = lp0 - logsumexp(lp0, axis=1, keepdims=True)
    rows, comps = np.nonzero(keep)
    comps = safe[rows, comps]
    sq = other * other
    b = max(1, BLOCK_CELLS // max(1, idx.shape[1] * d))
    prev = -np.inf
    for _ in range(int(max_iter)):
        resp = csr_matrix((np.exp(lr[keep]), (comps, rows)), shape=(int(n_components), n))  # (k, n), sparse
        _, mu, var, _, _ = jm._m_step(other, np.asarray(resp.sum(1)).ravel(), resp @ other, resp @ sq)
        prec = 1.0 / var
        const = -0.5 * (np.log(var).sum() + d * LOG_2PI)
        mu_prec, mu_sq = mu * prec, (mu * mu * prec).sum(1)
        lp = np.empty_like(lp0)
        for s in range(0, n, b):  # each row's own components only
            ob, cb = other[s:s + b], safe[s:s + b]
            maha = (sq[s:s + b] @ prec)[:, None] - 2.0 * np.einsum("bd,bmd->bm", ob, mu_prec[cb]) + mu_sq[cb]
            lp[s:s + b] = lp0[s:s + b] + const - 0.5 * maha
        lr, ll = _log_normalise(lp)
        if ll - prev <= tol * abs(ll):
            break
        prev = ll
    return np.where(keep, lr, -np.inf).astype(np.float32)


def fit_subsampled(x: np.ndarray, starts, primary=None, random_state=0) -> JointMixture:
    """:class:`JointMixture` on a large pool (:func:`attacks.scale.at_scale`): fitted on a uniform random
    subsample of :func:`attacks.scale.fit_rows` rows from the label ``starts`` restricted to it (sparse
    indicator sums, no ``(n, k)`` start), at most :data:`attacks.scale.MAX_ITER` EM iterations; the
    held-out choice between the starts (:meth:`JointMixture._choose`) on up to ``CHOOSE_ROWS_FACTOR``
    times as many rows *outside* the fitting subsample (20 rows per component leave the cross-fitted
    embedding block too few to be decisive: on 40 users x 60 uploads the text start's in-sample
    likelihood then wins, attribution 0.07 against 0.73), and, rows the fit never saw giving a
    partition of noise nothing, without the Schwarz correction, whose ``(k d / 2) log n`` grows with the
    user count (60,000 uploads of 600 users in 32 dimensions: the embedding start gains 17,405 nats
    held-out, z = 66, against a penalty of 102,029, so the text start was kept: attribution 0.020
    against 0.165, the embeddings alone 0.107).  Fewer unseen rows than the subsample's: the choice on
    all rows, Schwarz-corrected, as on small pools.  E-steps, held-out choice and :meth:`JointMixture.predict` in row blocks of ``BLOCK_CELLS``
    entries: memory ``O(n d + BLOCK_CELLS + k d)``, cost ``O(fit_rows k d MAX_ITER + n k d)``.
    ``fit_details_`` says what was fitted on what."""
    from attacks.scale import MAX_ITER, fit_rows

    rng = check_random_state(random_state)
    n = x.shape[0]
    starts = [np.asarray(s) for s in starts]
    if any(s.ndim != 1 for s in starts):
        raise InputError("fit_subsampled needs label starts (1-D), not responsibilities")
    k = max(int(np.unique(s).size) for s in starts)
    m = fit_rows(n, k)
    perm = rng.permutation(n)
    sub = np.sort(perm[:m])
    rest = perm[m:m + CHOOSE_ROWS_FACTOR * m]  # rows the fit never saw: the choice between starts is held out
    clean = rest.size >= m
    choose = np.sort(rest) if clean else np.sort(perm[:CHOOSE_ROWS_FACTOR * m])
    model = JointMixture(max_iter=MAX_ITER, schwarz=not clean).fit(x[sub], [s[sub] for s in starts], primary=primary,
                                                                    x_choose=x[choose])
    model.fit_details_ = {"method": "joint evidence mixture (attacks.evidence.JointMixture) on a row subsample from "
                                    "the single-modality labels, then one blocked E-step on all rows",
                          "fitted_on_rows": int(m), "chosen_on_rows": int(choose.size),
                          "chosen_on_unseen_rows": bool(clean), "n_rows": int(n), "n_components": int(model.n_components_),
                          "n_iter": int(model.n_iter_), "max_iter": MAX_ITER, "start": int(model.start_)}
    return model


def joint_matrix(pool, random_state=0) -> tuple[np.ndarray, np.ndarray]:
    """The two blocks side by side (:func:`modality_blocks`), what :class:`JointMixture` is fitted to,
    and the boolean mask of the embedding columns."""
    emb, txt = modality_blocks(pool, random_state=random_state)
    return np.hstack([emb, txt]), np.r_[np.ones(emb.shape[1], bool), np.zeros(txt.shape[1], bool)]


def combine_partitions(pool, starts, random_state=0) -> tuple[np.ndarray, JointMixture, np.ndarray]:
    """Labels of the joint evidence mixture started from each of ``starts`` (single-modality labels
    or responsibilities), the fitted mixture and its feature matrix."""
    x, emb = joint_matrix(pool, random_state=random_state)
    labels = [np.asarray(st) for st in starts]
    if all(st.ndim == 1 for st in labels) and at_scale(pool.n, max(np.unique(st).size for st in labels)):
        model = fit_subsampled(x, labels, primary=emb, random_state=random_state)  # large pools: bounded memory
    else:
        model = JointMixture().fit(x, starts, primary=emb)
    return model.predict(x), model, x


def single_modality_starts(pool, k: int, random_state=0, n_init: int = 2) -> list[np.ndarray]:
    """Posteriors of a Gaussian mixture (:func:`attacks.clustering.fit_mixture`) fitted to each
    modality alone with ``k`` components."""
    from attacks.clustering import fit_mixture

    rng = check_random_state(random_state)
    blocks = modality_blocks(pool, random_state=seed_int(rng, 31))
    if k == 1:
        return [np.ones((pool.n, 1))]
    return [fit_mixture(b, k, n_init, rng, select_covariance=False).predict_proba(b) for b in blocks]


def fit_joint(pool, k: int, random_state=0, cache: dict | None = None) -> tuple[JointMixture, np.ndarray]:
    """The joint evidence mixture with ``k`` components started from both single-modality mixtures.

    Large pools (:func:`attacks.scale.at_scale`): the starts are the MAP labels of each modality's
    subsample-fitted mixture (:func:`attacks.scale.fit_scaled_mixture`; read from ``cache``, the suite's
    shared fits, when there, but never stored into it, so that the single-modality attacks' fits stay
    their own) and the joint mixture is fitted by :func:`fit_subsampled`."""
    rng = check_random_state(random_state)
    if at_scale(pool.n, k):
        from attacks.scale import fit_scaled_mixture

        x, emb = joint_matrix(pool, random_state=seed_int(rng, 31))
        seed = seed_int(rng, 31)
        starts = [fit_scaled_mixture(np.ascontiguousarray(x[:, cols]), k, seed,
                                     cache=dict(cache) if cache is not None else None).labels for cols in (emb, ~emb)]
        return fit_subsampled(x, starts, primary=emb, random_state=seed_int(rng, 31)), x
    starts = single_modality_starts(pool, k, random_state=seed_int(rng, 31))
    x, emb = joint_matrix(pool, random_state=seed_int(rng, 31))
    return JointMixture().fit(x, starts, primary=emb), x


def choose_k(pool, candidates, random_state=0, cache: dict | None = None) -> tuple[int, dict[int, float]]:
    """The user count under ``features="both"`` from the candidates ``(k_embedding, k_text)`` found on
    each modality alone: the embeddings' count when the joint evidence mixture with that many
    components finds user evidence in the embeddings (``primary_evidence_``), else the text's.
    Returns ``(k, {k: BIC of the joint mixture})``."""
    rng = check_random_state(random_state)
    k_e, k_t = (max(1, min(int(c), pool.n)) for c in candidates)
    model = fit_joint(pool, k_e, random_state=seed_int(rng, 31), cache=cache)[0]
    if model.primary_evidence_ or k_t == k_e:
        return k_e, {k_e: float(model.bic_)}
    return k_t, {k_e: float(model.bic_)}


def modality_weights(model: JointMixture, x: np.ndarray, emb: np.ndarray) -> tuple[float, float]:
    """``(alpha_embedding, alpha_text)``: each modality as one isotropic random-effects block in units
    of unit mean variance per column, ``alpha = p / w - p / t = S / W`` (``W``, ``S``: the block's summed
    within and between variances, ``p`` its width; ``w = p W / (W + S)``, ``t = p``): the weight of a
    squared distance in the block's pair log likelihood ratio (module doc); 0 for a block whose
    between-component variance does not exceed sampling noise."""
    out = []
    for cols in (emb, ~emb):
        w = float(model.variance_[cols].sum())
        ok = cols.any() and w > 0
        out.append(float(model.signal_[cols].sum()) / w if ok else 0.0)
    return out[0], out[1]


def combine_distances(pool, k: int, blocks, random_state=0, cache: dict | None = None) -> list[np.ndarray]:
    """Nearest-neighbour features on both modalities: ``blocks`` (each modality's rows in its own
    geometry, as that modality's attack sees them: e.g. the raw embeddings and the text's LSA
    features, or reference/query splits of them, as ``(emb_parts, text_parts)``) are centred, scaled
    to unit mean variance per column and weighted by ``sqrt(alpha)`` of :func:`modality_weights`, so
    that squared Euclidean distance is ``alpha_e d_e^2 + alpha_t d_t^2``, the sum of the two
    modalities' evidence, and is one modality's own distance (times a constant) when the other
    carries none.  Returns one matrix per part; one zero column when neither modality has evidence."""
    model, x = fit_joint(pool, k, random_state, cache=cache)
    emb = np.r_[np.ones(pool.embedding.shape[1], bool), np.zeros(x.shape[1] - pool.embedding.shape[1], bool)]
    alphas = modality_weights(model, x, emb)
    out = None
    for alpha, parts in zip(alphas, blocks):
        if alpha <= 0:
            continue
        allrows = np.vstack(parts)
        mean, scale = allrows.mean(0), math.sqrt(alpha / max(float(allrows.var(0).mean()), 1e-300))
        scaled = [(p - mean) * scale for p in parts]
        out = scaled if out is None else [np.hstack([a, b]) for a, b in zip(out, scaled)]
    return out if out is not None else [np.zeros((len(p), 1)) for p in blocks[0]]


def estimate_k(pool, random_state=0, max_n: int = 5000) -> int:
    """The adversary's user count under ``features="both"`` without an oracle: each modality's BIC
    choice (:func:`attacks.clustering.select_n_clusters`), then :func:`choose_k` between them."""
    from attacks.clustering import select_n_clusters

    rng = check_random_state(random_state)
    k_max = max(2, min(pool.n // 10, 100))
    blocks = modality_blocks(pool, random_state=seed_int(rng, 31))
    cands = [select_n_clusters(b, k_max=k_max, max_n=max_n, random_state=rng)[0] for b in blocks]
    return choose_k(pool, cands, random_state=rng)[0]
