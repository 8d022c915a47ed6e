"""The anonymous upload pool, the auditor's oracle, and the file contract between them.

What the cloud sees is an :class:`UploadPool`: embeddings, optional text, label and session.
It has **no user field**; that is a type-level fact (see ``tests/test_uploads.py``).  The
ground-truth map ``upload_id -> user`` lives only in an :class:`Oracle`, and the users' trained
distributions only in :class:`UserDistributions`; both are for scoring attacks, never for fitting.

Files (docs/file_formats.md):

* ``uploads.parquet``: ``upload_id`` int64 unique, ``embedding`` list<float32> of fixed length
  (``n_tokens * token_dim``, tokens flattened), optional ``text`` string, ``label`` int64,
  ``session`` int64 (0 = training uploads, 1.. = later inference queries).  CSV with
  ``emb_0..emb_{d-1}`` columns is accepted on read; a CSV without ``upload_id`` has its rows
  numbered ``0..n-1`` in file order.
* ``oracle.parquet``: ``upload_id`` int64, ``user`` string.
* ``user_distributions.json``: ``{"family": "beta"|"gaussian"|"static", "users": {user: params}}``
  with flattened per-dimension parameters: ``alpha``/``beta`` (Beta), ``mean``/``std`` (Gaussian)
  or ``value`` (static embedding, a point mass).  Beta may carry a shared affine map
  ``"transform": {"loc": [...], "scale": [...]}`` (embedding = loc + scale * x).

Every reader validates schema, lengths, finiteness and dtype and raises :class:`InputError`
with one line naming the file and the problem.  Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from idfree_core.atomic import atomic_path, write_text_atomic
from idfree_core.errors import InputError

POOL_COLUMNS = ("upload_id", "embedding", "text", "label", "session")
# Column names that identify a user or a device.  A pool carrying one is a privacy finding.
IDENTIFIER_PATTERN = re.compile(
    r"^(user|user_?id|uid|userid|username|user_?name|author|account|account_?id|email|"
    r"device|device_?id|client|client_?id|ip|ip_?addr(ess)?|mac|imei|idfa|phone|"
    r"cookie|session_?id|install_?id|advertising_?id)$",
    re.IGNORECASE,
)
FAMILY_PARAMS = {"beta": ("alpha", "beta"), "gaussian": ("mean", "std"), "static": ("value",)}


def _fail(path: str | Path, problem: str) -> InputError:
    return InputError(f"{path}: {problem}")


def _as_int64(values, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"{what} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


@dataclass(frozen=True, eq=False)
class UploadPool:
    """What the cloud receives: anonymous uploads, one row each, in an order independent of user.

    ``embedding`` is ``(n, n_tokens * token_dim)`` float32 with each row a *fresh* sample from the
    uploading device's distribution.  There is deliberately no user, device or client field.
    """

    upload_id: np.ndarray
    embedding: np.ndarray
    text: np.ndarray | None = None
    label: np.ndarray | None = None
    session: np.ndarray | None = None
    n_tokens: int = 1

    def __post_init__(self) -> None:
        uid = _as_int64(self.upload_id, "upload_id")
        emb = np.asarray(self.embedding)
        if emb.ndim != 2:
            raise InputError(f"embedding must be a 2-D array (n, d), got shape {emb.shape}")
        if emb.shape[0] != uid.shape[0]:
            raise InputError(f"embedding has {emb.shape[0]} rows but upload_id has {uid.shape[0]}")
        if emb.shape[0] == 0:
            raise InputError("the pool is empty")
        if not np.all(np.isfinite(emb)):
            raise InputError("embedding contains NaN or infinite values")
        if np.unique(uid).size != uid.size:
            raise InputError("upload_id values are not unique")
        if self.n_tokens < 1 or emb.shape[1] % self.n_tokens:
            raise InputError(f"embedding width {emb.shape[1]} is not a multiple of n_tokens={self.n_tokens}")
        object.__setattr__(self, "upload_id", uid)
        object.__setattr__(self, "embedding", emb.astype(np.float32, copy=False))
        n = uid.shape[0]
        if self.text is not None:
            text = np.asarray(self.text, dtype=object)
            if text.shape != (n,):
                raise InputError(f"text has shape {text.shape}, expected ({n},)")
            object.__setattr__(self, "text", text)
        for name in ("label", "session"):
            value = getattr(self, name)
            if value is not None:
                arr = _as_int64(value, name)
                if arr.shape != (n,):
                    raise InputError(f"{name} has shape {arr.shape}, expected ({n},)")
                object.__setattr__(self, name, arr)
        if self.session is not None and np.any(self.session < 0):
            raise InputError("session must be >= 0 (0 = training uploads, 1.. = inference queries)")

    @property
    def n(self) -> int:
        return int(self.upload_id.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[1])

    def select(self, mask_or_index) -> "UploadPool":
        """A sub-pool (boolean mask or integer index), keeping every field aligned."""
        idx = np.asarray(mask_or_index)
        pick = (lambda a: None if a is None else a[idx])
        return UploadPool(
            upload_id=self.upload_id[idx], embedding=self.embedding[idx], text=pick(self.text),
            label=pick(self.label), session=pick(self.session), n_tokens=self.n_tokens,
        )

    def sessions(self) -> np.ndarray:
        """Session index per row (all zeros when the pool carries no session column)."""
        return self.session if self.session is not None else np.zeros(self.n, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Oracle:
    """Ground truth ``upload_id -> user``: the auditor's side, used only to score attacks."""

    upload_id: np.ndarray
    user: np.ndarray

    def __post_init__(self) -> None:
        uid = _as_int64(self.upload_id, "oracle upload_id")
        user = np.asarray([str(u) for u in np.asarray(self.user, dtype=object)], dtype=object)
        if uid.shape != user.shape or uid.ndim != 1:
            raise InputError("oracle upload_id and user must be 1-D and of equal length")
        if np.unique(uid).size != uid.size:
            raise InputError("oracle upload_id values are not unique")
        object.__setattr__(self, "upload_id", uid)
        object.__setattr__(self, "user", user)

    @property
    def users(self) -> tuple[str, ...]:
        """Distinct users, sorted."""
        return tuple(sorted(set(self.user.tolist())))

    def users_for(self, upload_ids: Iterable[int]) -> np.ndarray:
        """User of each upload id; raises :class:`InputError` if any id is unknown to the oracle."""
        ids = np.asarray(upload_ids, dtype=np.int64)
        order = np.argsort(self.upload_id)
        sorted_ids = self.upload_id[order]
        pos = np.searchsorted(sorted_ids, ids)
        pos_clipped = np.minimum(pos, sorted_ids.size - 1)
        missing = sorted_ids[pos_clipped] != ids
        if np.any(missing):
            raise InputError(
                f"{int(missing.sum())} upload ids are not in the oracle (e.g. {int(ids[missing][0])}): "
                "the oracle does not match the pool"
            )
        return self.user[order[pos_clipped]]

    def codes_for(self, pool: UploadPool) -> tuple[np.ndarray, tuple[str, ...]]:
        """Integer user codes aligned with ``pool`` rows, and the user name of each code."""
        names = self.users_for(pool.upload_id)
        users, codes = np.unique(names.astype(str), return_inverse=True)
        return codes.astype(np.int64), tuple(users.tolist())


@dataclass(frozen=True, eq=False)
class UserDistributions:
    """Each user's trained distribution, flattened per dimension (auditor side, scoring only).

    ``params[name]`` is ``(n_users, D)`` float64 with rows in the order of ``users``.
    """

    family: str
    users: tuple[str, ...]
    params: Mapping[str, np.ndarray]
    loc: np.ndarray | None = None
    scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILY_PARAMS:
            raise InputError(f"unknown family {self.family!r}; expected one of {sorted(FAMILY_PARAMS)}")
        users = tuple(str(u) for u in self.users)
        if not users:
            raise InputError("no users")
        expected = FAMILY_PARAMS[self.family]
        if set(self.params) != set(expected):
            raise InputError(f"{self.family} parameters must be {list(expected)}, got {sorted(self.params)}")
        params = {}
        dim = None
        for name in expected:
            arr = np.asarray(self.params[name], dtype=np.float64)
            if arr.ndim != 2 or arr.shape[0] != len(users):
                raise InputError(f"parameter {name!r} must have shape (n_users={len(users)}, D), got {arr.shape}")
            if dim is not None and arr.shape[1] != dim:
                raise InputError(f"parameter {name!r} has {arr.shape[1]} dimensions, expected {dim}")
            dim = arr.shape[1]
            if not np.all(np.isfinite(arr)):
                raise InputError(f"parameter {name!r} contains NaN or infinite values")
            if name in ("alpha", "beta") and np.any(arr <= 0):
                raise InputError(f"Beta parameter {name!r} must be > 0")
            if name == "std" and np.any(arr <= 0):
                raise InputError("Gaussian std must be > 0")
            params[name] = arr
        for name in ("loc", "scale"):
            value = getattr(self, name)
            if value is not None:
                arr = np.asarray(value, dtype=np.float64).reshape(-1)
                if arr.shape != (dim,) or not np.all(np.isfinite(arr)):
                    raise InputError(f"transform {name!r} must be {dim} finite numbers")
                if name == "scale" and np.any(arr == 0):
                    raise InputError("transform scale must be nonzero")
                object.__setattr__(self, name, arr)
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "params", params)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def dim(self) -> int:
        return int(next(iter(self.params.values())).shape[1])

    def to_json_dict(self) -> dict:
        out: dict = {"family": self.family, "users": {
            u: {k: self.params[k][i].tolist() for k in FAMILY_PARAMS[self.family]}
            for i, u in enumerate(self.users)
        }}
        if self.loc is not None or self.scale is not None:
            dim = self.dim
            loc = self.loc if self.loc is not None else np.zeros(dim)
            scale = self.scale if self.scale is not None else np.ones(dim)
            out["transform"] = {"loc": loc.tolist(), "scale": scale.tolist()}
        return out

    @classmethod
    def from_json_dict(cls, data: object, source: str = "user_distributions") -> "UserDistributions":
        if not isinstance(data, dict) or "family" not in data or "users" not in data:
            raise _fail(source, 'expected an object with "family" and "users"')
        family = data["family"]
        if family not in FAMILY_PARAMS:
            raise _fail(source, f"unknown family {family!r}; expected one of {sorted(FAMILY_PARAMS)}")
        users = data["users"]
        if not isinstance(users, dict) or not users:
            raise _fail(source, '"users" must be a non-empty object {user: parameters}')
        names = FAMILY_PARAMS[family]
        rows: dict[str, list] = {k: [] for k in names}
        for user, p in users.items():
            if not isinstance(p, dict) or set(p) != set(names):
                raise _fail(source, f"user {user!r} must have exactly the keys {list(names)}")
            for k in names:
                v = p[k]
                if not isinstance(v, list) or not v or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                    raise _fail(source, f"user {user!r} parameter {k!r} must be a non-empty list of numbers")
                rows[k].append(v)
        lengths = {len(v) for k in names for v in rows[k]}
        if len(lengths) != 1:
            raise _fail(source, f"parameter lists have different lengths {sorted(lengths)}")
        transform = data.get("transform")
        loc = scale = None
        if transform is not None:
            if family != "beta" or not isinstance(transform, dict) or set(transform) != {"loc", "scale"}:
                raise _fail(source, '"transform" must be {"loc": [...], "scale": [...]} and only for beta')
            loc, scale = transform["loc"], transform["scale"]
        try:
            return cls(family=family, users=tuple(users), params={k: np.asarray(rows[k], dtype=np.float64) for k in names},
                       loc=loc, scale=scale)
        except (InputError, TypeError, ValueError) as exc:
            raise _fail(source, str(exc)) from None


# --------------------------------------------------------------------------- writing


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
    """Write ``oracle.parquet`` (atomically)."""
    table = pa.table({"upload_id": pa.array(oracle.upload_id, type=pa.int64()),
                      "user": pa.array([str(u) for u in oracle.user], type=pa.string())})
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)


def write_user_distributions(dists: UserDistributions, path: str | Path) -> None:
    """Write ``user_distributions.json`` (atomically)."""
    write_text_atomic(path, json.dumps(dists.to_json_dict()))


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


def _embedding_from_table(table: pa.Table, path) -> np.ndarray:
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
            values = col.flatten().to_numpy(zero_copy_only=False)
            return values.reshape(-1, width) if width else values.reshape(len(col), 0)
        lengths = np.diff(col.offsets.to_numpy())
        if lengths.size and (lengths.min() != lengths.max()):
            raise _fail(path, f"ragged embeddings: row lengths range from {lengths.min()} to {lengths.max()}")
        if lengths.size and lengths[0] == 0:
            raise _fail(path, "embeddings are empty lists")
        values = col.flatten()
        if values.null_count:
            raise _fail(path, "embedding values contain nulls")
        return values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), -1)
    emb_cols = [c for c in table.column_names if re.fullmatch(r"emb_\d+", c)]
    if not emb_cols:
        raise _fail(path, "missing column 'embedding' (or emb_0..emb_{d-1} columns)")
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
        mats.append(col.to_numpy().astype(np.float32))
    return np.stack(mats, axis=1)


def read_uploads_with_findings(path: str | Path) -> tuple[UploadPool, tuple[str, ...]]:
    """Read and validate an uploads file; also return identifier-like columns found in it.

    Identifier columns (user, device, ip, ...) are *not* loaded into the pool: their presence is a
    privacy finding the caller must report loudly.
    """
    table = _read_table(path)
    if table.num_rows == 0:
        raise _fail(path, "no rows")
    csv_file = Path(path).suffix.lower() == ".csv"
    if "upload_id" not in table.column_names and not csv_file:
        raise _fail(path, "missing column 'upload_id'")
    findings = tuple(c for c in table.column_names if IDENTIFIER_PATTERN.match(c))
    if "upload_id" in table.column_names:
        upload_id = _int_column(table, "upload_id", path)
    else:  # CSVs as they come: rows numbered 0..n-1 in file order
        upload_id = np.arange(table.num_rows, dtype=np.int64)
    embedding = _embedding_from_table(table, path)
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


def read_uploads(path: str | Path) -> UploadPool:
    """Read and validate ``uploads.parquet`` (or a CSV with ``emb_*`` columns)."""
    return read_uploads_with_findings(path)[0]


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


def read_user_distributions(path: str | Path) -> UserDistributions:
    """Read and validate ``user_distributions.json`` (plain JSON; NaN/Infinity are rejected)."""
    p = Path(path)
    if not p.exists():
        raise _fail(p, "file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(p, f"cannot read ({type(exc).__name__})") from None

    def _reject_constant(name: str):
        raise InputError(f"{p}: non-finite number {name} is not allowed")

    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _fail(p, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return UserDistributions.from_json_dict(data, source=str(p))


def anonymize(
    embedding: np.ndarray,
    user: Iterable[str],
    *,
    text: Iterable[str] | None = None,
    label: Iterable[int] | None = None,
    session: Iterable[int] | None = None,
    n_tokens: int = 1,
    rng: np.random.Generator,
) -> tuple[UploadPool, Oracle]:
    """Shuffle per-user records into an anonymous pool and split off the oracle.

    Rows are permuted with ``rng`` and numbered ``0..n-1`` *after* the shuffle, so neither row
    order nor ``upload_id`` carries information about the user.
    """
    emb = np.asarray(embedding)
    users = np.asarray([str(u) for u in user], dtype=object)
    perm = rng.permutation(emb.shape[0])

    def take(values, dtype=None):
        return None if values is None else np.asarray(list(values), dtype=dtype)[perm]

    upload_id = np.arange(emb.shape[0], dtype=np.int64)
    pool = UploadPool(upload_id=upload_id, embedding=emb[perm], text=take(text, object),
                      label=take(label), session=take(session), n_tokens=n_tokens)
    return pool, Oracle(upload_id=upload_id, user=users[perm])
