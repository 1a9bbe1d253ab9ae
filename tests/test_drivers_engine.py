"""The drivers page and the department page's driver analysis from engine aggregates (issue 14).

* The proportional-odds model weighted by covariate patterns (:func:`helpers.drivers_analysis.
  ordinal_check_from_patterns`): its log-likelihood and score are the expanded rows' (1e-10), its fit and
  standard errors the expanded rows' fit (1e-6), its estimates within 4 standard errors of the known truth of
  synthetic data, and close to the row path's :func:`ordinal_check` (whose BFGS stops earlier: 1e-4).
* The company analysis of :func:`helpers.drivers_report.prepare_drivers_report`: point estimates (importance,
  share, rank, sign, performance, quadrant, VIF, R², n) equal the row path's exactly on the seeded test demo; the
  bootstrap intervals (pattern re-samples vs row re-samples, independent draws) within Monte-Carlo error (4
  standard errors of the difference of two percentile estimates, as in tests/test_drivers_patterns.py); the
  page reads no response row; a failing engine falls back to the rows and says so.
* The department page (``DepartmentReport.drivers``): no response row read, the numbers of the row path.
* Spark (one session, skipped without Spark): the same selection and company analysis as DuckDB.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import helpers.drivers_report as DR
from helpers.drivers_analysis import (_prop_odds_model_class, _weighted_prop_odds_model_class, analyze_drivers,
                                      fit_prop_odds, ordinal_check, ordinal_check_from_patterns, select_responses)
from helpers.engine import DuckDBEngine
from helpers.engine.poisson_bootstrap import rating_patterns

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "params" / "report.yaml"
POINT = ["importance", "share", "rank", "sign", "signed_importance", "performance", "quadrant", "vif"]
PERIOD = ("2025-11-01", "2026-10-31")


@pytest.fixture(scope="module")
def demo(request) -> Path:
    """build/test-demo (2,000 customers, seed 7) when present, else the session's small demo (the same data)."""
    for folder in (os.environ.get("SATISFACTION_KIT_DATA"), ROOT / "build" / "test-demo"):
        if folder and (Path(folder) / "responses.parquet").exists():
            return Path(folder)
    return request.getfixturevalue("small_demo")


@pytest.fixture(scope="module")
def inputs(demo):
    from helpers.reports.loader import load_report_inputs

    return load_report_inputs(str(demo), str(CONFIG))


def _patterns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    with DuckDBEngine() as eng:
        eng.register("responses", frame.assign(response_date=pd.Timestamp("2026-01-01")))
        return rating_patterns(eng, columns)


def _ordinal_data(n: int, seed: int, beta=(0.9, 0.5, 0.0)) -> pd.DataFrame:
    """Ratings 1-5 of three attributes and an outcome from a proportional-odds logit model with known
    coefficients ``beta`` and thresholds (-1, 0.5, 2, 3.5) on the centred attributes."""
    rng = np.random.default_rng(seed)
    x = np.clip(np.round(3 + rng.normal(size=(n, 3)) + 0.5 * rng.normal(size=(n, 1))), 1, 5)
    eta = (x - 3) @ np.asarray(beta)
    latent = eta + rng.logistic(size=n)
    y = 1 + np.searchsorted(np.array([-1.0, 0.5, 2.0, 3.5]), latent)
    frame = pd.DataFrame(x, columns=["attr_a", "attr_b", "attr_c"])
    frame.insert(0, "csat", y.astype(float))
    return frame


# --------------------------------------------------------------------------- the weighted ordinal model
def test_weighted_ordinal_likelihood_and_fit_equal_the_expanded_rows():
    frame = _ordinal_data(4000, 1)
    drivers = ["attr_a", "attr_b", "attr_c"]
    pats = frame.groupby(["csat", *drivers], as_index=False).size()
    assert len(pats) < len(frame) / 4  # integer ratings: few covariate patterns
    levels = np.sort(frame["csat"].unique())

    def endog(values):
        return pd.Series(pd.Categorical(values, categories=levels, ordered=True))

    rows = _prop_odds_model_class()(endog(frame["csat"]), frame[drivers], distr="logit")
    weighted = _weighted_prop_odds_model_class()(endog(pats["csat"]), pats[drivers],
                                                 freq_weights=pats["size"].to_numpy(float), distr="logit")
    assert weighted.n_rows == len(frame)
    np.testing.assert_allclose(weighted.start_params, rows.start_params, rtol=1e-12)
    rng = np.random.default_rng(2)
    for _ in range(3):  # the same function of the parameters, anywhere
        params = rows.start_params + rng.normal(scale=0.3, size=len(rows.start_params))
        assert weighted.loglike(params) == pytest.approx(rows.loglike(params), rel=1e-10)
        np.testing.assert_allclose(weighted.score(params), rows.score(params), rtol=1e-9, atol=1e-8)
    fit_w, fit_r = fit_prop_odds(weighted), fit_prop_odds(rows)
    assert fit_w.mle_retvals["converged"] and fit_r.mle_retvals["converged"]
    np.testing.assert_allclose(np.asarray(fit_w.params), np.asarray(fit_r.params), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(fit_w.bse), np.asarray(fit_r.bse), rtol=1e-6)
    # statsmodels' own OrderedModel on the rows (numerical derivatives): the same maximum
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    plain = OrderedModel(endog(frame["csat"]), frame[drivers], distr="logit").fit(method="bfgs", disp=False,
                                                                                  maxiter=1000, gtol=1e-8)
    np.testing.assert_allclose(np.asarray(fit_w.params)[:3], np.asarray(plain.params)[:3], rtol=1e-4, atol=1e-5)
    # and the known truth: each coefficient within 4 standard errors
    b, se = np.asarray(fit_w.params)[:3], np.asarray(fit_w.bse)[:3]
    assert np.all(np.abs(b - np.array([0.9, 0.5, 0.0])) < 4 * se), (b, se)


def test_ordinal_check_from_patterns_equals_the_row_check():
    frame = _ordinal_data(3000, 3)
    frame.loc[frame.index[::17], "attr_b"] = np.nan  # listwise deletion, as on rows
    frame.loc[frame.index[::23], "csat"] = np.nan
    frame["attr_flat"] = 4.0  # constant: left out by both
    drivers = ["attr_a", "attr_b", "attr_c", "attr_flat"]
    rank = pd.Series([1, 2, 3, 4], index=drivers)
    rows = ordinal_check(frame, "csat", drivers, shapley_rank=rank)
    pats = ordinal_check_from_patterns(_patterns(frame, ["csat", *drivers]), "csat", drivers, shapley_rank=rank)
    assert pats.n == rows.n == len(frame[["csat", *drivers]].dropna()) and not pats.subsampled
    assert list(pats.table.index) == list(rows.table.index) == ["attr_a", "attr_b", "attr_c"]
    # the row path's BFGS stops at a gradient of 1e-5 per row; the pattern fit goes on to the maximum
    for col in ("odds_ratio", "or_low", "or_high", "std_log_odds"):
        np.testing.assert_allclose(pats.table[col], rows.table[col], rtol=1e-4)
    pd.testing.assert_frame_equal(pats.table[["ordinal_rank", "shapley_rank", "agree"]],
                                  rows.table[["ordinal_rank", "shapley_rank", "agree"]])
    assert pats.spearman == rows.spearman and pats.summary() == rows.summary()


def test_ordinal_check_from_patterns_subsamples_only_above_max_rows_patterns_and_says_so():
    frame = _ordinal_data(2000, 4)
    patterns = _patterns(frame, ["csat", "attr_a", "attr_b", "attr_c"])
    n_patterns = len(patterns)
    assert n_patterns > 200
    full = ordinal_check_from_patterns(patterns, "csat", ["attr_a", "attr_b", "attr_c"], max_rows=n_patterns)
    assert full.n == 2000 and not full.subsampled and not full.notes
    a = ordinal_check_from_patterns(patterns, "csat", ["attr_a", "attr_b", "attr_c"], max_rows=200, seed=9)
    b = ordinal_check_from_patterns(patterns, "csat", ["attr_a", "attr_b", "attr_c"], max_rows=200, seed=9)
    c = ordinal_check_from_patterns(patterns, "csat", ["attr_a", "attr_b", "attr_c"], max_rows=200, seed=10)
    assert a.n == 200 and a.n_available == 2000 and a.subsampled
    assert "random subsample of 200 of the 2,000 complete responses" in a.notes[0]
    assert "random subsample of 200 of the 2,000" in a.summary()
    pd.testing.assert_frame_equal(a.table, b.table)  # seeded
    assert not np.allclose(a.table["odds_ratio"], c.table["odds_ratio"])
    # a sample of 200 rows: within 4 of its standard errors of the full fit
    se = (np.log(a.table["or_high"]) - np.log(a.table["or_low"])) / (2 * stats.norm.ppf(0.975))
    assert np.all(np.abs(np.log(a.table["odds_ratio"]) - np.log(full.table["odds_ratio"])) < 4 * se)


def test_ordinal_check_from_patterns_names_its_input_problems():
    frame = _ordinal_data(300, 5)
    frame["csat"] = np.where(frame["csat"] > 3, 5.0, 1.0)
    patterns = _patterns(frame, ["csat", "attr_a"])
    with pytest.raises(ValueError, match="2 distinct values"):
        ordinal_check_from_patterns(patterns, "csat", ["attr_a"])
    with pytest.raises(ValueError, match="needs \\['attr_b'\\]"):
        ordinal_check_from_patterns(patterns, "csat", ["attr_b"])


# --------------------------------------------------------------------------- the drivers page
def _boom(*args, **kwargs):
    raise AssertionError("the driver analysis must not read response rows")


def _no_rows(monkeypatch):
    """Every way a Dataset builds a frame of responses fails the test."""
    from helpers.data import Dataset

    monkeypatch.setattr(Dataset, "responses", property(_boom))
    monkeypatch.setattr(Dataset, "frame", _boom)


def _mc_tolerance(draws: np.ndarray, B: int, p: float = 0.025) -> np.ndarray:
    """4 standard errors of the difference of two independent percentile estimates from B draws each."""
    se_end = draws.std(axis=0) * np.sqrt(p * (1 - p) / B) / stats.norm.pdf(stats.norm.ppf(p))
    return 4 * np.sqrt(2) * se_end


@pytest.fixture(scope="module")
def pages(demo):
    """The company page from the engine (reading no response row) and from the rows (no engine)."""
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(DR, "_page_worth", lambda ds, cfg, report: None)  # the worth chain is tested elsewhere
        engine_page = DR.prepare_drivers_report(n_boot=500, data_source=str(demo), report_config=str(CONFIG))
        mp.setattr(DR, "open_report_engine", lambda dataset, config=None: (None, None))
        row_page = DR.prepare_drivers_report(n_boot=500, data_source=str(demo), report_config=str(CONFIG))
        mp.undo()
        mp.setattr(DR, "_page_worth", lambda ds, cfg, report: None)
        _no_rows(mp)
        aggregated = DR.prepare_drivers_report(n_boot=0, data_source=str(demo), report_config=str(CONFIG))
    finally:
        mp.undo()
    return engine_page, row_page, aggregated


def test_company_analysis_from_patterns_equals_the_row_path(pages):
    eng, rows, _ = pages
    a, b = eng.main, rows.main
    assert eng.period == rows.period == PERIOD and eng.warnings == rows.warnings
    pd.testing.assert_frame_equal(a.table[POINT], b.table[POINT], check_exact=True)
    assert a.n == b.n and a.r2 == b.r2 and a.dropped == b.dropped and a.label == b.label == "all departments"
    pd.testing.assert_frame_equal(a.ipa.table, b.ipa.table, check_exact=True)
    assert a.ipa.performance_cut == b.ipa.performance_cut
    # intervals: pattern re-samples vs row re-samples, within Monte-Carlo error
    B = b.attrs["n_boot"]
    assert a.attrs["n_boot"] == B == 500 and a.attrs["bootstrap"] == "multinomial patterns"
    tol = _mc_tolerance(b.draws, B)
    for col in ("ci_low", "ci_high"):
        gap = np.abs(a.table[col].to_numpy() - b.table[col].to_numpy())
        assert np.all(gap <= tol + 1e-12), (col, gap / tol)
    share_tol = _mc_tolerance(b.draws / b.boot_r2[:, None], B)
    for col in ("share_low", "share_high"):
        assert np.all(np.abs(a.table[col].to_numpy() - b.table[col].to_numpy()) <= share_tol + 1e-12), col
    assert np.all(np.abs(a.draws.std(axis=0) / b.draws.std(axis=0) - 1) <= 4 * np.sqrt(2) / np.sqrt(2 * B))
    # the ordinal check: every complete response of the period, weighted patterns vs rows
    oa, ob = a.ordinal, b.ordinal
    assert oa.n == ob.n == a.n and not oa.subsampled
    np.testing.assert_allclose(oa.table["odds_ratio"], ob.table["odds_ratio"], rtol=1e-4)
    np.testing.assert_allclose(oa.table["or_high"], ob.table["or_high"], rtol=1e-4)
    pd.testing.assert_frame_equal(oa.table[["ordinal_rank", "shapley_rank", "agree"]],
                                  ob.table[["ordinal_rank", "shapley_rank", "agree"]])
    # what the page shows: the same findings (the department sentence's interval comes from the departments'
    # own re-samples, rows in one and patterns in the other)
    fa, fb = eng.findings(), rows.findings()
    assert len(fa) == len(fb) and fa[:3] == fb[:3] and fa[-1] == fb[-1]
    assert list(eng.departments) == list(rows.departments)
    assert {k: v.n_usable for k, v in eng.departments.items()} == {k: v.n_usable for k, v in rows.departments.items()}
    assert all(d.engine == "duckdb" for d in eng.departments.values())
    assert all(d.engine == "" for d in rows.departments.values())


def test_company_page_reads_no_response_rows(pages, inputs):
    eng, _, aggregated = pages
    assert aggregated.main is not None and aggregated.main.n == eng.main.n
    pd.testing.assert_frame_equal(aggregated.main.table[POINT], eng.main.table[POINT], check_exact=True)
    assert aggregated.main.ordinal is not None and aggregated.by_department.results


def test_department_drivers_page_from_patterns_equals_the_row_path(demo, inputs, monkeypatch):
    monkeypatch.setattr(DR, "_page_worth", lambda ds, cfg, report: None)
    eng = DR.prepare_drivers_report("technical_support", n_boot=0, data_source=str(demo), report_config=str(CONFIG))
    ds = inputs.dataset
    rows = select_responses(ds.responses, "Technical Support", *PERIOD)
    ref = ordinal_check(rows, eng.outcome, list(eng.main.table.index), shapley_rank=eng.main.table["rank"])
    assert eng.department == "Technical Support" and eng.main.ordinal.n == ref.n
    np.testing.assert_allclose(eng.main.ordinal.table["odds_ratio"], ref.table["odds_ratio"], rtol=1e-4)
    assert list(eng.main.ordinal.table["ordinal_rank"]) == list(ref.table["ordinal_rank"])
    # the same selection errors as the rows
    bad = DR.prepare_drivers_report("no_such_team", n_boot=0, data_source=str(demo), report_config=str(CONFIG))
    monkeypatch.setattr(DR, "open_report_engine", lambda dataset, config=None: (None, None))
    bad_rows = DR.prepare_drivers_report("no_such_team", n_boot=0, data_source=str(demo), report_config=str(CONFIG))
    assert bad.warnings == bad_rows.warnings and "departments in the data: Billing" in bad.warnings[-1]
    early = DR.prepare_drivers_report(period_start="2001-01-01", period_end="2001-12-31", n_boot=0,
                                      data_source=str(demo), report_config=str(CONFIG))
    assert early.main is None and "no responses for department 'all' between 2001-01-01" in early.warnings[-1]


def test_a_failing_engine_falls_back_to_the_rows_and_says_so(demo, monkeypatch):
    from helpers.engine import EngineError

    class Failing(DuckDBEngine):
        def query(self, sql):
            if "count(*) AS count" in sql:  # the rating patterns
                raise EngineError("duckdb engine: the cluster is gone")
            return super().query(sql)

    def failing(dataset, config=None):
        return Failing(dataset.con), None

    monkeypatch.setattr(DR, "_page_worth", lambda ds, cfg, report: None)
    monkeypatch.setattr(DR, "open_report_engine", failing)
    page = DR.prepare_drivers_report(n_boot=0, data_source=str(demo), report_config=str(CONFIG))
    assert any(w.startswith("The duckdb engine failed (") and "the cluster is gone" in w
               and w.endswith("these figures were computed in memory.") for w in page.warnings)
    monkeypatch.setattr(DR, "open_report_engine", lambda dataset, config=None: (None, "no engine here."))
    rows = DR.prepare_drivers_report(n_boot=0, data_source=str(demo), report_config=str(CONFIG))
    assert "no engine here." in rows.warnings
    pd.testing.assert_frame_equal(page.main.table[POINT], rows.main.table[POINT], check_exact=True)
    assert page.main.ordinal.n == rows.main.ordinal.n


# --------------------------------------------------------------------------- the department page
def test_department_page_drivers_from_the_engine_equal_the_row_path(demo, monkeypatch):
    from helpers.objectives_report import DepartmentData, prepare_department_report

    report = prepare_department_report("billing", data_source=str(demo), as_of="2026-10-31")
    with monkeypatch.context() as m:
        _no_rows(m)
        m.setattr(DepartmentData, "responses", property(_boom))
        analysis, message = report.drivers()
    assert not message and analysis is not None
    start, end = DR.department_window("2026-10-31")
    rows = select_responses(report.dataset.responses, "Billing", start, end)
    cfg = report.config
    from helpers.reports.loader import driver_min_responses

    drivers = list(cfg.drivers or report.dataset.attributes)
    ref = analyze_drivers(rows, cfg.outcome, drivers, n_boot=DR.DEPARTMENT_N_BOOT, seed=DR.department_seed("Billing"),
                          ordinal=False, min_n=driver_min_responses(cfg.min_responses, len(drivers)))
    pd.testing.assert_frame_equal(analysis.table[POINT], ref.table[POINT], check_exact=True)
    assert analysis.n == ref.n and analysis.r2 == ref.r2
    tol = _mc_tolerance(ref.draws / ref.boot_r2[:, None], DR.DEPARTMENT_N_BOOT)
    for col in ("share_low", "share_high"):
        assert np.all(np.abs(analysis.table[col].to_numpy() - ref.table[col].to_numpy()) <= tol + 1e-12), col
    # no engine: the department's own rows (read only then) give the same point estimates
    monkeypatch.setattr(DR, "open_report_engine", lambda dataset, config=None: (None, None))
    fallback, _ = report.drivers()
    pd.testing.assert_frame_equal(fallback.table[POINT], ref.table[POINT], check_exact=True)


# --------------------------------------------------------------------------- Spark (one session)
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_company_selection_and_analysis_on_spark_equal_duckdb(demo):
    from helpers.engine.spark_engine import SparkEngine, spark_unavailable_reason, start_spark_session

    reason = spark_unavailable_reason()
    if reason is not None:
        pytest.skip(f"Spark engine tests need Spark: {reason}")
    tables = {t: str(demo / f"{t}.parquet") for t in ("customers", "responses", "tickets")}
    session = start_spark_session("local[1]", "kit-tests-drivers", {"spark.sql.shuffle.partitions": 2,
                                                                    "spark.default.parallelism": 1})
    try:
        with SparkEngine(tables, session=session) as spark, DuckDBEngine(tables=tables) as duck:
            drivers = ["attr_speed", "attr_resolution", "attr_knowledge", "attr_courtesy", "attr_ease", "attr_value"]
            s, d = DR._EngineResponses(spark), DR._EngineResponses(duck)
            assert s.select("billing", *PERIOD) == d.select("billing", *PERIOD)
            assert s.last_date() == d.last_date()
            a = s.analyse_all("csat", drivers, PERIOD, 50, 3, 60)
            b = d.analyse_all("csat", drivers, PERIOD, 50, 3, 60)
            pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)  # same patterns, same draws
            pd.testing.assert_frame_equal(a.ordinal.table, b.ordinal.table, check_exact=True)
    finally:
        session.stop()
