"""``attack --policy``: exit 1 on identifier columns and on the static baseline, 0 on a null pool."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from idfree_core.uploads import anonymize, write_oracle, write_uploads
from reports import cli

POLICY = str(Path(__file__).resolve().parents[1] / "examples" / "policy.toml")
N_USERS, PER_USER, DIM = 4, 30, 3


def _pool(d: Path, name: str, shared: bool, ids: bool = False):
    g = np.random.default_rng(1)
    rows = np.repeat(np.arange(N_USERS), PER_USER)
    names = np.asarray([f"u{i}" for i in range(N_USERS)])
    if shared:  # every user draws from one distribution: nothing to re-identify
        x = g.normal(0.0, 1.0, (rows.size, DIM))
    else:  # the static baseline: one fixed vector per user, as an identifier would be
        x = g.normal(0.0, 3.0, (N_USERS, DIM))[rows]
    pool, oracle = anonymize(x, names[rows], session=(g.random(rows.size) < 0.3).astype(int), rng=g)
    write_uploads(pool, d / f"{name}.parquet")
    write_oracle(oracle, d / f"{name}_oracle.parquet")
    if ids:
        table = pq.read_table(d / f"{name}.parquet")
        users = dict(zip(oracle.upload_id.tolist(), oracle.user.tolist()))
        col = [users[u] for u in table.column("upload_id").to_pylist()]
        pq.write_table(table.append_column("device_id", pa.array(col)), d / f"{name}.parquet")
    return d / f"{name}.parquet", d / f"{name}_oracle.parquet"


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    d = tmp_path_factory.mktemp("policy")
    return {"static": _pool(d, "static", shared=False), "null": _pool(d, "null", shared=True),
            "ids": _pool(d, "ids", shared=True, ids=True)}


def _attack(capsys, uploads, oracle, *extra):
    code = cli.main(["attack", str(uploads), "--oracle", str(oracle), "--attacks", "linkage",
                     "--json", *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_static_baseline_fails_the_policy(pools, capsys):
    code, data, err = _attack(capsys, *pools["static"], "--policy", POLICY)
    assert code == 1 and "policy default: FAIL" in err
    rows = {r["threat"]: r for r in data["scorecard"]}
    assert rows["multi_upload_linkage"]["verdict"] == "FAIL" and rows["multi_upload_linkage"]["value"] > 0.9
    assert data["policy"]["exit_code"] == 1


def test_null_pool_passes_and_identifier_column_fails(pools, capsys):
    code, data, err = _attack(capsys, *pools["null"], "--policy", POLICY, "--attacks", "clustering,linkage")
    assert code == 0, [(r["threat"], r["verdict"], r["ci"]) for r in data["scorecard"]]
    assert not [r for r in data["scorecard"] if r["verdict"] == "FAIL"]
    code, data, err = _attack(capsys, *pools["ids"], "--policy", POLICY)
    assert code == 1 and "identifier columns FAIL" in err
    # without a policy the command reports the same finding and exits 0
    code, data, _ = _attack(capsys, *pools["ids"])
    assert code == 0 and data["policy"] is None
    assert {r["threat"]: r["verdict"] for r in data["scorecard"]}["identifier_columns"] == "FAIL"


def test_bad_policy_is_bad_input_before_any_work(pools, capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[thresholds]\nmulti_upload_linkage = -1\n")
    code = cli.main(["attack", str(pools["null"][0]), "--policy", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "idfree-audit attack: error:" in err
