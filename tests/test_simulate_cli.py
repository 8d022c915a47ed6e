"""``idfree-audit simulate``: --json on a tiny configuration; bad arguments exit 2 with one line."""

import json
import subprocess
import sys

import pytest

from idfree_core.uploads import read_oracle, read_uploads, read_user_distributions

TINY = ["--set", "docs_per_user=12", "--set", "d_model=16", "--set", "n_heads=2", "--set", "n_layers=1",
        "--set", "central_epochs=1", "--set", "device_epochs=1", "--set", "cloud_epochs=1",
        "--set", "ondevice_epochs=1", "--set", "entropy_samples=2", "--set", "n_bootstrap=100"]


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "reports.cli", "simulate", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_simulate_json_tiny(tmp_path):
    out = tmp_path / "run"
    proc = _cli("--users", "4", "--family", "gaussian", "--std", "0.3", "--seed", "2", "--rounds", "1",
                *TINY, "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["family"] == "gaussian" and metrics["config"]["std"] == 0.3
    assert metrics["config"]["n_users"] == 4 and metrics["seed"] == 2
    assert {"central", "idfree", "static"} <= set(metrics["accuracy"])
    assert "%|" not in proc.stderr  # no progress bars with --json
    pool = read_uploads(out / "uploads.parquet")
    assert len(read_oracle(out / "oracle.parquet", pool).users) == 4
    assert read_user_distributions(out / "user_distributions.json").family == "gaussian"


@pytest.mark.parametrize("args, needle", [
    (["--set", "device_val_fraction=2"], "device_val_fraction"),
    (["--set", "no_such_field=1"], "no_such_field"),
    (["--data", "/nonexistent/reviews.csv", "--user-column", "u", "--text-column", "t"], "reviews.csv"),
])
def test_bad_values_one_line_exit_2(tmp_path, args, needle):
    proc = _cli(*args, "--out", str(tmp_path / "x"), timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and needle in lines[0], proc.stderr


@pytest.mark.parametrize("args", [["--users", "0"], ["--family", "dirichlet"], ["--std", "nan"], []])
def test_bad_arguments_exit_2(tmp_path, args):
    extra = [] if not args else ["--out", str(tmp_path / "x")]
    proc = _cli(*args, *extra, timeout=120)
    assert proc.returncode == 2
    assert "error" in proc.stderr.strip().splitlines()[-1]
