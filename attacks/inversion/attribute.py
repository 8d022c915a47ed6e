"""Attribute inference: read a user's private trait off their embeddings by probing the cloud model.

The adversary holds query access to the cloud model (any callable
``model_fn(texts, embeddings) -> (B, C) class probabilities``, numpy or torch; embeddings arrive as
``(B, n_tokens, token_dim)`` float32, or flat ``(B, n_tokens * token_dim)`` with
``as_tokens=False``; for the cloud service:
``lambda t, e: service.predict_proba(t, torch.as_tensor(e))``) and a fixed set of probe texts.  For every upload ``i`` it feeds each probe text with the upload's
embedding and summarises the answers as the mean expected class index

    s_i = (1 / P) sum_p sum_c c * P(c | probe_p, e_i),

a proxy for the user's rating bias (the persona generator's latent trait).  The attack predicts
"trait above the median" for uploads with ``s_i`` above the pool's median score (no labels are
used: by construction half of the users lie above the median).

Score (``attribute_accuracy``): the truth is each user's trait (given as ``traits``, else the mean
label of the user's uploads) above the median over users; accuracy over uploads with a Wilson CI
(conditional on the users: uploads are fresh samples), baseline = the chance agreement
``p q + (1 - p)(1 - q)`` of a prediction made at the attack's rate ``p`` independently of the truth
(rate ``q``): the median split predicts half the uploads high, so 0.5 (the majority-class rate is
not reachable by this rule and made the advantage negative under the null with an odd number of
users; found by the null battery).
``details["user_level"]`` has the accuracy of a per-user majority vote (an adversary who also
linked each user's uploads) with a Wilson CI over users.
"""

from __future__ import annotations

import numpy as np

from attacks.base import Attack, AttackResult, check_random_state, proportion_ci, register_attack
from idfree_core.errors import InputError

NAME = "attribute_inference"


class AttributeInference(Attack):
    """Infer a binary private trait (above / below the median) by probing ``model_fn`` with fixed texts.

    Fitted state: ``scores_`` (per upload probe score), ``predicted_`` (bool per upload), ``threshold_``.
    """

    name = NAME

    @classmethod
    def for_suite(cls, ctx, spec, features):
        """Needs query access to the cloud model: ``model_fn`` and ``probe_texts``."""
        if ctx.model_fn is None or ctx.probe_texts is None:
            ctx.skip("attribute: needs a model_fn and probe_texts (query access to the cloud model)")
            return []
        return [(spec(probe_texts=ctx.probe_texts, model_fn=ctx.model_fn, random_state=ctx.seed()),
                 {"score_kw": {"traits": ctx.traits}})]

    def suite_summary(self, ctx) -> None:
        ctx.summary["attribute_inference"] = {"n_high_predicted": int(self.predicted_.sum()),
                                              "threshold": self.threshold_}

    def __init__(self, probe_texts, model_fn, as_tokens: bool = True, batch_size: int = 256, progress: bool = False,
                 random_state=0):
        self.probe_texts = probe_texts
        self.model_fn = model_fn
        self.as_tokens = as_tokens
        self.batch_size = batch_size
        self.progress = progress
        self.random_state = random_state

    def fit(self, pool) -> "AttributeInference":
        texts = [str(t) for t in self.probe_texts]
        if not texts:
            raise InputError("probe_texts must contain at least one text")
        if not callable(self.model_fn):
            raise InputError("model_fn must be a callable model_fn(texts, embeddings) -> probabilities")
        from tqdm.auto import tqdm

        p = len(texts)
        per_batch = max(1, int(self.batch_size) // p)
        scores = np.empty(pool.n)
        starts = range(0, pool.n, per_batch)
        for s in tqdm(starts, desc="attribute inference", disable=not self.progress):
            emb = pool.embedding[s:s + per_batch]
            b = emb.shape[0]
            query = np.repeat(emb, p, axis=0)
            if self.as_tokens:
                query = query.reshape(b * p, pool.n_tokens, pool.dim // pool.n_tokens)
            probs = self.model_fn(texts * b, query)
            if hasattr(probs, "detach"):  # a torch tensor
                probs = probs.detach().cpu().numpy()
            probs = np.asarray(probs, dtype=np.float64)
            if probs.ndim != 2 or probs.shape[0] != b * p or not np.all(np.isfinite(probs)):
                raise InputError(f"model_fn must return finite ({b * p}, n_classes) probabilities, got shape {probs.shape}")
            expected = probs @ np.arange(probs.shape[1], dtype=np.float64)
            scores[s:s + b] = expected.reshape(b, p).mean(axis=1)
        self.scores_ = scores
        self.threshold_ = float(np.median(scores))
        self.predicted_ = scores > self.threshold_
        return self

    @staticmethod
    def _truth(pool, codes, names, traits) -> np.ndarray:
        """Per-user trait values aligned with ``names``."""
        if traits is not None:
            missing = [u for u in names if u not in traits]
            if missing:
                raise InputError(f"traits: user {missing[0]!r} has no trait value ({len(missing)} missing)")
            return np.asarray([float(traits[u]) for u in names])
        if pool.label is None:
            raise InputError("attribute inference needs user traits or a 'label' column to define the trait")
        sums = np.bincount(codes, weights=pool.label.astype(np.float64), minlength=len(names))
        return sums / np.maximum(np.bincount(codes, minlength=len(names)), 1)

    def score(self, pool, oracle, distributions=None, traits=None, confidence: float = 0.95) -> list[AttackResult]:
        """``attribute_accuracy`` for the trait "above the median over users"."""
        self._check_fitted(pool, "predicted_")
        codes, names = oracle.codes_for(pool)
        trait = self._truth(pool, codes, names, traits)
        user_high = trait > np.median(trait)
        truth = user_high[codes]
        correct = int((self.predicted_ == truth).sum())
        n = int(pool.n)
        value = correct / n
        ci = proportion_ci(correct, n, confidence)
        # chance: the agreement of a prediction made at this rate independently of the truth
        # (Cohen's expected agreement; 0.5 whenever half the uploads are predicted high)
        p_high, q_high = float(self.predicted_.mean()), float(truth.mean())
        baseline = p_high * q_high + (1.0 - p_high) * (1.0 - q_high)
        # per-user majority vote (ties broken by a seeded coin)
        rng = check_random_state(self.random_state)
        votes = np.bincount(codes, weights=self.predicted_.astype(np.float64), minlength=len(names))
        sizes = np.maximum(np.bincount(codes, minlength=len(names)), 1)
        frac = votes / sizes
        user_pred = np.where(frac == 0.5, rng.random(len(names)) < 0.5, frac > 0.5)
        user_correct = int((user_pred == user_high).sum())
        return [AttackResult(
            name=NAME, metric="attribute_accuracy", value=value, ci=ci, baseline=baseline,
            advantage=value - baseline, advantage_ci=(ci[0] - baseline, ci[1] - baseline), ceiling=None, n=n,
            knowledge="embeddings", features="embedding",
            details={"trait": "given traits" if traits is not None else "mean label per user",
                     "target": "user's trait above the median over users", "n_probe_texts": len(self.probe_texts),
                     "ci_method": "wilson over uploads (conditional on the users)",
                     "user_level": {"value": user_correct / len(names),
                                    "ci": list(proportion_ci(user_correct, len(names), confidence)),
                                    "baseline": float(max(user_high.mean(), 1.0 - user_high.mean())),
                                    "n": len(names)},
                     "assumption": "query access to the cloud model with arbitrary texts and uploaded embeddings"},
        )]


register_attack(NAME, AttributeInference, group="attribute", metrics=("attribute_accuracy",), needs_model=True,
                probe_texts=(), model_fn=None)  # the battery builds it by for_suite with a model to probe
