"""Real files as they come: string labels and ``--time-column`` through ``simulate``, uploads CSVs
without ``upload_id`` for ``attack``, and sweep specs whose data path is relative to the spec
file and whose data content enters the spec hash."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from idfree_core.errors import InputError
from idfree_core.uploads import read_uploads
from reports.sweep.point import simulation_config
from reports.sweep.spec import SweepSpec

FIX = Path(__file__).parent / "fixtures"
TINY = ["--set", "d_model=16", "--set", "n_heads=2", "--set", "n_layers=1", "--set", "central_epochs=1",
        "--set", "device_epochs=1", "--set", "cloud_epochs=1", "--set", "baselines=[]", "--set", "rounds=1",
        "--set", "entropy_samples=2", "--set", "n_bootstrap=50"]


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "reports.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_simulate_maps_string_labels_and_splits_by_time(tmp_path):
    proc = _cli("simulate", "--data", str(FIX / "string_labels.csv"), "--user-column", "reviewer",
                "--text-column", "review", "--label-column", "stars", "--time-column", "posted", *TINY,
                "--out", str(tmp_path / "run"), "--json")
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    assert m["data"]["label_mapping"] == {"1 star": 0, "2 stars": 1, "3 stars": 2, "4 stars": 3, "5 stars": 4}
    assert "chronological" in m["data"]["description"] and m["config"]["time_column"] == "posted"
    assert m["model"] == {**m["model"], "name": "compact", "preset": "fast"}


def test_time_column_with_a_fixed_format_is_a_one_line_error(tmp_path):
    proc = _cli("simulate", "--data", str(FIX / "sentiment140_sample.csv"), "--format", "sentiment140",
                "--time-column", "date", "--out", str(tmp_path / "x"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "time_column applies to csv/jsonl" in proc.stderr


def _emb_csv(path: Path, n: int = 30, d: int = 4, with_id: bool = False) -> Path:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(n, d)) + np.repeat(np.arange(3), n // 3)[:, None] * 3.0
    head = (["upload_id"] if with_id else []) + [f"emb_{j}" for j in range(d)]
    lines = [",".join(head)] + [",".join(([str(100 + i)] if with_id else []) + [f"{v:.5f}" for v in row])
                                for i, row in enumerate(emb)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_uploads_csv_without_upload_id_is_numbered_on_read(tmp_path):
    pool = read_uploads(_emb_csv(tmp_path / "u.csv"))
    assert pool.upload_id.tolist() == list(range(30)) and pool.dim == 4
    assert read_uploads(_emb_csv(tmp_path / "v.csv", with_id=True)).upload_id.tolist() == list(range(100, 130))
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"emb_0": [0.1, 0.2]}), tmp_path / "p.parquet")
    with pytest.raises(InputError, match="upload_id"):  # parquet files are written by us: the id is required
        read_uploads(tmp_path / "p.parquet")
    proc = _cli("attack", str(tmp_path / "u.csv"), "--attacks", "clustering", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)


SPEC = """
model = "minilm"
[base]
data = "data/reviews.csv"
user_column = "reviewer"
text_column = "review"
label_column = "stars"
[grid]
family = ["gaussian"]
seed = [0]
"""


def test_spec_data_path_resolves_against_the_spec_folder_and_its_content_enters_the_hash(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    data = tmp_path / "data" / "reviews.csv"
    data.write_bytes((FIX / "string_labels.csv").read_bytes())
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text(SPEC)
    monkeypatch.chdir(FIX)  # elsewhere: the path is relative to the spec file, not the working directory
    spec = SweepSpec.from_toml(spec_file)
    assert spec.base["data"] == str(data.resolve())
    (point,) = spec.points()
    assert point["model"] == "minilm"
    cfg = simulation_config(point)
    assert cfg.model == "minilm" and cfg.preset == "fast" and cfg.cloud_lr == 1e-4  # the fast preset for MiniLM
    before = spec.spec_hash
    data.write_text(data.read_text().replace("meh", "meh!"))
    assert SweepSpec.from_toml(spec_file).spec_hash != before  # same path, new content: another sweep
    data.write_text(data.read_text().replace("meh!", "meh"))
    assert SweepSpec.from_toml(spec_file).spec_hash == before
    data.unlink()
    with pytest.raises(InputError, match="base.data 'data/reviews.csv': no such file"):
        SweepSpec.from_toml(spec_file)


@pytest.mark.parametrize("text, needle", [
    ('model = "gpt9"\n[grid]\nseed = [0]\n', "model values must be compact, minilm, smollm2 or hf:PATH"),
    ('model = "minilm"\n[grid]\nmodel = ["compact"]\n', "both at the top level and in [grid]"),
])
def test_bad_model_in_a_spec(text, needle):
    with pytest.raises(InputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        SweepSpec.from_toml_string(text)


def test_grid_over_models_and_reference_preset():
    spec = SweepSpec.from_toml_string('[base]\npreset = "reference"\n[grid]\nmodel = ["compact", "minilm"]\n')
    cfgs = [simulation_config(p) for p in spec.points()]
    assert [c.model for c in cfgs] == ["compact", "minilm"]
    assert all(c.preset == "reference" and c.device_lr == 5e-5 and c.cloud_epochs == 10 for c in cfgs)
