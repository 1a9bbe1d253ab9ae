"""Tests of the satisfaction -> churn link corrected for rating noise (helpers.churn_link).

References: R ``coxph`` (Efron ties) on the Rossi recidivism data (tests/reference/retention), statsmodels
``PHReg`` on replicated rows (frequency weights), synthetic data with a known log hazard ratio and rating
noise, the demo's ground truth (hazard ratio 0.30 per point of latent satisfaction), and a simulation of the
interval's coverage (slow).
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers import churn_link as CL  # noqa: E402
from helpers import retention as R  # noqa: E402
from helpers.errors import KitError  # noqa: E402

REF = Path(__file__).parent / "reference" / "retention"
ROSSI_COVS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


# ---------------------------------------------------------------------------------------------------
# The Cox solver against R coxph and statsmodels
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rossi():
    return pd.read_csv(REF / "rossi.csv")


def test_cox_efron_reproduces_r_coxph_on_rossi(rossi):
    ref = pd.read_csv(REF / "rossi_coxph_efron.csv").set_index("covariate").loc[ROSSI_COVS]
    fit = CL.cox_efron(rossi["week"], rossi["arrest"], rossi[ROSSI_COVS].to_numpy())
    np.testing.assert_allclose(fit.coef, ref["coef"], atol=5e-5)
    np.testing.assert_allclose(fit.se, ref["se"], atol=5e-5)


def test_cox_efron_frequency_weights_equal_replicated_rows(rossi):
    from statsmodels.duration.hazard_regression import PHReg

    rng = np.random.default_rng(3)
    w = rng.multinomial(len(rossi), np.full(len(rossi), 1 / len(rossi)))
    X = rossi[ROSSI_COVS].to_numpy("float64")
    fit = CL.cox_efron(rossi["week"], rossi["arrest"], X, weights=w)
    rows = np.repeat(np.arange(len(rossi)), w)  # the resample written out row by row (heavy ties)
    ref = PHReg(rossi["week"].to_numpy()[rows], X[rows], status=rossi["arrest"].to_numpy()[rows],
                ties="efron").fit(disp=False)
    np.testing.assert_allclose(fit.coef, ref.params, atol=1e-7)
    np.testing.assert_allclose(fit.se, ref.bse, atol=1e-7)
    assert fit.loglik == pytest.approx(ref.llf, abs=1e-7)
    # the bootstrap's cheap refit (full-sample information held fixed) reaches the same root
    full = CL.cox_efron(rossi["week"], rossi["arrest"], X)
    fixed = CL.cox_efron(rossi["week"], rossi["arrest"], X, weights=w, init=full.coef,
                         fixed_information=full.information)
    np.testing.assert_allclose(fixed.coef, ref.params, atol=1e-7)
    with pytest.raises(CL.ChurnLinkInputError, match="whole numbers"):
        CL.cox_efron(rossi["week"], rossi["arrest"], X, weights=np.full(len(rossi), 0.5))


def test_cox_baseline_cumulative_hazard_matches_breslow_by_hand():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 2))
    t = rng.exponential(1 / np.exp(X @ [0.5, -0.3]))
    c = rng.uniform(0, 2, 300)
    d, e = np.minimum(t, c), (t <= c).astype(float)
    fit = CL.cox_efron(d, e, X)
    eta = X @ fit.coef
    event_times = np.sort(d[e == 1])  # continuous times: no ties, so Efron's increments are Breslow's
    by_hand = np.cumsum([1 / np.exp(eta[d >= tj]).sum() for tj in event_times])
    np.testing.assert_allclose(fit.baseline_cumhaz, by_hand, rtol=1e-10)
    np.testing.assert_allclose(fit.cumulative_hazard(event_times[[0, 5, -1]] + 1e-12), by_hand[[0, 5, -1]])
    assert fit.cumulative_hazard(event_times[0] / 2) == 0.0


# ---------------------------------------------------------------------------------------------------
# Per-customer rating statistics: pandas and DuckDB agree, and equal a hand computation
# ---------------------------------------------------------------------------------------------------

def test_rating_summary_pandas_and_sql_agree():
    import duckdb

    responses = pd.DataFrame({
        "customer_id": ["A", "A", "A", "B", "B", "C", "D", "D"],
        "csat": [5, 3, 4, 2, None, 4, 1, 5],
        "response_date": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01", "2025-01-05", "2025-01-06",
                                         "2025-01-07", "2025-01-08", "2026-01-01"])})
    py = CL.rating_summary(responses, as_of="2025-12-31")
    con = duckdb.connect()
    con.register("responses", responses)
    sql = CL.rating_summary_sql(con, as_of="2025-12-31")
    expected = pd.DataFrame({"customer_id": ["A", "B", "C", "D"], "n_ratings": [3, 1, 1, 1],
                             "mean_rating": [4.0, 2.0, 4.0, 1.0], "within_ss": [2.0, 0.0, 0.0, 0.0]})
    for got in (py, sql):
        pd.testing.assert_frame_equal(got.reset_index(drop=True)[expected.columns], expected, check_dtype=False)
    all_dates = CL.rating_summary_sql(con)
    assert all_dates.set_index("customer_id").loc["D", "within_ss"] == pytest.approx(8.0)
    with pytest.raises(CL.ChurnLinkInputError, match="no column"):
        CL.rating_summary_sql(con, rating="ease")
    with pytest.raises(CL.ChurnLinkInputError, match="not numeric"):
        CL.rating_summary(responses.assign(csat=["x"] * 8))


# ---------------------------------------------------------------------------------------------------
# Synthetic data with known truth
# ---------------------------------------------------------------------------------------------------

def synthetic(n: int, seed: int, log_hr: float = -0.8, sigma_x: float = 0.8, sigma_u: float = 0.9,
              k_max: int = 6, base_hazard: float = 0.02) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Latent satisfaction X ~ N(3.5 + 0.3 segment, sigma_x^2); k ~ U{1..k_max} continuous ratings
    X + N(0, sigma_u^2); exponential churn with hazard base_hazard exp(log_hr (X - 3.5) + 0.3 segment)
    per month, uniform censoring over 36 months (about 30% churn with the defaults)."""
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, 2, n)
    x = 3.5 + 0.3 * seg + sigma_x * rng.standard_normal(n)
    k = rng.integers(1, k_max + 1, n)
    cust = np.repeat(np.arange(n), k)
    ratings = pd.DataFrame({"customer_id": cust, "csat": x[cust] + sigma_u * rng.standard_normal(len(cust))})
    t = rng.exponential(1 / (base_hazard * np.exp(log_hr * (x - 3.5) + 0.3 * seg)))
    c = rng.uniform(0, 36, n)
    survival = pd.DataFrame({"customer_id": np.arange(n), "duration": np.minimum(t, c),
                             "event": (t <= c).astype(int), "segment": np.where(seg == 1, "b", "a"),
                             "latent": x})
    return survival, ratings


def test_correction_recovers_known_hazard_ratio():
    truth = -0.8
    naive, corrected, covered, seg_covered = [], [], 0, 0
    for seed in range(1, 6):
        survival, ratings = synthetic(3000, seed, log_hr=truth)
        res = CL.fit_churn_link(survival, CL.rating_summary(ratings), ["segment"], n_boot=100, seed=seed)
        tab = res.table.set_index(["model", "term"])
        nv, cr = tab.loc[("naive", "satisfaction")], tab.loc[("corrected", "satisfaction")]
        # the naive ratio is attenuated toward 1, its interval misses the truth
        assert np.exp(truth) < nv["ci_low"] and nv["hazard_ratio"] < 1
        assert cr["ci_high"] / cr["ci_low"] < 1.6  # the corrected interval is informative
        covered += cr["ci_low"] <= np.exp(truth) <= cr["ci_high"]
        naive.append(nv["coef"])
        corrected.append(cr["coef"])
        # error variance and reliability of one rating match the simulation's (0.81; 0.64 / 1.45)
        assert res.calibration.error_variance == pytest.approx(0.81, rel=0.06)
        rel = res.reliability.set_index("k")
        assert rel.loc["1", "ci_low"] - 0.03 <= 0.64 / (0.64 + 0.81) <= rel.loc["1", "ci_high"] + 0.03
        # segment is in both models; the corrected segment effect's interval holds its truth (log-HR 0.3)
        seg = tab.loc[("corrected", "segment_b")]
        seg_covered += seg["ci_low"] < np.exp(0.3) < seg["ci_high"]
    assert covered >= 4 and seg_covered >= 4  # 95% intervals: 5 of 5 expected, 4 allowed
    assert abs(np.mean(corrected) - truth) < 0.05 < abs(np.mean(naive) - truth)


def test_strong_link_with_common_churn_is_under_corrected_as_documented():
    """Regression calibration is an approximation for the Cox model: the customer's leftover uncertainty
    about true satisfaction acts like a frailty, which attenuates the fit when churn is common and the link
    strong (Carroll et al. 2006, ch. 14; Xie, Wang & Prentice 2001). Measured here so the module
    docstring's numbers stay true: log-HR -1, half the customers churn -> about -0.92 on average."""
    naive, corrected = [], []
    for seed in range(6):
        survival, ratings = synthetic(3000, 100 + seed, log_hr=-1.0, base_hazard=0.05)
        res = CL.fit_churn_link(survival, CL.rating_summary(ratings), ["segment"], n_boot=20, seed=seed)
        tab = res.table.set_index(["model", "term"])["coef"]
        naive.append(tab[("naive", "satisfaction")])
        corrected.append(tab[("corrected", "satisfaction")])
    assert -0.66 < np.mean(naive) < -0.54
    assert -0.97 < np.mean(corrected) < -0.87


def test_equal_counts_divide_the_log_hazard_ratio_by_the_reliability():
    """With the same k for every customer, E[X | mean, Z] is linear in (mean, Z), so the corrected log-HR is
    the naive one divided by lambda(k) exactly (Carroll et al. 2006, ch. 4)."""
    survival, ratings = synthetic(1500, 11, k_max=1)
    rng = np.random.default_rng(0)
    extra = ratings.assign(csat=ratings["csat"] + 0.9 * rng.standard_normal(len(ratings)))
    both = pd.concat([ratings.assign(csat=ratings["csat"]), extra])  # k = 2 for everyone
    res = CL.fit_churn_link(survival, CL.rating_summary(both), ["segment"], n_boot=20)
    tab = res.table.set_index(["model", "term"])
    lam = res.calibration.reliability(2)
    assert tab.loc[("corrected", "satisfaction"), "coef"] == pytest.approx(
        tab.loc[("naive", "satisfaction"), "coef"] / lam, rel=1e-8)


def test_calibration_with_frequency_weights_equals_replicated_customers():
    survival, ratings = synthetic(400, 5)
    s = CL.rating_summary(ratings)
    Z = (survival["segment"] == "b").to_numpy(float)[:, None]
    f = np.random.default_rng(1).multinomial(400, np.full(400, 1 / 400))
    weighted = CL.calibrate_ratings(s["n_ratings"], s["mean_rating"], s["within_ss"], Z, weights=f)
    rows = np.repeat(np.arange(400), f)
    copied = CL.calibrate_ratings(s["n_ratings"].to_numpy()[rows], s["mean_rating"].to_numpy()[rows],
                                  s["within_ss"].to_numpy()[rows], Z[rows])
    assert weighted.error_variance == pytest.approx(copied.error_variance, rel=1e-12)
    assert weighted.true_variance == pytest.approx(copied.true_variance, rel=1e-12)
    np.testing.assert_allclose(weighted.predicted[rows], copied.predicted, rtol=1e-12)


# ---------------------------------------------------------------------------------------------------
# The demo: naive ~0.40, truth 0.30 per latent point
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_link(small_demo):
    truth = json.loads((small_demo / "ground_truth.json").read_text())
    frame = R.customer_durations(pd.read_parquet(small_demo / "customers.parquet"), as_of=truth["end"])
    responses = pd.read_parquet(small_demo / "responses.parquet", columns=["customer_id", "response_date", "csat"])
    summary = CL.rating_summary(responses, as_of=truth["end"])
    res = CL.fit_churn_link(frame, summary, ["segment"], n_boot=200, seed=2)
    return truth, frame, responses, summary, res


def test_demo_correction_moves_the_hazard_ratio_to_the_latent_truth(demo_link):
    truth, frame, _, _, res = demo_link
    hr_true = truth["churn"]["hazard_ratio_per_csat_point"]
    hr_n, lo_n, hi_n = res.hazard_ratio("naive")
    hr_c, lo_c, hi_c = res.hazard_ratio("corrected")
    assert 0.36 < hr_n < 0.45 and lo_n > hr_true  # the attenuated ~0.40 of the retention work
    assert lo_c <= hr_true <= hi_c  # corrected: the truth is inside its interval
    assert abs(np.log(hr_c) - np.log(hr_true)) < 0.25 * abs(np.log(hr_n) - np.log(hr_true))
    assert res.n_customers == 1661 and res.n_without_ratings == len(frame) - 1661


def test_fresh_demo_with_another_seed(tmp_path):
    """A second demo company (3,000 customers, seed 11), generated fresh: the same behaviour."""
    from helpers.demo import generate_demo

    truth = json.loads(generate_demo(tmp_path, n_customers=3000, seed=11).read_text())
    frame = R.customer_durations(pd.read_parquet(tmp_path / "customers.parquet"), as_of=truth["end"])
    summary = CL.rating_summary(pd.read_parquet(tmp_path / "responses.parquet"), as_of=truth["end"])
    res = CL.fit_churn_link(frame, summary, ["segment"], n_boot=200, seed=1)
    hr_true = truth["churn"]["hazard_ratio_per_csat_point"]
    hr_n, lo_n, _ = res.hazard_ratio("naive")
    _, lo_c, hi_c = res.hazard_ratio("corrected")
    assert 0.36 < hr_n < 0.45 and lo_n > hr_true
    assert lo_c <= hr_true <= hi_c


def test_demo_remaining_departures_are_measured(demo_link, small_demo):
    """The classical error model holds only approximately on the demo (ratings are the latent value rounded
    and clipped to 1-5; churn_link's docstring): measure each departure, so the documented gap stays true."""
    truth, frame, responses, summary, res = demo_link
    latent = pd.read_parquet(small_demo / "customer_truth.parquet")[["customer_id", "latent_csat"]]
    data = frame.merge(summary, on="customer_id").merge(latent, on="customer_id")
    hr_true = truth["churn"]["hazard_ratio_per_csat_point"]
    # 0. leaving out customers without ratings does not bias the link: Cox on the latent value among them
    on_latent = R.fit_cox(data, "duration", "event", ["latent_csat"]).table.loc["latent_csat"]
    assert on_latent["ci_low"] <= hr_true <= on_latent["ci_high"]
    # a. ceiling: the expected rating flattens near 5 (binned by latent value, every answer)
    r = responses.dropna(subset=["csat"]).merge(latent, on="customer_id")
    band = pd.qcut(r["latent_csat"], 10, labels=False)
    tab = r.groupby(band).agg(x=("latent_csat", "mean"), t=("csat", "mean"), v=("csat", "var"))
    slope_low = np.polyfit(tab["x"][:5], tab["t"][:5], 1)[0]
    slope_high = np.polyfit(tab["x"][-3:], tab["t"][-3:], 1)[0]
    assert slope_high < 0.7 * slope_low and slope_low > 0.8
    # ... so per point of the *expected* rating the true link is steeper than per latent point
    data["expected_rating"] = np.interp(data["latent_csat"], tab["x"], tab["t"])
    on_expected = R.fit_cox(data, "duration", "event", ["expected_rating"]).table.loc["expected_rating"]
    assert on_expected["hazard_ratio"] < on_latent["hazard_ratio"] - 0.03
    # b. the noise of one rating is not constant: it shrinks near the top of the scale
    assert tab["v"].iloc[-1] < 0.5 * tab["v"].iloc[0]
    assert tab["v"].iloc[0] > res.calibration.error_variance > tab["v"].iloc[-1]
    # c. customers who stay longer give more ratings (the count is not independent of churn)
    assert data["n_ratings"].corr(data["duration"], method="spearman") > 0.3
    # net: the two first departures pull in opposite directions; the corrected ratio lands within
    # 0.05 of the latent truth (asserted with its interval in the test above)
    assert abs(res.hazard_ratio("corrected")[0] - hr_true) < 0.05


def test_summary_plot_and_tables(demo_link):
    *_, res = demo_link
    text = res.summary()
    hr_c, lo_c, hi_c = res.hazard_ratio("corrected")
    assert f"{hr_c:.2f}" in text and f"{lo_c:.2f}-{hi_c:.2f}" in text
    assert "not the result of a controlled experiment" in text
    assert list(res.reliability["k"])[:3] == ["1", "2", "3"] and res.reliability["k"].iloc[-1] == "all"
    rel = res.reliability["reliability"].to_numpy()[:-1]
    assert np.all(np.diff(rel) > 0)  # the mean of more ratings is more reliable
    fig, ax = plt.subplots()
    res.plot(ax=ax)
    assert len(ax.get_yticklabels()) == 2
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------
# Clear errors when the link cannot be estimated
# ---------------------------------------------------------------------------------------------------

def test_errors_name_what_is_missing():
    survival, ratings = synthetic(600, 8)
    summary = CL.rating_summary(ratings)
    single = CL.rating_summary(ratings.drop_duplicates("customer_id"))
    with pytest.raises(CL.ChurnLinkError, match="two or more CSAT ratings"):
        CL.fit_churn_link(survival, single, ["segment"], n_boot=20)
    with pytest.raises(CL.ChurnLinkError, match=r"only \d+ customers have two or more"):
        few = summary.assign(n_ratings=np.where(summary.index < 10, summary["n_ratings"], 1),
                             within_ss=np.where(summary.index < 10, summary["within_ss"], 0.0))
        CL.fit_churn_link(survival, few.assign(n_ratings=np.maximum(few["n_ratings"], 1)), ["segment"], n_boot=20)
    with pytest.raises(CL.ChurnLinkError, match="only 5 churn events"):
        ev = np.zeros(len(survival), int)
        ev[:5] = 1
        CL.fit_churn_link(survival.assign(event=ev), summary, ["segment"], n_boot=20)
    with pytest.raises(CL.ChurnLinkInputError, match="no column 'segment'"):
        CL.fit_churn_link(survival.drop(columns="segment"), summary, ["segment"], n_boot=20)
    with pytest.raises(CL.ChurnLinkInputError, match="no customer has both"):
        CL.fit_churn_link(survival, summary.assign(customer_id=summary["customer_id"] + 10_000), n_boot=20)
    with pytest.raises(CL.ChurnLinkInputError, match="0/1 churn flag"):
        CL.fit_churn_link(survival.assign(event=2), summary, n_boot=20)
    # ratings that are pure noise: no true difference between customers to correct toward
    rng = np.random.default_rng(0)
    noise = ratings.assign(csat=4 + rng.standard_normal(len(ratings)))
    with pytest.raises(CL.ChurnLinkError, match="reliability of the mean is 0"):
        CL.fit_churn_link(survival, CL.rating_summary(noise), n_boot=20)
    assert issubclass(CL.ChurnLinkError, KitError) and issubclass(CL.ChurnLinkInputError, KitError)


# ---------------------------------------------------------------------------------------------------
# Coverage of the bootstrap interval by simulation (slow: ~200 replications)
# ---------------------------------------------------------------------------------------------------

def coverage(reps: int, n: int, n_boot: int, seed0: int = 1000) -> float:
    hits = 0
    for r in range(reps):
        survival, ratings = synthetic(n, seed0 + r, log_hr=-0.7, k_max=4)  # ~30% churn
        res = CL.fit_churn_link(survival, CL.rating_summary(ratings), ["segment"], n_boot=n_boot,
                                seed=r, min_events=10, min_repeated=10)
        _, lo, hi = res.hazard_ratio("corrected")
        hits += lo <= np.exp(-0.7) <= hi
    return hits / reps


@pytest.mark.slow
def test_bootstrap_interval_coverage_is_near_nominal():
    cov = coverage(reps=200, n=300, n_boot=60)
    # 200 replications: binomial sd 1.5 points around 95%; B = 60 percentile endpoints and n = 300 lose a
    # little (measured 0.915; bench/bench_impact.py --coverage 200 at n = 1,000, B = 200: 0.935)
    assert 0.89 <= cov <= 0.99, cov


# ---------------------------------------------------------------------------------------------------
# The chain (helpers.impact.what_if) on a synthetic company whose every link is known
# ---------------------------------------------------------------------------------------------------

DAYS = 30.4375


def synthetic_company(n: int, seed: int, log_hr: float = -0.8, base_hazard: float = 0.02,
                      weights=(0.6, 0.4)) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Customers sign up uniformly over 36 months; latent satisfaction s ~ N(4 + 0.2 segment b, 0.7^2);
    constant monthly hazard base_hazard exp(log_hr (s - 4) + 0.3 segment b); 1 + Poisson(2) answers while
    active, attributes a = s + N(0, 0.8^2), b = s + N(0, 0.8^2), CSAT = w_a a + w_b b + N(0, 0.5^2) (so a
    customer's expected CSAT is s); monthly revenue log-normal. Returns customers, responses and the truth
    per customer (s, hazard)."""
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, 2, n)
    s = 4 + 0.2 * seg + 0.7 * rng.standard_normal(n)
    lam = base_hazard * np.exp(log_hr * (s - 4) + 0.3 * seg)
    start = np.floor(rng.uniform(0, 36 * DAYS, n))
    end = start + np.floor(rng.exponential(1 / lam) * DAYS)
    end_of_data = np.floor(36 * DAYS)
    churned = end < end_of_data
    origin = pd.Timestamp("2023-01-01")
    customers = pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(n)], "signup_date": origin + pd.to_timedelta(start, "D"),
        "end_date": (origin + pd.to_timedelta(np.where(churned, end, 0), "D")).where(churned),
        "segment": np.where(seg == 1, "b", "a"),
        "monthly_revenue": np.round(40 * np.exp(0.5 * rng.standard_normal(n)), 2)})
    k = 1 + rng.poisson(2, n)
    cust = np.repeat(np.arange(n), k)
    stop = np.minimum(end, end_of_data)
    day = np.floor(start[cust] + rng.random(len(cust)) * (stop[cust] - start[cust]))
    a = s[cust] + 0.8 * rng.standard_normal(len(cust))
    b = s[cust] + 0.8 * rng.standard_normal(len(cust))
    responses = pd.DataFrame({"customer_id": customers["customer_id"].to_numpy()[cust],
                              "response_date": origin + pd.to_timedelta(day, "D"),
                              "csat": weights[0] * a + weights[1] * b + 0.5 * rng.standard_normal(len(cust)),
                              "attr_a": a, "attr_b": b})
    truth = pd.DataFrame({"customer_id": customers["customer_id"], "latent": s, "hazard": lam,
                          "active": ~churned, "segment": customers["segment"]})
    return customers, responses, truth


def true_effect(truth: pd.DataFrame, customers: pd.DataFrame, shift: float, horizon: int = 12,
                annual_rate: float = 0.10) -> tuple[float, float]:
    """Expected extra customers kept after ``horizon`` months and extra discounted revenue among the active
    customers when every hazard is multiplied by exp(shift) (constant hazards: S(h) = exp(-h lambda))."""
    act = truth["active"].to_numpy()
    lam = truth["hazard"].to_numpy()[act]
    m = customers["monthly_revenue"].to_numpy()[act]
    h = np.arange(1, horizon + 1)
    disc = (1 + R.monthly_discount_rate(annual_rate)) ** -h
    S0 = np.exp(-np.outer(lam, h))
    S1 = np.exp(-np.outer(lam * np.exp(shift), h))
    return float((S1[:, -1] - S0[:, -1]).sum()), float((m * ((S1 - S0) @ disc)).sum())


def test_ols_from_crossproducts_matches_statsmodels():
    import statsmodels.api as sm

    from helpers import impact as I

    _, responses, _ = synthetic_company(300, 1)
    cp = I.driver_crossproducts(responses, ["attr_a", "attr_b"])
    coef = I._ols_from_crossproducts(cp.to_numpy(), np.ones(len(cp)), 4)
    ref = sm.OLS(responses["csat"], sm.add_constant(responses[["attr_a", "attr_b"]])).fit()
    np.testing.assert_allclose(coef, ref.params.to_numpy(), rtol=1e-10)


def test_chain_recovers_known_effects():
    from helpers import impact as I

    hits = {"kept": 0, "revenue": 0, "slope": 0, "hazard_ratio": 0}
    for seed in (1, 3, 4):
        customers, responses, truth = synthetic_company(5000, seed)
        res = I.what_if(customers, responses, "attr_a", 0.5, horizon=12, n_boot=100, seed=seed)
        _, lo, hi = res.link("attribute_to_csat_slope")
        hits["slope"] += lo <= 0.6 <= hi
        _, lo, hi = res.link("hazard_ratio_per_csat_point")
        hits["hazard_ratio"] += lo <= np.exp(-0.8) <= hi
        kept, revenue = true_effect(truth, customers, -0.8 * 0.6 * 0.5)
        row = res.table.set_index("segment").loc["all"]
        assert row["customers"] == int(truth["active"].sum())
        hits["kept"] += row["extra_kept_low"] <= kept <= row["extra_kept_high"]
        hits["revenue"] += row["extra_revenue_low"] <= revenue <= row["extra_revenue_high"]
        assert row["extra_kept_high"] < 2 * kept  # informative, not a catch-all
    assert min(hits.values()) >= 2, hits  # 95% intervals: 3 of 3 expected, 2 allowed


def test_naive_chain_understates_what_the_corrected_chain_finds():
    from helpers import impact as I

    customers, responses, truth = synthetic_company(5000, 4)
    kept, _ = true_effect(truth, customers, -0.8 * 0.6 * 0.5)
    corr = I.what_if(customers, responses, "attr_a", 0.5, n_boot=50, seed=1)
    naive = I.what_if(customers, responses, "attr_a", 0.5, n_boot=50, seed=1, corrected=False)
    k_c = corr.table.set_index("segment").loc["all"]
    k_n = naive.table.set_index("segment").loc["all"]
    assert k_n["extra_kept_high"] < kept <= k_c["extra_kept_high"]
    assert "NOT corrected" in naive.summary() and "NOT corrected" not in corr.summary()
    text = corr.summary()
    assert "not the result of a controlled experiment" in text
    assert corr.currency == "EUR"  # default: currency of params/report.yaml (helpers.config, EUR)
    assert f"{I._money(k_c['extra_revenue'], 'EUR')} revenue" in text and text.count("+€") == 3
    usd = I.what_if(customers, responses, "attr_a", 0.5, n_boot=20, currency="USD")
    assert usd.summary().count("+$") == 3 and "€" not in usd.summary()
    assert I.resolve_currency("$") == "USD" and I.resolve_currency("sek") == "SEK"
    assert I._money(-56.4, "GBP") == "-£56" and I._money(1234, "SEK") == "+1,234 SEK"
    one = usd.headline()  # one sentence for a reader: the numbers with intervals and what kind of claim it is
    assert one.count(". ") == 0 and one.endswith("not the result of a controlled experiment.")
    assert "95% CI" in one and "association under stated assumptions" in one
    assert I._decimals(0.0712, 0.0738) == 3 and I._decimals(0.06, 0.08) == 2  # intervals never print as x to x


def test_chain_errors_name_the_missing_link():
    from helpers import impact as I

    customers, responses, _ = synthetic_company(800, 6)
    with pytest.raises(I.ImpactInputError, match="no revenue column 'monthly_revenue'"):
        I.what_if(customers.drop(columns="monthly_revenue"), responses, "attr_a", 0.5, n_boot=20)
    with pytest.raises(I.ImpactInputError, match="no attribute 'attr_speed'"):
        I.what_if(customers, responses, "attr_speed", 0.5, n_boot=20)
    with pytest.raises(I.ImpactInputError, match="horizon"):
        I.what_if(customers, responses, "attr_a", 0.5, horizon=0, n_boot=20)
    with pytest.raises(I.ImpactInputError, match="no customer has a csat rating"):
        I.what_if(customers, responses.assign(customer_id="X" + responses["customer_id"]), "attr_a", 0.5,
                  n_boot=20)
    with pytest.raises(I.ImpactInputError, match="responses: is missing"):
        I.what_if(customers, None, "attr_a", 0.5, n_boot=20)
    single = responses.drop_duplicates("customer_id")
    with pytest.raises(CL.ChurnLinkError, match="two or more"):
        I.what_if(customers, single, "attr_a", 0.5, n_boot=20)
    with pytest.raises(I.ImpactError, match="no survey answer has csat"):
        I.what_if(customers, responses.assign(attr_b=np.nan), "attr_a", 0.5, n_boot=20)


def test_chain_statistics_from_duckdb_equal_pandas():
    import duckdb

    from helpers import impact as I

    customers, responses, _ = synthetic_company(600, 9)
    responses.loc[responses.index[::7], "attr_b"] = np.nan  # incomplete answers are left out of the regression
    con = duckdb.connect()
    con.register("responses", responses)
    attrs = ["attr_a", "attr_b"]
    sql = I.driver_crossproducts_sql(con, attrs, as_of="2025-06-30")
    cut = responses[responses["response_date"] <= "2025-06-30"]
    py = I.driver_crossproducts(cut, attrs)
    pd.testing.assert_frame_equal(sql.sort_index(), py.sort_index(), check_dtype=False, check_names=False)
    ratings = CL.rating_summary_sql(con, as_of="2025-06-30")
    a = I.what_if(customers, responses, "attr_a", 0.5, as_of="2025-06-30", n_boot=20, seed=3)
    b = I.what_if(customers, None, "attr_a", 0.5, as_of="2025-06-30", n_boot=20, seed=3, ratings=ratings,
                  crossproducts=sql, attributes=attrs)
    pd.testing.assert_frame_equal(a.table, b.table, rtol=1e-9)


def chain_coverage(reps: int, n: int, n_boot: int, seed0: int = 5000) -> dict[str, float]:
    """Share of replications whose interval holds the true expected extra customers kept and revenue."""
    from helpers import impact as I

    hits = {"kept": 0, "revenue": 0}
    widths = []
    for r in range(reps):
        customers, responses, truth = synthetic_company(n, seed0 + r)
        res = I.what_if(customers, responses, "attr_a", 0.5, n_boot=n_boot, seed=r, min_events=10)
        kept, revenue = true_effect(truth, customers, -0.8 * 0.6 * 0.5)
        row = res.table.set_index("segment").loc["all"]
        hits["kept"] += row["extra_kept_low"] <= kept <= row["extra_kept_high"]
        hits["revenue"] += row["extra_revenue_low"] <= revenue <= row["extra_revenue_high"]
        widths.append((row["extra_kept_high"] - row["extra_kept_low"]) / kept)
    return {**{k: v / reps for k, v in hits.items()}, "relative_width_kept": float(np.mean(widths))}


def test_chain_interval_coverage_light():
    """A light version of the coverage simulation below for every run: 40 companies of 800 customers, 40
    resamples; at 95% nominal about 2 misses are expected, 7 or more has probability < 0.4%. Measured: kept
    35/40, revenue 36/40 (percentile intervals from 40 resamples of small companies cover a little less than
    nominal; 200 replications at larger sizes in the slow test and bench/bench_impact.py --coverage)."""
    cov = chain_coverage(reps=40, n=800, n_boot=40, seed0=7000)
    assert cov["kept"] >= 34 / 40 and cov["revenue"] >= 34 / 40, cov
    assert cov["relative_width_kept"] < 0.8, cov  # informative intervals, not catch-alls


@pytest.mark.slow
def test_chain_interval_coverage_is_near_nominal():
    cov = chain_coverage(reps=200, n=1500, n_boot=50)
    # measured (hazards spread by the leftover uncertainty, resamples as bincounts): kept 0.915, revenue 0.915
    # (before the spread: 0.900 and 0.895); at n = 3,000, B = 200 (bench --coverage 200): 0.930 and 0.940
    assert 0.89 <= cov["kept"] <= 0.99 and 0.89 <= cov["revenue"] <= 0.99, cov


def test_revenue_at_risk_recovers_known_loss():
    """Every active customer below satisfaction 4.2 raised to it: the true expected extra customers kept and
    revenue (known hazards) are within the intervals; the naive link understates them."""
    from helpers import impact as I

    hits = {"kept": 0, "revenue": 0}
    for seed in (1, 3, 4):
        customers, responses, truth = synthetic_company(5000, seed)
        res = I.revenue_at_risk(customers, responses, reference=4.2, n_boot=100, seed=seed)
        s = truth["latent"].to_numpy()[truth["active"].to_numpy()]
        kept, revenue = true_effect(truth, customers, -0.8 * (np.maximum(s, 4.2) - s))
        row = res.table.set_index("segment").loc["all"]
        hits["kept"] += row["customers_at_risk_low"] <= kept <= row["customers_at_risk_high"]
        hits["revenue"] += row["revenue_at_risk_low"] <= revenue <= row["revenue_at_risk_high"]
        assert res.reference == (4.2, 4.2, 4.2)
    assert min(hits.values()) >= 2, hits
    naive = I.revenue_at_risk(customers, responses, reference=4.2, n_boot=20, seed=1, corrected=False)
    assert naive.table.set_index("segment").loc["all", "customers_at_risk_high"] < kept
    median = I.revenue_at_risk(customers, responses, n_boot=20, seed=1, currency="€")
    text = median.summary()
    assert "below the median satisfaction" in text and "€" in text
    assert "not the result of a controlled experiment" in text
    lo, hi = median.reference[1:]
    assert lo < np.median(s) < hi + 0.1  # the reference is the calibrated (shrunk) median of today's customers
    with pytest.raises(I.ImpactInputError, match="reference"):
        I.revenue_at_risk(customers, responses, reference="mean", n_boot=20)


def test_what_if_many_shares_the_resamples_and_exposure_scales_the_change():
    from helpers import impact as I

    customers, responses, _ = synthetic_company(1500, 12)
    half = pd.Series(0.5, index=customers["customer_id"])
    some = pd.Series(1.0, index=customers["customer_id"][customers["segment"] == "b"])  # others: 0
    many = I.what_if_many(customers, responses, [("attr_a", 0.5), ("csat", 0.3), ("csat", 0.6, half),
                                                 ("csat", 0.3, some)], n_boot=30, seed=4)
    one = I.what_if(customers, responses, "attr_a", 0.5, n_boot=30, seed=4)
    pd.testing.assert_frame_equal(many[0].table, one.table)  # same resamples as a single what_if
    pd.testing.assert_frame_equal(many[0].links, one.links)
    # exposure 0.5 of a 0.6 shift is a 0.3 shift, resample by resample
    pd.testing.assert_frame_equal(many[1].table, many[2].table, rtol=1e-5)
    # exposure only in segment b: segment a gains nothing, segment b what everyone gains with 0.3
    t3, t1 = many[3].table.set_index("segment"), many[1].table.set_index("segment")
    assert t3.loc["a", "extra_kept"] == 0 and t3.loc["a", "extra_revenue_high"] == 0
    assert t3.loc["b", "extra_kept"] == pytest.approx(t1.loc["b", "extra_kept"], rel=1e-5)
    with pytest.raises(I.ImpactInputError, match="outside 0..1"):
        I.what_if_many(customers, responses, [("csat", 0.3, half * 3)], n_boot=20)
    with pytest.raises(I.ImpactInputError, match="no attribute 'attr_zz'"):
        I.what_if_many(customers, responses, [("csat", 0.3), ("attr_zz", 0.3)], n_boot=20)


def test_resamples_on_a_sample_of_todays_customers_match_all_of_them():
    """Above max_predicted of today's customers the resamples' predictions use a stratified sample (the
    estimates use everyone): the intervals move by a small fraction of their width."""
    from helpers import impact as I

    customers, responses, _ = synthetic_company(4000, 21)
    scen = [("attr_a", 0.5), ("csat", 0.3), (None, "median")]
    exact = I.what_if_many(customers, responses, scen, n_boot=60, seed=2, max_predicted=None)
    approx = I.what_if_many(customers, responses, scen, n_boot=60, seed=2, max_predicted=500)
    assert any("stratified random sample of" in n for n in approx[0].notes)
    assert not any("stratified" in n for n in exact[0].notes)
    for e, a in zip(exact, approx):
        te, ta = e.table.set_index("segment"), a.table.set_index("segment")
        assert te["customers"].sum() > 2 * 500  # the sample is a real subsample
        np.testing.assert_allclose(ta["extra_kept"], te["extra_kept"], rtol=1e-12)  # estimates: everyone
        for col in ("extra_kept", "extra_revenue"):
            width = te[f"{col}_high"] - te[f"{col}_low"]
            for end in ("low", "high"):
                assert (abs(ta[f"{col}_{end}"] - te[f"{col}_{end}"]) < 0.2 * width).all(), (col, end)
