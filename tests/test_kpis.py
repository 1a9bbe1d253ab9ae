"""Tests of helpers.kpis: published worked examples, hand-computed cases, interval coverage by simulation,
comparisons, bad input. The DuckDB series tests are in tests/test_kpis_series.py."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from helpers import kpis as K
from helpers.errors import KitError

Z95 = 1.959963984540054


# ---------------------------------------------------------------------------------------------------------
# NPS: adjusted-Wald
# ---------------------------------------------------------------------------------------------------------

def test_nps_hand_computed_adjusted_wald():
    # 5 promoters, 3 passives, 2 detractors (n = 10): NPS = 100 * (5 - 2) / 10 = 30.
    # Adjusted Wald (Lewis & Sauro; Rocks 2016): n' = 13, p' = 5.75/13 = 0.4423077, d' = 2.75/13 = 0.2115385,
    # centre = 0.2307692, Var = p' + d' - centre^2 = 0.6538462 - 0.0532544 = 0.6005917,
    # se = sqrt(0.6005917 / 13) = 0.2149412, interval = 0.2307692 -/+ 1.959964 * 0.2149412
    #   = (-0.1905033, 0.6520418) -> (-19.05, +65.20).
    scores = [9, 10, 9, 10, 9, 7, 8, 7, 3, 6]
    e = K.nps(scores)
    assert e.value == pytest.approx(30.0)
    assert e.n == 10
    assert e.ci_low == pytest.approx(-19.0503, abs=1e-3)
    assert e.ci_high == pytest.approx(65.2042, abs=1e-3)
    assert e.unit == "points" and e.metric == "nps"


def test_nps_definition_categories():
    # 0-6 detractors, 7-8 passives, 9-10 promoters (Reichheld 2003)
    assert K.nps([6, 7, 8, 9]).value == pytest.approx(0.0)
    assert K.nps([10] * 3 + [0]).value == pytest.approx(50.0)
    assert K.nps([7, 8]).value == pytest.approx(0.0)
    e = K.nps([10] * 40)
    assert e.value == 100 and e.ci_high == 100 and e.ci_low < 100
    one = K.nps([3])  # adjusted interval alone is -98.5 to +48.5; widened to contain the observed -100
    assert one.value == -100 and one.ci_low == -100 and one.ci_high == pytest.approx(48.5, abs=0.1)


def test_nps_ignores_nan_and_accepts_series():
    s = pd.Series([9.0, np.nan, 3.0, 10.0])
    e = K.nps(s)
    assert e.n == 3
    assert e.value == pytest.approx(100 * (2 - 1) / 3)


def test_nps_interval_coverage_by_simulation():
    rng = np.random.default_rng(20261125)
    reps, n = 4000, 150
    probs = np.array([0.45, 0.30, 0.25])  # promoters, passives, detractors
    true = 100 * (probs[0] - probs[2])
    counts = rng.multinomial(n, probs, size=reps)
    _, _, lo, hi = K.nps_interval(counts[:, 0], counts[:, 2], n)
    cover = np.mean((100 * lo <= true) & (true <= 100 * hi))
    mc_se = math.sqrt(0.95 * 0.05 / reps)
    assert abs(cover - 0.95) < 4 * mc_se + 0.005, cover


def test_nps_interval_coverage_extreme_proportions():
    # Rocks (2016): the adjusted Wald keeps coverage near nominal also near the edges, where Wald fails
    rng = np.random.default_rng(7)
    reps, n = 4000, 40
    probs = np.array([0.85, 0.12, 0.03])
    true = 100 * (probs[0] - probs[2])
    counts = rng.multinomial(n, probs, size=reps)
    _, _, lo, hi = K.nps_interval(counts[:, 0], counts[:, 2], n)
    cover = np.mean((100 * lo <= true) & (true <= 100 * hi))
    assert 0.92 < cover < 0.985, cover


# ---------------------------------------------------------------------------------------------------------
# Proportions: Wilson
# ---------------------------------------------------------------------------------------------------------

def test_wilson_published_example_newcombe_1998():
    # Newcombe (1998), Stat. Med. 17:857-872, Table I: 81/263, score (Wilson) interval 0.2553 to 0.3662
    lo, hi = K.wilson_interval(81, 263)
    assert float(lo) == pytest.approx(0.2553, abs=5e-5)
    assert float(hi) == pytest.approx(0.3662, abs=5e-5)


@pytest.mark.parametrize("k,n", [(0, 20), (1, 29), (15, 148), (81, 263), (148, 148), (400, 1000), (3, 7)])
@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
def test_wilson_matches_statsmodels(k, n, confidence):
    lo, hi = K.wilson_interval(k, n, confidence)
    ref = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    assert float(lo) == pytest.approx(ref[0], abs=1e-10)
    assert float(hi) == pytest.approx(ref[1], abs=1e-10)


def test_csat_top2box_and_wilson():
    scores = [5, 4, 4, 3, 2, 5, 1, 4, 5, 3]  # 6 of 10 in 4-5
    e = K.csat(scores)
    ref = proportion_confint(6, 10, method="wilson")
    assert e.value == pytest.approx(60.0)
    assert (e.ci_low, e.ci_high) == pytest.approx((100 * ref[0], 100 * ref[1]))
    assert e.unit == "%" and e.n == 10


def test_wilson_coverage_by_simulation():
    rng = np.random.default_rng(11)
    reps, n, p = 5000, 120, 0.82
    k = rng.binomial(n, p, size=reps)
    lo, hi = K.wilson_interval(k, n)
    cover = np.mean((lo <= p) & (p <= hi))
    assert abs(cover - 0.95) < 4 * math.sqrt(0.95 * 0.05 / reps) + 0.01, cover


def test_fcr_reopen_repeat_hand_computed():
    e = K.fcr([1, 1, 2, 3, 1, np.nan, 1])
    assert e.value == pytest.approx(100 * 4 / 6) and e.n == 6
    r = K.reopen_rate(pd.Series([True, False, pd.NA, False, True], dtype="boolean"))
    assert r.value == pytest.approx(50.0) and r.n == 4
    rp = K.repeat_purchase_rate([0, 1, 2, 5, 1, 0, 3])  # buyers 5, repeaters 3
    assert rp.value == pytest.approx(60.0) and rp.n == 5
    ref = proportion_confint(3, 5, method="wilson")
    assert (rp.ci_low, rp.ci_high) == pytest.approx((100 * ref[0], 100 * ref[1]))


# ---------------------------------------------------------------------------------------------------------
# Means (t) and medians (order statistics); counts (Poisson)
# ---------------------------------------------------------------------------------------------------------

def test_ces_mean_t_interval_hand_computed():
    x = [2, 3, 3, 4, 5, 1, 2, 4]  # mean 3.0, squared deviations sum to 12, sd = sqrt(12/7)
    e = K.ces(x)
    half = stats.t.ppf(0.975, 7) * math.sqrt(12 / 7) / math.sqrt(8)
    assert e.value == pytest.approx(3.0)
    assert (e.ci_low, e.ci_high) == pytest.approx((3 - half, 3 + half))
    assert half == pytest.approx(2.364624 * 0.4629100, abs=1e-5)  # t_{0.975,7} = 2.364624


def test_mean_interval_stays_on_the_scale():
    e = K.ces([1, 1, 2])  # t interval 1.33 -/+ 1.43 would go below the scale minimum 1
    assert e.ci_low == 1.0 and e.ci_high < 7
    single = K.ces([4])
    assert (single.value, single.ci_low, single.ci_high, single.n) == (4.0, 1.0, 7.0, 1)


def test_t_interval_coverage_by_simulation():
    rng = np.random.default_rng(3)
    reps, n, mu = 5000, 12, 4.2
    x = rng.normal(mu, 1.3, size=(reps, n))
    lo, hi = K.t_interval(x.mean(axis=1), x.std(axis=1, ddof=1), n)
    cover = np.mean((lo <= mu) & (mu <= hi))
    assert abs(cover - 0.95) < 4 * math.sqrt(0.95 * 0.05 / reps), cover


def test_median_order_statistic_ranks_published():
    # Conover (1999) sec. 3.2 / classical tables: n = 10 at 95% uses x_(2), x_(9), exact coverage 0.9785;
    # n = 20 uses x_(6), x_(15), coverage 0.9586
    assert K.median_order_ranks(10) == (2, 9, pytest.approx(1 - 2 * 11 / 1024))
    l, u, cov = K.median_order_ranks(20)
    assert (l, u) == (6, 15)
    assert cov == pytest.approx(0.9586, abs=1e-4)


def test_median_estimate_values():
    x = np.array([7.0, 1.0, 3.0, 10.0, 2.0, 5.0, 4.0, 8.0, 6.0, 9.0])
    e = K.median_estimate(x, "resolution_hours", "hours")
    assert e.value == 5.5
    assert (e.ci_low, e.ci_high) == (2.0, 9.0)
    small = K.median_estimate([3.0, 1.0, 2.0], "resolution_hours", "hours")
    assert (small.ci_low, small.ci_high) == (1.0, 3.0)
    assert "too small" in small.method


def test_median_interval_coverage_by_simulation_skewed():
    rng = np.random.default_rng(5)
    reps, n = 4000, 41
    true = math.log(2) * 6.0  # exponential(scale 6) median
    x = np.sort(rng.exponential(6.0, size=(reps, n)), axis=1)
    l, u, cov = K.median_order_ranks(n)
    inside = (x[:, l - 1] <= true) & (true <= x[:, u - 1])
    cover = inside.mean()
    assert cov >= 0.95
    assert abs(cover - cov) < 4 * math.sqrt(cov * (1 - cov) / reps), (cover, cov)


def test_poisson_interval_published():
    # exact (Garwood) 95% interval for a count of 10: 4.795 to 18.390 (standard tables)
    lo, hi = K.poisson_interval(10)
    assert float(lo) == pytest.approx(4.7954, abs=1e-4)
    assert float(hi) == pytest.approx(18.3904, abs=1e-4)
    e = K.count_estimate(0)
    assert e.ci_low == 0 and e.ci_high == pytest.approx(3.6889, abs=1e-4)


def test_ticket_hours_and_time_kpis():
    t = pd.DataFrame({
        "ticket_id": ["T1", "T2", "T3", "T4"],
        "created_at": pd.to_datetime(["2025-01-01 08:00", "2025-01-01 09:00", "2025-01-02 10:00",
                                      "2025-01-03 00:00"]),
        "first_response_at": pd.to_datetime(["2025-01-01 09:30", "2025-01-01 09:15", None, "2025-01-03 04:00"]),
        "resolved_at": pd.to_datetime(["2025-01-02 08:00", None, "2025-01-02 22:00", "2025-01-03 06:00"]),
    })
    np.testing.assert_allclose(K.ticket_hours(t, "first_response"), [1.5, 0.25, np.nan, 4.0])
    np.testing.assert_allclose(K.ticket_hours(t, "resolution"), [24.0, np.nan, 12.0, 6.0])
    med = K.resolution_time(t)
    assert med.value == 12.0 and med.n == 3 and med.unit == "hours"
    mean = K.first_response_time(t, statistic="mean")
    assert mean.value == pytest.approx((1.5 + 0.25 + 4.0) / 3)


# ---------------------------------------------------------------------------------------------------------
# Retention, churn and CLV
# ---------------------------------------------------------------------------------------------------------

def _customers():
    return pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(8)],
        "signup_date": pd.to_datetime(["2024-01-10", "2024-02-15", "2024-03-01", "2024-03-20", "2024-02-28",
                                       "2024-03-05", "2024-01-01", "2024-04-02"]),
        "end_date": pd.to_datetime([None, "2024-03-10", "2024-03-31", None, "2024-03-01", "2024-03-25", None,
                                    None]),
        "segment": ["consumer"] * 8,
        "monthly_revenue": [10.0, 20, 30, 40, 50, 60, 70, 80],
        "purchases": [1.0, 2, 0, 3, 1, 1, 4, 2],
    })


def test_retention_counts_hand_computed():
    # March 2024: S = active on 1 March, signed up before: C0, C1 (ends 10 Mar), C4 (ends 1 Mar), C6 -> 4
    # N = signed up 1-31 March: C2, C3, C5 -> 3
    # E = active after 31 March: C0, C3, C6 (C2 ended 31 Mar, C5 ended 25 Mar) -> 3
    # R = of S still active after 31 March: C0, C6 -> 2
    S, N, E, R = K.retention_counts(_customers(), "2024-03-01", "2024-03-31")
    assert (S, N, E, R) == (4, 3, 3, 2)
    r = K.retention_rate(_customers(), "2024-03-01", "2024-03-31")
    # published (E - N) / S = 0 / 4 would say 0% because new customers C2, C5 left within March;
    # the retained share of the starting customers is 2 / 4
    assert r.value == pytest.approx(50.0) and r.n == 4
    ref = proportion_confint(2, 4, method="wilson")
    assert (r.ci_low, r.ci_high) == pytest.approx((100 * ref[0], 100 * ref[1]))
    c = K.churn_rate(_customers(), "2024-03-01", "2024-03-31")
    assert c.value == pytest.approx(50.0)
    assert (c.ci_low, c.ci_high) == pytest.approx((100 - r.ci_high, 100 - r.ci_low))
    # February: S = C0, C6 -> 2; N = C1, C4 -> 2; E = C0, C1, C4, C6 -> 4; R = 2. No new customer left in
    # February, so the published (E - N) / S = (4 - 2) / 2 = 100% equals R / S
    feb = K.retention_counts(_customers(), "2024-02-01", "2024-02-29")
    assert feb == (2, 2, 4, 2)
    assert K.retention_rate(_customers(), "2024-02-01", "2024-02-29").value == pytest.approx(
        100 * (feb.E - feb.N) / feb.S)


def test_clv_gupta_lehmann_margin_multiples():
    # Gupta & Lehmann (2003) margin multiple r / (1 + i - r) for end-of-period margins, e.g.
    # r = 80%, i = 12% -> 2.5; r = 90%, i = 10% -> 4.5; r = 60%, i = 14% -> 1.11.
    # Our convention (margin at the start of each period) adds the first margin: m (1 + multiple).
    for r, i, multiple in [(0.8, 0.12, 2.5), (0.9, 0.10, 4.5), (0.6, 0.14, 1.1111)]:
        assert K.clv_discounted(1.0, r, i) == pytest.approx(1 + multiple, abs=1e-4)
    assert K.clv_discounted(100, 0.8, 0.12) == pytest.approx(100 * 1.12 / 0.32)


def test_clv_finite_horizon_and_simple():
    m, r, d = 50.0, 0.85, 0.01
    brute = sum(m * r ** t / (1 + d) ** t for t in range(24))
    assert K.clv_discounted(m, r, d, horizon=24) == pytest.approx(brute)
    assert K.clv_simple(m, 0.75) == pytest.approx(200.0)  # expected lifetime 1 / (1 - 0.75) = 4 periods
    assert K.clv_discounted(m, 0.75, 0.0) == pytest.approx(K.clv_simple(m, 0.75))


def test_clv_delta_method_coverage_by_simulation():
    rng = np.random.default_rng(9)
    reps, n_m, S, r, d, mu = 2000, 200, 400, 0.9, 0.01, 30.0
    true = K.clv_discounted(mu, r, d)
    hits = 0
    for _ in range(reps):
        margins = rng.gamma(2.0, mu / 2.0, n_m)
        kept = rng.binomial(S, r)
        e = K.clv(margins, kept, S, d)
        hits += e.ci_low <= true <= e.ci_high
    cover = hits / reps
    assert 0.92 < cover < 0.975, cover


# ---------------------------------------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ka,na,kb,nb,lo,hi", [
    # Newcombe (1998), Stat. Med. 17:873-890, Table II, method 10 (hybrid score), difference kb/nb - ka/na
    (48, 80, 56, 70, 0.0524, 0.3339),
    (3, 10, 9, 10, 0.1705, 0.8090),
    (2, 7, 6, 7, 0.0582, 0.8062),
    (0, 29, 5, 56, -0.0381, 0.1926),
    (0, 20, 0, 10, -0.1611, 0.2775),
    (0, 20, 10, 10, 0.6791, 1.0000),
])
def test_compare_proportions_newcombe_published(ka, na, kb, nb, lo, hi):
    c = K.compare_proportions(ka, na, kb, nb)
    assert c.difference == pytest.approx(100 * (kb / nb - ka / na))
    assert c.ci_low == pytest.approx(100 * lo, abs=0.01)
    assert c.ci_high == pytest.approx(100 * hi, abs=0.01)


def test_compare_csat_p_value_is_two_proportion_z_test():
    a = [5] * 60 + [3] * 40  # 60%
    b = [4] * 72 + [2] * 28  # 72%
    c = K.compare_csat(a, b)
    pooled = 132 / 200
    z = (0.72 - 0.60) / math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 100))
    assert c.p_value == pytest.approx(2 * stats.norm.sf(z))
    assert c.p_value == pytest.approx(proportions_ztest([72, 60], [100, 100])[1])
    assert c.difference == pytest.approx(12.0)


def test_compare_csat_type_one_error_by_simulation():
    rng = np.random.default_rng(21)
    reps, n, p = 3000, 150, 0.7
    ka, kb = rng.binomial(n, p, reps), rng.binomial(n, p, reps)
    pooled = (ka + kb) / (2 * n)
    z = (kb - ka) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
    p_vals = 2 * stats.norm.sf(np.abs(z))
    # our function on a subsample agrees with the vectorised pooled z-test
    for i in range(5):
        assert K.compare_proportions(int(ka[i]), n, int(kb[i]), n).p_value == pytest.approx(p_vals[i])
    assert abs(np.mean(p_vals < 0.05) - 0.05) < 4 * math.sqrt(0.05 * 0.95 / reps)


def test_compare_nps_hand_computed_and_consistent():
    a = [9] * 40 + [7] * 30 + [3] * 30  # NPS +10, n 100
    b = [10] * 55 + [8] * 25 + [5] * 20  # NPS +35, n 100
    c = K.compare_nps(a, b)
    # adjusted: a: p' = 40.75/103, d' = 30.75/103; b: p' = 55.75/103, d' = 20.75/103
    pa, da, pb, db = 40.75 / 103, 30.75 / 103, 55.75 / 103, 20.75 / 103
    se = math.sqrt((pa + da - (pa - da) ** 2) / 103 + (pb + db - (pb - db) ** 2) / 103)
    diff_adj = (pb - db) - (pa - da)
    assert c.difference == pytest.approx(25.0)
    assert c.ci_low == pytest.approx(100 * (diff_adj - Z95 * se))
    assert c.ci_high == pytest.approx(100 * (diff_adj + Z95 * se))
    assert c.p_value == pytest.approx(2 * stats.norm.sf(diff_adj / se))
    assert c.significant() == (c.ci_low > 0)


def test_compare_nps_coverage_and_type_one_error():
    rng = np.random.default_rng(33)
    reps, n = 3000, 120
    pa, pb = np.array([0.4, 0.35, 0.25]), np.array([0.5, 0.3, 0.2])
    true = 100 * ((pb[0] - pb[2]) - (pa[0] - pa[2]))
    ca, cb = rng.multinomial(n, pa, reps), rng.multinomial(n, pb, reps)
    c_a, se_a, _, _ = K.nps_interval(ca[:, 0], ca[:, 2], n)
    c_b, se_b, _, _ = K.nps_interval(cb[:, 0], cb[:, 2], n)
    se = np.hypot(se_a, se_b)
    lo, hi = 100 * (c_b - c_a - Z95 * se), 100 * (c_b - c_a + Z95 * se)
    cover = np.mean((lo <= true) & (true <= hi))
    assert abs(cover - 0.95) < 4 * math.sqrt(0.95 * 0.05 / reps) + 0.005, cover
    # the scalar function matches the vectorised formula
    c = K.compare_nps(np.repeat([10, 8, 2], ca[0]), np.repeat([10, 8, 2], cb[0]))
    assert (c.ci_low, c.ci_high) == pytest.approx((lo[0], hi[0]))


def test_compare_means_welch_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(3.0, 1.0, 40), rng.normal(3.6, 2.0, 25)
    c = K.compare_means(a, b, "ces", "score")
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert c.difference == pytest.approx(b.mean() - a.mean())
    assert c.p_value == pytest.approx(ref.pvalue)
    # Welch-Satterthwaite df by hand
    va, vb = a.var(ddof=1) / 40, b.var(ddof=1) / 25
    df = (va + vb) ** 2 / (va ** 2 / 39 + vb ** 2 / 24)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert (c.ci_low, c.ci_high) == pytest.approx((c.difference - half, c.difference + half))


def test_compare_medians_bootstrap_detects_shift_and_not_noise():
    rng = np.random.default_rng(2)
    a = rng.exponential(10, 300)
    shifted = K.compare_medians(a, a + 5, "resolution_hours", "hours", n_boot=1000)
    assert shifted.significant() and 3 < shifted.ci_low < 5 < shifted.ci_high < 7.5
    same = K.compare_medians(a, rng.permutation(a), n_boot=1000)
    assert same.difference == 0 and not same.significant()
    assert K.compare_medians(a, a + 5, n_boot=500, seed=4).ci_low == \
        K.compare_medians(a, a + 5, n_boot=500, seed=4).ci_low  # seeded: reproducible


def test_compare_rates_exact_conditional_test():
    c = K.compare_rates(30, 50)
    assert c.difference == 20
    assert c.p_value == pytest.approx(stats.binomtest(50, 80, 0.5).pvalue)
    assert c.ci_low == pytest.approx(20 - Z95 * math.sqrt(80))


# ---------------------------------------------------------------------------------------------------------
# Result objects: format and describe
# ---------------------------------------------------------------------------------------------------------

def test_estimate_format():
    e = K.Estimate(23.0, 18.2, 27.9, 1204, "nps", "points", "adjusted Wald")
    assert e.format() == "NPS +23 (95% CI +18 to +28, n = 1,204)"
    c = K.Estimate(82.44, 80.1, 84.57, 950, "csat", "%")
    assert c.format() == "CSAT 82.4% (95% CI 80.1 to 84.6%, n = 950)"
    h = K.Estimate(3.27, 2.9, 3.5, 40, "resolution_hours", "hours")
    assert h.format() == "Median resolution time 3.3 hours (95% CI 2.9 to 3.5 hours, n = 40)"
    ces = K.Estimate(2.345, 2.1, 2.6, 12, "ces", "score")
    assert ces.format() == "CES 2.35 (95% CI 2.10 to 2.60, n = 12)"


def test_comparison_describe_only_says_rose_when_significant():
    a = K.Estimate(70.0, 65, 75, 300, "csat", "%")
    b = K.Estimate(74.0, 69, 79, 300, "csat", "%")
    noise = K.Comparison(a, b, 4.0, -2.0, 10.0, 0.21, "test")
    text = noise.describe()
    assert "no significant change" in text and "rose" not in text and "fell" not in text
    real = K.Comparison(a, b, 4.0, 1.0, 7.0, 0.01, "test")
    assert real.describe().startswith("CSAT rose by 4.0 points")
    down = K.Comparison(b, a, -4.0, -7.0, -1.0, 0.01, "test")
    assert " fell " in down.describe()
    assert real.significant(0.05) and not real.significant(0.001)


# ---------------------------------------------------------------------------------------------------------
# Bad input -> clear KitError (ValueError) naming the metric and the problem
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("func,values,pattern", [
    (K.nps, [], r"'nps'.*empty"),
    (K.nps, [np.nan, np.nan], r"'nps'.*missing"),
    (K.nps, [3, 11, 9], r"'nps'.*outside the scale 0-10.*11"),
    (K.nps, [3.5, 9], r"'nps'.*outside"),
    (K.csat, [0, 4, 5], r"'csat'.*outside the scale 1-5.*\b0\b"),
    (K.csat, [], r"'csat'.*empty"),
    (K.ces, [8], r"'ces'.*outside the scale 1-7"),
    (K.fcr, [0, 1], r"'fcr'.*outside"),
    (K.csat, ["good", "bad"], r"'csat'.*not numbers"),
    (K.csat, "45", r"'csat'.*string"),
])
def test_bad_input_raises_clear_error(func, values, pattern):
    with pytest.raises(KitError, match=pattern):
        func(values)


def test_bad_input_other_cases():
    t = pd.DataFrame({"ticket_id": ["T1", "T2"],
                      "created_at": pd.to_datetime(["2025-01-02", "2025-01-02"]),
                      "first_response_at": pd.to_datetime(["2025-01-01", "2025-01-03"]),
                      "resolved_at": pd.to_datetime([None, None])})
    with pytest.raises(KitError, match=r"first_response_hours.*1 tickets.*negative.*T1"):
        K.first_response_time(t)
    with pytest.raises(KitError, match=r"resolution_hours.*all durations.*missing"):
        K.resolution_time(t)
    with pytest.raises(KitError, match=r"'no_such_kpi'.*unknown metric.*csat"):
        K.compute_kpi("no_such_kpi", {})
    with pytest.raises(ValueError, match=r"retention_rate.*S = 0"):
        K.retention_rate(_customers(), "2023-01-01", "2023-01-31")
    with pytest.raises(KitError, match=r"clv.*retention.*\[0, 1\)"):
        K.clv_discounted(10, 85, 0.01)
    with pytest.raises(KitError, match=r"repeat_purchase_rate.*no customer has a purchase"):
        K.repeat_purchase_rate([0, 0])


# ---------------------------------------------------------------------------------------------------------
# Registry and compute_kpi on frames
# ---------------------------------------------------------------------------------------------------------

def test_registry_entries_are_complete():
    needed = {"csat", "nps", "ces", "fcr", "first_response_hours", "resolution_hours", "reopen_rate",
              "retention_rate", "churn_rate", "repeat_purchase_rate", "clv", "response_count", "ticket_volume"}
    assert needed <= set(K.KPIS)
    for name, k in K.KPIS.items():
        assert k.name == name and k.label and k.unit and k.description
        assert k.table in ("responses", "tickets", "customers")
    assert K.KPIS["csat"].bounds == (0, 100) and K.KPIS["csat"].higher_is_better
    assert not K.KPIS["ces"].higher_is_better and not K.KPIS["churn_rate"].higher_is_better


def test_compute_kpi_filters_and_dates():
    responses = pd.DataFrame({
        "response_id": [f"R{i}" for i in range(6)],
        "customer_id": ["C1"] * 6,
        "response_date": pd.to_datetime(["2025-01-05", "2025-01-20", "2025-02-03", "2025-02-10", "2025-02-28",
                                         "2025-03-01"]),
        "department": ["Sales", "Billing", "Sales", "Sales", "Billing", "Sales"],
        "csat": [5.0, 2.0, 4.0, 1.0, 5.0, 5.0],
        "nps": [10.0, 3.0, 9.0, 6.0, np.nan, 8.0],
    })
    e = K.compute_kpi("csat", {"responses": responses}, filters={"department": "Sales"}, start="2025-02-01",
                      end="2025-02-28")
    assert e.value == pytest.approx(50.0) and e.n == 2
    e2 = K.compute_kpi("nps", responses, filters={"department": ["Sales", "Billing"]}, end="2025-02-28")
    assert e2.n == 4 and e2.value == pytest.approx(100 * (2 - 2) / 4)
    assert K.compute_kpi("response_count", responses, start="2025-02-01").value == 4
    with pytest.raises(KitError, match=r"csat.*no responses rows"):
        K.compute_kpi("csat", responses, start="2030-01-01")
    with pytest.raises(KitError, match=r"csat.*no column.*'team'"):
        K.compute_kpi("csat", responses, filters={"team": "A"})


def test_compute_kpi_retention_window_is_one_period():
    cust = _customers()
    # 1 Feb - 31 Mar as one period: S = C0, C6 (2); both still active after 31 March -> 100%
    e = K.compute_kpi("retention_rate", cust, start="2024-02-01", end="2024-03-31")
    assert e.value == pytest.approx(100.0) and e.n == 2
    ch = K.compute_kpi("churn_rate", {"customers": cust}, start="2024-02-01", end="2024-03-31")
    assert ch.value == pytest.approx(0.0)
    cmp = K.compare_kpi("retention_rate", cust, cust, period_a=("2024-02-01", "2024-02-29"),
                        period_b=("2024-03-01", "2024-03-31"))
    assert cmp.difference == pytest.approx(-50.0)  # 100% in February, 50% in March
    assert not cmp.significant()  # 2 and 4 customers: no evidence
    with pytest.raises(KitError, match=r"retention_rate.*needs the period"):
        K.compute_kpi("retention_rate", cust)
    # the last date of the table is 2 April 2024 (C7's signup): a window reaching into the future is clipped
    # there instead of counting everyone without an end date as retained
    future = K.compute_kpi("retention_rate", cust, start="2024-04-01", end="2030-12-31")
    assert future.value == K.compute_kpi("retention_rate", cust, start="2024-04-01", end="2024-04-02").value
    with pytest.raises(KitError, match=r"retention_rate.*after the last date in the customers table"):
        K.compute_kpi("retention_rate", cust, start="2024-05-01", end="2024-05-31")


def test_compute_kpi_clv_from_customers():
    cust = _customers()
    e = K.compute_kpi("clv", cust, start="2024-02-01", end="2024-03-31", discount_rate=0.01)
    # active on 31 March: C0 (10), C2 (30, last day 31 Mar), C3 (40), C6 (70) -> mean margin 37.5
    # pooled monthly retention: February R/S = 2/2, March 2/4 -> r = 4/6
    r = 4 / 6
    assert e.value == pytest.approx(37.5 * 1.01 / (1.01 - r))
    assert e.ci_low < e.value < e.ci_high


def test_plots_draw_intervals_on_given_axis():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2)
    c = K.compare_csat([5, 4, 2, 1] * 30, [5, 5, 4, 2] * 30)
    assert c.plot(ax=axes[0]) is axes[0]
    lines = axes[0].lines[0]
    np.testing.assert_allclose(lines.get_ydata(), [c.a.value, c.b.value])
    assert "difference +25.0" in axes[0].get_title()
    e = K.nps([9, 10, 3, 7] * 20)
    assert e.plot(ax=axes[1]) is axes[1]
    plt.close(fig)
