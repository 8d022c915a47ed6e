"""Exact k-NN kernels: every backend returns brute-force neighbours (ties, duplicates, weak clusters,
many cells), the likelihood-ratio top-k breaks exact ties at random, and no import cycle."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest
import torch

from attacks.knn import knn_blocked, knn_brute, nearest_centre, topk_inner
from attacks.neighbors import knn_pruned


def exact_knn(q, r, k):
    """float64 reference: sorted k smallest distances per query."""
    d = np.sqrt(np.maximum(((q[:, None, :].astype(np.float64) - r[None, :, :]) ** 2).sum(-1), 0.0))
    return np.sort(d, axis=1)[:, :k], d


def assert_exact(q, r, k, idx, dist):
    """Same k distances as float64 brute force, reported distances true, no reference twice."""
    ref_sorted, d = exact_knn(q, r, k)
    true = np.take_along_axis(d, idx, axis=1)
    scale = 1e-4 * (np.abs(r).max() ** 2 + np.abs(q).max() ** 2) * r.shape[1]  # float32 expanded-form rounding
    assert np.allclose(true**2, ref_sorted**2, atol=scale)  # the neighbours are the k nearest (ties: any)
    assert np.allclose(dist.astype(np.float64) ** 2, true**2, atol=scale)
    assert all(len(set(row)) == k for row in idx.tolist())


def pools():
    rng = np.random.default_rng(11)
    means = rng.normal(size=(40, 12))
    clustered = np.repeat(means, 60, axis=0) + rng.normal(0, 0.1, size=(2400, 12))
    weak = np.repeat(means, 60, axis=0) + rng.normal(0, 2.0, size=(2400, 12))
    dup = np.repeat(rng.normal(size=(300, 12)), 8, axis=0)  # every reference 8 times: ties
    grid = rng.integers(0, 3, size=(2400, 12)).astype(float)  # integer lattice: many exact ties
    yield "clustered", clustered, clustered[::7] + rng.normal(0, 0.05, size=(343, 12))
    yield "weak", weak, weak[::7] + rng.normal(0, 1.0, size=(343, 12))
    yield "duplicates", dup, dup[::9]
    yield "lattice", grid, rng.integers(0, 3, size=(200, 12)).astype(float)


@pytest.mark.parametrize("name,refs,queries", list(pools()), ids=[p[0] for p in pools()])
def test_every_backend_is_exact(name, refs, queries):
    for idx, dist in (knn_blocked(queries, refs, 6, block_size=50), knn_brute(queries, refs, 6, backend="faiss"),
                      knn_brute(queries, refs, 6, backend="torch"),
                      knn_pruned(queries, refs, 6, n_cells=150, n_probe=1),  # many cells, one probe
                      knn_pruned(queries, refs, 6, n_cells=40, chunk=64, fallback_fraction=1.0)):
        assert_exact(queries, refs, 6, idx, dist)


def test_pruned_agrees_with_brute_on_distinct_distances():
    """Without ties the neighbour lists are identical, index for index."""
    rng = np.random.default_rng(3)
    means = rng.normal(size=(80, 16))
    refs = np.repeat(means, 50, axis=0) + rng.normal(0, 0.3, size=(4000, 16))
    queries = means[rng.integers(80, size=500)] + rng.normal(0, 0.3, size=(500, 16))
    idx, _, stats = knn_pruned(queries, refs, 5, n_cells=60, chunk=128, return_stats=True)
    _, d = exact_knn(queries, refs, 5)
    assert np.array_equal(idx, np.argsort(d, axis=1)[:, :5])
    assert stats["algorithm"] == "pruned" and stats["distance_fraction"] < 0.5


def test_nearest_centre_matches_argmin():
    rng = np.random.default_rng(0)
    import torch

    x, c = rng.normal(size=(1000, 8)).astype(np.float32), rng.normal(size=(37, 8)).astype(np.float32)
    i, d2 = nearest_centre(torch.from_numpy(x), torch.from_numpy(c), block=100)
    full = ((x[:, None] - c[None]) ** 2).sum(-1)
    assert np.array_equal(i.numpy(), full.argmin(1)) and np.allclose(d2.numpy(), full.min(1), atol=1e-4)


def test_topk_inner_is_exact_and_breaks_ties_uniformly():
    rng = np.random.default_rng(5)
    a, b = rng.random((300, 7)), rng.random((900, 7))
    top = topk_inner(a, b, 4, rng, block=32)
    assert np.array_equal(top, np.argsort(-(a @ b.T), axis=1, kind="stable")[:, :4])
    onehot = np.eye(3)[np.arange(60) % 3]  # 20 references per component, all tied within it
    first = np.array([topk_inner(np.eye(3)[:1], onehot, 1, np.random.default_rng(s))[0, 0] for s in range(600)])
    assert set(first) <= set(range(0, 60, 3))
    counts = np.bincount(first // 3, minlength=20)
    assert counts.min() > 10  # 600 draws over 20 tied references: each about 30 (binomial, p=1/20)


def test_linkage_and_neighbors_do_not_import_each_other():
    root = pathlib.Path(__file__).resolve().parents[1] / "attacks"

    def imports(name):
        tree = ast.parse((root / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}

    assert "attacks.linkage" not in imports("neighbors") and "attacks.linkage" not in imports("knn")
    assert "attacks.neighbors" not in imports("knn")


def test_kmeans_kernel_recovers_separated_clusters_on_both_backends():
    from sklearn.metrics import adjusted_rand_score

    from attacks.kmeans import kmeans_fit

    rng = np.random.default_rng(7)
    means = rng.normal(0, 3.0, size=(30, 8))
    y = np.repeat(np.arange(30), 40)
    x = means[y] + rng.normal(0, 0.3, size=(y.size, 8))
    fits = [kmeans_fit(x, 30, random_state=0, backend=b) for b in ("torch", "faiss")]
    for fit in fits:
        assert adjusted_rand_score(y, fit.labels) > 0.97
        d2 = ((x[:, None, :] - fit.centres[None].astype(np.float64)) ** 2).sum(-1)
        assert np.array_equal(fit.labels, d2.argmin(1))  # every row assigned to its nearest centre
        assert abs(fit.inertia - d2.min(1).sum()) < 1e-3 * fit.inertia
    assert kmeans_fit(x, 30, random_state=0, backend="torch").inertia == fits[0].inertia  # seeded


def test_kmeans_plus_plus_never_redraws_a_chosen_point_and_restores_threads():
    from attacks.kmeans import kmeans_plus_plus

    pts = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    x = pts.repeat_interleave(500, dim=0)  # 6 distinct points, each 500 times
    threads = torch.get_num_threads()
    for seed in range(5):
        for trials in (1, 4):
            c = kmeans_plus_plus(x, 6, torch.Generator().manual_seed(seed), n_trials=trials)
            assert torch.unique(c, dim=0).shape[0] == 6  # D^2 sampling: duplicates of a centre have weight 0
    assert torch.get_num_threads() == threads
