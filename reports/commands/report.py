"""``idfree-audit report``: sweep (built-in default, ``--quick`` or ``--spec``) and write the PDF report.

With ``--results DIR`` it only reports an existing sweep.  ``--policy P`` gates the scorecard
(``reports.policy``): exit 0 pass, 1 when a row FAILs, 2 on bad input.  Otherwise the sweep's results live in a
folder next to the PDF (``report.pdf`` -> ``report_results/``), so a rerun resumes the sweep.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reports.commands.sweep import add_execution_arguments, format_summary

HELP = "run a privacy-utility sweep (built-in default unless --spec/--results) and write the PDF report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--spec", metavar="SPEC", help="sweep spec (TOML) to run before reporting")
    source.add_argument("--results", metavar="DIR", help="report an existing sweep folder (no computation)")
    source.add_argument("--quick", action="store_true", help="a small built-in sweep (under 3 minutes)")
    parser.add_argument("--out", required=True, metavar="PDF", help="the report to write (e.g. report.pdf)")
    add_execution_arguments(parser)
    from reports.policy import add_policy_argument

    add_policy_argument(parser)


def results_dir_for(pdf: str | Path) -> Path:
    """Where ``report`` keeps the sweep behind ``pdf``: ``report.pdf`` -> ``report_results/``."""
    p = Path(pdf)
    return p.with_name(f"{p.stem}_results")


def run(args: argparse.Namespace) -> int:
    from idfree_core.errors import InputError
    from reports.commands import print_json, progress_wanted
    from reports.defaults import default_spec
    from reports.pdf import write_report
    from reports.sweep import SweepSpec, WorkerDied, run_sweep

    from reports.policy import gate, load_policy
    from reports.scorecard import ScorecardRow

    policy = load_policy(args.policy) if args.policy else None  # bad policy: exit 2 before any work
    out = Path(args.out)
    if out.suffix.lower() != ".pdf":
        raise InputError(f"--out {out}: the report must be a .pdf file")
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder, expected a .pdf file")
    summary = None
    if args.results:
        results = Path(args.results)
    else:
        spec = SweepSpec.from_toml(args.spec) if args.spec else default_spec(quick=args.quick)
        results = results_dir_for(out)
        try:
            summary = run_sweep(spec, results, workers=args.workers, scheduler=args.scheduler,
                                point_fn=args.point_fn, progress=progress_wanted(args), yes=args.yes)
        except WorkerDied as exc:
            print(f"idfree-audit report: {exc}", file=sys.stderr)
            return 1
        if not args.json:
            print(format_summary(summary))
    info = write_report(results, out, policy=policy)
    rec = info["recommended"]
    rows = [ScorecardRow(**{**r, "ci": None if r["ci"] is None else tuple(r["ci"])}) for r in info["scorecard"]]
    code, line = gate(rows, policy) if policy else (0, "")
    if args.json:
        print_json({**info, "results": str(results), "sweep": None if summary is None else summary.to_dict(),
                    "policy": {**info["policy"], "exit_code": code, "result": line} if policy else None})
    else:
        from reports.scorecard import format_scorecard

        print(f"report: {out} ({info['pages']} pages)")
        print(format_scorecard(rows, with_meaning=False))
        print(f"recommended ({rec['why']}):")
        print(rec["toml"].rstrip())
    if policy:
        print(f"idfree-audit report: {line}", file=sys.stderr)
    return code
