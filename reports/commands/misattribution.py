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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--distributions", type=Path, metavar="JSON",
                        help="user_distributions.json (family beta, gaussian or static)")
    parser.add_argument("--priors", type=Path, metavar="JSON",
                        help='prior over users: {"user": weight, ...} or a list in file order (default uniform)')
    g = parser.add_argument_group("training constraints (proximity bound)")
    g.add_argument("--users", type=int, help="number of users N")
    g.add_argument("--dim", type=int, help="embedding coordinates D (n_tokens * token width)")
    g.add_argument("--lr", type=float, help="on-device learning rate")
    g.add_argument("--clip", type=float, help="gradient clipping norm (enters the SGD bound only)")
    g.add_argument("--steps", type=int, help="number of on-device optimizer steps")
    g.add_argument("--std", type=float, help="fixed Gaussian std (gaussian family; default 0.2)")
    g.add_argument("--family", choices=("beta", "gaussian"), help="default: the file's family, else gaussian if --std, else beta")
    g.add_argument("--optimizer", choices=("adamw", "adam", "sgd"), default="adamw")
    g.add_argument("--clipping", choices=("global", "coordinate"), default="global")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--train-std", action="store_true", help="the Gaussian std is trained too")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--target-halfwidth", type=float, default=0.005, help="Monte Carlo CI half-width")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON")


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


def run(args: argparse.Namespace) -> int:
    from idfree_core.errors import InputError
    from idfree_core.uploads import read_user_distributions
    from privacy_audit.misattribution import bayes_misattribution, proximity_bound
    from reports.commands import print_json

    given = [name for name in CONSTRAINTS if getattr(args, name) is not None]
    if args.distributions is None and not given:
        raise InputError("give --distributions FILE and/or the training constraints --users --dim --lr --clip --steps")
    if args.priors is not None and args.distributions is None:
        raise InputError("--priors needs --distributions")
    out: dict = {}
    dists = None
    if args.distributions is not None:
        dists = read_user_distributions(args.distributions)
        priors = _read_priors(args.priors, dists.users) if args.priors is not None else None
        try:
            est = bayes_misattribution(dists.family, dict(dists.params), priors,
                                       confidence=args.confidence, target_halfwidth=args.target_halfwidth,
                                       random_state=args.seed, progress=not args.json)
        except ValueError as exc:
            raise InputError(f"{args.distributions}: {exc}") from None
        bayes = est.to_dict()
        bayes["per_user"] = None if est.per_user is None else dict(zip(dists.users, bayes["per_user"]))
        out.update(family=dists.family, n_users=dists.n_users, dim=dists.dim, bayes=bayes)
    if given:
        users = args.users if args.users is not None else (dists.n_users if dists else None)
        dim = args.dim if args.dim is not None else (dists.dim if dists else None)
        family = args.family or (dists.family if dists else ("gaussian" if args.std is not None else "beta"))
        if family == "static":
            raise InputError("--family: the proximity bound needs beta or gaussian (static point masses are "
                             "identified unless their values coincide)")
        missing = [f"--{n}" for n, v in (("users", users), ("dim", dim), ("lr", args.lr), ("steps", args.steps))
                   if v is None]
        if args.optimizer == "sgd" and args.clip is None:
            missing.append("--clip")
        if missing:
            raise InputError(f"the proximity bound needs {' '.join(missing)}")
        std = args.std
        if std is None and family == "gaussian" and dists is not None and dists.family == "gaussian" \
                and not args.train_std and len(set(dists.params["std"].ravel().tolist())) == 1:
            std = float(dists.params["std"].ravel()[0])  # the file's common fixed std
        try:
            bound = proximity_bound(family, users, dim, args.lr, args.clip, args.steps, std=std,
                                    optimizer=args.optimizer, clipping=args.clipping,
                                    weight_decay=args.weight_decay, train_std=args.train_std)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        out.update(bound=bound.value, proximity=bound.to_dict())
    if args.json:
        print_json(out)
        return 0
    if "bayes" in out:
        b = out["bayes"]
        print(f"Bayes-optimal misattribution ({out['n_users']} users, {out['dim']} dims, {out['family']}): "
              f"{b['value']:.4f}  [{b['ci'][0]:.4f}, {b['ci'][1]:.4f}] "
              f"({b['confidence']:.0%} {'CI' if b['method'] == 'monte_carlo' else 'integration error'}, "
              f"{b['method']}{', %d samples' % b['n_samples'] if b['n_samples'] else ''})")
    if "bound" in out:
        p = out["proximity"]
        print(f"Proximity lower bound ({p['n_users']} users, {p['family']}): {p['value']:.4f}  "
              f"(pairwise KL <= {p['kl']:.4g}, TV <= {p['tv']:.4g}, Hellinger <= {p['hellinger']:.4g}; "
              f"drift radius {p['radius']:.4g})")
        print(f"  assumptions: {p['assumptions']}")
    return 0
