"""Persona corpus: reproducibility, sizes, user-dependent labels, and the exact Bayes ceilings.

The ceilings are checked against Monte-Carlo accuracies of the same Bayes rule on fresh samples
(binomial confidence intervals from scipy), and against a learned bag-of-words classifier that
must not beat the text-only ceiling beyond its interval.
"""

import numpy as np
import pytest
from scipy.stats import binomtest, chi2_contingency, chisquare, norm, spearmanr
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from idfree_core.data import PersonaConfig, PersonaModel, generate_persona
from idfree_core.data.corpus import tokenize
from idfree_core.errors import InputError


def _ci(successes, n, level=0.999):
    return binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")


@pytest.fixture(scope="module")
def default_corpus():
    return generate_persona(PersonaConfig())


def test_reproducible_with_seed():
    a = generate_persona(n_users=8, docs_per_user=15, seed=3)
    b = generate_persona(n_users=8, docs_per_user=15, seed=3)
    c = generate_persona(n_users=8, docs_per_user=15, seed=4)
    assert a.train == b.train and a.test == b.test and a.user_traits == b.user_traits
    assert a.ceilings == b.ceilings
    assert a.train != c.train
    assert a.user_traits != c.user_traits


def test_generation_leaves_global_torch_rng_alone():
    import torch
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate_persona(n_users=4, docs_per_user=5)
    assert torch.equal(torch.rand(3), expected)


def test_sizes_and_texts(default_corpus):
    cfg = PersonaConfig()
    c = default_corpus
    assert len(c.users) == cfg.n_users == len(set(c.users))
    n_test = round(cfg.test_fraction * cfg.docs_per_user)
    for u in c.users:
        assert len(c.train[u]) == cfg.docs_per_user - n_test and len(c.test[u]) == n_test
    _, texts, labels = c.flat("train")
    lengths = np.array([len(t.split()) for t in texts])
    assert lengths.min() >= 8 and lengths.max() <= 20
    assert set(np.unique(labels)) == {0, 1} and c.task == "classify" and c.n_classes == 2
    assert c.user_traits.keys() == set(c.users)
    assert c.ceilings.keys() == {"text_only", "user_aware"}
    assert c.description.count("\n") == 0
    # The vocabulary comes from training text only and is small.
    train_tokens = {tok for t in texts for tok in tokenize(t)}
    assert set(c.tokenizer.itos[4:]) <= train_tokens
    assert c.tokenizer.itos[0] == "<pad>" and c.tokenizer.vocab_size <= cfg.max_vocab
    s = c.summary()
    assert s["train"]["n_docs"] == c.n_docs("train") and s["n_users"] == cfg.n_users


def test_custom_sizes_and_three_classes():
    c = generate_persona(n_users=7, docs_per_user=11, test_fraction=0.3, n_classes=3, seed=1)
    assert len(c.users) == 7 and c.n_classes == 3
    assert all(len(c.train[u]) == 8 and len(c.test[u]) == 3 for u in c.users)


def test_labels_depend_on_user():
    cfg = PersonaConfig(n_users=30, docs_per_user=200, seed=11)
    model = PersonaModel.draw(cfg)
    uid, _, labels = model.sample(cfg.docs_per_user, seed=5)
    table = np.array([np.bincount(labels[uid == i], minlength=2) for i in range(cfg.n_users)])
    assert chi2_contingency(table).pvalue < 1e-10
    rate = table[:, 1] / table.sum(axis=1)
    rho = spearmanr(rate, model.bias)
    assert rho.statistic > 0.8 and rho.pvalue < 1e-6


def test_style_words_identify_style_not_bias():
    cfg = PersonaConfig(n_users=40, docs_per_user=30, seed=2)
    model = PersonaModel.draw(cfg)
    uid, texts, _ = model.sample(cfg.docs_per_user, seed=9)
    _, ll = model.features(texts)
    assert np.mean(ll.argmax(axis=1) == model.style[uid]) > 0.8
    # Stratified assignment: the style groups' mean biases differ by far less than the bias spread.
    means = [model.bias[model.style == s].mean() for s in range(cfg.n_styles)]
    assert np.ptp(means) < 0.5 * cfg.bias_scale


@pytest.mark.parametrize("n_classes", [2, 3])
def test_reported_ceilings_match_monte_carlo_of_the_bayes_rule(n_classes):
    cfg = PersonaConfig(n_classes=n_classes, seed=7)
    corpus = generate_persona(cfg)
    model = corpus.details["generator"]
    us, texts, labels = corpus.flat("test")
    for key, post in (("text_only", model.posterior(texts)), ("user_aware", model.posterior(texts, us))):
        assert np.isclose(post.max(axis=1).mean(), corpus.ceilings[key])
        lo, hi = _ci((post.argmax(axis=1) == labels).sum(), len(labels))
        assert lo <= corpus.ceilings[key] <= hi, key
    # A large fresh sample from the same users: accuracy of the Bayes rule vs. the mean posterior max.
    uid, texts, labels = model.sample(300, seed=99)
    users = [model.users[i] for i in uid]
    for post in (model.posterior(texts), model.posterior(texts, users)):
        lo, hi = _ci((post.argmax(axis=1) == labels).sum(), len(labels))
        assert lo <= post.max(axis=1).mean() <= hi


@pytest.mark.parametrize("n_classes", [2, 3])
def test_population_ceilings_match_monte_carlo(n_classes):
    cfg = PersonaConfig(n_users=3000, docs_per_user=8, n_classes=n_classes, seed=13)
    model = PersonaModel.draw(cfg)
    pop = model.population_ceilings()
    uid, texts, labels = model.sample(cfg.docs_per_user, seed=1)
    lo, hi = _ci((model.posterior(texts, [model.users[i] for i in uid]).argmax(1) == labels).sum(), len(labels))
    assert lo <= pop["user_aware"] <= hi
    # Population text-only Bayes rule: bias marginalized, b + eps ~ Normal(0, sqrt(bias_scale^2 + sigma^2)).
    t, _ = model.features(texts)
    sd = np.hypot(cfg.bias_scale, cfg.sigma)
    edges = np.concatenate([[-np.inf], model.cuts, [np.inf]])
    rule = np.diff(norm.cdf((edges[None, :] - t[:, None]) / sd), axis=1).argmax(axis=1)
    lo, hi = _ci((rule == labels).sum(), len(labels))
    assert lo <= pop["text_only"] <= hi
    if n_classes == 3:  # cut-points at the population tertiles: balanced classes
        assert chisquare(np.bincount(labels, minlength=3)).pvalue > 1e-3


@pytest.mark.parametrize("seed", range(5))
def test_default_gap(seed):
    c = generate_persona(seed=seed)
    gap = c.ceilings["user_aware"] - c.ceilings["text_only"]
    assert 0.08 <= gap <= 0.18
    assert 0.66 <= c.ceilings["text_only"] <= 0.80
    pop = c.details["ceilings_population"]
    assert 0.08 <= pop["user_aware"] - pop["text_only"] <= 0.15


def test_difficulty_lowers_ceilings_and_gap():
    pops = [PersonaModel.draw(PersonaConfig(difficulty=d)).population_ceilings() for d in (0.5, 1.0, 2.0)]
    for a, b in zip(pops, pops[1:]):
        assert b["text_only"] < a["text_only"] and b["user_aware"] < a["user_aware"]
        assert b["user_aware"] - b["text_only"] < a["user_aware"] - a["text_only"]
    assert pops[-1]["text_only"] > 0.5


def test_bag_of_words_stays_below_the_text_only_ceiling():
    c = generate_persona(n_users=50, docs_per_user=400, seed=21)
    _, x, y = c.flat("train")
    users_t, xt, yt = c.flat("test")
    vec = CountVectorizer(token_pattern=r"\S+").fit(x)
    clf = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(vec.transform(x), y)
    correct = (clf.predict(vec.transform(xt)) == yt).sum()
    lo, hi = _ci(correct, len(yt))
    assert lo <= c.ceilings["text_only"]  # cannot beat the Bayes ceiling beyond its CI
    assert hi >= c.ceilings["text_only"] - 0.04  # and the ceiling is nearly reachable from text


@pytest.mark.parametrize("bad", [dict(n_users=1), dict(docs_per_user=1), dict(difficulty=0.0),
                                 dict(difficulty=float("nan")), dict(n_classes=5), dict(n_styles=99),
                                 dict(test_fraction=1.0), dict(style_strength=1.5)])
def test_invalid_config(bad):
    with pytest.raises(InputError) as e:
        PersonaConfig(**bad)
    assert next(iter(bad)) in str(e.value) and "\n" not in str(e.value)
