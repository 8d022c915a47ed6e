"""All users' on-device distribution training in one batched loop (exactly per-user training).

Each device ``u`` minimizes its own loss ``L_u(phi_u) = mean_{(x,y) in D_u} -log p(y | x, e)``,
``e = T_{phi_u}(eps)``, against the **frozen** cloud model.  The users' parameters are independent,
so we hold them stacked in one module of ``n_users * n_tokens`` token rows and minimize
``sum_u L_u(phi_u)``: the gradient block of user ``u`` is exactly ``grad L_u(phi_u)``.  Clipping
is applied **per user** (``g_u <- g_u * min(1, c / (||g_u|| + 1e-6))``, as ``clip_grad_norm_``),
and AdamW (Loshchilov and Hutter 2019) acts element-wise with a shared step count, so one
optimizer over the stack performs every user's AdamW update at once.  Early stopping keeps, per
user, the parameters of the best validation loss, evaluated after each epoch (and at the start
only with ``eval_at_start``, as in :class:`idfree_core.device.DeviceConfig`: by default every
user leaves the common initialization, so no two static embeddings coincide).

All users take the same number of steps ``S = min(max_steps, epochs * ceil(median |D_u| / b))``;
a user cycles through reshuffled passes of its own data (small users repeat documents).  The same
``S``, lr and clip for everyone is what the proximity bound assumes.  Trajectories (per step,
from the common start, names as in :class:`idfree_core.device.DeviceResult`): ``trajectory_``
``||theta_u - theta_0||_2`` on the constrained parameters, ``trajectory_unconstrained_`` and
``trajectory_unconstrained_inf_`` the L2 and max norms of ``phi_u - phi_0``.
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


@dataclass(frozen=True)
class FleetConfig:
    """Device-side training settings shared by all users (reference lr is 5e-5 for pretrained LMs)."""

    lr: float = 3e-2
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    epochs: int = 20
    max_steps: int | None = None
    batch_size: int = 8
    val_samples: int = 2
    eval_at_start: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("lr", "clip_norm", "epochs", "batch_size", "val_samples"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InputError(f"device {name} must be positive, got {v!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"device max_steps must be >= 1, got {self.max_steps!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class Fleet:
    """``n_users`` user distributions of one family, stacked (``n_users * n_tokens`` token rows)."""

    def __init__(self, family: str, n_users: int, n_tokens: int, dim: int, **init):
        self.family, self.n_users, self.n_tokens, self.dim, self.init = family, n_users, n_tokens, dim, init
        self.stack = make_user_distribution(family, n_users * n_tokens, dim, **init)
        self._phi0, self._theta0 = self._phi().clone(), self._theta().clone()

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
    def _per_user_loss(self, model, ids, mask, labels, codes, grad: bool, repeats: int = 1):
        rows = np.repeat(np.arange(len(codes)), repeats)
        emb = self.sample_rows(codes[rows], grad=grad)
        lab = None if labels is None else labels[rows]
        per_row = model.loss(ids[rows], mask[rows], lab, emb, reduction="none")
        sums = torch.zeros(self.n_users).index_add(0, torch.as_tensor(codes[rows]), per_row)
        counts = torch.bincount(torch.as_tensor(codes[rows]), minlength=self.n_users).clamp_min(1)
        return sums / counts

    def fit(self, model: nn.Module, train, val, config: FleetConfig, progress: bool = False) -> "Fleet":
        """Train every user's distribution against the frozen ``model``.

        ``train``/``val``: ``(input_ids, attention_mask, labels|None, user_codes ndarray)``.
        Sets the trajectories ``(n_users, steps + 1)`` (column 0: the state before training; the
        path actually taken, before the best state is restored), ``val_loss_`` ``(n_users,)``, ``steps_``.
        """
        ids, mask, labels, codes = train
        counts = np.bincount(codes, minlength=self.n_users)
        if np.any(counts == 0):
            raise InputError("every user needs at least one device-training document")
        b = config.batch_size
        per_epoch = max(1, math.ceil(float(np.median(counts)) / b))
        steps = per_epoch * config.epochs
        if config.max_steps is not None:
            steps = min(steps, config.max_steps)
        rng = np.random.default_rng(config.seed)
        # index stream per user: concatenated reshuffled passes over its own documents
        by_user = [np.flatnonzero(codes == u) for u in range(self.n_users)]
        stream = np.stack([np.concatenate([rng.permutation(r) for _ in range(math.ceil(steps * b / len(r)))])
                           [: steps * b] for r in by_user])
        model.eval()
        model.zero_grad(set_to_none=True)
        frozen = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        params = list(self.stack.parameters())
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        user_codes = np.repeat(np.arange(self.n_users), b)
        torch.manual_seed(config.seed)
        if config.eval_at_start:
            best_loss = self._val_loss(model, val, config)
        else:
            best_loss = torch.full((self.n_users,), math.inf)
        best = [p.detach().clone() for p in params]
        traj = [self.distances()]  # per step: (unconstrained L2, unconstrained inf, constrained L2)
        try:
            for s in tqdm(range(steps), desc=f"devices ({self.family})", disable=not progress, leave=False):
                rows = stream[:, s * b:(s + 1) * b].reshape(-1)
                emb = self.sample_rows(user_codes, grad=True)
                lab = None if labels is None else labels[rows]
                per_row = model.loss(ids[rows], mask[rows], lab, emb, reduction="none")
                loss = per_row.view(self.n_users, b).mean(1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                self._clip_per_user(params, config.clip_norm)
                opt.step()
                traj.append(self.distances())
                if (s + 1) % per_epoch == 0 or s + 1 == steps:
                    vl = self._val_loss(model, val, config)
                    better = vl < best_loss
                    best_loss = torch.where(better, vl, best_loss)
                    for p, bp in zip(params, best):
                        bp.view(self.n_users, -1)[better] = p.detach().view(self.n_users, -1)[better]
        finally:
            for p, f in zip(model.parameters(), frozen):
                p.requires_grad_(f)
        assert all(p.grad is None for p in model.parameters()), "the cloud model must stay frozen"
        with torch.no_grad():
            for p, bp in zip(params, best):
                p.copy_(bp)
        self.trajectory_unconstrained_ = np.stack([t[0] for t in traj], 1)
        self.trajectory_unconstrained_inf_ = np.stack([t[1] for t in traj], 1)
        self.trajectory_ = np.stack([t[2] for t in traj], 1)
        self.val_loss_ = best_loss.numpy()
        self.steps_ = steps
        return self

    @torch.no_grad()
    def _val_loss(self, model, val, config: FleetConfig) -> torch.Tensor:
        ids, mask, labels, codes = val
        return self._per_user_loss(model, ids, mask, labels, codes, grad=False, repeats=config.val_samples)

    def _clip_per_user(self, params, clip: float) -> None:
        grads = [p.grad.view(self.n_users, -1) for p in params if p.grad is not None]
        norm = torch.sqrt(sum((g ** 2).sum(1) for g in grads))
        factor = (clip / (norm + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(factor[:, None])
