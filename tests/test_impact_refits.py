"""The bootstrap refits' faster paths (issue 16, run speed) against the reference paths they replace.

* ``cox_efron`` drops rows of weight 0 before iterating: the same fit as with those rows removed;
* fixed-information refits update the matrix by BFGS (``secant``): the same root as the plain iteration
  (``secant=False``, the reference) and as a full Newton fit, in fewer steps;
* ``calibrate_ratings`` computes the leverage term by a trace: equal to the per-customer leverages;
* the whole churn link and the whole chain (``what_if_many``) with the reference refits
  (``SECANT_REFITS = False``) give the same intervals to ~1e-8 (same seeded resamples);
* ``_kept_and_revenue`` with the baseline increments passed in equals it computing them itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import churn_link as CL
from helpers import impact as I
from helpers import retention as R

REF = Path(__file__).parent / "reference" / "retention"
ROSSI_COVS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@pytest.fixture(scope="module")
def rossi():
    return pd.read_csv(REF / "rossi.csv")


def test_zero_weight_rows_are_the_same_fit_as_rows_removed(rossi):
    rng = np.random.default_rng(11)
    w = rng.multinomial(len(rossi), np.full(len(rossi), 1 / len(rossi))).astype(float)
    assert (w == 0).sum() > 100  # a bootstrap resample leaves about a third out
    X = rossi[ROSSI_COVS].to_numpy("float64")
    with_zeros = CL.cox_efron(rossi["week"], rossi["arrest"], X, weights=w)
    drawn = w > 0
    removed = CL.cox_efron(rossi["week"].to_numpy()[drawn], rossi["arrest"].to_numpy()[drawn], X[drawn],
                           weights=w[drawn])
    np.testing.assert_allclose(with_zeros.coef, removed.coef, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(with_zeros.se, removed.se, rtol=1e-10)
    assert with_zeros.loglik == pytest.approx(removed.loglik, rel=1e-12)
    np.testing.assert_array_equal(with_zeros.baseline_times, removed.baseline_times)
    np.testing.assert_allclose(with_zeros.baseline_cumhaz, removed.baseline_cumhaz, rtol=1e-10)


def test_secant_refits_reach_the_plain_iterations_root_in_fewer_steps(rossi):
    X = rossi[ROSSI_COVS].to_numpy("float64")
    full = CL.cox_efron(rossi["week"], rossi["arrest"], X)
    rng = np.random.default_rng(5)
    steps = {"plain": [], "secant": []}
    for _ in range(15):
        w = rng.multinomial(len(rossi), np.full(len(rossi), 1 / len(rossi))).astype(float)
        newton = CL.cox_efron(rossi["week"], rossi["arrest"], X, weights=w, init=full.coef)
        fits = {name: CL.cox_efron(rossi["week"], rossi["arrest"], X, weights=w, init=full.coef,
                                   fixed_information=full.information, secant=name == "secant", max_iter=300)
                for name in steps}
        for name, fit in fits.items():
            np.testing.assert_allclose(fit.coef, newton.coef, atol=1e-8)
            np.testing.assert_allclose(fit.baseline_cumhaz, newton.baseline_cumhaz, rtol=1e-7)
            steps[name].append(fit.n_iter)
    # 432 rows: the full sample's information is far from a resample's, so the plain iteration is slow
    # (18-111 steps here) and the secant one is not (9-14)
    assert max(steps["secant"]) < 20 and np.mean(steps["secant"]) < 0.5 * np.mean(steps["plain"])


def test_calibration_leverage_term_equals_the_per_customer_leverages():
    rng = np.random.default_rng(2)
    n = 500
    k = rng.integers(1, 6, n).astype(float)
    Z = np.column_stack([rng.random(n) < 0.3, rng.normal(size=n)]).astype(float)
    true = 3.5 + 0.4 * Z[:, 0] + 0.2 * Z[:, 1] + rng.normal(0, 0.7, n)
    w = true + rng.normal(0, 0.9, n) / np.sqrt(k)
    ss = 0.81 * rng.chisquare(np.maximum(k - 1, 1)) * (k > 1)
    f = rng.multinomial(n, np.full(n, 1 / n)).astype(float)
    cal = CL.calibrate_ratings(k, w, ss, Z, weights=f)
    # the reference: the formulas of the module docstring written out, leverage customer by customer
    X = np.column_stack([np.ones(n), Z])
    XtX_inv = np.linalg.inv(X.T @ (X * f[:, None]))
    alpha = XtX_inv @ X.T @ (f * w)
    resid = w - X @ alpha
    lev = np.array([x @ XtX_inv @ x for x in X])
    s_u2 = np.sum(f * ss) / np.sum(f * (k - 1))
    tau2 = (np.sum(f * resid ** 2) - s_u2 * np.sum(f * (1 - lev) / k)) / (f.sum() - X.shape[1])
    assert cal.error_variance == pytest.approx(s_u2, rel=1e-12)
    assert cal.true_variance == pytest.approx(tau2, rel=1e-10)
    np.testing.assert_allclose(cal.alpha, alpha, rtol=1e-10)
    np.testing.assert_allclose(cal.predicted, X @ alpha + tau2 / (tau2 + s_u2 / k) * resid, rtol=1e-10)


@pytest.fixture(scope="module")
def demo_tables(small_demo):
    customers = pd.read_parquet(small_demo / "customers.parquet")
    responses = pd.read_parquet(small_demo / "responses.parquet")
    return customers, responses


def test_churn_link_intervals_equal_with_the_reference_refits(demo_tables, monkeypatch):
    customers, responses = demo_tables
    frame = R.customer_durations(customers)
    summary = CL.rating_summary(responses)
    fast = CL.fit_churn_link(frame, summary, ["segment"], n_boot=60, seed=4)
    monkeypatch.setattr(CL, "SECANT_REFITS", False)
    ref = CL.fit_churn_link(frame, summary, ["segment"], n_boot=60, seed=4)
    np.testing.assert_allclose(fast.boot.to_numpy(), ref.boot.to_numpy(), rtol=1e-7, atol=1e-9)
    num = ["coef", "hazard_ratio", "ci_low", "ci_high"]
    np.testing.assert_allclose(fast.table[num].to_numpy(), ref.table[num].to_numpy(), rtol=1e-8)


def test_chain_intervals_equal_with_the_reference_refits(demo_tables, monkeypatch):
    customers, responses = demo_tables
    kw = dict(n_boot=40, seed=3, currency="EUR")
    scen = [("attr_speed", 0.5), ("csat", 0.3), (None, "median")]
    fast = I.what_if_many(customers, responses, scen, **kw)
    monkeypatch.setattr(CL, "SECANT_REFITS", False)
    ref = I.what_if_many(customers, responses, scen, **kw)
    for a, b in zip(fast, ref):
        np.testing.assert_allclose(a.boot.to_numpy(float), b.boot.to_numpy(float), rtol=1e-7, atol=1e-6)
        num = a.table.select_dtypes("number").columns
        np.testing.assert_allclose(a.table[num].to_numpy(float), b.table[num].to_numpy(float), rtol=1e-8)
        np.testing.assert_allclose(a.links[["estimate", "ci_low", "ci_high"]].to_numpy(float),
                                   b.links[["estimate", "ci_low", "ci_high"]].to_numpy(float), rtol=1e-8)


def test_kept_and_revenue_with_increments_given_equals_computed(rossi):
    fit = CL.cox_efron(rossi["week"] / 4.0, rossi["arrest"], rossi[["age", "prio"]].to_numpy("float64"))
    rng = np.random.default_rng(0)
    t0 = rng.integers(0, 40, 300) / 3.0
    t0_values, t0_index = np.unique(t0, return_inverse=True)
    eta = rng.normal(0, 0.3, 300)
    shifts = [0.1, rng.normal(0, 0.05, 300)]
    args = (fit, t0_values, t0_index, eta, shifts, rng.uniform(10, 50, 300), 12, 0.008, rng.integers(0, 3, 300), 3)
    computed = I._kept_and_revenue(*args)
    given = I._kept_and_revenue(*args, None, I._cumhaz_increments(fit, t0_values, 12)[t0_index])
    for a, b in zip(computed, given):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _kept_and_revenue_reference(fit, t0_values, t0_index, eta, shifts, revenue, horizon, monthly_rate, groups,
                                 n_groups):
    """The function before issue 16's speed work (per node grid, einsum discounting, new arrays per shift)."""
    h = np.arange(1, horizon + 1)
    grid = I._extended_cumhaz(fit, (t0_values[:, None] + h[None, :]).ravel()).reshape(len(t0_values), horizon)
    cum = (grid - I._extended_cumhaz(fit, t0_values)[:, None]).astype(np.float32)
    disc = ((1 + monthly_rate) ** -h.astype(float)).astype(np.float32)
    E = cum[t0_index] * np.exp(eta).astype(np.float32)[:, None]
    S0 = np.exp(-E)
    kept = np.bincount(groups, S0[:, -1], n_groups)
    rev = np.bincount(groups, revenue * np.einsum("ij,j->i", S0, disc), n_groups)
    extra_kept, extra_rev = [], []
    for shift in shifts:
        mult = np.exp(np.asarray(shift, dtype="float64")).astype(np.float32)
        D = np.exp(-E * (mult[:, None] if mult.ndim else mult)) - S0
        extra_kept.append(np.bincount(groups, D[:, -1], n_groups))
        extra_rev.append(np.bincount(groups, revenue * np.einsum("ij,j->i", D, disc), n_groups))
    return kept, rev, extra_kept, extra_rev


def test_kept_and_revenue_equals_the_reference_implementation(rossi):
    fit = CL.cox_efron(rossi["week"] / 4.0, rossi["arrest"], rossi[["age", "prio"]].to_numpy("float64"))
    rng = np.random.default_rng(8)
    n = 5000
    t0_values, t0_index = np.unique(rng.integers(0, 60, n) / 3.0, return_inverse=True)
    shifts = [0.15, -0.2, np.where(rng.random(n) < 0.4, rng.normal(0.2, 0.05, n), 0.0)]
    args = (fit, t0_values, t0_index, rng.normal(0, 0.4, n), shifts, rng.uniform(10, 80, n), 12, 0.008,
            rng.integers(0, 4, n), 4)
    new, ref = I._kept_and_revenue(*args), _kept_and_revenue_reference(*args)
    np.testing.assert_array_equal(new[0], ref[0])  # kept: the same float32 survival, summed alike
    np.testing.assert_array_equal(np.asarray(new[2]), np.asarray(ref[2]))
    # revenue: discounting by sgemv instead of einsum (float32 sums over the 12 months in another order)
    np.testing.assert_allclose(new[1], ref[1], rtol=1e-7)  # 1.3e-9 here
    np.testing.assert_allclose(np.asarray(new[3]), np.asarray(ref[3]), rtol=1e-7)  # 1.7e-9 here
