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
every further cell whose bound is ``<= u_q``.  Queries that would still scan more than
``fallback_fraction`` of the references are pooled and searched by brute force (scikit-learn's
``NearestNeighbors(algorithm="brute")``, whose fused float32 kernel is the faster brute force on
CPU); a dry run of the bounds on the subsample decides before the full assignment whether pruning
pays at all (e.g. one isotropic Gaussian in many dimensions: it does not), so the worst case costs
brute force plus the small subsample overhead.  Bounds carry a float32 rounding slack, so the
result equals brute force up to exact ties.  Squared distances use ``||q||^2 - 2 q.r + ||r||^2``
(``torch.addmm``) and top-k ``torch.topk``.  The speed-up depends on how clustered the data are
(``benchmarks/bench_attacks_scale.py`` prints both cases).
"""

from __future__ import annotations

import numpy as np
import torch

from idfree_core.errors import InputError


def _sqdist(q: torch.Tensor, r: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """``||q - r||^2`` for all pairs from ``||q||^2 - 2 q.r + ||r||^2`` (clamped at 0)."""
    d2 = torch.addmm(r2.unsqueeze(0), q, r.T, beta=1.0, alpha=-2.0)
    return (d2 + (q * q).sum(dim=1, keepdim=True)).clamp_min_(0.0)


def _nearest_centre(x: torch.Tensor, c: torch.Tensor, block: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of and squared distance to the nearest centre, in blocks of ``block`` rows."""
    c2 = (c * c).sum(dim=1)
    idx = torch.empty(x.shape[0], dtype=torch.int64)
    dist = torch.empty(x.shape[0], dtype=x.dtype)
    for s in range(0, x.shape[0], block):
        xb = x[s:s + block]
        v, i = torch.addmm(c2.unsqueeze(0), xb, c.T, beta=1.0, alpha=-2.0).min(dim=1)  # argmin needs no ||x||^2
        idx[s:s + block], dist[s:s + block] = i, (v + (xb * xb).sum(dim=1)).clamp_min_(0.0)
    return idx, dist


def partition(refs: torch.Tensor, n_cells: int, n_iter: int = 2, sample: int = 40000, min_size: int = 16,
              seed: int = 0, probe: torch.Tensor | None = None, k: int = 5, fallback_fraction: float = 0.3):
    """Cells of ``refs``: ``(centres (C, d), assignment (n,), radius (C,))`` after ``n_iter`` Lloyd steps.

    Centres start at ``C`` distinct random references; the Lloyd steps run on a random subsample of
    at most ``min(sample, 6 C)`` rows (enough for cell quality: exactness never depends on it).  Centres that
    get fewer than ``min_size`` references (extrapolated from the subsample) are dropped and their references reassigned.
    With ``probe`` queries, returns ``None`` (before the full assignment) when pruning would not pay
    for most of them on the subsample (:func:`_pruning_pays`).
    """
    gen = torch.Generator().manual_seed(int(seed))
    n = refs.shape[0]
    sub = refs[torch.randperm(n, generator=gen)[:max(n_cells, min(n, sample, 6 * n_cells))]]
    centres = sub[:n_cells].clone()
    for _ in range(n_iter):
        a, _ = _nearest_centre(sub, centres)
        counts = torch.bincount(a, minlength=centres.shape[0])
        sums = torch.zeros_like(centres).index_add_(0, a, sub)
        keep = counts > 0
        centres[keep] = sums[keep] / counts[keep].unsqueeze(1).to(refs.dtype)
    if probe is not None and not _pruning_pays(sub, centres, a, probe, k, fallback_fraction):
        return None
    big = counts * (n / sub.shape[0]) >= min_size  # expected full-data size from the subsample
    if int(big.sum()) >= 2:  # tiny cells bound nothing well: their references join other cells
        centres = centres[big]
    assign, d2 = _nearest_centre(refs, centres)
    radius = torch.full((centres.shape[0],), -float("inf"), dtype=refs.dtype)
    radius.scatter_reduce_(0, assign, d2.sqrt(), reduce="amax")
    return centres, assign, radius


def knn_pruned(queries: np.ndarray, refs: np.ndarray, k: int, metric: str = "euclidean", n_cells: int | None = None,
               n_probe: int = 3, fallback_fraction: float = 0.3, threads: int | None = None,
               random_state: int = 0, return_stats: bool = False):
    """Exact ``k`` nearest references per query: ``(indices (m, k), distances (m, k))``, nearest first.

    Same contract as :func:`attacks.linkage.knn_blocked` (cosine distance ``1 - cos``); see the
    module docstring for the algorithm.  With ``return_stats`` a third value reports the cells,
    the fraction of (query, reference) distances computed and the fraction of queries that fell
    back to brute force.
    """
    from attacks.linkage import knn_blocked

    if metric not in ("euclidean", "cosine"):
        raise InputError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    if int(n_probe) < 1:
        raise InputError(f"n_probe must be >= 1, got {n_probe}")
    if not 0.0 < float(fallback_fraction) <= 1.0:
        raise InputError(f"fallback_fraction must be in (0, 1], got {fallback_fraction}")
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with torch.no_grad():
            return _knn_pruned(queries, refs, int(k), metric, n_cells, int(n_probe), float(fallback_fraction),
                               int(random_state), return_stats, knn_blocked)
    finally:
        torch.set_num_threads(old)


def _knn_pruned(queries, refs, k, metric, n_cells, n_probe, fallback_fraction, seed, return_stats, knn_blocked):
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(refs, dtype=np.float32))
    if metric == "cosine":
        q = torch.nn.functional.normalize(q, dim=1)
        r = torch.nn.functional.normalize(r, dim=1)
    n, m = r.shape[0], q.shape[0]
    k = int(min(k, n))
    n_cells = int(n_cells) if n_cells else int(np.clip(n // 64, 1, 8192))
    stats = {"algorithm": "pruned", "n_cells": n_cells, "distance_fraction": 1.0, "fallback_fraction": 1.0}
    if n < 4 * n_cells or m == 0 or n_cells < 2:
        idx, dist = knn_blocked(q.numpy(), r.numpy(), k, "euclidean")
        return _finish(idx, dist, metric, stats, return_stats)
    shift = r.mean(dim=0)
    q, r = q - shift, r - shift  # smaller norms: smaller rounding in the expanded form
    probe = q[torch.randperm(m, generator=torch.Generator().manual_seed(seed))[:512]]
    cells = partition(r, n_cells, min_size=max(16, 2 * k), seed=seed, probe=probe, k=k,
                      fallback_fraction=fallback_fraction)
    if cells is None:  # pruning would not pay: brute force for every query
        stats.update(n_cells=0, distance_fraction=1.0, fallback_fraction=1.0)
        return _finish(*_brute(q.numpy(), r.numpy(), k), metric, stats, return_stats)
    centres, assign, radius = cells
    n_cells = stats["n_cells"] = centres.shape[0]
    order = torch.argsort(assign, stable=True)
    rs, counts = r[order].contiguous(), torch.bincount(assign, minlength=n_cells)
    start = (torch.cumsum(counts, 0) - counts).numpy()
    rs2 = (rs * rs).sum(dim=1)
    norm = float(torch.sqrt(rs2.max() + (q * q).sum(dim=1).max()))
    tol = 4e-3 * norm + 1e-6  # float32 slack on distances (exactness: bounds are loosened by it)
    qc = _sqdist(q, centres, (centres * centres).sum(dim=1)).sqrt_()  # (m, C)
    cc = torch.cdist(centres, centres).clamp_min_(1e-12)  # (C, C) centre separations
    near = torch.topk(qc, min(n_probe, n_cells), dim=1, largest=False).indices  # (m, P), nearest first
    best_d = torch.full((m, k), float("inf"))
    best_i = torch.full((m, k), -1, dtype=torch.int64)
    counts_np = counts.numpy()
    computed = 0

    def scan(pairs: torch.Tensor) -> int:
        """Merge into the running top-k every (cell, query) pair of ``pairs`` (sorted by cell)."""
        done, threads = 0, torch.get_num_threads()
        torch.set_num_threads(1)  # many tiny products: threads cost more than they give
        cells, sizes = torch.unique_consecutive(pairs[:, 0], return_counts=True)
        for c, qs in zip(cells.tolist(), torch.split(pairs[:, 1], sizes.tolist())):
            lo, hi = start[c], start[c] + counts_np[c]
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
        torch.set_num_threads(threads)
        return done

    def sorted_pairs(mask: torch.Tensor, offset: int) -> torch.Tensor:
        nz = torch.nonzero(mask.T.contiguous())  # (cell, query) sorted by cell
        nz[:, 1] += offset
        return nz

    first = torch.zeros((m, n_cells), dtype=torch.bool).scatter_(1, near, True)
    computed += scan(sorted_pairs(first, 0))  # pass 1: the P nearest cells bound the k-th distance
    upper = best_d[:, -1].sqrt() + tol
    home = near[:, 0]
    fallback, later = [], []
    for s in range(0, m, 4096):  # pass 2: every further cell whose lower bound is within the k-th distance
        qcb, hb = qc[s:s + 4096], home[s:s + 4096]
        plane = (qcb * qcb - qcb.gather(1, hb[:, None]) ** 2) / (2.0 * cc[hb])  # distance to the bisector
        lower = torch.maximum(qcb - radius.unsqueeze(0), plane) - tol  # empty cell: radius -inf
        need = (lower <= upper[s:s + 4096, None]) & ~first[s:s + 4096]
        wide = (need.to(torch.float32) @ counts.to(torch.float32)) > fallback_fraction * n
        if s == 0 and m > 8192 and float(wide.float().mean()) > 0.5:  # pruning does not pay here: brute
            idx, dist = _brute(q.numpy(), r.numpy(), k)
            stats.update(distance_fraction=(computed + m * n) / float(m * n), fallback_fraction=1.0)
            return _finish(idx, dist, metric, stats, return_stats)
        fallback.append(torch.nonzero(wide)[:, 0] + s)
        need[wide] = False
        later.append(sorted_pairs(need, s))
    pairs = torch.cat(later)
    pairs = pairs[torch.argsort(pairs[:, 0], stable=True)]
    computed += scan(pairs)
    idx = order.numpy()[best_i.clamp_min(0).numpy()]
    dist = best_d.sqrt().numpy()
    fb = torch.cat(fallback).numpy()
    if fb.size:  # pruning does not pay for these queries: brute force, pooled
        idx[fb], dist[fb] = _brute(q[fb].numpy(), r.numpy(), k)
        computed += fb.size * n
    stats.update(distance_fraction=computed / float(m * n), fallback_fraction=fb.size / m)
    return _finish(idx, dist, metric, stats, return_stats)


def _pruning_pays(sub, centres, assign, probe, k, fallback_fraction) -> bool:
    """Whether most ``probe`` queries would scan at most ``fallback_fraction`` of ``sub`` (a cheap
    dry run of the bounds on the subsample: it decides the strategy, never the result)."""
    cnt = torch.bincount(assign, minlength=centres.shape[0])
    d_sub = (sub - centres[assign]).norm(dim=1)
    radius = torch.full((centres.shape[0],), -float("inf")).scatter_reduce_(0, assign, d_sub, reduce="amax")
    kth = torch.topk(torch.cdist(probe, sub), min(k, sub.shape[0]), dim=1, largest=False).values[:, -1]
    qc = torch.cdist(probe, centres)
    home = qc.argmin(dim=1)
    cc = torch.cdist(centres, centres).clamp_min_(1e-12)
    plane = (qc * qc - qc.gather(1, home[:, None]) ** 2) / (2.0 * cc[home])
    need = (torch.maximum(qc - radius, plane) <= kth[:, None]).to(torch.float32) @ cnt.to(torch.float32)
    return float((need > fallback_fraction * sub.shape[0]).float().mean()) <= 0.5


def _brute(q: np.ndarray, r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The fallback: scikit-learn's brute-force search (its fused float32 ``ArgKmin`` path)."""
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(r).kneighbors(q)
    return idx, dist.astype(np.float32)


def _finish(idx, dist, metric, stats, return_stats):
    if metric == "cosine":
        dist = (dist.astype(np.float32) ** 2) / 2.0  # unit vectors: ||a - b||^2 / 2 = 1 - cos
    return (idx, dist, stats) if return_stats else (idx, dist)
