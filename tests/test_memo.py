"""The suite run's memo (attacks.memo): computed once per key inside a scope, never outside one, no caller
changes a shared value, and the suite's figures do not depend on it."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from attacks import linkage, memo, scale
from attacks.features import gaussianize, standardized_embedding
from attacks.suite import run_attacks
from idfree_core.uploads import anonymize


def _pool(n_users=8, per_user=30, dim=6, seed=0, text=False):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    emb = rng.normal(size=(n_users, dim))[users] + 0.6 * rng.normal(size=(users.size, dim))
    texts = [f"w{u} common{rng.integers(30)}" for u in users] if text else None
    session = (rng.random(users.size) < 0.3).astype(int)
    return anonymize(emb.astype(np.float32), users, text=texts, session=session, rng=rng)


def test_memoized_computes_once_inside_a_scope_and_every_time_outside():
    calls = []

    def compute():
        calls.append(1)
        return np.arange(3.0)

    memo.memoized("k", compute), memo.memoized("k", compute)
    assert len(calls) == 2 and not memo.active()
    with memo.scope():
        a = memo.memoized("k", compute)
        with memo.scope():  # a nested scope shares the outer memo
            b = memo.memoized("k", compute)
        assert a is b and len(calls) == 3 and memo.active()
    assert not memo.active()
    memo.memoized("k", compute)
    assert len(calls) == 4  # the memo ended with its scope


def test_check_scope_catches_a_caller_changing_a_shared_value():
    with pytest.raises(RuntimeError, match="changed in place"):
        with memo.scope(check=True):
            memo.memoized(("x",), lambda: {"a": np.zeros(4)})["a"][1] = 5.0
    with memo.scope(check=True):
        memo.memoized(("x",), lambda: {"a": np.zeros(4)})  # unchanged: no error


def test_content_key_tells_contents_shapes_and_dtypes_apart():
    a = np.arange(6, dtype=np.int64)
    assert memo.content_key(a) == memo.content_key(a.copy())
    assert memo.content_key(a) != memo.content_key(a[::-1])
    assert memo.content_key(a) != memo.content_key(a.reshape(2, 3))
    assert memo.content_key(a) != memo.content_key(a.astype(np.int32))


def test_standardized_embedding_is_gaussianize_and_shared_per_pool():
    pool, other = _pool(seed=0)[0], _pool(seed=1)[0]
    np.testing.assert_array_equal(standardized_embedding(pool), gaussianize(pool.embedding))
    with memo.scope():
        a, b = standardized_embedding(pool), standardized_embedding(pool)
        c = standardized_embedding(other)
        f32 = standardized_embedding(pool, np.float32)
    assert a is b and c is not a and f32.dtype == np.float32
    np.testing.assert_array_equal(f32, gaussianize(pool.embedding).astype(np.float32))


def _figures(report):
    """Each row's value, and its CI where that is a function of the attack's output alone (not the ARI and
    NMI bootstrap of a partition that two attacks share: the memo gives both the first one's draws)."""
    return sorted((r.name, r.features, r.metric, round(r.value, 12),
                   None if r.metric in ("ari", "nmi") else tuple(np.round(r.ci, 12))) for r in report.results)


@pytest.mark.parametrize("features,at_scale", [("embedding", False), ("both", False), ("embedding", True)])
def test_suite_figures_do_not_depend_on_the_memo_and_no_attack_changes_a_shared_value(features, at_scale,
                                                                                        monkeypatch):
    if at_scale:  # the large-pool path on a small pool: attacks.scale's shared fits and sparse scoring
        monkeypatch.setattr(scale, "SCALE_ROWS", 100)
        monkeypatch.setattr(scale, "SCALE_WORK", 100)
        monkeypatch.setattr(linkage, "SPARSE_MIN_COMPONENTS", 2)
    pool, oracle = _pool(text=features == "both")
    kwargs = dict(attacks="clustering,linkage", features=features, random_state=3, progress=False)
    with memo.scope(check=True):  # raises if any attack changed a memoized array in place
        with_memo = run_attacks(pool, oracle, **kwargs)
    monkeypatch.setattr(memo, "scope", lambda check=False: contextlib.nullcontext())
    without = run_attacks(pool, oracle, **kwargs)
    assert _figures(with_memo) == _figures(without)
    assert with_memo.summary["n_users_estimated"] == without.summary["n_users_estimated"]
