"""``idfree-audit sweep`` and ``idfree-audit report`` (fake point function injected via --point-fn)."""

import json
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader

from reports import cli
from reports.commands.report import results_dir_for
from reports.defaults import default_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fake point functions (_fake_points.py)

SPEC = """
[grid]
family = ["gaussian", "static"]
spread = [0.05, 0.3]
n_users = [4]
seed = [0]
"""
FAKE = ["--point-fn", "_fake_points:fake_point", "--workers", "1"]


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sweep_then_report_results(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    code, out, err = _run(capsys, "sweep", str(spec), "--out", str(tmp_path / "res"), "--json", *FAKE)
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["n_points"], summary["n_ok"], summary["n_computed"]) == (3, 3, 3)
    code, out, _ = _run(capsys, "sweep", str(spec), "--out", str(tmp_path / "res"), *FAKE)
    assert code == 0 and "3/3 points done" in out and "0 computed now" in out
    pdf = tmp_path / "r.pdf"
    code, out, err = _run(capsys, "report", "--results", str(tmp_path / "res"), "--out", str(pdf), "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["pages"] == len(PdfReader(pdf).pages) >= 6 and info["sweep"] is None
    assert info["recommended"]["family"] in ("gaussian", "static")


def test_report_with_spec_keeps_results_next_to_pdf_and_resumes(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    pdf = tmp_path / "out" / "audit.pdf"
    code, out, err = _run(capsys, "report", "--spec", str(spec), "--out", str(pdf), "--json", *FAKE)
    assert code == 0, err
    info = json.loads(out)
    assert info["results"] == str(tmp_path / "out" / "audit_results") == str(results_dir_for(pdf))
    assert info["sweep"]["n_computed"] == 3 and pdf.is_file()
    code, out, _ = _run(capsys, "report", "--spec", str(spec), "--out", str(pdf), "--json", *FAKE)
    assert json.loads(out)["sweep"]["n_computed"] == 0
    # another spec into the same results folder is refused with one clear line
    spec.write_text(SPEC.replace("seed = [0]", "seed = [1]"))
    code, _, err = _run(capsys, "report", "--spec", str(spec), "--out", str(pdf), *FAKE)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "another sweep spec" in err


@pytest.mark.parametrize("argv, needle", [
    (["sweep", "{tmp}/missing.toml", "--out", "{tmp}/o"], "missing.toml: sweep spec not found"),
    (["sweep", "{tmp}/bad.toml", "--out", "{tmp}/o"], "unknown grid key"),
    (["sweep", "{tmp}/good.toml", "--out", "{tmp}/o", "--workers", "0"], "argument --workers: must be >= 1"),
    (["report", "--results", "{tmp}/none", "--out", "{tmp}/r.pdf"], "no sweep results"),
    (["report", "--results", "{tmp}", "--out", "{tmp}/r.txt"], "must be a .pdf file"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, needle):
    (tmp_path / "bad.toml").write_text("[grid]\ncolour = ['red']\n")
    (tmp_path / "good.toml").write_text(SPEC)
    code, _, err = _run(capsys, *[a.format(tmp=tmp_path) for a in argv], "--point-fn", "_fake_points:fake_point")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "error" in lines[0]


def test_failed_points_give_exit_1_and_are_listed(tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace("[grid]", f"[base]\ncalls_file = \"{tmp_path / 'c'}\"\nfail_family = \"static\"\n[grid]"))
    code, out, err = _run(capsys, "sweep", str(spec), "--out", str(tmp_path / "res"),
                          "--point-fn", "_fake_points:counting_point", "--workers", "1")
    assert code == 1 and "1 failed" in out and "deliberate failure for static" in out and "rerun" in err


def test_builtin_specs_are_valid_and_small():
    full, quick = default_spec(), default_spec(quick=True)
    assert {p["family"] for p in full.points()} == {"beta", "gaussian", "static"}
    assert len(quick.points()) < len(full.points()) <= 24
    assert full.spec_hash != quick.spec_hash
