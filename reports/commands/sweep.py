"""``idfree-audit sweep SPEC --out DIR``: run (or resume) a privacy-utility sweep into a results store."""

from __future__ import annotations

import argparse
import sys

HELP = "run or resume a sweep (TOML spec) into DIR/results.sqlite, locally or on a Dask cluster"


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text[:40]!r}") from None
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"must be >= 1 and at most 4096 processes, got {text[:40]!r}")
    return value


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``sweep`` and ``report``."""
    parser.add_argument("--workers", type=_workers, default=None, metavar="N",
                        help="local worker processes (default: one per core, 1 runs in-process)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run the points on this Dask distributed scheduler (e.g. tcp://host:8786)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    from reports.commands import add_progress_argument

    add_progress_argument(parser)
    parser.add_argument("--yes", action="store_true",
                        help="run a sweep estimated past an hour or half the machine's memory (refused otherwise)")
    # Tests and advanced users may substitute the point function ("module:function").
    parser.add_argument("--point-fn", default=None, help=argparse.SUPPRESS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="sweep spec (TOML; see docs/sweep_spec.md)")
    parser.add_argument("--out", required=True, metavar="DIR", help="results folder (resumed if it exists)")
    add_execution_arguments(parser)


def format_summary(summary) -> str:
    lines = [f"sweep: {summary.n_ok}/{summary.n_points} points done, {summary.n_failed} failed "
             f"({summary.n_computed} computed now, {summary.n_skipped} already in the store) "
             f"in {summary.elapsed_s:.1f} s", f"results: {summary.store}"]
    lines += [f"  failed {pid}: {err}" for pid, err in summary.errors.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from reports.commands import print_json, progress_wanted
    from reports.sweep import SweepSpec, run_sweep

    from reports.sweep import WorkerDied

    spec = SweepSpec.from_toml(args.spec)
    try:
        summary = run_sweep(spec, args.out, workers=args.workers, scheduler=args.scheduler,
                            point_fn=args.point_fn, progress=progress_wanted(args), yes=args.yes)
    except WorkerDied as exc:
        print(f"idfree-audit sweep: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print_json(summary.to_dict())
    else:
        print(format_summary(summary))
    if summary.n_failed:
        print(f"idfree-audit sweep: {summary.n_failed} point(s) failed; rerun to retry them", file=sys.stderr)
    return 0 if summary.n_failed == 0 else 1
