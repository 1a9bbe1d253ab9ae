"""The sBG bootstrap refits' Newton steps evaluate digamma/trigamma in one call per iteration: the same fits,
bit for bit, as one call per argument (the implementation before, kept here as the reference)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from helpers import retention as R


def _newton_reference(x0, lost, alive, max_iter=50):
    T = len(lost)
    t = np.arange(1, T + 1)
    c = np.arange(0, T + 1)
    x = np.array(x0, float)
    f, _ = R._sbg_nll_grad(x, lost, alive)
    for _ in range(max_iter):
        a, b = np.exp(x)
        pg, tg = special.digamma, special.polygamma
        t1 = lambda z: tg(1, z)  # noqa: E731
        ab, abt, abc = a + b, a + b + t, a + b + c
        la = np.dot(lost, pg(a + 1) - pg(abt) - pg(a) + pg(ab)) + np.dot(alive, pg(ab) - pg(abc))
        lb = np.dot(lost, pg(b + t - 1) - pg(abt) - pg(b) + pg(ab)) + np.dot(alive, pg(b + c) - pg(abc)
                                                                          - pg(b) + pg(ab))
        laa = np.dot(lost, t1(a + 1) - t1(abt) - t1(a) + t1(ab)) + np.dot(alive, t1(ab) - t1(abc))
        lbb = np.dot(lost, t1(b + t - 1) - t1(abt) - t1(b) + t1(ab)) + np.dot(alive, t1(b + c) - t1(abc)
                                                                            - t1(b) + t1(ab))
        lab = np.dot(lost, t1(ab) - t1(abt)) + np.dot(alive, t1(ab) - t1(abc))
        g = np.array([a * la, b * lb])
        H = np.array([[a * a * laa + a * la, a * b * lab], [a * b * lab, b * b * lbb + b * lb]])
        if not np.all(np.isfinite(H)) or np.linalg.det(H) <= 0 or H[0, 0] >= 0:
            return None
        step = -np.linalg.solve(H, g)
        lam = 1.0
        while lam > 1e-4:
            xn = x + lam * step
            fn, _ = R._sbg_nll_grad(xn, lost, alive)
            if fn <= f + 1e-12 * max(1.0, abs(f)):
                break
            lam /= 2
        else:
            return None
        x, f = xn, fn
        if np.max(np.abs(lam * step)) < 1e-9:
            return x
    return None


@pytest.mark.parametrize("seed", range(8))
def test_newton_refits_equal_the_per_argument_reference(seed):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(2, 24))
    alpha, beta = rng.uniform(0.3, 5.0, 2)
    p = rng.beta(alpha, beta, 2000)
    life = rng.geometric(p)  # periods until churn
    lost = np.array([(life == k).sum() for k in range(1, T + 1)], float)
    alive = np.zeros(T + 1)
    alive[-1] = (life > T).sum()
    start = np.log([alpha, beta]) + rng.normal(0, 0.3, 2)
    got, want = R._sbg_newton(start, lost, alive), _newton_reference(start, lost, alive)
    assert (got is None) == (want is None)
    if want is not None:
        np.testing.assert_array_equal(got, want)
