"""Engine-layer aggregates (DuckDB) equal the kit's row-level results on the seeded test demo.

Reference implementations: helpers.kpis (kpi_series, median_order_ranks), helpers.retention (kaplan_meier,
log_rank, customer_durations, fit_sbg_durations, cohort_survivors, fit_cox) and helpers.drivers
(relative_importance with its row bootstrap). The Spark engine is checked against DuckDB in test_engine_spark.py.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers import kpis
from helpers import retention as R
from helpers.data import load_dataset
from helpers.drivers import relative_importance
from helpers.engine import DuckDBEngine, EngineError, EngineSettings, connect, dataset_tables
from helpers.engine import aggregates as A
from helpers.engine import poisson_bootstrap as P

KPI_METRICS = ["csat", "nps", "ces", "response_count", "fcr", "reopen_rate", "ticket_volume",
               "first_response_hours", "resolution_hours", "first_response_hours_mean", "resolution_hours_mean"]


@pytest.fixture(scope="module")
def ds(demo_dir):
    return load_dataset(demo_dir)


@pytest.fixture(scope="module")
def eng(ds):
    with DuckDBEngine(tables=dataset_tables(ds)) as engine:
        yield engine


@pytest.fixture(scope="module")
def durations(ds):
    return R.customer_durations(ds.customers)


# --- KPIs ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", KPI_METRICS)
def test_kpi_series_from_aggregates_equals_kpi_series(ds, eng, metric):
    for freq, by in (("month", "department"), (None, "department"), ("quarter", None)):
        got = A.kpi_series_from_aggregates(eng, metric, freq=freq, by=by)
        want = kpis.kpi_series(ds.con, metric, freq=freq, by=by)
        assert len(got) == len(want) > 0
        pd.testing.assert_frame_equal(got, want, rtol=1e-10, check_dtype=False)


def test_kpi_aggregates_are_the_row_counts(ds, eng):
    agg = A.kpi_aggregates(eng, "nps", freq=None, by="department", start="2025-01-01", end="2025-06-30")
    r = ds.responses
    r = r[(r["response_date"] >= "2025-01-01") & (r["response_date"] <= "2025-06-30")]
    for _, row in agg.iterrows():
        x = r.loc[r["department"] == row["department"], "nps"].dropna().astype(int)
        assert (row["n"], row["k1"], row["k2"]) == (len(x), (x >= 9).sum(), (x <= 6).sum())
        assert (row["total"], row["total_sq"]) == (x.sum(), (x * x).sum())


def test_median_and_interval_are_the_row_order_statistics(ds, eng):
    got = A.kpi_series_from_aggregates(eng, "resolution_hours", freq=None, by="department")
    t = ds.tickets
    hours = (t["resolved_at"] - t["created_at"]).dt.total_seconds() / 3600
    for _, row in got.iterrows():
        est = kpis.median_estimate(hours[t["department"] == row["department"]].dropna(), "resolution_hours")
        assert row["value"] == pytest.approx(est.value, rel=1e-12)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((est.ci_low, est.ci_high), rel=1e-12)


def test_quantile_aggregates_other_quantiles(ds, eng):
    got = A.quantile_aggregates(eng, "tickets", A.hours_sql("created_at", "resolved_at"), probs=(0.1, 0.9),
                                by="department")
    t = ds.tickets
    hours = ((t["resolved_at"] - t["created_at"]).dt.total_seconds() / 3600).to_numpy()
    for _, row in got.iterrows():
        x = np.sort(hours[(t["department"] == row["department"]).to_numpy() & np.isfinite(hours)])
        n, p = len(x), row["prob"]
        assert row["n"] == n
        assert row["value"] == pytest.approx(np.quantile(x, p), rel=1e-12)  # type 7, as quantile_cont
        lo = max(int(stats.binom.ppf(0.025, n, p)), 1)
        hi = min(int(stats.binom.ppf(0.975, n, p)) + 1, n)
        assert (row["ci_low"], row["ci_high"]) == (x[lo - 1], x[hi - 1])
        cover = stats.binom.cdf(hi - 1, n, p) - stats.binom.cdf(lo - 1, n, p)
        assert cover >= 0.95


# --- survival ----------------------------------------------------------------------------------------------
def test_kaplan_meier_and_log_rank_from_counts_equal_row_level(eng, durations):
    want = R.kaplan_meier(durations, group="segment")
    got = A.kaplan_meier_from_counts(A.survival_counts(eng, by="segment"), group="segment")
    pd.testing.assert_frame_equal(got.table, want.table, rtol=1e-12, check_dtype=False)
    pd.testing.assert_frame_equal(got.medians, want.medians, rtol=1e-12, check_dtype=False)
    assert got.log_rank.statistic == pytest.approx(want.log_rank.statistic, rel=1e-12)
    assert got.log_rank.p_value == pytest.approx(want.log_rank.p_value, rel=1e-9, abs=1e-300)
    pd.testing.assert_frame_equal(got.log_rank.table, want.log_rank.table, check_dtype=False)
    pooled = A.kaplan_meier_from_counts(A.survival_counts(eng))
    pd.testing.assert_frame_equal(pooled.table, R.kaplan_meier(durations).table, rtol=1e-12, check_dtype=False)


def test_sbg_counts_fit_and_cohort_survivors_equal_row_level(eng, durations):
    counts = A.sbg_counts(eng, by="segment")
    keys = ["segment", "lifetime_periods", "sbg_churned", "exposure_periods"]
    rows = durations.groupby(keys).size().rename("customers").reset_index()
    agg = counts.groupby(keys)["customers"].sum().reset_index()
    pd.testing.assert_frame_equal(agg, rows, check_dtype=False)
    for seg, g in durations.groupby("segment"):
        want = R.fit_sbg_durations(g["lifetime_periods"], g["sbg_churned"], g["exposure_periods"], n_boot=20, seed=3)
        got = A.fit_sbg_from_counts(counts[counts["segment"] == seg], n_boot=20, seed=3)
        assert (got.alpha, got.beta, got.loglik) == (want.alpha, want.beta, want.loglik)
        np.testing.assert_array_equal(got.boot, want.boot)
        pd.testing.assert_frame_equal(got.observed, want.observed)
        assert (got.n_customers, got.periods_observed) == (want.n_customers, want.periods_observed)
    survivors = A.cohort_survivor_counts(counts)
    checked = 0
    for cohort, g in durations.groupby("cohort"):
        if g["exposure_periods"].min() < 2:
            continue
        got = survivors.loc[survivors["cohort"] == cohort, "survivors"].to_numpy()
        np.testing.assert_array_equal(got, R.cohort_survivors(g, min_size=0).to_numpy())
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("as_of", [None, "2024-06-30"])
def test_retention_rate_counts_equal_monthly_retention_rates(eng, ds, as_of):
    """At risk and churned per calendar month (and segment) from one engine query: the row-level table exactly,
    for the data's end and for an as-of inside the data (later signups left out, later churn not counted)."""
    day = A.customers_as_of(eng) if as_of is None else pd.Timestamp(as_of)
    customers = ds.customers[pd.to_datetime(ds.customers["signup_date"]) <= day]
    frame = R.customer_durations(customers, as_of=day)
    for by in (None, "segment"):
        want = R.monthly_retention_rates(frame, as_of=day, by=by)
        got = A.retention_rate_counts(eng, as_of=day, by=by)
        assert len(want) > 3
        pd.testing.assert_frame_equal(got, want, check_dtype=False, check_exact=True)
    one = frame[frame["segment"] == "enterprise"]
    pd.testing.assert_frame_equal(A.retention_rate_counts(eng, as_of=day, filters={"segment": "enterprise"}),
                                  R.monthly_retention_rates(one, as_of=day), check_dtype=False, check_exact=True)
    assert A.retention_rate_counts(eng, as_of=pd.Timestamp(frame["signup_date"].min())).empty


def test_weighted_median_is_numpy_median_of_repeats():
    v, w = np.array([3, 1, 2, 7]), np.array([2, 1, 4, 1])
    assert A._weighted_median(v, w) == np.median(np.repeat(v, w))
    assert A._weighted_median(v, np.array([1, 1, 1, 1])) == np.median(v)


# --- Cox sample ---------------------------------------------------------------------------------------------
def test_cox_sample_is_seeded_and_independent_of_row_order(ds, eng):
    a = A.cox_sample(eng, 500, seed=11)
    assert len(a) == 500 and a.attrs == {"population": len(ds.customers), "size": 500, "seed": 11}
    assert a["customer_id"].is_unique
    shuffled = DuckDBEngine()
    shuffled.register("customers", ds.customers.sample(frac=1, random_state=5))
    shuffled.register("responses", ds.responses.sample(frac=1, random_state=6))
    b = A.cox_sample(shuffled, 500, seed=11)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    assert set(A.cox_sample(eng, 500, seed=12)["customer_id"]) != set(a["customer_id"])
    full = R.customer_durations(ds.customers).set_index("customer_id").loc[a["customer_id"]]
    np.testing.assert_allclose(a["duration"], full["duration"], rtol=0, atol=0)
    np.testing.assert_array_equal(a["event"], full["event"])


def test_cox_fit_on_the_sample_agrees_with_the_full_fit(ds, eng, durations):
    sat = R.customer_satisfaction(ds.responses)
    full_frame = durations.merge(sat, on="customer_id", how="inner")
    full = R.fit_cox(full_frame, "duration", "event", ["mean_csat", "segment"])
    sample = A.cox_sample(eng, 800, seed=7, covariates=["segment"]).dropna(subset=["mean_csat"])
    fit = R.fit_cox(sample, "duration", "event", ["mean_csat", "segment"])
    assert fit.n < full.n
    for cov in full.table.index:  # the full-data coefficient lies in the sample fit's 95% interval
        assert fit.table.loc[cov, "ci_low"] <= full.table.loc[cov, "hazard_ratio"] <= fit.table.loc[cov, "ci_high"], cov
    # and the sample's interval is wider, as a smaller sample's must be
    width = lambda t: np.log(t["ci_high"] / t["ci_low"])  # noqa: E731
    assert (width(fit.table) > width(full.table)).all()


# --- drivers -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def attributes(ds):
    return [c for c in ds.responses.columns if c.startswith("attr_")]


def test_driver_point_estimate_equals_row_level(ds, eng, attributes):
    moments = P.driver_moments(eng, "csat", attributes, by="department")
    got = P.driver_importance_from_moments(moments)
    for dept, g in got.groupby("department"):
        rows = ds.responses[ds.responses["department"] == dept]
        want = relative_importance(rows, "csat", attributes).table
        g = g.set_index("driver").loc[want.index]
        np.testing.assert_allclose(g["importance"], want["importance"], rtol=1e-12)
        np.testing.assert_allclose(g["share"], want["share"], rtol=1e-12)
        np.testing.assert_array_equal(g["rank"], want["rank"])
        assert (g["n"] == rows[["csat", *attributes]].dropna().shape[0]).all()


def test_poisson_weights_are_poisson_one_and_independent_of_row_order(ds, eng, attributes):
    th = P.poisson_thresholds()
    probs = np.diff(np.r_[0, th, P.POISSON_MODULUS]) / P.POISSON_MODULUS
    np.testing.assert_allclose(probs[:8], stats.poisson.pmf(np.arange(8), 1.0), atol=1e-9)
    # the realised weights of one department over 200 replicates: Poisson(1) frequencies
    m = P.driver_moments(eng, "csat", attributes[:1], by="department", n_boot=200, seed=5,
                         filters={"department": "Customer Service"})
    n0 = m.loc[m["replicate"] == 0, "n"].iloc[0]
    totals = m.loc[m["replicate"] > 0, "n"].to_numpy()
    assert abs(totals.mean() - n0) < 4 * np.sqrt(n0 / 200)  # E sum w = n, Var = n
    assert 0.75 < totals.var(ddof=1) / n0 < 1.3
    shuffled = DuckDBEngine()
    shuffled.register("responses", ds.responses.sample(frac=1, random_state=9))
    again = P.driver_moments(shuffled, "csat", attributes[:1], by="department", n_boot=200, seed=5,
                             filters={"department": "Customer Service"})
    pd.testing.assert_frame_equal(m, again)


def test_poisson_bootstrap_agrees_with_row_bootstrap(ds, eng, attributes):
    """Within Monte-Carlo error (B = 400 each): the SD of the importance draws (relative SE of an SD ratio
    about 1/sqrt(B) = 5%: bounds at 4 SE), the draws' means, and the interval ends (a 2.5% quantile of 400
    draws has an MC SE of about 0.13 SD; bounds at 0.6 SD for the difference of two)."""
    dept, B = "Customer Service", 400
    rows = ds.responses[ds.responses["department"] == dept]
    row_boot = relative_importance(rows, "csat", attributes, n_boot=B, seed=2)
    m = P.driver_moments(eng, "csat", attributes, by="department", n_boot=B, seed=2, filters={"department": dept})
    players = list(row_boot.table.index)
    draws, _ = P.replicate_draws(m, players)
    sd_rows, sd_pois = row_boot.draws.std(axis=0, ddof=1), draws.std(axis=0, ddof=1)
    assert np.all(np.abs(np.log(sd_pois / sd_rows)) < 4 / np.sqrt(B)), sd_pois / sd_rows
    assert np.all(np.abs(draws.mean(axis=0) - row_boot.draws.mean(axis=0)) < 4 * sd_rows * np.sqrt(2 / B))
    got = P.driver_importance_from_moments(m).set_index("driver").loc[players]
    assert (got["n_boot"] == B).all()
    for end in ("ci_low", "ci_high"):
        assert np.all(np.abs(got[end] - row_boot.table[end]) < 0.6 * sd_rows), end
    assert np.all((got["ci_low"] <= got["importance"]) & (got["importance"] <= got["ci_high"]))


# --- engine interface and settings --------------------------------------------------------------------------
def test_engine_refuses_row_sized_answers(ds):
    with DuckDBEngine(tables=dataset_tables(ds), max_result_rows=100) as small:
        assert len(small.query("SELECT department, count(*) AS n FROM responses GROUP BY department")) > 0
        with pytest.raises(EngineError, match="max_result_rows = 100.*aggregates"):
            small.query("SELECT * FROM responses")


def test_engine_errors_name_the_problem(ds, eng, tmp_path):
    with pytest.raises(EngineError, match="duckdb engine: .*nosuch"):
        eng.query("SELECT nosuch FROM responses")
    with pytest.raises(EngineError, match="no file or folder"):
        DuckDBEngine(tables={"responses": str(tmp_path / "missing.parquet")})
    with pytest.raises(EngineError, match="has no column"):
        P.driver_moments(eng, "csat", ["attr_nosuch"], by="department")


def test_dataset_views_and_files_give_the_same_aggregates(ds, eng):
    views = connect(EngineSettings(), dataset=ds)
    assert views.con is ds.con
    pd.testing.assert_frame_equal(A.kpi_aggregates(views, "csat", by="department"),
                                  A.kpi_aggregates(eng, "csat", by="department"))


def test_engine_settings_are_strict():
    s = EngineSettings.model_validate({"kind": "spark", "spark": {"master": "local[1]",
                                                                   "conf": {"spark.sql.shuffle.partitions": 2}}})
    assert s.kind == "spark" and s.spark.conf == {"spark.sql.shuffle.partitions": 2}
    for bad in ({"kind": "oracle"}, {"knd": "duckdb"}, {"spark": {"conf": {"executor.memory": "2g"}}},
                {"max_result_rows": 0}):
        with pytest.raises(ValueError):
            EngineSettings.model_validate(bad)


def test_driver_groups_without_enough_answers_are_named_not_dropped(eng, attributes):
    # ten months: the small Marketing department has a dozen complete answers, too few for usable replicates
    moments = P.driver_moments(eng, "csat", attributes, by="department", start="2026-01-01", end="2026-10-31",
                               n_boot=30, seed=1)
    got = P.driver_importance_from_moments(moments)
    skipped = got.attrs["skipped"]
    assert set(skipped) == {"Marketing"} and "usable model" in skipped["Marketing"]
    marketing = got[got["department"] == "Marketing"]
    assert marketing["importance"].notna().all() and marketing["ci_low"].isna().all()  # estimate, no interval
    assert marketing["n"].iloc[0] < 20
    assert got.loc[got["department"] != "Marketing", "ci_low"].notna().all()


def test_unknown_metric_is_named(eng):
    with pytest.raises(EngineError, match="'clv'.*known"):
        A.kpi_aggregates(eng, "clv")


def test_pattern_moments_equal_engine_moments_and_bootstrap_like_rows(ds, eng, attributes):
    """The answer-sized path: distinct rating patterns per group from the engine, Poisson(count) weights per
    pattern in numpy. Replicate 0 is the engine's sums exactly; the replicates agree with the row bootstrap
    within Monte-Carlo error (as in the per-row Poisson test)."""
    patterns = P.driver_patterns(eng, "csat", attributes, by="department")
    assert patterns["count"].sum() == ds.responses[["csat", *attributes]].dropna().shape[0]
    from_patterns = P.moments_from_patterns(patterns, n_boot=400, seed=2)
    engine_sums = P.driver_moments(eng, "csat", attributes, by="department")
    pd.testing.assert_frame_equal(from_patterns[from_patterns["replicate"] == 0].reset_index(drop=True),
                                  engine_sums, check_dtype=False)
    dept, B = "Customer Service", 400
    rows = ds.responses[ds.responses["department"] == dept]
    row_boot = relative_importance(rows, "csat", attributes, n_boot=B, seed=2)
    one = from_patterns[from_patterns["department"] == dept]
    one.attrs.update(from_patterns.attrs)
    draws, _ = P.replicate_draws(one, list(row_boot.table.index))
    ratio = draws.std(axis=0, ddof=1) / row_boot.draws.std(axis=0, ddof=1)
    assert np.all(np.abs(np.log(ratio)) < 4 / np.sqrt(B)), ratio
    again = P.moments_from_patterns(P.driver_patterns(eng, "csat", attributes, by="department"), n_boot=400, seed=2)
    pd.testing.assert_frame_equal(again, from_patterns)


def test_filter_values_are_looked_up_once_per_engine_and_forgotten_on_register():
    """A department page checks the same filter values for every KPI it reads (24 identical queries on the
    billing page): an engine answers each lookup once; a registered table may replace one, so register()
    forgets them."""
    engine = DuckDBEngine()
    try:
        engine.register("tickets", pd.DataFrame({"department": ["Billing", "Sales"], "x": [1, 2]}))
        sent = []
        real = engine._run
        engine._run = lambda sql: (sent.append(sql), real(sql))[1]
        for _ in range(3):
            _, resolved = A.selected_source(engine, "tickets", {"department": "billing"})
            assert resolved == {"department": ["Billing"]}  # matched by case
        lookups = [s for s in sent if "SELECT DISTINCT" in s and "IN (" in s]
        assert len(lookups) == 1, sent
        engine.register("tickets", pd.DataFrame({"department": ["billing"], "x": [1]}))
        _, resolved = A.selected_source(engine, "tickets", {"department": "billing"})
        assert resolved == {"department": ["billing"]}  # the new table's value, not the remembered one
        assert len([s for s in sent if "SELECT DISTINCT" in s and "IN (" in s]) == 2
    finally:
        engine.close()


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_quantile_ranks_of_many_sizes_equal_the_ranks_one_size_at_a_time(confidence):
    ns = [*range(1, 300), 1_000, 12_345, 10**6]
    probs = [0.5, 0.01, 0.1, 0.25, 0.5, 0.9, 0.99, 0.731]
    lo, hi = A.quantile_ranks_many(ns, probs, confidence)
    assert lo.shape == hi.shape == (len(ns), len(probs))
    for j, p in enumerate(probs):
        assert [(int(a), int(b)) for a, b in zip(lo[:, j], hi[:, j])] == [A.quantile_ranks(n, p, confidence)
                                                                          for n in ns], p
