"""The one on-device trainer: every user's distribution trained in one batched loop (exactly per user).

Each device ``u`` minimizes its own loss ``L_u(phi_u) = mean_{(x,y) in D_u} -log p(y | x, e)``,
``e = T_{phi_u}(eps)``, against the **frozen** cloud model (no parameter of it may receive a
gradient; checked after every backward, :func:`idfree_core.objective.frozen`).  The users'
parameters are independent, so we hold them stacked in one module of ``n_users * n_tokens`` token
rows and minimize ``sum_u L_u(phi_u)``: the gradient block of user ``u`` is exactly
``grad L_u(phi_u)``.  Clipping is applied **per user** (``g_u <- g_u * min(1, c / (||g_u|| + 1e-6))``,
as ``clip_grad_norm_``), and AdamW (Loshchilov and Hutter 2019) acts element-wise with a shared
step count, so one optimizer over the stack performs every user's AdamW update at once
(:func:`idfree_core.optim.clipped_step`).  A single user is a fleet of one (:meth:`Fleet.of`).

All users take the same number of steps ``S = min(max_steps, epochs * ceil(median |D_u| / b))``;
a user cycles through (reshuffled, unless ``shuffle=False``) passes of its own data (small users
repeat documents).  The same ``S``, lr and clip for everyone is what the proximity bound assumes.
Early stopping (Prechelt 1998) keeps, per user, the parameters of the best validation loss,
evaluated after each epoch (and at the start only with ``eval_at_start``: by default every user
leaves the common initialization, so no two static embeddings coincide); with ``patience`` the
loop stops once every user went that many evaluations without improving.  A step whose gradient
is not finite for some user is skipped for all (counted in ``skipped_steps_``).

Records (per user, per step taken, the path actually followed before the best state is restored):
``trajectory_`` ``||theta_u - theta_0||_2`` on the constrained parameters, ``trajectory_unconstrained_``
and ``trajectory_unconstrained_inf_`` the L2 and max norms of ``phi_u - phi_0`` (column 0: the
start), ``step_norm_`` ``||phi_t - phi_{t-1}||_2``, ``grad_norm_`` before clipping, ``train_loss_``,
``val_history_`` (one column per evaluation), ``val_loss_`` and ``best_step_``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from idfree_core.distributions import UserDistribution, make_user_distribution, to_user_distributions
from idfree_core.errors import InputError
from idfree_core.objective import default_loss, frozen, seeded
from idfree_core.optim import clipped_step
from idfree_core.seeding import check_random_state

__all__ = ["DeviceConfig", "FleetConfig", "Fleet"]


@dataclass(frozen=True)
class DeviceConfig:
    """On-device training settings, shared by all users (the one config; ``SimulationConfig.device_*``
    are its flat names).  Defaults are tuned for the compact model trained from scratch;
    :meth:`reference` gives the authors' values for pretrained LMs (lr 5e-5, 20 epochs).

    ``clip_norm=None``: no clipping.  ``max_steps``: cap on optimizer steps.  ``patience``: stop
    after that many evaluations without improvement for every user (``None``: run all epochs,
    still restoring the best).  ``val_samples``: fresh samples per validation document.
    """

    lr: float = 3e-2
    weight_decay: float = 0.0
    clip_norm: float | None = 5.0
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 8
    patience: int | None = None
    val_samples: int = 2
    eval_at_start: bool = False
    shuffle: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        def num(v):
            return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)

        def count(v, none_ok=False):
            return (none_ok and v is None) or (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1)

        checks = {
            "lr": (num(self.lr) and self.lr > 0, "a finite number > 0"),
            "weight_decay": (num(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            "clip_norm": (self.clip_norm is None or (num(self.clip_norm) and self.clip_norm > 0), "> 0 or None"),
            "epochs": (count(self.epochs), "a positive integer"),
            "batch_size": (count(self.batch_size), "a positive integer"),
            "val_samples": (count(self.val_samples), "a positive integer"),
            "max_steps": (count(self.max_steps, True), "a positive integer or None"),
            "patience": (count(self.patience, True), "a positive integer or None"),
            "seed": (isinstance(self.seed, (int, np.integer)) and not isinstance(self.seed, bool), "an integer"),
        }
        for name, (ok, want) in checks.items():
            if not ok:
                raise InputError(f"DeviceConfig.{name} must be {want}, got {getattr(self, name)!r}")

    @classmethod
    def reference(cls, **overrides) -> "DeviceConfig":
        """The authors' settings for pretrained LMs: lr 5e-5, weight decay 0, clip 5, 20 epochs, batch 8."""
        return cls(**{"lr": 5e-5, "epochs": 20, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


FleetConfig = DeviceConfig  # the former name of the same config


class Fleet:
    """``n_users`` user distributions of one family, stacked (``n_users * n_tokens`` token rows)."""

    def __init__(self, family: str, n_users: int, n_tokens: int, dim: int, **init):
        self.family, self.n_users, self.n_tokens, self.dim, self.init = family, n_users, n_tokens, dim, init
        self._single = None
        self.stack = make_user_distribution(family, n_users * n_tokens, dim, **init)
        self._phi0, self._theta0 = self._phi().clone(), self._theta().clone()

    @classmethod
    def of(cls, dist: UserDistribution) -> "Fleet":
        """A fleet of one user wrapping ``dist`` itself (trained in place)."""
        if not isinstance(dist, UserDistribution):
            raise InputError(f"dist must be a UserDistribution module, got {type(dist).__name__}")
        fleet = cls.__new__(cls)
        fleet.family, fleet.n_users, fleet.n_tokens, fleet.dim, fleet.init = dist.family, 1, dist.n_tokens, dist.dim, {}
        fleet.stack = fleet._single = dist
        fleet._phi0, fleet._theta0 = fleet._phi().clone(), fleet._theta().clone()
        return fleet

    # ------------------------------------------------------------------ sampling
    def sample_rows(self, codes: np.ndarray | torch.Tensor, grad: bool = False) -> torch.Tensor:
        """One fresh sample per row from the distribution of user ``codes[row]``: ``(R, n_tokens, d)``."""
        codes = torch.as_tensor(np.asarray(codes), dtype=torch.long)
        counts = torch.bincount(codes, minlength=self.n_users)
        order = torch.argsort(codes, stable=True)
        start = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(codes)
        rank[order] = torch.arange(len(codes)) - start[codes[order]]
        m = int(counts.max()) if len(codes) else 0
        # draw (chunk, n_users) at a time so that one very active user does not blow up memory
        chunk = max(1, min(m, 65536 // max(1, self.n_users)))
        out = []
        with torch.set_grad_enabled(grad):
            for r0 in range(0, m, chunk):
                size = min(chunk, m - r0)
                draws = self.stack.rsample((size,)).view(size, self.n_users, self.n_tokens, self.dim)
                sel = (rank >= r0) & (rank < r0 + size)
                out.append((torch.nonzero(sel).squeeze(1), draws[rank[sel] - r0, codes[sel]]))
            if len(out) == 1:
                return out[0][1]
            result = torch.empty(len(codes), self.n_tokens, self.dim, dtype=out[0][1].dtype)
            return result.index_put((torch.cat([i for i, _ in out]),), torch.cat([d for _, d in out]))

    def module_for(self, u: int) -> UserDistribution:
        """User ``u``'s distribution as a stand-alone ``UserDistribution`` (same parameters)."""
        if self._single is not None:
            return self._single
        mod = make_user_distribution(self.family, self.n_tokens, self.dim, **self.init)
        rows = slice(u * self.n_tokens, (u + 1) * self.n_tokens)
        mod.load_state_dict({k: v[rows].clone() for k, v in self.stack.state_dict().items()})
        return mod

    def export(self, users):
        """``uploads.UserDistributions`` with one row per user."""
        return to_user_distributions(users, [self.module_for(u) for u in range(self.n_users)])

    def _phi(self) -> torch.Tensor:
        """Unconstrained trainable parameters per user: ``(n_users, P)``."""
        return torch.cat([p.detach().view(self.n_users, -1) for p in self.stack.parameters()], 1)

    def _theta(self) -> torch.Tensor:
        """Constrained parameters per user (``parameter_vector`` order): ``(n_users, Q)``."""
        with torch.no_grad():
            c = self.stack.constrained()
            return torch.cat([c[k].detach().view(self.n_users, -1) for k in self.stack.arg_constraints], 1)

    def distances(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per user: ``||phi_u - phi_0||_2``, ``||phi_u - phi_0||_inf`` and ``||theta_u - theta_0||_2``."""
        diff = self._phi() - self._phi0
        return (diff.norm(dim=1).numpy(), diff.abs().amax(dim=1).numpy(),
                (self._theta() - self._theta0).norm(dim=1).numpy())

    # ------------------------------------------------------------------ training
    def _user_losses(self, model, ids, mask, labels, codes, emb, loss_fn) -> torch.Tensor:
        """Mean loss per user ``(n_users,)`` of rows ``ids`` (user ``codes``) with embeddings ``emb``."""
        codes_t = torch.as_tensor(np.asarray(codes))
        if loss_fn is None and hasattr(model, "loss"):
            per_row = model.loss(ids, mask, labels, emb, reduction="none")
            sums = torch.zeros(self.n_users, dtype=per_row.dtype).index_add(0, codes_t, per_row)
            return sums / torch.bincount(codes_t, minlength=self.n_users).clamp_min(1)
        fn = loss_fn or default_loss
        out = []
        for u in range(self.n_users):
            r = torch.nonzero(codes_t == u).squeeze(1)
            out.append(fn(model(ids[r], attention_mask=None if mask is None else mask[r], user_embedding=emb[r]),
                          labels[r]) if len(r) else torch.zeros((), dtype=emb.dtype))
        return torch.stack(out)

    def _batch_loss(self, model, ids, mask, labels, b, emb, loss_fn) -> torch.Tensor:
        """Mean training loss per user for a batch of ``b`` rows per user, grouped by user."""
        if loss_fn is None and hasattr(model, "loss"):
            return model.loss(ids, mask, labels, emb, reduction="none").view(self.n_users, b).mean(1)
        return self._user_losses(model, ids, mask, labels, np.repeat(np.arange(self.n_users), b), emb, loss_fn)

    def fit(self, model: nn.Module, train, val, config: DeviceConfig, progress: bool = False,
            loss_fn=None) -> "Fleet":
        """Train every user's distribution against the frozen ``model``; returns ``self``.

        ``train``/``val``: ``(input_ids, attention_mask | None, labels | None, user_codes ndarray)``;
        ``val=None`` keeps the last state.  ``loss_fn(output, labels)`` (mean loss of one user's
        rows) is used with ``model(ids, attention_mask=, user_embedding=)``; without it the model's
        own ``loss(ids, mask, labels, emb, reduction="none")`` is used (batched), or
        :func:`~idfree_core.objective.default_loss`.  Raises ``RuntimeError`` if a model parameter
        receives a gradient or is shared with the distributions.
        """
        ids, mask, labels, codes = train
        codes = np.asarray(codes)
        counts = np.bincount(codes, minlength=self.n_users)
        if len(counts) != self.n_users or np.any(counts == 0):
            raise InputError("every user needs at least one device-training document")
        b = config.batch_size
        per_epoch = max(1, math.ceil(float(np.median(counts)) / b))
        steps = per_epoch * config.epochs
        if config.max_steps is not None:
            steps = min(steps, config.max_steps)
        rng = check_random_state(int(config.seed))
        # index stream per user: concatenated (reshuffled) passes over its own documents
        by_user = [np.flatnonzero(codes == u) for u in range(self.n_users)]
        order = (lambda r: rng.permutation(r)) if config.shuffle else (lambda r: r)
        stream = np.stack([np.concatenate([order(r) for _ in range(math.ceil(steps * b / len(r)))])[: steps * b]
                           for r in by_user])
        params = [p for p in self.stack.parameters() if p.requires_grad]
        if not params:
            raise InputError("nothing to train (no parameter of the distribution requires a gradient)")
        if {id(p) for p in params} & {id(p) for p in model.parameters()}:
            raise RuntimeError("the user distribution shares parameters with the cloud model, which must stay frozen")
        user_codes = np.repeat(np.arange(self.n_users), b)
        U = self.n_users
        rec = {k: [] for k in ("step", "grad", "loss")}
        history, traj = [], [self.distances()]
        best_step = np.zeros(U, dtype=np.int64)
        bad = np.zeros(U, dtype=np.int64)
        taken = skipped = evals = 0
        self.stopped_early_ = False
        with frozen(model) as model_params, seeded(config.seed):
            def check_frozen():
                if any(p.grad is not None for p in model_params):
                    raise RuntimeError("a cloud-model parameter received a gradient during on-device training")

            opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
            best_loss = torch.full((U,), math.inf)
            if config.eval_at_start and val is not None:
                best_loss = self._val_loss(model, val, config, loss_fn)
                history.append(best_loss.numpy())
            best = [p.detach().clone() for p in params]
            prev = self._phi()
            for s in tqdm(range(steps), desc=f"devices ({self.family})", disable=not progress, leave=False):
                rows = stream[:, s * b:(s + 1) * b].reshape(-1)
                emb = self.sample_rows(user_codes, grad=True)
                lab = None if labels is None else labels[rows]
                loss_u = self._batch_loss(model, ids[rows], None if mask is None else mask[rows], lab, b, emb, loss_fn)
                norm = clipped_step(opt, params, loss_u.sum(), config.clip_norm, rows=U,
                                    after_backward=check_frozen, skip_nonfinite=True)
                if not bool(torch.isfinite(norm).all()):  # e.g. a sample at the edge of the support
                    skipped += 1
                    continue
                taken += 1
                cur = self._phi()
                rec["step"].append((cur - prev).norm(dim=1).numpy())
                rec["grad"].append(norm.detach().numpy())
                rec["loss"].append(loss_u.detach().numpy())
                prev = cur
                traj.append(self.distances())
                if (s + 1) % per_epoch == 0 or s + 1 == steps:
                    evals += 1
                    if val is None:
                        continue
                    vl = self._val_loss(model, val, config, loss_fn)
                    history.append(vl.numpy())
                    better = vl < best_loss  # a NaN validation loss never counts as an improvement
                    best_loss = torch.where(better, vl, best_loss)
                    best_step[better.numpy()] = taken
                    bad = np.where(better.numpy(), 0, bad + 1)
                    for p, bp in zip(params, best):
                        bp.view(U, -1)[better] = p.detach().view(U, -1)[better]
                    if config.patience is not None and np.all(bad >= config.patience):
                        self.stopped_early_ = s + 1 < steps
                        break
        if val is not None:
            with torch.no_grad():
                for p, bp in zip(params, best):
                    p.copy_(bp)
        else:
            best_step[:] = taken

        def cols(key):
            return np.stack(rec[key], 1).astype(np.float64) if rec[key] else np.zeros((U, 0))

        self.trajectory_unconstrained_ = np.stack([t[0] for t in traj], 1)
        self.trajectory_unconstrained_inf_ = np.stack([t[1] for t in traj], 1)
        self.trajectory_ = np.stack([t[2] for t in traj], 1)
        self.step_norm_, self.grad_norm_, self.train_loss_ = cols("step"), cols("grad"), cols("loss")
        self.val_history_ = np.stack(history, 1).astype(np.float64) if history else np.zeros((U, 0))
        self.val_loss_ = best_loss.numpy() if val is not None else np.full(U, math.nan)
        self.best_step_, self.steps_, self.skipped_steps_ = best_step, taken, skipped
        self.epochs_ = math.ceil(evals) if evals else 0
        self.n_params_ = int(sum(p[: self.n_tokens].numel() for p in params))
        return self

    @torch.no_grad()
    def _val_loss(self, model, val, config: DeviceConfig, loss_fn) -> torch.Tensor:
        ids, mask, labels, codes = val
        rows = np.repeat(np.arange(len(codes)), config.val_samples)
        emb = self.sample_rows(np.asarray(codes)[rows])
        return self._user_losses(model, ids[rows], None if mask is None else mask[rows],
                                 None if labels is None else labels[rows], np.asarray(codes)[rows], emb, loss_fn)
