"""Models that read a sampled user embedding as extra input token(s) through ``inputs_embeds``.

IDfree-PL personalizes a shared model by feeding it ``e ~ q_u`` (a fresh sample of the user's
distribution, shape ``(n_tokens, d_model)``) as soft tokens beside the text embeddings:

* classification (reference setting): ``h = f([E(x_1..x_L); e])`` and ``p(y | x, e) =
  softmax(W h_last)`` where ``h_last`` is the hidden state at the *last real* position, i.e. the
  user token appended right after the last non-padding token (``user_position="append"``), or the
  last text token when the user tokens are a prefix (``"prepend"``);
* next-token prediction: ``[e; E(x)]`` with a causal mask; the loss is the usual shifted cross
  entropy with the prefix (and padding) label positions set to ``-100`` (ignored); the first
  text token (``<bos>``) is not scored either, so models with and without a prefix score the
  same tokens.

Inputs are right-padded (``attention_mask`` rows are 1...1 0...0).  Appended user tokens are
*scattered* to positions ``len_i .. len_i + n - 1`` of each row, so a padded row gives exactly the
output of the same row unpadded (tested).  :class:`CompactTransformer` is built here (token +
learned position embeddings, pre-LN ``nn.TransformerEncoder``); :class:`HFAdapter` gives the same
``forward``/``loss`` over any Hugging Face model accepting ``inputs_embeds`` (GPT-2, Llama, T5,
BART).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from idfree_core.errors import InputError

TASKS = ("classify", "next_token")
POSITIONS = ("append", "prepend")
IGNORE_INDEX = -100


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {list(choices)}, got {value!r}")


def _lengths(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if input_ids.ndim != 2:
        raise InputError(f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise InputError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape "
                         f"{tuple(input_ids.shape)}")
    mask = attention_mask.to(torch.long)
    lengths = mask.sum(1)
    expected = (torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] < lengths[:, None]).long()
    if not torch.equal(mask, expected):
        raise InputError("attention_mask must be right-padded (each row 1...1 then 0...0)")
    if bool((lengths == 0).any()):
        raise InputError("every sequence needs at least one real token")
    return mask, lengths


def combine_user_tokens(token_embeds: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor,
                        user_embedding: torch.Tensor | None, position: str):
    """Insert the user tokens into right-padded token embeddings.

    Returns ``(embeds (B, L+n, d), mask (B, L+n), last (B,), n)`` where ``last`` is the index of
    the last real position (read by the classification head).
    """
    if user_embedding is None:
        return token_embeds, mask, lengths - 1, 0
    b, length, d = token_embeds.shape
    if user_embedding.ndim == 2:  # one token per row
        user_embedding = user_embedding[:, None, :]
    if user_embedding.ndim != 3 or user_embedding.shape[0] != b or user_embedding.shape[2] != d:
        raise InputError(f"user_embedding must have shape (batch={b}, n_tokens, d_model={d}), "
                         f"got {tuple(user_embedding.shape)}")
    if not bool(torch.isfinite(user_embedding).all()):
        raise InputError("user_embedding contains NaN or infinite values")
    user_embedding = user_embedding.to(token_embeds.dtype)
    n = user_embedding.shape[1]
    ones = torch.ones(b, n, dtype=mask.dtype, device=mask.device)
    if position == "prepend":
        return (torch.cat([user_embedding, token_embeds], 1), torch.cat([ones, mask], 1), lengths + n - 1, n)
    if bool((lengths == length).all()):  # no padding (e.g. a single query): appending is a concatenation
        return torch.cat([token_embeds, user_embedding], 1), torch.cat([mask, ones], 1), lengths + n - 1, n
    j = torch.arange(length, device=mask.device)[None, :]
    text_target = torch.where(j < lengths[:, None], j, j + n)
    user_target = lengths[:, None] + torch.arange(n, device=mask.device)[None, :]
    index = torch.cat([text_target, user_target], 1)
    src = torch.cat([token_embeds, user_embedding], 1)
    embeds = torch.zeros_like(src).scatter(1, index[..., None].expand(-1, -1, d), src)
    new_mask = torch.zeros_like(torch.cat([mask, ones], 1)).scatter(1, index, torch.cat([mask, ones], 1))
    return embeds, new_mask, lengths + n - 1, n


def lm_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, n_prefix: int) -> torch.Tensor:
    """Labels aligned with ``[prefix; text]``: prefix and padding positions are ``-100``."""
    labels = input_ids.clone()
    if attention_mask is not None:
        labels = labels.masked_fill(attention_mask == 0, IGNORE_INDEX)
    pad = torch.full((input_ids.shape[0], n_prefix), IGNORE_INDEX, dtype=labels.dtype, device=labels.device)
    return torch.cat([pad, labels], 1)


class _UserTokenModel(nn.Module):
    """Shared loss / prediction logic; subclasses implement ``forward``."""

    task: str
    user_position: str

    def _check_user_position(self) -> None:
        if self.task == "next_token" and self.user_position != "prepend":
            raise InputError("next_token models take the user tokens as a prefix: user_position must be 'prepend'")

    def loss(self, input_ids, attention_mask=None, labels=None, user_embedding=None, reduction="mean"):
        """Cross entropy: class labels for ``classify``; shifted next tokens (prefix ignored) otherwise.

        With ``reduction="none"`` returns one loss per sequence (mean over its tokens).
        """
        logits = self(input_ids, attention_mask, user_embedding)
        if self.task == "classify":
            if labels is None:
                raise InputError("labels are required for the classify task")
            return F.cross_entropy(logits, labels, reduction=reduction)
        targets = self.token_targets(input_ids, attention_mask, user_embedding)
        per_tok = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none")
        valid = (targets != IGNORE_INDEX).to(per_tok.dtype)
        if reduction == "none":
            return (per_tok * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        return (per_tok * valid).sum() / valid.sum().clamp_min(1.0)

    def token_targets(self, input_ids, attention_mask, user_embedding):
        """Targets aligned with ``forward``'s next-token logits (``-100`` = not scored).

        The first text token (``<bos>`` in our corpora) is never scored, so a model with a user
        prefix and one without score exactly the same tokens ``x_1 .. x_{L-1}``.
        """
        n = 0 if user_embedding is None else (1 if user_embedding.ndim == 2 else user_embedding.shape[1])
        labels = lm_labels(input_ids, attention_mask, n)
        labels[:, n] = IGNORE_INDEX
        shifted = torch.full_like(labels, IGNORE_INDEX)
        shifted[:, :-1] = labels[:, 1:]
        return shifted

    @torch.no_grad()
    def correct(self, input_ids, attention_mask=None, labels=None, user_embedding=None):
        """Per-item correctness and predictive entropy (nats).

        ``classify``: one item per sequence.  ``next_token``: one item per scored token (flattened).
        """
        logits = self(input_ids, attention_mask, user_embedding)
        logp = torch.log_softmax(logits.float(), -1)
        entropy = -(logp.exp() * logp).sum(-1)
        if self.task == "classify":
            return logits.argmax(-1) == labels, entropy
        targets = self.token_targets(input_ids, attention_mask, user_embedding)
        keep = targets != IGNORE_INDEX
        return (logits.argmax(-1) == targets)[keep], entropy[keep]


class CompactTransformer(_UserTokenModel):
    """Token + learned position embeddings and a pre-LN ``nn.TransformerEncoder`` (built here)."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                 max_len: int = 128, task: str = "classify", n_classes: int | None = None,
                 user_position: str | None = None, dim_feedforward: int | None = None,
                 dropout: float = 0.0, pad_id: int = 0):
        super().__init__()
        _check_choice("task", task, TASKS)
        user_position = user_position or ("append" if task == "classify" else "prepend")
        _check_choice("user_position", user_position, POSITIONS)
        if task == "classify" and (n_classes is None or n_classes < 2):
            raise InputError(f"classify needs n_classes >= 2, got {n_classes}")
        if vocab_size < 2 or d_model < 1 or d_model % n_heads:
            raise InputError(f"bad sizes: vocab_size={vocab_size}, d_model={d_model}, n_heads={n_heads}")
        self.vocab_size, self.d_model, self.max_len = vocab_size, d_model, max_len
        self.task, self.n_classes, self.user_position, self.pad_id = task, n_classes, user_position, pad_id
        self._check_user_position()
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward or 4 * d_model, dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes if task == "classify" else vocab_size)
        nn.init.normal_(self.tok.weight, std=0.02 * d_model ** 0.5)
        nn.init.normal_(self.pos.weight, std=0.02 * d_model ** 0.5)

    def forward(self, input_ids, attention_mask=None, user_embedding=None):
        """Logits: ``(B, n_classes)`` for classify; ``(B, n + L, vocab)`` for next_token."""
        mask, lengths = _lengths(input_ids, attention_mask)
        embeds, full_mask, last, _ = combine_user_tokens(self.tok(input_ids), mask, lengths,
                                                         user_embedding, self.user_position)
        total = embeds.shape[1]
        if total > self.max_len:
            raise InputError(f"sequence of {total} positions exceeds max_len={self.max_len}")
        h = embeds + self.pos(torch.arange(total, device=embeds.device))[None]
        causal = None
        if self.task == "next_token":
            causal = torch.ones(total, total, dtype=torch.bool, device=h.device).triu(1)
        h = self.norm(self.encoder(h, mask=causal, src_key_padding_mask=full_mask == 0))
        if self.task == "classify":
            return self.head(h[torch.arange(h.shape[0], device=h.device), last])
        return self.head(h)


class HFAdapter(_UserTokenModel):
    """The same interface over a Hugging Face model that accepts ``inputs_embeds``.

    * decoder-only (GPT-2, Llama): ``classify`` reads the last real hidden state into a new linear
      head; ``next_token`` returns the LM logits over ``[prefix; text]``.
    * encoder-decoder (T5, BART): ``classify`` reads the encoder's last real hidden state;
      ``next_token`` feeds the user tokens (or one pad token without them) to the encoder and the
      text to the decoder (teacher forcing), returning decoder logits where position ``t``
      predicts token ``t``.
    """

    def __init__(self, hf_model: nn.Module, task: str = "classify", user_position: str | None = None,
                 n_classes: int | None = None):
        super().__init__()
        _check_choice("task", task, TASKS)
        user_position = user_position or ("append" if task == "classify" else "prepend")
        _check_choice("user_position", user_position, POSITIONS)
        self.hf, self.task, self.user_position, self.n_classes = hf_model, task, user_position, n_classes
        self._check_user_position()
        self.encoder_decoder = bool(getattr(hf_model.config, "is_encoder_decoder", False))
        self.d_model = hf_model.get_input_embeddings().embedding_dim
        if task == "classify":
            if n_classes is None or n_classes < 2:
                raise InputError(f"classify needs n_classes >= 2, got {n_classes}")
            self.head = nn.Linear(self.d_model, n_classes)

    def forward(self, input_ids, attention_mask=None, user_embedding=None):
        mask, lengths = _lengths(input_ids, attention_mask)
        tok = self.hf.get_input_embeddings()(input_ids)
        if self.encoder_decoder and self.task == "next_token":
            return self._seq2seq_lm(input_ids, mask, tok, user_embedding)
        embeds, full_mask, last, _ = combine_user_tokens(tok, mask, lengths, user_embedding, self.user_position)
        if self.encoder_decoder:
            h = self.hf.get_encoder()(inputs_embeds=embeds, attention_mask=full_mask).last_hidden_state
        elif self.task == "classify":
            out = self.hf(inputs_embeds=embeds, attention_mask=full_mask, output_hidden_states=True)
            h = out.hidden_states[-1]
        else:
            return self.hf(inputs_embeds=embeds, attention_mask=full_mask).logits
        return self.head(h[torch.arange(h.shape[0], device=h.device), last])

    def _seq2seq_lm(self, input_ids, mask, tok, user_embedding):
        b = input_ids.shape[0]
        if user_embedding is None:
            pad = torch.full((b, 1), self.hf.config.pad_token_id or 0, dtype=input_ids.dtype, device=input_ids.device)
            enc = self.hf.get_input_embeddings()(pad)
        else:
            enc = user_embedding[:, None, :] if user_embedding.ndim == 2 else user_embedding
            if enc.shape[0] != b or enc.shape[2] != self.d_model:
                raise InputError(f"user_embedding must have shape (batch={b}, n_tokens, d_model={self.d_model})")
        labels = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
        out = self.hf(inputs_embeds=enc.to(tok.dtype), labels=labels, decoder_attention_mask=mask)
        return out.logits

    def token_targets(self, input_ids, attention_mask, user_embedding):
        if self.encoder_decoder:  # decoder logits at t already predict token t (shift-right inside HF)
            targets = input_ids.clone() if attention_mask is None else input_ids.masked_fill(attention_mask == 0,
                                                                                               IGNORE_INDEX)
            targets[:, 0] = IGNORE_INDEX  # as for decoder-only models: the first token is not scored
            return targets
        return super().token_targets(input_ids, attention_mask, user_embedding)
