"""Benchmark: wall time of ``decide(family)`` for every built-in family (target: < 5 s each).

For each family it prints the verdict, the method, the wall time of ``decide`` (forked worker,
default 5 s budget, so a verdict that needs longer shows up as "unknown"), and, as a baseline run
in the same process, the time of the numeric SVD screen (``numeric_screen``, evidence only) with
the ratio between the two.  Optionally also a raw-expression Beta and a product family.

    python benchmarks/bench_identifiability.py [--budget 60] [--repeat 1] [--extra]
        [--deployment 1000x768]

``--deployment KxD`` also times ``decide_deployment`` on K Beta users x D dims near Beta(2, 5)
against the baseline of one float64 SVD of a K x (K + 16) matrix (it does three, plus the moment
matrices and the duplicate check).
"""

from __future__ import annotations

import argparse
import time

from privacy_audit.families import BUILTIN, ProductFamily, family_from_density
from privacy_audit.identifiability import decide, numeric_screen


def _time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="safety time limit (s)")
    ap.add_argument("--deployment", default=None, metavar="KxD")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--extra", action="store_true", help="also raw Beta and a product family")
    args = ap.parse_args()
    cases = [(name, fam) for name, fam in BUILTIN.items()]
    if args.extra:
        cases.append(("beta (raw expression)", family_from_density(
            "x**(a-1)*(1-x)**(b-1)/beta(a,b)", "x", ["a", "b"], "0,1")))
        cases.append(("gaussian x beta", ProductFamily((BUILTIN["gaussian"], BUILTIN["beta"]))))
    print(f"{'family':24s} {'verdict':12s} {'decide s':>9s} {'screen s':>9s} {'ratio':>7s}  "
          f"{'<5s':4s} method")
    worst = 0.0
    for name, fam in cases:
        t_dec, v = _time(lambda fam=fam: decide(fam, time_budget=args.budget), args.repeat)
        comp = fam.components[0] if isinstance(fam, ProductFamily) else fam
        t_scr, _ = _time(lambda comp=comp: numeric_screen(comp), args.repeat)
        worst = max(worst, t_dec)
        print(f"{name:24s} {v.status:12s} {t_dec:9.2f} {t_scr:9.3f} {t_dec / t_scr:7.1f}  "
              f"{'yes' if t_dec < 5 else 'NO':4s} {v.method}")
    print(f"slowest verdict: {worst:.2f} s (safety limit {args.budget} s; target < 5 s)")
    if args.deployment:
        _bench_deployment(args.deployment, args.repeat)


def _bench_deployment(spec: str, repeat: int) -> None:
    import numpy as np

    from privacy_audit.identifiability.deployment import decide_deployment

    K, D = (int(v) for v in spec.lower().split("x"))
    rng = np.random.default_rng(0)
    params = {"alpha": 2 * np.exp(rng.normal(0, 0.05, (K, D))),
              "beta": 5 * np.exp(rng.normal(0, 0.05, (K, D)))}
    M = rng.random((K, K + 16))
    t_svd, _ = _time(lambda: np.linalg.svd(M, compute_uv=False), repeat)
    t_dep, v = _time(lambda: decide_deployment("beta", params), repeat)
    print(f"deployment {K}x{D}: identifiable={v.identifiable} ranks={list(v.kruskal_ranks)} "
          f"{t_dep:.2f} s = {t_dep / t_svd:.1f} x one SVD ({t_svd:.2f} s)")


if __name__ == "__main__":
    main()
