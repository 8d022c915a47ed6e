"""Scale benchmark for the clustering and linkage attacks (issue 4 acceptance).

Synthetic pools of 200,000 uploads with 64-dimensional embeddings from 1,000 Gaussian users: user
means ``N(0, I)``, uploads ``mean + N(0, noise^2 I)`` (160 session-0 uploads and 40 later queries per
user).  The pruned neighbour search's speed depends on how clustered the data are, so two pools are
timed and described: the clustered default (``--noise 0.5``) and a weakly clustered one
(``--weak-noise 2.0``, where users overlap and pruning mostly falls back to brute force).  Times,
in one process:

* ``ClusteringAttack(method="kmeans", n_users=1000)``: mini-batch k-means (target < 60 s);
* ``NearestNeighbourLinkage``: exact 5-NN of the 40,000 queries among the 160,000 references
  (:func:`attacks.neighbors.knn_pruned`: triangle-inequality cell pruning, brute-force fallback;
  target < 60 s);
* the baseline: scikit-learn ``NearestNeighbors(algorithm="brute")`` on the same features (float32:
  its fused ``ArgKmin`` path; ``--float64`` adds the float64 path), and the ratio (target: ours at
  least 2x faster); faiss ``IndexFlatL2`` too when faiss-cpu is installed.

Both searches must return the same neighbours: the agreement on all k neighbours is printed.
Run: ``.venv/bin/python benchmarks/bench_attacks_scale.py [--threads 2] [--users 1000] [--per-user 200]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def make_pool(n_users: int, per_user: int, dim: int, seed: int, noise: float = 0.5):
    from idfree_core.uploads import anonymize

    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(n_users, dim, generator=gen)
    dist = torch.distributions.Normal(torch.zeros(dim), torch.full((dim,), float(noise)))
    torch.manual_seed(seed)
    emb = (means.repeat_interleave(per_user, dim=0) + dist.sample((n_users * per_user,))).numpy()
    users = np.repeat(np.arange(n_users), per_user)
    session = np.tile((np.arange(per_user) >= per_user * 4 // 5).astype(np.int64), n_users)
    return anonymize(emb.astype(np.float32), users, session=session, rng=np.random.default_rng(seed))


def describe(noise: float, dim: int) -> str:
    """How clustered: within-user vs between-user distance of two uploads (closed form)."""
    within, between = noise * np.sqrt(2 * dim), np.sqrt(2 * dim * (1 + noise**2))
    return (f"user means N(0, I), upload noise sd {noise}: same-user distance ~{within:.1f}, "
            f"other-user ~{between:.1f} (ratio {between / within:.2f})")


def time_linkage(pool, oracle, args, out: dict, tag: str, kmeans: bool) -> None:
    from attacks.linkage import NearestNeighbourLinkage

    truth, _ = oracle.codes_for(pool)
    if kmeans:
        from attacks.clustering import ClusteringAttack
        from attacks.scoring import contingency, matched_correct

        t = time.perf_counter()
        km = ClusteringAttack(method="kmeans", n_users=args.users, n_init=1, random_state=args.seed).fit(pool)
        out[f"{tag}kmeans_s"] = time.perf_counter() - t
        table, _ = contingency(truth, km.labels_)
        out[f"{tag}kmeans_attribution_accuracy"] = matched_correct(table) / pool.n
    t = time.perf_counter()
    nn = NearestNeighbourLinkage(random_state=args.seed).fit(pool)
    out[f"{tag}nn_linkage_s"] = time.perf_counter() - t
    out[f"{tag}nn_search"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in nn.search_.items()}
    out["n_queries"], out["n_references"] = int(nn.query_rows_.size), int(nn.reference_rows_.size)
    q_codes, r_codes = truth[nn.query_rows_], truth[nn.reference_rows_]
    out[f"{tag}nn_top1"] = float((r_codes[nn.topk_[:, 0]] == q_codes).mean())
    if args.skip_sklearn:
        return
    from sklearn.neighbors import NearestNeighbors

    xr, xq = pool.embedding[nn.reference_rows_], pool.embedding[nn.query_rows_]
    for label, dtype in (("float32", np.float32),) + ((("float64", np.float64),) if args.float64 else ()):
        a, b = xr.astype(dtype), xq.astype(dtype)
        t = time.perf_counter()
        _, ind = NearestNeighbors(n_neighbors=5, algorithm="brute").fit(a).kneighbors(b)
        out[f"{tag}sklearn_brute_{label}_s"] = time.perf_counter() - t
        out[f"{tag}speedup_vs_sklearn_{label}"] = out[f"{tag}sklearn_brute_{label}_s"] / out[f"{tag}nn_linkage_s"]
        out[f"{tag}neighbour_agreement_{label}"] = float((ind == nn.topk_).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--per-user", type=int, default=200)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--noise", type=float, default=0.5, help="upload noise sd of the clustered pool")
    ap.add_argument("--weak-noise", type=float, default=2.0, help="noise sd of the weakly clustered pool (0: skip)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-sklearn", action="store_true", help="skip the (slow) scikit-learn baseline")
    ap.add_argument("--float64", action="store_true", help="also time scikit-learn's float64 path")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    out = {"n_uploads": args.users * args.per_user, "dim": args.dim, "n_users": args.users, "threads": args.threads,
           "clustered_pool": describe(args.noise, args.dim)}
    with threadpool_limits(limits=args.threads):
        pool, oracle = make_pool(args.users, args.per_user, args.dim, args.seed, args.noise)
        time_linkage(pool, oracle, args, out, "", kmeans=True)
        if args.weak_noise > 0:
            out["weak_pool"] = describe(args.weak_noise, args.dim)
            pool, oracle = make_pool(args.users, args.per_user, args.dim, args.seed, args.weak_noise)
            time_linkage(pool, oracle, args, out, "weak_", kmeans=False)
        try:
            import faiss  # optional

            faiss.omp_set_num_threads(args.threads)
            xr = np.ascontiguousarray(pool.embedding[pool.session == 0])
            t = time.perf_counter()
            index = faiss.IndexFlatL2(xr.shape[1])
            index.add(xr)
            index.search(np.ascontiguousarray(pool.embedding[pool.session >= 1]), 5)
            out["faiss_flat_s"] = time.perf_counter() - t
        except ImportError:
            out["faiss_flat_s"] = None
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:36s} {v:.3f}" if isinstance(v, float) else f"{k:36s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
