"""Exact k-nearest-neighbour search with triangle-inequality cell pruning.

References are partitioned into ``C ~ n / 64`` cells by two Lloyd iterations (k-means) on a
subsample, every reference assigned to its nearest centre by one blocked matrix product (centres
left with tiny cells are dropped); each cell stores its radius ``r_c = max_{x in c} ||x - c||``.
For a query ``q`` with nearest centre ``g`` and any reference ``x`` of cell ``c`` two lower bounds
hold: the ball bound ``||q - x|| >= ||q - c|| - r_c`` (triangle inequality) and the Voronoi bound
``||q - x|| >= (||q - c||^2 - ||q - g||^2) / (2 ||c - g||)`` (``x`` lies on ``c``'s side of the
bisector of ``c`` and ``g``).  A cell whose bound exceeds an upper bound ``u_q`` on the query's k-th
neighbour distance cannot hold one of its k nearest neighbours and is skipped, exactly (one-level
metric-tree pruning, Fukunaga & Narendra 1975).

Vectorized in two passes over cells, each cell's queries in one matrix product merged into a
running top-k: pass 1 scans every query's ``n_probe`` nearest cells, giving ``u_q``; pass 2 scans
every further cell whose bound is ``<= u_q``.  Queries are processed in chunks, so the query x
cell bound matrices stay bounded (about 2^25 entries) whatever the pool size.  Queries that would
still scan more than ``fallback_fraction`` of the references are pooled and searched by brute
force (:func:`attacks.knn.knn_brute`, by default scikit-learn's fused brute-force kernel, the fastest
on these sizes); a dry run of the bounds on the subsample (k-th distances of a few probe queries taken
among all references) decides before the full assignment whether pruning pays at all (e.g. one
isotropic Gaussian in many dimensions: it does not), and the first chunk's real bounds decide
again (brute force for every query when more than half of its queries fall back or its scans would
compute more than ``BRUTE_ABOVE`` of the distances: the scans' many small products cost several
times the fused brute-force kernel per distance), so the worst case costs brute force plus a small
overhead.  Bounds carry a float32 rounding
slack, so the result equals brute force up to exact ties.  Squared distances use
``||q||^2 - 2 q.r + ||r||^2`` (``torch.addmm``) and top-k ``torch.topk``.  The speed-up depends on
how clustered the data are (``benchmarks/bench_attacks_scale.py`` prints both cases).
"""

from __future__ import annotations

import numpy as np
import torch

from attacks.knn import check_metric, knn_brute, nearest_centre
from idfree_core.errors import InputError

BRUTE_ABOVE = 0.3  # the first chunk's distance fraction above which brute force is cheaper (module doc)


def _sqdist(q: torch.Tensor, r: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """``||q - r||^2`` for all pairs from ``||q||^2 - 2 q.r + ||r||^2`` (clamped at 0)."""
    d2 = torch.addmm(r2.unsqueeze(0), q, r.T, beta=1.0, alpha=-2.0)
    return (d2 + (q * q).sum(dim=1, keepdim=True)).clamp_min_(0.0)


def partition(refs: torch.Tensor, n_cells: int, n_iter: int = 2, sample: int = 40000, min_size: int = 16,
              seed: int = 0, probe: torch.Tensor | None = None, k: int = 5, fallback_fraction: float = 0.3,
              full: torch.Tensor | None = None):
    """Cells of ``refs``: ``(centres (C, d), assignment (n,), radius (C,))`` after ``n_iter`` Lloyd steps.

    Centres start at ``C`` distinct random references; the Lloyd steps run on a random subsample of
    at most ``min(sample, 6 C)`` rows (enough for cell quality: exactness never depends on it).  Centres that
    get fewer than ``min_size`` references (extrapolated from the subsample) are dropped and their references reassigned.
    With ``probe`` queries, returns ``None`` (before the full assignment) when pruning would not pay
    for most of them on the subsample (:func:`_pruning_pays`; their k-th distances are taken among
    all of ``full`` when given, else the subsample's).
    """
    gen = torch.Generator().manual_seed(int(seed))
    n = refs.shape[0]
    sub = refs[torch.randperm(n, generator=gen)[:max(n_cells, min(n, sample, 6 * n_cells))]]
    centres = sub[:n_cells].clone()
    for _ in range(n_iter):
        a, _ = nearest_centre(sub, centres)
        counts = torch.bincount(a, minlength=centres.shape[0])
        sums = torch.zeros_like(centres).index_add_(0, a, sub)
        keep = counts > 0
        centres[keep] = sums[keep] / counts[keep].unsqueeze(1).to(refs.dtype)
    if probe is not None and not _pruning_pays(sub, centres, a, probe, k, fallback_fraction, full):
        return None
    big = counts * (n / sub.shape[0]) >= min_size  # expected full-data size from the subsample
    if int(big.sum()) >= 2:  # tiny cells bound nothing well: their references join other cells
        centres = centres[big]
    assign, d2 = nearest_centre(refs, centres)
    radius = torch.full((centres.shape[0],), -float("inf"), dtype=refs.dtype)
    radius.scatter_reduce_(0, assign, d2.sqrt(), reduce="amax")
    return centres, assign, radius


def knn_pruned(queries: np.ndarray, refs: np.ndarray, k: int, metric: str = "euclidean", n_cells: int | None = None,
               n_probe: int = 3, fallback_fraction: float = 0.3, threads: int | None = None,
               random_state: int = 0, return_stats: bool = False, backend: str = "auto", chunk: int | None = None):
    """Exact ``k`` nearest references per query: ``(indices (m, k), distances (m, k))``, nearest first.

    Same contract as :func:`attacks.knn.knn_blocked` (cosine distance ``1 - cos``); see the
    module docstring for the algorithm.  ``backend`` is the brute-force kernel of the fallback
    (:func:`attacks.knn.knn_brute`).  Queries are searched in chunks of ``chunk`` rows (default:
    about 2^25 query-cell bounds per chunk), so memory stays ``O(chunk * n_cells + n_refs)``.
    With ``return_stats`` a third value reports the cells, the fraction of (query, reference)
    distances computed and the fraction of queries that fell back to brute force.
    """
    check_metric(metric)
    if int(n_probe) < 1:
        raise InputError(f"n_probe must be >= 1, got {n_probe}")
    if not 0.0 < float(fallback_fraction) <= 1.0:
        raise InputError(f"fallback_fraction must be in (0, 1], got {fallback_fraction}")
    if backend not in ("auto", "faiss", "torch", "sklearn"):
        raise InputError(f"backend must be 'auto', 'faiss', 'torch' or 'sklearn', got {backend!r}")
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with torch.no_grad():
            return _knn_pruned(queries, refs, int(k), metric, n_cells, int(n_probe), float(fallback_fraction),
                               int(random_state), return_stats, backend, chunk)
    finally:
        torch.set_num_threads(old)


def _knn_pruned(queries, refs, k, metric, n_cells, n_probe, fallback_fraction, seed, return_stats, backend, chunk):
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(refs, dtype=np.float32))
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        r = torch.nn.functional.normalize(r, dim=1)
    n, m = r.shape[0], q.shape[0]
    k = int(min(k, n))
    n_cells = int(n_cells) if n_cells else int(np.clip(n // 64, 1, 8192))
    stats = {"algorithm": "pruned", "n_cells": n_cells, "distance_fraction": 1.0, "fallback_fraction": 1.0}

    def brute(qq):
        return knn_brute(qq.numpy(), r.numpy(), k, "euclidean", backend=backend)

    if n < 4 * n_cells or m == 0 or n_cells < 2:
        stats.update(algorithm="brute", n_cells=0)
        return _finish(*brute(q), metric, stats, return_stats)
    shift = r.mean(dim=0)
    q, r = q - shift, r - shift  # smaller norms: smaller rounding in the expanded form
    probe = q[torch.randperm(m, generator=torch.Generator().manual_seed(seed))[:256]]
    cells = partition(r, n_cells, min_size=max(16, 2 * k), seed=seed, probe=probe, k=k,
                      fallback_fraction=fallback_fraction, full=r)
    if cells is None:  # pruning would not pay: brute force for every query
        stats.update(n_cells=0, distance_fraction=1.0, fallback_fraction=1.0)
        return _finish(*brute(q), metric, stats, return_stats)
    centres, assign, radius = cells
    n_cells = stats["n_cells"] = centres.shape[0]
    order = torch.argsort(assign, stable=True)
    rs, counts = r[order].contiguous(), torch.bincount(assign, minlength=n_cells)
    del assign
    start = (torch.cumsum(counts, 0) - counts).numpy()
    rs2 = (rs * rs).sum(dim=1)
    norm = float(torch.sqrt(rs2.max() + (q * q).sum(dim=1).max()))
    tol = 4e-3 * norm + 1e-6  # float32 slack on distances (exactness: bounds are loosened by it)
    c2 = (centres * centres).sum(dim=1)
    cc = torch.cdist(centres, centres).clamp_min_(1e-12)  # (C, C) centre separations
    counts_f, counts_np = counts.to(torch.float32), counts.numpy()
    ctx = dict(rs=rs, rs2=rs2, start=start, counts=counts_np)
    idx = np.empty((m, k), dtype=np.int64)
    dist = np.empty((m, k), dtype=np.float32)
    order_np = order.numpy()
    chunk = int(chunk) if chunk else int(np.clip(2**25 // n_cells, 1024, 65536))
    computed, fallback = 0, []
    for s in range(0, m, chunk):
        qb = q[s:s + chunk]
        b = qb.shape[0]
        qc = _sqdist(qb, centres, c2).sqrt_()  # (b, C) query-centre distances
        near = torch.topk(qc, min(n_probe, n_cells), dim=1, largest=False).indices  # (b, P), nearest first
        best_d = torch.full((b, k), float("inf"))
        best_i = torch.full((b, k), -1, dtype=torch.int64)
        first = torch.zeros((b, n_cells), dtype=torch.bool).scatter_(1, near, True)
        computed += _scan(qb, _sorted_pairs(first), best_d, best_i, ctx)  # pass 1: the P nearest cells
        upper = best_d[:, -1].sqrt() + tol
        home = near[:, 0]
        plane = (qc * qc - qc.gather(1, home[:, None]) ** 2).div_(2.0 * cc[home])  # distance to the bisector
        del near, home
        lower = torch.maximum(qc.sub_(radius.unsqueeze(0)), plane).sub_(tol)  # empty cell: radius -inf
        del qc, plane
        need = (lower <= upper[:, None]) & ~first
        del lower, first
        wide, brute_pays = _brute_pays(need.to(torch.float32) @ counts_f, n, fallback_fraction, computed)
        if s == 0 and m > 8192 and brute_pays:
            stats.update(distance_fraction=(computed + m * n) / float(m * n), fallback_fraction=1.0)
            return _finish(*brute(q), metric, stats, return_stats)
        need[wide] = False
        computed += _scan(qb, _sorted_pairs(need), best_d, best_i, ctx)  # pass 2: cells within the bound
        del need
        idx[s:s + b] = order_np[best_i.clamp_min(0).numpy()]
        dist[s:s + b] = best_d.sqrt().numpy()
        fallback.append(torch.nonzero(wide)[:, 0].numpy() + s)
    fb = np.concatenate(fallback)
    if fb.size:  # pruning does not pay for these queries: brute force, pooled
        idx[fb], dist[fb] = brute(q[torch.from_numpy(fb)])
        computed += fb.size * n
    stats.update(distance_fraction=computed / float(m * n), fallback_fraction=fb.size / m)
    return _finish(idx, dist, metric, stats, return_stats)


def _sorted_pairs(mask: torch.Tensor) -> torch.Tensor:
    """``(cell, query)`` index pairs of a ``(queries, cells)`` mask, sorted by cell."""
    return torch.nonzero(mask.T.contiguous())


def _scan(q, pairs, best_d, best_i, ctx) -> int:
    """Merge into the running top-k every (cell, query) pair of ``pairs`` (sorted by cell); returns
    the number of distances computed."""
    rs, rs2, start, counts = ctx["rs"], ctx["rs2"], ctx["start"], ctx["counts"]
    k = best_d.shape[1]
    done, threads = 0, torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny products: threads cost more than they give
    try:
        cells, sizes = torch.unique_consecutive(pairs[:, 0], return_counts=True)
        for c, qs in zip(cells.tolist(), torch.split(pairs[:, 1], sizes.tolist())):
            lo, hi = start[c], start[c] + counts[c]
            if hi == lo:
                continue
            d2 = _sqdist(q[qs], rs[lo:hi], rs2[lo:hi])
            done += d2.numel()
            bd = best_d[qs]
            better = (d2 < bd[:, -1:]).any(dim=1)  # only rows this cell improves need a merge
            if not bool(better.all()):
                qs, d2, bd = qs[better], d2[better], bd[better]
                if qs.numel() == 0:
                    continue
            bi = best_i[qs]  # one top-k over [running best | this cell]: column j >= k is reference lo + j - k
            v, j = torch.topk(torch.cat([bd, d2], dim=1), k, dim=1, largest=False, sorted=True)
            best_d[qs], best_i[qs] = v, torch.where(j < k, bi.gather(1, j.clamp(max=k - 1)), j - k + lo)
    finally:
        torch.set_num_threads(threads)
    return done


def _pruning_pays(sub, centres, assign, probe, k, fallback_fraction, full=None) -> bool:
    """Whether most ``probe`` queries would scan at most ``fallback_fraction`` of ``sub``, and all of them
    together at most ``BRUTE_ABOVE`` of its distances (a cheap
    dry run of the bounds on the subsample: it decides the strategy, never the result).  The k-th
    distances come from ``full`` when given: on the subsample they are far too large when each
    cluster has few rows there (e.g. 5,000 users of 32 references), and pruning would be refused."""
    cnt = torch.bincount(assign, minlength=centres.shape[0])
    d_sub = (sub - centres[assign]).norm(dim=1)
    radius = torch.full((centres.shape[0],), -float("inf")).scatter_reduce_(0, assign, d_sub, reduce="amax")
    ref = sub if full is None else full
    kth = torch.from_numpy(knn_brute(probe.numpy(), ref.numpy(), min(k, ref.shape[0]), backend="torch")[1][:, -1])
    qc = torch.cdist(probe, centres)
    home = qc.argmin(dim=1)
    cc = torch.cdist(centres, centres).clamp_min_(1e-12)
    plane = (qc * qc - qc.gather(1, home[:, None]) ** 2) / (2.0 * cc[home])
    need = (torch.maximum(qc - radius, plane) <= kth[:, None]).to(torch.float32) @ cnt.to(torch.float32)
    return not _brute_pays(need, sub.shape[0], fallback_fraction)[1]


def _brute_pays(scans: torch.Tensor, n: int, fallback_fraction: float, computed: float = 0.0) -> tuple[torch.Tensor, bool]:
    """``(wide, brute)`` for queries that would scan ``scans`` of ``n`` references: ``wide`` the queries
    above ``fallback_fraction n`` (searched by brute force), ``brute`` whether brute force for all of them
    is cheaper, i.e. more than half are wide or, with ``computed`` distances already spent, the search
    would compute more than ``BRUTE_ABOVE`` of the ``len(scans) n`` distances (module doc)."""
    wide = scans > fallback_fraction * n
    fraction = (computed + float(torch.where(wide, float(n), scans).sum())) / float(scans.shape[0] * n)
    return wide, float(wide.float().mean()) > 0.5 or fraction > BRUTE_ABOVE


def _finish(idx, dist, metric, stats, return_stats):
    if metric == "cosine":
        dist = (dist.astype(np.float32) ** 2) / 2.0  # unit vectors: ||a - b||^2 / 2 = 1 - cos
    return (idx, dist, stats) if return_stats else (idx, dist)
