"""The family registry (idfree_core.families): lookup, validation, initialisation, registration."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from idfree_core.errors import InputError
from idfree_core.families import FAMILY_SPECS, FamilySpec, get_family_spec, register_family_spec
from idfree_core.uploads import UserDistributions


def test_unknown_family_is_one_line_listing_the_known_ones():
    with pytest.raises(InputError) as info:
        get_family_spec("dirichlet")
    msg = str(info.value)
    assert "\n" not in msg and all(name in msg for name in FAMILY_SPECS)
    with pytest.raises(InputError):
        get_family_spec(None)


@pytest.mark.parametrize("name", list(FAMILY_SPECS))
def test_record_is_consistent(name):
    spec = get_family_spec(name)
    assert spec.name == name and tuple(spec.constraints) == spec.param_names
    params = spec.initial_params()
    d = spec.torch_distribution({k: torch.full((2, 3), v) for k, v in params.items()})
    assert tuple(d.batch_shape) == (2, 3)
    schema = spec.json_schema()
    assert schema["required"] == list(spec.param_names) and not schema["additionalProperties"]
    good = spec.validate({k: np.full((2, 3), v) for k, v in params.items()})
    assert all(v.dtype == np.float64 and v.shape == (2, 3) for v in good.values())
    with pytest.raises(InputError, match="exactly"):
        spec.validate({"nope": np.ones((2, 3))})
    assert spec.to_dict()["name"] == name


@pytest.mark.parametrize("name", [n for n, s in FAMILY_SPECS.items() if s.spread_field is not None])
def test_init_from_spread_has_that_spread(name):
    """The common initial marginal of ``init_from_spread(s)`` has standard deviation ``s`` (scipy)."""
    spec = get_family_spec(name)
    for frac in (0.2, 0.5, 0.9):
        spread = frac * min(spec.max_spread, 1.0)
        init = spec.init_from_spread(spread)
        assert float(spec.scipy_distribution(init).std()) == pytest.approx(spread, rel=1e-6)
    with pytest.raises(InputError, match="out of reach"):
        spec.init_from_spread(-0.1)


def test_beta_initialisation_is_2c_5c():
    spec = get_family_spec("beta")
    assert spec.initial_params(1.5) == {"alpha": 3.0, "beta": 7.5}
    assert spec.initial_params(2.0, "next_token") == {"alpha": 10.0, "beta": 12.0}
    assert spec.module_init(spec.initial_params()) == {"init_alpha": 2.0, "init_beta": 5.0}
    assert get_family_spec("gaussian").module_init({"mean": 0.1, "std": 0.3}, "next_token")["train_std"]


def test_validation_messages():
    spec = get_family_spec("beta")
    with pytest.raises(InputError, match="Beta parameter 'alpha' must be > 0"):
        spec.validate({"alpha": [[0.0]], "beta": [[1.0]]})
    with pytest.raises(InputError, match="NaN"):
        spec.validate({"alpha": [[math.nan]], "beta": [[1.0]]})
    with pytest.raises(InputError, match="n_users=3"):
        spec.validate({"alpha": [[1.0]], "beta": [[1.0]]}, n_rows=3)
    with pytest.raises(InputError, match="no affine"):
        get_family_spec("gaussian").torch_distribution({"mean": [0.0], "std": [1.0]}, loc=1.0)


def test_mle_and_crb_where_known():
    rng = np.random.default_rng(0)
    x = rng.beta(2.0, 5.0, size=(20000, 2))
    est = get_family_spec("beta").mle(x, axis=0)
    np.testing.assert_allclose(est["alpha"], 2.0, rtol=0.05)
    np.testing.assert_allclose(est["beta"], 5.0, rtol=0.05)
    crb = get_family_spec("gaussian").crb({"mean": np.zeros(2), "std": np.full(2, 2.0)}, 4)
    np.testing.assert_allclose(crb["mean"], 1.0)
    np.testing.assert_allclose(crb["std"], 0.5)


def test_register_a_new_family_end_to_end():
    """A record re-using the Gaussian machinery under a new name flows through the file contract."""
    base = get_family_spec("gaussian")
    spec = dataclasses.replace(base, name="gaussian_copy")
    assert isinstance(spec, FamilySpec)
    try:
        register_family_spec(spec)
        with pytest.raises(ValueError, match="already registered"):
            register_family_spec(spec)
        d = UserDistributions("gaussian_copy", ("a",), {"mean": [[0.0]], "std": [[1.0]]})
        back = UserDistributions.from_json_dict(d.to_json_dict())
        assert back.family == "gaussian_copy"
    finally:
        FAMILY_SPECS.pop("gaussian_copy", None)
