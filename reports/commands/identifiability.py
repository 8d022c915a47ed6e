"""``idfree-audit identifiability``: is a family's finite-mixture identity safe to rely on?

Calls :func:`privacy_audit.identifiability.decide` on a built-in family (``--family NAME``) or
on a density entered as an expression (``--density EXPR --var x --params a,b --support LO,HI``,
parsed safely, never ``eval``-ed) and prints the verdict as text, JSON (``--json``) or LaTeX
(``--latex``).  Dependent families (finite mixtures not identifiable, Yakowitz and Spragins 1968)
come with a verified certificate ``sum_i c_i f_i = 0``.
"""

from __future__ import annotations

import argparse
import re

HELP = ("Decide whether a distribution family is linearly dependent (finite mixtures "
        "non-identifiable) with a verified certificate, or prove it independent.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # values such as "-oo,oo" or "-a*exp(-a*x)" start with "-": argparse would take them for an
    # unknown option, so every "-..." that is not one of this command's options is a value here
    parser._negative_number_matcher = re.compile(r"^-(?!-)(?!h$)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--family", metavar="NAME",
                     help="built-in family: beta, kumaraswamy, gaussian, gamma, exponential, laplace, "
                          "uniform, bernoulli, binomial, binomial(n=N), poisson")
    src.add_argument("--density", metavar="EXPR",
                     help='density or pmf, e.g. "x**(a-1)*(1-x)**(b-1)/beta(a,b)"')
    src.add_argument("--distributions", metavar="FILE",
                     help="user_distributions.json: decide whether the mixture of these K users "
                          "is identifiable with K known (Kruskal / Allman-Matias-Rhodes "
                          "certificate), next to the family-level verdict")
    parser.add_argument("--var", default="x", help="variable of --density (default x)")
    parser.add_argument("--params", metavar="A,B", help="comma-separated parameters of --density")
    parser.add_argument("--support", metavar="LO,HI",
                        help='support, e.g. "0,1", "0,oo", "-oo,oo"')
    parser.add_argument("--positive", metavar="A,B", default="",
                        help="parameters constrained to (0, oo)")
    parser.add_argument("--discrete", action="store_true", help="--density is a pmf on integers")
    parser.add_argument("--name", help="display name for --density")
    parser.add_argument("--work-budget", type=int, default=None, metavar="UNITS",
                        help="work units for the symbolic search (candidates, nullspaces, limits, "
                             "density checks; default %d); the verdict depends only on the "
                             "input and this budget" % _default_work())
    parser.add_argument("--time-budget", type=float, default=60.0, metavar="SECONDS",
                        help="safety time limit: a worker still running after it is killed and "
                             "the verdict is UNKNOWN, never a different one (default 60)")
    parser.add_argument("--screen", action="store_true",
                        help="add the numeric SVD screen (evidence, not proof)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("--latex", action="store_true", help="print LaTeX")


def _default_work() -> int:
    from privacy_audit.identifiability.budget import DEFAULT_WORK

    return DEFAULT_WORK


def _family(args):
    from privacy_audit.families import family_from_density, get_family

    if args.family is not None:
        extra = [f for f in ("params", "support") if getattr(args, f)]
        if extra or args.discrete:
            raise ValueError("--family: --params/--support/--discrete apply only to --density")
        return get_family(args.family)
    if not args.params:
        raise ValueError("--params: required with --density (e.g. --params a,b)")
    if not args.support:
        raise ValueError('--support: required with --density (e.g. --support "0,1")')
    params = [p.strip() for p in args.params.split(",") if p.strip()]
    positive = [p.strip() for p in args.positive.split(",") if p.strip()]
    return family_from_density(args.density, args.var, params, args.support,
                               discrete=args.discrete, name=args.name, positive=positive)


SCOPE = ("scope: the family-level verdict concerns mixtures of unbounded order; it does not "
         "protect a deployment whose number of users is known or bounded. Use --distributions "
         "for the deployment-level verdict (K users known).")


def _run_deployment(args, work: int) -> int:
    from idfree_core.families import get_family_spec
    from idfree_core.uploads import read_user_distributions
    from privacy_audit.families import get_family
    from privacy_audit.identifiability import decide
    from privacy_audit.identifiability.deployment import decide_deployment

    from . import print_json

    ud = read_user_distributions(args.distributions)
    dep = decide_deployment(ud.family, ud.params, loc=ud.loc, scale=ud.scale, users=ud.users)
    key = get_family_spec(ud.family).identifiability  # the record's key into privacy_audit.families.BUILTIN
    try:
        if key is None:
            raise ValueError(f"no symbolic family for {ud.family!r}")
        fam = decide(get_family(key), time_budget=args.time_budget, work_budget=work)
        fam_d, fam_text = fam.to_dict(), fam.to_text()
    except ValueError:  # no symbolic family (e.g. static point masses)
        fam_d = {"family": ud.family, "linearly_dependent": None, "identifiable": None,
                 "method": "none", "reason": "no symbolic family registered for this name"}
        fam_text = f"family: {ud.family}: no symbolic family-level verdict"
    if args.json:
        print_json({"family_verdict": fam_d, "deployment": dep.to_dict()})
    else:
        print(fam_text + "\n" + SCOPE + "\n\n" + dep.to_text())
    return 0


def run(args: argparse.Namespace) -> int:
    from privacy_audit.identifiability import decide

    from . import print_json

    if args.latex and args.distributions:
        raise ValueError("--latex: not available with --distributions (use --json)")
    work = _default_work() if args.work_budget is None else args.work_budget
    if not 1 <= work <= 10**7:
        raise ValueError(f"--work-budget: must be between 1 and 10000000, got {work}")
    if not 0 < args.time_budget <= 3600:
        raise ValueError(f"--time-budget: must be in (0, 3600] seconds, got {args.time_budget}")
    if args.distributions is not None:
        return _run_deployment(args, work)
    family = _family(args)
    verdict = decide(family, time_budget=args.time_budget, screen=args.screen, work_budget=work)
    if args.json:
        print_json(verdict.to_dict())
    elif args.latex:
        print(verdict.to_latex())
    else:
        print(verdict.to_text() + "\n" + SCOPE)
    return 0
