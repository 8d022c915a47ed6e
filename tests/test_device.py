"""On-device training of one user (the batched trainer with a batch of one): the cloud model stays
frozen, AdamW/clipping/early stopping behave as specified.

Tiny toy models (an embedding table and linear heads reading the user embedding) stand in for the
transformer, so every claim is checked exactly and fast.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.optimizer import register_optimizer_step_pre_hook

from idfree_core.device import (DeviceConfig, DeviceResult, adamw_step_bound, default_loss, frozen,
                                train_static_embedding, train_user_distribution)
from idfree_core.distributions import (BetaUserDistribution, GaussianUserDistribution, StaticUserEmbedding,
                                       make_user_distribution)
from idfree_core.errors import InputError

VOCAB, DIM, N_TOK = 12, 4, 2
FAMILIES = ["beta", "gaussian", "static"]


class Toy(nn.Module):
    """``logits = head(mean text embedding) + user_head(mean user token)``; next-token variant per position."""

    def __init__(self, task="classify", n_classes=2, user_gain=3.0, seed=0):
        super().__init__()
        out = VOCAB if task == "next_token" else n_classes
        self.task = task
        self.tok = nn.Embedding(VOCAB, DIM)
        self.head = nn.Linear(DIM, out)
        self.user_head = nn.Linear(DIM, out, bias=False)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            # class/token k's logit grows with k * sum(user embedding): the embedding matters
            self.user_head.weight.copy_(user_gain * torch.linspace(-1, 1, out)[:, None].expand(out, DIM))
        self.seen = []

    def forward(self, input_ids, attention_mask=None, user_embedding=None):
        self.seen.append((self.training, any(p.requires_grad for p in self.parameters())))
        h = self.tok(input_ids)
        user = 0.0 if user_embedding is None else self.user_head(user_embedding.mean(1))
        if self.task == "next_token":
            return self.head(h) + (user[:, None, :] if user_embedding is not None else 0.0)
        if attention_mask is not None:
            m = attention_mask[..., None].to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        else:
            pooled = h.mean(1)
        return self.head(pooled) + user


def _data(n=40, label=1, seed=0, T=5):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (n, T), generator=gen)
    mask = torch.ones(n, T, dtype=torch.long)
    mask[: n // 2, -2:] = 0
    return ids, mask, torch.full((n,), label, dtype=torch.long)


def _dist(family, **kw):
    return make_user_distribution(family, N_TOK, DIM, **kw)


@torch.no_grad()
def _expected_loss(model, dist, data, n_rep=20, seed=99):
    ids, mask, labels = data
    torch.manual_seed(seed)
    losses = [default_loss(model(ids, attention_mask=mask, user_embedding=dist.rsample((ids.shape[0],))), labels)
              for _ in range(n_rep)]
    return float(torch.stack(losses).mean())


FAST = DeviceConfig(lr=0.05, epochs=6, batch_size=8)


@pytest.mark.parametrize("family", FAMILIES)
def test_model_is_frozen_bit_for_bit(family):
    model = Toy()
    model.train()
    model.head.bias.requires_grad_(False)  # mixed flags must be restored as they were
    stale = torch.ones_like(model.tok.weight)
    model.tok.weight.grad = stale
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    dist = _dist(family)
    start = dist.parameter_vector().detach().clone()
    result = train_user_distribution(model, dist, _data(), _data(seed=1), FAST)
    assert result.steps == 30
    assert not torch.equal(dist.parameter_vector(), start)  # the distribution did move
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert model.tok.weight.grad is stale
    assert all(p.grad is None for n, p in model.named_parameters() if n != "tok.weight")
    assert model.training
    # during training the model was in eval mode with no trainable parameter
    assert model.seen and all(s == (False, False) for s in model.seen)


class Sneaky(Toy):
    """Re-enables a gradient on one of its own parameters inside forward."""

    def forward(self, input_ids, attention_mask=None, user_embedding=None):
        self.head.weight.requires_grad_(True)
        return super().forward(input_ids, attention_mask, user_embedding)


def test_assertion_fires_if_a_model_parameter_gets_a_gradient():
    model = Sneaky()
    with pytest.raises(RuntimeError, match="cloud-model parameter received a gradient"):
        train_user_distribution(model, _dist("gaussian"), _data(), None, FAST)
    assert all(p.requires_grad for p in model.parameters())  # flags restored after the failure
    assert model.head.weight.grad is None


def test_distribution_sharing_a_model_parameter_is_refused():
    model = Toy()
    dist = _dist("static")
    model.user = dist  # the distribution's parameter is now also a model parameter
    with pytest.raises(RuntimeError, match="shares parameters"):
        train_user_distribution(model, dist, _data(), None, FAST)


@pytest.mark.parametrize("family", FAMILIES)
def test_loss_decreases_when_the_embedding_matters(family):
    model = Toy()  # at the common initialization the user pathway favours class 1
    train, val = _data(label=0), _data(label=0, seed=1)
    dist = _dist(family)
    before = _expected_loss(model, dist, val)
    result = train_user_distribution(model, dist, train, val, FAST)
    after = _expected_loss(model, dist, val)
    assert after < before - 0.1, (before, after)
    assert result.train_loss[-5:].mean() < result.train_loss[:5].mean()
    # a user with the opposite labels moves the other way: the distribution carries the user
    other = _dist(family)
    train_user_distribution(model, other, _data(label=1), _data(label=1, seed=1), FAST)
    assert _expected_loss(model, other, val) > before > after


def test_clipping_is_applied_and_steps_are_bounded():
    model = Toy(user_gain=500.0)  # huge gradients: clipping is active
    dist = _dist("gaussian", train_std=True)
    clip = 0.5
    seen = []

    def hook(opt, args, kwargs):
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        cfg = DeviceConfig(lr=1e-3, clip_norm=clip, epochs=4)
        result = train_user_distribution(model, dist, _data(label=0), None, cfg)
    finally:
        handle.remove()
    assert len(seen) == result.steps == 20
    assert max(seen) <= clip * (1 + 1e-5)
    assert np.all(result.grad_norm > clip)  # the pre-clipping norms were larger
    n_params = dist.unconstrained_vector().numel()
    assert result.n_params == n_params == 2 * N_TOK * DIM
    bound = adamw_step_bound(cfg.lr, n_params)
    assert np.all(result.step_norm <= bound)
    assert np.all(result.trajectory_unconstrained <= bound * np.arange(1, result.steps + 1))
    per_coord = adamw_step_bound(cfg.lr, 1)  # the same bound coordinate-wise
    assert np.all(result.trajectory_unconstrained_inf <= per_coord * np.arange(1, result.steps + 1))
    assert result.step_norm[0] == pytest.approx(cfg.lr * math.sqrt(n_params), rel=1e-3)  # Adam's first step


def test_adamw_step_bound_holds_for_adversarial_gradients():
    gen = torch.Generator().manual_seed(0)
    p = nn.Parameter(torch.zeros(64))
    opt = torch.optim.AdamW([p], lr=1e-2, weight_decay=0.0)
    bound = adamw_step_bound(1e-2, 1)
    worst = 0.0
    for t in range(300):
        scale = 10.0 ** (6 * torch.rand(64, generator=gen) - 3)  # gradients from 1e-3 to 1e3
        # long quiet stretches then bursts maximise |m| / sqrt(v)
        g = scale * torch.sign(torch.randn(64, generator=gen)) * (1.0 if t % 50 == 49 else 1e-3)
        before = p.detach().clone()
        p.grad = g
        opt.step()
        worst = max(worst, float((p.detach() - before).abs().max()))
    assert worst <= bound
    assert worst > 1e-2  # the bound is not vacuous: single updates do exceed lr


def test_max_steps_and_trajectory_lengths():
    dist = _dist("beta")
    result = train_user_distribution(Toy(), dist, _data(), _data(seed=1), DeviceConfig(lr=0.01, max_steps=7))
    assert result.steps == 7 and result.epochs == 2  # 5 steps per epoch
    assert len(result.val_loss) == 2
    for arr in (result.trajectory, result.trajectory_unconstrained, result.trajectory_unconstrained_inf,
                result.step_norm, result.grad_norm, result.train_loss):
        assert arr.shape == (7,)
    assert np.all(result.trajectory_unconstrained_inf <= result.trajectory_unconstrained + 1e-12)


def test_trajectory_measures_distance_from_the_common_initialisation():
    dist = _dist("gaussian")  # std fixed: only the mean moves, constrained == unconstrained
    common = _dist("gaussian")
    result = train_user_distribution(Toy(), dist, _data(), None, DeviceConfig(lr=0.02, epochs=3))
    final = float((dist.parameter_vector() - common.parameter_vector()).detach().norm())
    assert result.trajectory[-1] == pytest.approx(final, rel=1e-5)
    assert result.trajectory_unconstrained[-1] == pytest.approx(
        float((dist.unconstrained_vector() - common.unconstrained_vector()).detach().norm()), rel=1e-5)
    np.testing.assert_allclose(result.trajectory, result.trajectory_unconstrained, rtol=1e-5)
    steps = np.diff(np.concatenate([[0.0], result.trajectory_unconstrained]))
    assert np.all(np.abs(steps) <= result.step_norm + 1e-6)  # triangle inequality


def test_early_stopping_restores_the_best_state():
    model = Toy()
    train, val = _data(label=1), _data(label=0, seed=1)  # training makes validation worse each epoch
    cfg = DeviceConfig(lr=0.05, epochs=10, patience=2)
    dist = _dist("gaussian")
    result = train_user_distribution(model, dist, train, val, cfg)
    assert result.stopped_early and result.epochs == 3 and result.steps == 15
    assert result.best_val_loss == result.val_loss.min() == result.val_loss[0]
    assert np.all(np.diff(result.val_loss) > 0)
    assert result.best_step == 5
    one_epoch = _dist("gaussian")
    train_user_distribution(model, one_epoch, train, val, DeviceConfig(lr=0.05, epochs=1))
    torch.testing.assert_close(dist.parameter_vector(), one_epoch.parameter_vector(), rtol=0, atol=0)
    for k, v in result.export.items():
        np.testing.assert_array_equal(v, dist.export()[k])
    assert result.trajectory.shape == (15,)  # the path actually taken is kept
    # with the initial state as a candidate, nothing beats it here: the common init is restored
    start = _dist("gaussian")
    at_start = train_user_distribution(model, start, train, val, DeviceConfig(lr=0.05, epochs=2, eval_at_start=True))
    assert at_start.best_step == 0 and at_start.val_loss.shape == (3,) and at_start.steps == 10
    assert torch.equal(start.parameter_vector(), _dist("gaussian").parameter_vector())
    assert at_start.best_val_loss == at_start.val_loss[0] < result.val_loss[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_result_and_global_rng_untouched(family):
    model, train, val = Toy(), _data(), _data(seed=1)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    runs = [train_user_distribution(model, _dist(family), train, val, DeviceConfig(lr=0.02, epochs=3, seed=s))
            for s in (1, 1, 2)]
    assert torch.equal(torch.get_rng_state(), state)
    a, b, c = runs
    np.testing.assert_array_equal(a.trajectory, b.trajectory)
    np.testing.assert_array_equal(a.val_loss, b.val_loss)
    for k in a.export:
        np.testing.assert_array_equal(a.export[k], b.export[k])
    assert not np.array_equal(a.train_loss, c.train_loss)


def test_next_token_default_loss_ignores_masked_positions():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 5, VOCAB, generator=gen)
    labels = torch.randint(0, VOCAB, (3, 5), generator=gen)
    labels[:, :2] = -100
    expected = F.cross_entropy(logits[:, 2:].reshape(-1, VOCAB), labels[:, 2:].reshape(-1))
    assert float(default_loss(logits, labels)) == pytest.approx(float(expected), rel=1e-6)
    # user tokens prepended as a prefix: the labels score the last positions only
    prefixed = torch.cat([torch.randn(3, 2, VOCAB, generator=gen), logits], 1)
    assert float(default_loss(prefixed, labels)) == pytest.approx(float(expected), rel=1e-6)

    model = Toy(task="next_token")
    ids = torch.randint(0, VOCAB, (16, 6), generator=gen)
    lm_labels = torch.roll(ids, -1, 1)
    lm_labels[:, -1] = -100
    dist = _dist("gaussian", train_std=True)
    before = _expected_loss(model, dist, (ids, None, lm_labels))
    result = train_user_distribution(model, dist, (ids, lm_labels), (ids, None, lm_labels),
                                     DeviceConfig(lr=0.05, epochs=5, batch_size=4))
    assert result.steps == 20 and math.isfinite(result.best_val_loss)
    assert _expected_loss(model, dist, (ids, None, lm_labels)) < before


def test_accepts_batches_datasets_and_dicts_equivalently():
    ids, mask, labels = _data(n=16)
    cfg = DeviceConfig(lr=0.02, epochs=2, shuffle=False)
    batches = [(ids[i:i + 8], mask[i:i + 8], labels[i:i + 8]) for i in (0, 8)]
    forms = [(ids, mask, labels), torch.utils.data.TensorDataset(ids, mask, labels),
             {"input_ids": ids, "attention_mask": mask, "labels": labels}, batches]
    exports = [train_user_distribution(Toy(), _dist("beta"), f, f, cfg).export for f in forms]
    for e in exports[1:]:
        np.testing.assert_array_equal(e["alpha"], exports[0]["alpha"])


def test_bad_inputs_raise_input_error():
    model = Toy()
    ids, mask, labels = _data()
    cases = [
        ((ids, mask, labels[:5]), "labels"),
        ((ids, mask[:, :2], labels), "attention_mask"),
        ([("not", "a", "batch")], "input_ids"),
        ([], "no batch"),
        (None, "no data"),
    ]
    for train, match in cases:
        with pytest.raises(InputError, match=match):
            train_user_distribution(model, _dist("gaussian"), train, None, FAST)
    with pytest.raises(InputError, match="UserDistribution"):
        train_user_distribution(model, nn.Linear(2, 2), (ids, mask, labels))
    with pytest.raises(InputError, match="StaticUserEmbedding"):
        train_static_embedding(model, _dist("gaussian"), (ids, mask, labels))
    for bad in (dict(lr=-1.0), dict(lr=math.nan), dict(clip_norm=0.0), dict(epochs=0), dict(batch_size=2.5),
                dict(max_steps=0), dict(patience=-1), dict(seed="x")):
        with pytest.raises(InputError, match="DeviceConfig") as info:
            DeviceConfig(**bad)
        assert "\n" not in str(info.value)


def test_static_embedding_baseline_and_result_serialisation():
    emb = StaticUserEmbedding(N_TOK, DIM)
    result = train_static_embedding(Toy(), emb, _data(), _data(seed=1), FAST)
    assert isinstance(result, DeviceResult)
    d = result.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["config"] == FAST.to_dict() and d["steps"] == result.steps
    assert list(d["export"]) == ["value"] and len(d["trajectory"]) == result.steps
    no_val = train_user_distribution(Toy(), BetaUserDistribution(N_TOK, DIM), _data(), None, FAST)
    assert math.isnan(no_val.best_val_loss) and no_val.best_step == no_val.steps
    assert no_val.to_dict()["best_val_loss"] is None and no_val.val_loss.shape == (0,)
    json.dumps(no_val.to_dict(), allow_nan=False)


def test_frozen_context_restores_on_error():
    model = Toy()
    with pytest.raises(KeyError):
        with frozen(model):
            assert not any(p.requires_grad for p in model.parameters()) and not model.training
            raise KeyError("boom")
    assert all(p.requires_grad for p in model.parameters()) and model.training


def test_beta_with_affine_map_trains():
    dist = BetaUserDistribution(N_TOK, DIM, loc=-1.0, scale=2.0)
    model = Toy()
    before = _expected_loss(model, dist, _data(seed=1))
    train_user_distribution(model, dist, _data(), _data(seed=1), FAST)
    assert _expected_loss(model, dist, _data(seed=1)) < before
    assert isinstance(dist, BetaUserDistribution) and dist.export_transform() is not None
    assert GaussianUserDistribution(N_TOK, DIM).export_transform() is None
