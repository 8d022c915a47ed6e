"""The results store: one SQLite file per sweep folder, one committed row per finished point.

Each finished point is written in a single SQLite transaction (the row and its array artifacts
together), so a killed sweep leaves either the whole point or nothing.  Rows are keyed by the
point id (``spec.point_id``); the spec hash in the ``meta`` table guards against mixing two specs
in one store.  Arrays are stored as ``.npz`` blobs and read back with ``allow_pickle=False``.
Only the parent process of a sweep writes (see ``reports.sweep.executor``).
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from idfree_core.errors import InputError
from idfree_core.jsonable import to_jsonable

STORE_NAME = "results.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points (
    point_id TEXT PRIMARY KEY, idx INTEGER NOT NULL, config TEXT NOT NULL, status TEXT NOT NULL,
    metrics TEXT, error TEXT, elapsed_s REAL, finished_at REAL);
CREATE TABLE IF NOT EXISTS artifacts (
    point_id TEXT NOT NULL, name TEXT NOT NULL, npz BLOB NOT NULL, PRIMARY KEY (point_id, name));
"""


def _to_npz(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, value=np.asarray(array))
    return buf.getvalue()


def _from_npz(blob: bytes, where: str = "artifact") -> np.ndarray:
    try:
        with np.load(io.BytesIO(bytes(blob)), allow_pickle=False) as data:
            return data["value"]
    except Exception as exc:  # a damaged blob (BadZipFile, KeyError, EOFError, ...) is bad input, one line
        raise InputError(f"{where}: not a stored array ({type(exc).__name__}); the results store is damaged") from None


def _json_field(text, what: str, *, allow_null: bool = False):
    """A stored JSON object (``config``/``metrics``); anything else means a damaged or foreign store."""
    if text is None and allow_null:
        return None
    try:
        value = json.loads(text) if isinstance(text, (str, bytes)) else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise InputError(f"{what} is not a JSON object; the results store is damaged")
    return value


class ResultsStore:
    """SQLite results of one sweep in ``folder/results.sqlite``."""

    def __init__(self, folder: str | Path, *, create: bool = True) -> None:
        self.folder = Path(folder)
        self.path = self.folder / STORE_NAME
        if not create and not self.path.is_file():
            raise InputError(f"{self.folder}: no sweep results here (missing {STORE_NAME})")
        existed = self.path.is_file() and self.path.stat().st_size > 0
        if not create and not existed:
            raise InputError(f"{self.path}: empty file, not a results store")
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            if create:
                self._conn = sqlite3.connect(self.path, timeout=30)
            else:  # reading only: never write into a file we did not create
                self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
            if existed:
                self._check_schema()
            if create:
                with self._conn:
                    self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"{self.path}: not a results store ({exc})") from None

    def _check_schema(self) -> None:
        """An existing file must hold exactly our tables and columns (a foreign SQLite DB is refused)."""
        tables = {name for (name,) in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        want = {"meta": ["key", "value"],
                "points": ["point_id", "idx", "config", "status", "metrics", "error", "elapsed_s", "finished_at"],
                "artifacts": ["point_id", "name", "npz"]}
        if tables != set(want) or any([r[1] for r in self._conn.execute(f"PRAGMA table_info({t})")] != cols
                                       for t, cols in want.items()):
            self._conn.close()
            raise InputError(f"{self.path}: an SQLite database that is not an idfree-audit results store "
                             f"(tables {sorted(tables)}); refusing to read or write it")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ spec guard
    def meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def bind(self, spec_hash: str, spec: Mapping[str, Any]) -> None:
        """Claim the store for a spec; a store holding another spec's results is an error."""
        held = self.meta().get("spec_hash")
        if held is not None and held != spec_hash:
            raise InputError(
                f"{self.path}: holds results of another sweep spec (hash {held[:12]}, this spec "
                f"{spec_hash[:12]}); use a new output folder or the original spec")
        if held is None:
            with self._conn:
                self._conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
                    ("spec_hash", spec_hash), ("spec", json.dumps(to_jsonable(dict(spec)))),
                    ("created_at", str(time.time()))])

    def spec(self) -> dict[str, Any] | None:
        text = self.meta().get("spec")
        return None if text is None else _json_field(text, f"{self.path}: meta spec")

    # ------------------------------------------------------------------ writing
    def record(self, point_id: str, index: int, config: Mapping[str, Any], *, status: str,
               metrics: Mapping[str, Any] | None = None, error: str | None = None,
               elapsed_s: float | None = None, artifacts: Mapping[str, np.ndarray] | None = None) -> None:
        """Commit one point (row and artifacts) in one transaction; replaces an earlier failure."""
        if status not in ("ok", "failed"):
            raise ValueError(f"status must be 'ok' or 'failed', got {status!r}")
        metrics_json = None if metrics is None else json.dumps(to_jsonable(dict(metrics)), allow_nan=False)
        blobs = [(point_id, str(k), _to_npz(v)) for k, v in (artifacts or {}).items()]
        with self._conn:  # BEGIN ... COMMIT, rolled back on any exception
            self._conn.execute(
                "INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (point_id, int(index), json.dumps(to_jsonable(dict(config)), sort_keys=True), status,
                 metrics_json, error, elapsed_s, time.time()))
            self._conn.execute("DELETE FROM artifacts WHERE point_id = ?", (point_id,))
            self._conn.executemany("INSERT INTO artifacts VALUES (?, ?, ?)", blobs)

    # ------------------------------------------------------------------ reading
    def status(self) -> dict[str, str]:
        """``{point_id: "ok" | "failed"}`` for every recorded point."""
        return dict(self._conn.execute("SELECT point_id, status FROM points").fetchall())

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        """Recorded points in grid order: ``point_id, index, config, status, metrics, error, elapsed_s``."""
        query = "SELECT point_id, idx, config, status, metrics, error, elapsed_s FROM points"
        args: tuple = ()
        if status is not None:
            query, args = query + " WHERE status = ?", (status,)
        out = []
        for pid, idx, config, st, metrics, error, elapsed in self._conn.execute(query + " ORDER BY idx", args):
            where = f"{self.path}: point {str(pid)[:40]!r}"
            if st not in ("ok", "failed") or not isinstance(idx, int) or not isinstance(pid, str):
                raise InputError(f"{where}: bad status/index ({str(st)[:20]!r}, {str(idx)[:20]!r}); "
                                 "the results store is damaged")
            if elapsed is not None and not isinstance(elapsed, (int, float)):
                raise InputError(f"{where}: elapsed_s is not a number; the results store is damaged")
            out.append({"point_id": pid, "index": idx, "config": _json_field(config, f"{where}: config"),
                        "status": st, "metrics": _json_field(metrics, f"{where}: metrics", allow_null=True),
                        "error": None if error is None else str(error), "elapsed_s": elapsed})
        return out

    def artifacts(self, point_id: str) -> dict[str, np.ndarray]:
        rows = self._conn.execute("SELECT name, npz FROM artifacts WHERE point_id = ? ORDER BY name",
                                  (point_id,)).fetchall()
        return {str(name): _from_npz(blob, f"{self.path}: artifact {str(name)[:40]!r} of point {point_id[:40]!r}")
                for name, blob in rows}
