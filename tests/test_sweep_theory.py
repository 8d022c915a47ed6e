"""The per-point theory block of a sweep row (reports.sweep.theory) against closed forms."""

import math
from types import SimpleNamespace

import numpy as np
from scipy import stats

from reports.sweep.theory import flatten_theory, theory_metrics


def _dist(family, **params):
    return SimpleNamespace(family=family, params={k: np.asarray(v, float) for k, v in params.items()},
                           loc=None, scale=None)


def test_two_equal_std_gaussians_match_the_closed_forms():
    mean = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1]])
    std = np.full_like(mean, 0.5)
    out = theory_metrics(_dist("gaussian", mean=mean, std=std), seed=0)
    dist = float(np.linalg.norm(mean[1] - mean[0]) / 0.5)
    for row in out["by_uploads_per_user"]["rows"]:
        # one seeded estimate: within 1.5 CI half-widths of the closed form (the CI's own coverage
        # over many configurations is tested in tests/test_misattribution_coverage.py)
        exact = stats.norm.cdf(-math.sqrt(row["m"]) * dist / 2)
        lo, hi = row["ci"]
        assert abs(row["value"] - exact) <= 1.5 * (hi - lo) / 2, (row, exact)
    assert math.isclose(out["dp"]["gdp_mu_per_upload"], dist, rel_tol=1e-9)
    assert math.isclose(out["by_uploads_per_user"]["chernoff_rate"], dist ** 2 / 8, rel_tol=1e-6)
    flat = {"misattribution": out["by_uploads_per_user"]["rows"][0]["value"]}
    flatten_theory(out, flat)
    assert flat["misattribution_m20"] < flat["misattribution_m5"] < flat["misattribution"]
    assert flat["dp_epsilon_m20"] > flat["dp_epsilon_m1"] > 0


def test_identical_users_are_not_identifiable_and_distinct_point_masses_have_infinite_epsilon():
    mean = np.array([[0.1, 0.2, 0.3, 0.4]] * 3)
    out = theory_metrics(_dist("gaussian", mean=mean, std=np.full_like(mean, 0.2)), seed=0)
    assert out["deployment"]["identifiable"] is False
    flat = {}
    flatten_theory(out, flat)
    assert flat["deployment_identifiable"] == 0.0
    static = theory_metrics(_dist("static", value=[[0.0, 1.0], [1.0, 0.0]]), seed=0)
    assert static["dp"]["epsilon"]["m=1"] == "inf"
    flatten_theory(static, flat)
    assert flat["dp_epsilon_m1"] == math.inf


def test_a_failing_part_is_recorded_not_raised():
    out = theory_metrics(_dist("gaussian", mean=[[0.0], [1.0]], std=[[0.1], [-1.0]]), seed=0)
    assert set(out) == {"by_uploads_per_user", "dp", "deployment"}
    assert all("error" in v for v in out.values()), out
    flat = {}
    flatten_theory(out, flat)
    assert math.isnan(flat["deployment_identifiable"]) and math.isnan(flat["chernoff_rate"])
