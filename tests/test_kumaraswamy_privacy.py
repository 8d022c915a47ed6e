"""Kumaraswamy end to end in privacy_audit and the misattribution / identifiability commands.

Kumaraswamy is not an exponential family in (a, b), so misattribution runs through the family
record's torch log-density (privacy_audit.likelihood.TorchLogDensity).  Exact anchors:
Kumaraswamy(1, b) = Beta(1, b) (Jones 2009), so every quantity must equal Beta's there.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from idfree_core.uploads import UserDistributions, write_user_distributions
from privacy_audit.dp import privacy_in_dp_terms
from privacy_audit.identifiability.deployment import decide_deployment
from privacy_audit.misattribution import bayes_misattribution, divergence_matrix, proximity_bound
from privacy_audit.multi_upload import chernoff_rate
from reports import cli

P3 = {"a": np.array([[2.0], [2.5], [1.5]]), "b": np.array([[5.0], [3.0], [4.0]])}


def test_monte_carlo_agrees_with_exact_quadrature_1d_three_users():
    exact = bayes_misattribution("kumaraswamy", P3, method="exact")
    mc = bayes_misattribution("kumaraswamy", P3, method="monte_carlo", target_halfwidth=0.003, random_state=1)
    assert exact.method == "exact" and exact.error < 1e-8
    assert mc.method == "monte_carlo" and mc.converged
    assert mc.ci[0] - exact.error <= exact.value <= mc.ci[1] + exact.error
    assert 0.4 < exact.value < 0.6   # three heavily overlapping users


def test_equals_beta_where_the_families_coincide():
    ones, b = np.ones((3, 1)), np.array([[2.0], [5.0], [9.0]])
    kum = bayes_misattribution("kumaraswamy", {"a": ones, "b": b}, method="exact")
    beta = bayes_misattribution("beta", {"alpha": ones, "beta": b}, method="exact")
    assert kum.value == pytest.approx(beta.value, abs=1e-9)
    for kind in ("kl", "hellinger", "tv", "js"):
        np.testing.assert_allclose(divergence_matrix("kumaraswamy", {"a": ones, "b": b}, kind),
                                   divergence_matrix("beta", {"alpha": ones, "beta": b}, kind), rtol=1e-7, atol=1e-9)
    rk, pk, _ = chernoff_rate("kumaraswamy", {"a": ones, "b": b})
    rb, pb, _ = chernoff_rate("beta", {"alpha": ones, "beta": b})
    assert rk == pytest.approx(rb, rel=1e-6) and pk == pb


def test_several_uploads_by_monte_carlo_agree_with_beta():
    rng = np.random.default_rng(0)
    b = rng.uniform(2, 6, (4, 3))
    kw = dict(uploads_per_user=3, target_halfwidth=0.004, random_state=2)
    kum = bayes_misattribution("kumaraswamy", {"a": np.ones_like(b), "b": b}, **kw)
    beta = bayes_misattribution("beta", {"alpha": np.ones_like(b), "beta": b}, **kw)
    assert kum.method == beta.method == "monte_carlo"
    assert abs(kum.value - beta.value) <= kum.error + beta.error


def test_dp_view_is_not_available_rather_than_a_traceback():
    p = {"a": np.array([[2.0, 2.0], [2.5, 1.8]]), "b": np.array([[5.0, 3.0], [3.0, 4.0]])}
    dp = privacy_in_dp_terms("kumaraswamy", p, uploads=(1, 5))
    d = dp.to_dict()
    assert "not available" in d["model"] and d["epsilon"]["m=1"] is None and d["epsilon"]["m=5"] is None
    assert json.loads(json.dumps(d)) == d


def test_proximity_bound_refuses_kumaraswamy_in_one_line():
    with pytest.raises(ValueError, match="kumaraswamy") as info:
        proximity_bound("kumaraswamy", 3, 2, 0.01, 1.0, 5)
    assert "\n" not in str(info.value)


def test_deployment_certificate_for_kumaraswamy_users():
    rng = np.random.default_rng(4)
    p = {"a": rng.uniform(1.5, 3, (3, 9)), "b": rng.uniform(2, 6, (3, 9))}
    v = decide_deployment("kumaraswamy", p)
    assert v.identifiable is True and v.kruskal_ranks == (3, 3, 3)
    dup = {k: np.vstack([x, x[:1]]) for k, x in p.items()}
    assert decide_deployment("kumaraswamy", dup).identifiable is False
    with pytest.raises(ValueError, match="parameters must be"):
        decide_deployment("kumaraswamy", {"alpha": p["a"], "beta": p["b"]})


def test_misattribution_command_on_a_kumaraswamy_file(tmp_path, capsys):
    rng = np.random.default_rng(5)
    dists = UserDistributions("kumaraswamy", ("u0", "u1", "u2"),
                              {"a": rng.uniform(1.5, 3, (3, 4)), "b": rng.uniform(2, 6, (3, 4))})
    path = tmp_path / "user_distributions.json"
    write_user_distributions(dists, path)
    assert cli.main(["misattribution", "--distributions", str(path), "--uploads-per-user", "1,5",
                     "--target-halfwidth", "0.01", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["family"] == "kumaraswamy" and 0 <= out["bayes"]["value"] <= 2 / 3
    rows = out["by_uploads_per_user"]
    assert [r["m"] for r in rows] == [1, 5] and rows[1]["value"] <= rows[0]["value"]
    assert out["chernoff"]["rate_per_upload"] > 0
    assert out["dp"]["epsilon"]["m=1"] is None and "not available" in out["dp"]["model"]
    assert cli.main(["misattribution", "--distributions", str(path), "--uploads-per-user", "1",
                     "--target-halfwidth", "0.01"]) == 0
    assert "not available" in capsys.readouterr().out


def test_identifiability_command_for_kumaraswamy(capsys):
    assert cli.main(["identifiability", "--family", "kumaraswamy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["linearly_dependent"] is True and out["certificate"]["verified"] is True


def test_a_refused_bound_is_refused_before_the_monte_carlo(tmp_path, capsys, monkeypatch):
    import privacy_audit.misattribution as mis

    rng = np.random.default_rng(6)
    dists = UserDistributions("kumaraswamy", ("u0", "u1"), {"a": rng.uniform(1.5, 3, (2, 3)),
                                                             "b": rng.uniform(2, 6, (2, 3))})
    path = tmp_path / "user_distributions.json"
    write_user_distributions(dists, path)

    def no_monte_carlo(*args, **kwargs):
        raise AssertionError("the Monte Carlo ran before the proximity bound's inputs were checked")

    monkeypatch.setattr(mis, "bayes_misattribution", no_monte_carlo)
    code = cli.main(["misattribution", "--distributions", str(path), "--lr", "0.01", "--steps", "5", "--clip", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "kumaraswamy" in err[0].lower(), err
