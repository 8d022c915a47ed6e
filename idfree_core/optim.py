"""The one AdamW-with-clipping step of the project and the one Adam step bound.

:func:`clipped_step`: ``zero_grad -> backward -> clip -> step`` shared by central training, cloud
fine-tuning and the device trainer (AdamW, Loshchilov and Hutter 2019).  Clipping is global
(``torch.nn.utils.clip_grad_norm_``) or per group of rows (``rows=n``: each of ``n`` users'
gradient blocks rescaled by ``min(1, c / (||g_u|| + 1e-6))``, the same formula per user).

:func:`adam_step_bounds`: the per-coordinate bound on Adam's update at step ``t`` (eps -> 0),
``|Delta_t| <= lr * c_t`` for *any* gradients, by Cauchy-Schwarz on the two moving averages
(``r = b1^2 / b2 < 1``):

    c_t = (1 - b1) sqrt(1 - b2^t) sqrt((1 - r^t) / (1 - r)) / ((1 - b1^t) sqrt(1 - b2)),

with ``c_1 = 1`` and ``sup_t c_t`` about 7.27 for the default betas (0.9, 0.999).  Clipping does
not enter (Adam is invariant to the gradient scale); decoupled weight decay adds
``lr * wd * |phi|``.  ``privacy_audit.proximity`` imports it from here.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["adam_step_bounds", "adam_step_sup", "adamw_step_bound", "clipped_step"]


def adam_step_bounds(steps: int, betas=(0.9, 0.999)) -> np.ndarray:
    """``c_t`` for ``t = 1..steps``: ``|Adam step_t| <= lr * c_t`` per coordinate, any gradients."""
    b1, b2 = betas
    t = np.arange(1, steps + 1, dtype=np.float64)
    gamma = b1 * b1 / b2
    geo = t if gamma == 1 else (1 - gamma**t) / (1 - gamma)
    return (1 - b1) * np.sqrt(-np.expm1(t * np.log(b2))) * np.sqrt(geo) / ((1 - b1**t) * math.sqrt(1 - b2))


def adam_step_sup(betas=(0.9, 0.999)) -> float:
    """``sup_t c_t`` (over the first 200,000 steps and the ``t -> inf`` limit); needs ``b1^2 < b2``."""
    b1, b2 = betas
    r = b1 ** 2 / b2
    if not r < 1:
        raise ValueError("the Adam step bound needs beta1**2 < beta2")
    return max(float(adam_step_bounds(200_000, betas).max()), (1 - b1) / math.sqrt((1 - b2) * (1 - r)))


def adamw_step_bound(lr: float, n_params: int, betas=(0.9, 0.999), weight_decay: float = 0.0,
                     param_norm: float = 0.0) -> float:
    """Worst-case L2 norm of one AdamW update of ``n_params`` coordinates, any gradients (eps -> 0)."""
    return lr * (adam_step_sup(betas) * math.sqrt(n_params) + weight_decay * param_norm)


def clipped_step(opt, params, loss, clip_norm: float | None, rows: int | None = None,
                 after_backward=None, skip_nonfinite: bool = False):
    """One ``zero_grad -> backward -> clip -> step``; returns the pre-clipping gradient norm(s).

    ``rows=None``: one global norm (``clip_grad_norm_``); ``rows=n``: every parameter's first
    dimension holds ``n`` groups (users), each clipped on its own; returns ``(n,)`` norms.
    ``after_backward()`` runs between backward and clipping (e.g. a frozen-model check).
    ``skip_nonfinite``: no step when a norm is not finite (the returned norm says so).
    """
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    if after_backward is not None:
        after_backward()
    clip = math.inf if clip_norm is None else float(clip_norm)
    if rows is None:
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
    else:
        grads = [p.grad.view(rows, -1) for p in params if p.grad is not None]
        norm = torch.sqrt(sum((g ** 2).sum(1) for g in grads))
        factor = (clip / (norm + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(factor[:, None])
    if skip_nonfinite and not bool(torch.isfinite(norm).all()):
        return norm
    opt.step()
    return norm
