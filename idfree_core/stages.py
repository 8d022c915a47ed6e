"""The stages of ``simulate`` and their per-process caches (see :mod:`idfree_core.pipeline`).

* :func:`prepare_data`: corpus -> token ids, per-user device-train / device-validation split;
* :func:`central_model`: the non-personalized model, trained on all training texts, text only;
* :func:`personalize`: for one family, a warm-up on samples of the common prior ``q_0``, then
  ``rounds`` x (every device trains its distribution against the frozen model, uploads each
  training text with a fresh sample, the cloud fine-tunes on the uploads), then the test queries
  with fresh samples;
* :func:`static_baseline`: :func:`personalize` with one fixed vector per user (cached).

Every stage re-seeds torch from ``(config.seed, stage name)`` (CRC32), so a stage gives the same
numbers whether it was computed now or taken from the cache.
"""

from __future__ import annotations

import copy
import zlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from idfree_core import cloud
from idfree_core.errors import InputError
from idfree_core.evaluation import evaluate
from idfree_core.families import get_family_spec
from idfree_core.fleet import Fleet
from idfree_core.models import CompactTransformer

TRAJECTORIES = ("trajectory_unconstrained_", "trajectory_unconstrained_inf_", "trajectory_")


def seed_for(config, stage: str) -> int:
    return zlib.crc32(f"{config.seed}:{stage}".encode()) & 0x7FFFFFFF


# ----------------------------------------------------------------------------- caches
_CACHE: "OrderedDict[tuple, Any]" = OrderedDict()
_CACHE_SIZE = 12


def cached(key: tuple, build):
    """``build()`` once per ``key`` (least recently used entries evicted beyond ``_CACHE_SIZE``)."""
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = build()
    _CACHE[key] = value
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def clear_cache() -> None:
    """Forget cached corpora, central models and baselines."""
    _CACHE.clear()


# the configuration fields each cached stage depends on (a data file is keyed by its path)
DATA_FIELDS = ("data", "data_format", "user_column", "text_column", "label_column", "n_users", "docs_per_user",
               "difficulty", "persona_options", "max_len", "n_tokens", "device_val_fraction", "seed",
               "time_column", "model")  # the model's own tokenizer encodes the texts
MODEL_FIELDS = DATA_FIELDS + ("d_model", "n_layers", "n_heads", "central_lr", "central_epochs", "batch_size")


def config_key(config, fields) -> tuple:
    return tuple((f, getattr(config, f)) for f in fields)


@dataclass(frozen=True, eq=False)
class Encoded:
    """Tokenized documents with integer user codes (rows in user order)."""

    ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor | None
    codes: np.ndarray
    texts: tuple

    def select(self, rows) -> "Encoded":
        rows = np.asarray(rows)
        t = torch.as_tensor(rows)
        return Encoded(self.ids[t], self.mask[t], None if self.labels is None else self.labels[t], self.codes[rows],
                       tuple(self.texts[i] for i in rows))

    def as_tuple(self):
        return self.ids, self.mask, self.labels, self.codes


def _load_corpus(config):
    if config.data == "persona":
        from idfree_core.data import PersonaConfig, generate_persona

        opts = dict(config.persona_options)
        return generate_persona(PersonaConfig(n_users=config.n_users, docs_per_user=config.docs_per_user,
                                              difficulty=config.difficulty, seed=config.seed, **opts))
    from idfree_core import data as data_mod

    loader = getattr(data_mod, "load_corpus", None)
    if loader is None:
        raise InputError("loading real data needs idfree_core.data.load_corpus, which is not available")
    return loader(config.data, format=config.data_format, user_column=config.user_column,
                  text_column=config.text_column, label_column=config.label_column,
                  time_column=config.time_column, max_users=config.n_users, seed=config.seed)


def prepare_data(config):
    """``(corpus, train, device_train, device_val, test)`` (cached per data configuration)."""
    def build():
        corpus = _load_corpus(config)
        index = corpus.user_index()
        tok = corpus.tokenizer if config.model == "compact" else _pretrained(config, corpus).tokenizer
        cap = config.max_len - (config.n_tokens or 5)
        if config.model == "compact":
            max_len = corpus.suggested_max_len(cap=cap)
        else:  # lengths in the model's own tokens
            max_len = min(cap, tok.max_tokens(t for u in corpus.users for t, _ in corpus.train[u]) + 2)

        def encode(split):
            users, texts, labels = corpus.flat(split)
            add = corpus.task == "next_token"
            ids, mask = tok.encode(texts, max_len, add_bos=add, add_eos=add)
            codes = np.array([index[u] for u in users], dtype=np.int64)
            return Encoded(ids, mask, None if labels is None else torch.as_tensor(labels), codes, tuple(texts))

        train, test = encode("train"), encode("test")
        rng = np.random.default_rng(seed_for(config, "device-split"))
        val_rows = []
        for u in range(len(corpus.users)):
            rows = np.flatnonzero(train.codes == u)
            n_val = min(len(rows) - 1, max(1, int(round(config.device_val_fraction * len(rows)))))
            if n_val >= 1:
                val_rows.extend(rng.choice(rows, n_val, replace=False).tolist())
        is_val = np.zeros(len(train.codes), dtype=bool)
        is_val[val_rows] = True
        dev_val = train.select(np.flatnonzero(is_val)) if is_val.any() else train
        return corpus, train, train.select(np.flatnonzero(~is_val)), dev_val, test

    return cached(("data",) + config_key(config, DATA_FIELDS), build)


def _pretrained(config, corpus, random_state: int = 0):
    """``model_zoo.load_model`` for a pretrained ``config.model`` (weights cached per process)."""
    from idfree_core.model_zoo import load_model

    return load_model(config.model, corpus.task, corpus.n_classes, random_state=random_state)


def model_width(model) -> int:
    """The user-embedding width: the model's input-embedding width."""
    return int(model.d_model)


def _new_model(config, corpus):
    if config.model != "compact":  # a fresh copy of the pretrained backbone, a new seeded head
        return _pretrained(config, corpus, seed_for(config, "head-init")).model
    return CompactTransformer(corpus.tokenizer.vocab_size, d_model=config.d_model, n_layers=config.n_layers,
                              n_heads=config.n_heads, max_len=config.max_len, task=corpus.task,
                              n_classes=corpus.n_classes)


def n_tokens_for(config, corpus) -> int:
    return config.n_tokens or (1 if corpus.task == "classify" else 5)


def central_model(config, progress: bool = False) -> CompactTransformer:
    """The non-personalized central model (a fresh copy of the cached one)."""
    def build():
        corpus, train, *_ = prepare_data(config)
        torch.manual_seed(seed_for(config, "central-init"))
        model = _new_model(config, corpus)
        cfg = cloud.CentralConfig(lr=config.central_lr, epochs=config.central_epochs, batch_size=config.batch_size,
                                  seed=seed_for(config, "central"))
        cloud.train_central(model, train.ids, train.mask, train.labels, cfg, progress=progress)
        return model.state_dict()

    state = cached(("central",) + config_key(config, MODEL_FIELDS), build)
    corpus = prepare_data(config)[0]
    model = _new_model(config, corpus)
    model.load_state_dict(copy.deepcopy(state))
    return model.eval()


def family_init(config, family: str, task: str) -> dict:
    """Module keyword arguments of the common initial distribution (the family record's
    ``initial_params`` at the configuration's spread setting, e.g. Beta ``(2c, 5c)``)."""
    spec = get_family_spec(family)
    setting = getattr(config, spec.spread_field) if spec.spread_field else None
    return spec.module_init(spec.initial_params(setting, task), task)


def personalize(config, family: str, progress: bool = False) -> dict:
    """Warm-up, ``rounds`` x (device training, upload, cloud fine-tuning), then test queries."""
    corpus, train, dev_train, dev_val, test = prepare_data(config)
    n_tok, users = n_tokens_for(config, corpus), corpus.users
    model = central_model(config, progress)
    init = family_init(config, family, corpus.task)
    width = model_width(model)
    fleet = Fleet(family, len(users), n_tok, width, **init)
    prior = Fleet(family, 1, n_tok, width, **init).stack
    tag = f"{family}"
    torch.manual_seed(seed_for(config, f"warmup-{tag}"))
    if config.warmup_epochs:
        cfg = cloud.CentralConfig(lr=config.cloud_lr, epochs=config.warmup_epochs, batch_size=config.batch_size,
                                  seed=seed_for(config, f"warmup-order-{tag}"))
        cloud.train_central(model, train.ids, train.mask, train.labels, cfg,
                            prior_sampler=lambda n: prior.rsample((n,)).detach(), progress=progress)
    trajectories, uploads = {}, None
    for r in range(config.rounds):
        fcfg = config.device_config(seed=seed_for(config, f"device-{tag}-{r}"))
        fleet.fit(model, dev_train.as_tuple(), dev_val.as_tuple(), fcfg, progress=progress)
        for name in TRAJECTORIES:
            path = getattr(fleet, name)
            trajectories.setdefault(name, []).append(path if r == 0 else path[:, 1:])
        torch.manual_seed(seed_for(config, f"upload-{tag}-{r}"))
        k = config.uploads_per_text
        uploads = fleet.sample_rows(np.repeat(train.codes, k)).view(len(train.codes), k, n_tok, width)
        ft = cloud.FineTuneConfig(lr=config.cloud_lr, weight_decay=config.cloud_weight_decay,
                                  epochs=config.cloud_epochs, batch_size=config.batch_size,
                                  clip_norm=config.cloud_clip, seed=seed_for(config, f"cloud-{tag}-{r}"))
        cloud.fine_tune_on_pool(model, train.ids, train.mask, train.labels, uploads, ft, progress=progress)
    torch.manual_seed(seed_for(config, f"queries-{tag}"))
    queries = fleet.sample_rows(test.codes)
    preds = evaluate(model, test, queries, users, lambda: fleet.sample_rows(test.codes), config.entropy_samples)
    return {"model": model, "fleet": fleet, "uploads": uploads, "queries": queries, "predictions": preds,
            "trajectories": {k: np.concatenate(v, 1) for k, v in trajectories.items()}}


def static_baseline(config, progress: bool):
    cls = type(config)
    base = replace(config, family="static", std=cls.std, beta_concentration=cls.beta_concentration, spread=cls.spread)
    fields = tuple(f for f in cls.__dataclass_fields__ if f not in ("baselines",))
    return cached(("static",) + config_key(base, fields), lambda: personalize(base, "static", progress))
