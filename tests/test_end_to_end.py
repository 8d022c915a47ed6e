"""Across packages: simulate -> anonymous pool -> attacks, scored against the Bayes ceiling."""

import pytest

from attacks.suite import run_attacks
from idfree_core.pipeline import SimulationConfig, simulate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(n_users=8, docs_per_user=30, d_model=16, n_heads=2, n_layers=1, central_epochs=1, warmup_epochs=1,
             device_epochs=3, cloud_epochs=1, rounds=1, entropy_samples=2, n_bootstrap=200, baselines=())


def _by_metric(report, metric):
    return [r for r in report.results if r.metric == metric]


def test_static_embeddings_are_fully_linkable():
    """One fixed vector per user is an identifier: linkage top-1 >= 0.95 and clustering ARI >= 0.9."""
    res = simulate(SimulationConfig(**SMALL, family="static", seed=5), progress=False)
    report = run_attacks(res.pool, res.oracle, res.distributions, attacks=("clustering", "linkage"),
                         random_state=0, progress=False)
    top1 = max(r.value for r in _by_metric(report, "linkage_top1"))
    ari = max(r.value for r in _by_metric(report, "ari"))
    assert top1 >= 0.95, top1
    assert ari >= 0.9, ari


def test_no_attack_beats_the_bayes_ceiling():
    """The Bayes-optimal attribution accuracy bounds every attribution attack (up to sampling error)."""
    res = simulate(SimulationConfig(**SMALL, family="gaussian", std=0.3, seed=6), progress=False)
    report = run_attacks(res.pool, res.oracle, res.distributions, attacks=("clustering", "inversion"),
                         random_state=0, progress=False)
    rows = [r for r in _by_metric(report, "attribution_accuracy") if r.ceiling is not None]
    assert rows, "attribution attacks must report the Bayes ceiling when distributions are known"
    for r in rows:
        # The attack's lower confidence limit cannot sit above the ceiling (plus Monte-Carlo slack).
        assert r.ci[0] <= r.ceiling + 0.02, (r.name, r.value, r.ci, r.ceiling)
        assert 0.0 <= r.ceiling <= 1.0
