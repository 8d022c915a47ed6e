"""Split-and-merge moves for a fitted :class:`attacks.mixture_em.DiagonalMixture` (SMEM).

EM from k-means++ starts stops in local optima where two users share one component while another
user is cut in two; more restarts rarely fix this when there are tens or hundreds of users.  SMEM
(Ueda, Nakano, Ghahramani & Hinton 2000, "SMEM algorithm for mixture models", Neural Computation
12(9)) keeps ``k`` fixed and repeatedly tries one *merge* of two components together with one
*split* of a third, re-runs EM from the proposal and keeps it only if the log-likelihood increases
(so the likelihood never decreases):

* merge candidates: pairs ``(i, j)`` with the largest posterior overlap
  ``J_merge(i, j) = P_i . P_j / (|P_i| |P_j|)``, ``P_i`` the vector of responsibilities of ``i``
  over the rows (Ueda et al. eq. 3.1, normalised);
* split candidates: components carrying the most negative log-likelihood mass
  ``sum_n r_ns (-log p(x_n))`` (a cheap stand-in for Ueda's local Kullback divergence: large,
  badly explained components);
* the merged component takes the pair's pooled moments; the split one is cut by a few 2-means steps
  (in its own Mahalanobis metric) over its hard members, both halves keeping its variances.

The candidates of a move are drawn at random among the top few of each criterion (seeded), so
successive moves explore different proposals.  Posteriors for the criteria are computed on at most
``sample`` rows; every EM re-run uses all rows.  Each proposal is first run for ``PROBE_ITER`` EM
iterations and dropped if its log-likelihood is then still more than ``SLACK_PER_ROW`` nats per row
of the three components it touched below the current one (a cheap version of Ueda et al.'s partial
EM on the touched components): on 40 users x 30 uploads in 16 dimensions half the proposals stop
there, and the accepted ones were at most 0.45 nats per touched row below after 5 iterations.
"""

from __future__ import annotations

import numpy as np
import torch

TOP = 15  # a move draws its pair and its split among this many best candidates (6 before: 40 users x 30
# uploads in 16-d, 90 moves, 2 seeds x 3 pools: ratio to Bayes 0.74/0.64/0.74 -> 0.78/0.62/0.76)
PROBE_ITER = 5  # EM iterations before a proposal is judged ...
SLACK_PER_ROW = 1.0  # ... and dropped if still this many nats per touched row below the current fit


def _proposal(model, xs, w, mu, var, rng, x_rows: int):
    """One merge pair ``(i, j)`` and split ``s``: the proposed ``(w, mu, var)`` and the number of rows (of
    ``x_rows``, estimated from the ``xs`` sample) whose MAP component is one of the three."""
    k = mu.shape[0]
    logp, _ = model._logp(xs, w, mu, var)
    lse = torch.logsumexp(logp, 1)
    r = torch.exp(logp - lse[:, None])
    rn = r / r.norm(dim=0).clamp_min(1e-12)
    overlap = rn.T @ rn
    overlap.fill_diagonal_(-1.0)
    top = torch.topk(overlap.flatten(), min(2 * TOP, k * (k - 1))).indices  # each pair appears twice
    i, j = divmod(int(top[rng.integers(top.numel())]), k)
    mass = (r * (-lse[:, None])).sum(0)
    mass[i] = mass[j] = -torch.inf
    cand = torch.topk(mass, min(TOP, k - 2)).indices
    s = int(cand[rng.integers(cand.numel())])
    w2, mu2, var2 = w.clone(), mu.clone(), var.clone()
    tot = w[i] + w[j]
    mu2[i] = (w[i] * mu[i] + w[j] * mu[j]) / tot
    var2[i] = ((w[i] * (var[i] + mu[i] ** 2) + w[j] * (var[j] + mu[j] ** 2)) / tot - mu2[i] ** 2).clamp_min(1e-8)
    w2[i] = tot
    members = xs[logp.argmax(1) == s]
    if members.shape[0] >= 4:
        a, b = members[torch.as_tensor(rng.choice(members.shape[0], 2, replace=False))]
        for _ in range(5):  # 2-means in the component's own metric
            side = (((members - a) ** 2 - (members - b) ** 2) / var[s]).sum(1) < 0
            if side.all() or not side.any():
                break
            a, b = members[side].mean(0), members[~side].mean(0)
    else:
        e = torch.as_tensor(rng.standard_normal(mu.shape[1]), dtype=mu.dtype) * var[s].sqrt() * 0.5
        a, b = mu[s] + e, mu[s] - e
    mu2[s], mu2[j] = a, b
    var2[s] = var2[j] = var[s]
    w2[s] = w2[j] = w[s] / 2
    touched = int(torch.isin(logp.argmax(1), torch.as_tensor([i, j, s])).sum()) * (x_rows / xs.shape[0])
    return w2, mu2, var2, touched


def split_merge(model, x: torch.Tensor, w, mu, var, ll: float, n_moves: int, rng, max_iter: int = 40,
                sample: int = 20000):
    """Apply ``n_moves`` SMEM proposals (module doc) to ``(w, mu, var)`` with log-likelihood ``ll``.

    Returns ``(ll, w, mu, var, accepted)``: the final parameters never have a lower log-likelihood.
    """
    k = mu.shape[0]
    if k < 3 or n_moves <= 0:
        return ll, w, mu, var, 0
    xs = x if x.shape[0] <= sample else x[torch.as_tensor(rng.choice(x.shape[0], sample, replace=False))]
    accepted = 0
    for _ in range(int(n_moves)):
        w2, mu2, var2, touched = _proposal(model, xs, w, mu, var, rng, x.shape[0])
        ll2, w2, mu2, var2, _ = model._em(x, w2, mu2, var2, PROBE_ITER, rng)
        if ll2 < ll - SLACK_PER_ROW * max(touched, 1.0):
            continue
        ll2, w2, mu2, var2, _ = model._em(x, w2, mu2, var2, max_iter, rng)
        if ll2 > ll + 1e-7 * abs(ll):
            ll, w, mu, var = ll2, w2, mu2, var2
            accepted += 1
    return ll, w, mu, var, accepted
