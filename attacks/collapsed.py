"""``clustering[collapsed]``: attribution by a search over partitions scored by their Bayesian evidence.

A fixed-``k`` maximum-likelihood search (:mod:`attacks.em`) fails in two ways that a partition's
marginal likelihood avoids: on many small users it stops in a poor local optimum although the true
partition has the higher likelihood (200 users x 30 uploads, d=32: the search's 0.34 against 0.87 for
EM started at the truth), and with a dominant user it prefers cutting that user into pieces to
separating the small ones (likelihood grows with every extra component it gives the big user).
The evidence of a hard partition integrates each user's parameters out, so a component pays for its
parameters (an Occam factor) and small users are scored by what they predict, not by a fitted mean.

Model (per dimension, independent; Murphy 2007, "Conjugate Bayesian analysis of the Gaussian
distribution", sec. 6 eqs. 85-95): each cluster's mean and precision have a Normal-Gamma prior
``NG(m0, kappa0, a0, b0)`` with the grand mean ``m0``, ``a0 = 2``, ``b0 = a0 v0`` (``v0``: pooled
within-cluster variance) and ``kappa0 = v0 / B`` (``B``: the between-cluster variance of the means),
both from the over-segmented EM partition below; cluster sizes have a symmetric Dirichlet(1) prior.
The log evidence of a cluster of ``n`` rows with sum ``s`` and centred sum of squares ``S`` is, per
dimension, ``lgamma(a_n) - lgamma(a0) + a0 log b0 - a_n log b_n + log(kappa0 / kappa_n) / 2 - n log(2 pi) / 2``
with ``kappa_n = kappa0 + n``, ``a_n = a0 + n / 2``, ``b_n = b0 + S / 2 + kappa0 n (s/n - m0)^2 / (2 kappa_n)``;
the size term adds ``lgamma(n + 1)``.

Search:

1. over-segment: a diagonal MAP-EM mixture (:class:`attacks.mixture_em.DiagonalMixture`) with
   ``oversegment * k`` components, so that no small user is merged into a neighbour yet;
2. agglomerate: merge, greedily, the pair of clusters whose merge raises the evidence most until ``k``
   remain (Bayesian hierarchical clustering with hard partitions, Heller & Ghahramani 2005);
3. refine: collapsed iterated conditional modes: every upload moves to the cluster with the highest
   ``log(n_c + 1) + log p(x | cluster c without x)``, the Student-t posterior predictive (Neal 2000,
   algorithm 3, with the mode instead of a draw), in seeded random order, in blocks of rows with the
   clusters' statistics updated after each block, until no upload moves.

Steps 1-3 are restarted ``n_init`` times (new over-segmentation seed and move order; the prior from the
first over-segmentation for all, so the evidences compare) and the partition of highest evidence is
kept: a single search cuts the dominant user about one time in eight (1 user of 2,000 uploads and 30 of
15, d=10, 8 random states: 0.11 of Bayes once, 0.86-0.89 otherwise; 3 restarts: 0.87-0.95 every time).

Attribution is the final partition; ``max_posterior_`` is the normalised predictive of each upload's
own cluster, and ``expected_accuracy_`` its mean (what the model predicts its accuracy to be).
Features are those of :func:`attacks.em.em_features` (the Beta affine map and logit, z-scores).  The
search costs ``O(n k d)`` per sweep plus ``O((oversegment k)^2 d)`` for the merges: pools up to
``MAX_ROWS`` rows and ``MAX_WORK`` ``n k`` only (larger pools: the suite records a skip).

Measured (seeded, ``n_users`` known): one user of 1,500 uploads and 25 of 15 (d=10, anisotropic;
``tests/test_heldout_variant.giant_pool`` seeds 1, 3, 6; 3 restarts): 0.84 / 0.81 / 0.86 against Bayes 0.94 / 0.93 /
0.95, where ``clustering[em]`` at the same count scores 0.17 / 0.21 / 0.19; 12 Beta users, one of 400
uploads (``tests/attack_pools`` ``beta_affine`` small, seed 11): 0.59 against 0.35 (Bayes 0.73).
Limits: the evidence of a *hard* partition is biased towards partitions cut along the overlaps (the
classification-likelihood bias, Celeux & Govaert 1992), so on strongly overlapping users (``overlap``,
Bayes 0.53) it scores below EM (0.22 against 0.36) and on many equal small users it does not beat EM
(``many`` small: 0.54 against 0.60).  It is therefore a separate adversary of the suite, not a
replacement: an auditor reports the best of them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import gammaln

from attacks.base import Attack, AttackResult, check_random_state, register_attack
from attacks.scoring import bayes_attribution_ceiling, score_partition
from idfree_core.errors import InputError
from idfree_core.seeding import seed_int

NAME = "clustering[collapsed]"
MAX_ROWS = 30000
MAX_WORK = 3e6  # n * k: 6,000 uploads x 200 users is 1.2e6
A0 = 2.0


class NormalGammaPrior:
    """Per-dimension ``NG(m0, kappa0, a0, b0)`` (module doc) and the evidence / predictive it gives."""

    def __init__(self, m0: np.ndarray, kappa0: np.ndarray, a0: float, b0: np.ndarray, alpha: float | None = 1.0):
        self.m0, self.kappa0, self.a0, self.b0, self.alpha = m0, kappa0, float(a0), b0, alpha

    @classmethod
    def from_partition(cls, x: np.ndarray, labels: np.ndarray, a0: float = A0) -> "NormalGammaPrior":
        """``m0`` the grand mean, ``v0`` the pooled within-cluster variance, ``kappa0 = v0 / B``."""
        total = x.var(axis=0) + 1e-12
        n, s, q = cluster_stats(x, labels, int(labels.max()) + 1)
        keep = n > 0
        mean = s[keep] / n[keep, None]
        within = (q[keep] - s[keep] * mean).sum(0) / max(x.shape[0] - int(keep.sum()), 1)
        v0 = np.clip(within, 1e-3 * total, total)
        between = np.clip(total - v0, 0.05 * total, None)
        return cls(x.mean(axis=0), v0 / between, a0, a0 * v0)

    def posterior(self, n, s, q):
        """``(kappa_n, m_n, a_n, b_n)`` for clusters with counts ``n (c,)``, sums ``s`` and squares ``q (c, d)``."""
        n_ = np.asarray(n, dtype=np.float64)[:, None]
        mean = s / np.maximum(n_, 1.0)
        centred = np.maximum(q - s * mean, 0.0)
        kn = self.kappa0 + n_
        mn = (self.kappa0 * self.m0 + s) / kn
        an = self.a0 + n_ / 2.0
        bn = self.b0 + 0.5 * centred + self.kappa0 * n_ * (mean - self.m0) ** 2 / (2.0 * kn)
        bn = np.where(n_ > 0, bn, self.b0)
        return kn, mn, an, bn

    def log_evidence(self, n, s, q) -> np.ndarray:
        """``(c,)`` log marginal likelihood of each cluster plus its size term ``lgamma(n + 1)`` (module doc)."""
        kn, _, an, bn = self.posterior(n, s, q)
        n_ = np.asarray(n, dtype=np.float64)[:, None]
        per_dim = (gammaln(an) - gammaln(self.a0) + self.a0 * np.log(self.b0) - an * np.log(bn)
                   + 0.5 * np.log(self.kappa0 / kn) - 0.5 * n_ * math.log(2 * math.pi))
        return per_dim.sum(1) + self.log_size(np.asarray(n, dtype=np.float64))

    def log_size(self, n):
        """The Dirichlet(``alpha``)-multinomial size term ``lgamma(n + alpha)`` (``alpha=None``: none, equal weights)."""
        return 0.0 * n if self.alpha is None else gammaln(n + self.alpha)

    def log_size_predictive(self, n: torch.Tensor) -> torch.Tensor:
        """``log(n + alpha)``: the size term's share of a new row joining a cluster of ``n``."""
        return torch.zeros_like(n) if self.alpha is None else torch.log(n + self.alpha)

    def predictive_params(self, n, s, q):
        """Student-t predictive per cluster and dimension: ``(df, loc, scale^2)``, each ``(c, d)``."""
        kn, mn, an, bn = self.posterior(n, s, q)
        return 2.0 * an, mn, bn * (kn + 1.0) / (an * kn)


def cluster_stats(x: np.ndarray, labels: np.ndarray, c: int):
    """Counts ``(c,)``, sums and sums of squares ``(c, d)`` of the rows of each cluster."""
    n = np.bincount(labels, minlength=c).astype(np.float64)
    s = np.zeros((c, x.shape[1]))
    q = np.zeros((c, x.shape[1]))
    np.add.at(s, labels, x)
    np.add.at(q, labels, x * x)
    return n, s, q


def _t_logpdf(x, df, loc, scale2):
    """Sum over dimensions of Student-t log densities; broadcasting torch tensors."""
    z = (x - loc) ** 2 / (df * scale2)
    return (torch.lgamma((df + 1) / 2) - torch.lgamma(df / 2) - 0.5 * torch.log(df * math.pi * scale2)
            - (df + 1) / 2 * torch.log1p(z)).sum(-1)


def agglomerate(prior: NormalGammaPrior, n, s, q, k: int) -> np.ndarray:
    """Greedy evidence merges down to ``k`` clusters (module doc, step 2): ``(c,)`` new cluster ids in ``[0, k)``."""
    c = n.size
    n, s, q = n.copy(), s.copy(), q.copy()
    alive = np.ones(c, dtype=bool)
    ev = prior.log_evidence(n, s, q)
    parent = np.arange(c)

    def gains(a: int) -> np.ndarray:
        g = prior.log_evidence(n[a] + n, s[a] + s, q[a] + q) - ev[a] - ev
        g[~alive] = -np.inf
        g[a] = -np.inf
        return g

    gain = np.stack([gains(a) for a in range(c)])
    for _ in range(max(int(alive.sum()) - k, 0)):
        a, b = np.unravel_index(int(np.argmax(gain)), gain.shape)
        n[a], s[a], q[a] = n[a] + n[b], s[a] + s[b], q[a] + q[b]
        ev[a] = prior.log_evidence(n[a:a + 1], s[a:a + 1], q[a:a + 1])[0]
        alive[b] = False
        parent[parent == b] = a
        gain[b, :] = gain[:, b] = -np.inf
        gain[a, :] = gains(a)
        gain[:, a] = gain[a, :]
    _, ids = np.unique(parent, return_inverse=True)
    return ids


def predictive_logp(prior: NormalGammaPrior, xt: torch.Tensor, labels: np.ndarray, n, s, q) -> torch.Tensor:
    """``(b, c)`` ``log(n_c + alpha) + log p(x | cluster c)``, the own cluster without the row itself."""
    df, loc, sc2 = (torch.as_tensor(a) for a in prior.predictive_params(n, s, q))
    out = _t_logpdf(xt[:, None, :], df[None], loc[None], sc2[None]) + prior.log_size_predictive(torch.as_tensor(n))[None]
    own = torch.as_tensor(labels)
    xn = xt.numpy()
    lo_n, lo_s, lo_q = n[labels] - 1.0, s[labels] - xn, q[labels] - xn * xn
    df1, loc1, sc21 = (torch.as_tensor(a) for a in prior.predictive_params(lo_n, lo_s, lo_q))
    own_lp = _t_logpdf(xt, df1, loc1, sc21) + prior.log_size_predictive(torch.as_tensor(lo_n))
    out[torch.arange(xt.shape[0]), own] = own_lp
    return out


def icm_moves(prior: NormalGammaPrior, x: np.ndarray, labels: np.ndarray, c: int, rng, block: int = 128,
              max_sweeps: int = 30) -> tuple[np.ndarray, int]:
    """Collapsed iterated conditional modes (module doc, step 3): the final labels and the sweeps run."""
    labels = labels.copy()
    n, s, q = cluster_stats(x, labels, c)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):
        moved = 0
        order = rng.permutation(x.shape[0])
        for start in range(0, order.size, block):
            idx = order[start:start + block]
            lp = predictive_logp(prior, torch.as_tensor(x[idx]), labels[idx], n, s, q)
            new = lp.argmax(1).numpy()
            change = new != labels[idx]
            if not change.any():
                continue
            rows, old, to = idx[change], labels[idx][change], new[change]
            xr = x[rows]
            np.subtract.at(n, old, 1.0)
            np.add.at(n, to, 1.0)
            np.subtract.at(s, old, xr)
            np.add.at(s, to, xr)
            np.subtract.at(q, old, xr * xr)
            np.add.at(q, to, xr * xr)
            labels[rows] = to
            moved += int(change.sum())
        if moved == 0:
            break
    return labels, sweeps


class CollapsedAttribution(Attack):
    """Evidence-scored partition search (module doc).

    Fitted state: ``labels_``, ``max_posterior_``, ``n_users_estimated_``, ``n_clusters_initial_`` (after
    over-segmenting), ``n_sweeps_``, ``log_evidence_`` (the kept restart's), ``restart_log_evidence_``,
    ``expected_accuracy_`` and ``expected_accuracy_ci_``.
    """

    name = NAME

    def __init__(self, n_users: int | None = None, transform=None, oversegment: float = 2.5, n_init: int = 3,
                 block: int = 128, max_sweeps: int = 30, n_permutations: int = 100, random_state=0):
        self.n_users = n_users
        self.n_init = n_init
        self.transform = transform
        self.oversegment = oversegment
        self.block = block
        self.max_sweeps = max_sweeps
        self.n_permutations = n_permutations
        self.random_state = random_state

    @classmethod
    def for_suite(cls, ctx, spec, features):
        """The suite's user count and, with the oracle, the "n_users known" one; small pools only."""
        k = ctx.n_users(features)
        counts = [(k, {"n_users": ctx.n_users_method})]
        if ctx.n_true is not None:
            counts.append((ctx.n_true, {"n_users": ctx.n_users_method, "known_n": True}))
        if ctx.pool.n > MAX_ROWS or ctx.pool.n * max(c for c, _ in counts) > MAX_WORK:
            ctx.skip(f"clustering: {NAME} runs on pools of at most {MAX_ROWS} uploads and {MAX_WORK:.0e} "
                     "uploads x users")
            return []
        transform = ctx.transform(features)
        made: dict[int, CollapsedAttribution] = {}
        out = []
        for c, opts in counts:
            if c not in made:
                made[c] = spec(n_users=int(c), transform=transform, random_state=ctx.seed())
            out.append((made[c], opts))
        return out

    def fit(self, pool) -> "CollapsedAttribution":
        from attacks.em import bootstrap_mean, em_features

        if not (isinstance(self.oversegment, (int, float)) and self.oversegment >= 1):
            raise InputError(f"oversegment must be a number >= 1, got {self.oversegment!r}")
        if not (isinstance(self.n_init, (int, np.integer)) and not isinstance(self.n_init, bool) and self.n_init >= 1):
            raise InputError(f"n_init must be an integer >= 1, got {self.n_init!r}")
        rng = check_random_state(self.random_state)
        x32 = em_features(pool, "embedding", self.transform)  # float32, what the mixtures fit
        x = x32.astype(np.float64)
        if self.n_users is None:
            from attacks.oracle_free import estimate_users

            k = estimate_users(x32, random_state=rng)[0]
        else:
            k = int(self.n_users)
        if not 1 <= k <= pool.n:
            raise InputError(f"n_users must be between 1 and the pool size {pool.n}, got {k}")
        self.n_users_estimated_ = k
        self.restart_log_evidence_ = []
        c0 = int(min(max(k, round(self.oversegment * k)), max(pool.n // 3, k)))
        prior, best = None, None
        for _ in range(self.n_init if k > 1 else 1):
            seg = self._oversegment(x32, c0, k, rng)
            # one prior for every restart (from the first over-segmentation), so that the evidences compare
            prior = prior if prior is not None else NormalGammaPrior.from_partition(x, seg)
            n_seg = int(seg.max()) + 1
            labels = agglomerate(prior, *cluster_stats(x, seg, n_seg), k)[seg] if n_seg > k else seg
            c = int(labels.max()) + 1
            labels, sweeps = icm_moves(prior, x, labels, c, rng, self.block, self.max_sweeps)
            stats = cluster_stats(x, labels, c)
            evidence = float(prior.log_evidence(*stats).sum())
            self.restart_log_evidence_.append(evidence)
            if best is None or evidence > best[0]:
                best = (evidence, labels, stats, n_seg, sweeps)
        self.log_evidence_, labels, (n, s, q), self.n_clusters_initial_, self.n_sweeps_ = best
        post = []
        for start in range(0, pool.n, 4096):
            own_labels = labels[start:start + 4096]
            lp = predictive_logp(prior, torch.as_tensor(x[start:start + 4096]), own_labels, n, s, q)
            own = lp[torch.arange(lp.shape[0]), torch.as_tensor(own_labels)]
            post.append(torch.exp(own - torch.logsumexp(lp, 1)).numpy())
        self.labels_, self.max_posterior_ = labels, np.concatenate(post) if post else np.zeros(0)
        self.expected_accuracy_ = float(self.max_posterior_.mean()) if pool.n else 0.0
        self.expected_accuracy_ci_ = bootstrap_mean(self.max_posterior_, rng)
        return self

    @staticmethod
    def _oversegment(x32: np.ndarray, c: int, k: int, rng) -> np.ndarray:
        """Step 1 (module doc): a ``c``-component diagonal MAP-EM partition, relabelled ``0..c'-1``."""
        from attacks.mixture_em import VARIANTS, DiagonalMixture

        if k == 1:
            return np.zeros(x32.shape[0], dtype=np.int64)
        em = DiagonalMixture(c, n_init=1, random_state=seed_int(rng, 31), **VARIANTS["gaussian-diag"])
        labels = em.fit(x32).predict_max(x32)[0].astype(np.int64)
        return np.unique(labels, return_inverse=True)[1]

    def score(self, pool, oracle, distributions=None) -> list[AttackResult]:
        """``ari``, ``nmi`` and ``attribution_accuracy`` (Bayes ceiling from the true distributions)."""
        self._check_fitted(pool, "labels_")
        truth, users = oracle.codes_for(pool)
        ceiling, cdetails = bayes_attribution_ceiling(distributions, users, truth)
        extra = {"n_users_estimated": self.n_users_estimated_, "n_users_given": self.n_users,
                 "n_clusters_initial": self.n_clusters_initial_, "sweeps": self.n_sweeps_,
                 "log_evidence": self.log_evidence_,
                 "restart_log_evidence": self.restart_log_evidence_, "expected_accuracy": self.expected_accuracy_}
        return score_partition(self.name, truth, self.labels_, knowledge="embeddings+family", features="embedding",
                               ceiling=ceiling, ceiling_details=cdetails, n_permutations=self.n_permutations,
                               random_state=check_random_state(self.random_state), extra_details=extra)


register_attack(NAME, CollapsedAttribution, group="clustering", features=("embedding",),
                metrics=("ari", "nmi", "attribution_accuracy"), known_n_variant=True)
