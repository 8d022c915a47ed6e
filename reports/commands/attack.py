"""``idfree-audit attack``: run the attack suite on a file of anonymous uploads.

Reads ``uploads.parquet`` (or CSV with ``emb_*`` columns), optionally the oracle and the true user
distributions, calls :func:`attacks.suite.run_attacks`, and prints a table or JSON
(``{"attacks": [...], "findings": [...], "summary": {...}, "marginal": [...]}``).

An uploads file carrying identifier columns (user, device, ip, ...; by name, or by content: with
``--oracle`` a column whose groups agree with the oracle's users) is a privacy finding: it is
printed as a ``WARNING`` line on stderr (text mode) and as the first entry of ``"findings"``
(JSON), and the attacks still run on the anonymous part.  Without ``--policy`` the exit code stays
0 (the finding is the result, not an input error); with ``--policy P`` the scorecard
(``reports.scorecard``, also in the JSON as ``"scorecard"``) is gated: exit 1 when any row FAILs,
and an identifier column always fails.  Exit codes: 0 pass, 1 policy failure, 2 bad input.
Bad input files raise :class:`idfree_core.errors.InputError`: one stderr line, exit code 2.
Progress (a tqdm bar redrawn every 10 s while one attack runs) goes to stderr only: on a terminal
always, elsewhere with ``--progress``; stdout stays the table or one JSON document.
"""

from __future__ import annotations

import argparse
import sys

HELP = "Try to re-identify users in a pool of anonymous uploads (clustering, linkage, inversion attacks)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from reports.commands import add_progress_argument, seed_arg

    parser.add_argument("uploads", metavar="UPLOADS", help="uploads.parquet (or .csv with emb_0.. columns)")
    parser.add_argument("--oracle", metavar="ORACLE", help="oracle.parquet (upload_id -> user) to score the attacks")
    parser.add_argument("--distributions", metavar="JSON",
                        help="user_distributions.json: Bayes ceilings and parameter-inversion errors")
    parser.add_argument("--attacks", default="clustering,linkage,inversion", metavar="LIST",
                        help="comma-separated attack groups: clustering, linkage, inversion (default: all three)")
    parser.add_argument("--features", default="embedding", choices=("embedding", "text", "both"),
                        help="what the adversary uses; 'both' also reports the marginal leakage of the "
                             "embeddings beyond the text (default: embedding)")
    parser.add_argument("--seed", type=seed_arg, default=0, metavar="K", help="random seed in [0, 2**63-1] (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_progress_argument(parser)
    from reports.policy import add_policy_argument

    add_policy_argument(parser)


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "-"
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return str(v)


def format_table(report) -> str:
    """The readable text rendering of an :class:`attacks.suite.AttackReport`."""
    lines = []
    s = report.summary
    lines.append(f"pool: {s['n_uploads']} uploads, dimension {s['dim']}, sessions {s['sessions']}, "
                 f"text {'yes' if s['has_text'] else 'no'}, features {s['features']}")
    if "n_users_estimated" in s:
        lines.append(f"estimated number of users (no oracle): {s['n_users_estimated']}")
    if "linkage" in s:
        lk = s["linkage"]
        lines.append(f"links: {lk['n_links']} later uploads linked to session-0 uploads ({lk['split']})")
    if "mixture_inversion" in s:
        mi = s["mixture_inversion"]
        lines.append(f"mixture inversion: {mi['n_components']} {mi['family']} components")
    for note in s.get("skipped", []):
        lines.append(f"skipped: {note}")
    if report.results:
        header = ("attack", "features", "metric", "value", "95% CI", "chance", "advantage [CI]", "ceiling", "n")
        rows = [header]
        for r in report.results:
            rows.append((r.name, r.features, r.metric, _fmt(r.value), f"[{_fmt(r.ci[0])}, {_fmt(r.ci[1])}]",
                         _fmt(r.baseline), f"{r.advantage:+.3f} [{r.advantage_ci[0]:+.3f}, {r.advantage_ci[1]:+.3f}]",
                         _fmt(r.ceiling), str(r.n)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines.append("")
        for i, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
    elif not s.get("scored"):
        if s.get("oracle_free_risk"):
            from attacks.oracle_free import format_oracle_free

            lines.append("")
            lines.extend(format_oracle_free(s["oracle_free_risk"]))
            lines.append("(no oracle given: the attacks were not scored; pass --oracle to score them)")
        else:
            lines.append("no oracle given: attacks were fitted but not scored (pass --oracle to score them)")
    if report.marginal:
        lines.append("")
        lines.append("marginal leakage of the embeddings beyond the text (value(both) - value(text)):")
        for m in report.marginal:
            lines.append(f"  {m.name} {m.metric}: text {m.text:.3f} -> both {m.both:.3f}: "
                         f"{m.marginal:+.3f} [{m.ci[0]:+.3f}, {m.ci[1]:+.3f}]")
    if report.findings:
        lines.append("")
        lines.append("findings:")
        lines.extend(f"  - {f}" for f in report.findings)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from attacks.suite import identifier_finding, parse_attacks, run_attacks
    from reports.commands import progress_wanted
    from idfree_core.uploads import read_oracle, read_uploads_with_findings, read_user_distributions

    from reports.policy import gate, load_policy

    attacks = parse_attacks(args.attacks)
    policy = load_policy(args.policy) if args.policy else None  # bad policy: exit 2 before any work
    # the oracle first: identifier detection tests content for agreement with its users
    oracle = read_oracle(args.oracle) if args.oracle else None
    pool, identifiers = read_uploads_with_findings(args.uploads, oracle, oracle_source=args.oracle)
    distributions = read_user_distributions(args.distributions) if args.distributions else None
    if distributions is not None and distributions.dim != pool.dim:
        raise ValueError(f"{args.distributions}: {distributions.dim} dimensions, but {args.uploads} has {pool.dim}")
    if identifiers and not args.json:
        print(f"idfree-audit attack: WARNING: {identifier_finding(identifiers)}", file=sys.stderr)
    report = run_attacks(pool, oracle=oracle, distributions=distributions, attacks=attacks, features=args.features,
                         random_state=args.seed, progress=progress_wanted(args),
                         identifier_columns=identifiers)
    from reports.policy import Policy
    from reports.scorecard import build_scorecard, format_scorecard

    rows = build_scorecard(report.results, policy or Policy(), report.marginal, identifiers)
    code, line = gate(rows, policy) if policy else (0, "")
    if args.json:
        from reports.commands import print_json

        print_json({**report.to_dict(), "scorecard": [r.to_dict() for r in rows],
                    "policy": None if policy is None else {**policy.to_dict(), "exit_code": code, "result": line}})
    else:
        print(format_table(report))
        print("\nscorecard" + (f" (policy {policy.source})" if policy else " (default thresholds)") + ":")
        print(format_scorecard(rows, with_meaning=False))
    if policy:
        print(f"idfree-audit attack: {line}", file=sys.stderr)
    return code
