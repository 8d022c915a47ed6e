"""Cheap, deterministic stand-ins for ``reports.sweep.point.evaluate_point`` used by the report tests.

They return rows with the same schema as the real point function, computed from the point's
config only (a seeded numpy Generator), so executors, store, Pareto, figures and PDF can be tested
without training anything.  Side effects for the resume tests are driven by ``[base]`` keys:
``calls_file`` (append the point id on each evaluation), die-after (``os._exit`` once that many
evaluations are logged, like a ``kill -9``; read from the environment variable
``FAKE_DIE_AFTER`` so that the rerun uses the same spec), ``fail_family`` (raise for that family).
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np


def _rng(config) -> np.random.Generator:
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _ci(value, half):
    return [max(0.0, value - half), min(1.0, value + half)]


def _fake_theory(family, mis, n):
    """The ``theory`` block of ``reports.sweep.theory.theory_metrics``: errors fall with linked uploads."""
    rows = [{"m": m, "value": mis * np.exp(-0.05 * (m - 1)), "ci": _ci(mis * np.exp(-0.05 * (m - 1)), 0.02),
             "method": "fake"} for m in (1, 5, 20)]
    return {"by_uploads_per_user": {"rows": rows, "chernoff_rate": 0.05, "pairs": "all"},
            "dp": {"model": "fake", "delta": 1e-5, "gdp_mu_per_upload": None,
                   "epsilon": {"m=1": 1.0 + 3 * (1 - mis), "m=20": 10.0 + 30 * (1 - mis)}, "worst_pair": [0, 1]},
            "deployment": ({"identifiable": family != "static", "method": "fake", "kruskal_ranks": [n, n, n],
                            "required": 2 * n + 2, "reason": "fake"} if family != "static"
                           else {"error": "ValueError: point masses"})}


def fake_point(config):
    rng = _rng(config)
    family, n = config.get("family", "gaussian"), int(config.get("n_users", 6))
    spread = config.get("spread") or 0.0
    top = (n - 1) / n
    mis = 0.0 if family == "static" else top * (1 - np.exp(-spread / (0.12 if family == "gaussian" else 0.3)))
    mis = float(np.clip(mis + rng.normal(0, 0.01), 0, top))
    acc = float(0.82 - 0.12 * spread + rng.normal(0, 0.005) - (0.0 if family != "beta" else 0.01))
    adv = float(np.clip(1 - mis / top + rng.normal(0, 0.01), 0, 1)) if top else 0.0
    attacks = []
    for name, metric, value, base in [("kmeans", "attribution_accuracy", 1 - mis, 1 / n),
                                      ("gmm", "ari", 1 - mis / top, 0.0),
                                      ("nn_linkage", "linkage_top1", 1 - mis, 1 / n),
                                      ("nn_linkage", "auc", 1 - mis / 2, 0.5)]:
        attacks.append({"name": name, "metric": metric, "value": value, "ci": _ci(value, 0.03),
                        "baseline": base, "advantage": value - base,
                        "advantage_ci": [value - base - 0.03, value - base + 0.03],
                        "ceiling": 1 - mis, "n": 400, "knowledge": "embeddings", "features": "embedding"})
    m = 60
    users = np.repeat(np.arange(n), m // n)
    centers = rng.normal(0, 1, size=(n, 8))
    emb = centers[users] + rng.normal(0, 0.05 + 3 * spread, size=(users.size, 8))
    fpr = np.linspace(0, 1, 21)
    tpr = fpr ** max(0.05, mis)
    bins = [{"lo": float(lo), "hi": float(lo + 0.25), "n": 50, "accuracy": float(acc - lo / 4),
             "ci": _ci(acc - lo / 4, 0.05)} for lo in (0.0, 0.25, 0.5, 0.75)]
    return {
        "accuracy": {k: {"value": v, "ci": _ci(v, 0.02)} for k, v in
                     {"central": 0.76, "idfree": acc, "static": 0.83}.items()},
        "ceiling": {"text_only": 0.78, "user_aware": 0.9},
        "misattribution": {"value": mis, "ci": _ci(mis, 0.02), "method": "fake", "n_samples": 1000,
                           "max": top},
        "proximity_bound": None if family == "static" else 0.5 * mis,
        "proximity_bound_observed": None if family == "static" else 0.8 * mis,
        "theory": _fake_theory(family, mis, n),
        "attacks": attacks,
        "best_attack": {"name": "nn_linkage", "metric": "linkage_top1", "advantage": adv,
                        "advantage_ci": _ci(adv, 0.03)},
        "entropy_bins": bins,
        "n_users": n,
        "pool": {"n_tokens": 1},
        "per_user": [{"user": f"u{u}", "misattribution": float(np.clip(mis * (0.5 + u / n), 0, 1)),
                      "linkage_top1": float(np.clip(1 - mis * (0.5 + u / n), 0, 1)), "n_links": 5}
                     for u in range(n)],
        "artifacts": {"embedding": emb.astype(np.float32), "user": users.astype(np.int64),
                      "roc_fpr": fpr, "roc_tpr": tpr},
    }


def counting_point(config):
    """``fake_point`` with the side effects described in the module docstring."""
    from reports.sweep import point_id

    path = config["calls_file"]
    if config.get("fail_family") == config.get("family"):
        raise ValueError(f"deliberate failure for {config.get('family')}")
    die_after = os.environ.get("FAKE_DIE_AFTER")
    if die_after and os.path.exists(path):
        with open(path) as fh:
            if sum(1 for _ in fh) >= int(die_after):
                os._exit(3)
    row = fake_point(config)
    with open(path, "a") as fh:
        fh.write(point_id(config) + "\n")
    return row


def unstorable_point(config):
    """A row the store cannot serialise (recorded as a failed point, not a crash)."""
    return {"accuracy": object()}


def slow_point(config):
    """``fake_point`` after sleeping ``[base] sleep_s`` seconds (kill and interrupt tests)."""
    import time

    time.sleep(float(config.get("sleep_s", 1.0)))
    return fake_point(config)


def bare_point(config):
    """``fake_point`` without attacks, ROC or entropy bins (a report with nothing to put in legends)."""
    row = fake_point(config)
    row["attacks"] = []
    row["entropy_bins"] = []
    row["artifacts"] = {k: v for k, v in row["artifacts"].items() if not k.startswith("roc")}
    return row
