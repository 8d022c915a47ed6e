"""One trainer: a batch of N users equals N batches of one; per-row sampling uses the right user."""

import numpy as np
import pytest
import torch

from idfree_core.device import train_static_embedding
from idfree_core.distributions import StaticUserEmbedding
from idfree_core.fleet import DeviceConfig, Fleet
from idfree_core.models import CompactTransformer

D = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model():
    torch.manual_seed(0)
    return CompactTransformer(30, d_model=D, n_heads=2, n_layers=1, max_len=16, n_classes=2).eval()


def _data(n_users=3, per_user=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 30, (n_users * per_user, 7), generator=g)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (n_users * per_user,), generator=g)
    codes = np.repeat(np.arange(n_users), per_user)
    return ids, mask, labels, codes


@pytest.mark.parametrize("clip", [1e-3, 5.0])
def test_batch_of_n_equals_n_batches_of_one(clip):
    """Static embeddings (no sampling noise), full-batch steps: the fleet of 3 follows exactly the
    paths of 3 fleets of one (``train_static_embedding`` is ``Fleet.of(embedding)``).

    A tiny clip makes clipping bind, so a global (not per-user) clip would fail this test.
    """
    model = _model()
    ids, mask, labels, codes = _data()
    steps = 8
    fleet = Fleet("static", 3, 1, D, init=0.1)
    cfg = DeviceConfig(lr=5e-2, clip_norm=clip, epochs=steps, batch_size=6, seed=1)
    fleet.fit(model, (ids, mask, labels, codes), (ids, mask, labels, codes), cfg)
    for u in range(3):
        rows = torch.as_tensor(np.flatnonzero(codes == u))
        emb = StaticUserEmbedding(1, D, init=0.1)
        res = train_static_embedding(model, emb, (ids[rows], mask[rows], labels[rows]), None,
                                     DeviceConfig(lr=5e-2, clip_norm=clip, epochs=steps, batch_size=6, shuffle=False))
        np.testing.assert_allclose(fleet.trajectory_unconstrained_[u, 1:], res.trajectory_unconstrained,
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(fleet.trajectory_[u, 1:], res.trajectory, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(fleet.grad_norm_[u], res.grad_norm, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(fleet.step_norm_[u], res.step_norm, rtol=1e-4, atol=1e-6)
    assert np.all(fleet.trajectory_[:, 0] == 0)


def test_one_user_fleet_with_the_model_loss_matches_the_generic_loss():
    """The batched ``model.loss`` path and the per-user ``loss_fn`` path train the same way."""
    model = _model()
    ids, mask, labels, codes = _data(n_users=1)
    cfg = DeviceConfig(lr=5e-2, epochs=3, batch_size=3, seed=2)
    a = Fleet("gaussian", 1, 1, D).fit(model, (ids, mask, labels, codes), (ids, mask, labels, codes), cfg)

    def loss_fn(logits, y):
        return torch.nn.functional.cross_entropy(logits, y)

    b = Fleet("gaussian", 1, 1, D).fit(model, (ids, mask, labels, codes), (ids, mask, labels, codes), cfg,
                                       loss_fn=loss_fn)
    np.testing.assert_allclose(a.trajectory_, b.trajectory_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.val_loss_, b.val_loss_, rtol=1e-4)


def test_model_stays_frozen_and_best_state_kept():
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    ids, mask, labels, codes = _data()
    fleet = Fleet("beta", 3, 1, D)
    fleet.fit(model, (ids, mask, labels, codes), (ids, mask, labels, codes), DeviceConfig(epochs=3, batch_size=4))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert fleet.trajectory_.shape == (3, fleet.steps_ + 1) and fleet.val_loss_.shape == (3,)
    dists = fleet.export([f"u{i}" for i in range(3)])
    assert dists.family == "beta" and dists.params["alpha"].shape == (3, D)


def test_sample_rows_draws_from_each_rows_user():
    fleet = Fleet("gaussian", 4, 2, 3, init_mean=0.0, init_std=0.01)
    with torch.no_grad():
        fleet.stack.mean.copy_(torch.arange(4.0).repeat_interleave(2)[:, None].expand(8, 3) * 10)
    codes = np.array([3, 0, 0, 2, 1, 3, 3, 0])
    draws = fleet.sample_rows(codes)
    assert draws.shape == (8, 2, 3)
    np.testing.assert_allclose(draws.mean(dim=(1, 2)).numpy(), codes * 10.0, atol=0.1)
    assert torch.unique(draws.reshape(8, -1), dim=0).shape[0] == 8  # fresh sample per row
    # per-user modules carry the same parameters as the stack
    mod = fleet.module_for(2)
    np.testing.assert_allclose(mod.export()["mean"], np.full(6, 20.0))


def test_sample_rows_with_one_very_active_user_is_chunked_but_exact():
    fleet = Fleet("gaussian", 4, 1, 2, init_mean=0.0, init_std=0.01)
    with torch.no_grad():
        fleet.stack.mean.copy_(torch.arange(4.0)[:, None].expand(4, 2) * 10)
    codes = np.concatenate([np.zeros(20000, dtype=int), [3, 1, 2, 3]])  # forces several draws of (chunk, n_users)
    draws = fleet.sample_rows(codes)
    np.testing.assert_allclose(draws.mean(dim=(1, 2)).numpy(), codes * 10.0, atol=0.1)
    assert torch.unique(draws.reshape(len(codes), -1), dim=0).shape[0] == len(codes)
