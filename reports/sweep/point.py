"""The point function: one sweep point = simulate -> attacks -> Bayes misattribution -> bound -> one row.

``evaluate_point(config)`` maps the point's settings onto ``idfree_core.pipeline.SimulationConfig``
(``spread`` is the Gaussian ``std``; for Beta it is the standard deviation of the common initial
``Beta(2c, 5c)`` marginal, ``Var = 10 / (49 (7c + 1))``, solved for the concentration ``c``),
runs ``simulate``, every attack in ``attacks.suite.run_attacks`` on the resulting anonymous pool,
the Bayes-optimal misattribution of the trained user distributions
(``privacy_audit.misattribution.bayes_misattribution``) and the proximity bound from the training
constraints (``privacy_audit.misattribution.proximity_bound``).  It returns one JSON-ready row plus
small ``artifacts`` (a seeded sample of session-0 embeddings with user codes, the linkage ROC).

Best attack advantage: the largest ``advantage = value - chance`` over every attack metric where
higher means a stronger attack (``attacks.base.METRICS``), i.e. the strongest evidence of linkability.
Every random choice is seeded from the point's ``seed``; torch runs on ``IDFREE_POINT_THREADS``
threads (default 1) so results do not depend on where the point runs.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from typing import Any, Mapping

import numpy as np

from idfree_core.errors import InputError
from idfree_core.families import get_family_spec
from reports.sweep.spec import GRID_KEYS

EMBEDDING_SAMPLE = 400   # rows of session-0 embeddings kept per point for the t-SNE figure
ENTROPY_BINS = 4


def beta_concentration(spread: float) -> float:
    """Concentration ``c`` with ``std(Beta(2c, 5c)) == spread`` (``Var = 10 / (49 (7c + 1))``)."""
    return get_family_spec("beta").setting_from_spread(spread)


def simulation_config(config: Mapping[str, Any]):
    """The ``SimulationConfig`` of a point (``[base]`` keys are SimulationConfig fields)."""
    from idfree_core.pipeline import SimulationConfig

    known = {f.name for f in fields(SimulationConfig)}
    base = {k: v for k, v in config.items() if k not in GRID_KEYS and k != "attacks"}
    unknown = sorted(set(base) - known)
    if unknown:
        raise InputError(f"unknown [base] setting(s) {unknown}; expected SimulationConfig fields")
    kwargs: dict[str, Any] = {"baselines": ("static",), **base}
    for key in ("baselines", "persona_options"):
        if isinstance(kwargs.get(key), list):
            kwargs[key] = tuple(kwargs[key])
    family = config.get("family", kwargs.get("family", "beta"))
    kwargs["family"] = family
    spread = config.get("spread")
    spec = get_family_spec(family)
    if spread is not None and spec.spread_field is not None:  # e.g. Gaussian std, Beta concentration
        kwargs[spec.spread_field] = spec.setting_from_spread(float(spread))
    for key, target in (("lr", "device_lr"), ("clip", "device_clip"), ("steps", "device_max_steps"),
                        ("n_users", "n_users"), ("seed", "seed"), ("model", "model")):
        if config.get(key) is not None:
            kwargs[target] = config[key]
    # the preset (fast by default) fills what the spec leaves unset, for the point's model
    return SimulationConfig.from_preset(kwargs.pop("preset", "fast"), kwargs.pop("model", "compact"), **kwargs)


def entropy_bins(correct: np.ndarray, entropy: np.ndarray, n_classes: int, n_bins: int = ENTROPY_BINS) -> list[dict]:
    """Accuracy (Wilson CI) per equal-width bin of prediction entropy on ``[0, log n_classes]``."""
    from attacks.base import proportion_ci

    top = max(math.log(max(n_classes, 2)), float(np.max(entropy, initial=0.0)))
    edges = np.linspace(0.0, top, n_bins + 1)
    which = np.clip(np.searchsorted(edges, entropy, side="right") - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        hit = correct[which == b]
        k, n = int(hit.sum()), int(hit.size)
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n,
                    "accuracy": float(k / n) if n else None, "ci": list(proportion_ci(k, n)) if n else None})
    return out


def _best_attack(results: list) -> dict[str, Any]:
    from attacks.base import METRICS

    stronger = [r for r in results if METRICS.get(r.metric, False)]
    if not stronger:
        return {"name": None, "metric": None, "advantage": None, "advantage_ci": None}
    best = max(stronger, key=lambda r: (r.advantage, r.name, r.metric))
    return {"name": best.name, "metric": best.metric, "advantage": float(best.advantage),
            "advantage_ci": [float(best.advantage_ci[0]), float(best.advantage_ci[1])]}


def _roc(results: list) -> dict[str, np.ndarray]:
    aucs = [r for r in results if r.metric == "auc" and isinstance(r.details.get("roc"), dict)]
    if not aucs:
        return {}
    best = max(aucs, key=lambda r: (r.value, r.name))
    return {"roc_fpr": np.asarray(best.details["roc"]["fpr"], float),
            "roc_tpr": np.asarray(best.details["roc"]["tpr"], float)}


def _common_init(cfg):
    """``(spec, init)``: the family record and the common initialisation every device started from (the
    record's, e.g. Beta(2c, 5c)); None for families the proximity bound does not cover (point masses)."""
    from privacy_audit.proximity import proximity_covers

    if not proximity_covers(cfg.family):
        return None
    spec = get_family_spec(cfg.family)
    return spec, spec.initial_params(getattr(cfg, spec.spread_field), "classify")


def _bound(sim, cfg) -> float | None:
    """The worst-case proximity bound from the training constraints alone."""
    from privacy_audit.misattribution import proximity_bound

    common = _common_init(cfg)
    if common is None:
        return None
    dist = sim.distributions
    bound = proximity_bound(cfg.family, n_users=dist.n_users, dim=dist.dim, lr=cfg.device_lr, clip=cfg.device_clip,
                            steps=int(sim.metrics["device"]["steps_total"]), init=common[1], optimizer="adamw",
                            weight_decay=cfg.device_weight_decay)
    return float(bound.value)


def _observed_bound(sim, cfg) -> float | None:
    """The bound from what the devices actually did (:func:`privacy_audit.proximity.proximity_bound_from_trajectories`
    on the trained parameters): the larger of the box bound over the observed drift and Fano with the users' own
    mutual information; a guaranteed lower bound on this population's Bayes misattribution."""
    from privacy_audit.misattribution import proximity_bound_from_trajectories

    common = _common_init(cfg)
    if common is None:
        return None
    try:
        bound = proximity_bound_from_trajectories(cfg.family, common[1], final_params=dict(sim.distributions.params))
    except ValueError:
        return None
    return float(bound.value)


def evaluate_point(config: Mapping[str, Any]) -> dict[str, Any]:
    """Run one sweep point (module docstring); returns the row, with ``artifacts`` for the store."""
    import torch

    from attacks.suite import run_attacks
    from idfree_core.pipeline import simulate
    from privacy_audit.misattribution import bayes_misattribution
    from reports.exposure import per_user_exposure
    from reports.sweep.theory import theory_metrics

    torch.set_num_threads(int(os.environ.get("IDFREE_POINT_THREADS", "1")))
    cfg = simulation_config(config)
    sim = simulate(cfg, progress=False)
    seed = int(cfg.seed)
    attacks = tuple(config.get("attacks") or ("clustering", "linkage", "inversion"))
    report = run_attacks(sim.pool, sim.oracle, sim.distributions, attacks=attacks, features="embedding",
                         random_state=seed, progress=False)
    dist = sim.distributions
    mis = bayes_misattribution(dist.family, dict(dist.params), random_state=seed, target_halfwidth=0.01)
    n = dist.n_users
    preds = sim.predictions["idfree"]
    ent = preds.sample_entropy if preds.sample_entropy is not None else preds.entropy
    n_classes = int(getattr(sim.corpus, "n_classes", None) or 2)
    codes, names = sim.oracle.codes_for(sim.pool)
    rows = np.flatnonzero(sim.pool.sessions() == 0)
    rng = np.random.default_rng(seed)
    if rows.size > EMBEDDING_SAMPLE:
        rows = np.sort(rng.choice(rows, EMBEDDING_SAMPLE, replace=False))
    metrics = sim.metrics
    return {
        "accuracy": {k: v for k, v in metrics["accuracy"].items() if isinstance(v, dict) and "value" in v},
        "ceiling": metrics.get("ceiling", {}),
        "misattribution": {"value": float(mis.value), "ci": [float(mis.ci[0]), float(mis.ci[1])],
                           "method": mis.method, "n_samples": int(mis.n_samples), "max": (n - 1) / n},
        "proximity_bound": _bound(sim, cfg),
        "proximity_bound_observed": _observed_bound(sim, cfg),
        "theory": theory_metrics(dist, seed),
        "attacks": [r.to_dict() for r in report.results],
        "best_attack": _best_attack(report.results),
        "entropy_bins": entropy_bins(np.asarray(preds.correct, bool), np.asarray(ent, float), n_classes),
        "device": metrics.get("device", {}),
        "pool": metrics.get("pool", {}),
        "data_description": (metrics.get("data") or {}).get("description"),
        "model": metrics.get("model", {}),
        "n_users": n,
        "per_user": per_user_exposure(mis.per_user, report.summary.get("linkage"), codes, names),
        "artifacts": {"embedding": sim.pool.embedding[rows].astype(np.float32), "user": codes[rows],
                      **_roc(report.results)},
    }
