"""The second no-oracle adversary of the suite: clustering[em] with held-out likelihood's own user count.

At a fixed number of components the likelihood prefers cutting a dominant user into pieces over
separating small users; held-out likelihood's smaller count keeps the dominant user whole.
"""

from __future__ import annotations

import numpy as np
import torch

from attacks import oracle_free
from attacks.suite import run_attacks
from idfree_core.uploads import UserDistributions, anonymize


def giant_pool(seed: int, small: int = 25, per_small: int = 15, giant: int = 1500, dim: int = 10, text: bool = False):
    """One user with ``giant`` uploads, ``small`` users with ``per_small``; anisotropic Gaussians."""
    g = torch.Generator().manual_seed(seed)
    n_users = small + 1
    mean = torch.randn((n_users, dim), generator=g, dtype=torch.float64)
    std = torch.exp(torch.rand((n_users, dim), generator=g, dtype=torch.float64) * np.log(4.0) - 0.5 * np.log(4.0))
    sizes = np.r_[giant, np.full(small, per_small)]
    rows = np.repeat(np.arange(n_users), sizes)
    x = mean[rows] + std[rows] * torch.randn((rows.size, dim), generator=g, dtype=torch.float64)
    logp = torch.distributions.Normal(mean, std).log_prob(x.unsqueeze(1)).sum(-1).numpy() + np.log(sizes / sizes.sum())
    bayes = float((logp.argmax(1) == rows).mean())
    names = np.asarray([f"u{u:03d}" for u in range(n_users)])
    rng = np.random.default_rng(seed)
    words = np.array("the a movie film good bad plot actor scene great".split())
    texts = [" ".join(rng.choice(words, 5)) for _ in rows] if text else None
    pool, oracle = anonymize(x.numpy().astype(np.float32), names[rows], session=(rng.random(rows.size) < 0.3).astype(int),
                             text=texts, rng=rng)
    dists = UserDistributions("gaussian", tuple(names), {"mean": mean.numpy(), "std": std.numpy()})
    return pool, oracle, dists, bayes


def test_heldout_count_adversary_keeps_a_dominant_user_whole(monkeypatch):
    """With the suite's count forced to AIC's overcount (25 here, as measured on such pools) and held-out
    likelihood at 4, clustering[em] cuts the dominant user; the held-out adversary does not."""
    pool, oracle, dists, bayes = giant_pool(1)
    monkeypatch.setattr(oracle_free, "estimate_users",
                        lambda x, random_state=0: (25, (4, 25), {"aic": 25, "bic": 2, "heldout": 4}))
    rep = run_attacks(pool, oracle, dists, attacks="clustering", random_state=0, progress=False)
    acc = {r.name: r for r in rep.results if r.metric == "attribution_accuracy"}
    ho = acc["clustering[em][n_users held-out]"]
    assert ho.details["n_users_given"] == 4 and "held-out likelihood alone" in ho.details["assumption"]
    assert ho.value >= 0.8 * bayes > acc["clustering[em]"].value, (ho.value, acc["clustering[em]"].value, bayes)
    # the main estimate, not the second adversary, feeds the oracle-free summary
    assert rep.summary["oracle_free_attribution"]["n_users_estimated"] == 25


def test_no_heldout_adversary_when_the_counts_agree(monkeypatch):
    pool, oracle, dists, _ = giant_pool(2, small=8, per_small=30, giant=300)
    monkeypatch.setattr(oracle_free, "estimate_users",
                        lambda x, random_state=0: (6, (4, 9), {"aic": 6, "bic": 5, "heldout": 6}))
    rep = run_attacks(pool, oracle, dists, attacks="clustering", random_state=0, progress=False)
    names = {r.name for r in rep.results}
    assert "clustering[em]" in names and not any("held-out" in n for n in names)


def test_no_heldout_adversary_under_features_both(monkeypatch):
    """Under features="both" the joint features have no held-out count, so the single-modality rows get no
    held-out adversary either (the rows of the three feature sets stay comparable)."""
    pool, oracle, dists, _ = giant_pool(3, small=8, per_small=30, giant=300, text=True)
    monkeypatch.setattr(oracle_free, "estimate_users",
                        lambda x, random_state=0: (9, (4, 9), {"aic": 9, "bic": 5, "heldout": 4}))
    rep = run_attacks(pool, oracle, dists, attacks="clustering", features="both", random_state=0, progress=False)
    assert {r.features for r in rep.results} == {"embedding", "text", "both"}
    assert not any("held-out" in r.name for r in rep.results)


def test_no_heldout_adversary_without_an_oracle(monkeypatch):
    """Without an oracle nothing would score it: it is not fitted."""
    from attacks.em import EMAttribution

    pool, _, dists, _ = giant_pool(1, small=8, per_small=30, giant=300)
    monkeypatch.setattr(oracle_free, "estimate_users",
                        lambda x, random_state=0: (9, (4, 9), {"aic": 9, "bic": 5, "heldout": 4}))
    fitted = []
    real_fit = EMAttribution.fit
    monkeypatch.setattr(EMAttribution, "fit", lambda self, p: fitted.append(self.n_users) or real_fit(self, p))
    run_attacks(pool, None, dists, attacks="clustering", random_state=0, progress=False)
    assert fitted and 4 not in fitted, fitted
