"""Retention benchmarks: ratios against baselines measured in the same run; exits non-zero on a miss.

1. sBG parametric-bootstrap refits: Newton with the analytic Hessian (what fit_sbg uses for warm starts)
   vs scipy BFGS from the same warm start. Target: Newton at least 1.5x faster, same estimates.
2. Harrell's concordance: the O(n log n) Fenwick-tree version vs an O(n^2) numpy pairwise count
   (n = 4,000). Target: at least 2x faster and identical.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from scipy import optimize

from helpers import retention as R


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def bench_sbg() -> bool:
    rng = np.random.default_rng(0)
    T = 36
    data = []
    for _ in range(40):
        theta = rng.beta(1.4, 12.0, 5000)
        life = rng.geometric(theta)
        lost = np.bincount(np.minimum(life, T + 1) - 1, minlength=T + 1)[:T].astype(float)
        alive = np.zeros(T + 1)
        alive[T] = (life > T).sum()
        data.append((lost, alive))
    start = np.log([1.4, 12.0])

    def newton():
        return [R._sbg_newton(start, lo, al) for lo, al in data]

    def bfgs():
        return [optimize.minimize(R._sbg_nll_grad, start, args=(lo, al), jac=True, method="BFGS",
                                  options={"gtol": 1e-6}).x for lo, al in data]
    t_new, x_new = best_of(newton)
    t_old, x_old = best_of(bfgs)
    same = all(a is not None and np.allclose(a, b, atol=1e-4) for a, b in zip(x_new, x_old))
    ratio = t_old / t_new
    print(f"sBG refits: Newton {t_new * 1e3:.1f} ms, BFGS {t_old * 1e3:.1f} ms -> {ratio:.1f}x faster "
          f"(target >= 1.5x), same estimates: {same}")
    return ratio >= 1.5 and same


def bench_concordance() -> bool:
    rng = np.random.default_rng(1)
    n = 4000
    time_ = rng.integers(1, 60, n).astype(float)
    risk = rng.normal(size=n).round(2)
    event = rng.random(n) < 0.6

    def brute():
        later = time_[None, :] > time_[:, None]
        comp = later & event[:, None]
        conc = (comp & (risk[:, None] > risk[None, :])).sum()
        ties = (comp & (risk[:, None] == risk[None, :])).sum()
        return (conc + 0.5 * ties) / comp.sum()
    t_fast, c_fast = best_of(lambda: R.concordance_index(time_, risk, event))
    t_brute, c_brute = best_of(brute)
    ratio = t_brute / t_fast
    print(f"concordance n={n}: Fenwick {t_fast * 1e3:.1f} ms, pairwise {t_brute * 1e3:.1f} ms -> {ratio:.1f}x "
          f"(target >= 2x), identical: {np.isclose(c_fast, c_brute)}")
    return ratio >= 2 and bool(np.isclose(c_fast, c_brute))


if __name__ == "__main__":
    ok = [bench_sbg(), bench_concordance()]
    sys.exit(0 if all(ok) else 1)
