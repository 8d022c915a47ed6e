"""Added inference latency of IDfree-PL: sample ``e ~ q_u`` + one extra input token, per query.

For each family, the same compact model answers single queries (batch 1, no grad) from the
persona corpus (a) without a user token and (b) with a fresh sample appended; we print the median
and 90th-percentile wall times, the added time ``(b) - (a)`` and the ratio ``(b) / (a)``.  The
budget is 1 ms added per query (the paper's is 10 ms).  Run:

    .venv/bin/python benchmarks/bench_inference_latency.py [--reps 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from idfree_core.data import generate_persona
from idfree_core.distributions import make_user_distribution
from idfree_core.models import CompactTransformer


def _time(fn, reps: int) -> np.ndarray:
    for _ in range(10):
        fn()
    out = np.empty(reps)
    for i in range(reps):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--d-model", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    corpus = generate_persona(n_users=4, docs_per_user=20)
    max_len = corpus.suggested_max_len(cap=43)
    ids, mask = corpus.tokenizer.encode([corpus.test[corpus.users[0]][0][0]], max_len)
    n = int(mask.sum())
    ids, mask = ids[:, :n], mask[:, :n]  # a real single query, unpadded
    model = CompactTransformer(corpus.tokenizer.vocab_size, d_model=args.d_model, max_len=64,
                               n_classes=corpus.n_classes).eval()
    print(f"query of {n} tokens, d_model={args.d_model}, threads={args.threads}, reps={args.reps}")
    header = ("family", "plain ms", "sample ms", "with e ms", "added ms", "ratio", "p90 added")
    print(" ".join(f"{h:>{6 if h == 'ratio' else 9}}" for h in header))
    with torch.no_grad():
        plain = _time(lambda: model(ids, mask), args.reps)
        for family in ("beta", "gaussian", "static"):
            dist = make_user_distribution(family, 1, args.d_model)
            sample = _time(lambda: dist.rsample((1,)), args.reps)
            with_e = _time(lambda: model(ids, mask, dist.rsample((1,))), args.reps)
            plain_again = _time(lambda: model(ids, mask), args.reps)  # interleaved baseline: drift check
            base = np.median(np.concatenate([plain, plain_again]))
            added = float(np.median(with_e) - base)
            p90 = float(np.percentile(with_e, 90) - np.percentile(np.concatenate([plain, plain_again]), 90))
            print(f"{family:>9} {base:9.3f} {np.median(sample):9.3f} {np.median(with_e):9.3f} {added:9.3f} "
                  f"{np.median(with_e) / base:6.2f} {p90:9.3f}")
    print("target: added < 1 ms per query")


if __name__ == "__main__":
    main()
