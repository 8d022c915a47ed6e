"""``simulate(config)``: the whole IDfree-PL flow on one data set, with its baselines and metrics.

Flow (one call; every stage seeded from ``config.seed``):

1. data: the built-in persona corpus (or a real data set through ``idfree_core.data``), tokenized;
   each user's training documents split into device-train / device-validation;
2. **central** baseline: the compact transformer trained on all training texts, text only
   (no personalization, the paper's non-personalized model);
3. per family (the configured one, and ``static`` as the ID-equivalent baseline), trained the same
   way except for the embedding: a short warm-up of the central model on texts paired with fresh
   samples of the *common initial* distribution ``q_0`` (non-personalized; it opens the user-token
   pathway), then ``rounds`` times: every device trains its distribution against the frozen model
   (:mod:`idfree_core.fleet`), uploads its training texts each with a fresh sample, the uploads are
   shuffled and stripped of users (:func:`idfree_core.uploads.anonymize`), and the cloud fine-tunes
   on the anonymous pool (:func:`idfree_core.cloud.fine_tune_on_pool`);
4. test-time queries: each test text with a fresh sample from its user's final distribution
   (session 1 in the pool) -> accuracy; optional **on-device full fine-tuning** baseline;
5. metrics: Wilson intervals per method (``scipy.stats.binomtest(...).proportion_ci``), paired
   bootstrap intervals for accuracy gaps over the same test items (``scipy.stats.bootstrap`` on the
   per-item differences), Bayes ceilings (persona), added inference latency.

The pool written is what the cloud saw in the last round (session 0) plus the queries (session 1);
``user_distributions.json`` holds the distributions that produced them.  The central model, the
static baseline and the on-device baseline are cached per process (keyed by the configuration
fields they depend on), so sweeps over family / spread / device settings reuse them; treat the
returned ``model``/``fleet`` as read-only.  Stages and caches: :mod:`idfree_core.stages`; scoring:
:mod:`idfree_core.evaluation`; batched device training: :mod:`idfree_core.fleet`.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from idfree_core.atomic import PRIVATE, atomic_files, write_text_atomic
from idfree_core.errors import InputError
from idfree_core.families import FAMILY_SPECS, get_family_spec
from idfree_core.fleet import DeviceConfig
from idfree_core.jsonable import to_jsonable
from idfree_core.model_zoo import check_model_name, describe_model
from idfree_core.presets import check_preset, preset_overrides, preset_settings
from idfree_core.evaluation import Predictions, evaluate, latency_ms, metrics_block, ondevice_finetune
from idfree_core.stages import (MODEL_FIELDS, Encoded, cached, central_model, clear_cache, config_key, model_width,
                                n_tokens_for, personalize, prepare_data, seed_for, static_baseline)
from idfree_core.uploads import (Oracle, UploadPool, UserDistributions, anonymize, write_oracle, write_uploads,
                                 write_user_distributions)

__all__ = ["SimulationConfig", "SimulationResult", "simulate", "clear_cache", "prepare_data", "central_model",
           "Encoded", "check_out_dir"]
# Baselines simulate() can add to the id-free run (SimulationConfig.baselines): the static ID-equivalent
# embedding (a point mass per user, the registered point-mass family) and on-device fine-tuning.
STATIC_BASELINE, ONDEVICE_BASELINE = "static", "ondevice"
BASELINES = (STATIC_BASELINE, ONDEVICE_BASELINE)
DATA_FORMATS = (None, "csv", "jsonl", "sentiment140", "amazon", "leaf")


# integer fields and their supported maxima (past them the run would not finish or not fit in memory)
INT_LIMITS = {"n_users": 100_000, "docs_per_user": 100_000, "n_tokens": 64, "d_model": 4096, "n_layers": 64,
              "n_heads": 64, "max_len": 8192, "central_epochs": 10_000, "warmup_epochs": 10_000,
              "batch_size": 1_000_000, "device_epochs": 10_000, "device_max_steps": 10_000_000,
              "device_batch": 1_000_000, "cloud_epochs": 10_000, "uploads_per_text": 1000, "rounds": 1000,
              "ondevice_epochs": 10_000, "entropy_samples": 10_000, "n_bootstrap": 1_000_000, "seed": 2**63 - 1}


@dataclass(frozen=True)
class SimulationConfig:
    """Everything ``simulate`` depends on.  Defaults: the acceptance configuration (issue 2).

    Data: ``data`` ("persona" or a file path), ``data_format``/``*_column`` (real data, see
    :func:`idfree_core.data.load_corpus`; ``time_column`` gives the chronological split), ``n_users`` (persona users, or the most active users
    kept), ``docs_per_user``/``difficulty``/``persona_options`` (persona only).
    Family: ``family``; ``std`` (Gaussian std, fixed for classification as in the reference);
    ``beta_concentration`` ``c`` (Beta init ``alpha, beta = 2c, 5c``, generation ``5c, 6c``: larger
    ``c`` = narrower); ``spread`` (the standard deviation of the common initial marginal, for the
    families whose record reads it, e.g. Kumaraswamy; ``None``: the family default; see
    :mod:`idfree_core.families`); ``n_tokens`` (default 1 for classification, 5 for generation).
    Model: ``d_model``, ``n_layers``, ``n_heads``, ``max_len`` (positions incl. user tokens).
    Central: ``central_lr``, ``central_epochs``, ``batch_size``; ``warmup_epochs`` with samples
    of the common prior.  Devices: ``device_lr``, ``device_weight_decay``, ``device_clip``,
    ``device_epochs``, ``device_max_steps`` (per round), ``device_batch`` (the flat names of the nested
    :class:`idfree_core.fleet.DeviceConfig`, :meth:`device_config`), ``device_val_fraction``.
    Cloud: ``cloud_lr``, ``cloud_weight_decay``, ``cloud_epochs`` (per round), ``cloud_clip``,
    ``uploads_per_text`` (fresh samples uploaded per training text), ``rounds``.
    Baselines: ``baselines`` (``"static"``, ``"ondevice"``), ``ondevice_lr``, ``ondevice_epochs``.
    Scoring: ``entropy_samples`` (fresh samples per test item for the sample entropy),
    ``n_bootstrap``.  The learning rates are tuned for the compact model trained from scratch; the
    authors' values for pretrained LMs (5e-5 everywhere) are ``cloud.REFERENCE_*`` and
    ``docs/real_models.md``.
    Which model: ``model`` (``compact``, ``minilm``, ``smollm2`` or ``hf:PATH``, see
    :mod:`idfree_core.model_zoo`; pretrained models bring their own tokenizer and width, so
    ``d_model``/``n_layers``/``n_heads`` apply to ``compact`` only); ``preset`` names the settings
    the other fields were filled from (:meth:`from_preset`, :mod:`idfree_core.presets`).
    """

    data: str = "persona"
    data_format: str | None = None
    user_column: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    time_column: str | None = None
    n_users: int = 50
    docs_per_user: int = 100
    difficulty: float = 1.0
    persona_options: tuple = ()
    family: str = "beta"
    std: float = 0.2
    beta_concentration: float = 1.0
    spread: float | None = None
    n_tokens: int | None = None
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 48
    central_lr: float = 1e-3
    central_epochs: int = 6
    warmup_epochs: int = 1
    batch_size: int = 32
    device_lr: float = DeviceConfig.lr
    device_weight_decay: float = DeviceConfig.weight_decay
    device_clip: float = DeviceConfig.clip_norm
    device_epochs: int = DeviceConfig.epochs
    device_max_steps: int | None = DeviceConfig.max_steps
    device_batch: int = DeviceConfig.batch_size
    device_val_fraction: float = 0.2
    cloud_lr: float = 1e-3
    cloud_weight_decay: float = 0.05
    cloud_epochs: int = 2
    cloud_clip: float = 5.0
    uploads_per_text: int = 1
    rounds: int = 2
    baselines: tuple = BASELINES
    ondevice_lr: float = 1e-3
    ondevice_epochs: int = 3
    entropy_samples: int = 8
    n_bootstrap: int = 2000
    seed: int = 0
    model: str = "compact"
    preset: str = "fast"

    def __post_init__(self) -> None:
        if isinstance(self.persona_options, dict):
            object.__setattr__(self, "persona_options", tuple(sorted(self.persona_options.items())))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        if self.family not in FAMILY_SPECS:
            raise InputError(f"family must be one of {list(FAMILY_SPECS)}, got {self.family!r}")
        if self.data_format not in DATA_FORMATS:
            raise InputError(f"data_format must be one of {[f for f in DATA_FORMATS if f]}, got {self.data_format!r}")
        check_model_name(self.model)
        check_preset(self.preset)
        if self.time_column is not None and self.data_format not in (None, "csv", "jsonl"):
            raise InputError(f"time_column applies to csv/jsonl data, not data_format={self.data_format!r}")
        bad = set(self.baselines) - set(BASELINES)
        if bad:
            raise InputError(f"baselines may contain 'static' and 'ondevice', got {sorted(bad)}")
        positive = ("n_users", "docs_per_user", "difficulty", "std", "beta_concentration", "d_model", "n_layers",
                    "n_heads", "max_len", "central_lr", "central_epochs", "batch_size", "device_lr", "device_clip",
                    "device_epochs", "device_batch", "cloud_lr", "cloud_epochs", "cloud_clip", "uploads_per_text",
                    "rounds", "ondevice_lr", "ondevice_epochs", "entropy_samples", "n_bootstrap")
        for name in positive:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise InputError(f"{name} must be a positive number, got {v!r}")
        for name, top in INT_LIMITS.items():
            v = getattr(self, name)
            if v is None and name in ("n_tokens", "device_max_steps"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise InputError(f"{name} must be an integer, got {v!r}")
            if not 0 <= v <= top:
                raise InputError(f"{name} must be in [0, {top}] (the supported range), got {v!r}")
        spread = self.spread
        if spread is not None and (isinstance(spread, bool) or not isinstance(spread, (int, float))
                                   or not math.isfinite(spread) or spread <= 0):
            raise InputError(f"spread must be a positive number or None, got {spread!r}")
        spec = get_family_spec(self.family)
        if spread is not None and spec.spread_field == "spread":
            spec.setting_from_spread(spread)  # range check with the family's limit
        for name in ("n_tokens", "device_max_steps"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InputError(f"{name} must be a positive integer or None, got {v!r}")
        if self.n_users < 2:
            raise InputError(f"n_users must be at least 2, got {self.n_users}")
        if not 0 < self.device_val_fraction < 1:
            raise InputError(f"device_val_fraction must be in (0, 1), got {self.device_val_fraction}")
        if self.warmup_epochs < 0:
            raise InputError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")

    def device_config(self, seed: int | None = None) -> DeviceConfig:
        """The nested on-device trainer config (:class:`idfree_core.fleet.DeviceConfig`) these
        flat ``device_*`` fields spell out (``seed`` defaults to the run's seed)."""
        return DeviceConfig(lr=self.device_lr, weight_decay=self.device_weight_decay, clip_norm=self.device_clip,
                            epochs=self.device_epochs, max_steps=self.device_max_steps, batch_size=self.device_batch,
                            seed=self.seed if seed is None else seed)

    @classmethod
    def from_preset(cls, preset: str = "fast", model: str = "compact", **settings) -> "SimulationConfig":
        """The ``preset``'s settings for ``model`` (:mod:`idfree_core.presets`), overridden by ``settings``."""
        check_model_name(model)
        return cls(**{**preset_settings(preset, model), **settings, "preset": preset, "model": model})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["persona_options"] = dict(self.persona_options)
        d["baselines"] = list(self.baselines)
        return d


_DEFAULTS = {f.name: f.default for f in fields(SimulationConfig)}


@dataclass(frozen=True, eq=False)
class SimulationResult:
    """Outputs of :func:`simulate`: the pool (what the cloud saw) and the auditor's side."""

    config: SimulationConfig
    pool: UploadPool
    oracle: Oracle
    distributions: UserDistributions
    metrics: dict
    corpus: Any
    predictions: dict  # method -> Predictions (per test item: user, label, correct, entropies)
    trajectories: np.ndarray  # (n_users, total_device_steps + 1): ||phi_u - phi_0||_2 per step (unconstrained)
    users: tuple
    trajectories_constrained: np.ndarray | None = None  # ||theta_u - theta_0||_2 (constrained parameters)
    trajectories_inf: np.ndarray | None = None  # ||phi_u - phi_0||_inf
    model: Any = field(repr=False, default=None)
    fleet: Any = field(repr=False, default=None)

    def to_dict(self) -> dict:
        return self.metrics

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write uploads.parquet, oracle.parquet, user_distributions.json, metrics.json, all or nothing.

        Every file is staged beside its target first and the four are then swapped in together; if
        anything fails, the folder keeps the previous run unchanged.  Ground truth is owner-only (0600).
        """
        out = check_out_dir(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {k: out / f for k, f in RUN_FILES.items()}
        try:
            with atomic_files(paths, modes={"oracle": PRIVATE, "distributions": PRIVATE}) as tmp:
                write_uploads(self.pool, tmp["uploads"])
                write_oracle(self.oracle, tmp["oracle"])
                write_user_distributions(self.distributions, tmp["distributions"])
                write_text_atomic(tmp["metrics"], json.dumps(to_jsonable(self.metrics), indent=2, allow_nan=False))
        except OSError as exc:
            raise InputError(f"--out {out}: cannot write the run ({exc.strerror or type(exc).__name__}: "
                             f"{exc.filename or out}); the folder is unchanged") from None
        return paths


RUN_FILES = {"uploads": "uploads.parquet", "oracle": "oracle.parquet",
             "distributions": "user_distributions.json", "metrics": "metrics.json"}


def check_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` as a Path, refused (one line) if it is a file or holds a folder named like a run file."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    for name in RUN_FILES.values():
        if (out / name).is_dir():
            raise InputError(f"--out {out}: {name} there is a folder; cannot replace it with a file")
    return out


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import scipy

    try:
        ours = version("idfree-audit")
    except PackageNotFoundError:
        ours = "unknown"
    return {"idfree-audit": ours, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__}


def simulate(config: SimulationConfig | None = None, progress: bool = True, threads: int | None = 1,
             **overrides) -> SimulationResult:
    """Run the whole pipeline (see the module docstring); ``overrides`` replace config fields.

    ``threads``: torch intra-op threads during the run (restored afterwards; ``None`` leaves the
    setting alone).  The models are tiny, so one thread is about as fast as two on an idle machine
    and much faster on a shared one (oversubscription).
    """
    config = replace(config or SimulationConfig(), **overrides) if overrides else (config or SimulationConfig())
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        return _simulate(config, progress)
    finally:
        torch.set_num_threads(before)


def _simulate(config: SimulationConfig, progress: bool) -> SimulationResult:
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        timings, mark = {}, time.perf_counter()

        def lap(name):
            nonlocal mark
            now = time.perf_counter()
            timings[name] = now - mark
            mark = now

        corpus, train, dev_train, dev_val, test = prepare_data(config)
        users = corpus.users
        lap("data")
        central = central_model(config, progress)
        preds: dict[str, Predictions] = {"central": evaluate(central, test, None, users)}
        lap("central")
        if get_family_spec(config.family).is_point_mass:
            main = static_baseline(config, progress)
        else:
            main = personalize(config, config.family, progress)
        preds["idfree"] = main["predictions"]
        lap("idfree")
        if STATIC_BASELINE in config.baselines:
            preds[STATIC_BASELINE] = static_baseline(config, progress)["predictions"]
            lap(STATIC_BASELINE)
        if ONDEVICE_BASELINE in config.baselines:
            preds["ondevice"] = cached(("ondevice", config.ondevice_lr, config.ondevice_epochs)
                                        + config_key(config, MODEL_FIELDS),
                                        lambda: ondevice_finetune(central, train, test, users, config.ondevice_lr,
                                                                  config.ondevice_epochs, config.device_batch,
                                                                  seed_for(config, "ondevice"), progress))
            lap("ondevice")
        fleet, n_tok = main["fleet"], n_tokens_for(config, corpus)
        k = config.uploads_per_text
        width = model_width(main["model"])
        emb = torch.cat([main["uploads"].reshape(-1, n_tok * width),
                         main["queries"].reshape(-1, n_tok * width)]).numpy()
        user_names = np.asarray(users, dtype=object)
        rows_user = np.concatenate([user_names[np.repeat(train.codes, k)], user_names[test.codes]])
        texts = list(np.repeat(np.asarray(train.texts, dtype=object), k)) + list(test.texts)
        labels = None
        if train.labels is not None:
            labels = np.concatenate([np.repeat(train.labels.numpy(), k), test.labels.numpy()])
        session = np.concatenate([np.zeros(len(train.codes) * k, np.int64), np.ones(len(test.codes), np.int64)])
        pool, oracle = anonymize(emb, rows_user, text=texts, label=labels, session=session, n_tokens=n_tok,
                                 rng=np.random.default_rng(seed_for(config, "anonymize")))
        distributions = fleet.export(users)
        torch.manual_seed(seed_for(config, "latency"))
        latency = latency_ms(main["model"], test, fleet.module_for(0))
        metrics = metrics_block(preds, corpus, config, latency, seed_for(config, "bootstrap"))
        metrics["model"] = {**describe_model(config.model, main["model"]), "preset": config.preset,
                            "preset_overrides": preset_overrides(config, _DEFAULTS)}
        if corpus.details.get("label_mapping"):
            metrics["data"]["label_mapping"] = dict(corpus.details["label_mapping"])
        traj = main["trajectories"]
        metrics["device"] = {"steps_total": int(traj["trajectory_"].shape[1] - 1), "rounds": config.rounds,
                             "max_distance_unconstrained": float(traj["trajectory_unconstrained_"].max()),
                             "max_coordinate_drift_unconstrained": float(traj["trajectory_unconstrained_inf_"].max()),
                             "max_distance_constrained": float(traj["trajectory_"].max()),
                             "final_distance_constrained_mean": float(traj["trajectory_"][:, -1].mean())}
        metrics["pool"] = {"n_uploads": int(pool.n), "n_training_uploads": int((pool.sessions() == 0).sum()),
                           "n_queries": int((pool.sessions() == 1).sum()), "n_tokens": n_tok,
                           "embedding_dim": int(pool.dim)}
        lap("pool_and_metrics")
        metrics["wall_time_s"] = time.perf_counter() - t0
        metrics["timings_s"] = timings  # cached stages take ~0 s
        metrics["versions"] = _versions()
    return SimulationResult(config=config, pool=pool, oracle=oracle, distributions=distributions, metrics=metrics,
                            corpus=corpus, predictions=preds, trajectories=traj["trajectory_unconstrained_"],
                            trajectories_constrained=traj["trajectory_"],
                            trajectories_inf=traj["trajectory_unconstrained_inf_"], users=tuple(users),
                            model=main["model"], fleet=fleet)
