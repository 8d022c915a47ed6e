"""Attack strength against the Bayes-optimal attributor on pools of issue 8's kinds (full size).

For every kind of ``tests/attack_pools.py`` and seed, prints the Bayes accuracy from the true
parameters and, for each attack, its matched attribution accuracy and the ratio to Bayes:
``clustering[auto]`` and ``clustering[em]`` with the number of users known (the oracle's count) and
estimated from the pool (no oracle), plus the user-count estimates.  Usage::

    PYTHONPATH=. python benchmarks/bench_attack_strength.py [--size full|small] [--seeds 11,12] [--kinds ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from attack_pools import KINDS, make_pool  # noqa: E402

from attacks.clustering import ClusteringAttack  # noqa: E402
from attacks.em import EMAttribution  # noqa: E402


def accuracy(attack, sp) -> float:
    return next(r.value for r in attack.score(sp.pool, sp.oracle) if r.metric == "attribution_accuracy")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="full", choices=("full", "small"))
    ap.add_argument("--seeds", default="11")
    ap.add_argument("--kinds", default=",".join(KINDS))
    args = ap.parse_args(argv)
    for kind in args.kinds.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            sp = make_pool(kind, seed, args.size)
            d = sp.distributions
            transform = (d.loc, d.scale) if d is not None and d.loc is not None else None
            family = d.family if d is not None else None
            rows = {}
            t0 = time.perf_counter()
            rows["clustering[auto][n_users known]"] = accuracy(
                ClusteringAttack(method="auto", n_users=sp.n_users, random_state=seed).fit(sp.pool), sp)
            rows["clustering[em][n_users known]"] = accuracy(
                EMAttribution(n_users=sp.n_users, transform=transform, family=family, random_state=seed).fit(sp.pool), sp)
            est = EMAttribution(transform=transform, family=family, random_state=seed).fit(sp.pool)
            rows["clustering[em] (no oracle)"] = accuracy(est, sp)
            parts = "  ".join(f"{k} {v:.3f} ({v / sp.bayes:.2f})" for k, v in rows.items())
            print(f"{kind} seed {seed}: n={sp.pool.n} users={sp.n_users} bayes={sp.bayes:.3f}  {parts}  "
                  f"n_users estimated {est.n_users_estimated_} range {list(est.n_users_range_)}  "
                  f"expected accuracy (no oracle) {est.expected_accuracy_:.3f} "
                  f"[{est.expected_accuracy_ci_[0]:.3f}, {est.expected_accuracy_ci_[1]:.3f}]  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
