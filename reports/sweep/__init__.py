"""Privacy-utility sweeps: spec (TOML grid), results store (SQLite), executor (local / Dask).

``SweepSpec.from_toml(path)`` -> ``run_sweep(spec, out_dir, workers=, scheduler=)`` -> rows in
``out_dir/results.sqlite`` read back by :func:`load_results`.  The point function
(:func:`reports.sweep.point.evaluate_point`) is separate so that tests inject a cheap fake.
"""

from reports.sweep.executor import SweepSummary, WorkerDied, resolve_point_fn, run_point, run_sweep
from reports.sweep.spec import GRID_KEYS, SweepSpec, canonical_json, point_id
from reports.sweep.store import STORE_NAME, ResultsStore

__all__ = ["GRID_KEYS", "STORE_NAME", "ResultsStore", "SweepSpec", "SweepSummary", "WorkerDied", "canonical_json",
           "point_id", "resolve_point_fn", "run_point", "run_sweep"]
