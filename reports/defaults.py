"""Built-in sweep specs: the default report (spread x family on the persona corpus) and ``--quick``.

Sized for the 2-core budget: the default sweep finishes, with its report, in under 15 minutes on
2 cores and the quick one in under 3 (measured figures in docs/sweep_spec.md).  The central and
static models are cached per worker process by ``idfree_core.pipeline``, so each extra spread
costs one personalisation run, the attacks and the misattribution estimate.
"""

from __future__ import annotations

from reports.sweep.spec import SweepSpec

DEFAULT_SPEC = """
name = "default"
description = "embedding spread x family (beta, gaussian, static) x on-device lr on the built-in persona corpus"
attacks = ["clustering", "linkage", "inversion"]

[base]
docs_per_user = 60

[grid]
family = ["gaussian", "beta", "static"]
lr = [0.003, 0.03]
n_users = [20]
seed = [0]

[grid.spread]
gaussian = [0.03, 0.1, 0.3, 1.0, 3.0]
beta = [0.03, 0.1, 0.2, 0.3, 0.44]
"""

QUICK_SPEC = """
name = "quick"
description = "a small first-contact sweep: two spreads of the gaussian family and the static baseline"
attacks = ["clustering", "linkage"]

[base]
docs_per_user = 40
central_epochs = 3
device_epochs = 4
rounds = 1

[grid]
family = ["gaussian", "static"]
spread = [0.1, 3.0]
lr = [0.003]
n_users = [6]
seed = [0]
"""


def default_spec(quick: bool = False) -> SweepSpec:
    """The built-in spec (``quick=True``: the small one)."""
    return SweepSpec.from_toml_string(QUICK_SPEC if quick else DEFAULT_SPEC,
                                      source="built-in quick spec" if quick else "built-in default spec")
