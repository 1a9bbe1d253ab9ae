"""Tests of helpers.retention against published references and synthetic data with known truth.

References (tests/reference/retention/README.md): Fader & Hardie (2007) sBG survivor data and estimates;
the Rossi recidivism Cox model (R coxph / lifelines, Efron ties); the Freireich 6-MP Kaplan-Meier table
(R survfit, log-log intervals) and log-rank test (R survdiff).
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

from helpers import retention as R  # noqa: E402
from helpers.errors import KitError  # noqa: E402

REF = Path(__file__).parent / "reference" / "retention"
FH = json.loads((REF / "fader_hardie_2007.json").read_text())
ROSSI_COVS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


# ---------------------------------------------------------------------------------------------------
# sBG: Fader & Hardie (2007)
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fh_fits():
    T = FH["calibration_years"]
    return {g: R.fit_sbg(FH[g]["survivors"][:T + 1], n_boot=100, seed=1) for g in ("regular", "high_end")}


@pytest.mark.parametrize("group", ["regular", "high_end"])
def test_sbg_reproduces_published_parameters(fh_fits, group):
    fit = fh_fits[group]
    assert round(fit.alpha, 3) == FH[group]["alpha"]
    assert round(fit.beta, 3) == FH[group]["beta"]
    # the bootstrap interval brackets the estimate
    tab = fit.table
    assert tab.loc["alpha", "ci_low"] < fit.alpha < tab.loc["alpha", "ci_high"]
    assert tab.loc["beta", "ci_low"] < fit.beta < tab.loc["beta", "ci_high"]


@pytest.mark.parametrize("group", ["regular", "high_end"])
def test_sbg_projection_years_8_to_12(fh_fits, group):
    fit = fh_fits[group]
    a, b = FH[group]["alpha"], FH[group]["beta"]
    t = np.arange(8, 13)
    published = np.array([R.sbg_survival(k, a, b) for k in t])  # projection with the published parameters
    np.testing.assert_allclose(fit.survival(t), published, atol=1e-3)
    # Fader & Hardie's point: the sBG tracks the held-out years closely (within 2.5 points per 100)
    actual = np.array(FH[group]["survivors"])[8:13] / 1000
    assert np.max(np.abs(fit.survival(t) - actual)) < 0.025
    proj = fit.projection(12)
    assert list(proj["t"]) == list(range(13))
    assert (proj["ci_low"] <= proj["survival"] + 1e-12).all() and (proj["survival"] <= proj["ci_high"] + 1e-12).all()


@pytest.mark.parametrize("group", ["regular", "high_end"])
def test_sbg_holdout_on_published_data(group):
    h = R.sbg_holdout(FH[group]["survivors"], holdout=5, n_boot=100, seed=2)
    assert h.table["holdout"].sum() == 5
    assert h.calibration_periods == 7
    assert round(h.fit.alpha, 3) == FH[group]["alpha"]
    assert h.mape < 5
    assert h.coverage >= 0.8
    assert "held-out" in h.summary()


def test_sbg_formulas_are_consistent():
    a, b = 0.668, 3.806
    t = np.arange(1, 40)
    s = R.sbg_survival(np.arange(0, 40), a, b)
    # P(T = t) = S(t-1) - S(t); r(t) = S(t) / S(t-1)
    np.testing.assert_allclose(R.sbg_churn_probability(t, a, b), s[:-1] - s[1:], rtol=1e-10)
    np.testing.assert_allclose(R.sbg_retention(t, a, b), s[1:] / s[:-1], rtol=1e-10)
    # DERL closed form (Fader & Hardie 2010) equals the brute-force discounted sum
    for n in (0, 1, 5):
        k = np.arange(0, 20000)
        brute = np.sum(R.sbg_survival(n + 1 + k, a, b) / R.sbg_survival(n, a, b) * np.exp(-k * np.log(1.1)))
        assert R.sbg_derl(a, b, 0.1, n) == pytest.approx(brute, rel=1e-9)
    k = np.arange(0, 20000)
    assert R.sbg_del(a, b, 0.1) == pytest.approx(np.sum(R.sbg_survival(k, a, b) * np.exp(-k * np.log(1.1))),
                                                 rel=1e-9)
    # expected lifetime: (alpha + beta - 1) / (alpha - 1) for alpha > 1, else infinite
    fit = R.SBGResult(alpha=2.5, beta=4.0, loglik=0, n_customers=1, periods_observed=1, boot=np.empty((0, 2)))
    brute = R.sbg_survival(np.arange(0, 200000), 2.5, 4.0).sum()
    assert fit.expected_lifetime() == pytest.approx(brute, rel=1e-3)
    heavy = R.SBGResult(alpha=0.7, beta=1.2, loglik=0, n_customers=1, periods_observed=1, boot=np.empty((0, 2)))
    assert heavy.expected_lifetime() == float("inf")
    assert np.isfinite(heavy.expected_lifetime(horizon=24))
    assert heavy.clv(50.0, 0.01) == pytest.approx(50.0 * heavy.derl(0.01))


def test_sbg_recovers_simulated_parameters():
    rng = np.random.default_rng(11)
    theta = rng.beta(1.5, 6.0, size=20000)
    life = rng.geometric(theta)
    surv = [int((life > t).sum()) for t in range(9)]
    fit = R.fit_sbg(surv, n_boot=100, seed=3)
    tab = fit.table
    assert tab.loc["alpha", "ci_low"] < 1.5 < tab.loc["alpha", "ci_high"]
    assert tab.loc["beta", "ci_low"] < 6.0 < tab.loc["beta", "ci_high"]


def test_sbg_durations_matches_single_cohort_fit():
    s = np.array(FH["regular"]["survivors"][:8])
    lost = -np.diff(s)
    life = np.concatenate([np.repeat(np.arange(1, 8), lost), np.full(s[-1], 7)])
    churned = np.concatenate([np.ones(lost.sum(), int), np.zeros(s[-1], int)])
    fit = R.fit_sbg_durations(life, churned, np.full(len(life), 7), n_boot=0)
    assert fit.alpha == pytest.approx(0.704077, abs=1e-4)
    assert fit.beta == pytest.approx(1.182043, abs=1e-4)


@pytest.mark.parametrize("survivors, match", [
    ([1000, 700, 800, 600], "increases"),
    ([0, 0, 0], "size 0"),
    ([1000], "at least"),
    ([1000, -5, 3], "negative|increases"),
    ([1.0, 0.6, 0.4], "non-integer"),
    ([1000, np.nan, 400], "missing"),
])
def test_sbg_bad_survivors(survivors, match):
    with pytest.raises(R.RetentionInputError, match=match):
        R.fit_sbg(survivors, n_boot=0)


def test_sbg_without_churn_or_convergence_raises_model_error():
    with pytest.raises(R.RetentionModelError, match="nobody"):
        R.fit_sbg([100, 100, 100], n_boot=0)
    with pytest.raises(R.RetentionModelError):
        R.fit_sbg([100, 0, 0], n_boot=0)  # everybody leaves at once: beta -> 0, no interior optimum
    assert issubclass(R.RetentionModelError, KitError) and issubclass(R.RetentionInputError, ValueError)


@pytest.mark.parametrize("horizon", [0, -3, 2.5])
def test_bad_horizon(fh_fits, horizon):
    with pytest.raises(R.RetentionInputError, match="horizon"):
        fh_fits["regular"].projection(horizon)


# ---------------------------------------------------------------------------------------------------
# Cox: Rossi recidivism, R coxph / lifelines with Efron ties
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rossi():
    return pd.read_csv(REF / "rossi.csv")


def test_cox_reproduces_rossi_coefficients(rossi):
    ref = pd.read_csv(REF / "rossi_coxph_efron.csv").set_index("covariate")
    assert len(rossi) == 432 and rossi["arrest"].sum() == 114
    fit = R.fit_cox(rossi, "week", "arrest", ROSSI_COVS)
    tab = fit.table.loc[ROSSI_COVS]
    np.testing.assert_allclose(tab["coef"], ref["coef"], atol=5e-5)
    np.testing.assert_allclose(tab["se"], ref["se"], atol=5e-5)
    np.testing.assert_allclose(tab["p_value"], ref["p_value"], atol=5e-5)
    np.testing.assert_allclose(tab["hazard_ratio"], np.exp(ref["coef"]), rtol=1e-4)
    # R prints exp(coef) lower/upper .95 for fin as 0.4702 0.9957
    assert tab.loc["fin", "ci_low"] == pytest.approx(0.4702, abs=1e-4)
    assert tab.loc["fin", "ci_high"] == pytest.approx(0.9957, abs=1e-4)
    assert round(fit.concordance, 2) == 0.64  # R: "Concordance= 0.64"; lifelines: 0.64
    assert fit.n == 432 and fit.n_events == 114
    # proportional hazards: age is the covariate whose effect changes over time (cox.zph); fin is fine
    assert fit.ph_test.loc["age", "p_value"] < 0.05
    assert fit.ph_test.loc["fin", "p_value"] > 0.5
    text = fit.summary()
    assert "fin lowers the churn hazard by 32%" in text and "age" in text


def test_concordance_matches_brute_force():
    rng = np.random.default_rng(5)
    n = 300
    time = rng.integers(1, 40, n).astype(float)
    risk = rng.normal(size=n).round(1)
    event = rng.random(n) < 0.7
    conc = ties = comp = 0.0
    for i in range(n):
        if not event[i]:
            continue
        for j in range(n):
            if time[j] > time[i]:
                comp += 1
                conc += risk[i] > risk[j]
                ties += risk[i] == risk[j]
    assert R.concordance_index(time, risk, event) == pytest.approx((conc + 0.5 * ties) / comp, rel=1e-12)


def test_cox_categorical_and_bad_input(rossi):
    d = rossi.assign(fin_text=np.where(rossi["fin"] == 1, "aid", "none"))
    fit = R.fit_cox(d, "week", "arrest", ["fin_text", "age", "prio"])
    assert "fin_text_none" in fit.table.index
    with pytest.raises(R.RetentionInputError, match="do not vary"):
        R.fit_cox(d.assign(k=1.0), "week", "arrest", ["k"])
    with pytest.raises(R.RetentionInputError, match="no column"):
        R.fit_cox(d, "week", "arrest", ["nope"])
    with pytest.raises(R.RetentionInputError, match="negative"):
        R.fit_cox(d.assign(week=-d["week"]), "week", "arrest", ["age"])
    with pytest.raises(R.RetentionInputError, match="missing durations"):
        R.fit_cox(d.assign(week=np.where(d.index < 3, np.nan, d["week"])), "week", "arrest", ["age"])


# ---------------------------------------------------------------------------------------------------
# Kaplan-Meier and log-rank: Freireich 6-MP (R survfit conf.type = "log-log", survdiff)
# ---------------------------------------------------------------------------------------------------

SIX_MP_TIME = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
SIX_MP_EVENT = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
PLACEBO_TIME = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]
R_KM = pd.DataFrame({  # R: summary(survfit(Surv(time, status) ~ 1, conf.type = "log-log")), 6-MP arm
    "time": [6, 7, 10, 13, 16, 22, 23], "at_risk": [21, 17, 15, 12, 11, 7, 6],
    "survival": [0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448],
    "ci_low": [0.620, 0.563, 0.503, 0.432, 0.368, 0.268, 0.188],
    "ci_high": [0.952, 0.923, 0.889, 0.849, 0.805, 0.747, 0.680]})


@pytest.fixture(scope="module")
def leukaemia():
    return pd.DataFrame({"weeks": SIX_MP_TIME + PLACEBO_TIME, "relapse": SIX_MP_EVENT + [1] * 21,
                         "arm": ["6-MP"] * 21 + ["placebo"] * 21})


def test_kaplan_meier_matches_r_survfit(leukaemia):
    km = R.kaplan_meier(leukaemia[leukaemia["arm"] == "6-MP"], "weeks", "relapse")
    tab = km.table
    assert list(tab.columns[:5]) == ["time", "survival", "ci_low", "ci_high", "at_risk"]
    np.testing.assert_array_equal(tab["time"], R_KM["time"])
    np.testing.assert_array_equal(tab["at_risk"], R_KM["at_risk"])
    for col in ("survival", "ci_low", "ci_high"):
        np.testing.assert_allclose(tab[col], R_KM[col], atol=5e-4)
    med = km.medians.iloc[0]
    assert med["median"] == 23 and med["ci_low"] == 13 and np.isinf(med["ci_high"])
    assert km.survival_at(12) == pytest.approx(0.753, abs=5e-4)
    assert "23 months" in km.summary() and "not yet reached" in km.summary()


def test_log_rank_matches_r_survdiff(leukaemia):
    km = R.kaplan_meier(leukaemia, "weeks", "relapse", group="arm")
    assert set(km.table["arm"]) == {"6-MP", "placebo"}
    lr = km.log_rank
    assert lr.statistic == pytest.approx(16.79, abs=0.01)  # R: Chisq= 16.8 on 1 degrees of freedom
    assert lr.df == 1 and lr.p_value == pytest.approx(4.17e-5, rel=0.01)
    placebo = km.medians.set_index("arm").loc["placebo"]
    assert placebo["median"] == 8  # R: median 8 for the placebo arm
    with pytest.raises(R.RetentionInputError, match="only one group"):
        R.log_rank(leukaemia.assign(arm="x"), "weeks", "relapse", "arm")


# ---------------------------------------------------------------------------------------------------
# survival_frame: real-data layouts and bad input
# ---------------------------------------------------------------------------------------------------

def telecom_table() -> pd.DataFrame:
    """A small telecom-style churn export (IBM Telco layout): tenure in months, Churn Yes/No."""
    return pd.DataFrame({
        "customerID": ["7590-VHVEG", "5575-GNVDE", "3668-QPYBK", "7795-CFOCW", "9237-HQITU", "9305-CDSKC",
                       "1452-KIOVK", "6713-OKOMC", "7892-POOKP", "6388-TABGU", "9763-GRSKD", "7469-LKBCI"],
        "tenure": [1, 34, 2, 45, 2, 8, 22, 10, 28, 62, 13, 16],
        "Contract": ["Month-to-month", "One year", "Month-to-month", "One year", "Month-to-month",
                     "Month-to-month", "Month-to-month", "Month-to-month", "Month-to-month", "One year",
                     "Month-to-month", "Two year"],
        "MonthlyCharges": [29.85, 56.95, 53.85, 42.30, 70.70, 99.65, 89.10, 29.75, 104.80, 56.15, 49.95, 18.95],
        "Churn": ["No", "No", "Yes", "No", "Yes", "Yes", "No", "No", "Yes", "No", "No", "No"],
    })


def test_survival_frame_telecom_tenure_and_yes_no():
    df = telecom_table()
    sf = R.survival_frame(df, duration="tenure", event="Churn")
    assert sf["duration"].tolist() == df["tenure"].astype(float).tolist()
    assert sf["event"].tolist() == [0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 0]
    assert list(sf["customerID"]) == list(df["customerID"])  # other columns kept, order kept
    # lower-case / boolean / 0-1 flags read the same way
    assert R.survival_frame(df.assign(Churn=df["Churn"].str.lower()), duration="tenure",
                            event="Churn")["event"].tolist() == sf["event"].tolist()
    assert R.survival_frame(df.assign(Churn=df["Churn"].eq("Yes")), duration="tenure",
                            event="Churn")["event"].tolist() == sf["event"].tolist()
    assert R.survival_frame(df.assign(Churn=df["Churn"].eq("Yes").astype(int)), duration="tenure",
                            event="Churn")["event"].tolist() == sf["event"].tolist()
    years = R.survival_frame(df.assign(tenure=df["tenure"] / 12), duration="tenure", event="Churn",
                             duration_unit="year")
    np.testing.assert_allclose(years["duration"], df["tenure"])
    km = R.kaplan_meier(sf, group="Contract")
    # by hand: 8 month-to-month customers; one leaves the data at tenure 1 (censored), then 2 of the 7
    # at risk churn at tenure 2
    m2m = km.table[km.table["Contract"] == "Month-to-month"]
    assert m2m["time"].iloc[0] == 2 and m2m["at_risk"].iloc[0] == 7
    assert km.survival_at(2, "Month-to-month") == pytest.approx(5 / 7)


def test_survival_frame_from_settings_object():
    class Settings:  # the attributes of helpers.config.RetentionConfig
        duration_column, duration_unit, start_column, end_column = "tenure", "month", None, None
        event_column, churn_values = "Churn", ["yes"]
    sf = R.survival_frame_from_settings(telecom_table(), Settings())
    assert sf["event"].sum() == 4


def test_survival_frame_dates_and_as_of():
    df = pd.DataFrame({"customer_id": ["a", "b", "c"],
                       "signup_date": pd.to_datetime(["2024-01-01", "2024-03-15", "2024-06-01"]),
                       "end_date": pd.to_datetime(["2024-07-01", None, "2025-06-01"])})
    sf = R.survival_frame(df, start="signup_date", end="end_date", as_of="2025-01-01")
    assert sf["event"].tolist() == [1, 0, 0]  # c ends after as_of: still a customer at as_of
    np.testing.assert_allclose(sf["duration"], [182 / 30.4375, 292 / 30.4375, 214 / 30.4375])


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.assign(end_date=pd.to_datetime(["2023-01-01", None, None])), "before the start"),
    (lambda d: d.assign(signup_date=pd.to_datetime(["2024-01-01", None, "2024-06-01"])), "missing"),
    (lambda d: d.drop(columns="end_date"), "no column"),
    (lambda d: d.iloc[0:0], "no rows"),
])
def test_survival_frame_bad_dates(mutate, match):
    df = pd.DataFrame({"customer_id": ["a", "b", "c"],
                       "signup_date": pd.to_datetime(["2024-01-01", "2024-03-15", "2024-06-01"]),
                       "end_date": pd.to_datetime(["2024-07-01", None, None])})
    with pytest.raises(R.RetentionInputError, match=match) as info:
        R.survival_frame(mutate(df), start="signup_date", end="end_date", as_of="2025-01-01")
    assert "customers" in str(info.value)


def test_survival_frame_bad_tenure_and_flag():
    df = telecom_table()
    with pytest.raises(R.RetentionInputError, match="negative") as info:
        R.survival_frame(df.assign(tenure=df["tenure"] - 5), duration="tenure", event="Churn")
    assert "7590-VHVEG" in str(info.value)
    with pytest.raises(R.RetentionInputError, match="missing durations"):
        R.survival_frame(df.assign(tenure=df["tenure"].where(df.index > 1)), duration="tenure", event="Churn")
    with pytest.raises(R.RetentionInputError, match="not numeric"):
        R.survival_frame(df.assign(tenure=df["tenure"].astype(str).where(df.index > 0, "ten")),
                         duration="tenure", event="Churn")
    with pytest.raises(R.RetentionInputError, match="churn flag"):
        R.survival_frame(df.assign(Churn=["Yes", "No", "Maybe"] * 4), duration="tenure", event="Churn")
    with pytest.raises(R.RetentionInputError, match="missing churn"):
        R.survival_frame(df.assign(Churn=df["Churn"].where(df.index > 0)), duration="tenure", event="Churn")
    with pytest.raises(R.RetentionInputError, match="unit"):
        R.survival_frame(df, duration="tenure", event="Churn", duration_unit="fortnight")


# ---------------------------------------------------------------------------------------------------
# Retention-rate forecasts
# ---------------------------------------------------------------------------------------------------

def ar1_rates(n=36, mean=0.93, phi=0.5, sd=0.01, seed=0):
    rng = np.random.default_rng(seed)
    x = np.empty(n)
    x[0] = mean
    for i in range(1, n):
        x[i] = mean + phi * (x[i - 1] - mean) + rng.normal(0, sd)
    return pd.DataFrame({"month": pd.date_range("2023-11-01", periods=n, freq="MS"), "retention": x})


def test_rate_forecast_intervals_cover_the_truth():
    hits, total = 0, 0
    for seed in range(6):
        full = ar1_rates(n=42, seed=seed)
        fc = R.forecast_retention_rate(full.iloc[:36], horizon=6, holdout=6)
        f = fc.table[fc.table["kind"] == "forecast"]
        truth = full["retention"].iloc[36:].to_numpy()
        hits += int(((truth >= f["pi_low"].to_numpy()) & (truth <= f["pi_high"].to_numpy())).sum())
        total += len(truth)
        assert fc.model in ("ETS", "SARIMAX")
        assert fc.model == fc.candidates.loc[fc.candidates["mape"].idxmin(), "model"]
        assert np.all(np.abs(f["forecast"] - 0.93) < 0.03)
    assert hits / total >= 0.8  # nominal 95% prediction intervals (36 checks)


def test_rate_forecast_bad_input():
    with pytest.raises(R.RetentionInputError, match="horizon"):
        R.forecast_retention_rate(ar1_rates(), horizon=0)
    with pytest.raises(R.RetentionInputError, match="too few"):
        R.forecast_retention_rate(ar1_rates(n=10), horizon=3, holdout=6)
    bad = ar1_rates()
    bad.loc[3, "retention"] = np.nan
    with pytest.raises(R.RetentionInputError, match="missing"):
        R.forecast_retention_rate(bad, horizon=3)


def test_monthly_discount_rate():
    assert (1 + R.monthly_discount_rate(0.1)) ** 12 == pytest.approx(1.1)
    with pytest.raises(R.RetentionInputError):
        R.monthly_discount_rate(0)


# ---------------------------------------------------------------------------------------------------
# Demo data with known truth (small_demo: 2,000 customers, seed 7)
# ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(small_demo):
    truth = json.loads((small_demo / "ground_truth.json").read_text())
    customers = pd.read_parquet(small_demo / "customers.parquet")
    frame = R.customer_durations(customers, as_of=truth["end"])
    return truth, frame, small_demo


def test_demo_sbg_recovers_true_parameters(demo):
    truth, frame, _ = demo
    widths = {}
    for seg, p in truth["churn"]["sbg"].items():
        g = frame[frame["segment"] == seg]
        fit = R.fit_sbg_durations(g["lifetime_periods"], g["sbg_churned"], g["exposure_periods"],
                                  n_boot=100, seed=4, label=seg)
        tab = fit.table
        assert tab.loc["alpha", "ci_low"] <= p["alpha"] <= tab.loc["alpha", "ci_high"], (seg, tab)
        assert tab.loc["beta", "ci_low"] <= p["beta"] <= tab.loc["beta", "ci_high"], (seg, tab)
        # the projected 12-month survival (a well-identified quantity) is close to the truth
        s12 = R.sbg_survival(12, p["alpha"], p["beta"])
        proj = fit.projection(12).iloc[-1]
        assert proj["ci_low"] <= s12 <= proj["ci_high"], (seg, proj, s12)
        widths[seg] = tab.loc["alpha", "ci_high"] / tab.loc["alpha", "ci_low"]
    # the largest segment's interval is informative, not a catch-all
    assert widths["consumer"] < 3


def test_demo_cox_recovers_true_hazard_ratio(demo):
    truth, frame, folder = demo
    hr = truth["churn"]["hazard_ratio_per_csat_point"]
    latent = pd.read_parquet(folder / truth["churn"]["customer_truth_file"])[["customer_id", "latent_csat"]]
    data = frame.merge(latent, on="customer_id")
    fit = R.fit_cox(data, "duration", "event", ["latent_csat"])
    row = fit.table.loc["latent_csat"]
    assert row["ci_low"] <= hr <= row["ci_high"]
    assert row["ci_high"] / row["ci_low"] < 1.5
    # the observable covariate (mean answered CSAT) is attenuated toward 1 by measurement error
    responses = pd.read_parquet(folder / "responses.parquet")
    sat = R.customer_satisfaction(responses, as_of=truth["end"])
    obs = R.fit_cox(frame.merge(sat, on="customer_id"), "duration", "event", ["mean_csat"])
    hr_obs = obs.table.loc["mean_csat", "hazard_ratio"]
    assert hr < hr_obs < 1
    # regression calibration (divide the log-HR by the reliability slope) brings it back near the truth
    slope = truth["churn"]["observable_proxy"]["calibration_slope_latent_on_mean"]
    assert np.log(hr_obs) / slope == pytest.approx(np.log(hr), abs=0.15)


def test_demo_cohorts_km_and_rates(demo):
    truth, frame, _ = demo
    ct = R.cohort_table(frame)
    assert (ct.table[0].dropna() == 1).all()
    assert ct.table.iloc[0].dropna().is_monotonic_decreasing
    # the oldest cohort's 12-month share is the KM-style share of its members with duration >= 12
    first = ct.table.index[0]
    members = frame[frame["signup_date"].astype(str).str[:7] == first]
    assert ct.table.loc[first, 12] == pytest.approx((members["duration"] >= 12).mean())
    km = R.kaplan_meier(frame, group="segment")
    assert km.log_rank.p_value < 0.05  # segments have different true sBG laws
    rates = R.monthly_retention_rates(frame, as_of=truth["end"], by="segment")
    assert rates["retention"].between(0, 1).all() and not rates["retention"].isna().any()
    cons = rates[rates["segment"] == "consumer"]
    fc = R.forecast_retention_rate(cons, horizon=12, holdout=6, label="consumer")
    assert fc.holdout.mape < 10 and len(fc.table[fc.table["kind"] == "forecast"]) == 12
    fig, axes = plt.subplots(2, 3)
    for res, ax in zip([ct, km, fc, fc.holdout, km.log_rank], axes.ravel()):
        assert res.plot(ax=ax) is ax
        assert isinstance(res.summary(), str) and res.summary()
    plt.close(fig)


def test_cohort_survivors_and_holdout_on_demo(demo):
    _, frame, _ = demo
    old = frame[frame["cohort"] <= pd.Period("2024-01", "M")]
    surv = R.cohort_survivors(old)
    assert surv.iloc[0] == len(old) and surv.is_monotonic_decreasing
    h = R.sbg_holdout(surv.to_numpy(), holdout=12, n_boot=100)
    assert h.mape < 20 and h.coverage >= 0.5
    with pytest.raises(R.RetentionInputError, match="size 0"):
        R.cohort_survivors(frame.iloc[0:0])
    with pytest.raises(R.RetentionInputError, match="horizon"):
        R.sbg_holdout(surv.to_numpy(), holdout=0)


# ---------------------------------------------------------------------------------------------------
# Report preparation (helpers.retention_report): bad parameters fail clearly, data problems are reported
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"horizon": 0}, "horizon"), ({"horizon": -2}, "horizon"), ({"holdout": 0}, "holdout"),
    ({"discount_rate": 0.0}, "discount"), ({"discount_rate": -0.1}, "discount"),
])
def test_report_rejects_bad_parameters(kwargs, match):
    from helpers.retention_report import prepare_retention_report
    with pytest.raises(R.RetentionInputError, match=match):
        prepare_retention_report(**kwargs)


def test_report_reports_a_missing_data_source(tmp_path):
    from helpers.retention_report import prepare_retention_report
    rep = prepare_retention_report(data_source=str(tmp_path / "nowhere"), n_boot=0)
    assert rep.frame is None and rep.warnings and "not found" in rep.warnings[0]
    assert "could not run" in rep.headline_markdown()


def test_report_unknown_segment_falls_back_to_all(small_demo):
    from helpers.retention_report import prepare_retention_report
    rep = prepare_retention_report(segment="martians", data_source=str(small_demo), as_of="2026-10-31",
                                   n_boot=20)
    assert rep.segment == "all" and any("martians" in w for w in rep.warnings)
    assert rep.survival is not None and rep.hazards is not None and rep.rates is not None
    assert {"all", "consumer", "small_business", "enterprise"} <= set(rep.value["segment"])
    assert np.isfinite(rep.value[["del", "clv"]].to_numpy()).all()


def test_report_as_of_in_the_past(small_demo):
    from helpers.retention_report import prepare_retention_report
    rep = prepare_retention_report(data_source=str(small_demo), as_of="2025-10-31", n_boot=0, horizon=6)
    assert rep.n_customers is not None and any("after the as-of date" in w for w in rep.warnings)
    assert rep.last_signup <= pd.Timestamp("2025-10-31")
    assert rep.rates is not None and rep.rates.table["month"].max() > pd.Timestamp("2025-10-31")


def test_sbg_per_segment_and_cohort(demo):
    truth, frame, _ = demo
    by_seg = R.fit_sbg_by(frame, "segment", n_boot=40)
    assert set(by_seg.table["segment"]) == set(truth["churn"]["sbg"])
    # enterprise (true S(12) highest) vs consumer (lowest): the ranking is recovered
    s12 = by_seg.table.set_index("segment")["survival_12"]
    true12 = {k: R.sbg_survival(12, p["alpha"], p["beta"]) for k, p in truth["churn"]["sbg"].items()}
    assert s12.idxmax() == max(true12, key=true12.get) and s12.idxmin() == min(true12, key=true12.get)
    by_cohort = R.fit_sbg_by(frame.assign(quarter=pd.to_datetime(frame["signup_date"]).dt.to_period("Q")),
                             "quarter", n_boot=0, min_customers=100)
    assert len(by_cohort.fits) >= 3
    assert by_cohort.skipped  # the latest quarters are too small or too short: listed, not dropped silently
    fig, ax = plt.subplots()
    assert by_seg.plot(ax=ax) is ax and "sBG expects" in by_seg.summary()
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------
# As-of dates before, inside and after the data (issue 16): fewer points or a clear message, never a crash
# ---------------------------------------------------------------------------------------------------

def test_monthly_rates_before_the_first_full_month_are_empty_not_a_key_error():
    frame = R.customer_durations(pd.DataFrame({
        "customer_id": ["a", "b"], "signup_date": pd.to_datetime(["2024-01-03", "2024-01-20"]),
        "end_date": pd.to_datetime([None, "2024-01-25"])}), as_of="2024-01-31")
    rates = R.monthly_retention_rates(frame, as_of="2024-01-31")  # was KeyError: 'at_risk'
    assert rates.empty and list(rates.columns) == ["month", "at_risk", "churned", "retention"]
    by = R.monthly_retention_rates(frame.assign(segment="x"), as_of="2024-01-31", by="segment")
    assert by.empty and "segment" in by.columns


def test_log_rank_without_enough_events_is_a_clear_error_and_km_still_draws():
    data = pd.DataFrame({"duration": [1.0, 2.0, 3.0, 1.5], "event": [0, 0, 0, 0], "g": ["a", "a", "b", "b"]})
    with pytest.raises(R.RetentionInputError, match="no churn events"):
        R.log_rank(data, "duration", "event", "g")
    km = R.kaplan_meier(data, group="g")
    assert km.log_rank is None and "No log-rank test" in km.summary()
    # one event, all in one group at a time nobody else is at risk: singular variance -> model error, no LinAlgError
    single = pd.DataFrame({"duration": [0.5, 0.5], "event": [1, 0], "g": ["a", "b"]})
    km = R.kaplan_meier(single, group="g")
    assert km.table["survival"].notna().all()


@pytest.fixture(scope="module")
def report_at_data_end(small_demo):
    from helpers.retention_report import prepare_retention_report
    return prepare_retention_report(data_source=str(small_demo), as_of="2026-10-31", n_boot=0, horizon=6)


@pytest.mark.parametrize("as_of", ["2027-01-31", "2099-01-01"])
def test_report_as_of_after_the_data_follows_customers_to_the_data_end(small_demo, report_at_data_end, as_of):
    from helpers.retention_report import prepare_retention_report
    rep = prepare_retention_report(data_source=str(small_demo), as_of=as_of, n_boot=0, horizon=6)
    assert rep.as_of == pd.Timestamp(as_of) and rep.observed_to == pd.Timestamp("2026-10-31")
    assert "the data end on 2026-10-31" in rep.headline_markdown()
    # nothing is known after the data's last day: the same estimates as at that day (before the fix, active
    # customers were counted as surviving to 2099 and the sBG projection rose from 41% to 64%)
    end = report_at_data_end
    assert rep.sbg["all"].alpha == pytest.approx(end.sbg["all"].alpha)
    assert rep.sbg["all"].beta == pytest.approx(end.sbg["all"].beta)
    pd.testing.assert_frame_equal(rep.survival.medians, end.survival.medians)
    assert rep.rates is not None and rep.hazards is not None


@pytest.mark.parametrize("as_of, left_out", [
    ("2023-11-14", {"sBG holdout check", "retention-rate forecast"}),
    ("2023-12-15", {"sBG holdout check", "retention-rate forecast"}),  # was KeyError: 'at_risk'
    ("2024-06-30", {"sBG holdout check", "retention-rate forecast"}),
])
def test_report_as_of_early_in_the_data_says_too_little_history(small_demo, as_of, left_out):
    from helpers.retention_report import prepare_retention_report
    rep = prepare_retention_report(data_source=str(small_demo), as_of=as_of, n_boot=0, horizon=6)
    assert rep.n_customers is not None and rep.survival is not None
    assert rep.last_signup <= pd.Timestamp(as_of)
    assert rep.survival.medians["last_time"].max() <= (pd.Timestamp(as_of) - pd.Timestamp("2023-11-01")).days / 30.4375 + 1e-9
    for what in left_out:
        [msg] = [w for w in rep.warnings if w.startswith(what)]
        assert f"too little history before {as_of}" in msg
    assert rep.rates is None and rep.sbg_check is None
    rep.headline_markdown(), rep.plain_summary()


def test_report_as_of_before_the_data(small_demo):
    from helpers.retention_report import prepare_retention_report
    rep = prepare_retention_report(data_source=str(small_demo), as_of="2023-10-01", n_boot=0)
    assert rep.frame is None
    assert "too little history before 2023-10-01" in rep.warnings[0] and "2023-11-01" in rep.warnings[0]
    assert "could not run" in rep.headline_markdown()
    with pytest.raises(R.RetentionInputError, match="not a date"):
        prepare_retention_report(data_source=str(small_demo), as_of="last tuesday")


def test_report_escapes_segment_values_in_markdown(small_demo, tmp_path):
    import shutil

    from helpers.retention_report import prepare_retention_report
    folder = tmp_path / "data"
    shutil.copytree(small_demo, folder)
    customers = pd.read_parquet(folder / "customers.parquet")
    evil = "[click](javascript:alert(1)) <img src=x>"
    customers["segment"] = customers["segment"].replace({"consumer": evil})
    customers.to_parquet(folder / "customers.parquet", index=False)
    rep = prepare_retention_report(data_source=str(folder), segment=evil, as_of="2026-10-31", n_boot=0, horizon=6)
    assert rep.segment == evil
    for text in (rep.headline_markdown(), rep.summary_markdown()):
        assert "](javascript" not in text and "<img" not in text
    assert r"\[click\]\(javascript\:alert\(1\)\) &lt;img src=x&gt; customers" in rep.headline_markdown()


def test_cox_with_a_single_level_category_is_a_clear_error():
    """Found by the fuzz harness: one segment only gave KeyError "None of ['covariate'] are in the columns"."""
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"duration": rng.exponential(10, 80), "event": rng.integers(0, 2, 80), "segment": "consumer"})
    with pytest.raises(R.RetentionInputError, match="single value"):
        R.fit_cox(data, "duration", "event", ["segment"])


def test_plain_summary_without_an_all_customers_fit():
    """Found by the fuzz harness: sBG fitted for a segment but not for all customers gave KeyError: 'all'."""
    from helpers.retention_report import RetentionReport
    rep = RetentionReport(segment="all", horizon=6, holdout=3, discount_rate=0.1)
    rep.value = pd.DataFrame([{"segment": "consumer", "customers": 40, "clv": 100.0, "clv_low": 80.0,
                               "clv_high": 120.0, "del": 10.0}])
    rep.warnings.append("sBG for all customers: no customer churned")
    assert "worth" not in rep.plain_summary() and "no customer churned" in rep.plain_summary()
    rep.segment = "consumer"
    assert "a new customer (consumer) is worth about 100" in rep.plain_summary()


def test_cox_with_a_segment_without_churners_is_a_clear_error_not_a_ratio_of_zero():
    """Found by the fuzz harness (F11): a segment in which nobody churned gave "lowers the churn hazard by 100%
    (95% CI -100% to +inf%)": a separation artefact with a finite but enormous standard error was shown."""
    rng = np.random.default_rng(1)
    n = 200
    segment = np.where(np.arange(n) < 150, "consumer", "enterprise")
    duration = rng.exponential(12, n)
    event = np.where(segment == "consumer", rng.random(n) < 0.6, 0).astype(int)
    data = pd.DataFrame({"duration": duration, "event": event, "segment": segment,
                         "mean_csat": rng.normal(3.5, 0.7, n)})
    with pytest.raises(R.RetentionModelError, match="separates churners"):
        R.fit_cox(data, "duration", "event", ["mean_csat", "segment"])
    # the same data with churners in both segments still fits, with a finite, moderate ratio
    data.loc[data.index[-20:], "event"] = 1
    fit = R.fit_cox(data, "duration", "event", ["mean_csat", "segment"])
    assert np.all(np.abs(np.log(fit.table["hazard_ratio"])) < R.MAX_LOG_HAZARD_RATIO)
