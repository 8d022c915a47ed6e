"""Generated non-densities are refused: a real density corrupted so that it is negative somewhere,
or has infinite mass, must never get an identifiability verdict (issue 13).

Templates are true densities; corruptions are drawn by hypothesis (seeded):
* ``sign``: times ``(x - t)`` with ``t`` well inside the support (negative on one side of ``t``);
* ``negate``: times ``-c``;
* ``blowup``: times ``exp(k x)`` with ``k`` larger than the tail's decay rate (infinite mass);
* ``pole``: plus ``c / |x - t|`` at an interior ``t`` (non-integrable, infinite mass).
Each corrupted expression goes through the CLI (``identifiability --density``) and must give the
one-line "not a density" refusal, exit 2, within a time bound.  Control: the uncorrupted
templates are accepted by the same member screen.
"""

import contextlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privacy_audit.families import family_from_density
from privacy_audit.identifiability.support import check_member
from reports import cli
from tests.test_identifiability_preconditions import at_most

# (density, params, positive, support, rate): ``rate`` = the tail's decay rate at the test point
# a = 2 (None on a bounded support), and the interior interval where corruptions are centred
TEMPLATES = {
    "exponential": ("a*exp(-a*x)", ["a"], ["a"], "0,oo", 2.0, (0.3, 3.0)),
    "gaussian": ("exp(-(x-a)**2/2)/sqrt(2*pi)", ["a"], [], "-oo,oo", None, (-1.0, 3.0)),
    "beta": ("x**(a-1)*(1-x)**(a-1)/beta(a,a)", ["a"], ["a"], "0,1", None, (0.2, 0.8)),
    "gamma": ("x**(a-1)*exp(-x)/gamma(a)", ["a"], ["a"], "0,oo", 1.0, (0.5, 4.0)),
}


def _argv(expr, params, positive, support):
    argv = ["identifiability", "--density", expr, "--params", ",".join(params), f"--support={support}"]
    return argv + (["--positive", ",".join(positive)] if positive else [])


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_templates_are_densities(name):
    expr, params, positive, support, *_ = TEMPLATES[name]
    fam = family_from_density(expr, "x", params, support, positive=positive)
    ok, why = check_member(fam, {"a": 2})
    assert ok, why


@settings(max_examples=14, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(TEMPLATES)), corruption=st.sampled_from(["sign", "negate", "blowup", "pole"]),
       u=st.floats(0.25, 0.75), c=st.sampled_from(["1/2", "3", "7/5"]))
def test_generated_non_densities_are_refused(name, corruption, u, c):
    expr, params, positive, support, rate, (lo, hi) = TEMPLATES[name]
    t = f"{round(lo + u * (hi - lo), 3)}"
    if corruption == "blowup":
        if rate is None:  # a bounded support keeps finite mass under exp(kx): use the pole instead
            corruption = "pole"
        else:
            bad = f"({expr})*exp({2 * rate + 1}*x)"
    if corruption == "sign":
        bad = f"({expr})*(x-{t})"
    elif corruption == "negate":
        bad = f"-{c}*({expr})"
    elif corruption == "pole":
        bad = f"({expr})+{c}/Abs(x-{t})"
    buf = io.StringIO()
    with at_most(60), contextlib.redirect_stderr(buf), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(_argv(bad, params, positive, support))
    err = buf.getvalue().strip().splitlines()
    assert code == 2, (bad, err)
    assert len(err) == 1 and "not a density" in err[0], (bad, err)
