"""``PointMass``: the Dirac delta of the static (ID-equivalent) baseline, as a torch Distribution."""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, constraints

__all__ = ["PointMass"]


class PointMass(Distribution):
    """Dirac delta at ``value`` with ``event_dim`` event dimensions (cf. ``pyro.distributions.Delta``).

    ``rsample`` returns ``value`` broadcast (its gradient w.r.t. ``value`` is the identity);
    ``log_prob`` is ``0`` at the atom and ``-inf`` elsewhere (density w.r.t. counting measure).
    """

    arg_constraints = {"value": constraints.real}
    support = constraints.real
    has_rsample = True

    def __init__(self, value: torch.Tensor, event_dim: int = 2, validate_args=None):
        self.value = value
        batch_shape = value.shape[: value.dim() - event_dim]
        event_shape = value.shape[value.dim() - event_dim:]
        self._event_dim = event_dim
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.value

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.value)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        return self.value.expand(shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._event_dim == 0:
            equal = value == self.value
        else:
            equal = (value == self.value).flatten(value.dim() - self._event_dim).all(-1)
        return torch.where(equal, 0.0, -math.inf).to(self.value.dtype)

    def entropy(self) -> torch.Tensor:
        return torch.zeros(self.batch_shape, dtype=self.value.dtype)
