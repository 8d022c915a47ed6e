"""Training presets for ``simulate``: the published reference settings and a fast CPU preset.

* ``reference``: the authors' published implementation (``/work/shared/README.md``): on device
  AdamW lr 5e-5, weight decay 0, 20 epochs, batch 8, clipping 5.0 (model frozen, only the user
  distribution trained); cloud AdamW lr 5e-5, weight decay 0.05, 10 epochs, batch 8, clipping
  5.0 (full fine-tuning), one round.  Tuned for pretrained LMs; it barely moves the compact model
  trained from scratch (docs/real_models.md).
* ``fast`` (default): for the compact model, the :class:`~idfree_core.pipeline.SimulationConfig`
  defaults (unchanged); for pretrained models, few epochs at lr 1e-4 on the cloud and the
  distribution-only device training at lr 3e-2 (the compact model's device setting), one round,
  so that ``--users 8 --docs-per-user 40`` takes minutes on 2 CPU cores (measured figures:
  README "Real models").

``preset_settings(preset, model)`` gives the ``SimulationConfig`` field values a preset sets;
explicit settings override them (:meth:`SimulationConfig.from_preset`), and ``metrics.json``
records the preset with every field that differs from it (:func:`preset_overrides`).
"""

from __future__ import annotations

from typing import Any, Mapping

from idfree_core.errors import InputError

PRESETS = ("fast", "reference")

REFERENCE = {"device_lr": 5e-5, "device_weight_decay": 0.0, "device_clip": 5.0, "device_epochs": 20,
             "device_batch": 8, "cloud_lr": 5e-5, "cloud_weight_decay": 0.05, "cloud_epochs": 10,
             "cloud_clip": 5.0, "central_lr": 5e-5, "central_epochs": 10, "batch_size": 8, "rounds": 1,
             "ondevice_lr": 5e-5}
FAST_PRETRAINED = {"central_lr": 1e-4, "central_epochs": 3, "warmup_epochs": 1, "batch_size": 16,
                   "device_lr": 3e-2, "device_epochs": 5, "device_batch": 8, "cloud_lr": 1e-4, "cloud_epochs": 1,
                   "rounds": 1, "ondevice_lr": 1e-4, "ondevice_epochs": 1, "entropy_samples": 4, "max_len": 64}
# causal LMs: the 49k-token output layer makes every step ~10x a MiniLM step on these CPUs
FAST_CAUSAL = {**FAST_PRETRAINED, "central_epochs": 1, "warmup_epochs": 0, "device_epochs": 2,
               "baselines": ("static",)}


def check_preset(preset: Any) -> str:
    if preset not in PRESETS:
        raise InputError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    return preset


def preset_settings(preset: str, model: str = "compact") -> dict[str, Any]:
    """The ``SimulationConfig`` fields ``preset`` sets for ``model`` (empty: the class defaults)."""
    check_preset(preset)
    if preset == "reference":
        return dict(REFERENCE)
    if model == "compact":
        return {}
    return dict(FAST_CAUSAL if model == "smollm2" else FAST_PRETRAINED)


PRESET_FIELDS = tuple(dict.fromkeys([*REFERENCE, *FAST_PRETRAINED, *FAST_CAUSAL]))


def preset_overrides(config, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The preset-controlled fields of ``config`` that differ from its preset (over ``defaults``)."""
    expected = {**defaults, **preset_settings(config.preset, config.model)}
    return {name: getattr(config, name) for name in PRESET_FIELDS if getattr(config, name) != expected[name]}
