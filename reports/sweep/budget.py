"""Size check before a sweep expands or runs anything: refuse past an hour or half the memory without ``--yes``.

``count_points`` multiplies the grid's list lengths (a per-family spread table counts its lists
per family; static counts once) without expanding the product.  The time estimate is
``n_points * SECONDS_PER_POINT / workers`` with ``SECONDS_PER_POINT`` the measured cost of one
default-report point on 2 cores (docs/sweep_spec.md); the memory estimate is
``n_points * BYTES_PER_POINT`` for the expanded configs and the result rows held while reporting.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

from idfree_core.errors import InputError

SECONDS_PER_POINT = 60.0
BYTES_PER_POINT = 64 * 1024
MAX_SECONDS = 3600.0


def count_points(grid: Mapping[str, Any]) -> int:
    """An upper bound on the number of points of ``grid`` (exact unless duplicates collapse)."""
    from idfree_core.families import DEFAULT_FAMILY, get_family_spec  # on use (torch; workers start quick)

    n = 1
    families = list(grid.get("family", (DEFAULT_FAMILY,)))
    for key, values in grid.items():
        if key in ("family", "spread"):
            continue
        n *= max(1, len(values))
    spread = grid.get("spread")
    per_family = 0
    for fam in families:
        if get_family_spec(fam).is_point_mass or spread is None:
            per_family += 1
        elif isinstance(spread, Mapping):
            per_family += max(1, len(spread.get(fam, (None,))))
        else:
            per_family += max(1, len(spread))
    return n * max(1, per_family)


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_size(grid: Mapping[str, Any], workers: int | None, yes: bool = False) -> str | None:
    """A warning line when the sweep is large (``yes=True``) or an InputError asking for ``--yes``."""
    n = count_points(grid)
    w = max(1, workers or os.cpu_count() or 1)
    hours = n * SECONDS_PER_POINT / w / 3600.0
    mem, need = _memory_bytes(), n * BYTES_PER_POINT
    problems = []
    if hours * 3600.0 > MAX_SECONDS:
        problems.append(f"about {hours:,.0f} h on {w} worker(s) at {SECONDS_PER_POINT:g} s per point")
    if mem is not None and need > mem / 2:
        problems.append(f"about {need / 2**30:,.1f} GiB of memory, more than half of this machine's "
                        f"{mem / 2**30:,.1f} GiB")
    if not problems:
        return None
    text = f"the sweep has {n:,} points: " + "; ".join(problems)
    if not yes:
        raise InputError(text + "; pass --yes to run it anyway")
    if mem is not None and need > mem:  # even with --yes, never start what cannot fit
        raise InputError(text + "; it cannot fit in memory: split the grid")
    return "WARNING: " + text
