"""The cloud side of IDfree-PL: central training, fine-tuning on the anonymous pool, inference.

* :func:`train_central` trains the shared model with **no personalization**: either text only
  (``prior_sampler=None``) or with every text paired with a fresh sample of the *common initial*
  distribution ``q_0`` (the same for all users, so it carries no user information; it only makes
  the model's user-token pathway exist before devices start to move their distributions).
* :func:`fine_tune_on_pool` is full fine-tuning on uploaded ``(text, label, e)`` rows, minimizing
  ``E[-log p(y | x, e)]`` with AdamW and gradient clipping (reference: lr 5e-5, weight decay 0.05,
  10 epochs, clipping 5.0; the compact model defaults to a larger lr, see :class:`FineTuneConfig`).
  "A fresh sample per forward pass" under anonymity: the cloud has no user id, so it cannot draw
  from a user's distribution itself.  Devices may upload ``K`` samples per text
  (``embeddings`` of shape ``(n, K, n_tokens, d)``); epoch ``e`` uses sample ``e mod K``.  With
  ``K = 1`` (the pipeline default) the uploaded sample is re-used every epoch.
* :class:`InferenceService` answers queries ``predict(x, e)`` where ``e`` is drawn **on the device**
  freshly per query (pass the device's distribution module, or the samples it sent).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from idfree_core.errors import InputError
from idfree_core.optim import clipped_step

# The authors' settings for pretrained language models (docs: /work/shared/README.md).
REFERENCE_CENTRAL = {"lr": 5e-5, "weight_decay": 0.05, "epochs": 10, "batch_size": 8, "clip_norm": 5.0}
REFERENCE_FINE_TUNE = {"lr": 5e-5, "weight_decay": 0.05, "epochs": 10, "batch_size": 8, "clip_norm": 5.0}


def _check_positive(name: str, value, integer: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok or (integer and int(value) != value):
        raise InputError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """AdamW training settings (defaults tuned for the compact model; ``reference()`` for LMs)."""

    lr: float = 1e-3
    weight_decay: float = 0.05
    epochs: int = 8
    batch_size: int = 32
    clip_norm: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive("lr", self.lr)
        _check_positive("epochs", self.epochs, integer=True)
        _check_positive("batch_size", self.batch_size, integer=True)
        _check_positive("clip_norm", self.clip_norm)
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise InputError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CentralConfig(TrainConfig):
    """Central (non-personalized) training.  ``CentralConfig.reference()``: the authors' setting."""

    @classmethod
    def reference(cls, **kw) -> "CentralConfig":
        return cls(**{**REFERENCE_CENTRAL, **kw})


@dataclass(frozen=True)
class FineTuneConfig(TrainConfig):
    """Cloud fine-tuning on the pool.  ``FineTuneConfig.reference()``: lr 5e-5, wd 0.05, 10 epochs."""

    epochs: int = 4

    @classmethod
    def reference(cls, **kw) -> "FineTuneConfig":
        return cls(**{**REFERENCE_FINE_TUNE, **kw})


EmbeddingSource = torch.Tensor | Callable[[torch.Tensor, int], torch.Tensor] | None


def _embeddings_for(source: EmbeddingSource, index: torch.Tensor, epoch: int):
    if source is None:
        return None
    if callable(source) and not isinstance(source, torch.Tensor):
        return source(index, epoch)
    if source.ndim == 4:  # (n, K, n_tokens, d): K uploaded samples per text
        return source[index, epoch % source.shape[1]]
    return source[index]


def _check_data(input_ids, attention_mask, labels, embeddings) -> int:
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.shape[0] == 0:
        raise InputError("input_ids must be a non-empty (n, length) tensor")
    n = input_ids.shape[0]
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise InputError("attention_mask must have the shape of input_ids")
    if labels is not None and labels.shape[0] != n:
        raise InputError(f"labels has {labels.shape[0]} rows, expected {n}")
    if isinstance(embeddings, torch.Tensor):
        if embeddings.shape[0] != n or embeddings.ndim not in (3, 4):
            raise InputError(f"embeddings must have shape (n={n}, [K,] n_tokens, d), got {tuple(embeddings.shape)}")
        if not bool(torch.isfinite(embeddings).all()):
            raise InputError("embeddings contain NaN or infinite values")
    return n


def train_model(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                labels: torch.Tensor | None, embeddings: EmbeddingSource, config: TrainConfig,
                progress: bool = False, desc: str = "train") -> list[float]:
    """Full training of ``model`` by AdamW + clipping; returns the mean loss per epoch.

    ``embeddings``: None (text only), a tensor ``(n, n_tokens, d)`` / ``(n, K, n_tokens, d)``, or a
    callable ``(row_index, epoch) -> (len(row_index), n_tokens, d)``.
    """
    n = _check_data(input_ids, attention_mask, labels, embeddings)
    for p in model.parameters():
        p.requires_grad_(True)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(int(config.seed))
    history = []
    model.train()
    bar = tqdm(range(config.epochs), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n, config.batch_size):
            idx = perm[start:start + config.batch_size]
            mask = None if attention_mask is None else attention_mask[idx]
            lab = None if labels is None else labels[idx]
            loss = model.loss(input_ids[idx], mask, lab, _embeddings_for(embeddings, idx, epoch))
            clipped_step(opt, params, loss, config.clip_norm)
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        history.append(total / count)
        bar.set_postfix(loss=f"{history[-1]:.3f}")
    opt.zero_grad(set_to_none=True)
    model.eval()
    return history


def train_central(model: nn.Module, input_ids, attention_mask, labels, config: CentralConfig = CentralConfig(),
                  prior_sampler: Callable[[int], torch.Tensor] | None = None, progress: bool = False) -> list[float]:
    """Non-personalized training: text only, or text + a fresh sample of the common prior ``q_0``.

    ``prior_sampler(batch_size) -> (batch_size, n_tokens, d)`` draws from the distribution every
    user starts from, so the model learns to *accept* a user token without learning any user.
    """
    source = None if prior_sampler is None else (lambda idx, epoch: prior_sampler(len(idx)))
    return train_model(model, input_ids, attention_mask, labels, source, config, progress, "central")


def fine_tune_on_pool(model: nn.Module, input_ids, attention_mask, labels, embeddings: EmbeddingSource,
                      config: FineTuneConfig = FineTuneConfig(), progress: bool = False) -> list[float]:
    """Full fine-tuning on anonymous uploads ``(x_i, y_i, e_i)`` (no user id anywhere)."""
    if embeddings is None:
        raise InputError("fine_tune_on_pool needs the uploaded embeddings")
    return train_model(model, input_ids, attention_mask, labels, embeddings, config, progress, "cloud fine-tune")


class InferenceService:
    """Serves ``predict(x, e)``; the device draws ``e`` fresh per query from its own distribution."""

    def __init__(self, model: nn.Module, tokenizer=None, max_len: int | None = None, batch_size: int = 256):
        self.model, self.tokenizer, self.max_len, self.batch_size = model, tokenizer, max_len, batch_size

    def _encode(self, texts):
        if isinstance(texts, torch.Tensor):
            return texts, None
        if isinstance(texts, tuple) and len(texts) == 2 and isinstance(texts[0], torch.Tensor):
            return texts
        if self.tokenizer is None or self.max_len is None:
            raise InputError("texts given as strings need InferenceService(tokenizer=..., max_len=...)")
        return self.tokenizer.encode(list(texts), self.max_len)

    def sample_embeddings(self, embeddings, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """Device side: one fresh sample per query from a distribution module (or pass-through)."""
        if embeddings is None or isinstance(embeddings, torch.Tensor):
            return embeddings
        if generator is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
                return embeddings.rsample((n,)).detach()
        return embeddings.rsample((n,)).detach()

    @torch.no_grad()
    def predict_proba(self, texts, embeddings=None, attention_mask=None, generator=None) -> torch.Tensor:
        """Class probabilities (classify) for each query, sampling ``e`` fresh per query."""
        ids, mask = self._encode(texts)
        mask = attention_mask if attention_mask is not None else mask
        emb = self.sample_embeddings(embeddings, ids.shape[0], generator)
        self.model.eval()
        out = []
        for s in range(0, ids.shape[0], self.batch_size):
            sl = slice(s, s + self.batch_size)
            logits = self.model(ids[sl], None if mask is None else mask[sl], None if emb is None else emb[sl])
            out.append(torch.softmax(logits.float(), -1))
        return torch.cat(out)

    def predict(self, texts: Sequence[str] | torch.Tensor, embeddings=None, attention_mask=None,
                generator: torch.Generator | None = None) -> np.ndarray:
        """Predicted class per query (argmax of :meth:`predict_proba`)."""
        return self.predict_proba(texts, embeddings, attention_mask, generator).argmax(-1).numpy()
