"""Built-in persona corpus: users with latent traits, template reviews, and exact Bayes ceilings.

Generative model (all draws through ``torch.distributions`` under a forked, seeded torch RNG)
----------------------------------------------------------------------------------------------
Traits of user ``u``: rating bias ``b_u ~ Normal(0, bias_scale)`` and a writing style
``style_u in {0..n_styles-1}``, assigned *stratified by bias rank* (users sorted by bias, each
consecutive block of ``n_styles`` users gets a random permutation of the styles) so that the style
groups have nearly equal bias distributions.  One document of user ``u``:

* ``k ~ Uniform{1..max_phrases}`` sentiment phrases "the <aspect> <verb> <adjective>", each
  adjective drawn uniformly from six strength levels ``v in {-2, -1, -0.5, 0.5, 1, 2}`` (three
  synonyms per level); the text's sentiment is ``t = sum_j v_j``;
* three style slots (opener, noun, filler): with probability ``style_strength`` a word of the
  user's own style list, otherwise a word drawn uniformly from the union of all styles' lists;
* a neutral clause and connectors drawn uniformly (carry no information).

Latent score ``s = t + b_u + eps``, ``eps ~ Normal(0, sigma)``, ``sigma = noise_scale *
difficulty``; label ``y = #{j : s > c_j}`` with cut-points ``c = (0,)`` for two classes and the
population tertiles of ``s`` for three classes.  ``difficulty`` scales the label noise: higher
difficulty lowers both ceilings and narrows their gap; ``bias_scale`` sets the gap.

Bayes ceilings (expected accuracy of the Bayes-optimal classifier, computed exactly, not learned)
-------------------------------------------------------------------------------------------------
With ``F_k(m, sd) = Phi((c_{k+1} - m)/sd) - Phi((c_k - m)/sd)`` the class probabilities:

* user-aware:  ``P(y=k | text, u) = F_k(t + b_u, sigma)``; ceiling ``E[max_k P(y=k | text, u)]``.
* text-only:   the classifier sees the whole text but not the user.  It may use *everything in
  the text*, including style words that hint at the author: ``P(y=k | text) = sum_u w_u(text)
  F_k(t + b_u, sigma)`` with ``w_u(text) ∝ n_u * prod_slots P(slot word | style_u)``, the exact
  posterior over the realized users (``t`` carries no information on the user).
* population values: ``user_aware = E_{b~N(0,bias_scale)} E_t[max_k F_k(t + b, sigma)]``
  (Gauss-Hermite quadrature, exact enumeration of ``t``) and ``text_only = E_t[max_k F_k(t,
  sqrt(bias_scale^2 + sigma^2))]`` (for infinitely many users the style is independent of bias).

``Corpus.ceilings`` holds the realized values on the TEST split (mean over test documents of the
exact posterior maximum, which is the expected accuracy of the Bayes rule there);
``Corpus.details["ceilings_population"]`` and ``["ceilings_train"]`` hold the others.
``PersonaModel.posterior(texts, users=None)`` recomputes the posterior by parsing texts.

Default sizes (50 users x 100 texts of 11-17 tokens) keep the full ``simulate`` pipeline well under
5 minutes on 2 CPU cores; at the default difficulty the population ceilings are about 0.73
(text-only) and 0.85 (user-aware).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import roots_hermitenorm
from scipy.stats import norm
from torch.distributions import Bernoulli, Categorical, Normal

from idfree_core.data.corpus import Corpus, Tokenizer, tokenize
from idfree_core.errors import InputError

STRENGTHS = (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)
ADJECTIVES = (("awful", "terrible", "horrible"), ("bad", "poor", "flimsy"), ("mediocre", "dull", "lacking"),
              ("decent", "okay", "fine"), ("good", "nice", "solid"), ("excellent", "amazing", "superb"))
STYLE_SLOTS = {
    "opener": (("honestly", "frankly"), ("so", "well"), ("ok", "alright"), ("hmm", "look"),
               ("yo", "hey"), ("basically", "essentially")),
    "noun": (("product", "item"), ("thing", "stuff"), ("purchase", "buy"), ("gadget", "unit"),
             ("device", "kit"), ("model", "piece")),
    "filler": (("overall", "truly"), ("lol", "tbh"), ("imo", "fwiw"), ("period", "anyway"),
               ("srsly", "ngl"), ("cheers", "thanks")),
}
ASPECTS = ("battery", "screen", "price", "design", "delivery", "quality", "size", "sound")
VERBS = ("is", "was", "seems", "felt")
CONNECTORS = ("and", "but", "while", "yet")
NEUTRAL = ("i got it last month", "it arrived on time", "we use it every day", "my sister recommended it",
           "i bought it on sale", "it came in a box")
MAX_STYLES = len(STYLE_SLOTS["opener"])
_STRENGTH_OF = {w: STRENGTHS[i] for i, ws in enumerate(ADJECTIVES) for w in ws}


@dataclass(frozen=True)
class PersonaConfig:
    """Sizes, seed and difficulty of the built-in persona corpus (see the module docstring)."""

    n_users: int = 50
    docs_per_user: int = 100
    test_fraction: float = 0.2
    n_classes: int = 2
    difficulty: float = 1.0
    bias_scale: float = 1.6
    noise_scale: float = 1.2
    n_styles: int = 4
    style_strength: float = 0.8
    max_phrases: int = 2
    max_vocab: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [("n_users", self.n_users >= 2), ("docs_per_user", self.docs_per_user >= 2),
                  ("test_fraction", 0 < self.test_fraction < 1), ("n_classes", self.n_classes in (2, 3)),
                  ("difficulty", np.isfinite(self.difficulty) and self.difficulty > 0),
                  ("bias_scale", np.isfinite(self.bias_scale) and self.bias_scale >= 0),
                  ("noise_scale", np.isfinite(self.noise_scale) and self.noise_scale > 0),
                  ("n_styles", 1 <= self.n_styles <= MAX_STYLES),
                  ("style_strength", 0 <= self.style_strength <= 1),
                  ("max_phrases", 1 <= self.max_phrases <= 4), ("max_vocab", self.max_vocab >= 8)]
        for name, ok in checks:
            if not ok:
                raise InputError(f"PersonaConfig.{name}: invalid value {getattr(self, name)!r}")

    @property
    def sigma(self) -> float:
        return float(self.noise_scale * self.difficulty)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sentiment_law(max_phrases: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact distribution of ``t``: support values and probabilities."""
    law: dict[float, float] = {}
    for k in range(1, max_phrases + 1):
        for combo in itertools.product(STRENGTHS, repeat=k):
            t = round(sum(combo), 6)
            law[t] = law.get(t, 0.0) + (1.0 / max_phrases) * (1.0 / len(STRENGTHS)) ** k
    vals = np.array(sorted(law))
    return vals, np.array([law[v] for v in vals])


def _class_probs(mean: np.ndarray, sd: float, cuts: np.ndarray) -> np.ndarray:
    """``F_k(mean, sd)`` for every class ``k`` along a new last axis."""
    edges = np.concatenate([[-np.inf], cuts, [np.inf]])
    cdf = norm.cdf((edges - np.asarray(mean)[..., None]) / sd)
    return np.diff(cdf, axis=-1)


@dataclass(frozen=True, eq=False)
class PersonaModel:
    """Realized persona population: traits, cut-points and the exact posterior of the labels."""

    config: PersonaConfig
    users: tuple[str, ...]
    bias: np.ndarray
    style: np.ndarray
    cuts: np.ndarray

    @classmethod
    def draw(cls, config: PersonaConfig) -> "PersonaModel":
        """Draw the users' traits with the config's seed."""
        n = config.n_users
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            bias = Normal(0.0, 1.0).sample((n,)).double().numpy() * config.bias_scale
            order = np.argsort(bias, kind="stable")
            style = np.empty(n, dtype=np.int64)
            for start in range(0, n, config.n_styles):
                block = order[start:start + config.n_styles]
                style[block] = torch.randperm(config.n_styles).numpy()[: len(block)]
        width = len(str(n - 1))
        users = tuple(f"user_{i:0{width}d}" for i in range(n))
        return cls(config, users, bias, style, _cut_points(config))

    def traits(self) -> dict[str, dict[str, Any]]:
        return {u: {"rating_bias": float(self.bias[i]), "style": int(self.style[i])}
                for i, u in enumerate(self.users)}

    def sample(self, docs_per_user: int, seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
        """``docs_per_user`` documents per user: ``(user index, texts, labels)`` in user order."""
        cfg = self.config
        n = len(self.users) * docs_per_user
        uid = np.repeat(np.arange(len(self.users)), docs_per_user)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            k = Categorical(torch.ones(cfg.max_phrases)).sample((n,)).numpy() + 1
            level = Categorical(torch.ones(len(STRENGTHS))).sample((n, cfg.max_phrases)).numpy()
            syn = Categorical(torch.ones(3)).sample((n, cfg.max_phrases)).numpy()
            aspect = Categorical(torch.ones(len(ASPECTS))).sample((n, cfg.max_phrases)).numpy()
            verb = Categorical(torch.ones(len(VERBS))).sample((n, cfg.max_phrases)).numpy()
            conn = Categorical(torch.ones(len(CONNECTORS))).sample((n, cfg.max_phrases)).numpy()
            neutral = Categorical(torch.ones(len(NEUTRAL))).sample((n,)).numpy()
            slot_words = {}
            for slot, lists in STYLE_SLOTS.items():
                own = Bernoulli(torch.tensor(cfg.style_strength)).sample((n,)).numpy().astype(bool)
                own_pick = Categorical(torch.ones(len(lists[0]))).sample((n,)).numpy()
                union = [w for ws in lists[: cfg.n_styles] for w in ws]
                any_pick = Categorical(torch.ones(len(union))).sample((n,)).numpy()
                slot_words[slot] = [lists[self.style[uid[i]]][own_pick[i]] if own[i] else union[any_pick[i]]
                                    for i in range(n)]
            eps = Normal(0.0, 1.0).sample((n,)).double().numpy() * cfg.sigma
        mask = np.arange(cfg.max_phrases)[None, :] < k[:, None]
        t = (np.asarray(STRENGTHS)[level] * mask).sum(axis=1)
        labels = (t + self.bias[uid] + eps > self.cuts[:, None]).sum(axis=0).astype(np.int64)
        texts = []
        for i in range(n):
            words = [slot_words["opener"][i], "the", slot_words["noun"][i], VERBS[verb[i, 0]],
                     ADJECTIVES[level[i, 0]][syn[i, 0]]]
            for j in range(1, k[i]):
                words += [CONNECTORS[conn[i, j]], "the", ASPECTS[aspect[i, j]], VERBS[verb[i, j]],
                          ADJECTIVES[level[i, j]][syn[i, j]]]
            words += [".", NEUTRAL[neutral[i]], slot_words["filler"][i]]
            texts.append(" ".join(words))
        return uid, texts, labels

    def features(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Parse texts: sentiment ``t`` and log-likelihood of the style words under each style."""
        cfg = self.config
        loglik_of: dict[str, np.ndarray] = {}
        for lists in STYLE_SLOTS.values():
            used = lists[: cfg.n_styles]
            n_union = sum(len(ws) for ws in used)
            for ws in used:
                for w in ws:
                    own = np.array([cfg.style_strength / len(s) if w in s else 0.0 for s in used])
                    loglik_of[w] = np.log(own + (1.0 - cfg.style_strength) / n_union)
        t = np.zeros(len(texts))
        ll = np.zeros((len(texts), cfg.n_styles))
        for i, text in enumerate(texts):
            for tok in tokenize(text):
                if tok in _STRENGTH_OF:
                    t[i] += _STRENGTH_OF[tok]
                elif tok in loglik_of:
                    ll[i] += loglik_of[tok]
        return t, ll

    def posterior(self, texts: Sequence[str], users: Sequence[str] | None = None) -> np.ndarray:
        """Exact ``P(y | text, user)`` (users given) or ``P(y | text)`` (users None), ``(n, n_classes)``."""
        t, ll = self.features(texts)
        sigma = self.config.sigma
        if users is not None:
            index = {u: i for i, u in enumerate(self.users)}
            b = self.bias[[index[u] for u in users]]
            return _class_probs(t + b, sigma, self.cuts)
        out = np.empty((len(t), len(self.cuts) + 1))
        for lo in range(0, len(t), 2048):  # blocks bound the (docs, users, classes) array
            logw = ll[lo:lo + 2048, self.style]  # equal document counts: uniform prior over users
            w = np.exp(logw - logw.max(axis=1, keepdims=True))
            w /= w.sum(axis=1, keepdims=True)
            per_user = _class_probs(t[lo:lo + 2048, None] + self.bias[None, :], sigma, self.cuts)
            out[lo:lo + 2048] = np.einsum("nu,nuk->nk", w, per_user)
        return out

    def ceilings(self, texts: Sequence[str], users: Sequence[str]) -> dict[str, float]:
        """Mean exact posterior maximum over the given documents (expected Bayes-rule accuracy)."""
        return {"text_only": float(self.posterior(texts).max(axis=1).mean()),
                "user_aware": float(self.posterior(texts, users).max(axis=1).mean())}

    def population_ceilings(self, n_nodes: int = 201) -> dict[str, float]:
        """Population ceilings: exact over ``t``, Gauss-Hermite over ``b ~ Normal(0, bias_scale)``."""
        cfg = self.config
        tv, tp = _sentiment_law(cfg.max_phrases)
        text_only = float(tp @ _class_probs(tv, float(np.hypot(cfg.bias_scale, cfg.sigma)), self.cuts).max(-1))
        x, wq = roots_hermitenorm(n_nodes)
        wq = wq / wq.sum()
        best = _class_probs(tv[:, None] + cfg.bias_scale * x[None, :], cfg.sigma, self.cuts).max(-1)
        return {"text_only": text_only, "user_aware": float(tp @ best @ wq)}


def _cut_points(cfg: PersonaConfig) -> np.ndarray:
    """Class cut-points on ``s``: 0 for two classes, population tertiles of ``s`` for three."""
    if cfg.n_classes == 2:
        return np.array([0.0])
    tv, tp = _sentiment_law(cfg.max_phrases)
    sd = float(np.hypot(cfg.bias_scale, cfg.sigma))
    cdf = lambda c: float(tp @ norm.cdf((c - tv) / sd))  # noqa: E731
    hi = 10.0 * (sd + np.abs(tv).max())
    return np.array([brentq(lambda c, q=q: cdf(c) - q, -hi, hi) for q in (1 / 3, 2 / 3)])


def generate_persona(config: PersonaConfig | None = None, **overrides: Any) -> Corpus:
    """Generate the persona corpus (``PersonaConfig()`` defaults; keyword overrides allowed).

    The split is the last ``test_fraction`` of each user's documents in generation order (the
    documents are i.i.d. given the user, so this equals a chronological split).
    """
    cfg = PersonaConfig(**{**(config.to_dict() if config is not None else {}), **overrides})
    model = PersonaModel.draw(cfg)
    uid, texts, labels = model.sample(cfg.docs_per_user, seed=cfg.seed + 1)
    n_test = min(cfg.docs_per_user - 1, max(1, int(np.floor(cfg.test_fraction * cfg.docs_per_user + 0.5))))
    is_test = np.tile(np.arange(cfg.docs_per_user) >= cfg.docs_per_user - n_test, cfg.n_users)
    train, test = {}, {}
    for i, u in enumerate(model.users):
        rows = np.flatnonzero(uid == i)
        train[u] = tuple((texts[r], int(labels[r])) for r in rows if not is_test[r])
        test[u] = tuple((texts[r], int(labels[r])) for r in rows if is_test[r])
    users_arr = [model.users[i] for i in uid]
    te = np.flatnonzero(is_test)
    tr = np.flatnonzero(~is_test)
    ceilings = model.ceilings([texts[i] for i in te], [users_arr[i] for i in te])
    details = {"config": cfg.to_dict(), "cut_points": model.cuts.tolist(),
               "ceilings_population": model.population_ceilings(),
               "ceilings_train": model.ceilings([texts[i] for i in tr], [users_arr[i] for i in tr]),
               "ceiling_definition": ("Bayes-optimal expected accuracy; text_only sees the whole text "
                                      "(incl. style words, posterior over the realized users) but not the "
                                      "user; user_aware also knows the user's rating bias"),
               "generator": model}
    tokenizer = Tokenizer.build((t for u in model.users for t, _ in train[u]), max_vocab=cfg.max_vocab)
    desc = (f"persona corpus: {cfg.n_users} users x {cfg.docs_per_user} reviews, {cfg.n_classes} classes, "
            f"difficulty {cfg.difficulty:g}, seed {cfg.seed}; Bayes ceilings text-only "
            f"{ceilings['text_only']:.3f}, user-aware {ceilings['user_aware']:.3f} (test split)")
    return Corpus(users=model.users, train=train, test=test, task="classify", n_classes=cfg.n_classes,
                  tokenizer=tokenizer, description=desc, name="persona", ceilings=ceilings,
                  user_traits=model.traits(), details=details)
