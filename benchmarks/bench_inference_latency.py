"""Added inference latency of IDfree-PL: sample ``e ~ q_u`` + the extra input token(s), per query.

For each family, the same model answers queries from the persona corpus (no grad) at batch 1 and
batch 32 (a) without user tokens and (b) with a fresh sample of the user's distribution; we print
the median wall times per batch, the added time ``(b) - (a)`` per batch and per query, and the
ratio ``(b) / (a)``.  (a) and (b) alternate repetition by repetition and the added time is the
median paired difference, so load drift on a shared machine hits both alike.  The ``+text tok``
row is the reference cost of ``n_tokens`` more *text* positions without any sampling.

* ``--model compact`` (default): the compact transformer, classification, 1 appended token;
* ``--model minilm``: MiniLM-L6 (BERT, 22.7M parameters), classification, 1 appended token;
* ``--model smollm2``: SmolLM2-135M (Llama), next-token logits over the 49,152-token vocabulary,
  a 5-token prefix (the reference setting for generation).

Goal: < 1 ms added per query on MiniLM (the paper's budget is 10 ms).  Run:

    .venv/bin/python benchmarks/bench_inference_latency.py [--model minilm] [--reps 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from idfree_core.data import generate_persona
from idfree_core.distributions import make_user_distribution
from idfree_core.model_zoo import load_model

TASK = {"compact": ("classify", 1), "minilm": ("classify", 1), "smollm2": ("next_token", 5)}


def _time(fn, reps: int) -> np.ndarray:
    for _ in range(3):
        fn()
    out = np.empty(reps)
    for i in range(reps):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out * 1e3


def _paired(plain, with_e, reps: int) -> tuple[np.ndarray, np.ndarray]:
    """Alternating timings (ms) of ``plain`` and ``with_e``, order swapped every repetition, so load
    drifts on a shared machine hit both alike; the added time is the median paired difference."""
    for _ in range(3):
        plain(), with_e()
    a, b = np.empty(reps), np.empty(reps)
    for i in range(reps):
        first, second = (plain, with_e) if i % 2 == 0 else (with_e, plain)
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        a[i], b[i] = (t1 - t0, t2 - t1) if i % 2 == 0 else (t2 - t1, t1 - t0)
    return a * 1e3, b * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(TASK), default="compact")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 300 compact, 60 minilm, 15 smollm2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes (default 1,32)")
    parser.add_argument("--d-model", type=int, default=64, help="compact model width")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reps = args.reps or {"compact": 300, "minilm": 60, "smollm2": 15}[args.model]
    task, n_tok = TASK[args.model]
    corpus = generate_persona(n_users=4, docs_per_user=20)
    texts = [t for u in corpus.users for t, _ in corpus.test[u]]
    extra = {"d_model": args.d_model, "max_len": 64} if args.model == "compact" else {}
    t0 = time.perf_counter()
    loaded = load_model(args.model, task, corpus.n_classes if task == "classify" else None,
                        tokenizer=corpus.tokenizer, random_state=0, **extra)
    load_s = time.perf_counter() - t0
    model, tok, d = loaded.model.eval(), loaded.tokenizer, loaded.d_model
    causal = task == "next_token"
    print(f"model {args.model} ({loaded.n_parameters:,} parameters, loaded in {load_s:.1f} s), task {task}, "
          f"{n_tok} user token(s) of width {d}, threads={args.threads}, reps={reps}")
    header = ("family", "batch", "plain ms", "sample ms", "with e ms", "added ms", "added/query", "ratio")
    print(" ".join(f"{h:>11}" for h in header))
    with torch.no_grad():
        for batch in [int(b) for b in args.batches.split(",")]:
            rows = (texts * (batch // len(texts) + 1))[:batch]
            ids, mask = tok.encode(rows, 64, add_bos=causal, add_eos=causal)
            keep = int(mask.sum(1).max())
            ids, mask = ids[:, :keep], mask[:, :keep]  # padded to the longest query only
            for family in ("beta", "gaussian", "static"):
                dist = make_user_distribution(family, n_tok, d)
                sample = _time(lambda: dist.rsample((batch,)), reps)
                plain, with_e = _paired(lambda: model(ids, mask), lambda: model(ids, mask, dist.rsample((batch,))), reps)
                base, added = float(np.median(plain)), float(np.median(with_e - plain))
                print(f"{family:>11} {batch:>11} {base:11.3f} {np.median(sample):11.3f} {np.median(with_e):11.3f} "
                      f"{added:11.3f} {added / batch:11.3f} {np.median(with_e) / base:11.2f}")
            # reference: the same forward with n_tok more *text* positions (the cost of a longer input)
            longer = torch.cat([ids, ids[:, -1:].repeat(1, n_tok)], 1), torch.cat([mask, mask[:, -1:].repeat(1, n_tok)], 1)
            plain, more = _paired(lambda: model(ids, mask), lambda: model(*longer), reps)
            added = float(np.median(more - plain))
            print(f"{'+text tok':>11} {batch:>11} {np.median(plain):11.3f} {0:11.3f} {np.median(more):11.3f} "
                  f"{added:11.3f} {added / batch:11.3f} {np.median(more) / np.median(plain):11.2f}")
    print("goal: added < 1 ms per query on MiniLM (paper's budget: 10 ms)")


if __name__ == "__main__":
    main()
