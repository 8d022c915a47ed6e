"""``idfree-audit attack`` end to end on small synthetic files."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from attacks.base import METRICS
from idfree_core.uploads import UploadPool, UserDistributions, anonymize, write_oracle, write_uploads, write_user_distributions
from reports import cli

N_USERS, PER_USER, DIM = 4, 30, 3


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("attack_cli")
    g = np.random.default_rng(0)
    torch.manual_seed(0)
    mean = g.normal(0.0, 4.0, (N_USERS, DIM))
    std = np.full((N_USERS, DIM), 0.7)
    rows = np.repeat(np.arange(N_USERS), PER_USER)
    x = torch.distributions.Normal(torch.tensor(mean[rows]), torch.tensor(std[rows])).sample().numpy()
    names = np.asarray([f"u{i}" for i in range(N_USERS)])
    pool, oracle = anonymize(x, names[rows], session=(g.random(rows.size) < 0.25).astype(int),
                             text=[f"t{i}" for i in range(rows.size)], rng=g)
    write_uploads(pool, d / "uploads.parquet")
    write_oracle(oracle, d / "oracle.parquet")
    write_user_distributions(UserDistributions("gaussian", tuple(names), {"mean": mean, "std": std}), d / "dists.json")
    table = pq.read_table(d / "uploads.parquet")
    pq.write_table(table.append_column("device_id", pa.array(names[rows].tolist())), d / "with_ids.parquet")
    return d, pool, oracle


def _run(capsys, *argv):
    code = cli.main(["attack", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_output_has_the_documented_keys(files, capsys):
    d, pool, _ = files
    code, out, _ = _run(capsys, d / "uploads.parquet", "--oracle", d / "oracle.parquet",
                        "--distributions", d / "dists.json", "--json", "--seed", 3)
    assert code == 0
    data = json.loads(out)
    assert {"attacks", "findings", "summary"} <= set(data)
    assert data["attacks"]
    for row in data["attacks"]:
        assert {"name", "metric", "value", "ci", "baseline", "advantage", "ceiling", "n"} <= set(row)
        assert row["metric"] in METRICS and len(row["ci"]) == 2
        assert row["advantage"] == pytest.approx(row["value"] - row["baseline"])
    metrics = {r["metric"] for r in data["attacks"]}
    assert {"ari", "attribution_accuracy", "linkage_top1", "auc", "parameter_error"} <= metrics
    assert data["summary"]["n_users_estimated"] == N_USERS
    ceilings = [r["ceiling"] for r in data["attacks"] if r["metric"] == "attribution_accuracy"]
    if importlib.util.find_spec("privacy_audit.misattribution") is not None:
        assert all(c is not None and 0.0 < c <= 1.0 for c in ceilings)


def test_text_output_is_a_table(files, capsys):
    d, _, _ = files
    code, out, _ = _run(capsys, d / "uploads.parquet", "--oracle", d / "oracle.parquet", "--attacks", "clustering,linkage")
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("attack "))
    assert set(lines[header + 1].replace(" ", "")) == {"-"}
    assert any("clustering[auto]" in line and "attribution_accuracy" in line for line in lines)
    assert "findings:" in out


def test_without_oracle_reports_clusters_and_links(files, capsys):
    d, pool, _ = files
    code, out, _ = _run(capsys, d / "uploads.parquet", "--json", "--attacks", "clustering,linkage")
    data = json.loads(out)
    assert code == 0 and data["attacks"] == []
    assert data["summary"]["n_users_estimated"] == N_USERS
    assert data["summary"]["linkage"]["n_links"] == int((pool.session >= 1).sum())


def test_identifier_column_is_a_loud_finding(files, capsys):
    d, _, _ = files
    code, out, err = _run(capsys, d / "with_ids.parquet", "--attacks", "clustering")
    assert code == 0
    assert "WARNING" in err and "PRIVACY FINDING" in err and "device_id" in err
    code, out, _ = _run(capsys, d / "with_ids.parquet", "--attacks", "clustering", "--json")
    assert code == 0 and json.loads(out)["findings"][0].startswith("PRIVACY FINDING")


def _bad(d, case):
    p = d / f"bad_{case}.parquet"
    if case == "empty":
        p.write_bytes(b"")
    elif case == "missing_embedding":
        pq.write_table(pa.table({"upload_id": [0, 1]}), p)
    elif case == "missing_upload_id":
        pq.write_table(pa.table({"embedding": [[0.1], [0.2]]}), p)
    elif case == "ragged":
        pq.write_table(pa.table({"upload_id": [0, 1], "embedding": [[0.1, 0.2], [0.3]]}), p)
    elif case == "nan":
        pq.write_table(pa.table({"upload_id": [0, 1], "embedding": [[0.1, float("nan")], [0.3, 0.4]]}), p)
    elif case == "inf":
        pq.write_table(pa.table({"upload_id": [0, 1], "embedding": [[0.1, float("-inf")], [0.3, 0.4]]}), p)
    elif case == "garbage":
        p.write_bytes(b"PAR1 not really")
    return p


@pytest.mark.parametrize("case", ["empty", "missing_embedding", "missing_upload_id", "ragged", "nan", "inf", "garbage"])
def test_bad_uploads_file_is_one_line_exit_2(files, capsys, case):
    d, _, _ = files
    path = _bad(d, case)
    code, out, err = _run(capsys, path)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idfree-audit attack: error:") and path.name in lines[0]


def _bad_other(d, pool, case):
    if case == "oracle_mismatch":
        p = d / "oracle_mismatch.parquet"
        pq.write_table(pa.table({"upload_id": (pool.upload_id + 500).tolist(), "user": ["x"] * pool.n}), p)
        return ["--oracle", p], p.name
    if case == "oracle_missing_user":
        p = d / "oracle_nouser.parquet"
        pq.write_table(pa.table({"upload_id": pool.upload_id.tolist()}), p)
        return ["--oracle", p], p.name
    if case == "distributions_bad_json":
        p = d / "dists_bad.json"
        p.write_text('{"family": "gaussian", "users": {')
        return ["--distributions", p], p.name
    if case == "distributions_nan":
        p = d / "dists_nan.json"
        p.write_text('{"family": "gaussian", "users": {"u0": {"mean": [NaN, 0, 0], "std": [1, 1, 1]}}}')
        return ["--distributions", p], p.name
    if case == "distributions_dim":
        p = d / "dists_dim.json"
        p.write_text('{"family": "gaussian", "users": {"u0": {"mean": [0], "std": [1]}}}')
        return ["--distributions", p], p.name
    if case == "unknown_attack":
        return ["--attacks", "clustering,teleport"], "teleport"
    if case == "text_features_without_text":
        p = d / "no_text.parquet"
        write_uploads(UploadPool(upload_id=pool.upload_id, embedding=pool.embedding), p)
        return [p, "--features", "text"], "text"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["oracle_mismatch", "oracle_missing_user", "distributions_bad_json",
                                  "distributions_nan", "distributions_dim", "unknown_attack",
                                  "text_features_without_text"])
def test_bad_companion_files_and_options_exit_2(files, capsys, case):
    d, pool, _ = files
    extra, needle = _bad_other(d, pool, case)
    argv = extra if case == "text_features_without_text" else [d / "uploads.parquet", *extra]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and str(needle) in lines[0], lines


def test_console_entry_point_end_to_end(files):
    d, _, _ = files
    proc = subprocess.run([sys.executable, "-m", "reports.cli", "attack", str(d / "uploads.parquet"), "--oracle",
                           str(d / "oracle.parquet"), "--attacks", "clustering", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    names = {r["name"] for r in data["attacks"]}
    assert names - {"clustering[em][n_users held-out]"} == {"clustering[auto]", "clustering[kmeans]",
                                                            "clustering[auto][n_users known]", "clustering[em]",
                                                            "clustering[em][n_users known]", "clustering[collapsed]",
                                                            "clustering[collapsed][n_users known]"}
