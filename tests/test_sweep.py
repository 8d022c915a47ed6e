"""Sweep spec validation, results store (atomic rows, resume, spec guard) and executors (local, Dask)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from idfree_core.errors import InputError
from reports.sweep import ResultsStore, SweepSpec, point_id, run_sweep

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the fake point functions (_fake_points.py)
SPEC = """
name = "t"
attacks = ["clustering", "linkage"]
[base]
calls_file = "{calls}"
[grid]
family = ["gaussian", "beta", "static"]
spread = [0.05, 0.2, 0.4]
n_users = [4]
seed = [0, 1]
"""


def _spec(tmp_path, extra=""):
    calls = tmp_path / "calls.txt"
    return SweepSpec.from_toml_string(SPEC.format(calls=calls) + extra), calls


def _final(out):
    with ResultsStore(out, create=False) as store:
        rows = store.rows()
        arts = {r["point_id"]: store.artifacts(r["point_id"]) for r in rows}
    return {r["point_id"]: (r["status"], r["metrics"], r["config"]) for r in rows}, arts


def test_points_expand_grid_and_dedupe_static(tmp_path):
    spec, _ = _spec(tmp_path)
    points = spec.points()
    # 2 families x 3 spreads x 2 seeds + static once per seed (spread meaningless there)
    assert len(points) == 2 * 3 * 2 + 2
    assert len({point_id(p) for p in points}) == len(points)
    assert all(p["spread"] is None for p in points if p["family"] == "static")
    assert spec.spec_hash == SweepSpec.from_dict(spec.to_dict()).spec_hash
    other = SweepSpec.from_toml_string(SPEC.format(calls="x").replace("seed = [0, 1]", "seed = [0]"))
    assert other.spec_hash != spec.spec_hash


@pytest.mark.parametrize("text, needle", [
    ("[grid]\nfamily = []\n", "grid.family is an empty list"),
    ("[grid]\nfamily = ['weibull']\n", "family values must be one of"),
    ("[grid]\nspread = ['wide']\n", "spread values must be a positive number"),
    ("[grid]\nsteps = [1.5]\n", "steps values must be a positive integer"),
    ("[grid]\nn_users = [1]\n", "n_users values must be an integer >= 2"),
    ("[grid]\nbogus = [1]\n", "unknown grid key"),
    ("colour = 1\n[grid]\nseed = [0]\n", "unknown key"),
    ("[base]\nseed = 3\n[grid]\nfamily = ['beta']\n", "put swept keys in [grid]"),
    ("attacks = ['telepathy']\n[grid]\nseed = [0]\n", "attacks must be"),
    ("[base]\nx = 1\n", "missing or empty [grid]"),
    ("[grid\n", "not valid TOML"),
])
def test_bad_specs_are_one_line_errors(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        SweepSpec.from_toml(path)
    msg = str(err.value)
    assert needle in msg and str(path) in msg and "\n" not in msg


def test_missing_spec_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        SweepSpec.from_toml(tmp_path / "nope.toml")


def test_serial_run_then_resume_computes_nothing(tmp_path):
    spec, calls = _spec(tmp_path)
    out = tmp_path / "out"
    s1 = run_sweep(spec, out, workers=1, point_fn="_fake_points:counting_point", progress=False)
    assert (s1.n_points, s1.n_ok, s1.n_failed, s1.n_computed) == (14, 14, 0, 14)
    s2 = run_sweep(spec, out, workers=1, point_fn="_fake_points:counting_point", progress=False)
    assert (s2.n_computed, s2.n_skipped, s2.n_ok) == (0, 14, 14)
    assert len(calls.read_text().split()) == 14
    rows, arts = _final(out)
    pid = next(iter(rows))
    assert arts[pid]["embedding"].dtype == np.float32 and arts[pid]["user"].shape[0] == arts[pid]["embedding"].shape[0]


def test_killed_sweep_resumes_without_recomputing(tmp_path):
    """A hard kill (os._exit in the sweep process) after k points; the rerun finishes the rest."""
    spec, calls = _spec(tmp_path)
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC.format(calls=calls))
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(HERE)!r})
        from reports.sweep import SweepSpec, run_sweep
        run_sweep(SweepSpec.from_toml({str(spec_path)!r}), {str(out)!r}, workers=1,
                  point_fn="_fake_points:counting_point", progress=False)
    """)
    env = {**os.environ, "FAKE_DIE_AFTER": "5"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == 3, proc.stderr.decode()
    with ResultsStore(out, create=False) as store:
        assert len(store.status()) == 5  # five committed points survived the kill
    summary = run_sweep(spec, out, workers=1, point_fn="_fake_points:counting_point", progress=False)
    assert (summary.n_ok, summary.n_computed, summary.n_skipped) == (14, 9, 5)
    logged = calls.read_text().split()
    assert sorted(logged) == sorted(point_id(p) for p in spec.points())  # each point exactly once
    # identical to an uninterrupted run
    clean = tmp_path / "clean"
    run_sweep(spec, clean, workers=1, point_fn="_fake_points:fake_point", progress=False)
    resumed, _ = _final(out)
    fresh, _ = _final(clean)
    assert resumed == fresh


def test_spec_hash_mismatch_is_a_clear_error(tmp_path):
    spec, _ = _spec(tmp_path)
    out = tmp_path / "out"
    run_sweep(spec, out, workers=1, point_fn="_fake_points:fake_point", progress=False)
    other, _ = _spec(tmp_path, extra="steps = [10]\n")
    with pytest.raises(InputError, match="another sweep spec"):
        run_sweep(other, out, workers=1, point_fn="_fake_points:fake_point", progress=False)


def test_failed_point_recorded_and_sweep_continues(tmp_path):
    spec = SweepSpec.from_toml_string(SPEC.format(calls=tmp_path / "c.txt").replace(
        "[base]", "[base]\nfail_family = \"beta\""))
    out = tmp_path / "out"
    s = run_sweep(spec, out, workers=1, point_fn="_fake_points:counting_point", progress=False)
    assert (s.n_ok, s.n_failed) == (8, 6)
    with ResultsStore(out, create=False) as store:
        failed = store.rows(status="failed")
    assert len(failed) == 6 and all("deliberate failure for beta" in r["error"] for r in failed)
    assert all(r["config"]["family"] == "beta" and r["metrics"] is None for r in failed)
    # failed points are retried on the next run (and fail again here), finished ones are not
    s2 = run_sweep(spec, out, workers=1, point_fn="_fake_points:counting_point", progress=False)
    assert (s2.n_computed, s2.n_failed) == (6, 6)
    s3 = run_sweep(spec, out, workers=1, point_fn="_fake_points:counting_point", progress=False,
                   retry_failed=False)
    assert s3.n_computed == 0


def test_local_processes_and_dask_give_identical_results(tmp_path):
    from distributed import Client, LocalCluster

    spec, _ = _spec(tmp_path)
    run_sweep(spec, tmp_path / "serial", workers=1, point_fn="_fake_points:fake_point", progress=False)
    run_sweep(spec, tmp_path / "procs", workers=2, point_fn="_fake_points:fake_point", progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        # by address, as `--scheduler ADDRESS` does
        s = run_sweep(spec, tmp_path / "dask", scheduler=cluster.scheduler_address,
                      point_fn="_fake_points:fake_point", progress=False)
        with Client(cluster) as client:  # or with a Client the caller owns (left open)
            from _fake_points import fake_point
            s2 = run_sweep(spec, tmp_path / "dask2", scheduler=client, point_fn=fake_point, progress=False)
            assert client.status == "running"
    assert s.n_ok == s2.n_ok == 14
    serial, a1 = _final(tmp_path / "serial")
    procs, a2 = _final(tmp_path / "procs")
    dask, a3 = _final(tmp_path / "dask")
    assert serial == procs == dask == _final(tmp_path / "dask2")[0]
    for pid in serial:
        for name in a1[pid]:
            np.testing.assert_array_equal(a1[pid][name], a2[pid][name])
            np.testing.assert_array_equal(a1[pid][name], a3[pid][name])


def test_store_record_is_all_or_nothing(tmp_path):
    with ResultsStore(tmp_path) as store:
        store.bind("h", {"x": 1})
        with pytest.raises(ValueError):  # an unknown status aborts before anything is written
            store.record("p1", 0, {"a": 1}, status="done", metrics={"v": 1.0})
        with pytest.raises(TypeError):  # an unserialisable metric aborts before anything is written
            store.record("p1", 0, {"a": 1}, status="ok", metrics={"v": object()})
        assert store.status() == {}
        store.record("p1", 0, {"a": 1}, status="ok", metrics={"v": float("nan")},
                     artifacts={"e": np.ones((2, 3), np.float32)})
        row = store.rows()[0]
        assert row["metrics"] == {"v": None} and store.artifacts("p1")["e"].shape == (2, 3)


def test_results_folder_without_store_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no sweep results"):
        ResultsStore(tmp_path / "empty", create=False)


def test_workers_must_be_positive(tmp_path):
    spec, _ = _spec(tmp_path)
    with pytest.raises(InputError, match="workers"):
        run_sweep(spec, tmp_path / "o", workers=0, point_fn="_fake_points:fake_point", progress=False)


def test_point_settings_map_onto_the_simulation_config():
    import torch

    from reports.sweep.point import beta_concentration, simulation_config

    for spread in (0.05, 0.2, 0.4):
        c = beta_concentration(spread)
        assert float(torch.distributions.Beta(2.0 * c, 5.0 * c).stddev) == pytest.approx(spread, rel=1e-6)
    with pytest.raises(InputError, match="out of reach for the Beta family"):
        beta_concentration(0.5)
    cfg = simulation_config({"family": "beta", "spread": 0.2, "lr": 0.01, "clip": 2.0, "steps": 7, "n_users": 5,
                             "seed": 3, "docs_per_user": 11, "attacks": ["linkage"]})
    assert (cfg.family, cfg.device_lr, cfg.device_clip, cfg.device_max_steps, cfg.n_users, cfg.seed,
            cfg.docs_per_user) == ("beta", 0.01, 2.0, 7, 5, 3, 11)
    assert cfg.beta_concentration == pytest.approx(beta_concentration(0.2))
    assert simulation_config({"family": "gaussian", "spread": 0.3}).std == 0.3
    with pytest.raises(InputError, match="unknown \\[base\\] setting"):
        simulation_config({"family": "static", "colour": "red"})
    with pytest.raises(InputError, match="below 0.45"):
        SweepSpec.from_toml_string("[grid]\nfamily = ['beta']\nspread = [0.5]\n")


def test_per_family_spreads():
    spec = SweepSpec.from_toml_string(
        "[grid]\nfamily = ['gaussian', 'beta', 'static']\nseed = [0, 1]\n"
        "[grid.spread]\ngaussian = [0.1, 1.0, 3.0]\nbeta = [0.1, 0.3]\n")
    points = spec.points()
    by = lambda fam: sorted({p["spread"] for p in points if p["family"] == fam}, key=str)  # noqa: E731
    assert by("gaussian") == [0.1, 1.0, 3.0] and by("beta") == [0.1, 0.3] and by("static") == [None]
    assert len(points) == (3 + 2 + 1) * 2
    assert SweepSpec.from_dict(spec.to_dict()).spec_hash == spec.spec_hash
    with pytest.raises(InputError, match="below 0.45"):
        SweepSpec.from_toml_string("[grid]\nfamily = ['beta']\n[grid.spread]\nbeta = [1.0]\n")
    with pytest.raises(InputError, match="maps 'beta'/'gaussian'"):
        SweepSpec.from_toml_string("[grid]\nfamily = ['beta']\n[grid.spread]\nstatic = [1.0]\n")


def test_dead_worker_process_stops_the_sweep_and_a_rerun_completes(tmp_path, monkeypatch):
    from reports.sweep import WorkerDied

    spec, calls = _spec(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setenv("FAKE_DIE_AFTER", "4")  # inherited by the spawned workers
    with pytest.raises(WorkerDied, match="rerun the same command to resume"):
        run_sweep(spec, out, workers=2, point_fn="_fake_points:counting_point", progress=False)
    with ResultsStore(out, create=False) as store:
        saved = set(store.status())
    # Each of the 2 workers may pass the die-after check at count 3 before either logs: at most 4 + 1.
    assert 0 < len(saved) <= 4 + 1
    monkeypatch.delenv("FAKE_DIE_AFTER")
    summary = run_sweep(spec, out, workers=2, point_fn="_fake_points:counting_point", progress=False)
    assert summary.n_ok == 14 and summary.n_skipped == len(saved)
    logged = calls.read_text().split()
    assert not saved & {p for p in logged if logged.count(p) > 1}  # committed points never recomputed
    run_sweep(spec, tmp_path / "clean", workers=1, point_fn="_fake_points:fake_point", progress=False)
    assert _final(out)[0] == _final(tmp_path / "clean")[0]


def test_unstorable_result_is_a_failed_point(tmp_path):
    spec, _ = _spec(tmp_path)
    s = run_sweep(spec, tmp_path / "o", workers=1, point_fn="_fake_points:unstorable_point", progress=False)
    assert s.n_failed == 14 and all("result not storable" in e for e in s.errors.values())


def test_base_accepts_lists_of_scalars_but_not_tables():
    from reports.sweep.point import simulation_config

    spec = SweepSpec.from_toml_string("[base]\nbaselines = ['static', 'ondevice']\n[grid]\nfamily = ['gaussian']\n")
    assert simulation_config(spec.points()[0]).baselines == ("static", "ondevice")
    with pytest.raises(InputError, match="base.opts must be a string, number, boolean or a list"):
        SweepSpec.from_toml_string("[base.opts]\na = 1\n[grid]\nfamily = ['gaussian']\n")
    with pytest.raises(InputError, match="must be finite"):
        SweepSpec.from_toml_string("[base]\nx = nan\n[grid]\nfamily = ['gaussian']\n")
