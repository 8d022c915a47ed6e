"""Misattribution when an adversary links ``m`` uploads of one device, and the rate it decays at.

The paper's misattribution is per upload.  An adversary who knows that ``m`` uploads share a user
(a session, a writing style, timing) attributes them jointly with the product likelihood; its
Bayes error is :func:`privacy_audit.misattribution.bayes_misattribution` with
``uploads_per_user=m`` (exact for Gaussians sharing one std: the mean of ``m`` draws is
``N(mu, s^2 / m)`` and sufficient; Monte Carlo with a CI otherwise).

As ``m`` grows the error falls as ``exp(-m C + o(m))`` with ``C = min_{i != j} C(f_i, f_j)`` the
Chernoff information of the closest pair (Chernoff 1952; Leang and Johnson 1997 for ``N``
hypotheses).  Equal-std Gaussians: ``C = ||(mu_i - mu_j) / s||^2 / 8`` per upload.  Otherwise
``C`` comes from the log-partition of the geometric mixture (:mod:`privacy_audit.expfam`),
maximised over ``lam`` numerically.  Pairs: all for ``N <= ALL_PAIRS_MAX``, else each user's
``NEIGHBOURS`` nearest in symmetrised KL (one GEMM), which the output says.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from privacy_audit.divergences import check_params
from privacy_audit.likelihood import family_spec
from privacy_audit.expfam import chernoff_information, symmetrised_kl

__all__ = ["UploadCurve", "misattribution_by_uploads", "chernoff_rate"]

ALL_PAIRS_MAX = 64
NEIGHBOURS = 4


@dataclass(frozen=True)
class UploadCurve:
    """``by_uploads_per_user`` rows ``{"m", "value", "ci", "method", "n_samples"}`` and the decay rate.

    ``chernoff_rate``: nats per upload (``error ~ exp(-m * rate)``); ``worst_pair``: indices of the
    pair attaining it; ``pairs``: how the pairs were chosen (``"all"`` or ``"nearest-4-by-J"``).
    """

    by_uploads_per_user: tuple[dict, ...]
    chernoff_rate: float
    worst_pair: tuple[int, int]
    pairs: str

    def to_dict(self) -> dict:
        out = asdict(self)
        out["by_uploads_per_user"] = [dict(r) for r in self.by_uploads_per_user]
        out["worst_pair"] = list(self.worst_pair)
        return out


def candidate_pairs(family: str, p: dict) -> tuple[np.ndarray, str]:
    """All pairs ``i < j`` for small ``N``, else each user's nearest neighbours in symmetrised KL."""
    n = next(iter(p.values())).shape[0]
    if n <= ALL_PAIRS_MAX:
        i, j = np.triu_indices(n, 1)
        return np.stack([i, j], axis=1), "all"
    J = symmetrised_kl(family, p)
    np.fill_diagonal(J, np.inf)
    k = min(NEIGHBOURS, n - 1)
    nearest = np.argpartition(J, k - 1, axis=1)[:, :k]
    pairs = np.stack([np.repeat(np.arange(n), k), nearest.ravel()], axis=1)
    return np.unique(np.sort(pairs, axis=1), axis=0), f"nearest-{k}-by-J"


def chernoff_rate(family: str, params) -> tuple[float, tuple[int, int], str]:
    """``(min pairwise Chernoff information, pair, pair selection)`` in nats per upload."""
    family, p = check_params(family, params)
    n = next(iter(p.values())).shape[0]
    if n < 2 or family_spec(family).is_point_mass:
        return float("inf"), (0, 0), "none"
    pairs, how = candidate_pairs(family, p)
    c, _ = chernoff_information(family, p, pairs)
    k = int(np.argmin(c))
    return float(c[k]), (int(pairs[k, 0]), int(pairs[k, 1])), how


def misattribution_by_uploads(family: str, params, uploads=(1, 5, 20), priors=None, **kwargs) -> UploadCurve:
    """Bayes misattribution for each ``m`` in ``uploads`` plus the Chernoff rate (module docstring).

    ``kwargs`` go to :func:`privacy_audit.misattribution.bayes_misattribution` (``random_state``,
    ``target_halfwidth``, ...).
    """
    from privacy_audit.misattribution import _positive_int, bayes_misattribution

    ms = [_positive_int(m, "uploads") for m in (uploads if np.ndim(uploads) else [uploads])]
    if not ms:
        raise ValueError("uploads: give at least one number of uploads per user")
    family, p = check_params(family, params)
    rows = []
    for m in ms:
        est = bayes_misattribution(family, p, priors, uploads_per_user=m, **kwargs)
        rows.append({"m": m, "value": est.value, "ci": list(est.ci), "method": est.method,
                     "n_samples": est.n_samples, "interval": est.interval})
    rate, pair, how = chernoff_rate(family, p)
    return UploadCurve(tuple(rows), rate, pair, how)
