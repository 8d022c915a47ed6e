"""Reading and writing the upload files, with bounded work (see :mod:`idfree_core.uploads`).

Every reader validates schema, lengths, finiteness and dtype and raises :class:`InputError` with
one line naming the file and the problem.  Sizes are capped before the expensive work:
``max_bytes`` (JSON), ``max_rows`` and ``max_dim`` (uploads); the defaults are
:data:`LIMITS` and each reader takes a keyword to raise them.  Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from idfree_core.atomic import PRIVATE, atomic_path, write_text_atomic
from idfree_core.errors import InputError
from idfree_core.jsonable import read_json_bounded
from idfree_core.uploads.contract import POOL_COLUMNS, Oracle, UploadPool, UserDistributions, _as_float32, _as_int64, _fail
from idfree_core.uploads.findings import identifier_findings

# default caps on what a reader accepts (raise them with the readers' keywords)
LIMITS = {"max_bytes": 512 * 2**20, "max_rows": 20_000_000, "max_dim": 65_536, "max_int_digits": 30}


def write_uploads(pool: UploadPool, path: str | Path) -> None:
    """Write ``pool`` to ``uploads.parquet`` (atomically)."""
    flat = pa.array(pool.embedding.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, pool.n * pool.dim + 1, pool.dim, dtype=np.int32))
    columns = {"upload_id": pa.array(pool.upload_id, type=pa.int64()),
               "embedding": pa.ListArray.from_arrays(offsets, flat)}
    if pool.text is not None:
        columns["text"] = pa.array([str(t) for t in pool.text], type=pa.string())
    if pool.label is not None:
        columns["label"] = pa.array(pool.label, type=pa.int64())
    if pool.session is not None:
        columns["session"] = pa.array(pool.session, type=pa.int64())
    table = pa.table(columns).replace_schema_metadata({"idfree.n_tokens": str(pool.n_tokens)})
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def write_oracle(oracle: Oracle, path: str | Path) -> None:
    """Write ``oracle.parquet`` (atomically, owner-only: it is the ground truth)."""
    table = pa.table({"upload_id": pa.array(oracle.upload_id, type=pa.int64()),
                      "user": pa.array([str(u) for u in oracle.user], type=pa.string())})
    with atomic_path(path, suffix=".parquet", mode=PRIVATE) as tmp:
        pq.write_table(table, tmp)


def write_user_distributions(dists: UserDistributions, path: str | Path) -> None:
    """Write ``user_distributions.json`` (atomically, owner-only: it is the ground truth)."""
    write_text_atomic(path, json.dumps(dists.to_json_dict()), mode=PRIVATE)


# --------------------------------------------------------------------------- reading


def _read_table(path: str | Path) -> pa.Table:
    p = Path(path)
    if not p.exists():
        raise _fail(p, "file not found")
    if p.is_dir():
        raise _fail(p, "is a folder, expected a file")
    if p.stat().st_size == 0:
        raise _fail(p, "file is empty")
    suffix = p.suffix.lower()
    try:
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            return pacsv.read_csv(p)
        return pq.read_table(p)
    except (pa.ArrowException, OSError, ValueError) as exc:
        kind = "CSV" if suffix == ".csv" else "Parquet"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(p, f"not a readable {kind} file ({first})") from None


def _int_column(table: pa.Table, name: str, path) -> np.ndarray:
    col = table.column(name)
    if col.null_count:
        raise _fail(path, f"column {name!r} has {col.null_count} missing values")
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        raise _fail(path, f"column {name!r} must be int64, got {col.type}")
    try:
        return _as_int64(col.to_numpy(), f"column {name!r}")
    except InputError as exc:
        raise _fail(path, str(exc)) from None


def _embedding_from_table(table: pa.Table, path, max_dim: int) -> np.ndarray:
    def check_dim(d):
        if d > max_dim:
            raise _fail(path, f"{d} embedding dimensions is past the limit of {max_dim} (raise it with max_dim=)")

    if "embedding" in table.column_names:
        col = table.column("embedding").combine_chunks()
        if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
            raise _fail(path, f"column 'embedding' must be list<float32>, got {col.type}")
        if col.null_count:
            raise _fail(path, f"column 'embedding' has {col.null_count} missing rows")
        if not (pa.types.is_floating(col.type.value_type) or pa.types.is_integer(col.type.value_type)):
            raise _fail(path, f"column 'embedding' must hold floats, got {col.type.value_type}")
        if pa.types.is_fixed_size_list(col.type):
            width = col.type.list_size
            check_dim(width)
            values = col.flatten().to_numpy(zero_copy_only=False)
            return values.reshape(-1, width) if width else values.reshape(len(col), 0)
        lengths = np.diff(col.offsets.to_numpy())
        if lengths.size and (lengths.min() != lengths.max()):
            raise _fail(path, f"ragged embeddings: row lengths range from {lengths.min()} to {lengths.max()}")
        if lengths.size and lengths[0] == 0:
            raise _fail(path, "embeddings are empty lists")
        if lengths.size:
            check_dim(int(lengths[0]))
        values = col.flatten()
        if values.null_count:
            raise _fail(path, "embedding values contain nulls")
        try:
            return _as_float32(values.to_numpy(zero_copy_only=False), "embedding").reshape(len(col), -1)
        except InputError as exc:
            raise _fail(path, str(exc)) from None
    emb_cols = [c for c in table.column_names if re.fullmatch(r"emb_\d+", c)]
    if not emb_cols:
        raise _fail(path, "missing column 'embedding' (or emb_0..emb_{d-1} columns)")
    check_dim(len(emb_cols))
    idx = sorted(int(c[4:]) for c in emb_cols)
    if idx != list(range(len(idx))):
        raise _fail(path, "emb_* columns must be emb_0..emb_{d-1} without gaps")
    mats = []
    for i in idx:
        col = table.column(f"emb_{i}")
        if col.null_count:
            raise _fail(path, f"column 'emb_{i}' has missing values (ragged embeddings?)")
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise _fail(path, f"column 'emb_{i}' must be numeric, got {col.type}")
        try:
            mats.append(_as_float32(col.to_numpy(), f"column 'emb_{i}'"))
        except InputError as exc:
            raise _fail(path, str(exc)) from None
    return np.stack(mats, axis=1)


def read_uploads_with_findings(path: str | Path, oracle: Oracle | None = None, *,
                               max_rows: int = LIMITS["max_rows"], max_dim: int = LIMITS["max_dim"],
                               oracle_source: str | Path | None = None) -> tuple[UploadPool, tuple[str, ...]]:
    """Read and validate an uploads file; also return identifier-like columns found in it.

    Identifier columns (by normalised name or content, :mod:`idfree_core.uploads.findings`; with
    ``oracle``, content is tested for agreement with its users) are *not* loaded into the pool:
    their presence is a privacy finding the caller must report loudly.  With ``oracle`` every
    upload id must be covered by it (one-line error naming ``oracle_source``, else the uploads).
    ``max_rows``/``max_dim`` cap the file (one-line error past them).
    """
    table = _read_table(path)
    if table.num_rows == 0:
        raise _fail(path, "no rows")
    if table.num_rows > max_rows:
        raise _fail(path, f"{table.num_rows} rows is past the limit of {max_rows} (raise it with max_rows=)")
    if table.num_columns > max_dim + len(POOL_COLUMNS) + 64:
        raise _fail(path, f"{table.num_columns} columns is past the limit (max_dim={max_dim}; raise it with max_dim=)")
    csv_file = Path(path).suffix.lower() == ".csv"
    if "upload_id" not in table.column_names and not csv_file:
        raise _fail(path, "missing column 'upload_id'")
    if "upload_id" in table.column_names:
        upload_id = _int_column(table, "upload_id", path)
    else:  # CSVs as they come: rows numbered 0..n-1 in file order
        upload_id = np.arange(table.num_rows, dtype=np.int64)
    embedding = _embedding_from_table(table, path, max_dim)
    if oracle is not None:
        try:
            oracle.users_for(upload_id)
        except InputError as exc:
            raise _fail(oracle_source or path, f"{exc} ({Path(path).name})") from None
    side = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names
            if c not in ("upload_id", "embedding") and not re.fullmatch(r"emb_\d+", c)}
    try:
        findings = identifier_findings(side, upload_id, oracle)
    except InputError as exc:
        raise _fail(path, str(exc)) from None
    text = label = session = None
    if "text" in table.column_names:
        col = table.column("text")
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise _fail(path, f"column 'text' must be string, got {col.type}")
        text = np.asarray([t if t is not None else "" for t in col.to_pylist()], dtype=object)
    if "label" in table.column_names:
        label = _int_column(table, "label", path)
    if "session" in table.column_names:
        session = _int_column(table, "session", path)
    meta = table.schema.metadata or {}
    n_tokens = 1
    raw = meta.get(b"idfree.n_tokens")
    if raw is not None:
        try:
            n_tokens = int(raw)
        except ValueError:
            raise _fail(path, f"bad idfree.n_tokens metadata {raw!r}") from None
    try:
        pool = UploadPool(upload_id=upload_id, embedding=embedding, text=text, label=label,
                          session=session, n_tokens=n_tokens)
    except InputError as exc:
        raise _fail(path, str(exc)) from None
    return pool, findings


def read_uploads(path: str | Path, **limits) -> UploadPool:
    """Read and validate ``uploads.parquet`` (or a CSV with ``emb_*`` columns); ``limits`` as above."""
    return read_uploads_with_findings(path, **limits)[0]


def read_oracle(path: str | Path, pool: UploadPool | None = None) -> Oracle:
    """Read ``oracle.parquet`` (or CSV); if ``pool`` is given, check every upload id is covered."""
    table = _read_table(path)
    if table.num_rows == 0:
        raise _fail(path, "no rows")
    for name in ("upload_id", "user"):
        if name not in table.column_names:
            raise _fail(path, f"missing column {name!r}")
    upload_id = _int_column(table, "upload_id", path)
    users = table.column("user")
    if users.null_count:
        raise _fail(path, f"column 'user' has {users.null_count} missing values")
    try:
        oracle = Oracle(upload_id=upload_id, user=np.asarray([str(u) for u in users.to_pylist()], dtype=object))
        if pool is not None:
            oracle.users_for(pool.upload_id)
    except InputError as exc:
        raise _fail(path, str(exc)) from None
    return oracle


def read_user_distributions(path: str | Path, max_bytes: int = LIMITS["max_bytes"]) -> UserDistributions:
    """Read and validate ``user_distributions.json`` (strict, bounded JSON: NaN/Infinity, huge
    integers, deep nesting and files past ``max_bytes`` are refused with one line)."""
    p = Path(path)
    try:
        data = read_json_bounded(p, max_bytes=max_bytes, max_int_digits=LIMITS["max_int_digits"])
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return UserDistributions.from_json_dict(data, source=str(p))
