"""The pool, the oracle and the user distributions: validated containers of the file contract.

``UploadPool`` has no user field (a type-level fact); ``Oracle`` and ``UserDistributions`` are the
auditor's side.  Parameters of ``UserDistributions`` are validated by the family registry
(:mod:`idfree_core.families`).  See :mod:`idfree_core.uploads` for the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from idfree_core.errors import InputError
from idfree_core.families import FAMILY_SPECS, get_family_spec
from idfree_core.families.spec import PARAM_BOUND

POOL_COLUMNS = ("upload_id", "embedding", "text", "label", "session")
INT64_LIMIT = 2.0 ** 63  # float values at or past it do not fit in int64
FLOAT32_MAX = float(np.finfo(np.float32).max)

def _fail(path: str | Path, problem: str) -> InputError:
    return InputError(f"{path}: {problem}")


def _as_int64(values, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind == "u" and arr.size and arr.max() >= INT64_LIMIT:
        raise InputError(f"{what} has values past the int64 range (max {arr.max()})")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            if arr.size and np.abs(arr).max() >= INT64_LIMIT:
                raise InputError(f"{what} has values past the int64 range (max |value| {np.abs(arr).max():g})")
            arr = arr.astype(np.int64)
        else:
            raise InputError(f"{what} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _as_float32(values, what: str) -> np.ndarray:
    """``values`` as float32, refusing NaN, infinities and values past float32's range (no warning)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        raise InputError(f"{what} must be numeric, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InputError(f"{what} contains NaN or infinite values")
    if arr.size and arr.dtype != np.float32 and np.abs(arr).max() > FLOAT32_MAX:
        raise InputError(f"{what} has values past the float32 range (max |value| {float(np.abs(arr).max()):g})")
    return arr.astype(np.float32, copy=False)


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
        emb = _as_float32(emb, "embedding")
        if np.unique(uid).size != uid.size:
            raise InputError("upload_id values are not unique")
        if self.n_tokens < 1 or emb.shape[1] % self.n_tokens:
            raise InputError(f"embedding width {emb.shape[1]} is not a multiple of n_tokens={self.n_tokens}")
        object.__setattr__(self, "upload_id", uid)
        object.__setattr__(self, "embedding", emb)
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
        spec = get_family_spec(self.family)
        users = tuple(str(u) for u in self.users)
        if not users:
            raise InputError("no users")
        params = spec.validate(self.params, n_rows=len(users))
        dim = next(iter(params.values())).shape[1]
        if (self.loc is not None or self.scale is not None) and not spec.affine:
            raise InputError(f"family {self.family!r} takes no transform (loc, scale)")
        for name in ("loc", "scale"):
            value = getattr(self, name)
            if value is not None:
                arr = np.asarray(value, dtype=np.float64).reshape(-1)
                if arr.shape != (dim,) or not np.all(np.isfinite(arr)):
                    raise InputError(f"transform {name!r} must be {dim} finite numbers")
                if np.any(np.abs(arr) > PARAM_BOUND):
                    raise InputError(f"transform {name!r} has values past +-{PARAM_BOUND:.0e}")
                if name == "scale" and np.any(np.abs(arr) < 1 / PARAM_BOUND):
                    raise InputError(f"transform scale must be nonzero (|scale| >= {1 / PARAM_BOUND:.0e})")
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
            u: {k: self.params[k][i].tolist() for k in get_family_spec(self.family).param_names}
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
        try:
            spec = get_family_spec(family)
        except InputError as exc:
            raise _fail(source, str(exc)) from None
        users = data["users"]
        if not isinstance(users, dict) or not users:
            raise _fail(source, '"users" must be a non-empty object {user: parameters}')
        names = spec.param_names
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
            if not spec.affine or not isinstance(transform, dict) or set(transform) != {"loc", "scale"}:
                raise _fail(source, '"transform" must be {"loc": [...], "scale": [...]} and only for the '
                            f'families {[k for k, v in FAMILY_SPECS.items() if v.affine]}')
            loc, scale = transform["loc"], transform["scale"]
        try:
            return cls(family=family, users=tuple(users), params={k: np.asarray(rows[k], dtype=np.float64) for k in names},
                       loc=loc, scale=scale)
        except (InputError, TypeError, ValueError) as exc:
            raise _fail(source, str(exc)) from None


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
