"""One seeding helper for the whole project (scikit-learn's ``check_random_state`` semantics).

``None`` -> fresh OS entropy, an int -> a new seeded Generator, a Generator -> itself.  Torch code
takes a ``torch.Generator`` derived from it (:func:`torch_generator`), never the global seed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_random_state", "seed_int", "torch_generator"]


def check_random_state(seed) -> np.random.Generator:
    """A ``numpy.random.Generator`` from ``None`` (fresh entropy), an int, or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        return np.random.default_rng(seed)
    raise ValueError(f"random_state must be None, an int or a numpy Generator, got {type(seed).__name__}")


def seed_int(random_state, bits: int = 63) -> int:
    """A non-negative int seed drawn from ``random_state`` (ints pass through unchanged)."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    return int(check_random_state(random_state).integers(2**bits - 1))


def torch_generator(random_state):
    """A ``torch.Generator`` seeded from ``random_state`` (imports torch lazily)."""
    import torch

    gen = torch.Generator()
    gen.manual_seed(seed_int(random_state))
    return gen
