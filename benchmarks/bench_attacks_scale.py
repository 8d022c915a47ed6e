"""Scale benchmark of the attacks (issue 8): times and peak memory as ratios against peers, one run.

Pools of Gaussian users: user means ``N(0, I)``, uploads ``mean + N(0, noise^2 I)``, 80 % of each
user's uploads in session 0 (references) and 20 % later (queries).  Clustered pools use
``--noise 0.5``, weakly clustered ones ``--weak-noise 2.0`` (users overlap; cell pruning mostly
falls back to brute force).  For every pool, in the same process and on the same features:

* the peers: scikit-learn ``NearestNeighbors(algorithm="brute")`` (float32, its fused ``ArgKmin``
  path) and faiss ``IndexFlatL2`` (exact) 5-NN of the queries among the references;
* ours: ``NearestNeighbourLinkage`` (exact, :func:`attacks.neighbors.knn_pruned`), the agreement of
  its neighbours with scikit-learn's, and k-means (``ClusteringAttack(method="kmeans")``) against
  scikit-learn ``MiniBatchKMeans`` and faiss ``Kmeans``;
* with ``--groups``: the suite's attack groups ``clustering`` and ``linkage`` (``run_attacks``),
  each as a ratio to the scikit-learn brute-force time (acceptance: <= 2 at 200k x 64, 2,000 users).

``--memory`` runs the default suite on a 1,000,000 x 32 pool of 1,000 users in a subprocess and
reports its peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``; acceptance < 4 GB);
``--memory-no-oracle`` also without the oracle (no scoring; the oracle-free risk summary).

Sizes: the default is the issue's 200,000 x 64 at 1,000 and 5,000 users; ``--quick`` uses 80,000
rows (64,000 references: the pruned search engages from 50,000) and a 125,000-row memory pool, so
a run fits in a few minutes on a quiet machine.  Timings on a shared machine are
noisy: read the ratios.  Run: ``.venv/bin/python benchmarks/bench_attacks_scale.py --quick``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch


def make_pool(n_users: int, n_rows: int, dim: int, seed: int, noise: float = 0.5):
    from idfree_core.uploads import anonymize

    per_user = max(5, n_rows // n_users)
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n_users, dim, generator=gen)
    emb = means.repeat_interleave(per_user, dim=0) + noise * torch.randn(n_users * per_user, dim, generator=gen)
    users = np.repeat(np.arange(n_users), per_user)
    session = np.tile((np.arange(per_user) >= per_user * 4 // 5).astype(np.int64), n_users)
    return anonymize(emb.numpy().astype(np.float32), users, session=session, rng=np.random.default_rng(seed))


def _time(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench_pool(args, n_users: int, noise: float, tag: str) -> dict:
    import faiss
    from sklearn.neighbors import NearestNeighbors

    from attacks.clustering import ClusteringAttack
    from attacks.linkage import NearestNeighbourLinkage
    from attacks.scoring import contingency, matched_correct

    pool, oracle = make_pool(n_users, args.rows, args.dim, args.seed, noise)
    truth, _ = oracle.codes_for(pool)
    xr = np.ascontiguousarray(pool.embedding[pool.session == 0], dtype=np.float32)
    xq = np.ascontiguousarray(pool.embedding[pool.session >= 1], dtype=np.float32)
    out = {"pool": tag, "n_uploads": pool.n, "n_users": n_users, "noise": noise}
    out["sklearn_brute_s"], (_, sk_idx) = _time(
        lambda: NearestNeighbors(n_neighbors=5, algorithm="brute").fit(xr).kneighbors(xq))

    def flat():
        index = faiss.IndexFlatL2(xr.shape[1])
        index.add(xr)
        return index.search(xq, 5)

    out["faiss_flat_s"], _ = _time(flat)
    out["nn_linkage_s"], nn = _time(lambda: NearestNeighbourLinkage(random_state=args.seed).fit(pool))
    out["nn_search"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in nn.search_.items()}
    # the linkage's references and queries are the session-0 and later rows in pool order, as xr, xq
    out["nn_agreement_with_sklearn"] = float((nn.topk_ == sk_idx).mean())
    out["nn_vs_sklearn"] = out["nn_linkage_s"] / out["sklearn_brute_s"]
    out["nn_vs_faiss_flat"] = out["nn_linkage_s"] / out["faiss_flat_s"]
    if args.kmeans:
        from sklearn.cluster import MiniBatchKMeans

        x = pool.embedding.astype(np.float32)
        out["kmeans_s"], km = _time(lambda: ClusteringAttack(method="kmeans", n_users=n_users, n_init=1,
                                                             random_state=args.seed).fit(pool))
        out["kmeans_accuracy"] = matched_correct(contingency(truth, km.labels_)[0]) / pool.n
        out["sklearn_minibatch_kmeans_s"], _ = _time(lambda: MiniBatchKMeans(n_users, n_init=1, batch_size=4096,
                                                                             random_state=0).fit(x))
        fk = faiss.Kmeans(x.shape[1], n_users, niter=20, seed=1)
        out["faiss_kmeans_s"], _ = _time(lambda: fk.train(x))
        out["kmeans_vs_sklearn"] = out["kmeans_s"] / out["sklearn_minibatch_kmeans_s"]
        out["kmeans_vs_faiss"] = out["kmeans_s"] / out["faiss_kmeans_s"]
    for group in args.groups:
        from attacks.suite import run_attacks

        out[f"suite_{group}_s"], _ = _time(lambda: run_attacks(pool, oracle, attacks=group, random_state=args.seed,
                                                               progress=False))
        out[f"suite_{group}_vs_sklearn"] = out[f"suite_{group}_s"] / out["sklearn_brute_s"]
    return out


_MEMORY_CHILD = """
import importlib.util, resource, sys, time
spec = importlib.util.spec_from_file_location("bench", {path!r})
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
make_pool = bench.make_pool
from attacks.suite import run_attacks
pool, oracle = make_pool({users}, {rows}, {dim}, 0, 0.5)
t = time.perf_counter()
run_attacks(pool, {oracle}, progress=False)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


def bench_memory(args, oracle: bool = True) -> dict:
    """Peak RSS of the default suite on the memory pool, in a subprocess; ``oracle=False``: without the
    oracle (the auditor holding only the uploads: no scoring, the oracle-free risk summary instead)."""
    import os

    rows = 1_000_000 // (8 if args.quick else 1)
    code = _MEMORY_CHILD.format(path=os.path.abspath(__file__), users=1000, rows=rows, dim=32,
                                oracle="oracle" if oracle else "None")
    name = f"{rows} x 32, 1000 users" + ("" if oracle else ", no oracle")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        return {"pool": name, "error": proc.stderr.strip().splitlines()[-1:]}
    secs, gib = map(float, proc.stdout.split()[-2:])
    return {"pool": name, "default_suite_s": secs, "peak_rss_gib": gib, "under_4_gib": gib < 4.0}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="80,000 rows (pruning engages from 50,000 references)")
    ap.add_argument("--rows", type=int, default=None, help="uploads per pool (default 200,000; --quick 80,000)")
    ap.add_argument("--users", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--noise", type=float, default=0.5, help="upload noise sd of the clustered pools")
    ap.add_argument("--weak-noise", type=float, default=2.0, help="noise sd of the weakly clustered pools (0: skip)")
    ap.add_argument("--kmeans", action="store_true", help="also time k-means against scikit-learn and faiss")
    ap.add_argument("--groups", nargs="*", default=[], help="suite attack groups to time (clustering linkage)")
    ap.add_argument("--memory", action="store_true", help="peak memory of the default suite on 1M x 32")
    ap.add_argument("--memory-only", action="store_true", help="--memory without the timed pools")
    ap.add_argument("--memory-no-oracle", action="store_true",
                    help="with --memory: also the memory pool without the oracle (oracle-free risk path)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    args.rows = args.rows or (80_000 if args.quick else 200_000)

    import faiss
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rows = []
    args.memory = args.memory or args.memory_only
    with threadpool_limits(limits=args.threads):
        for n_users in ([] if args.memory_only else args.users):
            for noise, kind in ((args.noise, "clustered"), (args.weak_noise, "weak")):
                if noise > 0:
                    rows.append(bench_pool(args, n_users, noise, f"{args.rows} x {args.dim}, {n_users} users, {kind}"))
                    if not args.json:
                        _print(rows[-1])
    if args.memory:
        rows.append(bench_memory(args))
        if args.memory_no_oracle:
            rows.append(bench_memory(args, oracle=False))
        if not args.json:
            _print(rows[-1])
    if args.json:
        print(json.dumps(rows))
    return 0


def _print(row: dict) -> None:
    print(f"== {row.pop('pool')}")
    for k, v in row.items():
        print(f"  {k:32s} {v:.3f}" if isinstance(v, float) else f"  {k:32s} {v}")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
