"""Pareto analysis: directions, non-dominated set (against brute force), CI dominance, knee."""

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from reports import pareto


def _brute(values, directions):
    sign = np.array([1 if d == "higher" else -1 for d in directions])
    g = np.asarray(values, float) * sign
    out = []
    for i, a in enumerate(g):
        dominated = any(all(b[k] >= a[k] for k in range(len(a))) and any(b[k] > a[k] for k in range(len(a)))
                        for j, b in enumerate(g) if j != i)
        out.append(not dominated)
    return np.array(out)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(*[st.integers(0, 5)] * 3), min_size=1, max_size=25),
       st.tuples(*[st.sampled_from(["higher", "lower"])] * 3))
def test_non_dominated_matches_brute_force(points, directions):
    values = np.array(points, float)
    np.testing.assert_array_equal(pareto.non_dominated(values, directions), _brute(values, directions))


def test_directions_are_respected():
    values = np.array([[0.9, 0.1], [0.8, 0.5], [0.7, 0.4]])
    # accuracy higher, advantage lower: (0.9, 0.1) dominates everything
    assert pareto.non_dominated(values, ["higher", "lower"]).tolist() == [True, False, False]
    # both higher: (0.9, 0.1) and (0.8, 0.5) are both optimal, (0.7, 0.4) dominated by (0.8, 0.5)
    assert pareto.non_dominated(values, ["higher", "higher"]).tolist() == [True, True, False]
    assert pareto.direction("misattribution") == "higher"
    assert pareto.direction("best_attack_advantage") == "lower"
    assert pareto.direction("attack:kmeans:ari") == "lower"
    assert pareto.direction("attack:mle:parameter_error") == "higher"
    with pytest.raises(ValueError, match="declares no direction"):
        pareto.direction("mystery")


def test_nan_rows_never_on_frontier():
    values = np.array([[np.nan, 1.0], [0.5, 0.5]])
    assert pareto.non_dominated(values, ["higher", "higher"]).tolist() == [False, True]


def test_knee_on_quarter_circle_is_at_45_degrees():
    angles = np.linspace(0, np.pi / 2, 31)
    values = np.c_[np.cos(angles), np.sin(angles)]
    k = pareto.knee(values, ["higher", "higher"])
    assert angles[k] == pytest.approx(np.pi / 4)


def test_knee_finds_the_corner_and_handles_lower_is_better():
    values = np.array([[1.0, 0.0], [0.95, 0.9], [0.5, 0.95], [0.0, 1.0]])
    assert pareto.knee(values, ["higher", "higher"]) == 1
    flipped = values.copy()
    flipped[:, 1] = 1 - flipped[:, 1]  # privacy as an attack advantage: lower is better
    assert pareto.knee(flipped, ["higher", "lower"]) == 1
    assert pareto.knee(values[[0, 3]], ["higher", "higher"]) in (0, 1)
    # a straight line has no knee: the point nearest the utopia point (the middle) is chosen
    line = np.c_[np.linspace(0, 1, 5), 1 - np.linspace(0, 1, 5)]
    assert pareto.knee(line, ["higher", "higher"]) == 2


def test_ci_dominated_needs_separated_intervals():
    lo = np.array([[0.80, 0.60], [0.70, 0.40], [0.79, 0.58]])
    hi = np.array([[0.85, 0.70], [0.75, 0.50], [0.81, 0.61]])
    # row 1 is beaten by row 0 even pessimistically; row 2 overlaps row 0, so it is not
    assert pareto.ci_dominated(lo, hi, ["higher", "higher"]).tolist() == [False, True, False]


def _frame():
    rows = []
    for fam, spread in itertools.product(["gaussian", "beta"], [0.02, 0.1, 0.3]):
        mis = spread * 2
        acc = 0.8 - spread * (0.3 if fam == "beta" else 0.1)
        rows.append({"family": fam, "spread": spread, "point_id": f"{fam}{spread}", "accuracy": acc,
                     "accuracy_lo": acc - 0.01, "accuracy_hi": acc + 0.01, "misattribution": mis,
                     "misattribution_lo": mis - 0.02, "misattribution_hi": mis + 0.02})
    return pd.DataFrame(rows)


def test_frontier_table_keeps_settings_cis_and_one_knee():
    table = pareto.frontier_table(_frame())
    assert set(table["family"]) == {"gaussian"}  # beta loses accuracy at equal misattribution
    assert len(table) == 3 and table["knee"].sum() == 1
    assert {"spread", "accuracy_lo", "accuracy_hi", "misattribution_lo", "misattribution_hi"} <= set(table)
    assert table["misattribution"].is_monotonic_decreasing
    rec = pareto.recommend(_frame())
    assert rec["family"] == "gaussian" and rec["knee"] is True
