"""The attack suite (attacks.suite.run_attacks): groups, findings, oracle-free summary, null, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import special

from attacks.base import METRICS
from attacks.suite import AttackReport, parse_attacks, run_attacks
from idfree_core.errors import InputError
from idfree_core.uploads import UserDistributions, anonymize
from reports.commands import dumps


def gaussian_pool(n_users=5, dim=4, per_user=50, spread=3.0, shared=False, seed=0, text=False, static=False):
    g = np.random.default_rng(seed)
    torch.manual_seed(seed)
    mean = g.normal(0.0, spread, (n_users, dim))
    std = g.uniform(0.5, 1.0, (n_users, dim))
    if shared:
        mean[:], std[:] = mean[0], std[0]
    rows = np.repeat(np.arange(n_users), per_user)
    if static:
        x = mean[rows]
        dists = UserDistributions("static", tuple(f"u{i}" for i in range(n_users)), {"value": mean})
    else:
        x = torch.distributions.Normal(torch.tensor(mean[rows]), torch.tensor(std[rows])).sample().numpy()
        dists = UserDistributions("gaussian", tuple(f"u{i}" for i in range(n_users)), {"mean": mean, "std": std})
    names = np.asarray([f"u{i}" for i in range(n_users)])
    texts = [f"note {g.integers(100)}" for _ in rows] if text else None
    pool, oracle = anonymize(x, names[rows], session=(g.random(rows.size) < 0.25).astype(int), text=texts, rng=g)
    return pool, oracle, dists


@pytest.fixture(scope="module")
def separated():
    pool, oracle, dists = gaussian_pool()
    return pool, oracle, dists, run_attacks(pool, oracle, dists, random_state=0, progress=False)


def test_suite_runs_and_scores_every_group(separated):
    pool, oracle, dists, report = separated
    assert isinstance(report, AttackReport)
    names = {r.name for r in report.results}
    assert {"clustering[auto]", "clustering[kmeans]", "linkage[nearest_neighbour]", "linkage[likelihood_ratio]",
            "mixture_inversion[gaussian]", "parameter_inversion"} <= names
    assert all(r.metric in METRICS for r in report.results)
    assert report.summary["n_users_estimated"] == 5
    best = report.best("attribution_accuracy")
    assert best.value >= 0.9 and best.advantage_ci[0] > 0
    if best.ceiling is not None:
        assert best.value >= 0.9 * best.ceiling
    assert any("mixture inversion recovered distinct users" in f for f in report.findings)
    assert any("beats chance" in f for f in report.findings)


def test_report_to_dict_is_strict_json_with_the_cli_keys(separated):
    report = separated[3]
    data = json.loads(dumps(report.to_dict()))
    assert set(data) >= {"attacks", "findings", "summary"}
    for row in data["attacks"]:
        assert {"name", "metric", "value", "ci", "baseline", "advantage", "ceiling", "n"} <= set(row)
        assert len(row["ci"]) == 2 and row["metric"] in METRICS


def test_without_oracle_the_suite_reports_what_it_found():
    pool, _, _ = gaussian_pool(seed=1)
    report = run_attacks(pool, progress=False, random_state=0)
    assert report.results == []
    s = report.summary
    assert s["scored"] is False and s["n_users_estimated"] == 5
    assert s["clustering"]["n_clusters"] == 5
    assert s["linkage"]["n_links"] == int((pool.session >= 1).sum())
    assert s["mixture_inversion"]["n_components"] == 5
    assert any("parameter inversion" in note for note in s["skipped"])


def test_identifier_columns_are_the_first_loud_finding():
    pool, oracle, _ = gaussian_pool(n_users=3, per_user=30, seed=2)
    report = run_attacks(pool, oracle, attacks=("clustering",), progress=False, identifier_columns=("user", "ip"))
    assert report.findings[0].startswith("PRIVACY FINDING") and "user, ip" in report.findings[0]
    assert report.summary["identifier_columns"] == ["user", "ip"]


def test_null_pool_no_attack_beats_chance():
    pool, oracle, dists = gaussian_pool(shared=True, seed=3)
    report = run_attacks(pool, oracle, dists, progress=False, random_state=0)
    assert report.results
    for r in report.results:
        favourable = r.advantage_ci[0] > 0 if METRICS[r.metric] else r.advantage_ci[1] < 0
        assert not favourable, (r.name, r.metric, r.advantage_ci)
    assert any("failed to recover distinct users" in f for f in report.findings)


def test_static_embeddings_are_fully_attributable():
    pool, oracle, dists = gaussian_pool(n_users=6, per_user=20, static=True, seed=4)
    report = run_attacks(pool, oracle, dists, progress=False)
    acc = [r for r in report.results if r.metric == "attribution_accuracy"]
    assert acc and all(r.value == 1.0 and r.ceiling == pytest.approx(1.0) for r in acc)
    top1 = [r for r in report.results if r.metric == "linkage_top1" and "nearest" in r.name]
    assert top1[0].value == 1.0
    assert not any(r.name == "parameter_inversion" for r in report.results)


def test_features_both_reports_marginal_leakage():
    pool, oracle, _ = gaussian_pool(n_users=4, per_user=30, seed=5, text=True)
    report = run_attacks(pool, oracle, attacks="clustering", features="both", progress=False)
    assert {r.features for r in report.results} == {"text", "embedding", "both"}
    assert report.results[0].features == "both"  # the requested feature set first
    assert report.marginal and all(m.metric in METRICS for m in report.marginal)
    text_acc = [r for r in report.results if r.features == "text" and r.metric == "attribution_accuracy"]
    assert all(r.advantage_ci[0] <= 0 for r in text_acc)  # the random notes carry no identity
    assert report.to_dict()["marginal"][0]["ci"]


def test_attribute_group_needs_a_model():
    pool, oracle, _ = gaussian_pool(n_users=4, per_user=20, seed=6)
    report = run_attacks(pool, oracle, attacks="attribute", progress=False)
    assert report.results == [] and "attribute" in report.summary["skipped"][0]
    traits = {f"u{i}": float(i) for i in range(4)}
    model = lambda texts, emb: special.softmax(np.asarray(emb)[:, 0, :3], axis=1)
    report = run_attacks(pool, oracle, attacks="attribute", progress=False, model_fn=model,
                         probe_texts=["a probe"], traits=traits)
    assert [r.metric for r in report.results] == ["attribute_accuracy"]


def test_bad_arguments_raise_input_error():
    pool, oracle, dists = gaussian_pool(n_users=3, per_user=10, seed=7)
    with pytest.raises(InputError, match="unknown attack 'nope'"):
        run_attacks(pool, attacks="clustering,nope", progress=False)
    with pytest.raises(InputError, match="no attack"):
        parse_attacks(" , ")
    with pytest.raises(InputError, match="text"):
        run_attacks(pool, features="text", progress=False)
    with pytest.raises(InputError, match="features"):
        run_attacks(pool, features="pixels", progress=False)
    other_pool, other_oracle, _ = gaussian_pool(n_users=3, per_user=10, seed=8)
    shifted = type(other_oracle)(upload_id=other_oracle.upload_id + 1000, user=other_oracle.user)
    with pytest.raises(InputError, match="not in the oracle"):
        run_attacks(pool, shifted, progress=False)
    stranger = UserDistributions("gaussian", ("x",), {"mean": np.zeros((1, 4)), "std": np.ones((1, 4))})
    with pytest.raises(InputError, match="no distribution"):
        run_attacks(pool, oracle, stranger, progress=False)
    narrow = UserDistributions("gaussian", dists.users, {"mean": dists.params["mean"][:, :2], "std": dists.params["std"][:, :2]})
    with pytest.raises(InputError, match="dimensions"):
        run_attacks(pool, oracle, narrow, progress=False)


def test_beta_pool_with_affine_transform():
    g = np.random.default_rng(9)
    torch.manual_seed(9)
    n_users, dim, per_user = 4, 3, 60
    alpha, beta = g.uniform(2.0, 30.0, (n_users, dim)), g.uniform(2.0, 30.0, (n_users, dim))
    loc, scale = np.array([-2.0, 0.0, 5.0]), np.array([4.0, 0.5, 10.0])
    rows = np.repeat(np.arange(n_users), per_user)
    x = torch.distributions.Beta(torch.tensor(alpha[rows]), torch.tensor(beta[rows])).sample().numpy()
    names = np.asarray([f"b{i}" for i in range(n_users)])
    pool, oracle = anonymize(loc + scale * x, names[rows], rng=g)
    dists = UserDistributions("beta", tuple(names), {"alpha": alpha, "beta": beta}, loc=loc, scale=scale)
    report = run_attacks(pool, oracle, dists, attacks="inversion", progress=False)
    by = {(r.name, r.metric): r for r in report.results}
    mix = by[("mixture_inversion[beta]", "attribution_accuracy")]
    assert mix.value >= 0.9 and mix.advantage_ci[0] > 0
    assert by[("mixture_inversion[beta]", "parameter_error")].details["recovery"]["fraction_recovered"] >= 0.75
    assert by[("parameter_inversion", "parameter_error")].advantage_ci[1] < 0


def test_text_features_skip_the_embedding_only_inversion():
    pool, oracle, dists = gaussian_pool(n_users=3, per_user=20, seed=10, text=True)
    report = run_attacks(pool, oracle, dists, attacks="linkage,inversion", features="text", progress=False)
    assert report.results and all(r.features == "text" and r.knowledge == "text" for r in report.results)
    assert any(note.startswith("inversion") for note in report.summary["skipped"])


def test_user_count_estimate_and_the_known_count_adversary():
    """Well-separated 30 users: the BIC estimate is within 20% of the truth; the stronger adversary
    who knows the user count is reported separately, with its assumption stated."""
    pool, oracle, dists = gaussian_pool(n_users=30, dim=6, per_user=30, spread=3.0, seed=11)
    report = run_attacks(pool, oracle, dists, attacks="clustering", progress=False, random_state=0)
    assert 24 <= report.summary["n_users_estimated"] <= 36, report.summary["n_users_estimated"]
    known = [r for r in report.results if r.name == "clustering[auto][n_users known]"]
    assert {r.metric for r in known} == {"ari", "nmi", "attribution_accuracy"}
    assert all("knows the number of users (30)" in r.details["assumption"] for r in known)
    assert all(r.knowledge == "embeddings" for r in known)
    unknown = [r for r in report.results if r.name in ("clustering[auto]", "clustering[kmeans]")]
    assert unknown and all("unknown" in r.details["assumption"] for r in unknown)
    acc = next(r for r in known if r.metric == "attribution_accuracy")
    assert acc.advantage_ci[0] > 0 and acc.value >= 0.9 * acc.ceiling


def test_known_count_adversary_runs_with_an_oracle_unless_switched_off():
    pool, oracle, _ = gaussian_pool(n_users=3, per_user=30, seed=12)
    default = run_attacks(pool, oracle, attacks="clustering", progress=False)
    off = run_attacks(pool, oracle, attacks="clustering", progress=False, known_n_users=False)
    assert any(r.name == "clustering[auto][n_users known]" for r in default.results)
    assert not any("n_users known" in r.name for r in off.results)
