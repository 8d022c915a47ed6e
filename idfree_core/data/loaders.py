"""Loaders for real data in its public formats, each returning a ``Corpus``.

* ``load_csv(path, user_column, text_column, label_column=None, time_column=None, **options)`` and
  ``load_jsonl(...)`` (same arguments): generic files.  Labels are integers ``0..K-1`` or names
  (``pos``/``neg``, ``1 star``) numbered in natural sort order, the mapping kept in
  ``details["label_mapping"]``; no label column means a next-token corpus.  ``time_column``
  (numbers = Unix seconds, or date strings) gives the chronological split.
* ``load_sentiment140(path)``: the Sentiment140 CSV (no header, latin-1; columns polarity, id,
  date such as ``Mon Apr 06 22:19:45 PDT 2009``, query, user, text); polarity 0 -> 0, 4 -> 1;
  neutral rows (2, test file only) are dropped and counted in ``details["dropped_neutral"]``.
* ``load_amazon(path)``: Amazon reviews JSON lines (optionally ``.gz``), 2018 fields
  (``reviewerID``, ``overall``, ``reviewText``, ``unixReviewTime``) or 2023 fields (``user_id``,
  ``rating``, ``text``, ``timestamp`` in ms); rating 1-5 -> 3 classes (<=3 -> 0, 4 -> 1, 5 -> 2);
  reviews without text are dropped and counted.
* ``load_leaf_reddit(path)``: LEAF Reddit JSON (``{"users", "num_samples", "user_data": {user:
  {"x": [comment as token chunks], "y": [{"target_tokens", "created_utc", ...}]}}}``), a file or
  a folder of such files (users present in several files are merged); next-token task.
* ``load_corpus(path, format=None, **columns_and_options)``: dispatch on ``format`` or, when it is
  None, on the extension (``.csv`` / ``.jsonl`` / ``.json`` / folder) and the file's shape.

Every loader takes the options ``test_fraction=0.2``, ``seed=0``, ``max_users=None`` (keep the
most active users), ``min_docs_per_user=2`` and ``max_vocab=2000`` and splits each user's
documents 80/20 chronologically when times exist, else by a seeded shuffle
(``corpus.split_per_user``).  Bad input raises ``InputError`` naming the file and the problem.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from idfree_core.data.corpus import Corpus, Tokenizer, split_per_user
from idfree_core.errors import InputError

FORMATS = ("csv", "jsonl", "sentiment140", "amazon", "leaf", "persona")
_TZ_HOURS = {"PDT": -7, "PST": -8, "MDT": -6, "MST": -7, "CDT": -5, "CST": -6, "EDT": -4, "EST": -5,
             "UTC": 0, "GMT": 0}
_LEAF_SPECIAL = {"<BOS>", "<EOS>", "<PAD>"}


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: empty file")
    return p


def _read_text(p: Path, encoding: str) -> str:
    try:
        raw = gzip.open(p).read() if p.suffix == ".gz" else p.read_bytes()
    except (OSError, EOFError) as e:
        raise InputError(f"{p}: cannot read ({e})") from None
    if b"\x00" in raw:
        raise InputError(f"{p}: contains NUL bytes; not a {encoding} text file (wrong encoding?)")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise InputError(f"{p}: not valid {encoding} text at byte {e.start} (wrong encoding?)") from None
    if not text.strip():
        raise InputError(f"{p}: empty file")
    return text


def _parse_time(value: Any, where: str) -> float:
    """Unix seconds from a number or a date string."""
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        try:
            number = float(str(value))
        except ValueError:
            pass
    if number is not None:
        if not np.isfinite(number):
            raise InputError(f"{where}: time {str(value)[:40]!r} is not finite")
        return number
    try:
        ts = pd.Timestamp(str(value))
    except (ValueError, TypeError):
        ts = pd.NaT
    if ts is pd.NaT or pd.isna(ts):
        raise InputError(f"{where}: cannot parse time {str(value)[:40]!r}")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return float(ts.timestamp())


def _parse_label(value: Any, where: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: label {str(value)[:40]!r} is not an integer") from None
    if not np.isfinite(f) or f != int(f) or f < 0:
        raise InputError(f"{where}: label {str(value)[:40]!r} is not a non-negative integer")
    return int(f)


def _natural_key(name: str) -> tuple:
    """Sort key comparing digit runs as numbers: "2 stars" < "10 stars"."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part)


def _classes_from_labels(raw: list[Any], wheres: list[str], source: Path) -> tuple[list[int], dict[str, int] | None]:
    """Integer labels as they are; string labels (``pos``/``neg``, ``1 star``) mapped to classes.

    Names are numbered in natural sort order (digit runs compared as numbers, then text), so
    ``neg -> 0, pos -> 1`` and ``1 star -> 0 .. 5 stars -> 4``; the mapping is returned (and
    recorded in ``details["label_mapping"]``).  Mixing numbers and names is an error.
    """
    def numeric(v: Any) -> bool:
        if isinstance(v, bool):
            return False
        try:
            float(v)
            return True
        except (TypeError, ValueError):
            return False

    kinds = [numeric(v) for v in raw]
    if all(kinds):
        return [_parse_label(v, w) for v, w in zip(raw, wheres)], None
    if any(kinds):
        i = kinds.index(True)
        j = kinds.index(False)
        raise InputError(f"{source}: labels mix numbers and names ({wheres[i].rsplit(': ', 1)[-1]}: {str(raw[i])[:20]!r}, "
                         f"{wheres[j].rsplit(': ', 1)[-1]}: {str(raw[j])[:20]!r}); use one kind")
    names = [str(v).strip() for v in raw]
    for name, w in zip(names, wheres):
        if not name:
            raise InputError(f"{w}: empty label")
    mapping = {name: k for k, name in enumerate(sorted(set(names), key=_natural_key))}
    return [mapping[n] for n in names], mapping


def _build(source: Path, name: str, users: list[str], texts: list[str], labels: list[int] | None,
           times: list[float] | None, *, n_classes: int | None = None, test_fraction: float = 0.2,
           seed: int = 0, max_users: int | None = None, min_docs_per_user: int = 2, max_vocab: int = 2000,
           details: dict[str, Any] | None = None, label_names: list[str] | None = None) -> Corpus:
    if not users:
        raise InputError(f"{source}: no usable rows")
    task = "classify" if labels is not None else "next_token"
    if labels is not None:
        k = max(labels) + 1
        if n_classes is not None and k > n_classes:
            raise InputError(f"{source}: label {k - 1} out of range for {n_classes} classes")
        n_classes = n_classes or k
        if len(set(labels)) < 2:
            raise InputError(f"{source}: labels take a single value ({labels[0]}); need at least 2 classes")
        docs = list(zip(texts, labels))
    else:
        n_classes = None
        docs = [(t, None) for t in texts]
    keep, train, test = split_per_user(users, docs, times, test_fraction=test_fraction, seed=seed,
                                       min_docs_per_user=min_docs_per_user, max_users=max_users,
                                       source=str(source))
    tokenizer = Tokenizer.build((t for u in keep for t, _ in train[u]), max_vocab=max_vocab)
    split = "chronological" if times is not None else f"shuffled (seed {seed})"
    desc = (f"{name} data from {source.name}: {len(keep)} users, {sum(len(v) for v in train.values())} train / "
            f"{sum(len(v) for v in test.values())} test documents, {task}"
            + (f" ({n_classes} classes)" if n_classes else "") + f", {split} per-user split")
    info = {"source": str(source), "format": name, "split": split, "n_users_in_file": len(set(users)),
            **(details or {}), **({"label_names": label_names} if label_names else {})}
    return Corpus(users=keep, train=train, test=test, task=task, n_classes=n_classes, tokenizer=tokenizer,
                  description=desc, name=name, details=info)


def _options(kw: dict[str, Any]) -> dict[str, Any]:
    allowed = {"test_fraction", "seed", "max_users", "min_docs_per_user", "max_vocab", "n_classes"}
    bad = sorted(set(kw) - allowed)
    if bad:
        raise InputError(f"loader options: unknown option(s) {', '.join(bad)}")
    return kw


def _columns_rows(p: Path, records: Iterator[tuple[str, dict[str, Any]]], user_column: str, text_column: str,
                  label_column: str | None, time_column: str | None):
    users, texts, labels, times, wheres = [], [], [], [], []
    dropped = 0
    for where, rec in records:
        for col in (user_column, text_column, label_column, time_column):
            if col is not None and col not in rec:
                raise InputError(f"{where}: missing column {col!r}")
        user, text = rec[user_column], rec[text_column]
        if user is None or text is None or str(user).strip() == "" or str(text).strip() == "":
            dropped += 1
            continue
        users.append(str(user))
        texts.append(str(text))
        if label_column is not None:
            labels.append(rec[label_column])
            wheres.append(where)
        if time_column is not None:
            times.append(_parse_time(rec[time_column], where))
    mapping = None
    if label_column is not None:
        labels, mapping = _classes_from_labels(labels, wheres, p)
    return users, texts, (labels if label_column else None), (times if time_column else None), dropped, mapping


def _mapped(dropped: int, mapping: dict[str, int] | None) -> dict[str, Any]:
    details: dict[str, Any] = {"dropped_empty": dropped}
    if mapping is None:
        return {"details": details}
    return {"details": {**details, "label_mapping": mapping}, "label_names": list(mapping)}


def _csv_records(p: Path, encoding: str, delimiter: str) -> Iterator[tuple[str, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(_read_text(p, encoding), newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise InputError(f"{p}: line {reader.line_num}: {len(row)} fields, header has {len(header)}")
            yield f"{p}: line {reader.line_num}", dict(zip(header, row))
    except csv.Error as e:
        raise InputError(f"{p}: line {reader.line_num}: malformed CSV ({e})") from None


def _jsonl_records(p: Path, encoding: str = "utf-8") -> Iterator[tuple[str, dict[str, Any]]]:
    for n, line in enumerate(_read_text(p, encoding).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{p}: line {n}: malformed JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise InputError(f"{p}: line {n}: expected a JSON object, got {type(rec).__name__}")
        yield f"{p}: line {n}", rec


def load_csv(path: str | Path, user_column: str, text_column: str, label_column: str | None = None,
             time_column: str | None = None, *, encoding: str = "utf-8", delimiter: str = ",",
             **options: Any) -> Corpus:
    """Generic CSV with a header row (see the module docstring)."""
    p = _check_file(path)
    if not user_column or not text_column:
        raise InputError(f"{p}: the user and text columns must be named (--user-column, --text-column)")
    header = next(csv.reader(io.StringIO(_read_text(p, encoding)), delimiter=delimiter), [])
    for col in (user_column, text_column, label_column, time_column):
        if col is not None and col not in header:
            raise InputError(f"{p}: missing column {col!r} (columns: {', '.join(header)})")
    users, texts, labels, times, dropped, mapping = _columns_rows(p, _csv_records(p, encoding, delimiter), user_column,
                                                         text_column, label_column, time_column)
    return _build(p, "csv", users, texts, labels, times, **_mapped(dropped, mapping), **_options(options))


def load_jsonl(path: str | Path, user_column: str, text_column: str, label_column: str | None = None,
               time_column: str | None = None, *, encoding: str = "utf-8", **options: Any) -> Corpus:
    """Generic JSON lines, one object per line (see the module docstring)."""
    p = _check_file(path)
    if not user_column or not text_column:
        raise InputError(f"{p}: the user and text fields must be named (--user-column, --text-column)")
    users, texts, labels, times, dropped, mapping = _columns_rows(p, _jsonl_records(p, encoding), user_column,
                                                         text_column, label_column, time_column)
    return _build(p, "jsonl", users, texts, labels, times, **_mapped(dropped, mapping), **_options(options))


def _sentiment140_time(value: str, where: str) -> float:
    parts = value.split()
    if len(parts) != 6:
        raise InputError(f"{where}: cannot parse date {value[:40]!r} (expected like 'Mon Apr 06 22:19:45 PDT 2009')")
    try:
        dt = datetime.strptime(" ".join(parts[:4] + parts[5:]), "%a %b %d %H:%M:%S %Y")
    except ValueError:
        raise InputError(f"{where}: cannot parse date {value[:40]!r}") from None
    offset = _TZ_HOURS.get(parts[4].upper(), 0)
    return dt.replace(tzinfo=timezone(timedelta(hours=offset))).timestamp()


def load_sentiment140(path: str | Path, **options: Any) -> Corpus:
    """Sentiment140 CSV: no header, latin-1, (polarity, id, date, query, user, text)."""
    p = _check_file(path)
    reader = csv.reader(io.StringIO(_read_text(p, "latin-1"), newline=""))
    users, texts, labels, times = [], [], [], []
    neutral = 0
    try:
        for row in reader:
            if not row:
                continue
            where = f"{p}: line {reader.line_num}"
            if len(row) != 6:
                raise InputError(f"{where}: {len(row)} fields, Sentiment140 rows have 6 "
                                 "(polarity, id, date, query, user, text)")
            polarity = row[0].strip()
            if polarity not in ("0", "2", "4"):
                raise InputError(f"{where}: polarity {polarity[:20]!r} out of range (expected 0, 2 or 4)")
            if polarity == "2":
                neutral += 1
                continue
            users.append(row[4])
            texts.append(row[5])
            labels.append(0 if polarity == "0" else 1)
            times.append(_sentiment140_time(row[2], where))
    except csv.Error as e:
        raise InputError(f"{p}: line {reader.line_num}: malformed CSV ({e})") from None
    return _build(p, "sentiment140", users, texts, labels, times, details={"dropped_neutral": neutral},
                  label_names=["negative", "positive"], **{"n_classes": 2, **_options(options)})


def _first(rec: dict[str, Any], keys: tuple[str, ...], where: str, what: str, required: bool = True) -> Any:
    for k in keys:
        if k in rec and rec[k] is not None:
            return rec[k]
    if required:
        raise InputError(f"{where}: missing {what} field (one of {', '.join(keys)})")
    return None


def load_amazon(path: str | Path, **options: Any) -> Corpus:
    """Amazon reviews JSON lines (2018 or 2023 fields); rating -> 3 classes (<=3, 4, 5)."""
    p = _check_file(path)
    users, texts, labels, times = [], [], [], []
    dropped = 0
    have_time = True
    for where, rec in _jsonl_records(p):
        user = _first(rec, ("reviewerID", "user_id"), where, "user")
        rating = _first(rec, ("overall", "rating"), where, "rating")
        text = _first(rec, ("reviewText", "text"), where, "text", required=False)
        if not isinstance(text, str) or not text.strip():
            dropped += 1
            continue
        try:
            r = float(rating)
        except (TypeError, ValueError):
            raise InputError(f"{where}: rating {str(rating)[:20]!r} is not a number") from None
        if not (1 <= r <= 5) or r != int(r):
            raise InputError(f"{where}: rating {rating!r} out of range (expected 1-5)")
        if "unixReviewTime" in rec:
            t = _parse_time(rec["unixReviewTime"], where)
        elif "timestamp" in rec:
            t = _parse_time(rec["timestamp"], where) / 1000.0  # 2023 files: milliseconds
        else:
            have_time, t = False, 0.0
        users.append(str(user))
        texts.append(text)
        labels.append(0 if r <= 3 else int(r) - 3)
        times.append(t)
    return _build(p, "amazon", users, texts, labels, times if have_time else None,
                  details={"dropped_no_text": dropped}, label_names=["rating<=3", "rating=4", "rating=5"],
                  **{"n_classes": 3, **_options(options)})


def _leaf_text(x: Any, where: str) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, list) and all(isinstance(c, list) for c in x):
        toks = [t for chunk in x for t in chunk]
        if not all(isinstance(t, str) for t in toks):
            raise InputError(f"{where}: tokens must be strings")
        return " ".join(t for t in toks if t not in _LEAF_SPECIAL)
    raise InputError(f"{where}: 'x' entries must be a string or a list of token lists")


def load_leaf_reddit(path: str | Path, **options: Any) -> Corpus:
    """LEAF Reddit JSON file, or a folder of them; next-token task, chronological by created_utc."""
    root = Path(path)
    if root.is_dir():
        files = sorted(root.rglob("*.json"))
        if not files:
            raise InputError(f"{root}: folder holds no .json files")
    else:
        files = [_check_file(root)]
    per_user: dict[str, list[tuple[float, int, str]]] = {}
    for f in files:
        try:
            data = json.loads(_read_text(f, "utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{f}: malformed JSON at line {e.lineno} ({e.msg})") from None
        if not isinstance(data, dict) or "users" not in data or "user_data" not in data:
            raise InputError(f"{f}: not a LEAF file (expected keys 'users' and 'user_data')")
        if not isinstance(data["users"], list):
            raise InputError(f"{f}: 'users' must be a list of user ids")
        for u in data["users"]:
            if isinstance(u, bool) or not isinstance(u, (str, int)):
                raise InputError(f"{f}: user id {str(u)[:40]!r} is a {type(u).__name__}; LEAF user ids are strings or integers")
            u = str(u)  # JSON object keys are strings, so an integer id names the key str(id)
            ud = data["user_data"].get(u) if isinstance(data["user_data"], dict) else None
            if not isinstance(ud, dict) or not isinstance(ud.get("x"), list):
                raise InputError(f"{f}: user {str(u)[:40]!r}: missing user_data entry with an 'x' list")
            ys = ud.get("y") if isinstance(ud.get("y"), list) else [None] * len(ud["x"])
            if len(ys) != len(ud["x"]):
                raise InputError(f"{f}: user {str(u)[:40]!r}: 'x' has {len(ud['x'])} entries, 'y' {len(ys)}")
            docs = per_user.setdefault(str(u), [])
            for i, (x, y) in enumerate(zip(ud["x"], ys)):
                where = f"{f}: user {str(u)[:40]!r} sample {i}"
                text = _leaf_text(x, where)
                t = _parse_time(y["created_utc"], where) if isinstance(y, dict) and "created_utc" in y else np.nan
                if text.strip():
                    docs.append((t, len(docs), text))
    users, texts, times = [], [], []
    for u, docs in per_user.items():
        for t, i, text in docs:
            users.append(u)
            texts.append(text)
            times.append(i if np.isnan(t) else t)
    shown = root if root.is_dir() else files[0]
    return _build(shown, "leaf", users, texts, None, times, details={"files": len(files)}, **_options(options))


def _sniff(p: Path) -> str:
    """Format of a file given without ``format`` and without column names."""
    name = p.name.lower().removesuffix(".gz")
    if p.is_dir():
        return "leaf"
    if name.endswith(".csv"):
        first = next(csv.reader(io.StringIO(_read_text(p, "latin-1")[:4096])), [])
        if len(first) == 6 and first[0].strip() in ("0", "2", "4"):
            return "sentiment140"
        return "csv"
    if name.endswith(".json"):
        text = _read_text(p, "utf-8")
        if text.lstrip().startswith("{") and '"user_data"' in text:
            return "leaf"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        rec = next((r for _, r in _jsonl_records(p)), {})
        if {"reviewerID", "overall"} <= set(rec) or {"user_id", "rating"} <= set(rec):
            return "amazon"
        return "jsonl"
    raise InputError(f"{p}: cannot infer the format from the name; pass format= one of {', '.join(FORMATS[:-1])}")


def load_corpus(path: str | Path, format: str | None = None, user_column: str | None = None,
                text_column: str | None = None, label_column: str | None = None,
                time_column: str | None = None, **options: Any) -> Corpus:
    """Load any supported format (``"persona"`` generates the built-in corpus with ``options``)."""
    if str(path) == "persona" or format == "persona":
        from idfree_core.data.persona import generate_persona
        return generate_persona(**options)
    if format is not None and format not in FORMATS:
        raise InputError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if format is None:
        if user_column or text_column:
            name = p.name.lower().removesuffix(".gz")
            format = "csv" if name.endswith((".csv", ".tsv")) else "jsonl"
        else:
            format = _sniff(p)
    if time_column is not None and format not in ("csv", "jsonl"):
        raise InputError(f"{p}: a time column applies to csv/jsonl files; {format} files carry their own times")
    if format in ("csv", "jsonl"):
        loader = load_csv if format == "csv" else load_jsonl
        return loader(p, user_column, text_column, label_column, time_column, **options)
    loaders = {"sentiment140": load_sentiment140, "amazon": load_amazon, "leaf": load_leaf_reddit}
    return loaders[format](p, **options)
