"""On-device training of one user's embedding distribution: the batched trainer with a batch of one.

Objective (IDfree-PL, device side): ``min_phi E_{(t, y) ~ D_u} E_{e ~ q_phi}[ CE(f_theta(t, e), y) ]``
with the cloud model ``f_theta`` **frozen** and ``q_phi`` a :mod:`idfree_core.distributions`
module, estimated with a fresh reparameterized sample per example per forward pass.  There is one
trainer, :class:`idfree_core.fleet.Fleet` (AdamW after clipping, early stopping on validation
loss, trajectories); :func:`train_user_distribution` runs it on ``Fleet.of(dist)`` and returns the
one user's record as a :class:`DeviceResult`.  ``config`` is the one :class:`DeviceConfig`
(reference values for pretrained LMs: ``DeviceConfig.reference()``, lr 5e-5, 20 epochs).

Recorded trajectory (per optimizer step ``t = 1..steps``, the path actually taken, *before* the
best state is restored): ``trajectory[t-1] = ||theta_t - theta_0||_2`` on the constrained
parameters, ``trajectory_unconstrained`` and ``..._inf`` the L2 and max norms of ``phi_t - phi_0``,
``step_norm`` the L2 norm of ``phi_t - phi_{t-1}`` (bounded by :func:`adamw_step_bound`), and
``grad_norm`` the gradient norm before clipping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
from torch import nn

from idfree_core.distributions import StaticUserEmbedding, UserDistribution
from idfree_core.errors import InputError
from idfree_core.fleet import DeviceConfig, Fleet
from idfree_core.objective import IGNORE_INDEX, as_tensors, default_loss, frozen
from idfree_core.optim import adamw_step_bound

__all__ = ["DeviceConfig", "DeviceResult", "train_user_distribution", "train_static_embedding",
           "default_loss", "frozen", "adamw_step_bound", "IGNORE_INDEX"]


@dataclass(frozen=True, eq=False)
class DeviceResult:
    """Outcome of one device's training run (see the module docstring for the trajectory).

    ``val_loss``: one entry per evaluation (after each epoch; first the initial state when
    ``eval_at_start``); ``best_step``: the step count of the restored state; ``n_params``: the
    number of trainable unconstrained coordinates (for :func:`adamw_step_bound`).
    """

    best_val_loss: float
    best_step: int
    steps: int
    n_params: int
    epochs: int
    stopped_early: bool
    skipped_steps: int
    trajectory: np.ndarray
    trajectory_unconstrained: np.ndarray
    trajectory_unconstrained_inf: np.ndarray
    step_norm: np.ndarray
    grad_norm: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    export: Mapping[str, np.ndarray] = field(default_factory=dict)
    config: DeviceConfig = field(default_factory=DeviceConfig)

    def to_dict(self) -> dict:
        def plain(v):
            if isinstance(v, np.ndarray):
                return [plain(x) for x in v.tolist()]
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        out = {k: plain(getattr(self, k)) for k in self.__dataclass_fields__ if k not in ("export", "config")}
        out["export"] = {k: v.tolist() for k, v in self.export.items()}
        out["config"] = self.config.to_dict()
        return out


def _with_codes(data, what: str, optional: bool = False):
    if data is None and optional:
        return None
    ids, mask, labels = as_tensors(data, what)
    return ids, mask, labels, np.zeros(ids.shape[0], dtype=np.int64)


def train_user_distribution(model: nn.Module, dist: UserDistribution, train, val=None,
                            config: DeviceConfig | None = None, loss_fn: Callable = default_loss,
                            progress: bool = False) -> DeviceResult:
    """Train ``dist`` in place on one user's data against the frozen ``model``; return the record.

    ``model(input_ids, attention_mask=mask, user_embedding=e)`` must return logits (or an object
    with ``.logits``); ``e`` has shape ``(B, n_tokens, dim)``, one fresh ``dist.rsample`` per
    example.  ``train``/``val``: whole-dataset tensors ``(input_ids, attention_mask, labels)``
    (or ``(input_ids, labels)``, a ``TensorDataset``, a dict, or a list of batches, concatenated).
    On return ``dist`` holds the best-validation state (the last state when ``val`` is ``None``);
    the model is unchanged, with its flags and grads restored.  Raises ``RuntimeError`` if any
    model parameter receives a gradient.
    """
    config = DeviceConfig() if config is None else config
    fleet = Fleet.of(dist)
    fleet.fit(model, _with_codes(train, "train"), _with_codes(val, "val", optional=True), config, progress=progress,
              loss_fn=loss_fn)
    return DeviceResult(
        best_val_loss=float(fleet.val_loss_[0]), best_step=int(fleet.best_step_[0]), steps=fleet.steps_,
        n_params=fleet.n_params_, epochs=fleet.epochs_, stopped_early=fleet.stopped_early_,
        skipped_steps=fleet.skipped_steps_, trajectory=fleet.trajectory_[0, 1:],
        trajectory_unconstrained=fleet.trajectory_unconstrained_[0, 1:],
        trajectory_unconstrained_inf=fleet.trajectory_unconstrained_inf_[0, 1:],
        step_norm=fleet.step_norm_[0], grad_norm=fleet.grad_norm_[0], train_loss=fleet.train_loss_[0],
        val_loss=fleet.val_history_[0], export=dist.export(), config=config)


def train_static_embedding(model: nn.Module, embedding: StaticUserEmbedding, train, val=None,
                           config: DeviceConfig | None = None, loss_fn: Callable = default_loss,
                           progress: bool = False) -> DeviceResult:
    """The ID-equivalent baseline: train one fixed vector per user (no sampling), model frozen."""
    if not isinstance(embedding, StaticUserEmbedding):
        raise InputError(f"embedding must be a StaticUserEmbedding, got {type(embedding).__name__}")
    return train_user_distribution(model, embedding, train, val, config, loss_fn, progress)
