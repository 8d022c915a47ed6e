"""Oracle-free risk (attacks.oracle_free): the model's self-assessment vs the oracle, null at 0, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attacks.oracle_free import attribution_risk, linkage_risk, oracle_free_risk
from attacks.suite import run_attacks
from idfree_core.uploads import write_uploads
from reports import cli
from test_attack_suite import gaussian_pool


@pytest.fixture(scope="module")
def separated():
    pool, oracle, dists = gaussian_pool(seed=1)
    return pool, oracle, dists, run_attacks(pool, attacks="clustering,linkage", progress=False, random_state=0)


def test_self_estimated_accuracy_matches_the_oracle_scored_one(separated):
    pool, oracle, dists, report = separated
    risk = report.summary["oracle_free_risk"]
    assert risk["n_users_estimated"] == 5 and risk["n_users_range"][0] <= 5 <= risk["n_users_range"][1]
    a = risk["attribution"]
    scored = run_attacks(pool, oracle, dists, attacks="clustering,linkage", progress=False, random_state=0)
    oracle_acc = max(r.value for r in scored.results if r.metric == "attribution_accuracy" and "known" not in r.name)
    # the model's own estimate vs the oracle-scored accuracy of the same adversary: within the CI +- 0.02
    assert a["ci"][0] - 0.02 <= oracle_acc <= a["ci"][1] + 0.02, (a, oracle_acc)
    assert a["risk_ci"][0] > 0.8 and risk["linkage"]["risk_ci"][0] > 0.8
    lr = next(r for r in scored.results if r.name == "linkage[likelihood_ratio]" and r.metric == "linkage_top1")
    assert abs(risk["linkage"]["attack_rate"] - lr.value) <= 0.1, (risk["linkage"], lr.value)
    assert report.to_dict()["oracle_free_risk"] == risk and report.headline()["oracle_free_risk"] == risk


@pytest.mark.parametrize("seed", [3, 4])
def test_null_pool_risk_ci_contains_zero(seed):
    pool, _, _ = gaussian_pool(shared=True, seed=seed)
    risk = oracle_free_risk(pool, random_state=seed)
    for part in ("attribution", "linkage"):
        lo, hi = risk[part]["risk_ci"]
        assert lo <= 0.0 <= hi, (part, risk[part])


def test_risk_formulas_on_known_posteriors():
    rng = np.random.default_rng(0)
    # certain posteriors: accuracy 1, chance = the largest weight, risk 1
    a = attribution_risk(np.ones(50), np.array([0.6, 0.4]), (2, 2), rng)
    assert a["expected_accuracy"] == 1.0 and a["chance"] == 0.6 and a["risk"] == pytest.approx(1.0)
    assert attribution_risk(np.ones(50), np.array([0.6, 0.4]), (1, 2), rng)["risk_ci"][0] == 0.0
    # two certain components, equal shares: attack 1, control 1/2, risk (1 - 1/2) / (1 - 1/2) = 1
    one_hot = np.log(np.clip(np.eye(2)[np.arange(40) % 2], 1e-300, None))
    lk = linkage_risk(one_hot, one_hot, rng)
    assert lk["attack_rate"] == pytest.approx(1.0) and lk["control_rate"] == pytest.approx(0.5)
    assert lk["risk"] == pytest.approx(1.0)
    # uninformative posteriors: attack = control, risk 0
    flat = np.log(np.full((30, 3), 1.0 / 3))
    assert linkage_risk(flat, flat, rng)["risk"] == pytest.approx(0.0, abs=1e-12)


def test_cli_without_oracle_prints_the_risk_with_cis(separated, tmp_path, capsys):
    pool = separated[0]
    write_uploads(pool, tmp_path / "uploads.parquet")
    assert cli.main(["attack", str(tmp_path / "uploads.parquet"), "--attacks", "clustering"]) == 0
    out = capsys.readouterr().out
    assert "oracle-free risk" in out and "attribution: expected accuracy" in out and "linkage: attack rate" in out
    assert "estimated number of users: 5 (BIC/AIC; range" in out
    assert cli.main(["attack", str(tmp_path / "uploads.parquet"), "--attacks", "clustering", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    risk = data["oracle_free_risk"]
    assert len(risk["attribution"]["ci"]) == 2 and len(risk["linkage"]["risk_ci"]) == 2


@pytest.mark.parametrize("seed,size", [(11, "small"), (12, "small"), (13, "small"), (11, "full")])
def test_user_count_of_many_small_users_within_a_factor_2(seed, size):
    """Issue 8: the no-oracle user count on many users with 30 uploads each (tests/attack_pools.py
    "many": 40 users in 16-d small, the issue's 200 users in 32-d full) lies within a factor 2 of the
    truth, where BIC alone collapses (2 and 5 users) and held-out likelihood undercounts (about 25 of 200)."""
    from attack_pools import make_pool
    from attacks.suite import SuiteContext

    sp = make_pool("many", seed, size)
    ctx = SuiteContext(pool=sp.pool, oracle=None, distributions=None, features="embedding",
                       rng=np.random.default_rng(0), n_true=None, summary={"skipped": []})
    k = ctx.n_users("embedding")
    by = ctx.summary["n_users_by"]
    assert sp.n_users / 2 <= k <= 2 * sp.n_users, (k, by)
    lo, hi = ctx.summary["n_users_range"]
    assert lo <= k <= hi
    assert 4 * by["bic"] <= k  # BIC alone collapses here
