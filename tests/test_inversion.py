"""Inversion attacks: MLE against the Cramér-Rao bound, EM mixture recovery (both ways), attributes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special
from scipy import stats as sst

from attacks.base import AttackResult
from attacks.inversion import AttributeInference, BetaMixture, MixtureInversion, ParameterInversion
from attacks.inversion import estimators as est
from idfree_core.errors import InputError
from idfree_core.uploads import UserDistributions, anonymize


def synthetic_pool(family, n_users, dim, per_user, spread, seed=0, shared=False, loc=None, scale=None):
    """Users with known Beta/Gaussian distributions; samples from torch.distributions."""
    g = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    if family == "beta":
        p1 = g.uniform(2.0, 2.0 + spread, (n_users, dim))
        p2 = g.uniform(2.0, 2.0 + spread, (n_users, dim))
    else:
        p1 = g.normal(0.0, spread, (n_users, dim))
        p2 = g.uniform(0.5, 1.0, (n_users, dim))
    if shared:
        p1[:], p2[:] = p1[0], p2[0]
    rows = np.repeat(np.arange(n_users), per_user)
    t1, t2 = torch.tensor(p1[rows]), torch.tensor(p2[rows])
    dist = torch.distributions.Beta(t1, t2) if family == "beta" else torch.distributions.Normal(t1, t2)
    with torch.random.fork_rng():
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        x = dist.sample().numpy()
    if loc is not None:
        x = np.asarray(loc) + np.asarray(scale) * x
    names = tuple(f"user{i}" for i in range(n_users))
    pool, oracle = anonymize(x, np.asarray(names)[rows], session=(g.random(rows.size) < 0.2).astype(int), rng=g)
    keys = ("alpha", "beta") if family == "beta" else ("mean", "std")
    dists = UserDistributions(family, names, {keys[0]: p1, keys[1]: p2}, loc=loc, scale=scale)
    return pool, oracle, dists


# --------------------------------------------------------------------------- estimators


def test_beta_mle_matches_scipy_fit():
    torch.manual_seed(3)
    x = torch.distributions.Beta(torch.tensor([0.7, 2.0, 9.0]), torch.tensor([0.5, 5.0, 3.0])).sample((300,)).numpy()
    a, b = est.beta_mle(x.astype(np.float64))
    for j in range(3):
        ra, rb, _, _ = sst.beta.fit(x[:, j].astype(np.float64), floc=0, fscale=1)
        np.testing.assert_allclose([a[j], b[j]], [ra, rb], rtol=2e-3)


@settings(max_examples=25, deadline=None)
@given(a=st.floats(0.2, 50.0), b=st.floats(0.2, 50.0))
def test_beta_mle_solves_the_likelihood_equations(a, b):
    # the population statistics of Beta(a, b) are E log x = psi(a) - psi(a+b) (and symmetric):
    # the MLE solver fed them must return (a, b)
    s1 = special.digamma(a) - special.digamma(a + b)
    s2 = special.digamma(b) - special.digamma(a + b)
    ha, hb = est.beta_mle_from_stats(np.array([s1]), np.array([s2]))
    np.testing.assert_allclose([ha[0], hb[0]], [a, b], rtol=1e-5)


def test_beta_fisher_information_matches_numerical_hessian():
    a, b, h = 2.5, 4.0, 1e-4
    nll = lambda x, y: special.betaln(x, y)  # the data term is linear in (a, b): Hessian of log B
    hess = np.array([[(nll(a + h, b) - 2 * nll(a, b) + nll(a - h, b)) / h**2,
                      (nll(a + h, b + h) - nll(a + h, b - h) - nll(a - h, b + h) + nll(a - h, b - h)) / (4 * h * h)],
                     [0.0, (nll(a, b + h) - 2 * nll(a, b) + nll(a, b - h)) / h**2]])
    hess[1, 0] = hess[0, 1]
    inv = np.linalg.inv(hess)
    va, vb = est.beta_crb(a, b, 10)
    np.testing.assert_allclose([va, vb], [inv[0, 0] / 10, inv[1, 1] / 10], rtol=1e-3)


# --------------------------------------------------------------------------- parameter inversion


@pytest.mark.parametrize("family", ["beta", "gaussian"])
def test_parameter_error_decreases_with_k_and_tracks_cramer_rao(family):
    pool, oracle, dists = synthetic_pool(family, n_users=30, dim=6, per_user=60, spread=6.0, seed=1)
    (res,) = ParameterInversion(k_values=(5, 20, 50), random_state=0).fit(pool).score(pool, oracle, dists)
    assert isinstance(res, AttackResult) and res.metric == "parameter_error"
    curves = {c["k"]: c for c in res.details["curves"]}
    # error falls with k, with confidence (bootstrap intervals over users do not overlap)
    assert curves[50]["error_ci"][1] < curves[20]["error_ci"][0]
    assert curves[20]["error_ci"][1] < curves[5]["error_ci"][0]
    # the MLE is asymptotically efficient: at k >= 20 it is within a factor of the Cramér-Rao error
    for k in (20, 50):
        c = curves[k]
        assert c["error_ci"][0] < 1.4 * c["crb_error"] and c["error_ci"][1] > 0.8 * c["crb_error"], c
    # and the bound shrinks like 1/sqrt(k)
    assert curves[5]["crb_error"] / curves[50]["crb_error"] == pytest.approx(np.sqrt(10), rel=1e-6)
    # linked uploads beat unlinked ones (the baseline): the advantage is negative with confidence
    assert res.details["k"] == 50
    assert res.advantage_ci[1] < 0 and res.ceiling == pytest.approx(curves[50]["crb_error"])


def test_parameter_inversion_inverts_the_affine_transform():
    loc, scale = np.array([-1.0, 0.5, 2.0]), np.array([2.0, 0.1, 5.0])
    pool, oracle, dists = synthetic_pool("beta", 20, 3, 60, 5.0, seed=2, loc=loc, scale=scale)
    assert pool.embedding.max() > 1.0  # the raw uploads are outside the unit interval
    (res,) = ParameterInversion(k_values=(50,)).fit(pool).score(pool, oracle, dists)
    assert res.details["curves"][0]["ratio_to_crb"] < 1.5


def test_parameter_inversion_null_has_no_advantage():
    pool, oracle, dists = synthetic_pool("beta", 20, 4, 60, 6.0, seed=3, shared=True)
    (res,) = ParameterInversion(k_values=(20,)).fit(pool).score(pool, oracle, dists)
    assert res.advantage_ci[0] <= 0.0 <= res.advantage_ci[1]


def test_parameter_inversion_needs_truth_and_validates():
    pool, oracle, dists = synthetic_pool("gaussian", 3, 2, 10, 1.0)
    assert ParameterInversion().fit(pool).score(pool, oracle, None) == []
    with pytest.raises(InputError, match="k_values"):
        ParameterInversion(k_values=(1, 5)).fit(pool)
    with pytest.raises(InputError, match="family"):
        ParameterInversion(family="cauchy").fit(pool)
    with pytest.raises(InputError, match="does not match"):
        ParameterInversion(family="beta").fit(pool).score(pool, oracle, dists)
    other = UserDistributions("gaussian", ("someone",), {"mean": [[0.0, 0.0]], "std": [[1.0, 1.0]]})
    with pytest.raises(InputError, match="no distribution"):
        ParameterInversion().fit(pool).score(pool, oracle, other)


# --------------------------------------------------------------------------- mixture inversion


@pytest.mark.parametrize("family,spread", [("beta", 12.0), ("gaussian", 2.0)])
def test_em_recovers_well_separated_users(family, spread):
    pool, oracle, dists = synthetic_pool(family, n_users=8, dim=8, per_user=80, spread=spread, seed=4)
    attack = MixtureInversion(family=family, n_components=8, n_init=2, n_permutations=30, random_state=0).fit(pool)
    results = {r.metric: r for r in attack.score(pool, oracle, dists)}
    acc = results["attribution_accuracy"]
    assert acc.value >= 0.9 and acc.advantage_ci[0] > 0.5
    if acc.ceiling is not None:
        assert acc.value >= 0.9 * acc.ceiling
    err = results["parameter_error"]
    assert err.advantage_ci[1] < 0  # far better than components fitted to random groups
    rec = err.details["recovery"]
    assert rec["fraction_recovered"] >= 0.8
    assert "recovered distinct users" in attack.finding_
    if family == "beta":
        assert "does not protect a known number of well-separated users" in attack.finding_


@pytest.mark.parametrize("family", ["beta", "gaussian"])
def test_em_fails_honestly_when_users_share_one_distribution(family):
    pool, oracle, dists = synthetic_pool(family, n_users=6, dim=6, per_user=60, spread=5.0, seed=5, shared=True)
    attack = MixtureInversion(family=family, n_components=6, n_init=2, n_permutations=30).fit(pool)
    results = {r.metric: r for r in attack.score(pool, oracle, dists)}
    acc = results["attribution_accuracy"]
    assert acc.advantage_ci[0] <= 0.0 <= acc.advantage_ci[1]
    err = results["parameter_error"]
    assert err.details["recovery"]["n_recovered"] == 0
    assert err.advantage_ci[0] <= 0.0 <= err.advantage_ci[1]  # no better than a random component
    assert "failed to recover distinct users" in attack.finding_


def test_beta_mixture_em_improves_likelihood_and_bic_picks_the_truth():
    pool, oracle, dists = synthetic_pool("beta", n_users=3, dim=4, per_user=150, spread=15.0, seed=6)
    x = pool.embedding.astype(np.float64)
    fits = {k: BetaMixture(k, n_init=2, random_state=0).fit(x) for k in (1, 2, 3, 4)}
    assert fits[3].score(x) > fits[2].score(x) > fits[1].score(x)
    assert min(fits, key=lambda k: fits[k].bic(x)) == 3
    assert abs(fits[3].weights_.sum() - 1.0) < 1e-9


def test_mixture_inversion_selects_components_without_oracle():
    pool, oracle, dists = synthetic_pool("gaussian", n_users=4, dim=3, per_user=60, spread=4.0, seed=7)
    attack = MixtureInversion(n_init=1).fit(pool)
    assert attack.family_ == "gaussian" and attack.n_components_ == 4
    s = attack.summary()
    assert s["selected_by"] == "bic" and sum(s["component_sizes"]) == pool.n


def test_mixture_inversion_validates():
    pool, oracle, _ = synthetic_pool("gaussian", 2, 2, 10, 1.0)
    with pytest.raises(InputError):
        MixtureInversion(family="cauchy").fit(pool)
    with pytest.raises(InputError):
        MixtureInversion(n_components=10**6).fit(pool)
    with pytest.raises(InputError, match="before fit"):
        MixtureInversion().score(pool, oracle)
    with pytest.raises(InputError, match="mixture_cache must be a dict"):
        MixtureInversion(n_components=2, mixture_cache=[]).fit(pool)
    assert MixtureInversion(n_components=2, n_init=1, mixture_cache={}).fit(pool).labels_.shape == (pool.n,)


# --------------------------------------------------------------------------- attribute inference


def _trait_pool(seed=0, n_users=40, per_user=20):
    """Each user's trait (rating bias) shifts the first embedding coordinate."""
    g = np.random.default_rng(seed)
    bias = g.normal(0.0, 1.0, n_users)
    rows = np.repeat(np.arange(n_users), per_user)
    torch.manual_seed(seed)
    noise = torch.distributions.Normal(0.0, 0.5).sample((rows.size, 3)).numpy()
    emb = noise + np.stack([bias[rows], np.zeros(rows.size), np.zeros(rows.size)], axis=1)
    names = np.asarray([f"u{i}" for i in range(n_users)])
    pool, oracle = anonymize(emb, names[rows], rng=g)
    return pool, oracle, {n: float(b) for n, b in zip(names, bias)}


def _toy_model(texts, embeddings):
    """A cloud model whose 3-class output leans towards higher ratings with the first coordinate."""
    z = np.asarray(embeddings).reshape(len(texts), -1)[:, 0:1] * np.array([[-1.0, 0.0, 1.0]]) + np.asarray([len(t) % 2 for t in texts])[:, None] * 0.1
    return special.softmax(z, axis=1)


def test_attribute_inference_reads_the_trait_through_the_model():
    pool, oracle, traits = _trait_pool()
    calls = []
    model = lambda t, e: (calls.append(len(t)), _toy_model(t, e))[1]
    attack = AttributeInference(["good film", "bad film", "it was ok"], model, batch_size=60).fit(pool)
    assert max(calls) <= 60 and sum(calls) == 3 * pool.n
    (res,) = attack.score(pool, oracle, traits=traits)
    assert res.metric == "attribute_accuracy" and res.baseline == pytest.approx(0.5)
    assert res.advantage_ci[0] > 0.2
    assert res.details["user_level"]["value"] >= 0.85


def test_attribute_inference_null_model_has_no_advantage():
    pool, oracle, traits = _trait_pool(seed=1)
    rng = np.random.default_rng(0)
    noise_model = lambda t, e: special.softmax(rng.normal(size=(len(t), 3)), axis=1)
    (res,) = AttributeInference(["probe"], noise_model).fit(pool).score(pool, oracle, traits=traits)
    assert res.advantage_ci[0] <= 0.0 <= res.advantage_ci[1]


def test_attribute_inference_uses_labels_without_traits_and_validates():
    pool, oracle, traits = _trait_pool(seed=2, n_users=6, per_user=5)
    with pytest.raises(InputError, match="label"):
        AttributeInference(["x"], _toy_model).fit(pool).score(pool, oracle)
    with pytest.raises(InputError, match="no trait"):
        AttributeInference(["x"], _toy_model).fit(pool).score(pool, oracle, traits={"u0": 1.0})
    with pytest.raises(InputError, match="probabilities"):
        AttributeInference(["x"], lambda t, e: np.ones(3)).fit(pool)
    # torch outputs (with autograd history) and flat embeddings are accepted
    seen = []
    torch_model = lambda t, e: (seen.append(np.shape(e)), torch.tensor(_toy_model(t, e), requires_grad=True) * 1.0)[1]
    att = AttributeInference(["x"], torch_model, as_tokens=False).fit(pool)
    assert att.scores_.shape == (pool.n,) and seen[0][1:] == (pool.dim,)
    with pytest.raises(InputError, match="probe_texts"):
        AttributeInference([], _toy_model).fit(pool)
