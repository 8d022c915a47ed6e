"""``attack`` (issue 13): the oracle reaches identifier-column detection, and progress goes to stderr
(forced with ``--progress``, with a heartbeat) while ``--json`` keeps stdout one JSON document."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from idfree_core.progress import heartbeat, want_progress
from idfree_core.uploads import Oracle, UploadPool, read_uploads_with_findings, write_oracle, write_uploads
from reports import cli


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory):
    """3 users with 10, 3 and 3 uploads and a column ``cohort`` equal to the user's code.

    Without the oracle the content test (repeated values, none holding half the rows) cannot flag it:
    value 0 holds 10 of 16 rows.  With the oracle its groups agree with the users exactly."""
    d = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(0)
    codes = np.array([0] * 10 + [1] * 3 + [2] * 3)
    emb = (rng.normal(size=(codes.size, 2)) + codes[:, None] * 4.0).astype(np.float32)
    ids = np.arange(codes.size, dtype=np.int64)
    write_uploads(UploadPool(upload_id=ids, embedding=emb), d / "plain.parquet")
    table = pq.read_table(d / "plain.parquet")
    pq.write_table(table.append_column("cohort", pa.array(codes.tolist(), type=pa.int64()))
                   .replace_schema_metadata(table.schema.metadata), d / "uploads.parquet")
    write_oracle(Oracle(upload_id=ids, user=np.asarray([f"user{c}" for c in codes], dtype=object)),
                 d / "oracle.parquet")
    return d


def _attack(capsys, *argv):
    code = cli.main(["attack", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_oracle_reaches_identifier_detection(cohort_files, capsys):
    d = cohort_files
    assert read_uploads_with_findings(d / "uploads.parquet")[1] == ()  # content alone: not flagged
    code, out, _ = _attack(capsys, d / "uploads.parquet", "--attacks", "clustering", "--json")
    assert code == 0 and json.loads(out)["summary"]["identifier_columns"] == []
    code, out, _ = _attack(capsys, d / "uploads.parquet", "--oracle", d / "oracle.parquet", "--attacks",
                           "clustering", "--json")
    data = json.loads(out)
    assert code == 0 and data["summary"]["identifier_columns"] == ["cohort"]
    assert any("cohort" in f for f in data["findings"])


def test_an_oracle_that_misses_uploads_is_one_line_naming_the_oracle(cohort_files, tmp_path, capsys):
    d = cohort_files
    write_oracle(Oracle(upload_id=np.arange(5, dtype=np.int64), user=np.asarray(["a"] * 5, dtype=object)),
                 tmp_path / "short_oracle.parquet")
    code, out, err = _attack(capsys, d / "uploads.parquet", "--oracle", tmp_path / "short_oracle.parquet", "--json")
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1
    assert lines[0].startswith("idfree-audit attack: error:") and "short_oracle.parquet" in lines[0]
    assert "not in the oracle" in lines[0]


def test_json_stdout_stays_pure_while_forced_progress_goes_to_stderr(cohort_files, capsys):
    d = cohort_files
    argv = [d / "plain.parquet", "--oracle", d / "oracle.parquet", "--attacks", "clustering,linkage", "--json"]
    code, out, err = _attack(capsys, *argv, "--progress")
    assert code == 0
    assert json.loads(out)["attacks"]  # the whole of stdout is one JSON document
    assert "attacks:" in err and "100%" in err  # the tqdm bar, on stderr only
    assert "attacks:" not in out
    code, out, err = _attack(capsys, *argv)  # stderr is not a terminal here: no bar unless forced
    assert code == 0 and json.loads(out) and "attacks:" not in err


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_want_progress_follows_the_terminal_unless_forced():
    assert want_progress(False, _Tty()) and not want_progress(False, io.StringIO())
    assert want_progress(True, io.StringIO())
    closed = io.StringIO()
    closed.close()
    assert not want_progress(False, closed)


def test_heartbeat_redraws_a_bar_that_does_not_advance():
    from tqdm import tqdm

    sink = io.StringIO()
    bar = tqdm(total=3, desc="attacks", file=sink, mininterval=0)
    drawn = sink.getvalue().count("\r")
    with heartbeat(bar, every_s=0.05):
        time.sleep(0.5)  # one long step: no update
    beats = sink.getvalue().count("\r") - drawn
    bar.close()
    assert beats >= 3, sink.getvalue()
    quiet = tqdm(total=3, file=io.StringIO(), disable=True)
    with heartbeat(quiet, every_s=0.01):  # disabled bars start no thread
        time.sleep(0.05)


def test_sweep_json_with_forced_progress_keeps_stdout_pure(tmp_path, capsys):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # _fake_points
    spec = tmp_path / "spec.toml"
    spec.write_text('[grid]\nfamily = ["gaussian"]\nspread = [0.1, 0.2]\nn_users = [4]\nseed = [0]\n')
    argv = ["sweep", str(spec), "--workers", "1", "--json", "--point-fn", "_fake_points:fake_point"]
    assert cli.main([*argv, "--out", str(tmp_path / "a"), "--progress"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n_ok"] == 2 and "sweep:" in out.err and "100%" in out.err
    assert cli.main([*argv, "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n_ok"] == 2 and "sweep:" not in out.err
