"""Fuzz battery (issue 13): generated malformed files and flag values for every reader and subcommand.

Each example runs ``reports.cli.main(argv)`` in-process (stdout/stderr captured, ``SystemExit``
caught) under a SIGALRM time bound (:data:`BOUND_S`; a hang fails the example instead of hanging
the suite).  Strategies come in two kinds, and each test says which it asserts:

* **surely bad** (random bytes, truncated files, values outside the documented range, names not in
  a registry): exit code 2, exactly one stderr line ``idfree-audit CMD: error: ...``, no
  ``Traceback``, no warning, nothing written at the output location;
* **maybe valid** (mutated but possibly still well-formed files): either that same one-line error,
  or a clean bounded answer: exit 0 (1 where a policy gates) with stdout one valid JSON document.

Hypothesis is derandomized (fixed examples on every run, no example database) and each test's
``max_examples`` is sized so that the whole battery stays around a minute on a 2-core machine.
Every failure the fuzzer found is kept as an ``@example``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import sqlite3
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reports import cli

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # the fake point functions (_fake_points.py)
BOUND_S = float(os.environ.get("IDFREE_FUZZ_BOUND_S", "30"))


def fuzz(n: int):
    """Seeded, bounded hypothesis settings; ``deadline=None`` because :func:`run_cli` enforces its own."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


class ExampleTimeout(BaseException):
    """Raised by SIGALRM inside an example: not an ``Exception``, so no ``except`` in the code eats it."""


@dataclass
class Outcome:
    argv: list
    code: int
    out: str
    err: str
    warned: list
    elapsed: float


def run_cli(argv, bound: float = BOUND_S) -> Outcome:
    """``cli.main(argv)`` in-process with captured output, recorded warnings and a hard time bound."""
    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()

    def on_alarm(signum, frame):
        raise ExampleTimeout(f"{argv} ran past {bound} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    start = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, bound)
    try:
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            warnings.simplefilter("default")
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse errors
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    shown = [f"{w.category.__name__}: {w.message}" for w in caught
             if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    return Outcome(argv, code, out.getvalue(), err.getvalue(), shown, time.perf_counter() - start)


def _listing(path: Path | None):
    if path is None or not path.exists():
        return None
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.is_dir() else ["<file>"]


def assert_error(res: Outcome, cmd: str, out_path: Path | None = None, before=None) -> None:
    """The one error path: exit 2, one stderr line ``idfree-audit CMD: error: ...``, nothing else."""
    assert "Traceback" not in res.err + res.out, (res.argv, res.err)
    assert res.code == 2, (res.argv, res.code, res.err[-2000:])
    lines = res.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"idfree-audit {cmd}: error: "), (res.argv, res.err[-2000:])
    assert not res.warned, (res.argv, res.warned)
    assert res.out == "", (res.argv, res.out[:500])
    assert _listing(out_path) == before, (res.argv, "wrote", _listing(out_path))


def assert_error_or_answer(res: Outcome, cmd: str, out_path: Path | None = None, before=None,
                           codes=(0,)) -> None:
    """Maybe-valid input: the one error path, or a clean answer (``codes``) with stdout pure JSON."""
    if res.code == 2:
        assert_error(res, cmd, out_path, before)
        return
    assert "Traceback" not in res.err + res.out, (res.argv, res.err)
    assert res.code in codes, (res.argv, res.code, res.err[-2000:])
    assert not res.warned, (res.argv, res.warned)
    json.loads(res.out)  # --json: stdout is one JSON document and nothing else
    assert not [ln for ln in res.err.splitlines() if ": error:" in ln], (res.argv, res.err)


# --------------------------------------------------------------------------- fixtures written once

@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Valid small inputs to truncate and mutate: uploads/oracle parquet, distributions, spec, store."""
    from idfree_core.uploads import Oracle, UploadPool, UserDistributions, write_oracle, write_uploads
    from idfree_core.uploads import write_user_distributions

    d = tmp_path_factory.mktemp("fuzzbase")
    rng = np.random.default_rng(0)
    n, dim = 12, 3
    users = np.repeat(np.array(["u0", "u1", "u2"], dtype=object), n // 3)
    emb = (rng.normal(size=(n, dim)) + np.repeat(np.arange(3), n // 3)[:, None] * 3).astype(np.float32)
    pool = UploadPool(upload_id=np.arange(n, dtype=np.int64), embedding=emb,
                      text=np.asarray([f"doc {i}" for i in range(n)], dtype=object),
                      label=np.arange(n, dtype=np.int64) % 2, session=np.tile([0, 0, 1, 1], n // 4))
    write_uploads(pool, d / "uploads.parquet")
    write_oracle(Oracle(upload_id=pool.upload_id, user=users), d / "oracle.parquet")
    dists = {"family": "gaussian", "users": {u: {"mean": [float(k)] * dim, "std": [0.5] * dim}
                                              for k, u in enumerate(["u0", "u1", "u2"])}}
    (d / "user_distributions.json").write_text(json.dumps(dists))
    UserDistributions.from_json_dict(dists)  # the base really is valid
    spec = d / "spec.toml"
    spec.write_text('[grid]\nn_users = [4]\nfamily = ["gaussian"]\nspread = [0.1, 0.2]\nseed = [0]\n')
    from reports.sweep import SweepSpec, run_sweep

    run_sweep(SweepSpec.from_toml(spec), d / "store", workers=1, point_fn="_fake_points:fake_point", progress=False)
    (d / "store" / ".sweep.lock").unlink(missing_ok=True)
    (d / "policy.toml").write_text((TESTS.parent / "examples" / "policy.toml").read_text()
                                   if (TESTS.parent / "examples" / "policy.toml").is_file() else 'name = "p"\n')
    return d


@pytest.fixture
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _fresh(work: Path, name: str) -> Path:
    """A fresh sub-folder per example (hypothesis reuses the function's fixtures across examples)."""
    k = len(list(work.iterdir()))
    p = work / f"{k:05d}"
    p.mkdir()
    return p / name


# --------------------------------------------------------------------------- value strategies

HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, 10**400])
NASTY_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0])
NASTY_NUMBER_TEXT = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e308", "1e309", "-1e309", "1e-400", "0x10", "1_0",
                     "", " ", "--", "1,5", "½", "٣", "1e", "e1", ".", "-", "+", "9" * 5000, "-" + "9" * 400,
                     "1e99999999", "0" * 3000 + "1", "True", "None", "[]", "{}", "\x00", "1\x00"]),
    st.text(max_size=30),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    HUGE_INTS.map(str),
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), HUGE_INTS, st.floats(allow_nan=True),
                         NASTY_FLOATS, st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                                  st.dictionaries(st.text(max_size=8), kids,
                                                                                  max_size=4)),
                           max_leaves=20)
DEEP = st.integers(min_value=50, max_value=200_000).map(lambda k: "[" * k + "]" * k)


def _json_text(value) -> str:
    """Python's json writes NaN/Infinity and big ints: exactly the hostile JSON we want."""
    return json.dumps(value)


# --------------------------------------------------------------------------- parquet / CSV uploads

def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@st.composite
def uploads_tables(draw):
    """A table near the uploads contract: wrong types, NaN/inf/1e308, ragged or empty embeddings,
    huge or duplicate ids, missing columns, identifier columns, bad ``idfree.n_tokens`` metadata."""
    n = draw(st.integers(0, 8))
    cols = {}
    id_kind = draw(st.sampled_from(["ok", "dup", "float", "str", "null", "uint_huge", "missing"]))
    if id_kind == "ok":
        cols["upload_id"] = pa.array(range(n), type=pa.int64())
    elif id_kind == "dup":
        cols["upload_id"] = pa.array([0] * n, type=pa.int64())
    elif id_kind == "float":
        cols["upload_id"] = pa.array(draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n)), type=pa.float64())
    elif id_kind == "str":
        cols["upload_id"] = pa.array([str(i) for i in range(n)])
    elif id_kind == "null":
        cols["upload_id"] = pa.array([None] * n, type=pa.int64())
    elif id_kind == "uint_huge":
        cols["upload_id"] = pa.array([2**64 - 1 - i for i in range(n)], type=pa.uint64())
    emb_kind = draw(st.sampled_from(["list", "ragged", "fixed", "strings", "nested", "null", "emb_cols", "missing"]))
    dim = draw(st.integers(0, 3))
    floats = st.one_of(st.floats(-10, 10), NASTY_FLOATS)
    if emb_kind == "list":
        cols["embedding"] = pa.array([draw(st.lists(floats, min_size=dim, max_size=dim)) for _ in range(n)],
                                     type=pa.list_(pa.float64()))
    elif emb_kind == "ragged":
        cols["embedding"] = pa.array([draw(st.lists(floats, max_size=4)) for _ in range(n)],
                                     type=pa.list_(pa.float32()))
    elif emb_kind == "fixed":
        cols["embedding"] = pa.array([draw(st.lists(floats, min_size=dim, max_size=dim)) for _ in range(n)],
                                     type=pa.list_(pa.float32(), dim))
    elif emb_kind == "strings":
        cols["embedding"] = pa.array([draw(st.text(max_size=5)) for _ in range(n)])
    elif emb_kind == "nested":
        cols["embedding"] = pa.array([[[1.0, 2.0]] for _ in range(n)], type=pa.list_(pa.list_(pa.float64())))
    elif emb_kind == "null":
        cols["embedding"] = pa.array([None] * n, type=pa.list_(pa.float32()))
    elif emb_kind == "emb_cols":
        for j in draw(st.sampled_from([[0], [0, 1], [0, 2], [1], [0, 1, 2]])):
            cols[f"emb_{j}"] = pa.array(draw(st.lists(floats, min_size=n, max_size=n)), type=pa.float64())
    for name in draw(st.lists(st.sampled_from(["text", "label", "session", "user", "device_id", " USER-Id ",
                                               "score"]), max_size=3, unique=True)):
        kind = draw(st.sampled_from(["int", "float", "str", "null", "huge"]))
        if kind == "int":
            cols[name] = pa.array(draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), type=pa.int64())
        elif kind == "float":
            cols[name] = pa.array(draw(st.lists(st.one_of(st.floats(-3, 3), NASTY_FLOATS), min_size=n, max_size=n)))
        elif kind == "str":
            cols[name] = pa.array(draw(st.lists(st.text(max_size=6), min_size=n, max_size=n)), type=pa.string())
        elif kind == "null":
            cols[name] = pa.array([None] * n, type=pa.int64())
        else:
            cols[name] = pa.array([2**64 - 1] * n, type=pa.uint64())
    table = pa.table(cols) if cols else pa.table({"x": pa.array([], type=pa.int8())})
    meta = draw(st.one_of(st.none(), st.sampled_from(["1", "0", "-1", "3", "x", "9" * 40, "1e3", ""])))
    if meta is not None:
        table = table.replace_schema_metadata({"idfree.n_tokens": meta})
    return table


def _mutated(data: st.DataObject, blob: bytes) -> bytes:
    how = data.draw(st.sampled_from(["truncate", "flip", "random", "magic"]))
    if how == "truncate":
        return blob[:data.draw(st.integers(0, len(blob) - 1))]
    if how == "flip":
        b = bytearray(blob)
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] = data.draw(st.integers(0, 255))
        return bytes(b)
    if how == "magic":
        return b"PAR1" + data.draw(st.binary(max_size=300)) + b"PAR1"
    return data.draw(st.binary(max_size=2000))


@fuzz(30)
@given(data=st.data())
def test_uploads_parquet_bytes_truncated_flipped_or_random(base, work, data):
    """Surely bad when truncated/random; a flipped byte may leave a readable file (maybe valid)."""
    blob = (base / "uploads.parquet").read_bytes()
    path = _fresh(work, "uploads.parquet")
    path.write_bytes(_mutated(data, blob))
    res = run_cli(["attack", path, "--attacks", "clustering", "--json"])
    assert_error_or_answer(res, "attack")


@fuzz(60)
@given(table=uploads_tables())
def test_uploads_parquet_near_the_contract(base, work, table):
    path = _fresh(work, "uploads.parquet")
    pq.write_table(table, path)
    res = run_cli(["attack", path, "--attacks", "clustering", "--json"])
    assert_error_or_answer(res, "attack")


@fuzz(40)
@given(table=uploads_tables(), data=st.data())
def test_oracle_parquet_near_the_contract(base, work, table, data):
    """The oracle: upload ids as in the uploads fuzz, a ``user`` column of any type (maybe valid)."""
    n = table.num_rows
    kind = data.draw(st.sampled_from(["str", "int", "null", "missing", "float"]))
    if kind == "str":
        table = table.append_column("user", pa.array(data.draw(st.lists(st.text(max_size=4), min_size=n, max_size=n))))
    elif kind == "int":
        table = table.append_column("user", pa.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))))
    elif kind == "null":
        table = table.append_column("user", pa.array([None] * n, type=pa.string()))
    elif kind == "float":
        table = table.append_column("user", pa.array(data.draw(st.lists(NASTY_FLOATS, min_size=n, max_size=n))))
    path = _fresh(work, "oracle.parquet")
    pq.write_table(table, path)
    res = run_cli(["attack", base / "uploads.parquet", "--oracle", path, "--attacks", "clustering", "--json"])
    assert_error_or_answer(res, "attack")


CSV_CELLS = st.one_of(st.floats(-5, 5).map(lambda v: f"{v:.3f}"), NASTY_NUMBER_TEXT.filter(lambda s: "\n" not in s
                                                                                             and "\r" not in s),
                      st.just(""), st.just('"'), st.just('a,"b'))


@st.composite
def csv_texts(draw):
    header = draw(st.lists(st.sampled_from(["upload_id", "emb_0", "emb_1", "emb_2", "emb_4", "text", "label",
                                            "session", "user", "emb_x", "", "emb_0"]), max_size=6))
    rows = draw(st.lists(st.lists(CSV_CELLS, min_size=0, max_size=len(header) + 1), max_size=6))
    return "\n".join([",".join(header)] + [",".join(r) for r in rows]) + draw(st.sampled_from(["", "\n", "\r\n"]))


@fuzz(50)
@given(text=csv_texts())
@example(text="emb_0\n1e308\n-1e308\n")
@example(text="emb_0,upload_id\n1," + "9" * 40 + "\n")
def test_uploads_and_oracle_csv(base, work, text):
    path = _fresh(work, "uploads.csv")
    path.write_text(text)
    assert_error_or_answer(run_cli(["attack", path, "--attacks", "clustering", "--json"]), "attack")
    oracle = path.with_name("oracle.csv")
    oracle.write_text(text.replace("user", "user", 1))
    res = run_cli(["attack", base / "uploads.parquet", "--oracle", oracle, "--attacks", "clustering", "--json"])
    assert_error_or_answer(res, "attack")


# --------------------------------------------------------------------------- user_distributions.json

@st.composite
def distributions_docs(draw):
    """Text of a user_distributions.json: random JSON, deep nesting, or the valid file with one field
    replaced by a wrong type, a wrong shape, NaN/inf/1e308, a huge int or an out-of-support value."""
    kind = draw(st.sampled_from(["random", "deep", "mutate", "mutate", "mutate", "bytes"]))
    if kind == "random":
        return _json_text(draw(JSON_VALUES))
    if kind == "deep":
        return '{"family": "beta", "users": ' + draw(DEEP) + "}"
    if kind == "bytes":
        return draw(st.binary(max_size=200)).decode("latin-1")
    fam = draw(st.sampled_from(["gaussian", "beta", "static", "kumaraswamy", "nope", ""]))
    names = {"gaussian": ("mean", "std"), "beta": ("alpha", "beta"), "static": ("value",),
             "kumaraswamy": ("a", "b")}.get(fam, ("mean", "std"))
    dim = draw(st.integers(0, 3))
    users = {}
    for u in range(draw(st.integers(0, 3))):
        params = {}
        for p in names:
            params[p] = draw(st.one_of(st.lists(st.floats(0.1, 3), min_size=dim, max_size=dim),
                                       st.lists(st.one_of(NASTY_FLOATS, st.floats(-3, 0)), min_size=1, max_size=3),
                                       st.lists(st.floats(0.1, 3), max_size=4), JSON_VALUES))
        users[f"u{u}"] = params if draw(st.booleans()) else draw(JSON_VALUES)
    doc = {"family": fam, "users": users}
    if draw(st.booleans()):
        doc["transform"] = draw(st.one_of(JSON_VALUES, st.fixed_dictionaries(
            {"loc": st.lists(st.one_of(st.floats(-1, 1), NASTY_FLOATS), max_size=3),
             "scale": st.lists(st.one_of(st.floats(-1, 2), NASTY_FLOATS), max_size=3)})))
    return _json_text(doc)


@fuzz(60)
@given(text=distributions_docs())
# 1e308 parameters printed RuntimeWarnings (overflow) before answering: now refused (PARAM_BOUND)
@example(text='{"family": "gaussian", "users": {"a": {"mean": [1e308], "std": [1e308]}, '
              '"b": {"mean": [-1e308], "std": [1e308]}}}')
@example(text='{"family": "beta", "users": {"a": {"alpha": [' + "9" * 400 + '], "beta": [1]}}}')
@example(text='{"family": "gaussian", "users": {"a": {"mean": [0], "std": [5e-324]}, "b": {"mean": [1], "std": [1]}}}')
def test_user_distributions_json_in_every_reader(base, work, text):
    path = _fresh(work, "user_distributions.json")
    path.write_text(text)
    for argv, cmd in ((["misattribution", "--distributions", path, "--json", "--target-halfwidth", "0.05"],
                       "misattribution"),
                      (["identifiability", "--distributions", path, "--json", "--time-budget", "5",
                        "--work-budget", "2000"], "identifiability"),
                      (["attack", base / "uploads.parquet", "--distributions", path, "--attacks", "inversion",
                        "--json"], "attack")):
        assert_error_or_answer(run_cli(argv), cmd)


# --------------------------------------------------------------------------- TOML: sweep spec and policy

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"


TOML_SCALARS = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True),
                         st.text(max_size=12), st.sampled_from([1e308, -1e308, 2**63 - 1, -(2**63)]))
TOML_VALUES = st.recursive(TOML_SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                                  st.dictionaries(st.text(max_size=6), kids,
                                                                                  max_size=3)), max_leaves=12)
SPEC_KEYS = ["name", "description", "model", "attacks", "family", "spread", "n_users", "seed", "lr", "data",
             "docs_per_user", "rounds", "sleep_s", "preset", "zip", "x"]


JUNK_KINDS = ("random", "deep", "bytes")


def _junk_toml(draw, kind):
    """Text that is no TOML document of ours: random text, deep nesting, or random bytes."""
    if kind == "random":
        return draw(st.text(max_size=200))
    if kind == "deep":
        return "x = " + draw(DEEP) + "\n"
    return draw(st.binary(max_size=200)).decode("latin-1")


@st.composite
def spec_texts(draw):
    kind = draw(st.sampled_from(["random", "deep", "bytes", "tables", "tables", "tables"]))
    if kind in JUNK_KINDS:
        return _junk_toml(draw, kind)
    lines = []
    for key in draw(st.lists(st.sampled_from(["name", "model", "attacks", "description"]), max_size=2, unique=True)):
        lines.append(f"{key} = {_toml_value(draw(TOML_VALUES))}")
    for table in draw(st.lists(st.sampled_from(["base", "grid", "zip", "attacks", "other"]), max_size=3,
                               unique=True)):
        lines.append(f"[{table}]")
        for key in draw(st.lists(st.sampled_from(SPEC_KEYS), max_size=4, unique=True)):
            value = draw(st.one_of(TOML_VALUES, st.lists(TOML_SCALARS, max_size=3),
                                   st.lists(st.integers(0, 5), min_size=1, max_size=3)))
            lines.append(f"{json.dumps(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


@fuzz(60)
@given(text=spec_texts())
@example(text='[grid]\nseed = [9223372036854775807]\n')
@example(text='[grid]\nspread = [nan, inf]\nfamily = ["gaussian"]\n')
def test_sweep_spec_toml(base, work, text):
    spec = _fresh(work, "spec.toml")
    spec.write_text(text, encoding="utf-8", errors="surrogatepass")
    out = spec.with_name("out")
    res = run_cli(["sweep", spec, "--out", out, "--workers", "1", "--json", "--point-fn", "_fake_points:fake_point"])
    if res.code == 2:
        assert_error(res, "sweep", out, None)  # a refused spec leaves no results folder behind
    else:
        assert_error_or_answer(res, "sweep", codes=(0, 1))


POLICY_KEYS = ["name", "fail_on_inconclusive", "thresholds", "max_advantage", "min_misattribution", "attack",
               "linkage", "clustering", "inversion", "identifier_columns", "x"]


@st.composite
def policy_texts(draw):
    kind = draw(st.sampled_from(["random", "deep", "bytes", "tables", "tables", "mutate", "mutate"]))
    if kind in JUNK_KINDS:
        return _junk_toml(draw, kind)
    if kind == "mutate":  # the example policy with one value replaced
        src = (TESTS.parent / "examples" / "policy.toml").read_text().splitlines()
        idx = [i for i, ln in enumerate(src) if "=" in ln and not ln.lstrip().startswith("#")]
        if idx:
            i = draw(st.sampled_from(idx))
            src[i] = src[i].split("=", 1)[0] + "= " + _toml_value(draw(st.one_of(TOML_VALUES, NASTY_FLOATS)))
        return "\n".join(src) + "\n"
    lines = []
    for key in draw(st.lists(st.sampled_from(POLICY_KEYS), max_size=3, unique=True)):
        lines.append(f"{key} = {_toml_value(draw(TOML_VALUES))}")
    for table in draw(st.lists(st.sampled_from(POLICY_KEYS), max_size=2, unique=True)):
        lines.append(f"[{table}]")
        for key in draw(st.lists(st.sampled_from(POLICY_KEYS), max_size=3, unique=True)):
            lines.append(f"{json.dumps(key)} = {_toml_value(draw(st.one_of(TOML_VALUES, NASTY_FLOATS)))}")
    return "\n".join(lines) + "\n"


@fuzz(30)
@given(text=policy_texts())
def test_policy_toml(base, work, text):
    policy = _fresh(work, "policy.toml")
    policy.write_text(text, encoding="utf-8", errors="surrogatepass")
    res = run_cli(["attack", base / "uploads.parquet", "--oracle", base / "oracle.parquet", "--attacks",
                   "clustering", "--policy", policy, "--json"])
    if res.code == 2:
        assert_error(res, "attack")
    else:  # a valid policy: the gate's verdict line follows the JSON on stderr
        assert res.code in (0, 1) and "Traceback" not in res.err and not res.warned, (res.argv, res.err)
        json.loads(res.out)


# --------------------------------------------------------------------------- SQLite results store

@st.composite
def store_edits(draw):
    """SQL run against a copy of a valid store: corrupt JSON, wrong types, NaN, deep nesting, missing rows."""
    col = draw(st.sampled_from(["config", "metrics", "status", "idx", "error", "elapsed_s"]))
    value = draw(st.one_of(JSON_VALUES.map(_json_text), DEEP, st.text(max_size=30), st.integers(),
                           HUGE_INTS.map(str), NASTY_FLOATS, st.none(), st.binary(max_size=20)))
    if isinstance(value, float) and math.isnan(value):
        value = None  # sqlite stores NaN as NULL anyway
    return col, value, draw(st.sampled_from(["one", "all", "meta", "delete", "artifact"]))


class _NullPdf:
    """Stands in for ``PdfPages``: rendering pages is 15 s of matplotlib per report and reads no input."""

    def __init__(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def savefig(self, fig):
        import matplotlib.pyplot as plt

        plt.close(fig)


@contextlib.contextmanager
def _fast_report():
    """Skip the two input-independent costs of a report: the symbolic family verdicts and the PDF
    rendering; everything that reads the store, analyses and lays out pages still runs."""
    from unittest import mock

    from reports.figures import evidence

    real = evidence._project

    def project(emb, method, random_state):  # t-SNE is 3 s of an example: PCA reads the same input
        return real(emb, "pca", random_state)

    with mock.patch("reports.pdf._family_verdicts", lambda families: []), \
            mock.patch("reports.pdf.PdfPages", _NullPdf), mock.patch("reports.figures.evidence._project", project):
        yield


@fuzz(15)
@given(edit=store_edits(), data=st.data())
@example(edit=("config", "[]", "one"), data=None)  # was an AttributeError traceback
@example(edit=("metrics", "[1, 2]", "all"), data=None)
@example(edit=("npz", b"\x00junk", "artifact"), data=None)  # was a BadZipFile traceback
@example(edit=("config", "[" * 100000 + "]" * 100000, "one"), data=None)
def test_results_sqlite(base, work, edit, data):
    folder = _fresh(work, "res")
    folder.mkdir()
    blob = (base / "store" / "results.sqlite").read_bytes()
    if data is not None and data.draw(st.booleans()):  # byte-level damage
        (folder / "results.sqlite").write_bytes(_mutated(data, blob))
    else:
        (folder / "results.sqlite").write_bytes(blob)
        col, value, where = edit
        con = sqlite3.connect(folder / "results.sqlite")
        with con:
            if where == "meta":
                con.execute("UPDATE meta SET value = ?", (value if isinstance(value, (str, bytes)) else str(value),))
            elif where == "delete":
                con.execute("DELETE FROM points")
            elif where == "artifact":
                con.execute("UPDATE artifacts SET npz = ?", (value if isinstance(value, bytes) else b"\x00junk",))
            else:
                con.execute(f"UPDATE points SET {col} = ?" + (" WHERE idx = 0" if where == "one" else ""), (value,))
        con.close()
    pdf = folder.with_name("r.pdf")
    with _fast_report():
        res = run_cli(["report", "--results", folder, "--out", pdf, "--json"])
    if res.code == 2:
        assert_error(res, "report", pdf, None)
    else:
        assert_error_or_answer(res, "report")


# --------------------------------------------------------------------------- JSONL / CSV data (simulate)

TINY = ["--users", "2", "--docs-per-user", "4", "--set", "d_model=8", "--set", "n_heads=1", "--set", "n_layers=1",
        "--set", "central_epochs=1", "--set", "device_epochs=1", "--set", "cloud_epochs=1", "--set", "rounds=1",
        "--set", "ondevice_epochs=1", "--set", "entropy_samples=2", "--set", "n_bootstrap=20", "--set",
        "baselines=[]"]


@st.composite
def jsonl_texts(draw):
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["obj", "obj", "value", "junk", "deep", "blank"]))
        if kind == "obj":
            obj = {k: draw(JSON_SCALARS) for k in draw(st.lists(st.sampled_from(["user", "text", "label", "time",
                                                                                  "x"]), max_size=4, unique=True))}
            lines.append(_json_text(obj))
        elif kind == "value":
            lines.append(_json_text(draw(JSON_VALUES)))
        elif kind == "junk":
            lines.append(draw(st.text(max_size=20)).replace("\n", " "))
        elif kind == "deep":
            lines.append('{"user": "a", "text": ' + draw(DEEP) + "}")
        else:
            lines.append("")
    return "\n".join(lines)


@fuzz(30)
@given(text=jsonl_texts())
@example(text='{"user": "a", "text": "hi", "label": 1e308}\n{"user": "a", "text": "x", "label": NaN}')
def test_simulate_jsonl_and_csv_data(work, text):
    """Data files for ``simulate``: always bad here (each user has too few documents for the split,
    or the lines are not records), so every example must be the one-line error with no output folder."""
    data = _fresh(work, "data.jsonl")
    data.write_text(text, encoding="utf-8", errors="surrogatepass")
    out = data.with_name("run")
    res = run_cli(["simulate", "--data", data, "--user-column", "user", "--text-column", "text",
                   "--label-column", "label", *TINY, "--out", out, "--json"])
    assert_error_or_answer(res, "simulate", out, None)
    csv = data.with_name("data.csv")
    csv.write_text(text.replace("{", "").replace("}", "").replace(": ", ","), encoding="utf-8",
                   errors="surrogatepass")
    res = run_cli(["simulate", "--data", csv, "--user-column", "user", "--text-column", "text", *TINY, "--out", out,
                   "--json"])
    assert_error_or_answer(res, "simulate", out, None)


# --------------------------------------------------------------------------- flags of the six subcommands

OUT_OF_RANGE = {  # flag -> values outside its documented range (or not numbers at all)
    "misattribution": {"--users": ["0", "-1", "100001", "1e9"], "--dim": ["0", "1000001"], "--lr": ["0", "-1", "11"],
                       "--clip": ["0", "1e7"], "--steps": ["-1", "1000001"], "--std": ["0", "1001"],
                       "--delta": ["0", "0.2", "1e-13"], "--confidence": ["0.4", "1", "0.99999"],
                       "--target-halfwidth": ["0", "0.6", "1e-5"], "--seed": ["-1", str(2**64)],
                       "--max-file-mb": ["0", "4097"], "--weight-decay": ["-1", "1001"],
                       "--uploads-per-user": ["0", "1001", "1,,2", "1,0"]},
    "simulate": {"--users": ["0", "-3", "100001"], "--docs-per-user": ["0", "-1"], "--std": ["0", "-1"],
                 "--beta-concentration": ["0"], "--device-lr": ["0", "-1"], "--device-clip": ["0"],
                 "--device-steps": ["0"], "--rounds": ["0", "1001"], "--seed": ["-1", str(2**64)]},
    "identifiability": {"--work-budget": ["0", "-1", "10000001"], "--time-budget": ["0", "-1", "3601"]},
    "attack": {"--seed": ["-1", str(2**64), str(10**400)]},
    "sweep": {"--workers": ["0", "-1"]},
    "report": {"--workers": ["0", "-1"]},
}
def _finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except (ValueError, OverflowError):
        return False


GARBAGE = NASTY_NUMBER_TEXT.filter(lambda s: not _finite_number(s))


def _argv_for(cmd: str, base: Path, out: Path) -> list:
    return {"misattribution": ["misattribution", "--users", "3", "--dim", "2", "--lr", "0.01", "--clip", "1",
                               "--steps", "10", "--json"],
            "simulate": ["simulate", "--data", base / "no_such_file.csv", "--out", out, "--json"],
            "identifiability": ["identifiability", "--family", "gaussian", "--json"],
            "attack": ["attack", base / "uploads.parquet", "--attacks", "clustering", "--json"],
            "sweep": ["sweep", base / "spec.toml", "--out", out, "--json", "--point-fn", "_fake_points:fake_point"],
            "report": ["report", "--results", base / "store", "--out", out.with_suffix(".pdf"), "--json"]}[cmd]


FLAG_CASES = st.sampled_from([(c, f) for c, flags in OUT_OF_RANGE.items() for f in flags])


@fuzz(120)
@given(case=FLAG_CASES, data=st.data())
@example(case=("misattribution", "--users"), data=None)
@example(case=("attack", "--seed"), data=str(2**64))  # was accepted
@example(case=("report", "--workers"), data="0")  # was ignored with --results
@example(case=("misattribution", "--users"), data="--")  # CPython 3.11 turned "--users=--" into []
def test_flag_values_out_of_range_or_not_numbers(base, work, case, data):
    """Surely bad: every numeric flag of every subcommand, out of range, non-numeric, huge or NaN."""
    cmd, flag = case
    value = OUT_OF_RANGE[cmd][flag][0] if data is None else data if isinstance(data, str) else data.draw(st.one_of(
        st.sampled_from(OUT_OF_RANGE[cmd][flag]), GARBAGE, st.sampled_from(["nan", "inf", "-inf", "1e999"])))
    out = _fresh(work, "out")
    with _fast_report():
        res = run_cli([*_argv_for(cmd, base, out), f"{flag}={value}"])
    target = out.with_suffix(".pdf") if cmd == "report" else out
    assert_error(res, cmd, target, None)


HOSTILE_EXPR = st.one_of(
    st.sampled_from(["__import__('os').system('true')", "().__class__.__bases__", "lambda: 1", "x" * 100_000,
                     "(" * 5000 + "x" + ")" * 5000, "9**9**9**9", "x**(10**100)", "exp(exp(exp(exp(x))))",
                     "factorial(10**9)", "a.b", "a[0]", "{}", "x if a else b", "open('f')", "x;y", "x\x00",
                     "-" * 3000 + "x", "1/0", "nan", "oo-oo", "zoo", "x**a" + "*x" * 2000, "'s'", "b'x'",
                     "x and a", "[x]", "f'{x}'", "x @ a", "x := 1", "*x", "x(1)", "gamma(a)(x)"]),
    st.text(max_size=40),
    st.text(alphabet="xab()+-*/^.,0123456789e ", max_size=40),
)


@fuzz(60)
@given(expr=HOSTILE_EXPR, where=st.sampled_from(["--density", "--support", "--family", "--params", "--var",
                                                 "--positive"]))
@example(expr="9**9**9**9", where="--density")
@example(expr="(" * 5000 + "x" + ")" * 5000, where="--density")
def test_hostile_expression_flags(base, expr, where):
    """Expression flags: a clean bounded verdict when the text happens to be a valid density, else one line."""
    args = {"--density": "x**(a-1)*exp(-x/b)", "--params": "a,b", "--support": "0,oo", "--var": "x", "--positive": ""}
    if where == "--family":
        argv = ["identifiability", "--family", expr]
    else:
        args[where] = expr
        argv = ["identifiability"] + [f"{k}={v}" for k, v in args.items()]
    res = run_cli([*argv, "--json", "--time-budget", "5", "--work-budget", "2000"])
    assert_error_or_answer(res, "identifiability")


ATTACK_LISTS = st.one_of(st.text(max_size=30), st.lists(st.sampled_from(["clustering", "linkage", "inversion", "",
                                                                         "nope", " ", "CLUSTERING"]),
                                                        max_size=4).map(",".join))


@fuzz(20)
@given(attacks=ATTACK_LISTS, features=st.sampled_from(["embedding", "text", "both", "nope", ""]))
@example(attacks="", features="nope")  # argparse printed a 4-line usage block before the error line
def test_attack_list_and_features_flags(base, attacks, features):
    res = run_cli(["attack", base / "uploads.parquet", f"--attacks={attacks}", f"--features={features}", "--json"])
    assert_error_or_answer(res, "attack")


@fuzz(12)
@given(name=st.one_of(st.text(max_size=30), st.sampled_from(["", ".", "..", "/", "/dev/null", "x.PDF/", "a\x00b",
                                                             "r.pdf" * 60, "nul.pdf"])))
@example(name="a\x00b.pdf")
def test_report_and_sweep_out_names(base, work, name):
    """Hostile ``--out`` names: refused in one line (or a written report for a plain ``*.pdf`` name)."""
    folder = _fresh(work, "x").parent
    os.chdir(folder)
    try:
        with _fast_report():
            res = run_cli(["report", "--results", base / "store", "--out", name or "''", "--json"])
        assert_error_or_answer(res, "report")
    finally:
        os.chdir(TESTS.parent)
