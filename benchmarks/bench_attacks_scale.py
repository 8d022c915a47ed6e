"""Scale benchmark for the clustering and linkage attacks (issue 4 acceptance).

A synthetic pool of 200,000 uploads with 64-dimensional embeddings from 1,000 Gaussian users
(160 session-0 uploads and 40 later queries each).  Times, in one process:

* ``ClusteringAttack(method="kmeans", n_users=1000)``: mini-batch k-means (target < 60 s);
* ``NearestNeighbourLinkage``: exact 5-NN of the 40,000 queries among the 160,000 references by
  blocked float32 matrix products (target < 60 s);
* the baseline: scikit-learn ``NearestNeighbors(algorithm="brute")`` on the same features, given
  float32 (its fused float32 ``ArgKmin`` path) and float64 input, and the ratios (target: ours at
  least 2x faster); faiss ``IndexFlatL2`` too when faiss-cpu is installed.

Both neighbour searches must return the same neighbours (agreement on the first one is printed).
Run: ``.venv/bin/python benchmarks/bench_attacks_scale.py [--threads 2] [--users 1000] [--per-user 200]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def make_pool(n_users: int, per_user: int, dim: int, seed: int):
    from idfree_core.uploads import anonymize

    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n_users, dim, generator=gen)
    noise = torch.distributions.Normal(torch.zeros(dim), torch.full((dim,), 0.5))
    torch.manual_seed(seed)
    emb = (means.repeat_interleave(per_user, dim=0) + noise.sample((n_users * per_user,))).numpy()
    users = np.repeat(np.arange(n_users), per_user)
    session = np.tile((np.arange(per_user) >= per_user * 4 // 5).astype(np.int64), n_users)
    return anonymize(emb.astype(np.float32), users, session=session, rng=np.random.default_rng(seed))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--per-user", type=int, default=200)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-sklearn", action="store_true", help="skip the (slow) scikit-learn baseline")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from attacks.clustering import ClusteringAttack
    from attacks.linkage import NearestNeighbourLinkage

    torch.set_num_threads(args.threads)
    pool, oracle = make_pool(args.users, args.per_user, args.dim, args.seed)
    out = {"n_uploads": pool.n, "dim": pool.dim, "n_users": args.users, "threads": args.threads}
    with threadpool_limits(limits=args.threads):
        t = time.perf_counter()
        km = ClusteringAttack(method="kmeans", n_users=args.users, n_init=1, random_state=args.seed).fit(pool)
        out["kmeans_s"] = time.perf_counter() - t
        truth, _ = oracle.codes_for(pool)
        from attacks.scoring import contingency, matched_correct

        table, _ = contingency(truth, km.labels_)
        out["kmeans_attribution_accuracy"] = matched_correct(table) / pool.n

        t = time.perf_counter()
        nn = NearestNeighbourLinkage(random_state=args.seed).fit(pool)
        out["nn_linkage_s"] = time.perf_counter() - t
        out["n_queries"], out["n_references"] = int(nn.query_rows_.size), int(nn.reference_rows_.size)
        q_codes, r_codes = truth[nn.query_rows_], truth[nn.reference_rows_]
        out["nn_top1"] = float((r_codes[nn.topk_[:, 0]] == q_codes).mean())

        if not args.skip_sklearn:
            from sklearn.neighbors import NearestNeighbors

            xr, xq = pool.embedding[nn.reference_rows_], pool.embedding[nn.query_rows_]
            # float32 input takes scikit-learn's fused float32 ArgKmin path; float64 input (what
            # np.asarray(..., dtype=float) code hands it) takes the float64 path
            for label, dtype in (("float32", np.float32), ("float64", np.float64)):
                a, b = xr.astype(dtype), xq.astype(dtype)
                t = time.perf_counter()
                _, ind = NearestNeighbors(n_neighbors=5, algorithm="brute").fit(a).kneighbors(b)
                out[f"sklearn_brute_{label}_s"] = time.perf_counter() - t
                out[f"speedup_vs_sklearn_{label}"] = out[f"sklearn_brute_{label}_s"] / out["nn_linkage_s"]
                out[f"first_neighbour_agreement_{label}"] = float((ind[:, 0] == nn.topk_[:, 0]).mean())
        try:
            import faiss  # optional

            xr = np.ascontiguousarray(pool.embedding[nn.reference_rows_])
            xq = np.ascontiguousarray(pool.embedding[nn.query_rows_])
            faiss.omp_set_num_threads(args.threads)
            t = time.perf_counter()
            index = faiss.IndexFlatL2(xr.shape[1])
            index.add(xr)
            index.search(xq, 5)
            out["faiss_flat_s"] = time.perf_counter() - t
        except ImportError:
            out["faiss_flat_s"] = None
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:28s} {v:.3f}" if isinstance(v, float) else f"{k:28s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
