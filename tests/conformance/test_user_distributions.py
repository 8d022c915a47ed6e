"""One battery of identities over every user-embedding family (cf. scipy's test_continuous_basic).

The cases iterate the family registry (:data:`idfree_core.families.FAMILY_SPECS`): every
registered family's module (``spec.user_module()``) is paired with the scipy.stats distribution it
must equal (``spec.scipy_distribution``: ``beta`` with loc/scale, ``norm``, Kumaraswamy, a one-atom
``rv_discrete`` for the static point mass), plus an affine variant of every family taking one.
A new family registered with :func:`idfree_core.families.register_family_spec` is checked here
without editing this file.  Statistical claims use fixed seeds and z = 5 intervals (per element, so a
false alarm is far below 1e-4 per run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import scipy.stats as st
import torch
from hypothesis import given, settings, strategies as hs

from idfree_core.distributions import make_user_distribution, to_user_distributions
from idfree_core.errors import InputError
from idfree_core.families import FAMILY_SPECS, get_family_spec
from idfree_core.uploads import read_user_distributions, write_user_distributions

N_TOK, DIM = 2, 3
Z = 5.0


@dataclass
class Case:
    """One module configuration of a registered family, checked against the family's scipy twin."""

    name: str
    family: str
    params: dict | None = None            # per-element constrained parameters (default: the family's init)
    options: dict = field(default_factory=dict)  # extra module options (link, train_std, ...)
    loc: float | None = None
    scale: float | None = None

    @property
    def spec(self):
        return get_family_spec(self.family)

    def make(self, n_tokens, dim, **params):
        return self.spec.make_module(n_tokens, dim, **{f"init_{k}": v for k, v in params.items()},
                                     **({"loc": self.loc, "scale": self.scale} if self.loc is not None else {}),
                                     **self.options)

    def ref(self, **params):
        return self.spec.scipy_distribution(params, self.loc, self.scale)

    @property
    def continuous(self) -> bool:
        return not self.spec.is_point_mass

    @property
    def support(self):
        lo, hi = self.spec.support
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return None
        loc, scale = self.loc or 0.0, 1.0 if self.scale is None else self.scale
        return (loc + scale * lo, loc + scale * hi)

    @property
    def raw(self) -> dict:
        m = self.make(1, 1, **self.scalar_params)
        return {k: f"raw_{k}" if hasattr(m, f"raw_{k}") else k for k in self.spec.param_names}

    @property
    def trainable(self) -> tuple:
        m = self.make(1, 1, **self.scalar_params)
        return tuple(k for k in self.spec.param_names if getattr(m, self.raw[k]).requires_grad)

    @property
    def scalar_params(self) -> dict:
        return {k: float(np.ravel(v)[0]) for k, v in self.default_params.items()}

    @property
    def default_params(self) -> dict:
        return self.params if self.params is not None else self.spec.initial_params()

    @property
    def strategies(self) -> dict:
        return {k: (_pos(0.8, 12.0) if c is torch.distributions.constraints.positive else _pos(-3.0, 3.0))
                for k, c in self.spec.constraints.items()}


def _pos(lo, hi):
    return hs.floats(lo, hi, allow_nan=False, allow_infinity=False)


# richer per-element parameters where a family's default initialisation is uniform
PARAMS = {"beta": {"alpha": [[2.0, 0.8, 5.0], [1.5, 3.0, 9.0]], "beta": [[5.0, 1.2, 6.0], [0.9, 3.0, 2.0]]},
          "gaussian": {"mean": [[0.1, -2.0, 0.5], [3.0, 0.0, 1.0]], "std": [[0.2, 1.0, 0.05], [2.0, 0.5, 0.3]]},
          "kumaraswamy": {"a": [[2.0, 0.9, 5.0], [1.5, 3.0, 8.0]], "b": [[5.0, 1.3, 6.0], [1.1, 3.0, 2.0]]}}
# every registered family, plus an affine variant of those that take one, plus option variants
CASES = [Case(name, name, PARAMS.get(name)) for name in FAMILY_SPECS]
CASES += [Case(f"{name}_affine", name, loc=-1.5, scale=3.0) for name, spec in FAMILY_SPECS.items() if spec.affine]
CASES += [Case("beta_exp_link", "beta", {"alpha": 5.0, "beta": 6.0}, {"link": "exp"}),
          Case("gaussian_train_std", "gaussian", {"mean": 0.1, "std": 0.2}, {"train_std": True})]
IDS = [c.name for c in CASES]
# closed forms of d E[x] / d param where known; other families are checked against scipy's mean
GRAD_X = {"beta": {"alpha": lambda alpha, beta: beta / (alpha + beta) ** 2,
                   "beta": lambda alpha, beta: -alpha / (alpha + beta) ** 2},
          "gaussian": {"mean": lambda mean, std: 1.0, "std": lambda mean, std: 0.0},
          "static": {"value": lambda value: 1.0}}


def test_every_registered_family_is_in_the_battery():
    assert {c.family for c in CASES} == set(FAMILY_SPECS)
    for spec in FAMILY_SPECS.values():
        assert get_family_spec(spec.name) is spec
        assert spec.user_module().family == spec.name


def _module(case: Case, n_tokens=N_TOK, dim=DIM, **params):
    return case.make(n_tokens, dim, **(params or case.default_params))


def _element_refs(case: Case, module):
    """One frozen scipy distribution per element, from the module's own (float32) parameters."""
    ex = module.export()
    names = list(ex)
    return [case.ref(**{k: ex[k][i] for k in names}) for i in range(module.n_tokens * module.dim)]


def _samples(module, n: int, seed: int = 0) -> np.ndarray:
    torch.manual_seed(seed)
    x = module.sample((n,))
    return x.double().numpy().reshape(n, -1)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_api_contract(case):
    m = _module(case)
    fam = case.family
    assert m.family == fam
    assert tuple(m.arg_constraints) == get_family_spec(fam).param_names
    assert m.has_rsample and m.distribution().has_rsample
    d = m.distribution()
    assert tuple(d.event_shape) == (N_TOK, DIM) and tuple(d.batch_shape) == ()
    ex = m.export()
    assert tuple(ex) == get_family_spec(fam).param_names
    assert all(v.shape == (N_TOK * DIM,) and v.dtype == np.float64 for v in ex.values())
    np.testing.assert_array_equal(m.parameter_vector().detach().double().numpy(), np.concatenate(list(ex.values())))
    for name in case.trainable:
        assert getattr(m, case.raw[name]).requires_grad
    assert {n for n, _ in m.named_parameters()} == {case.raw[k] for k in case.trainable}
    assert m.rsample((4, 5)).shape == (4, 5, N_TOK, DIM)
    assert m.rsample().shape == (N_TOK, DIM)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_samples_in_support_and_finite(case):
    m = _module(case)
    x = _samples(m, 20000, seed=1)
    assert np.all(np.isfinite(x))
    if case.support is not None:
        lo, hi = case.support
        assert np.all(x > lo) and np.all(x < hi)
    lp = m.log_prob(torch.as_tensor(x, dtype=torch.float32).view(-1, N_TOK, DIM)[:500])
    assert torch.all(torch.isfinite(lp))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_moments_match_closed_form(case):
    m = _module(case)
    n = 40000
    x = _samples(m, n, seed=2)
    for j, ref in enumerate(_element_refs(case, m)):
        mean, var = float(ref.mean()), float(ref.var())
        if not case.continuous:
            assert np.all(x[:, j] == np.float32(mean)) and var == 0.0
            continue
        mu4 = (float(ref.stats(moments="k")) + 3.0) * var ** 2  # excess kurtosis -> 4th central moment
        assert abs(x[:, j].mean() - mean) <= Z * math.sqrt(var / n), (j, x[:, j].mean(), mean)
        assert abs(x[:, j].var(ddof=1) - var) <= Z * math.sqrt((mu4 - var ** 2) / n), (j, x[:, j].var(), var)


@pytest.mark.parametrize("case", [c for c in CASES if c.continuous], ids=lambda c: c.name)
def test_samples_follow_the_distribution_ks(case):
    m = _module(case)
    x = _samples(m, 4000, seed=3)
    refs = _element_refs(case, m)
    pvals = [st.kstest(x[:, j], refs[j].cdf).pvalue for j in range(len(refs))]
    assert min(pvals) > 1e-4 / len(refs), pvals


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_log_prob_agrees_with_scipy(case):
    m = _module(case)
    refs = _element_refs(case, m)
    rng = np.random.default_rng(4)
    x = np.stack([r.rvs(size=64, random_state=rng) for r in refs], axis=1)  # (64, N_TOK*DIM)
    logf = (lambda r, v: r.logpdf(v)) if case.continuous else (lambda r, v: r.logpmf(v))
    expected = np.sum([logf(r, x[:, j]) for j, r in enumerate(refs)], axis=0)
    got = m.log_prob(torch.as_tensor(x).view(-1, N_TOK, DIM)).detach().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-3)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_log_prob_outside_support_and_bad_input(case):
    m = _module(case)
    if case.support is not None:
        out = torch.full((2, N_TOK, DIM), case.support[1] + 0.5)
        out[0] = float(np.mean(case.support))  # row 0 inside
        lp = m.log_prob(out)
        assert torch.isfinite(lp[0]) and lp[1] == -math.inf
    if not case.continuous:
        v = torch.as_tensor(m.export()["value"], dtype=torch.float32).view(N_TOK, DIM)
        lp = m.log_prob(torch.stack([v, v + 1.0]))
        assert lp[0] == 0.0 and lp[1] == -math.inf
    with pytest.raises(InputError, match="shape"):
        m.log_prob(torch.zeros(4, DIM, N_TOK))
    with pytest.raises(InputError, match="NaN"):
        m.log_prob(torch.full((1, N_TOK, DIM), math.nan))


def _pathwise_gradient(case: Case, params: dict, g, n_elem=4000, reps=5, seed=0):
    """Per-element pathwise estimates of d E[g(x)] / d theta, mean and standard error."""
    m = case.make(1, n_elem, **params)
    torch.manual_seed(seed)
    x = m.rsample((reps,)).double()
    g(x).mean(0).sum().backward()
    out = {}
    constrained = m.constrained()
    for name in case.trainable:
        raw = getattr(m, case.raw[name])
        # chain rule through the bijection: d/d theta = (d/d raw) / (d theta / d raw)
        jac = m.bijection(name).log_abs_det_jacobian(raw, constrained[name]).exp()
        per = (raw.grad / jac).detach().double().numpy().reshape(-1)
        out[name] = (per.mean(), per.std(ddof=1) / math.sqrt(per.size))
    return m, out


def _check_against(est, reference, what):
    mean, se = est
    tol = Z * se + 1e-4 * (1.0 + abs(reference))
    assert abs(mean - reference) <= tol, f"{what}: pathwise {mean:.5f} +- {se:.5f}, reference {reference:.5f}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reparameterized_gradient_closed_form(case):
    """d E[x] / d theta against closed forms, e.g. d/dmu E[x] = 1, d/dalpha E[x] = b / (a + b)^2."""
    m, est = _pathwise_gradient(case, case.scalar_params, lambda x: x)
    ex = {k: float(v[0]) for k, v in m.export().items()}
    for name in case.trainable:
        closed = GRAD_X.get(case.family, {}).get(name)
        reference = closed(**ex) if closed is not None and case.loc is None else _fd_reference(case, ex, name, 1)
        _check_against(est[name], reference, f"{case.name} d E[x] / d {name}")


def _fd_reference(case: Case, ex: dict, name: str, moment: int, h: float = 1e-5) -> float:
    """Central finite difference of scipy's closed-form moment E[x^k] in parameter ``name``."""
    up, down = dict(ex), dict(ex)
    up[name] += h
    down[name] -= h
    return (case.ref(**up).moment(moment) - case.ref(**down).moment(moment)) / (2 * h)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reparameterized_gradient_finite_difference(case):
    """Hypothesis over parameters: pathwise d E[x^2] / d theta agrees with a finite difference."""

    @settings(max_examples=8, deadline=None, derandomize=True)
    @given(hs.fixed_dictionaries(case.strategies))
    def check(params):
        m, est = _pathwise_gradient(case, params, lambda x: x ** 2, seed=7)
        ex = {k: float(v[0]) for k, v in m.export().items()}
        for name in case.trainable:
            _check_against(est[name], _fd_reference(case, ex, name, 2), f"{case.name} d E[x^2] / d {name} at {ex}")

    check()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_export_round_trips_through_json(case, tmp_path):
    fam = case.family
    users = [_module(case), case.make(N_TOK, DIM, **case.default_params)]
    with torch.no_grad():  # make the two users differ
        getattr(users[1], case.raw[case.trainable[0]]).add_(0.25)
    dists = to_user_distributions(["ann", "bob"], users)
    path = tmp_path / "user_distributions.json"
    write_user_distributions(dists, path)
    back = read_user_distributions(path)
    assert back.family == fam and back.users == ("ann", "bob")
    for i, mod in enumerate(users):
        for k, v in mod.export().items():
            np.testing.assert_array_equal(back.params[k][i], v)
    if case.loc is not None:
        np.testing.assert_array_equal(back.loc, np.full(N_TOK * DIM, -1.5))
        np.testing.assert_array_equal(back.scale, np.full(N_TOK * DIM, 3.0))
    else:
        assert back.loc is None and back.scale is None
    # and a module rebuilt from the exported (flattened) parameters is the same distribution
    rebuilt = case.make(N_TOK, DIM, **{k: back.params[k][1] for k in get_family_spec(fam).param_names})
    torch.testing.assert_close(rebuilt.parameter_vector(), users[1].parameter_vector(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_same_seed_same_samples(case):
    m = _module(case)
    a, b = _samples(m, 50, seed=11), _samples(m, 50, seed=11)
    np.testing.assert_array_equal(a, b)
    if case.continuous:
        assert not np.array_equal(a, _samples(m, 50, seed=12))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_identical_initialisation_across_users_by_default(case):
    fam = case.family
    extra = {"loc": case.loc, "scale": case.scale} if case.loc is not None else {}
    extra.update(case.options)
    users = [make_user_distribution(fam, N_TOK, DIM, **extra) for _ in range(5)]
    torch.manual_seed(123)  # the global RNG must not matter
    users.append(make_user_distribution(fam, N_TOK, DIM, **extra))
    states = [u.state_dict() for u in users]
    for s in states[1:]:
        assert s.keys() == states[0].keys()
        assert all(torch.equal(s[k], states[0][k]) for k in s)
    a = make_user_distribution(fam, N_TOK, DIM, jitter=0.1, seed=1, **extra)
    b = make_user_distribution(fam, N_TOK, DIM, jitter=0.1, seed=2, **extra)
    c = make_user_distribution(fam, N_TOK, DIM, jitter=0.1, seed=1, **extra)
    assert not torch.equal(a.parameter_vector(), b.parameter_vector())
    assert torch.equal(a.parameter_vector(), c.parameter_vector())


def _bad(case: Case) -> list[dict]:
    """Invalid constrained parameters, derived from the family's constraints."""
    ok = case.scalar_params
    out = []
    for k, c in case.spec.constraints.items():
        values = [math.nan, np.ones((4, 4)), "a"]
        if c is torch.distributions.constraints.positive:
            values += [0.0, -1.0, math.inf]
        out += [{**ok, k: v} for v in values]
    return out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_parameters_raise_input_error(case):
    bad = _bad(case)
    for params in bad:
        with pytest.raises(InputError) as info:
            case.make(N_TOK, DIM, **params)
        assert "\n" not in str(info.value)
    for n_tokens, dim in ((0, 3), (2, -1), (1.5, 3), (True, 3)):
        with pytest.raises(InputError, match="n_tokens|dim"):
            case.make(n_tokens, dim, **{k: 1.0 for k in case.spec.param_names})


@pytest.mark.parametrize("name", [n for n, s in FAMILY_SPECS.items() if s.mle is not None])
def test_mle_is_consistent_within_its_cramer_rao_bound(name):
    """A registered ``mle`` recovers the common initialisation within z = 5 Cramér-Rao standard errors
    (``crb``), and weights of ones change nothing (the weighted M-step of mixture inversion)."""
    spec = FAMILY_SPECS[name]
    assert spec.crb is not None, f"{name}: a family with an mle must give its Cramer-Rao bound"
    truth = spec.initial_params()
    n, dim = 4000, 4
    x = spec.scipy_distribution(truth).rvs(size=(n, dim), random_state=0)
    fit = spec.mle(x, axis=0)
    bound = spec.crb({k: np.full(dim, v) for k, v in truth.items()}, n)
    for k in spec.param_names:
        assert np.all(np.abs(fit[k] - truth[k]) <= 5 * np.sqrt(bound[k])), (k, fit[k], truth[k], bound[k])
        assert np.allclose(spec.mle(x, axis=0, weights=np.ones(n))[k], fit[k], rtol=1e-6)
