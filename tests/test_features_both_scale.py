"""``features="both"`` on large pools: the joint evidence path in bounded memory (no ``(n, k)`` matrix).

The scale thresholds of :mod:`attacks.scale` are lowered so that a pool of 2,400 uploads of 40 users
takes the at-scale path; the evidence module's blocks are capped at ``BLOCK_CELLS`` (row, component)
entries, and every dense route of the small-pool path (``(n, k)`` one-hot starts, scikit-learn
posteriors of the whole pool, dense anchored posteriors) is made to fail.  Asserted: the path taken
(the joint mixture fitted on the row subsample, every block within the cap), and correctness (the
joint rows reach the better modality's minus 0.02; the embedding-only rows of a ``features="both"``
suite run are those of a ``features="embedding"`` run).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attacks.evidence as evidence
import attacks.linkage as linkage
import attacks.oracle_free as oracle_free
import attacks.scale as scale
from attacks.clustering import ClusteringAttack
from attacks.linkage import LikelihoodRatioLinkage, NearestNeighbourLinkage
from attacks.suite import run_attacks
from idfree_core.uploads import anonymize

N_USERS, PER_USER, DIM = 40, 60, 16
FIT_ROWS = 800  # ROWS_PER_COMPONENT (20) x 40 components, under the pool's 2,400 rows
CELLS = 4096
SLACK = 0.02


def make_pool(seed: int = 3):
    """Embeddings ``N(centre_u, I)``, centres ``N(0, 0.9^2 I)``; texts of 5 shared words and 1 of the user's 6."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(N_USERS), PER_USER)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        centres = torch.distributions.Normal(0.0, 0.9).sample((N_USERS, DIM))
        emb = torch.distributions.Normal(centres[torch.as_tensor(rows)], 1.0).sample().numpy()
    common = np.asarray([f"c{i}" for i in range(300)])
    own = np.asarray([[f"u{u}w{i}" for i in range(6)] for u in range(N_USERS)])
    texts = [" ".join([*rng.choice(common, 5), rng.choice(own[u])]) for u in rows]
    names = np.asarray([f"user{u:02d}" for u in rows])
    return anonymize(emb.astype(np.float32), names, text=texts, session=(rng.random(rows.size) < 0.4).astype(int),
                     rng=rng)


@pytest.fixture
def at_scale(monkeypatch):
    """Small thresholds (2,400 rows x 40 users is "at scale"), and a record of every joint E-step block
    and fit; the dense small-pool routes raise."""
    monkeypatch.setattr(scale, "SCALE_ROWS", 1000)
    monkeypatch.setattr(scale, "SCALE_WORK", 1000)
    monkeypatch.setattr(scale, "FIT_MIN_ROWS", 600)
    monkeypatch.setattr(linkage, "SPARSE_MIN_COMPONENTS", 10)
    monkeypatch.setattr(evidence, "BLOCK_CELLS", CELLS)
    monkeypatch.setattr(evidence, "DENSE_START_CELLS", CELLS)
    seen = {"blocks": [], "fits": []}

    def dense(*args, **kwargs):
        raise AssertionError("dense (n, k) route taken at scale")

    for name in ("_one_hot", "anchored_log_resp", "single_modality_starts"):
        monkeypatch.setattr(evidence, name, dense)
    logp, fit = evidence.JointMixture._logp, evidence.JointMixture.fit

    def logged_logp(x, w, mu, var):
        seen["blocks"].append(x.shape[0] * mu.shape[0])
        return logp(x, w, mu, var)

    def logged_fit(self, x, starts, primary=None, x_choose=None):
        seen["fits"].append(x.shape[0])
        assert all(np.asarray(s).ndim == 1 for s in starts), "responsibility starts at scale"
        return fit(self, x, starts, primary, x_choose)

    monkeypatch.setattr(evidence.JointMixture, "_logp", staticmethod(logged_logp))
    monkeypatch.setattr(evidence.JointMixture, "fit", logged_fit)
    return seen


def _metric(attack, pool, oracle, metric):
    return next(r.value for r in attack.fit(pool).score(pool, oracle) if r.metric == metric)


def test_joint_path_at_scale_is_blocked_and_never_weaker(at_scale):
    pool, oracle = make_pool()
    assert scale.at_scale(pool.n, N_USERS) and scale.fit_rows(pool.n, N_USERS) == FIT_ROWS < pool.n
    kinds = {"attribution_accuracy": lambda f: [ClusteringAttack(method=m, n_users=N_USERS, features=f,
                                                                 n_permutations=5, random_state=0)
                                                for m in ("auto", "kmeans")],
             "linkage_top1": lambda f: [NearestNeighbourLinkage(features=f, n_clusters=N_USERS, n_permutations=5,
                                                                random_state=0),
                                        LikelihoodRatioLinkage(features=f, n_clusters=N_USERS, n_permutations=5,
                                                               random_state=0)]}
    best = {}
    for metric, make in kinds.items():
        for f in ("embedding", "text", "both"):
            attacks = make(f)
            best[metric, f] = max(_metric(a, pool, oracle, metric) for a in attacks)
            if f == "both":
                for a in attacks:
                    if not isinstance(a, NearestNeighbourLinkage):
                        assert a.fit_details_["fitted_on_rows"] == FIT_ROWS, a.fit_details_
                lr = attacks[-1]
                if isinstance(lr, LikelihoodRatioLinkage):
                    assert lr._sparse is not None and lr._sparse[1].shape[1] <= scale.TOP_M
    assert at_scale["fits"] and set(at_scale["fits"]) == {FIT_ROWS}, at_scale["fits"]  # every joint fit: the subsample
    assert max(at_scale["blocks"]) <= CELLS, max(at_scale["blocks"])  # every joint E-step block within the cap
    for metric in kinds:
        ref = max(best[metric, "embedding"], best[metric, "text"])
        assert best[metric, "both"] >= ref - SLACK, (metric, best)
    # both modalities carry evidence here: the joint rows gain on each alone
    assert min(best["attribution_accuracy", f] for f in ("embedding", "text")) < 0.9


def test_suite_at_scale_keeps_the_embedding_rows_of_an_embedding_run(at_scale, monkeypatch):
    """The suite under features="both" at scale (user counts stubbed to the truth, as they are not under
    test here): runs the joint path, and its embedding-only rows equal a features="embedding" run's."""
    monkeypatch.setattr(oracle_free, "estimate_users",
                        lambda x, random_state=0: (N_USERS, (N_USERS, N_USERS), {"aic": N_USERS, "bic": N_USERS,
                                                                                 "heldout": N_USERS}))
    pool, oracle = make_pool()
    rows = {}
    for f in ("embedding", "both"):
        rep = run_attacks(pool, oracle, attacks="clustering,linkage", features=f, random_state=0, progress=False)
        rows[f] = {(r.name, r.metric): r.value for r in rep.results if r.features == "embedding"}
        if f == "both":
            joint = [r for r in rep.results if r.features == "both" and r.metric == "attribution_accuracy"]
            assert joint and all(r.details.get("fit", {}).get("fitted_on_rows") == FIT_ROWS for r in joint)
    assert rows["both"] == rows["embedding"]
