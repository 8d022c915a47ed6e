"""``idfree-audit misattribution``: Bayes-optimal misattribution and the proximity lower bound.

Two modes, combinable: ``--distributions user_distributions.json [--priors priors.json]`` estimates
the MAP attributor's error for the users' actual distributions
(:func:`privacy_audit.misattribution.bayes_misattribution`); the training constraints
``--users N --dim D --lr LR --clip C --steps S [--std S] [--family beta|gaussian]`` give the
guaranteed lower bound (:func:`privacy_audit.misattribution.proximity_bound`).  With both, the
constraints default ``--users``/``--dim``/``--family`` to the file's.  JSON:
``{"bayes": {"value", "ci", "method", ...}, "bound": v, "proximity": {...}}`` where applicable.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Bayes-optimal misattribution of user distributions, and its proximity lower bound from training constraints."

CONSTRAINTS = ("users", "dim", "lr", "clip", "steps")

# flag -> (low, high, high with --allow-large, low inclusive): checked before any work.
RANGES = {
    "users": (1, 100_000, 10_000_000, True), "dim": (1, 1_000_000, 100_000_000, True),
    "steps": (0, 1_000_000, 100_000_000, True), "lr": (0.0, 10.0, 1e3, False),
    "clip": (0.0, 1e6, 1e12, False), "std": (0.0, 1e3, 1e6, False),
    "weight_decay": (0.0, 1e3, 1e6, True), "confidence": (0.5, 0.9999, 0.999999, True),
    "target_halfwidth": (1e-4, 0.5, 0.5, True), "seed": (0, 2**63 - 1, 2**63 - 1, True),
    "delta": (1e-12, 0.1, 0.1, True), "max_file_mb": (1, 4096, 65536, True),
}
MAX_UPLOADS, MAX_UPLOADS_LARGE = 1000, 100_000


def _range_text(name: str) -> str:
    lo, hi, big, inclusive = RANGES[name]
    return f"{'[' if inclusive else '('}{lo:g}, {hi:g}]" + (f" ({big:g} with --allow-large)" if big != hi else "")


def _uploads(text: str) -> list[int]:
    try:
        ms = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not ms or len(ms) > 20:
        raise argparse.ArgumentTypeError("expected 1 to 20 comma-separated numbers")
    return ms


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--distributions", type=Path, metavar="JSON",
                        help="user_distributions.json (any registered family: beta, gaussian, static, "
                             "kumaraswamy; a regular file of at most --max-file-mb MB)")
    parser.add_argument("--priors", type=Path, metavar="JSON",
                        help='prior over users: {"user": weight, ...} or a list in file order (default uniform)')
    parser.add_argument("--uploads-per-user", type=_uploads, metavar="M[,M...]",
                        help="also the Bayes misattribution when M uploads are known to share a user, e.g. "
                             f"1,5,20 (each in [1, {MAX_UPLOADS}], {MAX_UPLOADS_LARGE} with --allow-large), "
                             "the Chernoff rate, and the DP view composed over M uploads")
    parser.add_argument("--delta", type=float, default=1e-5, help=f"delta of the DP epsilons {_range_text('delta')}")
    g = parser.add_argument_group("training constraints (proximity bound)")
    g.add_argument("--users", type=int, help=f"number of users N {_range_text('users')}")
    g.add_argument("--dim", type=int, help=f"embedding coordinates D (n_tokens * token width) {_range_text('dim')}")
    g.add_argument("--lr", type=float, help=f"on-device learning rate {_range_text('lr')}")
    g.add_argument("--clip", type=float, help=f"gradient clipping norm (enters the SGD bound only) {_range_text('clip')}")
    g.add_argument("--steps", type=int, help=f"number of on-device optimizer steps {_range_text('steps')}")
    g.add_argument("--std", type=float, help=f"fixed Gaussian std (gaussian family; default 0.2) {_range_text('std')}")
    g.add_argument("--family", choices=("beta", "gaussian"), help="default: the file's family, else gaussian if --std, else beta")
    g.add_argument("--optimizer", choices=("adamw", "adam", "sgd"), default="adamw")
    g.add_argument("--clipping", choices=("global", "coordinate"), default="global")
    g.add_argument("--weight-decay", type=float, default=0.0, help=f"{_range_text('weight_decay')}")
    g.add_argument("--train-std", action="store_true", help="the Gaussian std is trained too")
    parser.add_argument("--confidence", type=float, default=0.95, help=f"CI level {_range_text('confidence')}")
    parser.add_argument("--target-halfwidth", type=float, default=0.005,
                        help=f"Monte Carlo CI half-width {_range_text('target_halfwidth')}")
    parser.add_argument("--seed", type=int, default=0, help=f"{_range_text('seed')}")
    parser.add_argument("--max-file-mb", type=int, default=256,
                        help=f"largest --distributions/--priors file read, MB {_range_text('max_file_mb')}")
    parser.add_argument("--allow-large", action="store_true",
                        help="raise the size limits (users, dim, steps, uploads, file size) to the larger values shown")
    parser.add_argument("--json", action="store_true", help="print JSON")
    from reports.commands import add_progress_argument

    add_progress_argument(parser)


def check_ranges(args: argparse.Namespace) -> None:
    """One-line error for any numeric flag outside its documented range (before any work)."""
    import math

    from idfree_core.errors import InputError

    for name, (lo, hi, big, inclusive) in RANGES.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        top = big if args.allow_large else hi
        ok = math.isfinite(value) and (value >= lo if inclusive else value > lo) and value <= top
        if not ok:
            flag = "--" + name.replace("_", "-")
            more = " (raise it with --allow-large)" if value > top and top < big else ""
            raise InputError(f"{flag}: {value!r} is outside {'[' if inclusive else '('}{lo:g}, {top:g}]{more}")
    top = MAX_UPLOADS_LARGE if args.allow_large else MAX_UPLOADS
    for m in args.uploads_per_user or ():
        if not 1 <= m <= top:
            more = " (raise it with --allow-large)" if m > top and not args.allow_large else ""
            raise InputError(f"--uploads-per-user: {m} is outside [1, {top}]{more}")


def check_file(path: Path, max_mb: int, flag: str) -> None:
    """A regular file no larger than ``max_mb`` MB (``/dev/zero``, FIFOs and folders are refused)."""
    import stat

    from idfree_core.errors import InputError

    try:
        st = path.stat()
    except OSError:
        raise InputError(f"{flag} {path}: file not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{flag} {path}: not a regular file")
    if st.st_size > max_mb * 1024 * 1024:
        raise InputError(f"{flag} {path}: {st.st_size / 2**20:.1f} MB exceeds --max-file-mb {max_mb}")


def _read_priors(path: Path, users: tuple[str, ...]):
    import json

    import numpy as np

    from idfree_core.errors import InputError

    if not path.is_file():
        raise InputError(f"{path}: file not found")

    def reject(name):
        raise InputError(f"{path}: non-finite number {name} is not allowed")

    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({type(exc).__name__})") from None
    if isinstance(data, dict):
        missing = [u for u in users if u not in data]
        extra = sorted(set(data) - set(users))
        if missing or extra:
            raise InputError(f"{path}: priors must name exactly the users of the distributions file "
                             f"(missing {missing[:3]}, unknown {extra[:3]})")
        data = [data[u] for u in users]
    if not isinstance(data, list) or len(data) != len(users) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in data):
        raise InputError(f"{path}: expected {{user: weight}} or a list of {len(users)} numbers")
    arr = np.asarray(data, dtype=np.float64)
    if np.any(arr < 0) or arr.sum() <= 0:
        raise InputError(f"{path}: prior weights must be non-negative and not all zero")
    return arr


def _uploads_and_dp(args, dists, priors) -> dict:
    """``by_uploads_per_user``, ``chernoff_rate`` and ``dp`` blocks (issue 9)."""
    from idfree_core.errors import InputError
    from privacy_audit.dp import privacy_in_dp_terms
    from privacy_audit.multi_upload import misattribution_by_uploads

    try:
        curve = misattribution_by_uploads(dists.family, dict(dists.params), args.uploads_per_user, priors,
                                          confidence=args.confidence, target_halfwidth=args.target_halfwidth,
                                          random_state=args.seed)
        dp = privacy_in_dp_terms(dists.family, dict(dists.params), args.uploads_per_user, args.delta,
                                 random_state=args.seed).to_dict()
    except ValueError as exc:
        raise InputError(f"{args.distributions}: {exc}") from None
    users = dists.users
    dp["worst_pair"] = [users[i] for i in dp["worst_pair"]]
    c = curve.to_dict()
    return {"by_uploads_per_user": c["by_uploads_per_user"],
            "chernoff": {"rate_per_upload": c["chernoff_rate"], "pair": [users[i] for i in c["worst_pair"]],
                         "pairs_examined": c["pairs"]},
            "dp": dp}


def run(args: argparse.Namespace) -> int:
    from idfree_core.errors import InputError
    from idfree_core.families import get_family_spec
    from idfree_core.uploads import read_user_distributions
    from privacy_audit.misattribution import bayes_misattribution, proximity_bound
    from reports.commands import print_json, progress_wanted

    check_ranges(args)
    given = [name for name in CONSTRAINTS if getattr(args, name) is not None]
    if args.distributions is None and not given:
        raise InputError("give --distributions FILE and/or the training constraints --users --dim --lr --clip --steps")
    if args.priors is not None and args.distributions is None:
        raise InputError("--priors needs --distributions")
    out: dict = {}
    dists = None
    if args.uploads_per_user and args.distributions is None:
        raise InputError("--uploads-per-user needs --distributions")
    if args.distributions is not None:
        check_file(args.distributions, args.max_file_mb, "--distributions")
        if args.priors is not None:
            check_file(args.priors, args.max_file_mb, "--priors")
        dists = read_user_distributions(args.distributions)
        priors = _read_priors(args.priors, dists.users) if args.priors is not None else None
    bound_out: dict = {}
    if given:
        users = args.users if args.users is not None else (dists.n_users if dists else None)
        dim = args.dim if args.dim is not None else (dists.dim if dists else None)
        family = args.family or (dists.family if dists else ("gaussian" if args.std is not None else "beta"))
        spec = get_family_spec(family)
        if spec.is_point_mass:
            raise InputError(f"--family: the proximity bound needs beta or gaussian ({family} point masses are "
                             "identified unless their values coincide)")
        missing = [f"--{n}" for n, v in (("users", users), ("dim", dim), ("lr", args.lr), ("steps", args.steps))
                   if v is None]
        if args.optimizer == "sgd" and args.clip is None:
            missing.append("--clip")
        if missing:
            raise InputError(f"the proximity bound needs {' '.join(missing)}")
        std = args.std
        if std is None and spec.location_scale_normal and dists is not None and get_family_spec(dists.family) is spec \
                and not args.train_std and len(set(dists.params["std"].ravel().tolist())) == 1:
            std = float(dists.params["std"].ravel()[0])  # the file's common fixed std
        try:
            bound = proximity_bound(family, users, dim, args.lr, args.clip, args.steps, std=std,
                                    optimizer=args.optimizer, clipping=args.clipping,
                                    weight_decay=args.weight_decay, train_std=args.train_std)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        bound_out = {"bound": bound.value, "proximity": bound.to_dict()}
    # the Monte Carlo runs only once every input (the bound's too) has been accepted
    if dists is not None:
        try:
            est = bayes_misattribution(dists.family, dict(dists.params), priors,
                                       confidence=args.confidence, target_halfwidth=args.target_halfwidth,
                                       random_state=args.seed, progress=progress_wanted(args))
        except ValueError as exc:
            raise InputError(f"{args.distributions}: {exc}") from None
        bayes = est.to_dict()
        bayes["per_user"] = None if est.per_user is None else dict(zip(dists.users, bayes["per_user"]))
        out.update(family=dists.family, n_users=dists.n_users, dim=dists.dim, bayes=bayes)
        if args.uploads_per_user:
            out.update(_uploads_and_dp(args, dists, priors))
    out.update(bound_out)
    if args.json:
        print_json(out)
        return 0
    if "bayes" in out:
        b = out["bayes"]
        print(f"Bayes-optimal misattribution ({out['n_users']} users, {out['dim']} dims, {out['family']}): "
              f"{b['value']:.4f}  [{b['ci'][0]:.4f}, {b['ci'][1]:.4f}] "
              f"({b['confidence']:.0%} {'CI' if b['method'] == 'monte_carlo' else 'integration error'}, "
              f"{b['method']}{', %d samples' % b['n_samples'] if b['n_samples'] else ''})")
    for row in out.get("by_uploads_per_user", []):
        print(f"  {row['m']:>4} uploads per user: {row['value']:.4f}  [{row['ci'][0]:.4f}, {row['ci'][1]:.4f}]")
    if "chernoff" in out:
        c = out["chernoff"]
        print(f"  decays as exp(-m * {c['rate_per_upload']:.4g}) (Chernoff information of users {c['pair'][0]} "
              f"and {c['pair'][1]}; pairs: {c['pairs_examined']})")
    if "dp" in out:
        d = out["dp"]
        mu = f", mu-GDP with mu = {d['gdp_mu_per_upload']:.4g} per upload" if d["gdp_mu_per_upload"] is not None else ""
        eps = ", ".join(f"{k}: {'not available' if v is None else format(v, '.4g')}"
                        for k, v in d["epsilon"].items() if k != "delta")
        print(f"DP view ({d['model']}{mu}): epsilon at delta={d['delta']:g}: {eps} "
              f"(worst pair {d['worst_pair'][0]} / {d['worst_pair'][1]})")
        print(f"  {d['statement']}")
    if "bound" in out:
        p = out["proximity"]
        print(f"Proximity lower bound ({p['n_users']} users, {p['family']}): {p['value']:.4f}  "
              f"(pairwise KL <= {p['kl']:.4g}, TV <= {p['tv']:.4g}, Hellinger <= {p['hellinger']:.4g}; "
              f"drift radius {p['radius']:.4g})")
        print(f"  assumptions: {p['assumptions']}")
    return 0
