"""Dense search kernels shared by the attacks: exact brute-force k-NN, nearest centre, top-k inner products.

Leaf module (imports neither :mod:`attacks.linkage` nor :mod:`attacks.neighbors`, which both use it).
Everything runs in float32 blocks, so memory is ``O(block * n_refs)`` whatever the pool size.

* :func:`knn_blocked`: exact k nearest references from ``||q||^2 - 2 q.r + ||r||^2`` (one GEMM per
  block of queries, ``torch.addmm``) and a per-block ``torch.topk``.
* :func:`knn_brute`: the same contract, using faiss ``IndexFlatL2`` (exact, float32; Johnson, Douze
  & Jegou 2019) when faiss-cpu is importable and :func:`knn_blocked` otherwise.  Both are exact up
  to float32 rounding; the faiss path is the faster one on CPU (measured in
  ``benchmarks/bench_attacks_scale.py``; 40,000 queries x 160,000 references x 64, two threads, quiet
  machine: 7.6 s against 13.5 s for scikit-learn, same neighbours; :func:`attacks.neighbors.knn_pruned`'s
  fallback uses it).  ``backend="sklearn"``: scikit-learn's brute-force ``NearestNeighbors`` (its fused
  float32 GEMM + heap ``ArgKmin``), which degrades less when other jobs load the cores (faiss's
  OpenMP threads spin while they wait: 33 s against scikit-learn's 16 s on a loaded 2-core machine).
* :func:`nearest_centre`: index of and squared distance to the nearest of ``C`` centres (the
  k-means / cell assignment step, ``O(n C d)`` in blocks).
* :func:`topk_inner`: the ``k`` largest inner products ``<a_i, b_j>`` per row with exact ties broken
  uniformly at random, by blockwise ``torch.topk`` (no full sort of the similarity matrix).
"""

from __future__ import annotations

import numpy as np
import torch

from idfree_core.errors import InputError

METRICS = ("euclidean", "cosine")


def _tensor(x) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise InputError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")


def _threads(threads):
    """Context: ``torch.set_num_threads(threads)`` for the block, restored after (None: unchanged)."""
    class _Ctx:
        def __enter__(self):
            self.old = torch.get_num_threads()
            if threads:
                torch.set_num_threads(int(threads))

        def __exit__(self, *exc):
            torch.set_num_threads(self.old)

    return _Ctx()


def faiss_threads(threads=None):
    """Context: faiss's OpenMP threads set to ``threads`` (None: torch's thread budget) for the block,
    restored after."""
    import faiss

    class _Ctx:
        def __enter__(self):
            self.old = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(int(threads) if threads else torch.get_num_threads())

        def __exit__(self, *exc):
            faiss.omp_set_num_threads(self.old)

    return _Ctx()


def _prepared(queries, refs, k: int, metric: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Float32 query and reference tensors (unit rows for ``metric="cosine"``, where ``1 - cos`` is half the
    squared Euclidean distance) and ``k`` capped at the number of references: the searches' common prelude."""
    q, r = _tensor(queries), _tensor(refs)
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        r = torch.nn.functional.normalize(r, dim=1)
    return q, r, int(min(k, r.shape[0]))


def knn_blocked(queries: np.ndarray, refs: np.ndarray, k: int, metric: str = "euclidean",
                block_size: int | None = None, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest references per query: ``(indices (m, k), distances (m, k))``, nearest first.

    Squared distances come from ``||q||^2 - 2 q.r + ||r||^2`` in float32 blocks of ``block_size``
    queries; cosine distance is ``1 - cos``.  Memory ``O(block_size * n_refs)``; by default the
    block holds about 2^26 distances (256 MiB of float32): skinny blocks make the GEMM inefficient.
    """
    check_metric(metric)
    q, r, k = _prepared(queries, refs, k, metric)
    block_size = int(block_size) if block_size else int(np.clip(2**26 // max(r.shape[0], 1), 64, 4096))
    r2 = (r * r).sum(dim=1)
    rt = r.T.contiguous()
    idx = np.empty((q.shape[0], k), dtype=np.int64)
    dist = np.empty((q.shape[0], k), dtype=np.float32)
    with _threads(threads), torch.no_grad():
        for s in range(0, q.shape[0], block_size):
            qb = q[s:s + block_size]
            d2 = torch.addmm(r2.unsqueeze(0), qb, rt, beta=1.0, alpha=-2.0)  # ||r||^2 - 2 q.r
            vals, ind = torch.topk(d2, k, dim=1, largest=False, sorted=True)
            vals = (vals + (qb * qb).sum(dim=1, keepdim=True)).clamp_min(0.0)
            idx[s:s + qb.shape[0]] = ind.numpy()
            dist[s:s + qb.shape[0]] = (vals / 2.0).numpy() if metric == "cosine" else vals.sqrt().numpy()
    return idx, dist


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def knn_brute(queries: np.ndarray, refs: np.ndarray, k: int, metric: str = "euclidean", backend: str = "auto",
              threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact brute-force k-NN, same contract as :func:`knn_blocked`; ``backend``: ``auto`` (faiss
    ``IndexFlatL2`` when importable, else torch), ``faiss``, ``torch`` or ``sklearn`` (module doc)."""
    check_metric(metric)
    if backend not in ("auto", "faiss", "torch", "sklearn"):
        raise InputError(f"backend must be 'auto', 'faiss', 'torch' or 'sklearn', got {backend!r}")
    if backend == "sklearn":
        return _knn_sklearn(queries, refs, k, metric)
    if backend == "torch" or (backend == "auto" and not faiss_available()):
        return knn_blocked(queries, refs, k, metric, threads=threads)
    import faiss

    q, r, k = _prepared(queries, refs, k, metric)
    with faiss_threads(threads):
        index = faiss.IndexFlatL2(r.shape[1])
        index.add(r.numpy())
        d2, idx = index.search(q.numpy(), k)
    d2 = np.maximum(d2, 0.0).astype(np.float32)
    return idx.astype(np.int64), (d2 / 2.0 if metric == "cosine" else np.sqrt(d2))


def _knn_sklearn(queries, refs, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    q, r, k = _prepared(queries, refs, k, metric)
    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(r.numpy()).kneighbors(q.numpy())
    dist = dist.astype(np.float32)
    return idx.astype(np.int64), (dist * dist / 2.0 if metric == "cosine" else dist)


def nearest_centre(x: torch.Tensor, c: torch.Tensor, block: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and squared distance to the nearest row of ``c`` for every row of ``x`` (float32 tensors),
    in blocks of ``block`` rows (default: about 2^24 distances per block)."""
    block = int(block) if block else int(np.clip(2**24 // max(c.shape[0], 1), 256, 8192))
    c2 = (c * c).sum(dim=1)
    idx = torch.empty(x.shape[0], dtype=torch.int64)
    dist = torch.empty(x.shape[0], dtype=x.dtype)
    for s in range(0, x.shape[0], block):
        xb = x[s:s + block]
        v, i = torch.addmm(c2.unsqueeze(0), xb, c.T, beta=1.0, alpha=-2.0).min(dim=1)  # argmin needs no ||x||^2
        idx[s:s + block], dist[s:s + block] = i, (v + (xb * xb).sum(dim=1)).clamp_min_(0.0)
    return idx, dist


def topk_inner(a: np.ndarray, b: np.ndarray, k: int, rng: np.random.Generator, block: int | None = None) -> np.ndarray:
    """Indices ``(m, k)`` of the ``k`` largest ``<a_i, b_j>`` per row of ``a``, largest first.

    Exact ties (equal float32 products, e.g. references assigned with certainty to one mixture
    component) are broken uniformly at random: every row's candidates are the columns ``>=`` its
    k-th largest value (``torch.topk``), ordered by (value desc, random key).  Cost ``O(m n d)``,
    memory ``O(block * n)`` float32 (default about 2^24 products per block).
    """
    ta, tb = _tensor(a), _tensor(b)
    n = tb.shape[0]
    k = int(min(k, n))
    block = int(block) if block else int(np.clip(2**24 // max(n, 1), 16, 4096))
    out = np.empty((ta.shape[0], k), dtype=np.int64)
    with torch.no_grad():
        for s in range(0, ta.shape[0], block):
            sim = ta[s:s + block] @ tb.T
            kth = torch.topk(sim, k, dim=1, sorted=True).values[:, -1:]
            rows, cols = torch.nonzero(sim >= kth, as_tuple=True)  # usually k per row; more on ties
            vals = sim[rows, cols].numpy()
            rows, cols = rows.numpy(), cols.numpy()
            order = np.lexsort((rng.random(rows.size), -vals, rows))
            rows, cols = rows[order], cols[order]
            first = np.searchsorted(rows, np.arange(sim.shape[0]))  # every row has >= k candidates
            take = first[:, None] + np.arange(k)[None, :]
            out[s:s + sim.shape[0]] = cols[take]
    return out


def predict_chunked(model, x: np.ndarray, block: int | None = None) -> np.ndarray:
    """``model.predict(x)`` in blocks of rows, so a mixture's ``(n, K)`` float64 log-densities never
    exist for the whole pool at once (1,000,000 rows x 1,000 components would be 8 GB); default
    blocks hold about 2^23 log-densities."""
    k = int(getattr(model, "n_components", 1) or 1)
    block = int(block) if block else int(np.clip(2**23 // max(k, 1), 1024, 65536))
    out = np.empty(x.shape[0], dtype=np.int64)
    for s in range(0, x.shape[0], block):
        out[s:s + block] = model.predict(x[s:s + block])
    return out
