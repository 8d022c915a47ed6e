"""Proximity bound: on-device training constraints -> a lower bound on Bayes misattribution.

Derivation (full text with every assumption in ``docs/proximity_bound.md``):

1. **Drift.**  All users start from the same unconstrained parameters ``u_0`` (``P`` entries) and
   take ``S`` steps with learning rate ``eta`` and weight decay ``lam``.
   SGD (no momentum), gradient clipped to global L2 norm ``C`` (coupled decay, torch ``SGD``):
   ``u_t = (1 - eta lam) u_{t-1} - eta g_t`` with ``||g_t|| <= C``.  Adam/AdamW: by Cauchy-Schwarz,
   ``|m_t| <= (1 - b1) sqrt(G_t) sqrt(v_t / (1 - b2))`` with ``G_t = sum_{j<t} (b1^2 / b2)^j``, so
   every coordinate's step obeys ``|Delta_t| <= eta c_t``,
   ``c_t = (1 - b1) sqrt(1 - b2^t) sqrt(G_t) / ((1 - b1^t) sqrt(1 - b2))`` (``c_1 = 1``), whatever
   the gradients (clipping does not enter); AdamW's decoupled decay multiplies by ``1 - eta lam``.
   Two users' difference obeys ``d_t = (1 - eta lam) d_{t-1} + (step_n - step_m)`` (the decay of
   ``u_0`` cancels), so ``|d_S| <= 2 eta sum_t (1 - eta lam)^(S-t) c_t`` per coordinate (Adam) or in
   L2 with ``c_t = C`` (SGD); the drift from ``u_0`` adds ``eta lam |u_0|`` per step.
2. **Link.**  Constrained parameters ``theta = link(u)`` (softplus or exp for ``alpha``, ``beta``,
   ``std``; identity for ``mean``) move at most ``sup link'`` times as far, inside the reachable box
   ``[link(u_0 - r), link(u_0 + r)]``.
3. **Divergences.**  Beta is an exponential family with log-partition ``log B(a, b)``, so
   ``KL = 1/2 dtheta^T I(xi) dtheta`` and ``-log BC = `` Jensen gap ``<= lambda_max / 8 ||dtheta||^2``;
   the Fisher information's ``lambda_max <= trace <= psi1(a_lo) + psi1(b_lo) - 2 psi1(a_hi + b_hi)``
   on the box.  Gaussian: closed forms, ``KL_d = h(dlog s) + dmu^2 / (2 s_lo^2)`` with
   ``h(x) = (e^{2|x|} - 1)/2 - |x|`` and ``-log BC_d <= dmu^2 / (8 s_lo^2) + dlog s^2 / 4``; with a
   fixed common std the TV is exact, ``2 Phi(delta / 2) - 1`` (``delta`` the Mahalanobis distance).
   Coordinates add up; the worst case over the reachable set is a fractional knapsack
   (:func:`_knapsack`).  TV ``<= min(1, sqrt(KL / 2), sqrt(1 - BC^2))`` (Pinsker, Le Cam).
4. **Misattribution.**  With uniform priors ``P(correct) = 1/N int max_n f_n`` and
   ``int max_n f_n <= int f_ref + sum_n int (f_n - f_ref)_+ = 1 + sum_n TV(f_n, f_ref)``; taking
   ``f_ref = f_1`` (``N - 1`` pairwise terms) or the initial distribution (``N`` terms of half the
   radius): ``misattribution >= 1 - min((1 + (N-1) TV_pair), (1 + N TV_init)) / N``, in
   ``[0, (N - 1)/N]``; and Fano's inequality with the mutual information bounded by the KL radius
   around the initial distribution (:func:`fano_bound`), which bites for many users where the
   union bound cannot (``N TV`` grows with ``N``, ``log N`` beats a fixed KL radius).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import special, stats

from idfree_core.optim import adam_step_bounds  # the one Adam step bound (idfree_core/optim.py)
from torch.distributions import constraints

from privacy_audit.divergences import check_params
from privacy_audit.likelihood import family_spec

OPTIMIZERS = ("adamw", "adam", "sgd")
CLIPPINGS = ("global", "coordinate")
LINKS = ("softplus", "exp")


def _beta_fisher_trace(lo, hi):
    """``psi1(a_lo) + psi1(b_lo) - 2 psi1(a_hi + b_hi)`` >= the Beta Fisher information's lambda_max."""
    return special.polygamma(1, lo[0]) + special.polygamma(1, lo[1]) - 2 * special.polygamma(1, hi[0] + hi[1])


# Step 3 for exponential families other than the normal: an upper bound on lambda_max of the Fisher
# information over the reachable box (family name -> (lo, hi) -> bound).  Normals use closed forms.
FISHER_BOUNDS = {"beta": _beta_fisher_trace}


def proximity_covers(family: str) -> bool:
    """Whether :func:`proximity_bound` covers ``family`` (a registered normal, or one in :data:`FISHER_BOUNDS`)."""
    try:
        _supported(family)
    except ValueError:
        return False
    return True


def _supported(family: str):
    """The family record, if the proximity bound covers it (a normal or a Fisher bound), else ValueError."""
    spec = family_spec(family)
    if not (spec.location_scale_normal or FISHER_BOUNDS.get(family) is not None):
        covered = [n for n in FISHER_BOUNDS] + ["location-scale normals (gaussian)"]
        raise ValueError(f"family: the proximity bound covers {', '.join(covered)}, not {family!r} "
                         "(it needs a Fisher-information bound on the reachable parameter box)")
    return spec


def _default_init(spec) -> dict[str, float]:
    """The common initialisation of the family record (Beta alpha=2, beta=5; Gaussian mean=0.1, std=0.2)."""
    return spec.initial_params()


def _trained(spec, train_std: bool) -> tuple[str, ...]:
    """Trained parameters: all of them, except a normal's std unless ``train_std``."""
    if spec.location_scale_normal and not train_std:
        return ("mean",)
    return spec.param_names


@dataclass(frozen=True)
class ProximityBound:
    """A guaranteed lower bound ``value`` on Bayes misattribution for ``n_users`` (uniform prior).

    ``radius``: max drift of one user from the common initialization (L2, in the parametrisation
    named in ``details["space"]``); ``pairwise_distance``: max distance between two users;
    ``kl``/``tv``/``hellinger``: worst-case pairwise divergence bounds (``H^2 = 1 - BC``).
    """

    value: float
    n_users: int
    family: str
    radius: float
    pairwise_distance: float
    kl: float
    tv: float
    hellinger: float
    tv_init: float
    assumptions: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _link(name, u):
    return np.logaddexp(0.0, u) if name == "softplus" else np.exp(u)


def _link_inv(name, v):
    return v + np.log(-np.expm1(-v)) if name == "softplus" else np.log(v)


def _link_slope(name, u_hi):
    return special.expit(u_hi) if name == "softplus" else np.exp(u_hi)


def _knapsack(weight, cap2, budget2) -> float:
    """``max sum w_i x_i^2`` s.t. ``x_i^2 <= cap2_i`` and ``sum x_i^2 <= budget2`` (greedy, exact)."""
    w = np.ravel(weight).astype(float)
    c = np.ravel(np.broadcast_to(cap2, np.shape(weight))).astype(float)
    order = np.argsort(-w, kind="stable")
    w, c = w[order], c[order]
    fill = np.clip(budget2 - np.concatenate([[0.0], np.cumsum(c)[:-1]]), 0.0, c)
    used = fill > 0
    if not np.all(np.isfinite(w[used])):
        return math.inf
    return float(np.sum(w[used] * fill[used]))


def _geometry_bound(family, lo, hi, cap_center, l2_center, cap_pair, l2_pair, n_users, fixed_std):
    """Steps 3-4 for a reachable box ``[lo, hi]`` (constrained params, shape (k, D)) and drifts."""
    fisher = FISHER_BOUNDS.get(family)
    normal = family_spec(family).location_scale_normal
    if np.any(lo <= 0) and fisher is not None or (normal and fixed_std is None and np.any(lo[1] <= 0)):
        w = v = np.full(lo.shape, np.inf)
        exact = None
    elif fisher is not None:
        lam = fisher(lo, hi)
        w, v, exact = np.stack([lam / 2] * lo.shape[0]), np.stack([lam / 8] * lo.shape[0]), None
    elif fixed_std is not None:
        prec = 1.0 / np.broadcast_to(fixed_std, lo.shape) ** 2
        w, v, exact = prec / 2, prec / 8, prec
    else:
        s_lo = lo[1]
        x = np.log(hi[1] / s_lo)
        ratio = np.where(x > 1e-8, (np.expm1(2 * x) / 2 - x) / np.maximum(x, 1e-300) ** 2, 1.0)
        w = np.stack([1 / (2 * s_lo**2), ratio / s_lo**2])
        v = np.stack([1 / (8 * s_lo**2), 1 / (4 * s_lo**2)])
        exact = None

    def tvs(cap, l2):
        kl = _knapsack(w, cap**2, l2**2)
        nlbc = _knapsack(v, cap**2, l2**2)
        bc = math.exp(-nlbc) if math.isfinite(nlbc) else 0.0
        tv = min(1.0, math.sqrt(kl / 2) if math.isfinite(kl) else 1.0, math.sqrt(max(0.0, 1 - bc * bc)))
        if exact is not None:
            tv = min(tv, 2 * stats.norm.cdf(math.sqrt(_knapsack(exact, cap**2, l2**2)) / 2) - 1)
        return float(kl), float(tv), math.sqrt(max(0.0, 1 - bc))

    kl, tv_pair, hel = tvs(cap_pair, l2_pair)
    kl_init, tv_init, _ = tvs(cap_center, l2_center)
    n = n_users
    correct = min((1 + (n - 1) * tv_pair) / n, (1 + n * tv_init) / n, 1.0)
    value = float(min(max(0.0, 1.0 - correct, fano_bound(n, kl_init)), (n - 1) / n))
    return value, kl, tv_pair, hel, tv_init


def fano_bound(n_users: int, kl_radius: float) -> float:
    """Fano: ``h(P_e) + P_e log(N - 1) >= log N - I(U; X)`` with ``I <= max_n KL(f_n || f_0)``
    (``I(U; X) <= 1/N sum_n KL(f_n || q)`` for any ``q``; Cover and Thomas 2006, Thm. 2.10.1), so
    ``P_e >= phi^{-1}(log N - kl_radius)`` with ``phi`` increasing on ``[0, (N - 1)/N]``."""
    from scipy import optimize

    if n_users < 2 or not math.isfinite(kl_radius):
        return 0.0
    target = math.log(n_users) - kl_radius
    if target <= 0:
        return 0.0
    top = (n_users - 1) / n_users

    def phi(p):
        h = -special.xlogy(p, p) - special.xlogy(1 - p, 1 - p)
        return h + p * math.log(n_users - 1) - target

    if phi(top) <= 0:
        return top
    return float(optimize.brentq(phi, 0.0, top, xtol=1e-14)) * (1 - 1e-12)


def mutual_information_bound(family: str, params) -> tuple[float, str]:
    """``(I_max, q)``: an upper bound on ``I(U; X)`` for one upload of a uniformly drawn user.

    ``I(U; X) = 1/N sum_n KL(f_n || f_bar) <= 1/N sum_n KL(f_n || q)`` for every ``q`` (the mixture
    ``f_bar`` minimises the right side; Cover and Thomas 2006, Thm. 2.10.1 and the "golden formula"),
    coordinates independent so per-coordinate KLs add.  Candidates ``q``: the member at the users'
    mean and median parameters, and for location-scale normals the moment-matched Gaussian
    (``mean(mu)``, ``mean(s^2 + (mu - mean(mu))^2)``), which is the best Gaussian ``q``.  The smallest
    is returned with its name; KL from the family record (torch's registry, else quadrature).
    """
    spec = family_spec(family)
    p = spec.validate(params, where="params")
    n = next(iter(p.values())).shape[0]
    cands = {"mean parameters": {k: np.broadcast_to(v.mean(0, keepdims=True), v.shape) for k, v in p.items()},
             "median parameters": {k: np.broadcast_to(np.median(v, 0, keepdims=True), v.shape) for k, v in p.items()}}
    if spec.location_scale_normal:
        mu = p["mean"].mean(0, keepdims=True)
        var = (p["std"] ** 2 + (p["mean"] - mu) ** 2).mean(0, keepdims=True)
        cands["moment-matched normal"] = {"mean": np.broadcast_to(mu, p["mean"].shape),
                                          "std": np.broadcast_to(np.sqrt(var), p["std"].shape)}
    best = (math.inf, "none")
    for name, q in cands.items():
        kl = np.asarray(spec.kl_divergence(p, {k: np.ascontiguousarray(v) for k, v in q.items()}), float)
        value = float(kl.reshape(n, -1).sum(1).mean())
        if math.isfinite(value) and value < best[0]:
            best = (max(value, 0.0), name)
    return best


def _check_positive(value, name, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def proximity_bound(family: str, n_users: int, dim: int, lr: float, clip: float | None, steps: int,
                    std: float | None = None, init: dict | None = None, optimizer: str = "adamw",
                    clipping: str = "global", *, weight_decay: float = 0.0, betas=(0.9, 0.999),
                    train_std: bool = False, link: str = "softplus") -> ProximityBound:
    """Worst-case lower bound on Bayes misattribution from the training constraints (module docstring).

    ``dim``: coordinates of the user embedding (``n_tokens * token_dim``).  ``init``: common
    constrained initialization (defaults: Beta alpha=2, beta=5; Gaussian mean=0.1, std=``std`` or
    0.2), scalars or ``(dim,)`` arrays.  Gaussian: ``std`` fixed unless ``train_std``; positive
    parameters (alpha, beta, std) are ``link(u)`` of unconstrained ``u``.  ``clip`` is the gradient
    norm (global) or value (coordinate) bound, used by SGD only; Adam's step is bounded regardless.
    """
    spec = _supported(family)
    n_users, dim, steps = _check_int(n_users, "n_users", 1), _check_int(dim, "dim", 1), _check_int(steps, "steps", 0)
    lr = _check_positive(lr, "lr")
    wd = _check_positive(weight_decay, "weight_decay", allow_zero=True)
    if lr * wd > 1:
        raise ValueError("weight_decay: lr * weight_decay must be <= 1")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if clipping not in CLIPPINGS:
        raise ValueError(f"clipping: expected one of {list(CLIPPINGS)}, got {clipping!r}")
    if link not in LINKS:
        raise ValueError(f"link: expected one of {list(LINKS)}, got {link!r}")
    if optimizer == "sgd":
        clip = _check_positive(clip, "clip")
    elif clip is not None:
        _check_positive(clip, "clip")
    b1, b2 = (float(b) for b in betas)
    if not (0 <= b1 < 1 and 0 < b2 < 1):
        raise ValueError(f"betas: expected 0 <= beta1 < 1 and 0 < beta2 < 1, got {betas!r}")
    if std is not None:
        if not spec.location_scale_normal:
            raise ValueError("std: applies to the gaussian (location-scale normal) family only")
        std = _check_positive(std, "std")
    defaults = _default_init(spec)
    init = {**defaults, **({"std": std} if std is not None else {}), **(init or {})}
    names = _trained(spec, train_std)
    extra = set(init) - set(defaults)
    if extra:
        raise ValueError(f"init: unknown parameters {sorted(extra)} for {family}")
    theta0 = {}
    positive = {k for k in spec.param_names if spec.constraints[k] is constraints.positive}
    for k in defaults:
        arr = np.broadcast_to(np.asarray(init[k], dtype=np.float64), (dim,)) if np.size(init[k]) in (1, dim) else None
        if arr is None or not np.all(np.isfinite(arr)) or (k in positive and np.any(arr <= 0)):
            raise ValueError(f"init[{k!r}]: expected a finite (positive for {k}) scalar or {dim} values")
        theta0[k] = arr
    links = {k: (link if k in positive else "identity") for k in names}
    u0 = np.stack([theta0[k] if links[k] == "identity" else _link_inv(link, theta0[k]) for k in names])
    n_params = u0.size
    t = np.arange(1, steps + 1)
    decay = (1 - lr * wd) ** (steps - t) if optimizer != "adam" else np.ones(steps)
    if optimizer == "sgd":
        step = np.full(steps, clip)
        pair_l2 = 2 * lr * float(np.sum(decay * step))
        center_cap = lr * float(decay.sum()) * (wd * np.abs(u0) + clip)   # sum_t decay_t (wd |u0| + C)
        if clipping == "global":
            pair_cap = np.full_like(u0, pair_l2)
            center_l2 = lr * float(np.sum(decay * (wd * np.linalg.norm(u0) + clip)))
        else:
            pair_cap = np.full_like(u0, pair_l2)
            pair_l2 *= math.sqrt(n_params)
            center_l2 = float(np.linalg.norm(center_cap))
    else:
        c = adam_step_bounds(steps, (b1, b2))
        pair_cap = np.full_like(u0, 2 * lr * float(np.sum(decay * c)))
        pair_l2 = float(np.linalg.norm(pair_cap))
        wd_eff = wd if optimizer == "adamw" else 0.0
        center_cap = lr * (wd_eff * float(decay.sum()) * np.abs(u0) + float(np.sum(decay * c)))
        center_l2 = float(np.linalg.norm(center_cap))
    center_cap = np.minimum(center_cap, center_l2)
    # Step 2: map the unconstrained box to constrained parameters.
    lo, hi, slope = np.empty_like(u0), np.empty_like(u0), np.empty_like(u0)
    for i, k in enumerate(names):
        if links[k] == "identity":
            lo[i], hi[i], slope[i] = u0[i] - center_cap[i], u0[i] + center_cap[i], 1.0
        else:
            lo[i], hi[i] = _link(link, u0[i] - center_cap[i]), _link(link, u0[i] + center_cap[i])
            slope[i] = _link_slope(link, u0[i] + center_cap[i])
    th0 = np.stack([theta0[k] for k in names])
    c_cap = np.maximum(hi - th0, th0 - lo)
    p_cap = np.minimum(hi - lo, slope * pair_cap)
    smax = float(slope.max())
    fixed = theta0["std"] if spec.location_scale_normal and not train_std else None
    value, kl, tv, hel, tv_init = _geometry_bound(
        family, lo, hi, c_cap, smax * center_l2, p_cap, smax * pair_l2, n_users, fixed)
    opt_text = {"sgd": f"plain SGD (no momentum), {clipping} gradient clipping at {clip}",
                "adam": f"Adam betas={b1, b2} (L2 penalty inside the gradient; clipping irrelevant)",
                "adamw": f"AdamW betas={b1, b2}, decoupled weight decay {wd} (clipping irrelevant)"}[optimizer]
    assumptions = (f"common initialization {dict((k, float(np.mean(v))) for k, v in theta0.items())}; "
                   f"{steps} steps of {opt_text}, lr={lr}; trained: {', '.join(names)} via "
                   f"{', '.join(f'{k}={links[k]}(u)' for k in names)}; independent coordinates; "
                   f"uniform prior over {n_users} users; worst case over all gradient sequences")
    return ProximityBound(
        value=value, n_users=n_users, family=family, radius=center_l2, pairwise_distance=pair_l2,
        kl=kl, tv=tv, hellinger=hel, tv_init=tv_init, assumptions=assumptions,
        details={"space": "unconstrained", "optimizer": optimizer, "clipping": clipping,
                 "n_parameters": int(n_params), "max_coordinate_drift": float(center_cap.max()),
                 "max_pairwise_coordinate_distance": float(pair_cap.max()),
                 "link_lipschitz": smax, "trained": list(names)})


def proximity_bound_from_trajectories(family: str, init_params: dict, final_params: dict | None = None,
                                      drift=None, n_users: int | None = None, *,
                                      train_std: bool = False) -> ProximityBound:
    """The same chain from the *observed* drift (constrained parameters) instead of the worst case.

    ``init_params``: common initialization, ``{name: scalar or (D,)}``.  Either ``final_params``
    (``{name: (N, D)}``, the users' trained parameters: box, per-coordinate and L2 drifts are
    measured) or ``drift`` (per-user L2 distance from the init of the constrained parameter vector,
    ``(N,)`` or trajectories ``(N, S)`` whose maxima are used, e.g. ``DeviceResult.trajectory``);
    with ``drift`` the Gaussian vector holds the means (and stds when ``train_std``).
    """
    spec = _supported(family)
    if (final_params is None) == (drift is None):
        raise ValueError("final_params/drift: give exactly one of them")
    keys = spec.param_names
    if not isinstance(init_params, dict) or set(init_params) != set(keys):
        raise ValueError(f"init_params: expected the keys {list(keys)}")
    if final_params is not None:
        family, fp = check_params(family, final_params)
        n, dim = fp[keys[0]].shape
        if any(np.size(init_params[k]) not in (1, dim) for k in keys):
            raise ValueError(f"init_params: each parameter must be a scalar or {dim} values")
        _, ip = check_params(family, {k: np.broadcast_to(np.asarray(init_params[k], float).reshape(1, -1),
                                                         (1, dim)) for k in keys})
        if spec.location_scale_normal and np.all(fp["std"] == ip["std"]):
            names = ("mean",)
        else:
            names = keys
        th = np.stack([fp[k] for k in names], axis=0)          # (k, N, D)
        th0 = np.stack([ip[k][0] for k in names])               # (k, D)
        lo, hi = np.minimum(th.min(1), th0), np.maximum(th.max(1), th0)
        diff = (th - th0[:, None, :]).transpose(1, 0, 2).reshape(n, -1)
        c_cap, c_l2 = np.abs(th - th0[:, None, :]).max(1), float(np.sqrt((diff**2).sum(1)).max())
        p_cap = th.max(1) - th.min(1)
        flat = th.transpose(1, 0, 2).reshape(n, -1)
        sq = (flat**2).sum(1)
        p_l2 = float(np.sqrt(max(0.0, (sq[:, None] + sq[None] - 2 * flat @ flat.T).max())))
        p_l2 = min(p_l2, 2 * c_l2)
        fixed = ip["std"][0] if names == ("mean",) else None
    else:
        d = np.asarray(drift, dtype=np.float64)
        if d.ndim not in (1, 2) or d.size == 0 or not np.all(np.isfinite(d)) or np.any(d < 0):
            raise ValueError("drift: expected finite non-negative distances of shape (N,) or (N, S)")
        c_l2 = float(d.max())
        n = d.shape[0] if n_users is None else _check_int(n_users, "n_users", 1)
        dims = {np.size(init_params[k]) for k in keys}
        dim = max(dims)
        if not dims <= {1, dim}:
            raise ValueError("init_params: parameters must be scalars or share one length")
        names = _trained(spec, train_std)
        th0 = np.stack([np.broadcast_to(np.asarray(init_params[k], float).ravel(), (dim,)) for k in names])
        if not np.all(np.isfinite(th0)):
            raise ValueError("init_params: contains NaN or infinite values")
        lo, hi = th0 - c_l2, th0 + c_l2
        c_cap = np.full_like(th0, c_l2)
        p_cap, p_l2 = np.full_like(th0, 2 * c_l2), 2 * c_l2
        fixed = None if names != ("mean",) else np.broadcast_to(np.asarray(init_params["std"], float).ravel(), (dim,))
        if fixed is not None and np.any(fixed <= 0):
            raise ValueError("init_params['std']: must be > 0")
    value, kl, tv, hel, tv_init = _geometry_bound(family, lo, hi, c_cap, c_l2, p_cap, p_l2, n, fixed)
    extra = {}
    if final_params is not None:  # Fano with the users' own mutual-information bound (no box corners)
        info, q = mutual_information_bound(family, fp)
        fano = fano_bound(int(n), info)
        extra = {"fano_mutual_information": info, "fano_reference": q, "fano": fano}
        value = max(value, fano)
    return ProximityBound(
        value=value, n_users=int(n), family=family, radius=c_l2, pairwise_distance=p_l2, kl=kl, tv=tv,
        hellinger=hel, tv_init=tv_init,
        assumptions=(f"observed drift of the constrained parameters ({', '.join(names)}) from a common "
                     f"initialization; independent coordinates; uniform prior over {int(n)} users"),
        details={"space": "constrained", "trained": list(names),
                 "source": "final_params" if final_params is not None else "drift", **extra})
