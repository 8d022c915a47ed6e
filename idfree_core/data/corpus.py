"""The ``Corpus`` container, its word-level ``Tokenizer`` and the per-user train/test split.

Public API
----------
* ``Tokenizer.build(texts, max_vocab=2000, min_freq=1)``: word-level vocabulary built from the
  given (training) texts only.  Ids: ``<pad>=0``, ``<unk>=1``, ``<bos>=2``, ``<eos>=3``, then words
  by decreasing frequency (ties alphabetical), capped at ``max_vocab`` entries in total.
  ``encode(texts, max_len, add_bos=False, add_eos=False, return_tensors="pt")`` returns
  ``(input_ids, attention_mask)``, both ``(len(texts), max_len)`` int64, right-padded with
  ``<pad>``, truncated to ``max_len`` (torch ``LongTensor`` by default, numpy with ``"np"``).
* ``Corpus``: frozen dataclass with ``users`` (tuple of str), ``train`` / ``test``
  (``{user: ((text, label), ...)}``; label ``int`` for ``task="classify"``, ``None`` for
  ``task="next_token"``), ``task``, ``n_classes`` (None for next_token), ``tokenizer``,
  ``ceilings`` (``{"text_only": v, "user_aware": v}``: Bayes ceilings, persona only, else None),
  ``user_traits`` (persona latent traits, else None), ``description`` (one line), ``name`` and
  ``details`` (extra facts, e.g. population ceilings or dropped rows).  ``flat(split)`` gives
  ``(users ndarray[str], texts list[str], labels ndarray[int64] | None)``; ``summary()`` gives
  JSON-ready statistics.
* ``split_per_user(...)``: the 80/20 split.  With times, each user's documents are stably sorted
  by time and the last ``round(test_fraction * n)`` (at least 1) go to test (chronological split,
  as in the reference setup); without times, each user's documents are shuffled with a seeded
  ``numpy.random.Generator`` permutation first.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from idfree_core.errors import InputError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
_TOKEN_RE = re.compile(r"<[a-z]+>|[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")

Doc = tuple[str, "int | None"]


def tokenize(text: str) -> list[str]:
    """Lower-case word tokenization: words (with inner apostrophes), ``<tag>`` tokens, punctuation."""
    return _TOKEN_RE.findall(text.lower())


@dataclass(frozen=True)
class Tokenizer:
    """Word-level tokenizer with a small capped vocabulary (``itos[i]`` is the token of id ``i``)."""

    itos: tuple[str, ...]

    def __post_init__(self) -> None:
        if tuple(self.itos[: len(SPECIALS)]) != SPECIALS:
            raise InputError(f"tokenizer: the first tokens must be {SPECIALS}")
        object.__setattr__(self, "_stoi", {t: i for i, t in enumerate(self.itos)})

    @classmethod
    def build(cls, texts: Iterable[str], max_vocab: int = 2000, min_freq: int = 1) -> "Tokenizer":
        """Vocabulary of the most frequent words of ``texts`` (pass training texts only)."""
        if max_vocab < len(SPECIALS) + 1:
            raise InputError(f"max_vocab: must be at least {len(SPECIALS) + 1}, got {max_vocab}")
        counts = Counter(tok for t in texts for tok in tokenize(t) if tok not in SPECIALS)
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(words[: max_vocab - len(SPECIALS)]))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3

    @property
    def stoi(self) -> Mapping[str, int]:
        return self._stoi  # type: ignore[attr-defined]

    def ids(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Token ids of one text (unknown words map to ``<unk>``), without padding."""
        stoi = self.stoi
        out = [stoi.get(t, self.unk_id) for t in tokenize(text)]
        return ([self.bos_id] if add_bos else []) + out + ([self.eos_id] if add_eos else [])

    def encode(self, texts: Sequence[str], max_len: int, add_bos: bool = False, add_eos: bool = False,
               return_tensors: str = "pt"):
        """``(input_ids, attention_mask)`` of shape ``(len(texts), max_len)``, right-padded, truncated."""
        if max_len < 1:
            raise InputError(f"max_len: must be positive, got {max_len}")
        if isinstance(texts, str):
            texts = [texts]
        ids = np.full((len(texts), max_len), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), max_len), dtype=np.int64)
        for i, t in enumerate(texts):
            row = self.ids(t, add_bos, add_eos)[:max_len]
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        if return_tensors == "np":
            return ids, mask
        if return_tensors == "pt":
            return torch.from_numpy(ids), torch.from_numpy(mask)
        raise InputError(f"return_tensors: expected 'pt' or 'np', got {return_tensors!r}")

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        toks = [self.itos[int(i)] if 0 <= int(i) < len(self.itos) else UNK for i in ids]
        if skip_special:
            toks = [t for t in toks if t not in SPECIALS]
        return " ".join(toks)

    def max_tokens(self, texts: Iterable[str]) -> int:
        """Length in tokens of the longest text (without ``<bos>``/``<eos>``)."""
        return max((len(tokenize(t)) for t in texts), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {"itos": list(self.itos)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Tokenizer":
        return cls(tuple(d["itos"]))


MAX_CLASSES = 10_000  # a label of 1e6 would allocate a 1e6-way output layer (gigabytes) without this


@dataclass(frozen=True)
class Corpus:
    """Per-user documents split into train/test, with a tokenizer fitted on the training texts."""

    users: tuple[str, ...]
    train: Mapping[str, tuple[Doc, ...]]
    test: Mapping[str, tuple[Doc, ...]]
    task: str
    n_classes: int | None
    tokenizer: Tokenizer
    description: str
    name: str = "corpus"
    ceilings: dict[str, float] | None = None
    user_traits: dict[str, dict[str, Any]] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in ("classify", "next_token"):
            raise InputError(f"task: expected 'classify' or 'next_token', got {self.task!r}")
        if self.task == "classify" and (self.n_classes is None or self.n_classes < 2):
            raise InputError(f"n_classes: a classification corpus needs >= 2 classes, got {self.n_classes}")
        if self.n_classes is not None and self.n_classes > MAX_CLASSES:
            raise InputError(f"n_classes: {self.n_classes} classes (labels must be 0..K-1) is past the supported "
                             f"{MAX_CLASSES}; relabel the classes to consecutive integers")
        if set(self.train) != set(self.users) or set(self.test) != set(self.users):
            raise InputError("corpus: train and test must hold exactly the listed users")

    def split(self, split: str) -> Mapping[str, tuple[Doc, ...]]:
        if split not in ("train", "test"):
            raise InputError(f"split: expected 'train' or 'test', got {split!r}")
        return self.train if split == "train" else self.test

    def flat(self, split: str = "train"):
        """``(users, texts, labels)`` in user order then document order; labels None for next_token."""
        docs = self.split(split)
        users = [u for u in self.users for _ in docs[u]]
        texts = [t for u in self.users for t, _ in docs[u]]
        labels = None
        if self.task == "classify":
            labels = np.array([y for u in self.users for _, y in docs[u]], dtype=np.int64)
        return np.array(users, dtype=object), texts, labels

    def n_docs(self, split: str = "train") -> int:
        return sum(len(v) for v in self.split(split).values())

    def user_index(self) -> dict[str, int]:
        """Position of each user in ``users`` (for integer user codes)."""
        return {u: i for i, u in enumerate(self.users)}

    def suggested_max_len(self, cap: int = 64) -> int:
        """Token length covering every training text (+2 for ``<bos>``/``<eos>``), at most ``cap``."""
        return min(cap, self.tokenizer.max_tokens(t for u in self.users for t, _ in self.train[u]) + 2)

    def summary(self) -> dict[str, Any]:
        """JSON-ready statistics: sizes, label shares, document lengths, ceilings."""
        out: dict[str, Any] = {"name": self.name, "description": self.description, "task": self.task,
                               "n_classes": self.n_classes, "n_users": len(self.users),
                               "vocab_size": self.tokenizer.vocab_size}
        for s in ("train", "test"):
            per_user = np.array([len(self.split(s)[u]) for u in self.users])
            _, texts, labels = self.flat(s)
            lens = np.array([len(tokenize(t)) for t in texts]) if texts else np.zeros(1)
            out[s] = {"n_docs": int(per_user.sum()),
                      "docs_per_user": {"min": int(per_user.min()), "median": float(np.median(per_user)),
                                        "max": int(per_user.max())},
                      "tokens_per_doc": {"mean": float(lens.mean()), "max": int(lens.max())}}
            if labels is not None and len(labels):
                out[s]["label_share"] = (np.bincount(labels, minlength=self.n_classes) / len(labels)).tolist()
        out["ceilings"] = dict(self.ceilings) if self.ceilings is not None else None
        return out


def split_per_user(
    users: Sequence[str], docs: Sequence[Doc], times: Sequence[float] | None = None, *,
    test_fraction: float = 0.2, seed: int = 0, min_docs_per_user: int = 2, max_users: int | None = None,
    source: str = "data",
) -> tuple[tuple[str, ...], dict[str, tuple[Doc, ...]], dict[str, tuple[Doc, ...]]]:
    """Per-user 80/20 split (chronological when ``times`` is given, else seeded shuffle).

    Users with fewer than ``min_docs_per_user`` documents are dropped; with ``max_users`` only the
    most active users are kept (ties broken by user name).  Raises ``InputError`` (naming
    ``source``) when fewer than two users remain.
    """
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    min_docs = max(2, int(min_docs_per_user))
    by_user: dict[str, list[int]] = {}
    for i, u in enumerate(users):
        by_user.setdefault(str(u), []).append(i)
    keep = [u for u in by_user if len(by_user[u]) >= min_docs]
    keep.sort(key=lambda u: (-len(by_user[u]), u))
    if max_users is not None:
        if max_users < 2:
            raise InputError(f"max_users: must be at least 2, got {max_users}")
        keep = keep[:max_users]
    if len(keep) < 2:
        raise InputError(f"{source}: only {len(keep)} user(s) have at least {min_docs} documents "
                         f"(of {len(by_user)} users); need at least 2")
    keep.sort()
    rng = np.random.default_rng(seed)
    train: dict[str, tuple[Doc, ...]] = {}
    test: dict[str, tuple[Doc, ...]] = {}
    for u in keep:
        idx = np.array(by_user[u])
        if times is not None:
            t = np.asarray([times[i] for i in idx], dtype=float)
            idx = idx[np.argsort(t, kind="stable")]
        else:
            idx = idx[rng.permutation(len(idx))]
        n_test = min(len(idx) - 1, max(1, int(np.floor(test_fraction * len(idx) + 0.5))))
        train[u] = tuple(docs[i] for i in idx[: len(idx) - n_test])
        test[u] = tuple(docs[i] for i in idx[len(idx) - n_test:])
    return tuple(keep), train, test
