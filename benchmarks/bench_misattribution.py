"""Benchmark: Bayes misattribution for 1000 users x 768 dims (GPT-2 width) to CI half-width 0.005.

Times :func:`privacy_audit.misattribution.bayes_misattribution` (log-densities of all users at a
block of samples = one float64 GEMM), the bare GEMM it cannot beat (the machine's limit), and,
in the same process, a plain per-user
``torch.distributions`` loop (``log_prob`` of each user at the same samples, then the same
posterior estimator).  The loop runs on a subset of samples and is extrapolated linearly to the
sample count the fast path needed; the output says so.

    python benchmarks/bench_misattribution.py [--threads 2] [--family beta|gaussian|both]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from privacy_audit.misattribution import bayes_misattribution


def make_params(family: str, n_users: int, dim: int, spread: float, seed: int = 0) -> dict:
    """Users scattered around the reference init (Beta(2, 5) / N(0.1, 0.2)) as after training."""
    rng = np.random.default_rng(seed)
    if family == "beta":
        return {"alpha": 2.0 * np.exp(spread * rng.standard_normal((n_users, dim))),
                "beta": 5.0 * np.exp(spread * rng.standard_normal((n_users, dim)))}
    return {"mean": 0.1 + spread * rng.standard_normal((n_users, dim)), "std": np.full((n_users, dim), 0.2)}


def loop_baseline(family: str, params: dict, n_samples: int, n_users: int, seed: int = 0) -> float:
    """Seconds for ``n_samples`` samples and the first ``n_users`` users with a per-user loop."""
    tp = {k: torch.as_tensor(v[:n_users]) for k, v in params.items()}
    cls = torch.distributions.Beta if family == "beta" else torch.distributions.Normal
    names = ("alpha", "beta") if family == "beta" else ("mean", "std")
    torch.manual_seed(seed)
    start = time.perf_counter()
    idx = torch.randint(n_users, (n_samples,))
    x = cls(*(tp[k][idx] for k in names)).sample()
    logf = torch.empty(n_samples, n_users, dtype=torch.float64)
    for n in range(n_users):
        logf[:, n] = cls(*(tp[k][n] for k in names)).log_prob(x).sum(-1)
    post = torch.softmax(logf, dim=1)
    float((1 - post.max(dim=1).values).mean())
    return time.perf_counter() - start


def gemm_bound(n_samples: int, n_features: int, n_users: int, reps: int = 3) -> float:
    """Seconds for the one unavoidable float64 GEMM: ``(n_samples x n_features) @ (n_features x n_users)``
    (every user's log-density at every sample), best of ``reps``, the same threads as the estimator."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n_samples, n_features, dtype=torch.float64, generator=gen)
    w = torch.randn(n_features, n_users, dtype=torch.float64, generator=gen)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, w)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--family", choices=("beta", "gaussian", "both"), default="both")
    parser.add_argument("--baseline-samples", type=int, default=512,
                        help="samples for the per-user loop (extrapolated linearly)")
    parser.add_argument("--baseline-users", type=int, default=20,
                        help="users for the per-user loop (extrapolated linearly)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    families = ("beta", "gaussian") if args.family == "both" else (args.family,)
    # Spreads chosen so the error is mid-range, where the estimator's variance (and cost) peaks.
    spreads = {"beta": 0.06, "gaussian": 0.022}
    print(f"{args.users} users x {args.dim} dims, target CI half-width 0.005, torch threads {args.threads}")
    for family in families:
        params = make_params(family, args.users, args.dim, spreads[family])
        bayes_misattribution(family, {k: v[:50, :16] for k, v in params.items()})  # warm-up
        start, cpu = time.perf_counter(), time.process_time()
        est = bayes_misattribution(family, params, target_halfwidth=0.005, random_state=0)
        fast, fast_cpu = time.perf_counter() - start, time.process_time() - cpu
        sub, users = min(args.baseline_samples, est.n_samples), min(args.baseline_users, args.users)
        slow_sub = loop_baseline(family, params, sub, users)
        factor = (est.n_samples / sub) * (args.users / users)
        slow = slow_sub * factor
        print(f"[{family}] misattribution {est.value:.4f} CI [{est.ci[0]:.4f}, {est.ci[1]:.4f}] "
              f"({est.n_samples} samples, converged={est.converged})")
        print(f"[{family}] matrix-product path: {fast:.2f} s wall, {fast_cpu:.2f} s CPU (all threads)")
        bound = gemm_bound(est.n_samples, 2 * args.dim, args.users)
        print(f"[{family}] float64 GEMM bound ({est.n_samples} x {2 * args.dim} @ {2 * args.dim} x {args.users}): "
              f"{bound:.2f} s   ratio to the bound {fast / bound:.1f}x (goal <= 2x)")
        print(f"[{family}] per-user torch.distributions loop: {slow:.1f} s, extrapolated x{factor:.0f} from "
              f"{slow_sub:.2f} s measured on {sub} samples x {users} users   ratio {slow / fast:.0f}x")
    print(f"(load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
