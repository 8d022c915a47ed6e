"""Deployment-level identifiability (K known): Kruskal / Allman-Matias-Rhodes certificates."""

import json

import numpy as np
import pytest

from privacy_audit.identifiability.deployment import decide_deployment
from reports import cli


def _beta_population(K=20, D=64, seed=0):
    rng = np.random.default_rng(seed)
    return {"alpha": 2 * np.exp(rng.normal(0, 0.05, (K, D))),
            "beta": 5 * np.exp(rng.normal(0, 0.05, (K, D)))}


def test_twenty_beta_users_are_certified_identifiable():
    v = decide_deployment("beta", _beta_population())
    assert v.identifiable is True and v.kruskal_ranks == (20, 20, 20) and v.required == 42
    assert sorted(i for b in v.blocks for i in b) == list(range(64))
    for rec in v.certificate:
        assert rec["sigma_min"] > rec["required_margin"] * rec["tolerance"] > 0
    d = v.to_dict()
    assert json.dumps(d) and d["n_users"] == 20 and "meaning" in d


def test_two_identical_users_are_not_identifiable():
    p = _beta_population()
    for name in p:
        p[name][3] = p[name][7]
    v = decide_deployment("beta", p, users=tuple(f"u{k}" for k in range(20)))
    assert v.identifiable is False and "u3" in v.reason and "u7" in v.reason


def test_gaussian_static_unknown_and_too_few_dims():
    rng = np.random.default_rng(1)
    g = decide_deployment("gaussian", {"mean": rng.normal(0.1, 0.05, (30, 48)),
                                       "std": np.full((30, 48), 0.2)})
    assert g.identifiable is True and g.kruskal_ranks == (30, 30, 30)
    pts = rng.normal(size=(6, 5))
    assert decide_deployment("static", {"value": pts}).identifiable is True
    pts[4] = pts[1]
    assert decide_deployment("static", {"value": pts}).identifiable is False
    # a family with no closed-form moments here (not registered): no certificate either way
    assert decide_deployment("weibull", {"k": rng.random((4, 6)) + 1}).identifiable is None
    # Kumaraswamy has them (E X^n = b B(1 + n/a, b)): 4 distinct users in 6 dims of 3 blocks of 2
    kum = decide_deployment("kumaraswamy", {"a": rng.random((4, 6)) + 1, "b": rng.random((4, 6)) + 2})
    assert kum.identifiable is not False and kum.kruskal_ranks
    assert decide_deployment("beta", _beta_population(K=5, D=2)).identifiable is None


def test_users_with_the_same_means_are_separated_by_second_moments():
    K, D = 12, 30
    rng = np.random.default_rng(2)
    mean = np.tile(rng.normal(size=(1, D)), (K, 1))
    v = decide_deployment("gaussian", {"mean": mean, "std": np.exp(rng.normal(0, 0.3, (K, D)))})
    assert v.identifiable is True


def test_bad_params_are_one_line_errors():
    with pytest.raises(ValueError):
        decide_deployment("beta", {"alpha": np.ones((3, 4))})
    with pytest.raises(ValueError):
        decide_deployment("beta", {"alpha": np.ones((3, 4)), "beta": np.ones((3, 5))})
    with pytest.raises(ValueError):
        decide_deployment("gaussian", {"mean": np.full((2, 3), np.nan), "std": np.ones((2, 3))})
    # out-of-support parameters get no verdict, not even "unknown" (one coordinate: no blocks)
    for dims in (1, 6):
        with pytest.raises(ValueError, match="must be > 0"):
            decide_deployment("gaussian", {"mean": np.zeros((2, dims)), "std": np.full((2, dims), -1.0)})
        with pytest.raises(ValueError, match="must be > 0"):
            decide_deployment("beta", {"alpha": np.ones((2, dims)), "beta": np.zeros((2, dims))})


def test_cli_distributions_json(tmp_path, capsys):
    p = _beta_population(K=8, D=12)
    users = {f"u{k}": {"alpha": p["alpha"][k].tolist(), "beta": p["beta"][k].tolist()}
             for k in range(8)}
    f = tmp_path / "user_distributions.json"
    f.write_text(json.dumps({"family": "beta", "users": users}))
    assert cli.main(["identifiability", "--distributions", str(f), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["deployment"]["identifiable"] is True and d["deployment"]["n_users"] == 8
    assert d["family_verdict"]["linearly_dependent"] is True
    assert cli.main(["identifiability", "--distributions", str(f)]) == 0
    out = capsys.readouterr().out
    assert "IDENTIFIABLE with K known" in out and "does not protect" in out
