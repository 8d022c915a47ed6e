"""Mixture fitters of the mixture-inversion attack, one per family record, with a generic default.

:class:`FamilyMixture` is EM (Dempster, Laird & Rubin 1977) for a finite mixture of the product
family of any :class:`idfree_core.families.FamilySpec` with a weighted ``mle``:

* E-step: ``log f_j(x) = sum_d log p(x_d; theta_jd)`` from the family's scipy twin
  (``spec.scipy_distribution``), responsibilities by log-sum-exp over ``log w_j + log f_j``;
* M-step: the exact weighted MLE ``spec.mle(x, axis=0, weights=r_j)`` of each component;
* initialisation: k-means++ on the data mapped to the real line (logit on a bounded support, log on
  a half-line), ``n_init`` restarts, the best mean log-likelihood kept.

A family registers a faster exact fitter with :func:`register_mixture_backend` (Beta: the
sufficient-statistic EM :class:`.betamix.BetaMixture`; Gaussian: ``sklearn.mixture.GaussianMixture``
with diagonal covariances); every other registered family gets :class:`FamilyMixture` with nothing
to add.  A backend is ``fit(spec, data, k, n_init, max_iter, rng) -> model`` where ``model`` has
``predict(x)``, ``n_components``, ``weights_`` and ``params_`` (``{name: (k, D)}``).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
from scipy import special

from attacks.base import check_random_state
from idfree_core.seeding import seed_int

MIXTURE_BACKENDS: dict[str, Callable] = {}
REFIT_BACKENDS: dict[str, Callable] = {}


def register_mixture_backend(family: str, fit: Callable, refit: Callable | None = None) -> None:
    """Use ``fit(spec, data, k, n_init, max_iter, rng)`` for mixtures of ``family`` (module doc), and
    ``refit(spec, data, resp, max_iter, tol)`` (EM from given responsibilities) in :func:`refit_from_labels`."""
    MIXTURE_BACKENDS[family] = fit
    if refit is not None:
        REFIT_BACKENDS[family] = refit


def fit_mixture(spec, data: np.ndarray, k: int, n_init: int, max_iter: int, rng):
    """The registered backend of ``spec`` (default :class:`FamilyMixture`), fitted to ``data``."""
    fit = MIXTURE_BACKENDS.get(spec.name, _fit_generic)
    return fit(spec, data, k, n_init, max_iter, rng)


def refit_from_labels(spec, data: np.ndarray, labels: np.ndarray, k: int, max_iter: int = 200, tol: float = 1e-6):
    """EM for a mixture of ``spec`` started from a hard partition ``labels`` of ``data`` (family space).

    The family-exact refinement of a clustering found in another feature space (:mod:`attacks.em`):
    Beta by its sufficient-statistic :class:`.betamix.BetaMixture`, any other family with a weighted
    MLE by :class:`FamilyMixture`.  ``log_likelihood_`` is the mean per row, as in those classes, and
    ``log_prob_components(x)`` gives the ``(n, K)`` log ``w_j f_j(x)``.
    """
    resp = np.zeros((data.shape[0], int(k)))
    resp[np.arange(data.shape[0]), np.asarray(labels, dtype=np.int64)] = 1.0
    refit = REFIT_BACKENDS.get(spec.name)
    if refit is not None:
        return refit(spec, data, resp, max_iter, tol)
    return FamilyMixture(spec, int(k), n_init=1, max_iter=max_iter, tol=tol).fit(data, init_resp=resp)


def to_real_line(spec, x: np.ndarray) -> np.ndarray:
    """Logit of the position in a bounded support, log of the distance to a half-line's end, else x."""
    lo, hi = spec.support
    if math.isfinite(lo) and math.isfinite(hi):
        u = np.clip((x - lo) / (hi - lo), 1e-6, 1 - 1e-6)
        return np.log(u) - np.log1p(-u)
    if math.isfinite(lo):
        return np.log(np.maximum(x - lo, 1e-12))
    if math.isfinite(hi):
        return np.log(np.maximum(hi - x, 1e-12))
    return x


class FamilyMixture:
    """EM for a finite mixture of a product family (module doc); scikit-learn style.

    Fitted state: ``params_`` ``{name: (K, D)}``, ``weights_`` ``(K,)``, ``log_likelihood_`` (mean per
    sample), ``n_iter_``, ``converged_``.  Stops when the mean log-likelihood changes by less than ``tol``.
    """

    def __init__(self, spec, n_components: int = 2, n_init: int = 2, max_iter: int = 100, tol: float = 1e-3,
                 min_weight: float = 1e-6, block: int = 2**21, random_state=0):
        self.spec = spec
        self.n_components = n_components
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.min_weight = min_weight
        self.block = block
        self.random_state = random_state

    def _component_log_density(self, x: np.ndarray, params: dict) -> np.ndarray:
        """``(n, K)`` log-densities, in row blocks of about ``block`` (n, K, D) values."""
        k, d = next(iter(params.values())).shape
        dist = self.spec.scipy_distribution(params)
        step = max(1, self.block // max(k * d, 1))
        out = np.empty((x.shape[0], k))
        for s in range(0, x.shape[0], step):
            out[s:s + step] = dist.logpdf(x[s:s + step, None, :]).sum(axis=2)
        return out

    def _m_step(self, x: np.ndarray, resp: np.ndarray) -> tuple[dict, np.ndarray]:
        nk = resp.sum(axis=0) + 1e-12
        n, k = resp.shape
        if n * k * x.shape[1] <= self.block:  # all components in one vectorised call: (n, K, D)
            shape = (n, k, x.shape[1])
            fit = self.spec.mle(np.broadcast_to(x[:, None, :], shape), axis=0,
                                weights=np.broadcast_to(resp[:, :, None] + 1e-12, shape))
            params = {name: np.asarray(fit[name]) for name in self.spec.param_names}
        else:
            fits = [self.spec.mle(x, axis=0, weights=resp[:, j] + 1e-12) for j in range(k)]
            params = {name: np.stack([f[name] for f in fits]) for name in self.spec.param_names}
        w = np.maximum(nk / nk.sum(), self.min_weight)
        return params, w / w.sum()

    def _e_step(self, x, params, w):
        logp = self._component_log_density(x, params) + np.log(w)[None, :]
        norm = special.logsumexp(logp, axis=1)
        return np.exp(logp - norm[:, None]), float(norm.mean())

    def _init_resp(self, x: np.ndarray, k: int, rng) -> np.ndarray:
        from sklearn.cluster import KMeans

        z = to_real_line(self.spec, x)
        z = (z - z.mean(axis=0)) / np.maximum(z.std(axis=0), 1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            labels = KMeans(n_clusters=k, n_init=1, init="k-means++", random_state=seed_int(rng, bits=31)).fit_predict(z)
        resp = np.zeros((x.shape[0], k))
        resp[np.arange(x.shape[0]), labels] = 1.0
        return resp

    def fit(self, x: np.ndarray, init_resp: np.ndarray | None = None) -> "FamilyMixture":
        """EM from ``n_init`` k-means++ starts, or from the one ``(n, K)`` responsibility matrix ``init_resp``."""
        x = np.asarray(x, dtype=np.float64)
        k = int(self.n_components)
        if k < 1 or k > x.shape[0]:
            raise ValueError(f"n_components must be between 1 and the number of samples {x.shape[0]}, got {k}")
        rng = check_random_state(self.random_state)
        best = None
        for _ in range(1 if init_resp is not None else max(1, int(self.n_init))):
            resp = (np.asarray(init_resp, dtype=np.float64) if init_resp is not None
                    else self._init_resp(x, k, rng) if k > 1 else np.ones((x.shape[0], 1)))
            params, w = self._m_step(x, resp)
            prev, converged, it = -np.inf, False, 0
            for it in range(1, int(self.max_iter) + 1):
                resp, ll = self._e_step(x, params, w)
                params, w = self._m_step(x, resp)
                if abs(ll - prev) < self.tol:
                    converged = True
                    break
                prev = ll
            _, ll = self._e_step(x, params, w)
            if best is None or ll > best[0]:
                best = (ll, params, w, it, converged)
        self.log_likelihood_, self.params_, self.weights_, self.n_iter_, self.converged_ = best
        return self

    def log_prob_components(self, x: np.ndarray) -> np.ndarray:
        """``(n, K)`` matrix of ``log w_j + log f_j(x_n)``."""
        return self._component_log_density(np.asarray(x, dtype=np.float64), self.params_) + np.log(self.weights_)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """MAP component of each sample."""
        return np.argmax(self.log_prob_components(x), axis=1)


def _fit_generic(spec, data, k, n_init, max_iter, rng):
    return FamilyMixture(spec, k, n_init=n_init, max_iter=max_iter, random_state=rng).fit(data)


def _fit_beta(spec, data, k, n_init, max_iter, rng):
    from attacks.inversion.betamix import BetaMixture

    model = BetaMixture(k, n_init=n_init, max_iter=max_iter, random_state=rng).fit(data)
    model.params_ = dict(zip(spec.param_names, (model.alpha_, model.beta_)))
    return model


def _fit_gaussian(spec, data, k, n_init, max_iter, rng):
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(n_components=k, covariance_type="diag", n_init=n_init, max_iter=max_iter,
                            reg_covar=1e-6, init_params="k-means++", random_state=seed_int(rng, bits=31))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data)
    model.params_ = dict(zip(spec.param_names, (model.means_, np.sqrt(model.covariances_))))
    return model


def _refit_beta(spec, data, resp, max_iter, tol):
    from attacks.inversion.betamix import BetaMixture

    model = BetaMixture(resp.shape[1], n_init=1, max_iter=max_iter, tol=tol).fit(data, init_resp=resp)
    model.params_ = dict(zip(spec.param_names, (model.alpha_, model.beta_)))
    return model


register_mixture_backend("beta", _fit_beta, _refit_beta)
register_mixture_backend("gaussian", _fit_gaussian)
