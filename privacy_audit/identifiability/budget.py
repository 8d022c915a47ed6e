"""Work budgets: identifiability verdicts are a function of the input and a count of work units.

Every search and prover charges one unit per candidate, nullspace, limit, solve, simplification
or numeric density check (:meth:`Work.spend`); when the budget is spent it raises
:class:`BudgetExhausted` and the method ends with a note, never a verdict.  The same input and
budget therefore give the same verdict on an idle and on a loaded machine (issue 12).  The wall
clock survives only as a safety kill of the worker process (``decide(time_budget=...)``), and a
killed worker always yields "unknown", never a different definite verdict.
"""

from __future__ import annotations

__all__ = ["Work", "BudgetExhausted", "DEFAULT_WORK"]

DEFAULT_WORK = 4000  # all built-in families settle with a few hundred units


class BudgetExhausted(Exception):
    """The work budget is spent (a note for the method in progress, never a verdict)."""


class Work:
    """A counter of work units with a hard limit."""

    def __init__(self, limit: int = DEFAULT_WORK):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"work_budget: must be a positive integer, got {limit!r}")
        self.limit = limit
        self.used = 0

    def spend(self, units: int = 1) -> None:
        self.used += units
        if self.used > self.limit:
            raise BudgetExhausted(f"work budget of {self.limit} units exhausted")

    @property
    def left(self) -> int:
        return max(self.limit - self.used, 0)
