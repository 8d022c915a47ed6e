"""Pools of the kinds in issue 8's table, with their Bayes-optimal attribution from the true parameters.

Used by ``tests/test_attack_strength.py`` (small, fast sizes) and ``benchmarks/bench_attack_strength.py``
(the table's full sizes).  Each kind draws its users' true parameters and uploads with
``torch.distributions`` from a ``torch.Generator`` (no global seed):

* ``dominant``: Gaussian users, one with 10x the uploads, anisotropic per-user per-dimension stds.
* ``many``: many users with equal, small upload counts (the 200 x 30 pool).
* ``beta_affine``: Beta users of very unequal sizes (one dominant) behind a shared affine map
  ``embedding = loc + scale * x`` (the pool contract's ``loc``/``scale``).
* ``student_t``: Student-t tails (3 degrees of freedom), unequal sizes.
* ``overlap``: a few strongly overlapping Gaussian users.

:func:`bayes_accuracy` is the accuracy of the Bayes classifier ``argmax_u pi_u p_u(x)`` with the true
parameters and size priors on the drawn pool: an unbiased estimate of the Bayes-optimal attribution
accuracy (the affine map has the same Jacobian for every user, so it is ignored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from idfree_core.uploads import UserDistributions, anonymize

# kind -> full-size settings (issue 8's table) and small test settings
KINDS = {
    "dominant": dict(full=dict(n_users=30, per_user=60, dominant=10, dim=16, spread=1.08),
                     small=dict(n_users=10, per_user=40, dominant=10, dim=8, spread=1.7)),
    "many": dict(full=dict(n_users=200, per_user=30, dim=32, spread=0.47),
                 small=dict(n_users=40, per_user=30, dim=16, spread=0.68)),
    "beta_affine": dict(full=dict(n_users=40, sizes=(10, 150), dominant_size=1500, dim=24, spread=0.22),
                        small=dict(n_users=12, sizes=(20, 80), dominant_size=400, dim=12, spread=0.29)),
    "student_t": dict(full=dict(n_users=25, sizes=(20, 400), dim=8, spread=1.9, df=3.0),
                      small=dict(n_users=8, sizes=(20, 150), dim=6, spread=1.7, df=3.0)),
    "overlap": dict(full=dict(n_users=12, per_user=150, dim=16, spread=0.45, std_range=1.3),
                    small=dict(n_users=6, per_user=80, dim=8, spread=0.53, std_range=1.3)),
}


@dataclass(frozen=True)
class StrengthPool:
    kind: str
    pool: object
    oracle: object
    distributions: UserDistributions | None  # None for Student-t (no such family in the file contract)
    bayes: float
    n_users: int


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


def _sizes(rng: np.random.Generator, n_users: int, cfg: dict) -> np.ndarray:
    if "per_user" in cfg:
        sizes = np.full(n_users, int(cfg["per_user"]))
        if cfg.get("dominant"):
            sizes[0] *= int(cfg["dominant"])
        return sizes
    lo, hi = cfg["sizes"]
    sizes = np.exp(rng.uniform(np.log(lo), np.log(hi), n_users)).round().astype(int)
    if cfg.get("dominant_size"):
        sizes[0] = int(cfg["dominant_size"])
    return sizes


def make_pool(kind: str, seed: int, size: str = "small") -> StrengthPool:
    """One pool of ``kind`` (a key of :data:`KINDS`) at ``size`` ``"small"`` or ``"full"``."""
    with torch.random.fork_rng():  # torch.distributions samples from the global generator: fork it
        torch.manual_seed(int(seed))
        return _make_pool(kind, seed, size)


def _make_pool(kind: str, seed: int, size: str) -> StrengthPool:
    cfg = KINDS[kind][size]
    rng = np.random.default_rng(seed)
    g = _gen(seed)
    n_users, dim, spread = cfg["n_users"], cfg["dim"], cfg["spread"]
    sizes = _sizes(rng, n_users, cfg)
    rows = np.repeat(np.arange(n_users), sizes)
    names = np.asarray([f"user{u:04d}" for u in range(n_users)])
    loc = scale = None
    if kind == "beta_affine":
        m = torch.distributions.Normal(torch.tensor(-1.0), torch.tensor(spread)).sample((n_users, dim))
        conc = torch.exp(torch.distributions.Uniform(torch.log(torch.tensor(8.0)), torch.log(torch.tensor(30.0)))
                         .sample((n_users, dim)))
        mean = torch.sigmoid(m)
        alpha, beta = (mean * conc).double(), ((1 - mean) * conc).double()
        dist = torch.distributions.Beta(alpha, beta)
        x01 = torch.distributions.Beta(alpha[rows], beta[rows]).sample()
        loc, scale = rng.normal(0.0, 1.0, dim), rng.uniform(0.5, 3.0, dim)
        emb = loc + scale * x01.numpy()
        dists = UserDistributions("beta", tuple(names), {"alpha": alpha.numpy(), "beta": beta.numpy()},
                                  loc=loc, scale=scale)
        logp = _log_prob(dist, x01, sizes)
    else:
        mean = torch.randn((n_users, dim), generator=g, dtype=torch.float64) * spread
        # anisotropic: per-user, per-dimension stds spanning std_range (4x unless set; log-uniform)
        r = float(cfg.get("std_range", 4.0))
        std = torch.exp(torch.rand((n_users, dim), generator=g, dtype=torch.float64) * np.log(r) - 0.5 * np.log(r))
        if kind == "student_t":
            dist = torch.distributions.StudentT(torch.tensor(cfg["df"], dtype=torch.float64), mean, std)
            dists = None
        else:
            dist = torch.distributions.Normal(mean, std)
            dists = UserDistributions("gaussian", tuple(names), {"mean": mean.numpy(), "std": std.numpy()})
        x = type(dist)(*[p[rows] for p in _params(dist)]).sample()
        emb = x.numpy()
        logp = _log_prob(dist, x, sizes)
    bayes = float((logp.argmax(axis=1) == rows).mean())
    session = (rng.random(rows.size) < 0.3).astype(np.int64)
    pool, oracle = anonymize(emb.astype(np.float32), names[rows], session=session, rng=rng)
    return StrengthPool(kind=kind, pool=pool, oracle=oracle, distributions=dists, bayes=bayes, n_users=n_users)


def _params(dist):
    if isinstance(dist, torch.distributions.StudentT):
        return dist.df.expand_as(dist.loc), dist.loc, dist.scale
    return dist.loc, dist.scale


def _log_prob(dist, x: torch.Tensor, sizes: np.ndarray, block: int = 2048) -> np.ndarray:
    """``log pi_u + sum_d log p_u(x_d)``: ``(n, n_users)``, in row blocks."""
    prior = torch.log(torch.as_tensor(sizes / sizes.sum(), dtype=torch.float64))
    out = []
    for s in range(0, x.shape[0], block):
        xb = x[s:s + block].double().unsqueeze(1)
        out.append((dist.log_prob(xb).sum(-1) + prior).numpy())
    return np.concatenate(out)


def bayes_accuracy(sp: StrengthPool) -> float:
    return sp.bayes
