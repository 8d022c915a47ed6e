"""Oracle-free risk: what an auditor holding only the uploads file can say about re-identification.

Without an oracle no attack can be scored, but the adversary's own fitted model predicts how well
it attributes and links (:func:`oracle_free_risk`):

* **Number of users**: BIC, or AIC where held-out likelihood finds more components than BIC or BIC
  alone finds one user, over
  MAP-EM mixtures (:func:`estimate_users`), with a range that also holds every ``k`` whose held-out
  log-likelihood (cross-validated likelihood, Smyth 2000) is within two paired standard errors of
  the best.
* **Attribution**: the fitted mixture's expected accuracy of its own MAP rule,
  ``A = mean_i max_c P(c | x_i)`` (exact if the model were the truth), with a seeded percentile
  bootstrap over uploads.  Chance is the largest mixture weight ``max_c pi_c`` (the best rule that
  ignores ``x``), and the risk is the normalised advantage ``(A - chance) / (1 - chance)``.  When
  the user-count range reaches 1 (the data are compatible with a single user) the CI's lower end
  is taken down to 0 risk: the model-based estimate cannot exclude "no user structure".
* **Linkage**, in the style of anonymeter's linkability evaluator (Giomi et al. 2023, "A unified
  framework for quantifying privacy risk in synthetic data"): the mixture is refitted on the
  *reference* split only (session 0, or a random half) and evaluated on the held-out *control*
  split (the queries, never seen in fitting).  Under the model, two uploads' component labels are
  a posteriori independent, so the probability that query ``q`` and reference ``r`` share a user is
  ``G(q, r) = sum_c P(c | q) P(c | r)``.  Attack rate: ``mean_q G(q, r*(q))`` with ``r*`` the
  top-1 linked reference; control (baseline) rate: ``mean_q mean_r G(q, r)``, a link to a random
  reference; risk ``= (attack - control) / (1 - control)`` (anonymeter's formula), with a seeded
  bootstrap over queries.  A single-component model gives ``G = 1`` everywhere and risk 0.
* **Large pools** (:func:`attacks.scale.at_scale`): the mixtures are fitted on row subsamples with
  top-m sparse posteriors (:mod:`attacks.scale`, :func:`sparse_linkage_risk`), and above
  :data:`attacks.em.BOOTSTRAP_MAX_ROWS` rows the intervals are normal (delta-method) ones, to which the bootstrap of
  these smooth functions of means converges, at ``O(n)`` instead of ``O(n_boot n)``.

These are model-based self-assessments: they are as good as the mixture is calibrated, which the
tests check against the oracle-scored values on pools where users separate well, and at 0 on null
pools (all users share one distribution).
"""

from __future__ import annotations

import numpy as np

from attacks import em as em_module
from attacks.em import bootstrap_mean
from idfree_core.seeding import check_random_state, seed_int

DEFINITION = ("model-based (no oracle): attribution = mean max posterior of the fitted mixture vs chance max weight; "
              "linkage = expected top-1 link accuracy on the held-out query split vs a random link "
              "(anonymeter-style risk (attack - control) / (1 - control)); user count by BIC (AIC where held-out likelihood finds more users or BIC alone finds one)")


def _risk(rate: float, control: float) -> float:
    return 0.0 if control >= 1.0 - 1e-9 else float((rate - control) / (1.0 - control))


def _bootstrap(fn, n: int, rng, n_boot: int, confidence: float) -> tuple[float, float]:
    """Percentile interval of ``fn(weights)`` over multinomial reweightings of ``n`` rows."""
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64) / n
    vals = np.asarray([fn(wi) for wi in w])
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(vals, [tail, 1.0 - tail])
    return float(lo), float(hi)


def attribution_risk(max_posterior: np.ndarray, weights: np.ndarray, n_users_range, rng,
                     n_boot: int = 400, confidence: float = 0.95) -> dict:
    """Expected attribution accuracy of the MAP rule and its normalised risk (module doc)."""
    p = np.asarray(max_posterior, dtype=np.float64)
    chance = float(np.max(weights))
    acc = float(p.mean())
    lo, hi = bootstrap_mean(p, rng, n_boot, confidence)
    lo, hi = min(lo, acc), max(hi, acc)
    if int(n_users_range[0]) <= 1:
        lo = min(lo, chance)
    return {"expected_accuracy": acc, "ci": [lo, hi], "chance": chance, "risk": _risk(acc, chance),
            "risk_ci": [_risk(lo, chance), _risk(hi, chance)]}


def linkage_risk(log_resp_q: np.ndarray, log_resp_r: np.ndarray, rng, n_boot: int = 400,
                 confidence: float = 0.95) -> dict:
    """Anonymeter-style linkage risk from posterior responsibilities of queries and references."""
    gq, gr = np.exp(np.asarray(log_resp_q, np.float64)), np.exp(np.asarray(log_resp_r, np.float64))
    gq /= gq.sum(1, keepdims=True)
    gr /= gr.sum(1, keepdims=True)
    best = np.empty(gq.shape[0])
    for s in range(0, gq.shape[0], 2048):
        best[s:s + 2048] = (gq[s:s + 2048] @ gr.T).max(axis=1)  # G(q, r*(q)): the top-1 link's score
    control_q = gq @ gr.mean(axis=0)  # mean_r G(q, r)
    return _link_rates(best, control_q, int(gr.shape[0]), rng, n_boot, confidence)


def sparse_linkage_risk(q_idx, q_logp, r_idx, r_logp, n_components: int, rng, n_boot: int = 400,
                        confidence: float = 0.95) -> dict:
    """:func:`linkage_risk` from top-m posteriors (:mod:`attacks.scale`: component ``-1`` dropped),
    each row's kept posteriors renormalised: ``G(q, r*)`` by a sparse top-1 product
    (:func:`attacks.scale.sparse_topk`), the control rate from the references' mean posteriors."""
    from attacks.scale import sparse_log_pair, sparse_topk

    def normalised(idx, logp):
        logp = np.where(idx >= 0, logp.astype(np.float64), -np.inf)
        return logp - np.logaddexp.reduce(logp, axis=1, keepdims=True)

    lq, lr = normalised(q_idx, q_logp), normalised(r_idx, r_logp)
    top = sparse_topk(q_idx, lq, r_idx, lr, n_components, 1, rng)[:, 0]
    best = np.exp(sparse_log_pair(q_idx, lq, r_idx, lr, np.arange(q_idx.shape[0]), top))
    mean_r = np.zeros(n_components)
    keep = r_idx >= 0
    np.add.at(mean_r, r_idx[keep], np.exp(lr[keep]))
    mean_r /= r_idx.shape[0]
    keep = q_idx >= 0
    control_q = np.zeros(q_idx.shape[0])
    np.add.at(control_q, np.nonzero(keep)[0], np.exp(lq[keep]) * mean_r[q_idx[keep]])
    return _link_rates(best, control_q, int(r_idx.shape[0]), rng, n_boot, confidence)


def _link_rates(best: np.ndarray, control_q: np.ndarray, n_references: int, rng, n_boot: int,
                confidence: float) -> dict:
    attack, control = float(best.mean()), float(control_q.mean())

    def risk(w):
        return _risk(float(w @ best), float(w @ control_q))

    value = _risk(attack, control)
    if best.size > em_module.BOOTSTRAP_MAX_ROWS and control < 1.0 - 1e-9:  # delta method for (A - C) / (1 - C)
        lo, hi = em_module.normal_interval(value, (best - attack) / (1.0 - control)
                                  + (attack - 1.0) / (1.0 - control) ** 2 * (control_q - control), confidence)
    else:
        lo, hi = _bootstrap(risk, best.size, rng, n_boot, confidence)
    return {"attack_rate": attack, "control_rate": control, "risk": value,
            "risk_ci": [min(lo, value), max(hi, value)], "n_queries": int(best.size), "n_references": n_references}


def oracle_free_risk(pool, features: str = "embedding", transform=None, n_users: int | None = None,
                     n_users_range=None, random_state=0, n_boot: int = 400, confidence: float = 0.95,
                     mixture_cache: dict | None = None) -> dict:
    """The oracle-free risk summary of ``pool`` (module doc); JSON-ready.

    ``n_users``/``n_users_range``: a user-count estimate already computed (else held-out likelihood).
    Large pools (:func:`attacks.scale.at_scale`): the mixtures are fitted on row subsamples and the
    posteriors kept sparse (top-m, :mod:`attacks.scale`; ``mixture_cache``: the suite's fits, which the
    attribution shares; the linkage mixture is fitted on the references alone), so that nothing
    ``uploads x users`` is held.
    """
    from attacks.em import EMAttribution
    from attacks.linkage import split_queries
    from attacks.mixture_em import VARIANTS, DiagonalMixture
    from attacks.scale import at_scale, fit_scaled_mixture

    from attacks.em import em_features

    rng = check_random_state(random_state)
    transform = transform if transform is not None else _auto_transform(pool, features)
    x = em_features(pool, features, transform, random_state=seed_int(rng, 31))
    given = None if n_users is None else "given (the suite's estimate)"
    if n_users is None:
        n_users, n_users_range, _ = estimate_users(x, random_state=seed_int(rng, 31))
    k_range = [int(v) for v in (n_users_range or (n_users, n_users))]
    em = EMAttribution(n_users=int(n_users), features=features, transform=transform, n_init=2,
                       mixture_cache=mixture_cache, random_state=seed_int(rng, 31)).fit(pool)
    out = {"features": features, "n_users_estimated": int(em.n_users_estimated_), "n_users_range": k_range,
           "n_users_method": "BIC/AIC of MAP-EM mixtures (attacks.mixture_order.combine_user_counts; held-out likelihood, Smyth 2000: underfit test and range)" if given is None else given, "variant": em.variant_,
           "attribution": attribution_risk(em.max_posterior_, em.model_.weights_, k_range, rng, n_boot, confidence),
           "confidence": confidence, "definition": DEFINITION}
    ref, qry, split = split_queries(pool, rng)
    k = int(min(em.n_users_estimated_, ref.size))
    if k <= 1 or qry.size == 0:
        out["linkage"] = {"attack_rate": 1.0, "control_rate": 1.0, "risk": 0.0, "risk_ci": [0.0, 0.0],
                          "n_queries": int(qry.size), "n_references": int(ref.size), "split": split}
        return out
    if at_scale(ref.size, k):
        fit = fit_scaled_mixture(x[ref], k, seed_int(rng, 31), cache=mixture_cache)
        q_idx, q_logp = fit.model.predict_top(x[qry], fit.top_components.shape[1])
        link = sparse_linkage_risk(q_idx, q_logp, fit.top_components, fit.top_log_posterior, k, rng, n_boot,
                                   confidence)
    else:
        model = DiagonalMixture(k, n_init=2, random_state=seed_int(rng, 31), **VARIANTS[em.variant_]).fit(x[ref])
        lq, lr = (np.log(np.clip(model.predict_proba(x[rows]), 1e-300, None)) for rows in (qry, ref))
        link = linkage_risk(lq, lr, rng, n_boot, confidence)
    if k_range[0] <= 1:  # one user is compatible with the data: the risk may be 0
        link["risk_ci"][0] = min(link["risk_ci"][0], 0.0)
    out["linkage"] = {**link, "split": split,
                      "fitted_on": "references only; queries are the held-out control split"}
    return out


HELDOUT_FOLDS = 4  # V-fold held-out likelihood on small pools (attacks.mixture_order.OrderSearch.folds)


def estimate_users(x: np.ndarray, random_state=0) -> tuple[int, tuple[int, int], dict[str, int]]:
    """The adversary's user count ``(k, (k_lo, k_hi), by)``, ``k <= n / 10`` (a user with fewer than
    about 10 uploads is not separable as a mixture component; the cap also bounds the cost).

    ``k`` is BIC's choice unless held-out likelihood says it underfits, i.e. the held-out choice (by
    the one-standard-error rule, :func:`attacks.mixture_order.estimate_n_components`, ``HELDOUT_FOLDS``-fold
    cross-validated: with one 75/25 split the choice flipped between BIC's and more with the seed, and the
    count with it: 4 of 75 seeded counts on the small strength pools outside a factor 2, none with 4 folds) has more
    components, or BIC alone finds one user where AIC finds more; then AIC's choice
    (:func:`attacks.mixture_order.penalized_n_components`; the rule:
    :func:`attacks.mixture_order.combine_user_counts`).  BIC is
    exact on a few well-sampled users where AIC overcounts; on many users with a few dozen uploads in many dimensions BIC collapses (200
    x 30 in 32-d: 1) and held-out likelihood undercounts (about 25) while AIC lands near 150.  The
    range spans the chosen ``k`` and every ``k`` whose held-out log-likelihood is within two paired
    standard errors of the best; ``by``: each criterion's choice.  Large pools (:func:`attacks.scale.at_scale`
    with ``k_max``): the same rule from one coarse held-out search (:func:`attacks.scale.estimate_users_at_scale`).
    """
    from attacks.mixture_order import OrderSearch, estimate_n_components, penalized_n_components, user_count_estimate
    from attacks.scale import at_scale, estimate_users_at_scale

    rng = check_random_state(random_state)
    k_max = max(2, x.shape[0] // 10)
    if at_scale(x.shape[0], k_max):
        return estimate_users_at_scale(x, k_max, random_state=seed_int(rng, 31))
    k_ho, (lo, hi), _ = estimate_n_components(x, k_max=k_max, random_state=seed_int(rng, 31), rule="one_se",
                                              search=OrderSearch(folds=HELDOUT_FOLDS))
    crit = penalized_n_components(x, k_max=k_max, random_state=seed_int(rng, 31))
    k_aic, k_bic = crit["aic"][0], crit["bic"][0]
    return user_count_estimate(k_aic, k_bic, k_ho, (lo, hi))


def _auto_transform(pool, features: str):
    if features != "embedding":
        return None
    from attacks.inversion.estimators import guess_family, is_unit_affine
    from idfree_core.families import get_family_spec

    unit = is_unit_affine(get_family_spec(guess_family(pool.embedding, compare=False)))
    return (None, None) if unit else None


def format_oracle_free(r: dict) -> list[str]:
    """Text lines for ``idfree-audit attack`` without an oracle."""
    a, lk = r["attribution"], r["linkage"]
    lo, hi = r["n_users_range"]
    return [f"oracle-free risk ({r['features']} features, {int(r['confidence'] * 100)}% CIs; model-based, no oracle):",
            f"  estimated number of users: {r['n_users_estimated']} (BIC/AIC; range {lo}..{hi} with held-out likelihood)",
            f"  attribution: expected accuracy {a['expected_accuracy']:.3f} [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}] "
            f"vs chance {a['chance']:.3f}: risk {a['risk']:.3f} [{a['risk_ci'][0]:.3f}, {a['risk_ci'][1]:.3f}]",
            f"  linkage: attack rate {lk['attack_rate']:.3f} vs control {lk['control_rate']:.3f}: "
            f"risk {lk['risk']:.3f} [{lk['risk_ci'][0]:.3f}, {lk['risk_ci'][1]:.3f}]"]
