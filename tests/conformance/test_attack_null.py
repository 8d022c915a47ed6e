"""Conformance battery every attack must pass (issue 4): honest about chance, strong on static IDs.

* **Null**: when all users share one distribution (the common initialisation of every registered
  non-point-mass family, and of each ``affine`` family behind an affine map; text, when present,
  drawn independently of the user), nothing about the user is in the pool, so every reported
  ``advantage_ci`` must contain 0.  The pools are drawn by Hypothesis from a fixed seed
  (``derandomize=True``); the check is that the violation rate over all (pool, metric) intervals of
  an attack is at most 10% (nominal 95% intervals: a biased baseline, e.g. ``1/N`` for a matched
  accuracy, fails almost every interval).
* **Static**: one fixed vector per user plus tiny noise (the ID-equivalent baseline) must be found:
  linkage top-1 >= 0.95, ARI >= 0.9 and attribution/attribute accuracy >= 0.9 for every attack
  reporting those metrics, every such advantage (and a parameter error's) significant.

Attacks come from ``attacks.base.registered_attacks()``: EVERY entry runs both checks, found by
iterating the registry (a new attack is covered by registering it; opting out with
``null_battery=False``, or a registration the battery cannot build or that reports nothing, fails).
Attacks tagged ``needs_distributions`` or ``needs_model`` are built by their own ``for_suite`` from
a :class:`attacks.suite.SuiteContext` holding the pool's true distributions, a cloud model whose
answers depend on the embedding (:func:`probe_model`) and the users' traits; the others from their
registered defaults.  The API contract (``check_attack_api``: get_params/set_params/clone, fit
returns self, result names start with the registered name, metrics as tagged) runs over every
registered attack.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from attacks.base import METRICS, Attack, registered_attacks
from idfree_core.families import FAMILY_SPECS, get_family_spec
from idfree_core.uploads import UserDistributions, anonymize

REGISTRY = {e.name: e for e in registered_attacks()}
FACTORIES = REGISTRY  # every registered attack (test_no_registered_attack_opts_out)
VOCAB = np.array("the a movie film good bad plot actor scene great awful slow fast music story end".split())
PROBE_TEXTS = ("the movie was", "a story of")
AFFINE = "@affine"  # suffix of a null family behind the map -1 + 3 x
# the null pools: every registered non-point-mass family, plus each affine one behind an affine map
NULL_FAMILIES = tuple(n for n, s in FAMILY_SPECS.items() if not s.is_point_mass) + tuple(
    n + AFFINE for n, s in FAMILY_SPECS.items() if s.affine and not s.is_point_mass)


def _accepts(factory, name: str) -> bool:
    try:
        return name in inspect.signature(factory.cls.__init__).parameters
    except Exception:  # noqa: BLE001 - a factory that cannot build cannot take the option either
        return False


def _sample(dist: torch.distributions.Distribution, n: int, seed: int) -> np.ndarray:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return dist.sample((n,)).numpy().astype(np.float32)


def probe_model(texts, embeddings):
    """A cloud model for attribute inference: P(class 1) rises with the embedding's mean (texts ignored)."""
    e = np.asarray(embeddings, dtype=np.float64).reshape(len(texts), -1).mean(axis=1)
    p = 1.0 / (1.0 + np.exp(-4.0 * e))
    return np.stack([1.0 - p, p], axis=1)


def null_pool(family: str, n_users: int, per_user: int, dim: int, sessions: bool, text: bool, seed: int):
    """All users share one distribution (``family``'s common initialisation); user labels are assigned
    independently of everything.  Returns ``(pool, oracle, distributions, traits)``."""
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    name, affine = (family[: -len(AFFINE)], True) if family.endswith(AFFINE) else (family, False)
    spec = get_family_spec(name)
    init = {k: np.full((n_users, dim), v) for k, v in spec.initial_params().items()}
    emb = _sample(spec.torch_distribution({k: torch.as_tensor(v[0]) for k, v in init.items()}), n, seed)
    loc, scale = (np.full(dim, -1.0), np.full(dim, 3.0)) if affine else (None, None)
    if affine:
        emb = (-1.0 + 3.0 * emb).astype(np.float32)
    users = np.repeat(np.arange(n_users), per_user)
    session = (rng.random(n) < 0.3).astype(np.int64) if sessions else None
    if session is not None:
        session[:2] = 0  # at least two references
    texts = [" ".join(rng.choice(VOCAB, 6)) for _ in range(n)] if text else None
    pool, oracle = anonymize(emb, users, text=texts, session=session, rng=rng)
    names = [str(u) for u in range(n_users)]
    dists = UserDistributions(family=name, users=names, params=init, loc=loc, scale=scale)
    traits = dict(zip(names, rng.normal(size=n_users)))
    return pool, oracle, dists, traits


def static_pool(n_users: int, per_user: int, dim: int, seed: int):
    """One fixed vector per user plus N(0, 1e-3) noise; distributions: that Gaussian; traits: the mean."""
    rng = np.random.default_rng(seed)
    value = rng.normal(0.0, 1.0, size=(n_users, dim))
    emb = np.repeat(value, per_user, axis=0) + rng.normal(0.0, 1e-3, size=(n_users * per_user, dim))
    users = np.repeat(np.arange(n_users), per_user)
    session = np.tile((np.arange(per_user) >= per_user * 2 // 3).astype(np.int64), n_users)
    pool, oracle = anonymize(emb.astype(np.float32), users, session=session, rng=rng)
    names = [str(u) for u in range(n_users)]
    dists = UserDistributions(family=real_line_family(), users=names,
                              params={"mean": value, "std": np.full_like(value, 1e-3)})
    return pool, oracle, dists, dict(zip(names, value.mean(axis=1)))


def real_line_family() -> str:
    from attacks.inversion.estimators import real_line_family as pick

    return pick()


def battery_attacks(entry, pool, oracle, dists, traits, features: str, seed: int) -> list[tuple]:
    """``(attack, score kwargs)`` the battery runs for one registration (module doc); fails loudly
    when the registration builds nothing (a skipped attack is a failed attack)."""
    if not (entry.needs_distributions or entry.needs_model):
        kw = {"random_state": seed} | ({"features": features} if _accepts(entry, "features") else {})
        return [(entry(**kw), {})]
    from attacks.suite import SuiteContext

    ctx = SuiteContext(pool=pool, oracle=oracle, distributions=dists if entry.needs_distributions else None,
                       features=features, rng=np.random.default_rng(seed), n_true=None, summary={"skipped": []},
                       model_fn=probe_model if entry.needs_model else None,
                       probe_texts=PROBE_TEXTS if entry.needs_model else None, traits=traits)
    built = entry.cls.for_suite(ctx, entry, features)
    assert built, f"{entry.name}: the battery could not build it ({ctx.summary['skipped']})"
    return [(attack, {"distributions": ctx.distributions, **opts.get("score_kw", {})}) for attack, opts in built]


def run_battery_attack(entry, pool, oracle, dists, traits, features: str, seed: int) -> list:
    out = []
    for attack, kw in battery_attacks(entry, pool, oracle, dists, traits, features, seed):
        distributions = kw.pop("distributions", None)
        out.extend(attack.fit(pool).score(pool, oracle, distributions, **kw))
    return out


null_configs = st.fixed_dictionaries({
    "family": st.sampled_from(list(NULL_FAMILIES)),
    "n_users": st.integers(2, 6),
    "per_user": st.integers(8, 24),
    "dim": st.integers(1, 6),
    "sessions": st.booleans(),
    "text": st.booleans(),
    "seed": st.integers(0, 2**16),
})


def null_intervals(factory, cfg: dict, use_text_features: bool) -> list[tuple]:
    """``(features, metric, value, baseline, advantage_ci)`` of every result on one null pool."""
    pool, oracle, dists, traits = null_pool(**cfg)
    takes_features = hasattr(factory, "cls") and _accepts(factory, "features")
    feature_sets = ["embedding"] + (["text", "both"] if cfg["text"] and takes_features and use_text_features else [])
    out = []
    for features in feature_sets:
        if hasattr(factory, "cls"):
            results = run_battery_attack(factory, pool, oracle, dists, traits, features, cfg["seed"])
        else:  # a bare class (the dishonest scorer below)
            results = factory(random_state=cfg["seed"]).fit(pool).score(pool, oracle)
        for r in results:
            assert r.advantage_ci[0] <= r.advantage <= r.advantage_ci[1], f"{r.metric}: advantage outside its CI"
            assert np.isclose(r.advantage, r.value - r.baseline)
            out.append((features, r.metric, r.value, r.baseline, r.advantage_ci))
    return out


def violation_rate(factory, n_examples: int = 8) -> tuple[int, list]:
    """Run ``factory`` on ``n_examples`` Hypothesis-drawn null pools (fixed seed); all intervals."""
    seen: list[tuple] = []

    @settings(max_examples=n_examples, deadline=None, derandomize=True, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(cfg=null_configs)
    def run(cfg):
        seen.extend((cfg, *row) for row in null_intervals(factory, cfg, use_text_features=len(seen) < 40))

    run()
    bad = [row for row in seen if not row[-1][0] <= 0.0 <= row[-1][1]]
    return len(seen), bad


MIN_INTERVALS = 24  # an attack reporting one interval per pool gets more pools (10% of 8 would allow none)


@pytest.mark.parametrize("attack_name", sorted(FACTORIES))
def test_null_advantage_ci_contains_zero(attack_name):
    entry = FACTORIES[attack_name]
    total, bad = violation_rate(entry, n_examples=max(8, -(-MIN_INTERVALS // max(1, len(entry.metrics)))))
    assert total >= 8, f"{attack_name} reported too few results ({total})"
    assert len(bad) <= 0.10 * total, f"{attack_name}: {len(bad)}/{total} advantage CIs exclude 0: {bad}"


class _ChanceIsOneOverN:
    """A dishonest scorer (baseline 1/N for a matched accuracy of 3 clusters): the battery must reject it."""

    def __init__(self, random_state=0):
        self.random_state = random_state

    def fit(self, pool):
        from attacks.clustering import ClusteringAttack

        self.inner_ = ClusteringAttack(method="kmeans", n_users=3, random_state=self.random_state).fit(pool)
        return self

    def score(self, pool, oracle, distributions=None):
        import dataclasses

        out = []
        for r in self.inner_.score(pool, oracle):
            if r.metric == "attribution_accuracy":
                b = 1.0 / len(oracle.users)
                r = dataclasses.replace(r, baseline=b, advantage=r.value - b,
                                        advantage_ci=(r.ci[0] - b, r.ci[1] - b))
                out.append(r)
        return out


def test_battery_rejects_a_dishonest_baseline():
    total, bad = violation_rate(_ChanceIsOneOverN, n_examples=6)
    assert len(bad) > 0.10 * total


STATIC_THRESHOLDS = {"linkage_top1": 0.95, "ari": 0.9, "attribution_accuracy": 0.9, "attribute_accuracy": 0.9,
                     "parameter_error": None}  # None: only the advantage must be significant


@pytest.mark.parametrize("attack_name", sorted(FACTORIES))
def test_static_embeddings_are_found(attack_name):
    pool, oracle, dists, traits = static_pool(n_users=6, per_user=24, dim=8, seed=3)
    results = {r.metric: r for r in run_battery_attack(FACTORIES[attack_name], pool, oracle, dists, traits,
                                                        "embedding", 0)}
    checked = [m for m in STATIC_THRESHOLDS if m in results]
    assert checked, f"{attack_name} reports none of {sorted(STATIC_THRESHOLDS)}"
    for metric in checked:
        r, low = results[metric], STATIC_THRESHOLDS[metric]
        if low is not None:
            assert r.value >= low, (metric, r.value)
        significant = r.advantage_ci[0] > 0 if METRICS[metric] else r.advantage_ci[1] < 0
        assert significant, (metric, r.advantage_ci)


def test_no_registered_attack_opts_out():
    """Every registration is in both batteries: none may set ``null_battery=False``."""
    assert {"clustering[auto]", "clustering[kmeans]", "linkage[nearest_neighbour]", "linkage[likelihood_ratio]",
            "mixture_inversion", "parameter_inversion", "attribute_inference"} <= set(REGISTRY)
    assert set(FACTORIES) == {e.name for e in registered_attacks()}
    assert [n for n, e in REGISTRY.items() if not e.null_battery] == []


def test_every_registered_family_has_a_null_pool():
    fams = {n for n, s in FAMILY_SPECS.items() if not s.is_point_mass}
    assert fams <= set(NULL_FAMILIES) and "kumaraswamy" in fams


@pytest.mark.parametrize("attack_name", sorted(REGISTRY))
def test_check_attack_api(attack_name):
    """scikit-learn contract: params round-trip, clone is unfitted and equal in params, fit returns self."""
    from sklearn.base import clone

    entry = REGISTRY[attack_name]
    attack = entry(random_state=0)
    assert isinstance(attack, Attack)
    params = attack.get_params()
    assert set(params) == set(inspect.signature(type(attack).__init__).parameters) - {"self"}
    twin = clone(attack)
    assert twin is not attack and twin.get_params().keys() == params.keys()
    assert attack.set_params(random_state=5) is attack and attack.get_params()["random_state"] == 5
    with pytest.raises(ValueError):
        attack.set_params(not_a_parameter=1)
    pool, oracle, dists, traits = static_pool(n_users=3, per_user=12, dim=4, seed=1)
    results = []
    for fitted, kw in battery_attacks(entry, pool, oracle, dists, traits, "embedding", 0):
        assert fitted.fit(pool) is fitted
        assert not any(k.endswith("_") and not k.startswith("_") for k in vars(clone(fitted)))  # clone is unfitted
        distributions = kw.pop("distributions", None)
        results += fitted.score(pool, oracle, distributions, **kw)
    assert results and all(r.name.startswith(attack_name) for r in results), [r.name for r in results]
    assert {r.metric for r in results} <= set(entry.metrics)
