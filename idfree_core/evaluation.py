"""Scoring for ``simulate``: per-item predictions, accuracy intervals, paired gaps, latency.

* accuracy ``k / n`` with the Wilson score interval (``scipy.stats.binomtest(k, n).proportion_ci``,
  Wilson 1927);
* accuracy gap of two methods on the *same* test items: mean of the per-item differences
  ``d_i = c_i^A - c_i^B`` with a paired percentile bootstrap interval (Efron and Tibshirani 1993;
  ``scipy.stats.bootstrap`` over the items);
* per item: predictive entropy ``H[p(y | x, e)]`` at the query's own sample, and the *sample
  entropy* ``H[hat P(argmax | x)]`` of the predicted class over ``M`` fresh embedding samples (how
  much the sampled embedding changes the prediction; the reference implementation's analysis);
* added inference latency: median wall time of sampling ``e`` plus the forward pass with the extra
  token, against the same forward pass without it (batch of one query, no grad).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from idfree_core import cloud


@dataclass(frozen=True, eq=False)
class Predictions:
    """Per test item (a document, or a scored token for next-token tasks) of one method."""

    user: np.ndarray  # user name per item
    correct: np.ndarray  # bool
    entropy: np.ndarray  # predictive entropy (nats) at the query's sample
    sample_entropy: np.ndarray | None = None  # entropy of the argmax over fresh samples (nats)

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    def per_user(self) -> dict[str, float]:
        """Accuracy of each user's test items."""
        names, codes = np.unique(self.user.astype(str), return_inverse=True)
        hits = np.bincount(codes, weights=self.correct.astype(float))
        return {u: float(h / c) for u, h, c in zip(names, hits, np.bincount(codes))}

    def to_dict(self) -> dict:
        out = {"user": self.user.tolist(), "correct": self.correct.tolist(), "entropy": self.entropy.tolist()}
        if self.sample_entropy is not None:
            out["sample_entropy"] = self.sample_entropy.tolist()
        return out


#: Most float32 logits one evaluation batch may hold (64 Mi values = 256 MiB).
LOGIT_BUDGET = 64 * 2 ** 20
MAX_EVAL_ROWS = 512


def output_width(model) -> int:
    """Width of one position's logits: the classes (``classify``) or the vocabulary (``next_token``)."""
    if model.task == "classify":
        return int(model.n_classes)
    head = model.hf.get_output_embeddings() if hasattr(model, "hf") else None
    if head is not None:
        return int(head.weight.shape[0])
    return int(getattr(model, "vocab_size", 0) or model.hf.config.vocab_size)


def eval_rows(model, seq_len: int, budget: int | None = None, cap: int = MAX_EVAL_ROWS) -> int:
    """Rows per evaluation batch so that ``rows x positions x width <= budget`` logits.

    A 512-row batch of SmolLM2 next-token logits (64 positions x 49,152 tokens) would hold 6.4 GB;
    one position per row for ``classify``.
    """
    budget = LOGIT_BUDGET if budget is None else budget
    positions = 1 if model.task == "classify" else max(int(seq_len), 1) + 8  # + user prefix tokens
    return int(max(1, min(cap, budget // (positions * max(output_width(model), 1)))))


def _batches(n: int, size: int = MAX_EVAL_ROWS):
    for s in range(0, n, size):
        yield slice(s, s + size)


@torch.no_grad()
def evaluate(model, test, embeddings, users, resample=None, n_samples: int = 0) -> Predictions:
    """Score ``model`` on ``test`` (an ``Encoded``) with one embedding row per document (or None)."""
    model.eval()
    correct, entropy, counts, argmax = [], [], [], []
    rows = eval_rows(model, test.ids.shape[1])
    for sl in _batches(len(test.codes), rows):
        emb = None if embeddings is None else embeddings[sl]
        labels = None if test.labels is None else test.labels[sl]
        c, e = model.correct(test.ids[sl], test.mask[sl], labels, emb)
        correct.append(c.numpy())
        entropy.append(e.numpy())
        if model.task == "classify":
            counts.append(np.ones(c.shape[0], dtype=np.int64))
        else:
            tgt = model.token_targets(test.ids[sl], test.mask[sl], emb)
            counts.append((tgt != -100).sum(1).numpy())
    counts = np.concatenate(counts)
    names = np.asarray(users, dtype=object)[np.repeat(test.codes, counts)]
    sample_entropy = None
    if resample is not None and n_samples > 1 and model.task == "classify":
        votes = np.zeros((len(test.codes), model.n_classes))
        for _ in range(n_samples):
            emb = resample()
            for sl in _batches(len(test.codes), rows):
                pred = model(test.ids[sl], test.mask[sl], emb[sl]).argmax(-1).numpy()
                votes[np.arange(len(test.codes))[sl], pred] += 1
        sample_entropy = stats.entropy(votes / n_samples, axis=1)
    return Predictions(names, np.concatenate(correct).astype(bool), np.concatenate(entropy), sample_entropy)


def ondevice_finetune(central, train, test, users, lr: float, epochs: int, batch_size: int, seed: int,
                      progress: bool = False) -> Predictions:
    """Baseline: every device fine-tunes its own full copy of the central model on its own texts."""
    parts = []
    if np.any(np.diff(test.codes) < 0):
        raise ValueError("test rows must be grouped by user")
    for u in tqdm(range(len(users)), desc="on-device fine-tuning", disable=not progress, leave=False):
        tr, te = np.flatnonzero(train.codes == u), np.flatnonzero(test.codes == u)
        if te.size == 0:
            continue
        model = copy.deepcopy(central)
        if tr.size:
            torch.manual_seed(seed + u)
            cfg = cloud.TrainConfig(lr=lr, epochs=epochs, batch_size=batch_size, weight_decay=0.0, seed=seed + u)
            cloud.train_model(model, train.ids[tr], train.mask[tr], None if train.labels is None else train.labels[tr],
                              None, cfg)
        parts.append(evaluate(model, test.select(te), None, users))
    return Predictions(np.concatenate([p.user for p in parts]), np.concatenate([p.correct for p in parts]),
                       np.concatenate([p.entropy for p in parts]))


def wilson(correct: np.ndarray, confidence: float = 0.95) -> dict:
    """Accuracy with its Wilson score interval."""
    k, n = int(np.sum(correct)), int(np.size(correct))
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return {"value": k / n, "ci": [float(ci.low), float(ci.high)], "n": n}


def paired_gap(a: np.ndarray, b: np.ndarray, seed: int, n_resamples: int = 2000, confidence: float = 0.95) -> dict:
    """Mean of ``a_i - b_i`` over the same items with a paired percentile-bootstrap interval."""
    d = a.astype(float) - b.astype(float)
    value = float(d.mean())
    if np.all(d == d[0]):
        return {"value": value, "ci": [value, value], "method": "paired bootstrap (degenerate: all equal)"}
    res = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                          vectorized=True, rng=np.random.default_rng(seed))
    return {"value": value, "ci": [float(res.confidence_interval.low), float(res.confidence_interval.high)],
            "method": "paired percentile bootstrap over test items"}


@torch.no_grad()
def latency_ms(model, test, dist, reps: int = 50) -> dict:
    """Median per-query times (ms): sampling, forward without / with the user token (batch 1)."""
    model.eval()
    ids, mask = test.ids[:1], test.mask[:1]
    times = {"sample": [], "forward": [], "forward_with_embedding": []}
    for i in range(reps + 5):
        t0 = time.perf_counter()
        dist.rsample((1,))
        t1 = time.perf_counter()
        model(ids, mask)
        t2 = time.perf_counter()
        model(ids, mask, dist.rsample((1,)))
        t3 = time.perf_counter()
        if i >= 5:
            times["sample"].append(t1 - t0)
            times["forward"].append(t2 - t1)
            times["forward_with_embedding"].append(t3 - t2)
    out = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    out["added"] = out["forward_with_embedding"] - out["forward"]
    return out


def metrics_block(preds: dict, corpus, config, latency: dict, seed: int) -> dict:
    """The ``metrics.json`` dictionary (accuracies, gaps, ceilings, latency, config)."""
    acc = {name: wilson(p.correct) for name, p in preds.items()}
    gap = {}
    pairs = [("idfree", "central"), ("idfree", "static"), ("static", "central"), ("ondevice", "central"),
             ("idfree", "ondevice")]
    for a, b in pairs:
        if a in preds and b in preds:
            gap[f"{a}_minus_{b}"] = paired_gap(preds[a].correct, preds[b].correct, seed, config.n_bootstrap)
    ceilings = dict(corpus.ceilings) if corpus.ceilings else {"text_only": None, "user_aware": None}
    return {"accuracy": acc, "gap": gap, "ceiling": ceilings, "latency_ms": latency,
            "config": config.to_dict(), "seed": config.seed, "data": {"description": corpus.description,
                                                                     "task": corpus.task, "n_users": len(corpus.users)}}
