"""simulate(): the four files and their schema, the anonymity invariant, reproducibility."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

from idfree_core.errors import InputError
from idfree_core.pipeline import SimulationConfig, clear_cache, simulate
from idfree_core.uploads import IDENTIFIER_PATTERN, read_oracle, read_uploads, read_user_distributions

TINY = dict(n_users=6, docs_per_user=20, d_model=16, n_heads=2, n_layers=1, central_epochs=1, warmup_epochs=1,
            device_epochs=2, cloud_epochs=1, rounds=1, ondevice_epochs=1, entropy_samples=3, n_bootstrap=200,
            baselines=("static", "ondevice"))


@pytest.fixture(scope="module")
def result():
    return simulate(SimulationConfig(**TINY, family="gaussian", seed=3), progress=False)


@pytest.fixture(scope="module")
def written(result, tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    result.write(out)
    return out


def test_writes_four_files_with_the_contract_schema(result, written):
    assert sorted(p.name for p in written.iterdir()) == ["metrics.json", "oracle.parquet", "uploads.parquet",
                                                          "user_distributions.json"]
    pool = read_uploads(written / "uploads.parquet")
    oracle = read_oracle(written / "oracle.parquet", pool)
    dists = read_user_distributions(written / "user_distributions.json")
    corpus = result.corpus
    n_train, n_test = corpus.n_docs("train"), corpus.n_docs("test")
    assert pool.n == n_train + n_test
    assert (pool.sessions() == 0).sum() == n_train and (pool.sessions() == 1).sum() == n_test
    assert pool.dim == pool.n_tokens * TINY["d_model"] and pool.n_tokens == 1
    assert dists.family == "gaussian" and set(dists.users) == set(corpus.users) == set(oracle.users)
    assert dists.dim == TINY["d_model"]
    # each upload's text/label is a real training (session 0) or test (session 1) document of its user
    users = oracle.users_for(pool.upload_id)
    for i in range(0, pool.n, 7):
        split = "train" if pool.session[i] == 0 else "test"
        assert (pool.text[i], int(pool.label[i])) in corpus.split(split)[users[i]]
    metrics = json.loads((written / "metrics.json").read_text())
    for name in ("central", "idfree", "static", "ondevice"):
        acc = metrics["accuracy"][name]
        assert 0 <= acc["ci"][0] <= acc["value"] <= acc["ci"][1] <= 1
    for name in ("idfree_minus_central", "idfree_minus_static"):
        gap = metrics["gap"][name]
        assert gap["ci"][0] <= gap["value"] <= gap["ci"][1]
    assert set(metrics["ceiling"]) == {"text_only", "user_aware"}
    assert set(metrics["latency_ms"]) >= {"sample", "forward", "forward_with_embedding"}
    assert metrics["config"]["family"] == "gaussian" and metrics["seed"] == 3


def test_no_user_anywhere_in_uploads(written):
    table = pq.read_table(written / "uploads.parquet")
    assert not [c for c in table.column_names if IDENTIFIER_PATTERN.match(c)]
    assert set(table.column_names) <= {"upload_id", "embedding", "text", "label", "session"}
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    assert not any("user" in (k + v).lower() for k, v in meta.items() if not k.startswith("ARROW"))
    # no user name in any value of the uploads; only the oracle file carries them
    users = read_oracle(written / "oracle.parquet").users
    values = " ".join(str(v) for c in table.column_names if c != "embedding" for v in table.column(c).to_pylist())
    assert not [u for u in users if u in values]


def _adjacent_same(codes):
    return int(np.sum(codes[1:] == codes[:-1]))


def _order_pvalue(codes, seed=0, n_perm=999):
    """Permutation test: are same-user uploads adjacent more often than under a random order?"""
    rng = np.random.default_rng(seed)
    observed = _adjacent_same(codes)
    null = np.array([_adjacent_same(rng.permutation(codes)) for _ in range(n_perm)])
    return (1 + np.sum(null >= observed)) / (n_perm + 1)


def test_upload_order_is_independent_of_user(result):
    codes, _ = result.oracle.codes_for(result.pool)
    order = np.argsort(result.pool.upload_id)
    codes = codes[order]
    assert _order_pvalue(codes) > 0.001
    # position by user: no user sits systematically early or late (Kruskal-Wallis over users)
    positions = [np.flatnonzero(codes == u) for u in np.unique(codes)]
    assert stats.kruskal(*positions).pvalue > 0.001
    # control: the same tests reject the unshuffled, user-ordered sequence
    assert _order_pvalue(np.sort(codes)) <= 0.001
    assert stats.kruskal(*[np.flatnonzero(np.sort(codes) == u) for u in np.unique(codes)]).pvalue < 0.001


def test_static_family_uploads_one_vector_per_user():
    res = simulate(SimulationConfig(**{**TINY, "baselines": ()}, family="static", seed=3), progress=False)
    codes, _ = res.oracle.codes_for(res.pool)
    firsts = []
    for u in np.unique(codes):
        rows = res.pool.embedding[codes == u]
        assert np.allclose(rows, rows[0])
        firsts.append(rows[0])
    # every user left the common initialization: no two users share a vector (fully linkable)
    assert np.unique(np.round(np.array(firsts), 6), axis=0).shape[0] == len(firsts)
    assert set(res.metrics["accuracy"]) == {"central", "idfree"}
    assert res.distributions.family == "static"


def test_gaussian_uploads_are_fresh_samples(result):
    codes, _ = result.oracle.codes_for(result.pool)
    rows = result.pool.embedding[codes == 0]
    assert np.unique(rows, axis=0).shape[0] == rows.shape[0]  # no two uploads share a sample


def test_predictions_and_trajectories_exposed(result):
    n_test = result.corpus.n_docs("test")
    for name in ("central", "idfree", "static", "ondevice"):
        p = result.predictions[name]
        assert p.correct.shape == p.entropy.shape == (n_test,)
        assert np.isclose(p.accuracy, result.metrics["accuracy"][name]["value"])
    idf = result.predictions["idfree"]
    assert idf.sample_entropy.shape == (n_test,)
    assert np.all(idf.sample_entropy >= 0) and np.all(idf.sample_entropy <= np.log(2) + 1e-9)
    assert set(idf.per_user()) == set(result.users)
    traj = result.trajectories
    assert traj.shape[0] == len(result.users) and traj.shape[1] == result.metrics["device"]["steps_total"] + 1
    assert np.allclose(traj[:, 0], 0.0) and np.all(traj >= 0)


def test_same_seed_same_metrics(result):
    clear_cache()
    again = simulate(SimulationConfig(**TINY, family="gaussian", seed=3), progress=False)
    skip = {"wall_time_s", "latency_ms", "timings_s"}
    assert {k: v for k, v in again.metrics.items() if k not in skip} == \
           {k: v for k, v in result.metrics.items() if k not in skip}
    np.testing.assert_array_equal(again.pool.embedding, result.pool.embedding)
    np.testing.assert_array_equal(again.oracle.user, result.oracle.user)


@pytest.mark.parametrize("kwargs", [dict(family="dirichlet"), dict(n_users=1), dict(std=0.0), dict(std=float("nan")),
                                    dict(device_lr=-1.0), dict(rounds=0), dict(baselines=("oracle",)),
                                    dict(data_format="xml"), dict(device_val_fraction=1.0), dict(n_tokens=0),
                                    dict(batch_size=1e308), dict(batch_size=2.5), dict(n_users=10**9),
                                    dict(rounds=True), dict(spread=-1.0), dict(family="kumaraswamy", spread=0.3)])
def test_bad_config_raises_input_error(kwargs):
    with pytest.raises(InputError) as info:
        SimulationConfig(**kwargs)
    assert "\n" not in str(info.value)


def _snapshot(folder):
    return {p.name: (p.read_bytes() if p.is_file() else "folder", p.stat().st_mode & 0o777)
            for p in sorted(folder.iterdir())}


def test_ground_truth_is_owner_only_also_after_a_rewrite(result, tmp_path):
    result.write(tmp_path)
    for name in ("oracle.parquet", "user_distributions.json"):
        (tmp_path / name).chmod(0o644)  # even if someone loosened them, a rewrite restores 0600
    result.write(tmp_path)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes["oracle.parquet"] == modes["user_distributions.json"] == 0o600
    assert sorted(modes) == ["metrics.json", "oracle.parquet", "uploads.parquet", "user_distributions.json"]


def test_failed_rerun_leaves_the_previous_run_byte_identical(result, tmp_path, monkeypatch):
    import os

    from idfree_core import atomic

    result.write(tmp_path)
    before = _snapshot(tmp_path)
    other = simulate(SimulationConfig(**{**TINY, "baselines": ()}, family="gaussian", seed=4), progress=False)
    real = os.replace

    def failing(src, dst):
        if str(dst).endswith("metrics.json") and not str(src).endswith(".old"):  # the new file cannot go in
            raise PermissionError(13, "Permission denied", str(dst))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(InputError, match="unchanged") as info:
        other.write(tmp_path)
    assert "\n" not in str(info.value)
    monkeypatch.undo()
    assert _snapshot(tmp_path) == before  # no temporary left behind either
    # a folder named like a run file is refused before anything is written
    (tmp_path / "metrics.json").unlink()
    (tmp_path / "metrics.json").mkdir()
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match="is a folder"):
        other.write(tmp_path)
    assert _snapshot(tmp_path) == before


def test_cli_rejects_an_out_file_before_any_work(tmp_path, monkeypatch, capsys):
    import idfree_core.pipeline as pipeline
    from reports.cli import main

    def boom(*a, **k):
        raise AssertionError("simulate ran")

    monkeypatch.setattr(pipeline, "simulate", boom)
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["simulate", "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a folder" in err[0]
    assert main(["simulate", "--set", "batch_size=1e308", "--out", str(tmp_path / "o")]) == 2
    assert "batch_size must be an integer" in capsys.readouterr().err


def _write_csv(path, with_label: bool):
    rng = np.random.default_rng(0)
    words = "good bad fine awful great poor nice dull".split()
    lines = ["author,review" + (",stars" if with_label else "")]
    for u in range(4):
        for _ in range(10):
            row = f"a{u}," + " ".join(rng.choice(words, 5))
            lines.append(row + (f",{int(rng.integers(0, 2))}" if with_label else ""))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("with_label", [True, False])
def test_simulate_on_a_csv_file(tmp_path, with_label):
    path = tmp_path / "reviews.csv"
    _write_csv(path, with_label)
    cfg = SimulationConfig(**{**TINY, "n_users": 50}, data=str(path), user_column="author", text_column="review",
                           label_column="stars" if with_label else None, family="beta")
    res = simulate(cfg, progress=False)
    assert res.corpus.task == ("classify" if with_label else "next_token")
    assert res.pool.n_tokens == (1 if with_label else 5) and (res.pool.label is None) != with_label
    assert len(res.oracle.users) == 4
    n = {len(p.correct) for p in res.predictions.values()}
    assert len(n) == 1  # every method is scored on the same items (paired gaps)
    res.write(tmp_path / "out")
    assert read_uploads(tmp_path / "out" / "uploads.parquet").n == res.pool.n


def test_several_uploads_per_text():
    res = simulate(SimulationConfig(**{**TINY, "baselines": ()}, uploads_per_text=2, seed=4), progress=False)
    n_train = res.corpus.n_docs("train")
    assert (res.pool.sessions() == 0).sum() == 2 * n_train
    assert res.metrics["pool"]["n_training_uploads"] == 2 * n_train
