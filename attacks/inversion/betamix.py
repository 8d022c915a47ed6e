"""EM for finite mixtures of product-Beta distributions (independent coordinates).

Component ``j`` has density ``f_j(x) = prod_d Beta(x_d; a_jd, b_jd)`` on ``(0, 1)^D``.  The E-step
computes all log-densities as one matrix product (Dempster, Laird & Rubin 1977):

    log f_j(x_n) = [log x_n, log(1 - x_n)] @ [a_j - 1; b_j - 1] - sum_d log B(a_jd, b_jd)

and responsibilities ``r_nj`` by a log-sum-exp over ``log w_j + log f_j``.  The M-step is the
*exact* weighted MLE: each component's weighted mean log statistics
``s1_j = sum_n r_nj log x_n / N_j`` and ``s2_j`` (same with ``log(1 - x)``) go through the Newton
solver of :mod:`.estimators`, warm-started at the previous parameters.  Initialisation from
k-means++ (scikit-learn) on the logit of the data, ``n_init`` restarts, best log-likelihood kept.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special

from attacks.base import check_random_state
from attacks.inversion import estimators as est


class BetaMixture:
    """A product-Beta mixture fitted by EM (scikit-learn style).

    Fitted state: ``alpha_``, ``beta_`` ``(K, D)``, ``weights_`` ``(K,)``,
    ``log_likelihood_`` (mean per sample), ``n_iter_``, ``converged_``.  EM stops when the mean
    log-likelihood per sample changes by less than ``tol`` (scikit-learn's convention).
    """

    def __init__(self, n_components: int = 2, n_init: int = 4, max_iter: int = 100, tol: float = 1e-3,
                 min_weight: float = 1e-6, random_state=0):
        self.n_components = n_components
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.min_weight = min_weight
        self.random_state = random_state

    @staticmethod
    def _stats(x: np.ndarray) -> np.ndarray:
        return np.hstack(est.beta_log_stats(np.clip(np.asarray(x, dtype=np.float64), est.EPS, 1.0 - est.EPS)))

    @staticmethod
    def _component_log_density(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        coef = np.hstack([a - 1.0, b - 1.0])  # (K, 2D)
        return t @ coef.T - special.betaln(a, b).sum(axis=1)[None, :]

    def _m_step(self, t, resp, a=None, b=None):
        nk = resp.sum(axis=0) + 1e-12
        d = t.shape[1] // 2
        means = (resp.T @ t) / nk[:, None]
        init = None if a is None else (a, b)
        a, b = est.beta_mle_from_stats(means[:, :d], means[:, d:], init=init)
        w = np.maximum(nk / nk.sum(), self.min_weight)
        return a, b, w / w.sum()

    def _e_step(self, t, a, b, w):
        logp = self._component_log_density(t, a, b) + np.log(w)[None, :]
        norm = special.logsumexp(logp, axis=1)
        return np.exp(logp - norm[:, None]), float(norm.mean())

    def _init_resp(self, x: np.ndarray, k: int, rng) -> np.ndarray:
        from sklearn.cluster import KMeans

        z = np.log(x) - np.log1p(-x)
        z = (z - z.mean(axis=0)) / np.maximum(z.std(axis=0), 1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels = KMeans(n_clusters=k, n_init=1, init="k-means++",
                            random_state=int(rng.integers(2**31 - 1))).fit_predict(z)
        resp = np.zeros((x.shape[0], k))
        resp[np.arange(x.shape[0]), labels] = 1.0
        return resp

    def fit(self, x: np.ndarray, init_resp: np.ndarray | None = None) -> "BetaMixture":
        """EM from ``n_init`` k-means++ starts, or from the one ``(n, K)`` responsibility matrix ``init_resp``."""
        x = np.clip(np.asarray(x, dtype=np.float64), est.EPS, 1.0 - est.EPS)
        k = int(self.n_components)
        if k < 1 or k > x.shape[0]:
            raise ValueError(f"n_components must be between 1 and the number of samples {x.shape[0]}, got {k}")
        rng = check_random_state(self.random_state)
        t = self._stats(x)
        best = None
        for _ in range(1 if init_resp is not None else max(1, int(self.n_init))):
            resp = (np.asarray(init_resp, dtype=np.float64) if init_resp is not None
                    else self._init_resp(x, k, rng) if k > 1 else np.ones((x.shape[0], 1)))
            a, b, w = self._m_step(t, resp)
            prev, converged, it = -np.inf, False, 0
            for it in range(1, int(self.max_iter) + 1):
                resp, ll = self._e_step(t, a, b, w)
                a, b, w = self._m_step(t, resp, a, b)
                if abs(ll - prev) < self.tol:  # change of the mean log-likelihood (as scikit-learn)
                    converged = True
                    break
                prev = ll
            _, ll = self._e_step(t, a, b, w)
            if best is None or ll > best[0]:
                best = (ll, a, b, w, it, converged)
        self.log_likelihood_, self.alpha_, self.beta_, self.weights_, self.n_iter_, self.converged_ = best
        return self

    def log_prob_components(self, x: np.ndarray) -> np.ndarray:
        """``(n, K)`` matrix of ``log w_j + log f_j(x_n)``."""
        return self._component_log_density(self._stats(x), self.alpha_, self.beta_) + np.log(self.weights_)[None, :]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """MAP component of each sample."""
        return np.argmax(self.log_prob_components(x), axis=1)

    def score(self, x: np.ndarray) -> float:
        """Mean log-likelihood per sample."""
        return float(special.logsumexp(self.log_prob_components(x), axis=1).mean())

    def bic(self, x: np.ndarray) -> float:
        """``-2 log L + p log n`` with ``p = 2 K D + K - 1`` (Schwarz 1978)."""
        n = np.asarray(x).shape[0]
        k, d = self.alpha_.shape
        return float(-2.0 * self.score(x) * n + (2 * k * d + k - 1) * np.log(n))
