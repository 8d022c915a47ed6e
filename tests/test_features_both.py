"""``features="both"``: embeddings and text added as evidence are never weaker than either alone (issue 8).

Pools with fixed seeds, embeddings drawn with ``torch.distributions`` and text with a numpy Generator:
``emb`` (embeddings identify users, text does not), ``text`` (user-specific words, shared
embeddings), ``both`` (both informative), ``none`` (one distribution for everyone), and a pool made
by ``idfree-audit simulate``.  For each kind of attack (attribution: ``clustering[auto]`` and
``clustering[kmeans]``; linkage top-1: nearest-neighbour and likelihood-ratio) the best result on
both modalities must reach the better modality's best minus 0.02.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from attacks.clustering import ClusteringAttack
from attacks.evidence import JointMixture, anchored_log_resp
from attacks.linkage import LikelihoodRatioLinkage, NearestNeighbourLinkage
from idfree_core.uploads import anonymize, read_oracle, read_uploads

N_USERS = 8
SLACK = 0.02


def make_pool(kind: str, seed: int = 1, n_users: int = N_USERS, per_user: int = 50, dim: int = 8):
    """Embeddings ``N(centre_u, I)`` with centres ``N(0, 1.2^2 I)`` (or all 0); texts of 8 words from a
    shared 200-word vocabulary plus, when text is informative, 2 words from the user's own 8."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_users), per_user)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        spread = 1.2 if kind in ("emb", "both") else 0.0
        centres = torch.distributions.Normal(0.0, 1.0).sample((n_users, dim)) * spread
        emb = torch.distributions.Normal(centres[torch.as_tensor(rows)], 1.0).sample().numpy()
    common = np.asarray([f"c{i}" for i in range(200)])
    own = np.asarray([[f"u{u}w{i}" for i in range(8)] for u in range(n_users)])
    texts = []
    for u in rows:
        words = list(rng.choice(common, 8))
        if kind in ("text", "both"):
            words += list(rng.choice(own[u], 2))
        texts.append(" ".join(words))
    sessions = (rng.random(rows.size) < 0.4).astype(int)
    names = np.asarray([f"user{u}" for u in range(n_users)])
    return anonymize(emb.astype(np.float32), names[rows], text=texts, session=sessions, rng=rng)


def _value(results, metric):
    """The strongest row of ``metric`` (under "both", clustering also scores the joint fit from the start it
    did not keep)."""
    return max((r for r in results if r.metric == metric), key=lambda r: r.value)


def best_by_kind(pool, oracle, features: str, k: int) -> dict[str, object]:
    """The strongest attribution and linkage result (AttackResult) among the attacks of each kind."""
    attribution = [ClusteringAttack(method=m, n_users=k, features=features, n_permutations=20, random_state=0)
                   for m in ("auto", "kmeans")]
    linkage = [NearestNeighbourLinkage(features=features, n_clusters=k, n_permutations=20, random_state=0),
               LikelihoodRatioLinkage(features=features, n_clusters=k, n_permutations=20, random_state=0)]
    att = [_value(a.fit(pool).score(pool, oracle), "attribution_accuracy") for a in attribution]
    link = [_value(a.fit(pool).score(pool, oracle), "linkage_top1") for a in linkage]
    return {"attribution_accuracy": max(att, key=lambda r: r.value), "linkage_top1": max(link, key=lambda r: r.value)}


@pytest.fixture(scope="module")
def table():
    """kind -> features -> metric -> best result; computed once for the module."""
    out = {}
    for kind in ("emb", "text", "both", "none"):
        pool, oracle = make_pool(kind)
        out[kind] = {f: best_by_kind(pool, oracle, f, N_USERS) for f in ("embedding", "text", "both")}
    return out


@pytest.mark.parametrize("kind", ["emb", "text", "both"])
@pytest.mark.parametrize("metric", ["attribution_accuracy", "linkage_top1"])
def test_both_is_never_weaker_than_the_better_modality(table, kind, metric):
    row = table[kind]
    single = max(row["embedding"][metric].value, row["text"][metric].value)
    assert row["both"][metric].value >= single - SLACK, {f: row[f][metric].value for f in row}


@pytest.mark.parametrize("metric", ["attribution_accuracy", "linkage_top1"])
def test_two_informative_modalities_add_up(table, metric):
    row = table["both"]
    single = max(row["embedding"][metric], row["text"][metric], key=lambda r: r.value)
    # the evidence adds: clearly above the better modality, beyond its confidence interval
    assert row["both"][metric].value > single.ci[1], {f: row[f][metric].value for f in row}


@pytest.mark.parametrize("metric", ["attribution_accuracy", "linkage_top1"])
def test_no_advantage_claimed_when_all_users_share_one_distribution(table, metric):
    r = table["none"]["both"][metric]
    assert r.advantage_ci[0] <= 0.0, r


TINY = ["--set", "docs_per_user=40", "--set", "d_model=16", "--set", "n_heads=2", "--set", "n_layers=1",
        "--set", "central_epochs=1", "--set", "device_epochs=2", "--set", "cloud_epochs=1",
        "--set", "ondevice_epochs=1", "--set", "entropy_samples=2", "--set", "n_bootstrap=100"]


def test_simulated_pool_both_at_least_the_better_modality(tmp_path):
    out = tmp_path / "sim"
    proc = subprocess.run([sys.executable, "-m", "reports.cli", "simulate", "--users", "12", "--family", "gaussian",
                           "--std", "0.2", "--seed", "1", "--rounds", "1", *TINY, "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    pool = read_uploads(out / "uploads.parquet")
    oracle = read_oracle(out / "oracle.parquet", pool)
    k = len(oracle.codes_for(pool)[1])
    row = {f: best_by_kind(pool, oracle, f, k) for f in ("embedding", "text", "both")}
    for metric in ("attribution_accuracy", "linkage_top1"):
        single = max(row["embedding"][metric].value, row["text"][metric].value)
        assert row["both"][metric].value >= single - SLACK, (metric, {f: row[f][metric].value for f in row})


def test_embedding_rows_unchanged_by_text():
    from attacks.suite import run_attacks

    pool, oracle = make_pool("both", seed=3, n_users=4, per_user=30, dim=4)
    alone = run_attacks(pool, oracle, attacks="clustering,linkage", features="embedding", progress=False)
    both = run_attacks(pool, oracle, attacks="clustering,linkage", features="both", progress=False)
    emb_rows = {(r.name, r.metric): (r.value, r.ci) for r in both.results if r.features == "embedding"}
    # the held-out-count adversary runs on the primary feature set only (attacks.em.EMAttribution.for_suite)
    assert emb_rows == {(r.name, r.metric): (r.value, r.ci) for r in alone.results if "[n_users held-out]" not in r.name}
    assert {r.features for r in both.results} == {"embedding", "text", "both"}


def test_uninformative_block_leaves_the_anchor_posteriors_and_weighs_little():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 60)
    informative = rng.normal(size=(5, 3))[labels] * 3 + rng.normal(size=(300, 3))
    noise = rng.normal(size=(300, 20))
    x = np.hstack([informative, noise])
    model = JointMixture().fit(x, [labels, rng.integers(0, 5, 300)], primary=np.r_[np.ones(3, bool), np.zeros(20, bool)])
    assert model.start_ == 0 and model.primary_evidence_
    lam = model.evidence_weights()
    assert lam[3:].sum() < 0.1 * lam[:3].min()  # twenty noise columns weigh less than a tenth of one real one
    anchor = np.log(np.full((300, 5), 1e-3))
    anchor[np.arange(300), labels] = 0.0
    lr = anchored_log_resp(anchor, noise)
    assert (lr.argmax(1) == labels).all()


def test_the_start_not_kept_is_scored_as_its_own_adversary(monkeypatch):
    # at 200,000 x 2,000 the start choice keeps the text start, which attributes worse than the embeddings
    # (0.013 against 0.047): force that choice here and check the embedding-started fit still reaches them
    pool, oracle = make_pool("emb", seed=2)
    emb = _value(ClusteringAttack(method="auto", n_users=N_USERS, features="embedding", n_permutations=20,
                                  random_state=0).fit(pool).score(pool, oracle), "attribution_accuracy")
    monkeypatch.setattr(JointMixture, "_choose", lambda self, x, fits, primary: 1)  # keep the text start
    att = ClusteringAttack(method="auto", n_users=N_USERS, features="both", n_permutations=20, random_state=0).fit(pool)
    assert att.model_.start_ == 1 and set(att.other_start_labels_) == {"embedding"}
    rows = {r.name: r for r in att.score(pool, oracle) if r.metric == "attribution_accuracy"}
    assert set(rows) == {"clustering[auto]", "clustering[auto][joint, embedding start]"}
    assert rows["clustering[auto]"].value < emb.value - 0.1  # the kept (text) start is the weak one here
    assert rows["clustering[auto][joint, embedding start]"].value >= emb.value - SLACK, (rows, emb.value)
