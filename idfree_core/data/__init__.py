"""idfree_core.data: the built-in persona corpus (with exact Bayes ceilings) and real-data loaders.

Public API (see each module's docstring):

* ``corpus``: ``Corpus`` (per-user train/test ``(text, label)`` tuples, ``task``, ``n_classes``,
  ``tokenizer``, ``ceilings``, ``user_traits``, ``description``; ``flat(split)``, ``summary()``),
  ``Tokenizer`` (word-level, ``<pad>=0``, capped vocabulary from training text;
  ``encode(texts, max_len) -> (input_ids, attention_mask)``), ``split_per_user``.
* ``persona``: ``PersonaConfig``, ``generate_persona(cfg) -> Corpus``, ``PersonaModel`` (traits and
  the exact label posterior ``P(y | text[, user])`` behind the reported ceilings).
* ``loaders``: ``load_csv``, ``load_jsonl``, ``load_sentiment140``, ``load_amazon``,
  ``load_leaf_reddit`` and the dispatcher ``load_corpus(path, format=None, **columns)``.
"""

from idfree_core.data.corpus import Corpus, Tokenizer, split_per_user, tokenize
from idfree_core.data.loaders import (FORMATS, load_amazon, load_corpus, load_csv, load_jsonl,
                                     load_leaf_reddit, load_sentiment140)
from idfree_core.data.persona import PersonaConfig, PersonaModel, generate_persona

__all__ = ["Corpus", "Tokenizer", "split_per_user", "tokenize", "PersonaConfig", "PersonaModel",
           "generate_persona", "FORMATS", "load_amazon", "load_corpus", "load_csv", "load_jsonl",
           "load_leaf_reddit", "load_sentiment140"]
