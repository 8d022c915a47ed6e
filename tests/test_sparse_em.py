"""attacks.sparse_em: the candidate-restricted E-step (Neal & Hinton 1998) against the full EM."""

import numpy as np
import pytest
import torch

from attacks.mixture_em import VARIANTS, DiagonalMixture
from attacks.sparse_em import CandidateMixture, nearest_means


def _data(k=12, per=80, d=6, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    means = 4.0 * rng.normal(size=(k, d))
    lab = np.repeat(np.arange(k), per)
    return (means[lab] + noise * rng.normal(size=(lab.size, d))).astype(np.float32), lab


def _fit(cls, x, k, **kw):
    if cls is CandidateMixture:
        kw.setdefault("dense_max", 0)  # the candidate E-step even for these few components
    return cls(k, n_init=1, max_iter=30, random_state=5, **kw, **VARIANTS["gaussian-diag"]).fit(x)


def test_up_to_dense_max_components_the_full_e_step_runs_whatever_the_candidates():
    xo, _ = _data(seed=1, noise=1.5)  # overlapping: one candidate per row would give a worse fit (test below)
    full = _fit(DiagonalMixture, xo, 12)
    dense = _fit(CandidateMixture, xo, 12, n_candidates=1, refresh=1, dense_max=12)
    np.testing.assert_allclose(dense.means_, full.means_, atol=1e-6)
    assert dense.log_likelihood_ == pytest.approx(full.log_likelihood_, rel=1e-9)
    one = _fit(CandidateMixture, xo, 12, n_candidates=1, refresh=1, dense_max=11)
    assert one.log_likelihood_ < full.log_likelihood_ - 1.0


def test_all_components_as_candidates_is_the_full_em():
    x, _ = _data(seed=1, noise=1.5)  # overlapping clusters: posteriors spread over several components
    full, cand = _fit(DiagonalMixture, x, 12), _fit(CandidateMixture, x, 12, n_candidates=12, refresh=1)
    np.testing.assert_allclose(cand.means_, full.means_, atol=2e-2)  # float32 sums in another order
    np.testing.assert_allclose(cand.log_likelihood_, full.log_likelihood_, rtol=1e-4)


def test_few_candidates_equal_the_full_em_on_separated_clusters_but_not_on_overlapping_ones():
    x, lab = _data()
    full, cand = _fit(DiagonalMixture, x, 12), _fit(CandidateMixture, x, 12, n_candidates=2, refresh=3)
    np.testing.assert_allclose(cand.means_, full.means_, atol=1e-3)
    np.testing.assert_array_equal(cand.predict_top(x, 1)[0][:, 0], full.predict_max(x)[0])
    xo, _ = _data(seed=1, noise=1.5)
    full_o, one = _fit(DiagonalMixture, xo, 12), _fit(CandidateMixture, xo, 12, n_candidates=1, refresh=1)
    assert one.log_likelihood_ < full_o.log_likelihood_ - 1.0  # hard assignment: a lower bound of a worse fit
    assert one.log_likelihood_ <= one.row_log_likelihood(xo).sum() + 1e-2  # the bound at its own parameters


def test_nearest_means_and_top_posteriors():
    rng = np.random.default_rng(0)
    import torch

    x, mu = torch.from_numpy(rng.normal(size=(300, 5)).astype(np.float32)), torch.from_numpy(rng.normal(size=(40, 5)).astype(np.float32))
    got = np.sort(nearest_means(x, mu, 3, block=64).numpy(), axis=1)
    dist = ((x.numpy()[:, None, :] - mu.numpy()[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(got, np.sort(np.argsort(dist, axis=1)[:, :3], axis=1))
    xs, _ = _data()
    m = _fit(CandidateMixture, xs, 12, n_candidates=4)
    idx, logp = m.predict_top(xs, 2)
    assert idx.shape == (xs.shape[0], 2) and np.all(logp[:, 0] >= logp[:, 1]) and np.all(logp <= 1e-6)
    with pytest.raises(ValueError):
        CandidateMixture(0).fit(xs)


def test_accumulate_sparse_product_matches_per_candidate_scatter_adds():
    import torch
    g = torch.Generator().manual_seed(3)
    k, b, m, d = 9, 40, 4, 5
    xb, idx = torch.randn(b, d, generator=g), torch.randint(0, k, (b, m), generator=g)
    r = torch.rand(b, m, generator=g)
    ru = r * torch.rand(b, m, generator=g)
    acc = [torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64),
           torch.zeros(k, d, dtype=torch.float64), torch.zeros(k, d, dtype=torch.float64)]
    CandidateMixture._accumulate(acc, xb, idx, r, ru)
    want = [torch.zeros_like(a) for a in acc]
    x64, r64, u64 = xb.double(), r.double(), ru.double()
    for i in range(b):
        for j in range(m):
            c = int(idx[i, j])
            want[0][c] += r64[i, j]
            want[1][c] += u64[i, j]
            want[2][c] += u64[i, j] * x64[i]
            want[3][c] += u64[i, j] * x64[i] ** 2
    for got, ref in zip(acc, want):
        assert torch.allclose(got, ref, rtol=1e-6, atol=1e-9)
    assert float(acc[2].abs().sum()) > 0


def test_nearest_means_faiss_and_torch_paths_agree(monkeypatch):
    import torch

    import attacks.knn as knn

    g = torch.Generator().manual_seed(7)
    mu = torch.randn(300, 16, generator=g)
    x = mu[torch.randint(0, 300, (2000,), generator=g)] + 0.5 * torch.randn(2000, 16, generator=g)
    fast = nearest_means(x, mu, 8)
    monkeypatch.setattr(knn, "faiss_available", lambda: False)
    slow = nearest_means(x, mu, 8, block=512)
    assert fast.shape == slow.shape == (2000, 8) and fast.dtype == slow.dtype == torch.int64
    torch.testing.assert_close(fast.sort(1).values, slow.sort(1).values)  # the same neighbours (topk: any order)
    d2 = ((x[:, None, :] - mu[fast]) ** 2).sum(-1)
    assert bool((d2[:, 1:] >= d2[:, :-1] - 1e-4).all())  # faiss: nearest first


def test_faiss_nearest_means_do_not_depend_on_the_query_block(monkeypatch):
    import attacks.sparse_em as se

    g = torch.Generator().manual_seed(0)
    x, mu = torch.randn(5000, 16, generator=g), torch.randn(300, 16, generator=g)
    whole = se.nearest_means(x, mu, 8)
    monkeypatch.setattr(se, "FAISS_BLOCK", 777)
    assert torch.equal(se.nearest_means(x, mu, 8), whole)
