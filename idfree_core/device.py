"""On-device training of one user's embedding distribution against the frozen cloud model.

Objective (IDfree-PL, device side): ``min_phi E_{(t, y) ~ D_u} E_{e ~ q_phi}[ CE(f_theta(t, e), y) ]``
with the cloud model ``f_theta`` **frozen** (no parameter of it may receive a gradient; checked
after every backward) and ``q_phi`` a :mod:`idfree_core.distributions` module, estimated with a
fresh reparameterized sample per example per forward pass.  Optimizer: AdamW (Loshchilov and
Hutter 2019) on the unconstrained ``phi`` after clipping the total gradient norm
(``torch.nn.utils.clip_grad_norm_``); early stopping keeps the best validation state
(Prechelt 1998).  Reference settings: lr 5e-5, weight decay 0, clip 5.0, 20 epochs, batch 8.

Recorded trajectory (per optimizer step ``t = 1..steps``, the path actually taken, *before* the
best state is restored): ``trajectory[t-1] = ||theta_t - theta_0||_2`` on the constrained
parameters (``parameter_vector()``), ``trajectory_unconstrained`` and ``..._inf`` the L2 and max
norms of ``phi_t - phi_0`` over the trainable unconstrained parameters, ``step_norm`` the L2 norm
of ``phi_t - phi_{t-1}``, and ``grad_norm`` the total gradient norm before clipping.  A batch
whose gradient is not finite is skipped (no step, counted in ``skipped_steps``).
``theta_0``/``phi_0`` are the module's state when training starts (the common initialization
when the module is fresh).  :func:`adamw_step_bound` gives the worst-case ``step_norm``.

Also: the static-embedding baseline (same loop; a point mass has no sampling noise) and the
on-device full fine-tuning baseline (:func:`full_finetune_on_device`, model *not* frozen).
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from idfree_core.distributions import StaticUserEmbedding, UserDistribution
from idfree_core.errors import InputError

__all__ = ["DeviceConfig", "DeviceResult", "train_user_distribution", "train_static_embedding",
           "full_finetune_on_device", "default_loss", "frozen", "adamw_step_bound", "IGNORE_INDEX"]

IGNORE_INDEX = -100
Batch = tuple  # (input_ids, attention_mask | None, labels)


@dataclass(frozen=True)
class DeviceConfig:
    """Hyperparameters of on-device training (reference values from the authors' code).

    ``max_steps``: stop after that many optimizer steps (``None``: no cap).  ``patience``: stop
    after that many epochs without a validation improvement (``None``: run all epochs, still
    restoring the best).  ``eval_batch_size``: batch size of the validation passes.
    ``eval_at_start``: also evaluate the initial state, which is kept if nothing beats it.
    """

    lr: float = 5e-5
    weight_decay: float = 0.0
    clip_norm: float | None = 5.0
    max_epochs: int = 20
    max_steps: int | None = None
    batch_size: int = 8
    patience: int | None = None
    seed: int = 0
    eval_batch_size: int = 256
    shuffle: bool = True
    eval_at_start: bool = False

    def __post_init__(self) -> None:
        def num(v):
            return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)

        def count(v, none_ok=False):
            return (none_ok and v is None) or (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1)

        checks = {
            "lr": (num(self.lr) and self.lr >= 0, "a finite number >= 0"),
            "weight_decay": (num(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            "clip_norm": (self.clip_norm is None or (num(self.clip_norm) and self.clip_norm > 0), "> 0 or None"),
            "max_epochs": (count(self.max_epochs), "a positive integer"),
            "batch_size": (count(self.batch_size), "a positive integer"),
            "eval_batch_size": (count(self.eval_batch_size), "a positive integer"),
            "max_steps": (count(self.max_steps, True), "a positive integer or None"),
            "patience": (count(self.patience, True), "a positive integer or None"),
            "seed": (isinstance(self.seed, (int, np.integer)) and not isinstance(self.seed, bool), "an integer"),
        }
        for name, (ok, want) in checks.items():
            if not ok:
                raise InputError(f"DeviceConfig.{name} must be {want}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)


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


def adamw_step_bound(lr: float, n_params: int, betas=(0.9, 0.999), weight_decay: float = 0.0,
                     param_norm: float = 0.0) -> float:
    """Worst-case L2 norm of one AdamW update of ``n_params`` coordinates, any gradients (eps -> 0).

    Cauchy-Schwarz on the EMAs gives, per coordinate at step ``t`` (``r = b1^2 / b2 < 1``),
    ``|m_hat_t| / sqrt(v_hat_t) <= (1 - b1) / sqrt(1 - b2) * sqrt((1 - r^t) / (1 - r))
    * sqrt(1 - b2^t) / (1 - b1^t)``, which is ``1`` at ``t = 1``; we take its maximum over ``t``
    (about 7.3 for the default betas).  Decoupled weight decay adds ``lr * weight_decay * ||phi||``.
    Clipping does not enter: Adam is invariant to the gradient scale.
    """
    b1, b2 = betas
    r = b1 ** 2 / b2
    if not r < 1:
        raise ValueError("adamw_step_bound needs beta1**2 < beta2")
    t = np.arange(1, 200_001, dtype=np.float64)
    factor = (1 - b1) / math.sqrt(1 - b2) * np.sqrt((1 - r ** t) / (1 - r)) * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    per_coord = max(float(factor.max()), (1 - b1) / math.sqrt((1 - b2) * (1 - r)))  # also the t -> inf limit
    return lr * (per_coord * math.sqrt(n_params) + weight_decay * param_norm)


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


def _batches(data, size: int, what: str, gen: torch.Generator | None = None) -> Iterable[Batch]:
    """Whole-dataset tensors split into batches of ``size`` (shuffled by ``gen`` if given), or the
    caller's own (re-iterable) batches, each checked."""
    if data is None:
        raise InputError(f"{what}: no data")
    ds = _as_dataset(data, what)
    if ds is None:
        yield from (_check_batch(b, what) for b in data)
        return
    ids, mask, labels = ds
    n = ids.shape[0]
    if gen is None:
        yield from ((ids[i:i + size], None if mask is None else mask[i:i + size], labels[i:i + size])
                    for i in range(0, n, size))
        return
    order = torch.randperm(n, generator=gen)
    for i in range(0, n, size):
        idx = order[i:i + size]
        yield ids[idx], None if mask is None else mask[idx], labels[idx]


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device):
    """Fork the global RNG of ``device`` and seed it (torch.distributions samplers take no generator)."""
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else [], device_type="cuda"):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed(seed)
        yield


# --------------------------------------------------------------------------- the loop


def _loss_weight(labels: torch.Tensor) -> float:
    """Weight of a batch's mean loss in the validation average: its non-ignored labels."""
    if labels.dtype.is_floating_point:
        return float(labels.shape[0])
    return float((labels != IGNORE_INDEX).sum())


def _fit(params: list[torch.Tensor], forward: Callable, train, val, config: DeviceConfig, loss_fn: Callable,
         constrained: Callable[[], torch.Tensor] | None, after_backward: Callable[[], None],
         get_state: Callable[[], dict], set_state: Callable[[dict], None],
         train_mode: Callable[[bool], None], progress: bool, desc: str) -> dict:
    """Shared AdamW loop with clipping, early stopping and trajectory recording.

    ``constrained``: the constrained parameter vector, or ``None`` when it is ``phi`` itself.
    """
    if not params:
        raise InputError(f"{desc}: nothing to train (no parameter requires a gradient)")
    device = params[0].device
    gen = torch.Generator().manual_seed(int(config.seed))
    val_batches = [] if val is None else list(_batches(val, config.eval_batch_size, "val"))
    val_weights = [_loss_weight(b[2]) for b in val_batches]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    clip = math.inf if config.clip_norm is None else float(config.clip_norm)

    def flat() -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in params])

    phi0 = flat().clone()
    theta0 = None if constrained is None else constrained().detach().clone()
    prev = phi0
    rec = {k: [] for k in ("drift", "drift_u", "drift_inf", "step", "grad", "loss")}
    val_hist: list[float] = []
    best, best_state, best_step = math.inf, None, 0
    steps = epochs = bad_epochs = skipped = seen = 0
    stopped_early = False

    def evaluate() -> float:
        if not val_batches:
            return math.nan
        train_mode(False)
        # the same samples at every evaluation (common random numbers); training draws are untouched
        with _seeded(int(config.seed) + 1, device), torch.no_grad():
            total = sum(float(loss_fn(forward(ids, mask), labels)) * w
                        for (ids, mask, labels), w in zip(val_batches, val_weights))
        return total / max(sum(val_weights), 1.0)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.max_epochs, desc=desc, leave=False)
    if config.eval_at_start and val_batches:
        val_hist.append(evaluate())
        if not math.isnan(val_hist[0]):
            best, best_state = val_hist[0], get_state()
    with _seeded(int(config.seed), device):
        for epochs in range(1, config.max_epochs + 1):
            train_mode(True)
            for ids, mask, labels in _batches(train, config.batch_size, "train", gen if config.shuffle else None):
                seen += 1
                loss = loss_fn(forward(ids, mask), labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                after_backward()
                gnorm = torch.nn.utils.clip_grad_norm_(params, clip)
                if not bool(torch.isfinite(gnorm)):  # e.g. a sample at the edge of the support
                    skipped += 1
                    continue
                opt.step()
                steps += 1
                with torch.no_grad():
                    cur = flat()
                    diff = cur - phi0
                    rec["drift_u"].append(diff.norm())
                    rec["drift_inf"].append(diff.abs().max())
                    rec["step"].append((cur - prev).norm())
                    rec["drift"].append(rec["drift_u"][-1] if constrained is None else (constrained() - theta0).norm())
                    rec["grad"].append(gnorm.detach())
                    rec["loss"].append(loss.detach())
                    prev = cur
                if config.max_steps is not None and steps >= config.max_steps:
                    break
            if seen == 0:
                raise InputError(f"{desc}: the training data yielded no batch")
            v = evaluate()
            if val_batches:
                val_hist.append(v)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(val=f"{v:.4f}")
            if not val_batches:
                best_step = steps
            elif v < best:  # a NaN validation loss never counts as an improvement
                best, best_state, best_step, bad_epochs = v, get_state(), steps, 0
            else:
                bad_epochs += 1
            if config.max_steps is not None and steps >= config.max_steps:
                break
            if config.patience is not None and bad_epochs >= config.patience:
                stopped_early = epochs < config.max_epochs
                break
    if bar is not None:
        bar.close()
    train_mode(False)
    if best_state is not None:
        set_state(best_state)

    def arr(key):
        return torch.stack(rec[key]).double().cpu().numpy() if rec[key] else np.zeros(0)

    return dict(best_val_loss=best if best_state is not None else math.nan, best_step=best_step,
                steps=steps, n_params=int(phi0.numel()), epochs=epochs, stopped_early=stopped_early,
                skipped_steps=skipped, trajectory=arr("drift"), trajectory_unconstrained=arr("drift_u"),
                trajectory_unconstrained_inf=arr("drift_inf"),
                step_norm=arr("step"), grad_norm=arr("grad"), train_loss=arr("loss"),
                val_loss=np.asarray(val_hist, dtype=np.float64), config=config)


def train_user_distribution(model: nn.Module, dist: UserDistribution, train, val=None,
                            config: DeviceConfig | None = None, loss_fn: Callable = default_loss,
                            progress: bool = False) -> DeviceResult:
    """Train ``dist`` in place on one user's data against the frozen ``model``; return the record.

    ``model(input_ids, attention_mask=mask, user_embedding=e)`` must return logits (or an object
    with ``.logits``); ``e`` has shape ``(B, n_tokens, dim)``, one fresh ``dist.rsample`` per
    example.  ``train``/``val``: whole-dataset tensors ``(input_ids, attention_mask, labels)``
    (or ``(input_ids, labels)``, a ``TensorDataset`` or a dict), batched and shuffled here with
    ``config.batch_size``; or any re-iterable of such batches.  ``loss_fn(output, labels)``
    defaults to :func:`default_loss`.  On return ``dist`` holds the best-validation state (the
    last state when ``val`` is ``None``); the model is unchanged, with its flags and grads restored.
    Raises ``RuntimeError`` if any model parameter receives a gradient.
    """
    config = DeviceConfig() if config is None else config
    if not isinstance(dist, UserDistribution):
        raise InputError(f"dist must be a UserDistribution module, got {type(dist).__name__}")
    model_ids = {id(p) for p in model.parameters()}
    params = [p for p in dist.parameters() if p.requires_grad]
    if any(id(p) in model_ids for p in params):
        raise RuntimeError("the user distribution shares parameters with the cloud model, which must stay frozen")

    def forward(ids, mask):
        emb = dist.rsample((ids.shape[0],))
        return model(ids, attention_mask=mask, user_embedding=emb)

    with frozen(model) as model_params:
        def after_backward():
            for p in model_params:
                if p.grad is not None:
                    raise RuntimeError("a cloud-model parameter received a gradient during on-device training")

        out = _fit(params, forward, train, val, config, loss_fn, dist.parameter_vector, after_backward,
                   get_state=lambda: {k: v.detach().clone() for k, v in dist.state_dict().items()},
                   set_state=dist.load_state_dict, train_mode=lambda on: None, progress=progress,
                   desc=f"device ({dist.family})")
    return DeviceResult(export=dist.export(), **out)


def train_static_embedding(model: nn.Module, embedding: StaticUserEmbedding, train, val=None,
                           config: DeviceConfig | None = None, loss_fn: Callable = default_loss,
                           progress: bool = False) -> DeviceResult:
    """The ID-equivalent baseline: train one fixed vector per user (no sampling), model frozen."""
    if not isinstance(embedding, StaticUserEmbedding):
        raise InputError(f"embedding must be a StaticUserEmbedding, got {type(embedding).__name__}")
    return train_user_distribution(model, embedding, train, val, config, loss_fn, progress)


def full_finetune_on_device(model_copy: nn.Module, train, val=None, config: DeviceConfig | None = None,
                            loss_fn: Callable = default_loss, progress: bool = False) -> DeviceResult:
    """On-device full fine-tuning baseline: train every trainable parameter of ``model_copy`` in place.

    The model is called without a user embedding (``model(input_ids, attention_mask=mask)``), in
    train mode for steps and eval mode for validation; the best-validation weights are restored.
    The trajectory is over all trainable model parameters (constrained = unconstrained);
    ``export`` is empty.  Pass a copy (``copy.deepcopy(cloud_model)``): the argument is modified.
    """
    config = DeviceConfig() if config is None else config
    params = [p for p in model_copy.parameters() if p.requires_grad]
    was_training = model_copy.training

    def forward(ids, mask):
        return model_copy(ids, attention_mask=mask)

    out = _fit(params, forward, train, val, config, loss_fn,
               constrained=None,
               after_backward=lambda: None,
               get_state=lambda: copy.deepcopy(model_copy.state_dict()),
               set_state=model_copy.load_state_dict, train_mode=model_copy.train,
               progress=progress, desc="device (full fine-tuning)")
    model_copy.train(was_training)
    return DeviceResult(export={}, **out)
