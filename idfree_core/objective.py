"""What on-device training minimizes, and the guards around it (shared by :mod:`idfree_core.fleet`).

* :func:`default_loss`: mean cross-entropy (classification, or next-token with ``-100`` ignored);
* :func:`frozen`: the cloud model frozen for a block (flags, grads and modes restored after);
* :func:`seeded`: torch's global RNG forked and seeded for a block (``torch.distributions``
  samplers take no generator), so a call leaves the caller's RNG untouched;
* :func:`as_tensors`: any accepted form of a data set (tensors, ``TensorDataset``, dict, or a list
  of batches) as checked whole-data-set tensors ``(input_ids, attention_mask | None, labels)``.
"""

from __future__ import annotations

import contextlib
from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from idfree_core.errors import InputError

__all__ = ["IGNORE_INDEX", "default_loss", "frozen", "seeded", "as_tensors"]

IGNORE_INDEX = -100
Batch = tuple  # (input_ids, attention_mask | None, labels)


def default_loss(output, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy: logits ``(B, C)`` with labels ``(B,)``, or ``(B, T, V)`` with ``(B, T)``
    (next-token; positions labelled ``-100`` are ignored).  Accepts objects with ``.logits``.

    Next-token labels are *targets aligned with the logits*, i.e. already shifted:
    ``labels[:, j]`` is the token to predict at position ``j`` (``input_ids[:, j + 1]``), as
    ``CompactTransformer.token_targets`` builds them.  Passing ``labels=input_ids`` unshifted would
    train the model to copy its input.

    If the logits are longer than the labels (user tokens prepended as a prefix), the labels are
    left-padded with ``-100``: label ``j`` scores logit position ``T - T_labels + j``.  Models with
    another alignment should pass labels already aligned with their logits.
    """
    logits = output.logits if hasattr(output, "logits") else output
    if logits.dim() == 3:
        if logits.shape[1] > labels.shape[1]:
            labels = F.pad(labels, (logits.shape[1] - labels.shape[1], 0), value=IGNORE_INDEX)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)


@contextlib.contextmanager
def frozen(model: nn.Module):
    """Freeze ``model`` for the block: ``requires_grad=False``, eval mode, existing grads set aside.

    Everything is restored on exit (flags, grads, training mode), even after an exception.
    """
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        model.eval()
        yield params
    finally:
        for p, flag, grad in zip(params, flags, grads):
            p.requires_grad_(flag)
            p.grad = grad
        for m, mode in modes:
            m.training = mode


# --------------------------------------------------------------------------- data


def _check_batch(batch, what: str) -> Batch:
    if isinstance(batch, Mapping):
        batch = (batch.get("input_ids"), batch.get("attention_mask"), batch.get("labels"))
    if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
        raise InputError(f"{what}: each batch must be (input_ids, attention_mask, labels) or (input_ids, labels)")
    ids, mask, labels = (batch[0], None, batch[1]) if len(batch) == 2 else tuple(batch)
    if not isinstance(ids, torch.Tensor) or ids.dim() < 1 or ids.shape[0] == 0:
        raise InputError(f"{what}: input_ids must be a non-empty tensor")
    if not isinstance(labels, torch.Tensor) or labels.shape[0] != ids.shape[0]:
        raise InputError(f"{what}: labels must be a tensor with {ids.shape[0]} rows")
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != ids.shape):
        raise InputError(f"{what}: attention_mask must have the shape of input_ids {tuple(ids.shape)}")
    return ids, mask, labels


def _as_dataset(data, what: str) -> Batch | None:
    """Checked whole-dataset tensors if ``data`` is one (TensorDataset, tuple of tensors, dict)."""
    if isinstance(data, torch.utils.data.TensorDataset):
        data = tuple(data.tensors)
    if (isinstance(data, Mapping) and "input_ids" in data) or (
            isinstance(data, (tuple, list)) and len(data) in (2, 3) and isinstance(data[0], torch.Tensor)
            and all(t is None or isinstance(t, torch.Tensor) for t in data)):
        return _check_batch(data, what)
    return None


def as_tensors(data, what: str) -> Batch:
    """Whole-data-set tensors ``(input_ids, attention_mask | None, labels)`` from any accepted form
    (a list of batches is concatenated in order)."""
    if data is None:
        raise InputError(f"{what}: no data")
    ds = _as_dataset(data, what)
    if ds is not None:
        return ds
    batches = [_check_batch(b, what) for b in data]
    if not batches:
        raise InputError(f"{what}: the data yielded no batch")
    try:
        ids = torch.cat([b[0] for b in batches])
        labels = torch.cat([b[2] for b in batches])
        masks = [b[1] for b in batches]
        mask = None if all(m is None for m in masks) else torch.cat(
            [torch.ones_like(b[0]) if m is None else m for b, m in zip(batches, masks)])
    except RuntimeError:
        raise InputError(f"{what}: batches must share their sequence length") from None
    return ids, mask, labels


@contextlib.contextmanager
def seeded(seed: int):
    """Fork torch's global (CPU) RNG and seed it for the block; the caller's state is restored."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        yield
