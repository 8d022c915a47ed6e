"""The real point function on a tiny config: the row carries the theory block and both proximity
bounds, and the bounds are ordered as the derivation says (observed >= worst case; both <= Bayes)."""

import math

import pytest

from reports.sweep.point import evaluate_point

TINY = {"docs_per_user": 12, "central_epochs": 1, "device_epochs": 2, "rounds": 1, "n_users": 3, "seed": 0,
        "lr": 0.003, "attacks": ["linkage"]}


@pytest.mark.parametrize("family,spread", [("gaussian", 0.3), ("beta", 0.2)])
def test_a_real_point_records_theory_and_ordered_bounds(family, spread):
    row = evaluate_point({**TINY, "family": family, "spread": spread})
    mis = row["misattribution"]
    worst, observed = row["proximity_bound"], row["proximity_bound_observed"]
    assert worst is not None and observed is not None
    # the worst-case box contains the observed one, and Fano only adds: observed >= worst case
    assert 0.0 <= worst <= observed + 1e-12
    assert observed <= mis["ci"][1] + 1e-9
    theory = row["theory"]
    rows = theory["by_uploads_per_user"]["rows"]
    assert [r["m"] for r in rows] == [1, 5, 20]
    assert rows[2]["value"] <= rows[0]["value"] + 1e-9 and math.isclose(rows[0]["value"], mis["value"], abs_tol=0.05)
    assert set(theory["dp"]["epsilon"]) == {"m=1", "m=20"}
    assert theory["deployment"].get("identifiable") in (True, False, None)


def test_a_point_mass_point_has_no_bound_and_infinite_epsilon():
    row = evaluate_point({**TINY, "family": "static"})
    assert row["proximity_bound"] is None and row["proximity_bound_observed"] is None
    assert row["theory"]["dp"]["epsilon"]["m=1"] in ("inf", 0.0)
