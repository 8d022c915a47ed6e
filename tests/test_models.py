"""Models: shapes, padding invariance, the user token's effect, ignored prefix labels, HF adapters."""

import pytest
import torch
import torch.nn.functional as F

from idfree_core.errors import InputError
from idfree_core.models import IGNORE_INDEX, CompactTransformer, HFAdapter, lm_labels

VOCAB, D = 40, 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(seed=0, b=3, length=9):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (b, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    ids = ids.masked_fill(mask == 0, 0)
    return ids, mask


def _compact(task="classify", position=None, seed=0):
    torch.manual_seed(seed)
    return CompactTransformer(VOCAB, d_model=D, n_heads=4, max_len=32, task=task, n_classes=3,
                              user_position=position).eval()


@pytest.mark.parametrize("position", ["append", "prepend"])
@pytest.mark.parametrize("n_tokens", [1, 3])
def test_classify_padding_invariance(position, n_tokens):
    model = _compact("classify", position)
    ids, mask = _batch()
    user = torch.randn(3, n_tokens, D)
    out = model(ids, mask, user)
    assert out.shape == (3, 3)
    for i in range(3):
        n = int(mask[i].sum())
        alone = model(ids[i:i + 1, :n], None, user[i:i + 1])
        torch.testing.assert_close(out[i], alone[0], atol=1e-5, rtol=1e-5)
    # without a user embedding too
    plain = model(ids, mask)
    torch.testing.assert_close(plain[2], model(ids[2:, :2])[0], atol=1e-5, rtol=1e-5)


def test_next_token_padding_invariance_and_shape():
    model = _compact("next_token")
    ids, mask = _batch()
    user = torch.randn(3, 5, D)
    out = model(ids, mask, user)
    assert out.shape == (3, 5 + 9, VOCAB)
    n = int(mask[1].sum())
    alone = model(ids[1:2, :n], None, user[1:2])
    torch.testing.assert_close(out[1, :5 + n], alone[0], atol=1e-5, rtol=1e-5)


def test_user_embedding_changes_output():
    model = _compact()
    ids, mask = _batch()
    g = torch.Generator().manual_seed(1)
    a = model(ids, mask, torch.randn(3, 1, D, generator=g))
    b = model(ids, mask, torch.randn(3, 1, D, generator=g))
    assert (a - b).abs().max() > 1e-3


def test_prefix_labels_ignored_and_loss_matches_manual():
    model = _compact("next_token")
    ids, mask = _batch()
    n = 5
    labels = lm_labels(ids, mask, n)
    assert (labels[:, :n] == IGNORE_INDEX).all()
    assert (labels[:, n:][mask == 0] == IGNORE_INDEX).all()
    user = torch.randn(3, n, D)
    logits = model(ids, mask, user)
    # manual shifted cross entropy over real text tokens only
    labels[:, n] = IGNORE_INDEX  # the first text token (<bos>) is not scored
    manual = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    torch.testing.assert_close(model.loss(ids, mask, None, user), manual)
    # the scored items are the real text tokens after the first, with or without the prefix
    correct, entropy = model.correct(ids, mask, None, user)
    assert correct.shape == (int(mask.sum()) - 3,) == entropy.shape
    assert model.correct(ids, mask)[0].shape == correct.shape


def test_classify_loss_and_gradient_reaches_user_embedding():
    model = _compact()
    ids, mask = _batch()
    user = torch.randn(3, 1, D, requires_grad=True)
    loss = model.loss(ids, mask, torch.tensor([0, 1, 2]), user)
    loss.backward()
    assert user.grad is not None and user.grad.abs().sum() > 0
    per = model.loss(ids, mask, torch.tensor([0, 1, 2]), user, reduction="none")
    assert per.shape == (3,)


@pytest.mark.parametrize("bad", [
    lambda m, ids, mask: m(ids, mask, torch.randn(2, 1, D)),  # wrong batch
    lambda m, ids, mask: m(ids, mask, torch.randn(3, 1, D + 1)),  # wrong width
    lambda m, ids, mask: m(ids, mask, torch.full((3, 1, D), float("nan"))),  # NaN
    lambda m, ids, mask: m(ids, mask.flip(1)),  # left padding
    lambda m, ids, mask: m(ids[0]),  # 1-D input
    lambda m, ids, mask: m(torch.randint(4, VOCAB, (1, 40))),  # longer than max_len
])
def test_bad_inputs_raise_input_error(bad):
    model = _compact()
    ids, mask = _batch()
    with pytest.raises(InputError):
        bad(model, ids, mask)


@pytest.mark.parametrize("kwargs", [dict(task="regress"), dict(n_classes=1), dict(user_position="middle"),
                                    dict(task="next_token", user_position="append")])
def test_bad_hyperparameters(kwargs):
    args = {"task": "classify", "n_classes": 3, **kwargs}
    with pytest.raises(InputError):
        CompactTransformer(VOCAB, d_model=D, **args)


def _tiny_hf(kind):
    import transformers as tf

    torch.manual_seed(0)
    if kind == "gpt2":
        return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=VOCAB, n_embd=D, n_layer=1, n_head=2, n_positions=64,
                                                bos_token_id=1, eos_token_id=2))
    if kind == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(vocab_size=VOCAB, hidden_size=D, intermediate_size=64,
                                                  num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                                  max_position_embeddings=64, bos_token_id=1, eos_token_id=2))
    if kind == "bert":  # encoder-only, like the MiniLM sentence encoder of docs/real_models.md
        return tf.BertModel(tf.BertConfig(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=1, num_attention_heads=2,
                                          intermediate_size=64, max_position_embeddings=64))
    if kind == "t5":
        return tf.T5ForConditionalGeneration(tf.T5Config(vocab_size=VOCAB, d_model=D, d_kv=16, d_ff=64, num_layers=1,
                                                         num_heads=2, decoder_start_token_id=0, pad_token_id=0))
    return tf.BartForConditionalGeneration(tf.BartConfig(
        vocab_size=VOCAB, d_model=D, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=2))


@pytest.mark.parametrize("kind", ["gpt2", "llama", "t5", "bart", "bert"])
def test_hf_adapter_classify(kind):
    adapter = HFAdapter(_tiny_hf(kind).eval(), "classify", n_classes=3).eval()
    assert adapter.d_model == D
    ids, mask = _batch()
    user = torch.randn(3, 1, D, requires_grad=True)
    out = adapter(ids, mask, user)
    assert out.shape == (3, 3)
    n = int(mask[2].sum())
    torch.testing.assert_close(out[2], adapter(ids[2:, :n], None, user[2:])[0], atol=1e-4, rtol=1e-4)
    adapter.loss(ids, mask, torch.tensor([0, 1, 2]), user).backward()
    assert user.grad.abs().sum() > 0
    assert (adapter(ids, mask, torch.randn(3, 1, D)) - out).abs().max() > 1e-4


@pytest.mark.parametrize("kind", ["gpt2", "llama", "t5", "bart"])
def test_hf_adapter_next_token(kind):
    adapter = HFAdapter(_tiny_hf(kind).eval(), "next_token").eval()
    ids, mask = _batch()
    user = torch.randn(3, 5, D, requires_grad=True)
    logits = adapter(ids, mask, user)
    assert logits.shape[-1] == VOCAB and logits.shape[0] == 3
    loss = adapter.loss(ids, mask, None, user)
    assert torch.isfinite(loss)
    loss.backward()
    assert user.grad.abs().sum() > 0
    correct, _ = adapter.correct(ids, mask, None, user)
    assert correct.shape == (int(mask.sum()) - 3,)  # real text tokens after the first; prefix never
    assert adapter.correct(ids, mask)[0].shape == correct.shape  # the same tokens without a prefix
