"""Evaluation batches are sized by the logits they hold, and batching does not change the answer."""

import numpy as np
import torch

from idfree_core import evaluation
from idfree_core.models import CompactTransformer
from idfree_core.stages import Encoded


def _encoded(n=37, length=12, vocab=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[::3, -4:] = 0
    return Encoded(ids, mask, None, np.repeat(np.arange(4), [10, 9, 9, 9]), tuple("t" for _ in range(n)))


def test_eval_rows_respects_the_logit_budget_for_a_big_vocabulary():
    big = CompactTransformer(vocab_size=49_152, d_model=8, n_layers=1, n_heads=2, task="next_token")
    rows = evaluation.eval_rows(big, seq_len=64)
    assert rows * (64 + 8) * 49_152 <= evaluation.LOGIT_BUDGET
    assert rows >= 1
    small = CompactTransformer(vocab_size=50, d_model=8, n_layers=1, n_heads=2, task="classify", n_classes=3)
    assert evaluation.eval_rows(small, seq_len=64) == evaluation.MAX_EVAL_ROWS
    assert evaluation.output_width(big) == 49_152 and evaluation.output_width(small) == 3


def test_small_batches_give_the_same_predictions(monkeypatch):
    torch.manual_seed(0)
    model = CompactTransformer(vocab_size=300, d_model=16, n_layers=1, n_heads=2, task="next_token")
    test = _encoded()
    emb = torch.randn(len(test.codes), 16, generator=torch.Generator().manual_seed(1))
    users = ["a", "b", "c", "d"]
    whole = evaluation.evaluate(model, test, emb, users)
    monkeypatch.setattr(evaluation, "LOGIT_BUDGET", 300 * 20 * 5)  # 5 rows a batch at 12 + 8 positions
    assert evaluation.eval_rows(model, test.ids.shape[1]) == 5
    parts = evaluation.evaluate(model, test, emb, users)
    np.testing.assert_array_equal(whole.correct, parts.correct)
    np.testing.assert_allclose(whole.entropy, parts.entropy, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(whole.user, parts.user)
