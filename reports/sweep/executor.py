"""Run a sweep: local worker processes or a Dask distributed cluster; the parent is the only writer.

Algorithm: expand the spec into points, drop those already committed with status ``ok`` in the
store (resume), and evaluate the rest with the point function (default
:func:`reports.sweep.point.evaluate_point`).  Each result is committed by the parent as soon as it
arrives (``ResultsStore.record``: one SQLite transaction), so killing the sweep loses at most the
points in flight and never a finished one.  Failed points (the point function raised) are
recorded with their error and the sweep goes on; on the next run they are retried
(``retry_failed=True``, the default) because failures such as a killed worker are often transient.

Process hygiene (``reports.sweep.lifecycle``): workers die with the parent (parent-death signal
and a watchdog), SIGTERM and SIGINT stop the sweep with every finished point committed, and an
exclusive lock on the output folder refuses a second sweep there.  ``reports.sweep.budget``
refuses, before anything is expanded, a sweep estimated past an hour or half the memory unless
``yes=True`` (``--yes``).

Determinism: a point's randomness comes from its own config (its ``seed``) only, so local,
serial and Dask execution give identical rows.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from idfree_core.errors import InputError
from reports.sweep.budget import check_size
from reports.sweep.lifecycle import folder_lock, sigterm_as_interrupt, terminate_workers, worker_init
from reports.sweep.spec import SweepSpec, point_id
from reports.sweep.store import ResultsStore

PointFn = Callable[[Mapping[str, Any]], Mapping[str, Any]]
DEFAULT_POINT_FN = "reports.sweep.point:evaluate_point"


class WorkerDied(RuntimeError):
    """A worker process died (killed, out of memory); finished points are saved, rerun to resume."""


@dataclass(frozen=True)
class SweepSummary:
    """What a sweep run did: points in the spec, committed ok, failed, and computed this run."""

    out_dir: str
    store: str
    spec_hash: str
    n_points: int
    n_ok: int
    n_failed: int
    n_computed: int
    n_skipped: int
    elapsed_s: float
    errors: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_point_fn(point_fn: PointFn | str | None) -> PointFn:
    """A callable from ``None`` (the real pipeline), ``"module:function"`` or a callable."""
    spec = DEFAULT_POINT_FN if point_fn is None else point_fn
    if callable(spec):
        return spec
    module, _, name = str(spec).partition(":")
    return getattr(importlib.import_module(module), name)


def run_point(point_fn: PointFn | str | None, config: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluate one point, catching its failure: ``{"status", "metrics", "artifacts", "error", "elapsed_s"}``.

    Runs in the worker; ``KeyboardInterrupt``/``SystemExit`` are not caught (they stop the sweep).
    """
    start = time.perf_counter()
    try:
        result = dict(resolve_point_fn(point_fn)(dict(config)))
        artifacts = result.pop("artifacts", None) or {}
        return {"status": "ok", "metrics": result, "artifacts": artifacts, "error": None,
                "elapsed_s": time.perf_counter() - start}
    except Exception as exc:  # a failed point is data, not a crash
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return {"status": "failed", "metrics": None, "artifacts": {}, "error": " ".join(last.split()),
                "elapsed_s": time.perf_counter() - start}


class _Progress:
    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=initial, desc="sweep", unit="point", disable=not enabled)
        self.done, self.failed, self.running = initial, 0, 0
        self.update(0)

    def update(self, n: int) -> None:
        self.bar.set_postfix(done=self.done, running=self.running, failed=self.failed, refresh=not n)
        if n:
            self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _local_results(todo, point_fn, workers):
    """Yield (index, config, result) as points finish; in-process when ``workers == 1``."""
    if workers == 1:
        for k, (idx, config) in enumerate(todo):
            yield idx, config, run_point(point_fn, config), int(k + 1 < len(todo))
        return
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=worker_init,
                               initargs=(os.getpid(),))
    try:
        futures = {pool.submit(run_point, point_fn, config): (idx, config) for idx, config in todo}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                idx, config = futures[fut]
                try:
                    result = fut.result()
                except BrokenProcessPool:
                    raise WorkerDied("a sweep worker process died (killed or out of memory); the finished "
                                     "points are saved: rerun the same command to resume") from None
                yield idx, config, result, min(workers, len(pending))
    except BaseException:  # interrupted (or the consumer stopped): drop the queued points, stop the workers
        terminate_workers(pool)
        raise
    pool.shutdown(wait=True)


def _dask_results(todo, point_fn, scheduler):
    """Yield (index, config, result) from a Dask cluster (``scheduler``: address or Client)."""
    from distributed import Client, as_completed

    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    try:
        futures = {}
        for idx, config in todo:
            fut = client.submit(run_point, point_fn, config, key=f"idfree-point-{point_id(config)}", pure=False)
            futures[fut] = (idx, config)
        slots = max(1, sum(client.nthreads().values()))
        remaining = len(futures)
        try:
            for fut in as_completed(list(futures)):
                idx, config = futures[fut]
                remaining -= 1
                yield idx, config, fut.result(), min(slots, remaining)
        except BaseException:
            client.cancel(list(futures))
            raise
    finally:
        if own:
            client.close()


def run_sweep(spec: SweepSpec, out_dir: str | Path, *, workers: int | None = None, scheduler=None,
              point_fn: PointFn | str | None = None, retry_failed: bool = True,
              progress: bool = True, yes: bool = False) -> SweepSummary:
    """Run (or resume) ``spec`` into ``out_dir/results.sqlite``; return a :class:`SweepSummary`.

    ``workers``: local processes (default ``min(cpu_count, points to do)``; 1 runs in-process).
    ``scheduler``: a Dask scheduler address (or a ``distributed.Client``) instead of local workers.
    ``point_fn``: the point function (a module-level callable or ``"module:function"``, so that
    worker processes can import it); ``None`` means the real pipeline.
    """
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    warning = check_size(spec.grid, workers, yes)  # before expanding anything
    if warning:
        import sys

        print(f"idfree-audit sweep: {warning}", file=sys.stderr)
    with folder_lock(out_dir), sigterm_as_interrupt():
        return _run_locked(spec, out_dir, workers, scheduler, point_fn, retry_failed, progress)


def _run_locked(spec, out_dir, workers, scheduler, point_fn, retry_failed, progress) -> SweepSummary:
    start = time.perf_counter()
    points = spec.points()
    with ResultsStore(out_dir) as store:
        store.bind(spec.spec_hash, spec.to_dict())
        status = store.status()
        skip = {"ok", "failed"} if not retry_failed else {"ok"}
        todo = [(i, c) for i, c in enumerate(points) if status.get(point_id(c)) not in skip]
        n_skipped = len(points) - len(todo)
        bar = _Progress(len(points), n_skipped, progress)
        computed, errors = 0, {}
        if todo:
            if scheduler is not None:
                results = _dask_results(todo, point_fn, scheduler)
                bar.running = min(len(todo), workers or 1)
            else:
                n = max(1, min(workers or os.cpu_count() or 1, len(todo)))
                results = _local_results(todo, point_fn, n)
                bar.running = n
            bar.update(0)
            try:
                for idx, config, res, running in results:
                    pid = point_id(config)
                    try:
                        store.record(pid, idx, config, status=res["status"], metrics=res["metrics"],
                                     error=res["error"], elapsed_s=res["elapsed_s"], artifacts=res["artifacts"])
                    except (TypeError, ValueError) as exc:  # a row that cannot be stored is a failed point
                        res = {**res, "status": "failed", "error": f"result not storable: {exc}"}
                        store.record(pid, idx, config, status="failed", error=res["error"],
                                     elapsed_s=res["elapsed_s"])
                    computed += 1
                    if res["status"] == "ok":
                        bar.done += 1
                    else:
                        bar.failed += 1
                        errors[pid] = res["error"]
                    bar.running = running
                    bar.update(1)
            finally:  # interrupted: close the generator now, so that it stops the workers before we return
                bar.close()
                results.close()
        else:
            bar.close()
        final = store.status()
        return SweepSummary(
            out_dir=str(out_dir), store=str(store.path), spec_hash=spec.spec_hash,
            n_points=len(points), n_ok=sum(1 for c in points if final.get(point_id(c)) == "ok"),
            n_failed=sum(1 for c in points if final.get(point_id(c)) == "failed"),
            n_computed=computed, n_skipped=n_skipped, elapsed_s=time.perf_counter() - start,
            errors=errors)
