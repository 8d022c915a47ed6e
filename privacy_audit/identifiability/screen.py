"""Numeric screen for linear dependence: SVD rank of sampled members on a grid (evidence only).

Rows ``F[i, :] = f(x_grid; theta_i) / ||f(.; theta_i)||`` for ``n_members`` parameter points
sampled from the domain (seeded); the singular values of ``F`` (equivalently the eigenvalues of
the Gram matrix ``F F^T``) and the numeric rank ``#{s_k > rtol * s_1}`` are reported.  A rank
deficit is *numeric evidence* of dependence, full rank numeric evidence of independence; neither
is a proof (smooth functions are numerically close to low-dimensional spaces).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..families import Family

__all__ = ["ScreenResult", "numeric_screen"]


@dataclass(frozen=True)
class ScreenResult:
    n_members: int
    grid_size: int
    singular_values: tuple[float, ...]
    numeric_rank: int
    rtol: float
    members: tuple[dict[str, float], ...]
    label: str = "numeric evidence, not a proof"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["singular_values"] = list(self.singular_values)
        d["members"] = [dict(m) for m in self.members]
        return d


def _grid(family: Family, size: int) -> np.ndarray:
    lo, hi = family.support
    if family.discrete:
        a = int(lo) if lo.is_finite else -size // 2
        b = int(hi) if hi.is_finite else a + size - 1
        return np.arange(a, min(b, a + size - 1) + 1, dtype=float)
    a = float(lo) if lo.is_finite else (-10.0 if not hi.is_finite else float(hi) - 20.0)
    b = float(hi) if hi.is_finite else a + 20.0 if lo.is_finite else 10.0
    return np.linspace(a, b, size + 2)[1:-1]


def numeric_screen(family: Family, n_members: int = 10, grid: int = 200, rtol: float = 1e-9,
                   random_state: int | np.random.Generator | None = 0) -> ScreenResult:
    """Singular values and numeric rank of ``n_members`` sampled members on a grid."""
    if int(n_members) < 2 or int(grid) < 2:
        raise ValueError(f"numeric_screen: need n_members >= 2 and grid >= 2, got "
                         f"{n_members}, {grid}")
    if not np.isfinite(rtol) or rtol <= 0:
        raise ValueError(f"numeric_screen: rtol must be positive, got {rtol}")
    members = family.members(int(n_members), random_state)
    xs = _grid(family, int(grid))
    f = family.lambdify()
    rows = []
    with np.errstate(all="ignore"):
        for m in members:
            vals = np.asarray(f(xs, *[m[n] for n in family.param_names]), dtype=float)
            vals = np.broadcast_to(vals, xs.shape).copy()
            vals[~np.isfinite(vals)] = 0.0
            norm = np.linalg.norm(vals)
            rows.append(vals / norm if norm > 0 else vals)
    s = np.linalg.svd(np.vstack(rows), compute_uv=False)
    rank = int(np.sum(s > rtol * s[0])) if s[0] > 0 else 0
    return ScreenResult(n_members=len(members), grid_size=len(xs),
                        singular_values=tuple(float(v) for v in s), numeric_rank=rank,
                        rtol=float(rtol), members=tuple(members))
