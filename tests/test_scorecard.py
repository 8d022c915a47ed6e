"""Scorecard rows, verdicts against thresholds, policy files and the recommendation across seeds."""

import math
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from idfree_core.errors import InputError
from reports.policy import DEFAULT_THRESHOLDS, Policy, gate, load_policy
from reports.scorecard import THREATS, build_scorecard, normalised_advantage, reid_advantage, verdict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fake point functions (_fake_points.py)


def _row(metric, value, baseline, half=0.02, name="a", features="embedding", ceiling=None):
    adv = value - baseline
    return {"name": name, "metric": metric, "value": value, "baseline": baseline, "advantage": adv,
            "advantage_ci": [adv - half, adv + half], "ceiling": ceiling, "features": features}


def test_normalised_advantage_closed_forms():
    a, ci = normalised_advantage(_row("attribution_accuracy", 0.625, 0.25, half=0.075))
    assert a == pytest.approx(0.5) and ci == pytest.approx((0.4, 0.6))
    a, ci = normalised_advantage(_row("parameter_error", 0.2, 0.8, half=0.06))  # lower is stronger
    assert a == pytest.approx(0.75) and ci == pytest.approx((0.675, 0.825))
    a, ci = normalised_advantage(_row("linkage_top1", 1.0, 0.2, half=0.2))
    assert a == pytest.approx(1.0) and ci[1] == 1.0  # never above a perfect attacker
    given = {**_row("ari", 0.5, 0.0), "normalized_advantage": 0.3, "normalized_advantage_ci": [0.2, 0.4]}
    assert normalised_advantage(given) == (0.3, (0.2, 0.4))  # attacks-strength's value wins


def test_verdict_pass_fail_inconclusive():
    assert verdict((0.0, 0.1), 0.1) == "PASS"
    assert verdict((0.11, 0.3), 0.1) == "FAIL"
    assert verdict((0.05, 0.2), 0.1) == "INCONCLUSIVE"
    assert verdict((math.nan, math.nan), 0.1) == "NOT RUN"


def test_scorecard_rows_and_identifier_column_always_fails():
    attacks = [_row("attribution_accuracy", 0.26, 0.25, name="weak"),
               _row("attribution_accuracy", 0.9, 0.25, name="strong", ceiling=0.95),
               _row("linkage_top1", 0.22, 0.2, half=0.01), _row("ari", 0.0, 0.0, half=0.01),
               _row("linkage_top1", 0.3, 0.2, features="text", half=0.2)]
    rows = build_scorecard(attacks, Policy(), identifier_columns=["device_id"])
    by = {r.threat: r for r in rows}
    assert list(by) == list(THREATS)
    assert by["single_upload_attribution"].attack == "strong" and by["single_upload_attribution"].verdict == "FAIL"
    assert by["single_upload_attribution"].ceiling == pytest.approx((0.95 - 0.25) / 0.75)
    assert by["multi_upload_linkage"].verdict == "PASS" and by["clustering_reidentification"].verdict == "PASS"
    assert by["text_only_leakage"].verdict == "INCONCLUSIVE"
    assert by["parameter_inversion"].verdict == "NOT RUN" and by["marginal_embedding_leakage"].verdict == "NOT RUN"
    assert by["identifier_columns"].verdict == "FAIL" and by["identifier_columns"].attack == "device_id"
    code, line = gate(rows, Policy())
    assert code == 1 and "identifier columns FAIL" in line
    clean = build_scorecard(attacks[2:4], Policy())
    code, line = gate(clean, Policy())
    assert code == 0 and "none failed: 3 PASS, 4 NOT RUN" in line  # what passed and what never ran
    strict = Policy(fail_on_inconclusive=True)
    assert gate(build_scorecard(attacks[2:], strict), strict)[0] == 1  # the text row straddles 0.1


def test_linkage_row_carries_the_epsilon_lower_bound_of_the_auc_rows():
    auc = {**_row("auc", 0.9, 0.5), "details": {"epsilon": {"lower_bound": 1.25, "value": 1.6}}}
    weak = {**_row("auc", 0.6, 0.5, name="b"), "details": {"epsilon": {"lower_bound": 0.0}}}
    text = {**_row("auc", 0.99, 0.5, features="text"), "details": {"epsilon": {"lower_bound": 4.0}}}
    rows = {r.threat: r for r in build_scorecard([_row("linkage_top1", 0.5, 0.2), auc, weak, text], Policy())}
    assert rows["multi_upload_linkage"].epsilon_lower_bound == pytest.approx(1.25)  # embedding rows only
    assert rows["single_upload_attribution"].epsilon_lower_bound is None
    assert "epsilon_lower_bound" in rows["multi_upload_linkage"].to_dict()


def test_reid_advantage_is_the_largest_attribution_or_linkage_advantage():
    attacks = [_row("attribution_accuracy", 0.5, 0.25, name="c"), _row("linkage_top1", 0.8, 0.2, name="l"),
               _row("auc", 1.0, 0.5, name="auc-not-on-the-axis"), _row("linkage_top1", 1.0, 0.2, features="text")]
    value, ci, which = reid_advantage(attacks)
    assert value == pytest.approx(0.75) and which == "l:linkage_top1"
    assert math.isnan(reid_advantage([_row("ari", 1.0, 0.0)])[0])


def test_example_policy_matches_the_defaults_and_bad_policies_are_one_line(tmp_path):
    p = load_policy(ROOT / "examples" / "policy.toml")
    assert dict(p.thresholds) == DEFAULT_THRESHOLDS and not p.fail_on_inconclusive
    assert set(tomllib.loads((ROOT / "examples" / "policy.toml").read_text())["thresholds"]) == set(THREATS)
    for text, match in [("[thresholds]\nsingle_upload_attribution = 2", "in \\[0, 1\\]"),
                        ("[thresholds]\nidentifier_columns = 1", "always fails"),
                        ("[thresholds]\nmystery = 0.1", "unknown threat"), ("x = [", "not valid TOML"),
                        ("[gate]\nfail_on_inconclusive = 1", "true or false"), ("a = " + "[" * 5000, "TOML")]:
        f = tmp_path / "p.toml"
        f.write_text(text)
        with pytest.raises(InputError, match=match):
            load_policy(f)
    with pytest.raises(InputError, match="not found"):
        load_policy(tmp_path / "none.toml")


# ----------------------------------------------------------------------------- recommendation across seeds
TWO_SEEDS = """
name = "two-seeds"
[grid]
family = ["gaussian", "static"]
spread = [0.05, 0.2, 0.6]
lr = [0.003]
clip = [1.0, 5.0]
n_users = [5]
seed = [0, 1]
"""


@pytest.fixture(scope="module")
def two_seed_store(tmp_path_factory):
    from reports.sweep import SweepSpec, run_sweep

    tmp = tmp_path_factory.mktemp("seeds")
    run_sweep(SweepSpec.from_toml_string(TWO_SEEDS), tmp / "res", workers=1, point_fn="_fake_points:fake_point",
              progress=False)
    return tmp / "res"


def test_two_seed_recommendation_has_a_ci_across_seeds_and_names_no_seed(two_seed_store):
    from reports.analysis import analyse

    a = analyse(two_seed_store, argv=["report"])
    rec = a.recommended()
    assert rec["n_seeds"] == 2 and "seed" not in rec and "seed" not in rec["toml"]
    assert all(v is not None for v in rec.values())
    assert {"family", "spread", "lr", "clip", "n_tokens", "preset", "model"} <= set(rec) and ({"steps", "epochs"} & set(rec))
    ids = a.setting["point_ids"]
    vals = a.frame.set_index("point_id").loc[ids, "accuracy"].to_numpy(float)
    assert rec["accuracy"] == pytest.approx(vals.mean())
    from scipy import stats

    half = stats.t.ppf(0.975, 1) * vals.std(ddof=1) / np.sqrt(2)
    assert rec["accuracy_ci"][0] <= vals.mean() - half + 1e-12 and rec["accuracy_ci"][1] >= vals.mean() + half - 1e-12
    assert rec["family"] == "gaussian"  # the static baseline is never recommended
    # the fake point ignores clip: the recommendation says it had no measurable effect
    assert "clip" in rec["no_measurable_effect"]


def test_recommended_snippet_round_trips_through_sweep_spec_and_simulate_set(two_seed_store):
    from reports.analysis import analyse
    from reports.commands.simulate import _overrides
    from reports.sweep import SweepSpec
    from reports.sweep.point import simulation_config

    a = analyse(two_seed_store)
    spec = SweepSpec.from_toml_string(a.toml, source="snippet")
    (point,) = spec.points()
    cfg = simulation_config({k: v for k, v in point.items() if k != "attacks"})
    rec = a.recommended()
    assert (cfg.family, cfg.std, cfg.device_lr, cfg.device_clip, cfg.n_tokens) == (
        rec["family"], rec["spread"], rec["lr"], rec["clip"], rec["n_tokens"])
    # the simulate flags parse to the same SimulationConfig fields
    from reports.cli import build_parser

    parser, _ = build_parser()
    args = parser.parse_args(["simulate", *rec["simulate_args"], "--out", "x"])
    over = _overrides(args.overrides)
    assert (args.family, args.std, args.device_lr, args.device_clip, args.model, args.preset) == (
        cfg.family, cfg.std, cfg.device_lr, cfg.device_clip, cfg.model, cfg.preset)
    assert over["n_tokens"] == cfg.n_tokens and over.get("device_epochs", cfg.device_epochs) == cfg.device_epochs
