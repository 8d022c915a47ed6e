"""Large-table scoring (attacks.scoring_sparse) agrees with the dense formulas of attacks.scoring."""

import numpy as np
import pytest

from attacks import scoring, scoring_sparse


def _labels(rng, n=3000, n_true=40, k=50, flip=0.3, noise=0.05):
    truth = rng.integers(0, n_true, n)
    pred = truth % k
    f = rng.random(n) < flip
    pred[f] = rng.integers(0, k, f.sum())
    pred[rng.random(n) < noise] = -1
    return truth, pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_metrics_equal_dense(seed):
    rng = np.random.default_rng(seed)
    truth, pred = _labels(rng)
    table, noise = scoring.contingency(truth, pred)
    dense = scoring.partition_metrics(table, noise)
    rows, cols, counts, nz = scoring_sparse.sparse_table(truth, pred, table.shape[0], table.shape[1])
    sparse = scoring_sparse.sparse_metrics(rows, cols, counts, nz, *table.shape)
    for key, v in sparse.items():
        assert v == pytest.approx(dense[key], rel=1e-10, abs=1e-12), key


def test_sparse_null_and_bootstrap_match_dense_in_distribution():
    rng = np.random.default_rng(3)
    truth, pred = _labels(rng, n=4000, flip=0.5)
    table, noise = scoring.contingency(truth, pred)
    dn = scoring.permutation_null(truth, pred, 200, np.random.default_rng(0))
    sn = scoring_sparse.permutation_null(truth, pred, 200, np.random.default_rng(1))
    for key in ("attribution_accuracy", "ari", "nmi"):
        se = np.hypot(dn[key].std(), sn[key].std()) / np.sqrt(200)
        assert abs(dn[key].mean() - sn[key].mean()) < 4 * se + 1e-12, key
    db = scoring.bootstrap_metrics(table, noise, n_bootstrap=300, random_state=0)
    sb = scoring_sparse.bootstrap_metrics(table, noise, n_bootstrap=300, rng=np.random.default_rng(1))
    for key in ("ari", "nmi"):
        se = np.hypot(db[key].std(), sb[key].std()) / np.sqrt(300)
        assert abs(db[key].mean() - sb[key].mean()) < 4 * se, key
        assert sb[key].std() == pytest.approx(db[key].std(), rel=0.25), key


def test_large_table_draws_fewer_permutations_and_says_so():
    assert scoring_sparse.n_permutations_at(100, 1000) == 100
    assert scoring_sparse.n_permutations_at(100, 4 * scoring_sparse.LARGE_TABLE) == 25
    assert scoring_sparse.n_permutations_at(100, 100 * scoring_sparse.LARGE_TABLE) == scoring_sparse.MIN_PERMUTATIONS
    rng = np.random.default_rng(4)
    n_true = 1100
    truth = np.repeat(np.arange(n_true), 20)
    pred = truth.copy()
    f = rng.random(truth.size) < 0.2
    pred[f] = rng.integers(0, n_true, f.sum())
    res = scoring.score_partition("t", truth, pred, n_permutations=100, n_bootstrap=50, random_state=0)
    acc = next(r for r in res if r.metric == "attribution_accuracy")
    assert acc.details["n_permutations"] == scoring_sparse.n_permutations_at(100, n_true * n_true) < 100
    assert acc.value == pytest.approx(1 - (f & (pred != truth)).mean(), abs=0.01)
    assert acc.advantage_ci[0] > 0.5


def test_sparse_metrics_with_emptied_cells_equal_dense():
    """A bootstrap draw empties some of the original nonzero cells (and whole users or clusters): NMI stays finite."""
    rng = np.random.default_rng(4)
    truth, pred = _labels(rng, n=400, n_true=30, k=40)
    table, noise = scoring.contingency(truth, pred)
    rows, cols, counts, nz = scoring_sparse.sparse_table(truth, pred, *table.shape)
    counts = counts * (rng.random(counts.size) < 0.5)  # half the cells emptied
    t2 = np.zeros(table.shape)
    t2[rows, cols] = counts
    dense = scoring.partition_metrics(t2, nz)
    sparse = scoring_sparse.sparse_metrics(rows, cols, counts, nz, *table.shape)
    assert np.isfinite(sparse["nmi"])
    for key, v in sparse.items():
        assert v == pytest.approx(dense[key], rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize("shape,density", [((40, 55), 0.05), ((60, 30), 0.2), ((25, 25), 0.6), ((30, 80), 0.01)])
def test_sparse_matching_equals_dense_hungarian(shape, density):
    from attacks.scoring import matched_correct
    from attacks.scoring_sparse import matched_correct_sparse

    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        table = rng.poisson(3.0, shape) * (rng.random(shape) < density)
        table[rng.integers(shape[0])] = 0  # a user without uploads in any cluster
        rows, cols = np.nonzero(table)
        assert matched_correct_sparse(rows, cols, table[rows, cols], *shape) == matched_correct(table)
    assert matched_correct_sparse(np.zeros(0, int), np.zeros(0, int), np.zeros(0, int), 3, 4) == 0
