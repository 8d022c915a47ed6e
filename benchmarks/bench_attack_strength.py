"""Attack strength against the Bayes-optimal attributor on pools of issue 8's kinds.

For every kind of ``tests/attack_pools.py`` and seed, prints the Bayes accuracy from the true
parameters and, as matched attribution accuracy and its ratio to Bayes:

* ``clustering[em][n_users known]``: the suite's MAP-EM attribution with the oracle's user count;
* ``clustering[em] (no oracle)``: the same with the user count estimated from the pool (printed with
  each criterion's choice and the range);
* ``EM from the true partition``: the same estimator started at the oracle's partition (family-exact
  for Beta), a reference no adversary has: how close a likelihood-maximising plug-in attributor can
  get at all with this many uploads per user (the estimation ceiling; search cannot beat it by much;
  each attack's ratio to it is printed after the ratios to Bayes);
* ``supervised leave-one-out``: an adversary who knows the user of every *other* upload, fits each
  user's diagonal Gaussian (plug-in MLE) to them and attributes the left-out upload by Bayes' rule
  with the fitted sizes: what estimation from this many uploads per user allows even with all labels
  (a reference above any unsupervised attack, up to the Gaussian fit being misspecified for the Beta
  and Student-t kinds);
* with ``--auto``: ``clustering[auto][n_users known]`` (scikit-learn GMM, the suite's other clustering);
* with ``--suite``: the suite's clustering group (:func:`attacks.suite.run_attacks`, every clustering
  attack and adversary it runs), its best "n_users known" and best no-oracle attribution: the
  acceptance's "best attack the suite runs".

Usage::

    PYTHONPATH=. python benchmarks/bench_attack_strength.py [--size full|small] [--seeds 11,12] [--kinds ...] [--auto] [--suite]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from attack_pools import KINDS, make_pool  # noqa: E402

from attacks.clustering import ClusteringAttack  # noqa: E402
from attacks.em import EMAttribution, em_features  # noqa: E402
from attacks.mixture_em import DiagonalMixture  # noqa: E402
from attacks.scoring import matched_correct  # noqa: E402


def accuracy(attack, sp) -> float:
    return next(r.value for r in attack.score(sp.pool, sp.oracle) if r.metric == "attribution_accuracy")


def from_truth(sp, transform, family) -> float:
    """Matched accuracy of EM started at the true partition (module doc)."""
    from attacks.inversion import estimators as est
    from attacks.inversion.familymix import refit_from_labels
    from idfree_core.families import get_family_spec

    truth, _ = sp.oracle.codes_for(sp.pool)
    k = sp.n_users
    x = em_features(sp.pool, transform=transform)
    labels = DiagonalMixture(k).fit(x, init_labels=truth).predict_max(x)[0]
    spec = get_family_spec(family) if family is not None else None
    if spec is not None and spec.mle is not None and not spec.location_scale_normal:
        loc, scale = transform if transform is not None else (None, None)
        data = est.to_family_space(spec, sp.pool.embedding, loc, scale)
        labels = refit_from_labels(spec, data, truth, k).log_prob_components(data).argmax(1)
    table = np.zeros((k, int(labels.max()) + 1))
    np.add.at(table, (truth, labels), 1)
    return matched_correct(table) / truth.size


def supervised_loo(sp, transform, block: int = 512) -> float:
    """Accuracy of the supervised leave-one-out plug-in attributor (module doc)."""
    truth, _ = sp.oracle.codes_for(sp.pool)
    x = em_features(sp.pool, transform=transform).astype(np.float64)
    k = sp.n_users
    n = np.bincount(truth, minlength=k).astype(np.float64)
    s = np.zeros((k, x.shape[1]))
    q = np.zeros_like(s)
    np.add.at(s, truth, x)
    np.add.at(q, truth, x * x)
    floor = 1e-6 * x.var(0).mean()

    def loglik(xb, cnt, sm, sq):  # diagonal Gaussian MLE from (count, sum, sum of squares) and log size
        mu = sm / cnt[..., None]
        var = np.maximum(sq / cnt[..., None] - mu * mu, floor)
        return -0.5 * (((xb - mu) ** 2) / var + np.log(var)).sum(-1) + np.log(cnt / truth.size)

    correct = 0
    for start in range(0, x.shape[0], block):
        xb, tb = x[start:start + block], truth[start:start + block]
        ll = loglik(xb[:, None, :], n[None], s[None], q[None])
        rows = np.arange(xb.shape[0])
        own_n = n[tb] - 1.0
        ok = own_n >= 2  # a user with fewer than 2 other uploads has no variance estimate: counted wrong
        ll[rows, tb] = np.where(ok, loglik(xb, np.maximum(own_n, 1.0), s[tb] - xb, q[tb] - xb * xb), -np.inf)
        correct += int((ll.argmax(1) == tb).sum())
    return correct / truth.size


def suite_best(sp, seed) -> dict:
    """The suite's clustering group on the pool: best attribution with and without the oracle's count."""
    from attacks.suite import run_attacks

    rep = run_attacks(sp.pool, sp.oracle, sp.distributions, attacks="clustering", random_state=seed, progress=False)
    acc = [(r.value, r.name) for r in rep.results if r.metric == "attribution_accuracy"]
    known = max(v for v, n in acc if n.endswith("[n_users known]"))
    free = max((v, n) for v, n in acc if not n.endswith("[n_users known]"))
    return {"suite best [n_users known]": known, f"suite best no-oracle ({free[1]})": free[0]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="full", choices=("full", "small"))
    ap.add_argument("--seeds", default="11")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--auto", action="store_true", help="also clustering[auto] with n_users known (slow at 200 users)")
    ap.add_argument("--suite", action="store_true", help="also the suite's clustering group: its best known-n and no-oracle rows")
    args = ap.parse_args(argv)
    for kind in args.kinds.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            sp = make_pool(kind, seed, args.size)
            d = sp.distributions
            transform = (d.loc, d.scale) if d is not None and d.loc is not None else None
            family = d.family if d is not None else None
            rows = {}
            t0 = time.perf_counter()
            if args.auto:
                rows["clustering[auto][n_users known]"] = accuracy(
                    ClusteringAttack(method="auto", n_users=sp.n_users, random_state=seed).fit(sp.pool), sp)
            rows["clustering[em][n_users known]"] = accuracy(
                EMAttribution(n_users=sp.n_users, transform=transform, family=family, random_state=seed).fit(sp.pool), sp)
            est = EMAttribution(transform=transform, family=family, random_state=seed).fit(sp.pool)
            rows["clustering[em] (no oracle)"] = accuracy(est, sp)
            rows["EM from the true partition"] = from_truth(sp, transform, family)
            rows["supervised leave-one-out"] = supervised_loo(sp, transform)
            if args.suite:
                rows.update(suite_best(sp, seed))
            parts = "  ".join(f"{k} {v:.3f} ({v / sp.bayes:.2f})" for k, v in rows.items())
            ceiling = rows["EM from the true partition"]
            parts += "  best / estimation ceiling: " + "  ".join(
                f"{k} {v / ceiling:.2f}" for k, v in rows.items() if k.startswith("suite best") or k.startswith("clustering[em]"))
            print(f"{kind} seed {seed}: n={sp.pool.n} users={sp.n_users} bayes={sp.bayes:.3f}  {parts}  "
                  f"n_users estimated {est.n_users_estimated_} range {list(est.n_users_range_)} "
                  f"by {est.n_users_by_}  expected accuracy (no oracle) {est.expected_accuracy_:.3f} "
                  f"[{est.expected_accuracy_ci_[0]:.3f}, {est.expected_accuracy_ci_[1]:.3f}]  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
