"""Sweep and report hardening (issue 13): orphan-free workers, clean stops, one sweep per folder, refused
foreign stores, no temp PDF left by a kill, size checks before any work, one-line errors."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from reports import cli
from reports.sweep import ResultsStore, SweepSpec, run_sweep
from reports.sweep.lifecycle import folder_lock, terminate_workers, worker_init

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # the fake point functions (_fake_points.py)
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]), "MPLBACKEND": "Agg"}


def _spec(tmp_path, sleep_s, n=4):
    spec = tmp_path / "spec.toml"
    spec.write_text(f"[base]\nsleep_s = {sleep_s}\n[grid]\nfamily = [\"gaussian\"]\n"
                    f"spread = {[0.05 * (i + 1) for i in range(n)]}\nn_users = [4]\nseed = [0]\n")
    return spec


def _sweep_proc(spec, out, workers=2):
    return subprocess.Popen([sys.executable, "-m", "reports.cli", "sweep", str(spec), "--out", str(out), "--json",
                             "--workers", str(workers), "--point-fn", "_fake_points:slow_point"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _children(pid):
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its exit status is left for a reaper


def _wait(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def _n_ok(out):
    db = Path(out) / "results.sqlite"
    if not db.is_file() or db.stat().st_size == 0:
        return 0
    try:
        con = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM points WHERE status = 'ok'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_sigkill_of_the_parent_leaves_no_worker_alive(tmp_path):
    proc = _sweep_proc(_spec(tmp_path, 60), tmp_path / "out")
    try:
        assert _wait(lambda: len(_children(proc.pid)) >= 2, 60), proc.stderr.read() if proc.poll() else "no workers"
        time.sleep(1.0)  # let the workers reach their initializer
        kids = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert _wait(lambda: not any(_alive(k) for k in kids), 10), [k for k in kids if _alive(k)]
    finally:
        for k in _children(proc.pid):
            os.kill(k, signal.SIGKILL)


def test_terminate_workers_returns_after_the_pool_manager_closed_its_wakeup_pipe():
    # CPython 3.11's exit hook writes to the pool's wake-up pipe; if the manager thread is still closing
    # it then, the interpreter prints "OSError: Bad file descriptor" with a traceback (seen in CI on SIGTERM)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from _fake_points import slow_point

    pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                               initializer=worker_init, initargs=(os.getpid(),))
    futures = [pool.submit(slow_point, {"sleep_s": 30, "family": "gaussian", "spread": 0.1, "n_users": 4,
                                        "seed": i}) for i in range(4)]
    assert _wait(lambda: any(f.running() for f in futures), 60)
    time.sleep(1.0)
    manager, wakeup, procs = pool._executor_manager_thread, pool._executor_manager_thread_wakeup, \
        list(pool._processes.values())
    terminate_workers(pool)
    assert not manager.is_alive() and wakeup._closed
    assert not any(p.is_alive() for p in procs)


def test_sigterm_stops_cleanly_with_finished_points_committed(tmp_path):
    out = tmp_path / "out"
    proc = _sweep_proc(_spec(tmp_path, 1.0, n=8), out)
    assert _wait(lambda: _n_ok(out) >= 2, 90)
    kids = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert _wait(lambda: not any(_alive(k) for k in kids), 10)
    done = _n_ok(out)
    assert done >= 2
    summary = run_sweep(SweepSpec.from_toml(tmp_path / "spec.toml"), out, workers=1,
                        point_fn="_fake_points:fake_point", progress=False)
    assert summary.n_skipped == done and summary.n_ok == summary.n_points == 8  # nothing lost, resumed


def test_second_sweep_on_the_same_folder_is_refused_and_nothing_is_lost(tmp_path, capsys):
    spec = _spec(tmp_path, 0.0)
    out = tmp_path / "out"
    with folder_lock(out):
        code = cli.main(["sweep", str(spec), "--out", str(out), "--workers", "1",
                         "--point-fn", "_fake_points:slow_point"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"another sweep (pid {os.getpid()})" in err
    # two processes at once: one runs, the other refuses or finds the work done; the store is complete
    spec = _spec(tmp_path, 0.5)
    a, b = _sweep_proc(spec, out, workers=1), _sweep_proc(spec, out, workers=1)
    (oa, ea), (ob, eb) = a.communicate(timeout=120), b.communicate(timeout=120)
    assert sorted([a.returncode, b.returncode]) in ([0, 0], [0, 2]), (ea, eb)
    assert "another sweep" in ea + eb or json.loads(oa)["n_computed"] + json.loads(ob)["n_computed"] == 4
    with ResultsStore(out, create=False) as store:
        rows = store.rows()
    assert len(rows) == 4 and len({r["point_id"] for r in rows}) == 4 and all(r["status"] == "ok" for r in rows)


def test_report_refuses_foreign_and_empty_stores_without_writing(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    con = sqlite3.connect(foreign / "results.sqlite")
    con.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    con.commit()
    con.close()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "results.sqlite").write_bytes(b"")
    for folder, needle in ((foreign, "not an idfree-audit results store"), (empty, "empty file")):
        before = (folder / "results.sqlite").read_bytes()
        code = cli.main(["report", "--results", str(folder), "--out", str(tmp_path / "r.pdf")])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and err.count("\n") == 1
        assert (folder / "results.sqlite").read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["results.sqlite"]
    assert not (tmp_path / "r.pdf").exists()


def test_sigkill_during_report_leaves_no_hidden_temp_pdf(tmp_path):
    from reports.pdf import remove_stale_temps

    res = tmp_path / "res"
    run_sweep(SweepSpec.from_toml(_spec(tmp_path, 0.0)), res, workers=1, point_fn="_fake_points:fake_point",
              progress=False)
    out = tmp_path / "r.pdf"
    proc = subprocess.Popen([sys.executable, "-m", "reports.cli", "report", "--results", str(res), "--out", str(out)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(4.0)
    proc.kill()
    proc.wait(10)
    assert not list(tmp_path.glob(".r.pdf.*"))
    stale = tmp_path / ".r.pdf.abc123.pdf"  # what an older version (or a kill mid-rename) left behind
    stale.write_bytes(b"")
    assert remove_stale_temps(out) == [stale] and not stale.exists()


def test_huge_sweep_spec_asks_for_yes_before_any_work(tmp_path, capsys):
    spec = tmp_path / "huge.toml"
    spec.write_text("[grid]\nfamily = [\"gaussian\"]\nspread = [%s]\nlr = [%s]\nseed = [%s]\n" % (
        ", ".join(f"{0.01 * (i + 1):.2f}" for i in range(200)), ", ".join(f"{1e-4 * (i + 1):.4f}" for i in range(100)),
        ", ".join(str(i) for i in range(100))))
    start = time.perf_counter()
    code = cli.main(["sweep", str(spec), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert time.perf_counter() - start < 10
    assert code == 2 and "2,000,000 points" in err and "--yes" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    code = cli.main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--yes"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot fit in memory" in err and not (tmp_path / "out").exists()


def test_deeply_nested_sweep_toml_is_one_line(tmp_path, capsys):
    spec = tmp_path / "deep.toml"
    spec.write_text("x = " + "[" * 100000 + "]" * 100000 + "\n")
    code = cli.main(["sweep", str(spec), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not valid TOML" in err


def test_report_with_nothing_to_plot_emits_no_legend_warning(tmp_path):
    from reports.pdf import write_report

    run_sweep(SweepSpec.from_toml(_spec(tmp_path, 0.0, n=2)), tmp_path / "res", workers=1,
              point_fn="_fake_points:bare_point", progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_report(tmp_path / "res", tmp_path / "r.pdf", verdicts=[])
    assert not [w for w in caught if "legend" in str(w.message).lower()]


def test_sigkill_of_a_dask_sweep_leaves_no_process_and_no_task_behind(tmp_path):
    """The Dask executor starts no process of its own: ``--scheduler ADDRESS`` only connects a client to a
    cluster that belongs to someone else (here a LocalCluster in this test process, threads only). So the
    sweep has no child to orphan, and once it is SIGKILLed the scheduler drops its client and every one of
    its points within 10 s (the cluster's workers are the cluster's, and stay)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp://",
                      dashboard_address=None) as cluster:
        sched = cluster.scheduler

        def ours():
            return [k for k in list(sched.tasks) if str(k).startswith("idfree-point-")]

        proc = subprocess.Popen([sys.executable, "-m", "reports.cli", "sweep", str(_spec(tmp_path, 6, n=4)),
                                 "--out", str(tmp_path / "out"), "--json", "--scheduler", cluster.scheduler_address,
                                 "--point-fn", "_fake_points:slow_point"],
                                env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            assert _wait(lambda: len(ours()) == 4 or proc.poll() is not None, 60), "no points reached the scheduler"
            assert proc.poll() is None, proc.stderr.read()
            assert _children(proc.pid) == []  # nothing of the sweep's own to outlive it
            n_clients = len(sched.clients)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            assert _wait(lambda: not ours() and len(sched.clients) < n_clients, 10), (ours(), list(sched.clients))
        finally:
            if proc.poll() is None:
                proc.kill()
