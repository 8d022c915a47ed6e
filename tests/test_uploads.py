"""The upload file contract (idfree_core.uploads): anonymity, round trips, and every bad input."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from idfree_core.errors import InputError
from idfree_core.uploads import (
    IDENTIFIER_PATTERN,
    Oracle,
    UploadPool,
    UserDistributions,
    anonymize,
    read_oracle,
    read_uploads,
    read_uploads_with_findings,
    read_user_distributions,
    write_oracle,
    write_uploads,
    write_user_distributions,
)

USER_LIKE = ("user", "device", "client", "author", "account", "owner", "person", "uid", "ip", "email")


def _pool(n=12, d=4, seed=0, text=True):
    rng = np.random.default_rng(seed)
    users = np.repeat([f"u{i}" for i in range(3)], n // 3)
    return anonymize(rng.random((n, d)).astype(np.float32), users,
                     text=[f"text {i}" for i in range(n)] if text else None,
                     label=rng.integers(0, 3, n), session=np.tile([0, 0, 1], n // 3), rng=rng)


# --------------------------------------------------------------------------- anonymity


def test_upload_pool_has_no_user_like_field():
    names = [f.name for f in dataclasses.fields(UploadPool)]
    assert names, "UploadPool must be a dataclass"
    bad = [n for n in names if IDENTIFIER_PATTERN.match(n) or any(w in n.lower() for w in USER_LIKE)]
    assert not bad, f"UploadPool carries user-like fields {bad}"
    # the check above can fail: the Oracle's own field is user-like
    assert any(IDENTIFIER_PATTERN.match(f.name) for f in dataclasses.fields(Oracle))


def _order_pvalues(user_codes: np.ndarray, n_users: int) -> tuple[float, float]:
    """(chi-square of position decile x user, Spearman of position vs user code) p-values."""
    pos_bin = np.arange(user_codes.size) * 10 // user_codes.size
    table = np.zeros((10, n_users))
    np.add.at(table, (pos_bin, user_codes), 1)
    chi_p = stats.chi2_contingency(table).pvalue
    rho_p = stats.spearmanr(np.arange(user_codes.size), user_codes).pvalue
    return float(chi_p), float(rho_p)


def test_anonymize_order_is_independent_of_user():
    n_users, per = 20, 50
    users = np.repeat([f"user{i:02d}" for i in range(n_users)], per)  # grouped by user before anonymizing
    emb = np.zeros((users.size, 2), dtype=np.float32)
    pool, oracle = anonymize(emb, users, rng=np.random.default_rng(1))
    codes, names = oracle.codes_for(pool)
    assert len(names) == n_users
    chi_p, rho_p = _order_pvalues(codes, n_users)
    assert chi_p > 1e-3 and rho_p > 1e-3
    # upload ids are numbered after the shuffle: ids carry no user information either
    assert np.array_equal(np.sort(pool.upload_id), np.arange(users.size))
    assert stats.spearmanr(pool.upload_id, codes).pvalue > 1e-3
    # the same statistics detect the un-shuffled order (the test can fail)
    grouped = np.repeat(np.arange(n_users), per)
    assert max(_order_pvalues(grouped, n_users)) < 1e-10


def test_anonymize_p_values_are_uniform_across_seeds():
    users = np.repeat([f"u{i}" for i in range(5)], 40)
    pvals = []
    for seed in range(30):
        pool, oracle = anonymize(np.zeros((users.size, 1)), users, rng=np.random.default_rng(seed))
        pvals.append(_order_pvalues(oracle.codes_for(pool)[0], 5)[1])
    assert stats.kstest(pvals, "uniform").pvalue > 1e-3


def test_anonymize_keeps_rows_aligned():
    pool, oracle = _pool()
    # text i was written with row i: the embedding row travelled with it
    rng = np.random.default_rng(0)
    users = np.repeat([f"u{i}" for i in range(3)], 4)
    emb = rng.random((12, 4)).astype(np.float32)
    idx = np.asarray([int(t.split()[1]) for t in pool.text])
    assert np.array_equal(pool.embedding, emb[idx])
    assert np.array_equal(oracle.users_for(pool.upload_id), users[idx])


# --------------------------------------------------------------------------- round trips


def _assert_same_pool(a: UploadPool, b: UploadPool):
    assert np.array_equal(a.upload_id, b.upload_id)
    assert np.array_equal(a.embedding, b.embedding) and b.embedding.dtype == np.float32
    for name in ("text", "label", "session"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None)
        if x is not None:
            assert list(x) == list(y)
    assert a.n_tokens == b.n_tokens


def test_parquet_round_trip(tmp_path):
    pool, oracle = _pool()
    pool = UploadPool(pool.upload_id, pool.embedding, pool.text, pool.label, pool.session, n_tokens=2)
    write_uploads(pool, tmp_path / "uploads.parquet")
    write_oracle(oracle, tmp_path / "oracle.parquet")
    back = read_uploads(tmp_path / "uploads.parquet")
    _assert_same_pool(pool, back)
    o = read_oracle(tmp_path / "oracle.parquet", back)
    assert np.array_equal(o.users_for(pool.upload_id), oracle.users_for(pool.upload_id))


def test_minimal_parquet_round_trip(tmp_path):
    pool = UploadPool(upload_id=[5, 3, 9], embedding=np.eye(3))
    write_uploads(pool, tmp_path / "u.parquet")
    _assert_same_pool(pool, read_uploads(tmp_path / "u.parquet"))


def test_csv_with_emb_columns(tmp_path):
    pool, _ = _pool()
    frame = pd.DataFrame({"upload_id": pool.upload_id, "text": pool.text, "label": pool.label,
                          "session": pool.session})
    for j in range(pool.dim):
        frame[f"emb_{j}"] = pool.embedding[:, j]
    frame.to_csv(tmp_path / "uploads.csv", index=False)
    back = read_uploads(tmp_path / "uploads.csv")
    assert np.array_equal(back.upload_id, pool.upload_id)
    np.testing.assert_allclose(back.embedding, pool.embedding, rtol=1e-6)
    assert list(back.text) == list(pool.text) and np.array_equal(back.label, pool.label)


def test_distributions_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    d = UserDistributions("beta", ("a", "b"), {"alpha": rng.random((2, 3)) + 0.5, "beta": rng.random((2, 3)) + 0.5},
                          loc=[-1.0, 0.0, 1.0], scale=[2.0, 2.0, 0.5])
    write_user_distributions(d, tmp_path / "d.json")
    back = read_user_distributions(tmp_path / "d.json")
    assert back.family == "beta" and back.users == ("a", "b")
    for k in ("alpha", "beta"):
        np.testing.assert_array_equal(back.params[k], d.params[k])
    np.testing.assert_array_equal(back.loc, d.loc)
    np.testing.assert_array_equal(back.scale, d.scale)
    g = UserDistributions("gaussian", ("x",), {"mean": [[0.1, -2.0]], "std": [[0.2, 1.0]]})
    write_user_distributions(g, tmp_path / "g.json")
    assert read_user_distributions(tmp_path / "g.json").params["std"].tolist() == [[0.2, 1.0]]


# --------------------------------------------------------------------------- identifier columns


def test_identifier_columns_are_detected_not_loaded(tmp_path):
    table = pa.table({"upload_id": [0, 1], "embedding": [[0.1, 0.2], [0.3, 0.4]],
                      "user": ["a", "b"], "device_id": ["d1", "d2"], "IP": ["1.1.1.1", "2.2.2.2"], "note": ["x", "y"]})
    pq.write_table(table, tmp_path / "u.parquet")
    pool, found = read_uploads_with_findings(tmp_path / "u.parquet")
    assert set(found) == {"user", "device_id", "IP"}
    assert pool.n == 2 and not any(hasattr(pool, c) for c in ("user", "device_id"))


def test_clean_file_has_no_identifier_finding(tmp_path):
    pool, _ = _pool()
    write_uploads(pool, tmp_path / "u.parquet")
    assert read_uploads_with_findings(tmp_path / "u.parquet")[1] == ()


# --------------------------------------------------------------------------- bad inputs


def _parquet(path, **columns):
    pq.write_table(pa.table(columns), path)


def _bad_uploads(tmp_path, case):
    p = tmp_path / "bad_uploads.parquet"
    if case == "missing_file":
        return tmp_path / "missing_uploads.parquet"
    if case == "empty_file":
        p.write_bytes(b"")
    elif case == "not_parquet":
        p.write_bytes(b"this is not a parquet file at all\n" * 4)
    elif case == "no_rows":
        _parquet(p, upload_id=pa.array([], pa.int64()), embedding=pa.array([], pa.list_(pa.float32())))
    elif case == "missing_upload_id":
        _parquet(p, embedding=[[0.1, 0.2]])
    elif case == "missing_embedding":
        _parquet(p, upload_id=[0, 1], text=["a", "b"])
    elif case == "duplicate_ids":
        _parquet(p, upload_id=[0, 0], embedding=[[0.1], [0.2]])
    elif case == "ragged":
        _parquet(p, upload_id=[0, 1], embedding=[[0.1, 0.2], [0.3]])
    elif case == "nan":
        _parquet(p, upload_id=[0, 1], embedding=[[0.1, float("nan")], [0.3, 0.4]])
    elif case == "inf":
        _parquet(p, upload_id=[0, 1], embedding=[[0.1, float("inf")], [0.3, 0.4]])
    elif case == "string_ids":
        _parquet(p, upload_id=["a", "b"], embedding=[[0.1], [0.2]])
    elif case == "fractional_ids":
        _parquet(p, upload_id=[0.5, 1.0], embedding=[[0.1], [0.2]])
    elif case == "string_embedding":
        _parquet(p, upload_id=[0, 1], embedding=[["a"], ["b"]])
    elif case == "scalar_embedding":
        _parquet(p, upload_id=[0, 1], embedding=[0.1, 0.2])
    elif case == "int_text":
        _parquet(p, upload_id=[0, 1], embedding=[[0.1], [0.2]], text=[1, 2])
    elif case == "null_label":
        _parquet(p, upload_id=[0, 1], embedding=[[0.1], [0.2]], label=pa.array([1, None], pa.int64()))
    elif case == "negative_session":
        _parquet(p, upload_id=[0, 1], embedding=[[0.1], [0.2]], session=[0, -1])
    elif case == "empty_embedding_lists":
        _parquet(p, upload_id=[0, 1], embedding=pa.array([[], []], pa.list_(pa.float32())))
    elif case == "csv_gap":
        p = tmp_path / "bad_uploads.csv"
        p.write_text("upload_id,emb_0,emb_2\n0,0.1,0.2\n")
    elif case == "csv_ragged":
        p = tmp_path / "bad_uploads.csv"
        p.write_text("upload_id,emb_0,emb_1\n0,0.1,0.2\n1,0.3,\n")
    elif case == "csv_nan":
        p = tmp_path / "bad_uploads.csv"
        p.write_text("upload_id,emb_0,emb_1\n0,0.1,nan\n1,0.3,0.4\n")
    elif case == "folder":
        p = tmp_path / "bad_uploads_dir.parquet"
        p.mkdir()
    else:  # pragma: no cover
        raise AssertionError(case)
    return p


UPLOAD_CASES = ["missing_file", "empty_file", "not_parquet", "no_rows", "missing_upload_id", "missing_embedding",
                "duplicate_ids", "ragged", "nan", "inf", "string_ids", "fractional_ids", "string_embedding",
                "scalar_embedding", "int_text", "null_label", "negative_session", "empty_embedding_lists",
                "csv_gap", "csv_ragged", "csv_nan", "folder"]


def _assert_one_line_naming(exc: InputError, path) -> None:
    msg = str(exc)
    assert "\n" not in msg.strip()
    assert path.name in msg, msg


@pytest.mark.parametrize("case", UPLOAD_CASES)
def test_bad_uploads_raise_input_error_naming_the_file(tmp_path, case):
    path = _bad_uploads(tmp_path, case)
    with pytest.raises(InputError) as info:
        read_uploads(path)
    _assert_one_line_naming(info.value, path)


@pytest.mark.parametrize("case", ["missing_file", "empty_file", "not_parquet", "no_rows", "missing_user",
                                  "missing_upload_id", "duplicate_ids", "null_user", "not_matching_pool"])
def test_bad_oracle(tmp_path, case):
    pool = UploadPool(upload_id=[0, 1, 2], embedding=np.zeros((3, 2)))
    p = tmp_path / "bad_oracle.parquet"
    if case == "missing_file":
        p = tmp_path / "nope_oracle.parquet"
    elif case == "empty_file":
        p.write_bytes(b"")
    elif case == "not_parquet":
        p.write_bytes(b"\x00garbage" * 10)
    elif case == "no_rows":
        _parquet(p, upload_id=pa.array([], pa.int64()), user=pa.array([], pa.string()))
    elif case == "missing_user":
        _parquet(p, upload_id=[0, 1, 2])
    elif case == "missing_upload_id":
        _parquet(p, user=["a", "b", "c"])
    elif case == "duplicate_ids":
        _parquet(p, upload_id=[0, 0, 1], user=["a", "b", "c"])
    elif case == "null_user":
        _parquet(p, upload_id=[0, 1, 2], user=["a", None, "c"])
    elif case == "not_matching_pool":
        _parquet(p, upload_id=[0, 1, 7], user=["a", "b", "c"])
    with pytest.raises(InputError) as info:
        read_oracle(p, pool)
    _assert_one_line_naming(info.value, p)


GOOD_BETA = {"family": "beta", "users": {"a": {"alpha": [1.0, 2.0], "beta": [3.0, 4.0]}}}


@pytest.mark.parametrize("case", ["missing_file", "bad_json", "nan", "infinity", "not_object", "no_users",
                                  "wrong_family", "wrong_keys", "non_positive_alpha", "zero_beta", "negative_std",
                                  "mismatched_lengths", "empty_list", "string_values", "bool_values",
                                  "transform_for_gaussian", "transform_wrong_length", "zero_scale"])
def test_bad_user_distributions(tmp_path, case):
    p = tmp_path / "bad_dists.json"
    data = json.loads(json.dumps(GOOD_BETA))
    text = None
    if case == "missing_file":
        p = tmp_path / "nope_dists.json"
    elif case == "bad_json":
        text = '{"family": "beta", "users": {'
    elif case == "nan":
        text = '{"family": "beta", "users": {"a": {"alpha": [NaN, 1.0], "beta": [1.0, 1.0]}}}'
    elif case == "infinity":
        text = '{"family": "beta", "users": {"a": {"alpha": [Infinity, 1.0], "beta": [1.0, 1.0]}}}'
    elif case == "not_object":
        text = "[1, 2, 3]"
    elif case == "no_users":
        data["users"] = {}
    elif case == "wrong_family":
        data["family"] = "cauchy"
    elif case == "wrong_keys":
        data["users"]["a"] = {"mean": [0.0, 0.0], "std": [1.0, 1.0]}
    elif case == "non_positive_alpha":
        data["users"]["a"]["alpha"] = [-1.0, 2.0]
    elif case == "zero_beta":
        data["users"]["a"]["beta"] = [0.0, 2.0]
    elif case == "negative_std":
        data = {"family": "gaussian", "users": {"a": {"mean": [0.0], "std": [-0.1]}}}
    elif case == "mismatched_lengths":
        data["users"]["b"] = {"alpha": [1.0], "beta": [1.0]}
    elif case == "empty_list":
        data["users"]["a"]["alpha"] = []
    elif case == "string_values":
        data["users"]["a"]["alpha"] = ["1", "2"]
    elif case == "bool_values":
        data["users"]["a"]["alpha"] = [True, True]
    elif case == "transform_for_gaussian":
        data = {"family": "gaussian", "users": {"a": {"mean": [0.0], "std": [1.0]}},
                "transform": {"loc": [0.0], "scale": [1.0]}}
    elif case == "transform_wrong_length":
        data["transform"] = {"loc": [0.0], "scale": [1.0]}
    elif case == "zero_scale":
        data["transform"] = {"loc": [0.0, 0.0], "scale": [1.0, 0.0]}
    if case != "missing_file":
        p.write_text(text if text is not None else json.dumps(data))
    with pytest.raises(InputError) as info:
        read_user_distributions(p)
    _assert_one_line_naming(info.value, p)


def test_good_distributions_file_reads(tmp_path):
    p = tmp_path / "good.json"
    p.write_text(json.dumps(GOOD_BETA))
    d = read_user_distributions(p)
    assert d.n_users == 1 and d.dim == 2


@pytest.mark.parametrize("kwargs", [
    dict(upload_id=[0, 1], embedding=np.zeros(2)),
    dict(upload_id=[0, 1], embedding=np.zeros((3, 2))),
    dict(upload_id=[], embedding=np.zeros((0, 2))),
    dict(upload_id=[0, 1], embedding=np.zeros((2, 3)), n_tokens=2),
    dict(upload_id=[0, 1], embedding=np.zeros((2, 2)), text=["a"]),
    dict(upload_id=[0, 1], embedding=np.zeros((2, 2)), label=[0.5, 1.0]),
])
def test_upload_pool_constructor_validates(kwargs):
    with pytest.raises(InputError):
        UploadPool(**kwargs)


def test_oracle_rejects_unknown_ids():
    o = Oracle(upload_id=[0, 1], user=["a", "b"])
    with pytest.raises(InputError, match="not in the oracle"):
        o.users_for([0, 5])


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    """Atomic output must not inherit mkstemp's private 0600 mode."""
    import os
    import stat

    from idfree_core.atomic import write_text_atomic

    target = tmp_path / "out.json"
    write_text_atomic(target, "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- hardening (issue 13)


@pytest.mark.parametrize("name", ["user-id", "client_ip", "android_id", "hashed_email", "user_hash", " user",
                                  "USER_ID ", "userId", "Email", "device"])
def test_identifier_column_variants_are_flagged_by_name(tmp_path, name):
    table = pa.table({"upload_id": [0, 1, 2], "embedding": [[0.1], [0.2], [0.3]], name: ["a", "b", "c"]})
    pq.write_table(table, tmp_path / "u.parquet")
    assert read_uploads_with_findings(tmp_path / "u.parquet")[1] == (name,)


def _with_column(tmp_path, column, values):
    pool, oracle = _pool(n=30)
    write_uploads(pool, tmp_path / "u.parquet")
    table = pq.read_table(tmp_path / "u.parquet")
    table = table.append_column(column, pa.array(values))
    pq.write_table(table, tmp_path / "v.parquet")
    return tmp_path / "v.parquet", pool, oracle


def test_identifier_columns_are_flagged_by_content(tmp_path):
    pool, oracle = _pool(n=30)
    users = oracle.users_for(pool.upload_id)
    key = {u: f"k{i * 7919 % 97}" for i, u in enumerate(sorted(set(users)))}
    path, _, _ = _with_column(tmp_path, "xq", [key[u] for u in users])  # a per-user key under a bland name
    assert read_uploads_with_findings(path)[1] == ("xq",)
    assert read_uploads_with_findings(path, oracle=oracle)[1] == ("xq",)  # agrees with the oracle's users
    # a grouping unrelated to the users: repetition alone flags it, agreement with the oracle does not
    rng = np.random.default_rng(1)
    path, _, _ = _with_column(tmp_path, "batch", rng.integers(0, 3, 30).tolist())
    assert read_uploads_with_findings(path)[1] == ("batch",)
    assert read_uploads_with_findings(path, oracle=oracle)[1] == ()
    # unique per row (a row number) and continuous values do not group uploads
    path, _, _ = _with_column(tmp_path, "row", list(range(100, 130)))
    assert read_uploads_with_findings(path)[1] == ()
    path, _, _ = _with_column(tmp_path, "score", rng.random(30).tolist())
    assert read_uploads_with_findings(path)[1] == ()


def test_free_text_with_emails_or_handles_is_flagged(tmp_path):
    notes = [f"note {i}" for i in range(30)]
    path, _, _ = _with_column(tmp_path, "note", notes)
    assert read_uploads_with_findings(path)[1] == ()
    for marker in ("write to ann.lee@example.org", "thanks @ann_lee"):
        path, _, _ = _with_column(tmp_path, "note", notes[:-1] + [marker])
        assert read_uploads_with_findings(path)[1] == ("note",)


def _no_warnings_error(call, match):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=match) as info:
            call()
    assert "\n" not in str(info.value)


def test_overflowing_values_and_ids_are_one_line_errors_without_warnings(tmp_path):
    pq.write_table(pa.table({"upload_id": [0, 1], "embedding": [[1e300, 0.0], [0.0, 0.0]]}), tmp_path / "a.parquet")
    _no_warnings_error(lambda: read_uploads(tmp_path / "a.parquet"), "float32 range")
    pq.write_table(pa.table({"upload_id": [1e20, 1.0], "embedding": [[0.0], [0.0]]}), tmp_path / "b.parquet")
    _no_warnings_error(lambda: read_uploads(tmp_path / "b.parquet"), "int64 range")
    (tmp_path / "c.csv").write_text("upload_id,emb_0,label\n0,0.5,1e30\n1,0.5,1\n")
    _no_warnings_error(lambda: read_uploads(tmp_path / "c.csv"), "int64 range")
    (tmp_path / "d.csv").write_text("upload_id,emb_0\n0,1e300\n1,0.5\n")
    _no_warnings_error(lambda: read_uploads(tmp_path / "d.csv"), "float32 range")


def test_dimension_and_row_caps(tmp_path):
    pq.write_table(pa.table({"upload_id": [0, 1, 2, 3], "embedding": [[0.0] * 101] * 4}), tmp_path / "w.parquet")
    _no_warnings_error(lambda: read_uploads(tmp_path / "w.parquet", max_dim=100), "101 embedding dimensions")
    assert read_uploads(tmp_path / "w.parquet", max_dim=101).dim == 101  # the limit can be raised
    _no_warnings_error(lambda: read_uploads(tmp_path / "w.parquet", max_rows=3), "4 rows")
    from idfree_core.uploads import LIMITS

    assert LIMITS["max_dim"] < 2_000_000  # the 4 x 2,000,000 file of issue 13 is refused by default


def test_hostile_json_is_a_one_line_error(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('{"family": "beta", "users": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _no_warnings_error(lambda: read_user_distributions(p), "nested too deeply")
    p.write_text('{"family": "beta", "users": {"a": {"alpha": [' + "9" * 5000 + '], "beta": [1]}}}')
    _no_warnings_error(lambda: read_user_distributions(p), "5000 digits")
    p.write_text('{"family": "beta", "users": {"a": {"alpha": [1e400], "beta": [1]}}}')
    _no_warnings_error(lambda: read_user_distributions(p), "overflows")
    p.write_text('{"family": "beta", "users": {}}' + " " * 2000)
    _no_warnings_error(lambda: read_user_distributions(p, max_bytes=1000), "limit of 1000 bytes")
    _no_warnings_error(lambda: read_user_distributions("/dev/zero"), "not a regular file")
