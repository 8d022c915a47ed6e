"""The anonymous upload pool, the auditor's oracle, and the file contract between them.

What the cloud sees is an :class:`UploadPool`: embeddings, optional text, label and session.
It has **no user field**; that is a type-level fact (see ``tests/test_uploads.py``).  The
ground-truth map ``upload_id -> user`` lives only in an :class:`Oracle`, and the users' trained
distributions only in :class:`UserDistributions`; both are for scoring attacks, never for fitting.

Files (docs/file_formats.md):

* ``uploads.parquet``: ``upload_id`` int64 unique, ``embedding`` list<float32> of fixed length
  (``n_tokens * token_dim``, tokens flattened), optional ``text`` string, ``label`` int64,
  ``session`` int64 (0 = training uploads, 1.. = later inference queries).  CSV with
  ``emb_0..emb_{d-1}`` columns is accepted on read; a CSV without ``upload_id`` has its rows
  numbered ``0..n-1`` in file order.
* ``oracle.parquet``: ``upload_id`` int64, ``user`` string.
* ``user_distributions.json``: ``{"family": NAME, "users": {user: params}}`` with NAME a family of
  the registry (:mod:`idfree_core.families`) and its flattened per-dimension parameters, e.g.
  ``alpha``/``beta`` (Beta), ``mean``/``std`` (Gaussian), ``a``/``b`` (Kumaraswamy) or ``value``
  (static embedding, a point mass).  Families on (0, 1) may carry a shared affine map
  ``"transform": {"loc": [...], "scale": [...]}`` (embedding = loc + scale * x).

Every reader validates schema, lengths, finiteness and dtype and raises :class:`InputError`
with one line naming the file and the problem; sizes are bounded before the expensive work
(``files.LIMITS``, each liftable by a keyword).  Nothing is ever unpickled.

Modules: :mod:`~idfree_core.uploads.contract` (the containers), :mod:`~idfree_core.uploads.files`
(reading and writing), :mod:`~idfree_core.uploads.findings` (identifier columns by name and content).
"""

from __future__ import annotations

from idfree_core.families import FAMILY_SPECS
from idfree_core.uploads.contract import POOL_COLUMNS, Oracle, UploadPool, UserDistributions, anonymize
from idfree_core.uploads.files import (LIMITS, read_oracle, read_uploads, read_uploads_with_findings,
                                       read_user_distributions, write_oracle, write_uploads, write_user_distributions)
from idfree_core.uploads.findings import IDENTIFIER_PATTERN, identifier_findings, identifier_like

__all__ = ["POOL_COLUMNS", "IDENTIFIER_PATTERN", "LIMITS", "UploadPool", "Oracle", "UserDistributions", "anonymize",
           "read_uploads", "read_uploads_with_findings", "read_oracle", "read_user_distributions", "write_uploads",
           "write_oracle", "write_user_distributions", "identifier_findings", "identifier_like"]


def __getattr__(name: str):
    if name == "FAMILY_PARAMS":  # deprecated view: parameter names per registered family
        return {k: v.param_names for k, v in FAMILY_SPECS.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
