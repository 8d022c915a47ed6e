"""The Kumaraswamy family end to end in ``attack``: every suite attack runs on a tiny pool, with sane numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attacks.inversion import MixtureInversion, ParameterInversion
from attacks.inversion.estimators import guess_family
from attacks.suite import run_attacks
from idfree_core.families.kumaraswamy import kumaraswamy
from idfree_core.uploads import UserDistributions, anonymize, write_oracle, write_uploads, write_user_distributions

A = np.array([[1.5, 3.0, 2.0], [4.0, 1.2, 2.5], [2.0, 6.0, 0.8], [0.9, 2.0, 4.0]])
B = np.array([[5.0, 2.0, 8.0], [3.0, 6.0, 1.5], [1.5, 4.0, 6.0], [7.0, 1.2, 2.5]])


@pytest.fixture(scope="module")
def kumaraswamy_pool():
    rng = np.random.default_rng(0)
    per_user = 60
    x = np.concatenate([kumaraswamy(A[u], B[u]).rvs(size=(per_user, 3), random_state=rng) for u in range(4)])
    loc, scale = np.array([-1.0, 0.0, 2.0]), np.array([2.0, 1.0, 0.5])
    users = np.repeat(np.arange(4), per_user)
    session = np.tile((np.arange(per_user) >= 40).astype(np.int64), 4)
    pool, oracle = anonymize((loc + scale * x).astype(np.float32), users, session=session, rng=rng)
    dists = UserDistributions(family="kumaraswamy", users=[str(u) for u in range(4)], params={"a": A, "b": B},
                              loc=loc, scale=scale)
    return pool, oracle, dists


def test_every_suite_attack_runs_on_kumaraswamy(kumaraswamy_pool):
    pool, oracle, dists = kumaraswamy_pool
    report = run_attacks(pool, oracle, dists, progress=False)
    names = {r.name for r in report.results}
    assert report.summary["skipped"] == []
    assert {"clustering[auto]", "clustering[kmeans]", "linkage[nearest_neighbour]", "linkage[likelihood_ratio]",
            "parameter_inversion", "mixture_inversion[kumaraswamy]"} <= names
    best = report.best("attribution_accuracy")
    assert best.value > 0.8 and best.advantage_ci[0] > 0
    inv = next(r for r in report.results if r.name == "parameter_inversion")
    assert inv.details["k"] == 50 and inv.details["family"] == "kumaraswamy"
    assert inv.advantage_ci[1] < 0  # linked uploads beat random ones
    assert 0.8 < inv.value / inv.ceiling < 2.0  # near the Cramer-Rao error at k = 50
    mix = [r for r in report.results if r.name == "mixture_inversion[kumaraswamy]"]
    assert {r.metric for r in mix} == {"attribution_accuracy", "parameter_error"}
    assert all(np.isfinite(r.value) for r in report.results)
    json.dumps(report.to_dict())


def test_kumaraswamy_inversion_attacks_directly(kumaraswamy_pool):
    pool, oracle, dists = kumaraswamy_pool
    res = ParameterInversion(family="kumaraswamy", k_values=(10, 50)).fit(pool).score(pool, oracle, dists)
    curves = res[0].details["curves"]
    assert curves[1]["error"] < curves[0]["error"] and res[0].details["error_definition"].endswith("(a, b)")
    mix = MixtureInversion(family="kumaraswamy", n_components=4, n_init=1, transform=(dists.loc, dists.scale),
                           n_permutations=20).fit(pool)
    out = {r.metric: r for r in mix.score(pool, oracle, dists)}
    assert out["attribution_accuracy"].value > 0.7 and out["attribution_accuracy"].advantage_ci[0] > 0
    assert out["parameter_error"].value < out["parameter_error"].baseline
    assert "Kumaraswamy" in mix.finding_


def test_guess_family_picks_kumaraswamy_only_when_it_fits_better():
    rng = np.random.default_rng(1)
    k = kumaraswamy(0.5, 0.6).rvs(size=(4000, 2), random_state=rng)  # U-shaped
    b = rng.beta(2.0, 5.0, size=(4000, 2))
    assert guess_family(b) == "beta"
    assert guess_family(rng.normal(size=(200, 2))) == "gaussian"
    assert guess_family(k) in ("beta", "kumaraswamy")


def test_cli_attack_on_kumaraswamy_files(kumaraswamy_pool, tmp_path, capsys):
    from reports.cli import main

    pool, oracle, dists = kumaraswamy_pool
    write_uploads(pool, tmp_path / "uploads.parquet")
    write_oracle(oracle, tmp_path / "oracle.parquet")
    write_user_distributions(dists, tmp_path / "user_distributions.json")
    rc = main(["attack", str(tmp_path / "uploads.parquet"), "--oracle", str(tmp_path / "oracle.parquet"),
               "--distributions", str(tmp_path / "user_distributions.json"), "--attacks", "inversion", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert {"parameter_inversion", "mixture_inversion[kumaraswamy]"} <= {r["name"] for r in out["attacks"]}
