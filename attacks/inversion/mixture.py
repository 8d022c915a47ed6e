"""Mixture inversion: fit a finite mixture of the known family to the whole pool and read users off it.

This is the empirical test of the identifiability theory.  Finite mixtures of Gaussians are
identifiable (Teicher 1963) while Beta mixtures are not (``B(a, b) = B(a+1, b) + B(a, b+1)``), yet
non-identifiability over *all* finite mixtures does not stop EM from recovering a *known number*
of *well-separated* components.  The attack reports both outcomes honestly.

* Fit (no oracle): a mixture of the family's product distributions by EM, the family's fitter from
  :mod:`.familymix` (Beta: :class:`.betamix.BetaMixture`; Gaussian: a diagonal
  ``sklearn.mixture.GaussianMixture``; any other registered family: the generic
  :class:`.familymix.FamilyMixture` over its ``FamilySpec``), after inverting the shared affine
  map ``embedding = loc + scale * x`` of ``affine`` families (part of the public system design).  The number of components is
  ``n_components`` or, when unknown, the BIC choice of :func:`attacks.clustering.select_n_clusters`.
  EM runs on a random subsample of at most ``FIT_MAX_N`` uploads (50,000: thousands per component
  up to tens of components; the full pool cost 323 s and 9.9 GB at 200k x 64); every upload is
  then assigned to its MAP component in blocks (:func:`attacks.knn.predict_chunked`).  Gaussian
  pools at scale (:func:`attacks.scale.at_scale`: thousands of users) use the float32
  candidate-restricted fit of :func:`attacks.scale.fit_scaled_mixture` instead (``fit_details_``).
* Score: ``attribution_accuracy`` of the MAP component per upload under the best one-to-one
  matching of components to users (:func:`attacks.scoring.score_partition`: permutation baseline,
  Wilson CI, Bayes ceiling).  With the true distributions also ``parameter_error``: components
  matched to users by the Hungarian algorithm on the mean absolute parameter distance; value =
  mean over users of that distance; baseline = the expected distance when each user gets a
  component at random (chance: exactly the value when all users share one distribution); ceiling = the Cramér-Rao error of an
  MLE that knew every upload's user.  A user counts as *recovered* when its matched component
  lies nearer to this user's true parameters than to any other user's.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import MutableMapping

import numpy as np
from scipy.optimize import linear_sum_assignment

from attacks.base import Attack, AttackResult, check_random_state, register_attack
from idfree_core.seeding import seed_int
from attacks.inversion import estimators as est
from attacks.inversion.estimators import guess_family  # noqa: F401  (re-exported)
from attacks.inversion.familymix import fit_mixture
from attacks.inversion.parameter import bootstrap_mean_ci, user_params
from attacks.knn import predict_chunked
from attacks.scale import at_scale, fit_scaled_mixture
from attacks.scoring import bayes_attribution_ceiling, contingency, partition_metrics, score_partition
from idfree_core.errors import InputError
from idfree_core.families import get_family_spec

NAME = "mixture_inversion"
AUTO = "auto"  # ``family=AUTO``: the family is guessed from the pool (estimators.guess_family)
FIT_MAX_N = 50000  # EM runs on a random subsample of at most this many uploads; all are then assigned


def component_params(spec, data: np.ndarray, labels: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-group MLE ``{name: (k, D)}`` of ``data`` grouped by ``labels`` (groups under 2 rows: NaN)."""
    out = {n: np.full((k, data.shape[1]), np.nan) for n in spec.param_names}
    for j in range(k):
        rows = data[labels == j]
        if rows.shape[0] >= 2:
            for n, v in spec.mle(rows, axis=0).items():
                out[n][j] = v
    return out


def match_parameters(spec, truth: dict, comps: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user error under the Hungarian matching of components to users; unmatched users get
    the distance to their nearest component.  Returns ``(errors (N,), matched component (N,), cost (N, K))``."""
    cost = est.param_distance(spec, truth, comps)
    filled = np.where(np.isfinite(cost), cost, np.nanmax(np.where(np.isfinite(cost), cost, 0.0)) * 10 + 1e6)
    rows, cols = linear_sum_assignment(filled)
    match = np.argmin(filled, axis=1)
    match[rows] = cols
    return filled[np.arange(cost.shape[0]), match], match, cost


def _same_transform(a, b) -> bool:
    for u, v in zip(a, b):
        if (u is None) != (v is None) or (u is not None and not np.allclose(np.asarray(u, float), np.asarray(v, float))):
            return False
    return True


def nearest_user_distance(spec, truth: dict) -> np.ndarray:
    """Distance from each user's true parameters to the nearest other user's (inf for one user)."""
    d = est.param_distance(spec, truth, truth)
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


class MixtureInversion(Attack):
    """EM over the whole pool for mixtures of a registered family; components matched to users.

    Parameters
    ----------
    family : a registered family with an MLE (:func:`.estimators.parametric_families`) or "auto"
        (:func:`.estimators.guess_family`: e.g. Beta when the data lie inside (0, 1)).
    n_components : number of mixture components; ``None`` = chosen by BIC (the number of users is
        unknown to the adversary).
    n_init : EM restarts (best log-likelihood kept).
    transform : ``(loc, scale)`` of the shared affine map of an ``affine`` family's embeddings, if known.
    n_permutations : random relabellings for the chance baselines.
    """

    name = NAME

    @classmethod
    def for_suite(cls, ctx, spec, features):
        """The family (and its shared affine map) come from the distributions file when given: they
        are the system's public design, not a user secret (a point mass is fitted as the real-line
        family, :func:`.estimators.real_line_family`).  Components: the suite's user-count
        estimate, plus the "n_users known" adversary when it differs from the estimate."""
        d = ctx.distributions
        fam = AUTO if d is None else (est.real_line_family() if get_family_spec(d.family).is_point_mass
                                      else d.family)
        transform = None
        if d is not None and get_family_spec(fam).affine and (d.loc is not None or d.scale is not None):
            transform = (d.loc, d.scale)
        k = ctx.n_users("embedding")
        out = [(spec(family=fam, n_components=k, n_init=2, transform=transform, mixture_cache=ctx.fits,
                     random_state=ctx.seed()),
                {"n_users": ctx.n_users_method})]
        if ctx.n_true is not None and ctx.n_true != k:
            out.append((spec(family=fam, n_components=ctx.n_true, n_init=2, transform=transform,
                             mixture_cache=ctx.fits, random_state=ctx.seed()), {"n_users": ctx.n_users_method, "known_n": True}))
        return out

    def suite_summary(self, ctx) -> None:
        ctx.summary["mixture_inversion"] = self.summary()
        ctx.summary.setdefault("n_users_estimated", self.summary()["n_users_estimated"])

    def __init__(self, family=AUTO, n_components=None, n_init=4, max_iter=100, transform=None,
                 n_permutations=100, confidence=0.95, mixture_cache: dict | None = None, random_state=0):
        self.family = family
        self.n_components = n_components
        self.n_init = n_init
        self.max_iter = max_iter
        self.transform = transform
        self.n_permutations = n_permutations
        self.confidence = confidence
        self.mixture_cache = mixture_cache  # the suite's shared large-pool fits (attacks.scale), or None
        self.random_state = random_state

    def _data(self, embedding: np.ndarray) -> np.ndarray:
        loc, scale = self.transform_
        return est.to_family_space(self.spec_, embedding, loc, scale)

    def fit(self, pool) -> "MixtureInversion":
        guess = str(self.family).lower() == AUTO
        if not guess:
            est.parametric_spec(self.family)
        if self.n_components is not None and not 1 <= int(self.n_components) <= pool.n:
            raise InputError(f"n_components must be between 1 and the pool size {pool.n}, got {self.n_components}")
        if self.mixture_cache is not None and not isinstance(self.mixture_cache, MutableMapping):
            raise InputError(f"mixture_cache must be a dict (the suite's shared fits) or None, "
                             f"got {type(self.mixture_cache).__name__}")
        rng = check_random_state(self.random_state)
        self.family_ = guess_family(pool.embedding, self.transform) if guess else self.family
        self.spec_ = est.parametric_spec(self.family_)
        if self.spec_.affine:
            self.transform_ = (tuple(self.transform) if self.transform is not None
                               else est.infer_transform(self.spec_, pool.embedding))
        else:
            self.transform_ = (None, None)
        data = self._data(pool.embedding)
        self.bic_ = None
        if self.n_components is None:
            from attacks.clustering import select_n_clusters
            from attacks.features import standardized_embedding

            k, self.bic_ = select_n_clusters(standardized_embedding(pool), random_state=rng)
        else:
            k = int(self.n_components)
        self.n_components_ = int(k)
        self.fit_details_ = None
        if self.spec_.location_scale_normal and at_scale(data.shape[0], k):
            # a diagonal Gaussian mixture is the family's exact likelihood: the float32, candidate-restricted
            # fit of attacks.scale (subsample of ROWS_PER_COMPONENT rows per component) instead of
            # scikit-learn's dense float64 EM (250k x 32, 1,000 components: 605 s and 4.1 GB peak)
            # on z-scores (the clustering attack's features, so the suite's fit is shared via mixture_cache),
            # parameters mapped back to the embedding's scale
            from attacks.features import gaussianize

            centre, spread = data.mean(axis=0), data.std(axis=0)
            spread[spread == 0] = 1.0
            scaled = fit_scaled_mixture(gaussianize(data, logit=False), k, seed_int(rng, 31), cache=self.mixture_cache)
            self.model_, self.fit_details_ = scaled.model, scaled.details
            self.params_ = {"mean": centre + spread * scaled.model.means_,
                            "std": spread * np.sqrt(scaled.model.variances_)}
            self.weights_ = np.asarray(scaled.model.weights_)
            self.labels_ = scaled.labels
            return self
        fit = data if data.shape[0] <= FIT_MAX_N else data[rng.choice(data.shape[0], FIT_MAX_N, replace=False)]
        self.model_ = fit_mixture(self.spec_, fit, k, self.n_init, self.max_iter, rng)
        self.params_ = self.model_.params_
        self.weights_ = np.asarray(self.model_.weights_)
        self.labels_ = predict_chunked(self.model_, data)  # (n, K) log-densities in blocks
        return self

    def summary(self) -> dict:
        """What was found without any oracle."""
        sizes = np.bincount(self.labels_, minlength=self.n_components_)
        return {"name": self.name, "family": self.family_, "n_components": self.n_components_,
                "n_users_estimated": int((sizes > 0).sum()), "component_sizes": sorted(sizes.tolist(), reverse=True),
                "selected_by": "bic" if self.bic_ is not None else "given"}

    def score(self, pool, oracle, distributions=None) -> list[AttackResult]:
        """``attribution_accuracy`` (always) and ``parameter_error`` (with the true distributions)."""
        self._check_fitted(pool, "labels_")
        rng = check_random_state(self.random_state)
        truth, names = oracle.codes_for(pool)
        ceiling, cdetails = bayes_attribution_ceiling(distributions, names, truth)
        table, noise = contingency(truth, self.labels_, len(names))
        extra = {"family": self.family_, "n_components": self.n_components_,
                 "ari": partition_metrics(table, noise)["ari"]}
        results = [r for r in score_partition(f"{NAME}[{self.family_}]", truth, self.labels_,
                                              knowledge="embeddings+family", ceiling=ceiling, ceiling_details=cdetails,
                                              n_permutations=self.n_permutations, confidence=self.confidence,
                                              random_state=rng, extra_details=extra)
                   if r.metric == "attribution_accuracy"]
        acc = results[0]
        recovery = None
        if (distributions is not None and get_family_spec(distributions.family) is self.spec_
                and distributions.dim == pool.dim):
            param_result, recovery = self._parameter_error(pool, truth, names, distributions, rng)
            results.append(param_result)
        self.finding_ = self._finding(acc, recovery, len(names))
        notes = {"finding": self.finding_, **({"recovery": recovery} if recovery else {})}
        results = [dataclasses.replace(r, details={**r.details, **notes}) for r in results]
        return results

    def _parameter_error(self, pool, truth, names, distributions, rng):
        family, spec = self.family_, self.spec_
        t = user_params(distributions, names, spec)
        loc, scale = (distributions.loc, distributions.scale) if spec.affine else (None, None)
        data = est.to_family_space(spec, pool.embedding, loc, scale)
        if not spec.affine or _same_transform(self.transform_, (loc, scale)):
            comps = self.params_  # the mixture's own estimates, in the space of the truth
        else:  # fitted in another coordinate system: refit each component's uploads in the truth's
            comps = component_params(spec, data, self.labels_, self.n_components_)
        err, match, cost = match_parameters(spec, t, comps)
        sep = nearest_user_distance(spec, t)
        # recovered: the user's matched component lies closer to this user's truth than to any other's
        filled = np.where(np.isfinite(cost), cost, np.inf)
        recovered = (np.argmin(filled[:, match], axis=0) == np.arange(len(names))) & np.isfinite(err)
        if len(names) > 1:
            recovered &= np.isfinite(sep) & (sep > 0)
        # chance: the expected error when components are assigned to users at random
        chance = np.nanmean(np.where(np.isfinite(cost), cost, np.nan), axis=1)
        counts = np.bincount(truth, minlength=len(names))
        crb = est.crb_error(spec, t, np.maximum(counts, 1))
        value, baseline = float(err.mean()), float(chance.mean())
        recovery = {
            "n_users": len(names), "n_components": self.n_components_,
            "n_recovered": int(recovered.sum()), "fraction_recovered": float(recovered.mean()),
            "median_parameter_error": float(np.median(err)),
            "median_nearest_user_distance": float(np.median(sep)) if np.isfinite(sep).any() else None,
            "median_error_to_separation": float(np.median(err / np.where(sep > 0, sep, np.nan)))
            if np.any(sep > 0) and np.isfinite(sep).any() else None,
            "median_cramer_rao_error": float(np.median(crb)),
            "recovered_definition": "the user's matched component is nearer to this user's true parameters "
                                    "than to any other user's",
        }
        result = AttackResult(
            name=f"{NAME}[{family}]", metric="parameter_error", value=value,
            ci=bootstrap_mean_ci(err, rng, self.confidence), baseline=baseline, advantage=value - baseline,
            advantage_ci=bootstrap_mean_ci(err - chance, rng, self.confidence),
            ceiling=float(crb.mean()), n=len(names), knowledge="embeddings+family", features="embedding",
            details={"family": family, "baseline_method": "expected error of a uniformly random component per user",
                     "ceiling_definition": "Cramer-Rao error of the MLE given every upload's true user"})
        return result, recovery

    def _finding(self, acc: AttackResult, recovery: dict | None, n_users: int) -> str:
        spec = get_family_spec(self.family_)
        fam = spec.title or self.family_
        theory = spec.mixture_identifiability or (
            f"identifiability of finite {fam} mixtures is not established here; the result is empirical")
        above_chance = acc.advantage_ci[0] > 0
        frac = recovery["fraction_recovered"] if recovery else None
        stats = (f"attribution accuracy {acc.value:.3f} [{acc.ci[0]:.3f}, {acc.ci[1]:.3f}] vs chance {acc.baseline:.3f}"
                 + (f", ceiling {acc.ceiling:.3f}" if acc.ceiling is not None else ""))
        if recovery:
            stats += (f"; {recovery['n_recovered']} of {n_users} users' parameters recovered "
                      f"(median error {recovery['median_parameter_error']:.3g}"
                      + (f" vs nearest-user distance {recovery['median_nearest_user_distance']:.3g})"
                         if recovery["median_nearest_user_distance"] is not None else ")"))
        stats += (f"; {self.n_components_} components for {n_users} users"
                  + (" (number chosen by BIC)" if self.bic_ is not None else ""))
        if above_chance and (frac is None or frac >= 0.8) and acc.value >= 0.5:
            return f"{fam} mixture inversion recovered distinct users ({stats}): {theory}."
        if not above_chance:
            return (f"{fam} mixture inversion failed to recover distinct users ({stats}): its attribution is no "
                    "better than chance; the users' distributions are too close to be separated from this pool.")
        why = []
        if frac is not None and frac < 0.8:
            share = "most" if frac >= 0.5 else "only some" if frac > 0 else "none"
            why.append(f"{share} of the users' distributions were recovered ({recovery['n_recovered']} of {n_users}, "
                       "below the 80% counted as recovering distinct users)")
        if acc.value < 0.5:
            why.append(f"fewer than half of the uploads are attributed correctly ({acc.value:.3f})")
        return (f"{fam} mixture inversion partially separated users ({stats}): attribution beats chance, but "
                + " and ".join(why) + ".")


register_attack(NAME, MixtureInversion, group="inversion", metrics=("attribution_accuracy", "parameter_error"))
