"""A fast float32 k-means kernel for the clustering attacks: k-means++ seeding, then Lloyd in blocks.

:func:`kmeans_fit` seeds ``k`` centres by k-means++ (Arthur & Vassilvitskii 2007: each next centre
drawn with probability proportional to the squared distance to the nearest centre so far) on a
random subsample of at most ``seed_sample`` rows, then runs ``n_iter`` Lloyd iterations (Lloyd
1982) on at most ``fit_sample`` rows, and assigns every row to its nearest centre.  The Lloyd
steps use faiss (``faiss.Kmeans`` started from the k-means++ centres) when faiss-cpu is
importable, else blocked torch GEMMs (:func:`attacks.knn.nearest_centre`).  Cost
``O(n_iter * fit_sample * k * d)`` plus the assignment ``O(n k d)``; memory ``O(n d)`` float32 plus
``O(block * k)``.  Returns a :class:`KMeansResult` (``centres``, ``labels``, ``inertia``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attacks.knn import faiss_available, nearest_centre
from idfree_core.errors import InputError
from idfree_core.seeding import seed_int


@dataclass(frozen=True)
class KMeansResult:
    centres: np.ndarray  # (k, d) float32
    labels: np.ndarray  # (n,) int64
    inertia: float  # sum of squared distances to the assigned centre

    def to_dict(self) -> dict:
        return {"n_clusters": int(self.centres.shape[0]), "inertia": float(self.inertia)}


def kmeans_plus_plus(x: torch.Tensor, k: int, gen: torch.Generator, n_trials: int | None = None) -> torch.Tensor:
    """``k`` rows of ``x`` chosen by greedy k-means++: at each step ``n_trials`` (default
    ``2 + log k``, as scikit-learn) candidates are drawn by D^2 sampling and the one that lowers the
    potential most is kept.  A zero-potential step (duplicates) draws uniformly.

    Per step: one ``(n_trials, d) x (d, n)`` product against the transposed rows and D^2 sampling by
    inverse CDF (``searchsorted`` on the float64 cumulative potential; rows at zero potential are
    never drawn) instead of ``torch.multinomial`` (0.35 ms per draw on 20,000 rows), on one torch
    thread: each step is a few small operations, and with two threads on a machine that another
    process also loads every one waits for a descheduled thread.  20,000 x 64 rows while another
    process ran: 0.6 ms per step (plain) and 1.0 ms (9 trials), against 10.6 and 38-46 ms for the
    two-thread multinomial version; the seeding potential is unchanged (2,272 centres, 3 seeds).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _kmeans_plus_plus(x, k, gen, n_trials)
    finally:
        torch.set_num_threads(before)


def _kmeans_plus_plus(x: torch.Tensor, k: int, gen: torch.Generator, n_trials: int | None) -> torch.Tensor:
    n = x.shape[0]
    trials = int(n_trials) if n_trials else 2 + int(np.log(max(k, 1)))
    x2 = (x * x).sum(dim=1)
    xt = x.T.contiguous()

    def d2_to(rows: torch.Tensor) -> torch.Tensor:  # (len(rows), n) squared distances
        return torch.addmm(x2.unsqueeze(0), x[rows], xt, beta=1.0, alpha=-2.0).add_(x2[rows, None]).clamp_min_(0.0)

    idx = torch.empty(k, dtype=torch.int64)
    idx[0] = torch.randint(n, (1,), generator=gen)
    d2 = d2_to(idx[:1])[0]
    for j in range(1, k):
        cum = torch.cumsum(d2, 0, dtype=torch.float64)
        total = float(cum[-1])
        if total > 0:
            u = torch.rand(trials, generator=gen, dtype=torch.float64).mul_(total)
            cand = torch.searchsorted(cum, u, right=True).clamp_max_(n - 1)
        else:
            cand = torch.randint(n, (trials,), generator=gen)
        new = torch.minimum(d2.unsqueeze(0), d2_to(cand))  # (trials, n)
        best = int(new.sum(dim=1).argmin()) if trials > 1 else 0
        idx[j], d2 = cand[best], new[best]
    return x[idx].clone()


def _lloyd_torch(x: torch.Tensor, c: torch.Tensor, n_iter: int) -> torch.Tensor:
    for _ in range(n_iter):
        a, _ = nearest_centre(x, c)
        counts = torch.bincount(a, minlength=c.shape[0])
        sums = torch.zeros_like(c).index_add_(0, a, x)
        keep = counts > 0  # an empty cluster keeps its centre
        c[keep] = sums[keep] / counts[keep].unsqueeze(1).to(c.dtype)
    return c


def _lloyd_faiss(x: torch.Tensor, c: torch.Tensor, n_iter: int, seed: int) -> torch.Tensor:
    import faiss

    km = faiss.Kmeans(x.shape[1], c.shape[0], niter=int(n_iter), seed=int(seed) % (2**31 - 1),
                      max_points_per_centroid=x.shape[0], min_points_per_centroid=1, verbose=False)
    km.cp.min_points_per_centroid = 1
    km.train(x.numpy(), init_centroids=c.numpy())
    return torch.from_numpy(np.ascontiguousarray(km.centroids, dtype=np.float32))


def kmeans_fit(x: np.ndarray, k: int, n_iter: int = 20, seed_sample: int = 20000, fit_sample: int = 200000,
               random_state=0, backend: str = "auto") -> KMeansResult:
    """k-means++ seeded Lloyd k-means in float32 (module doc); ``backend``: ``auto``, ``faiss`` or ``torch``."""
    if backend not in ("auto", "faiss", "torch"):
        raise InputError(f"backend must be 'auto', 'faiss' or 'torch', got {backend!r}")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    n = xt.shape[0]
    if not 1 <= int(k) <= n:
        raise InputError(f"k must be between 1 and the number of rows {n}, got {k}")
    seed = seed_int(random_state)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        perm = torch.randperm(n, generator=gen)
        centres = kmeans_plus_plus(xt[perm[:max(int(k), min(n, int(seed_sample)))]], int(k), gen)
        fit = xt[perm[:max(int(k), min(n, int(fit_sample)))]]
        if backend == "faiss" or (backend == "auto" and faiss_available()):
            centres = _lloyd_faiss(fit, centres, n_iter, seed)
        else:
            centres = _lloyd_torch(fit, centres, n_iter)
        labels, d2 = nearest_centre(xt, centres)
    return KMeansResult(centres=centres.numpy(), labels=labels.numpy(), inertia=float(d2.double().sum()))
