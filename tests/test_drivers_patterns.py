"""The department driver analysis from engine aggregates (issue 14): distinct rating patterns with counts per
department instead of the department's rows.

* Point estimates (importance, share, rank, sign, R², n, VIF, mean ratings, quadrants, dropped attributes) equal
  the row-level :func:`helpers.drivers_analysis.analyze_drivers` exactly, on the seeded test demo and on
  synthetic data with every kind of missing value (outcome missing where the attributes are answered, an
  attribute nobody answered, a constant attribute).
* Intervals: the pattern bootstrap draws multinomial pattern counts, the row bootstrap's distribution, so the
  interval ends agree within Monte-Carlo error. Tolerance (stated and tested): with B draws per side, a 2.5% or
  97.5% percentile has standard error about ``sd * sqrt(p (1 - p) / B) / phi(z_p)`` (normal approximation), so the
  difference of two independent estimates has SE ``sqrt(2)`` times that; the test allows 4 such SEs
  (B = 1000: 0.48 bootstrap SDs), plus 4 SEs for the bootstrap SDs themselves (relative SE ``1 / sqrt(2 B)``
  each).
* The department analysis reads no response rows (memory follows the answer), uses the config's engine, falls
  back to the rows when no engine is reachable, and :func:`helpers.drivers_report.cached_once` computes once.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.drivers_analysis import (analyze_drivers, analyze_drivers_from_patterns, patterns_usable_rows,
                                      select_responses)
from helpers.engine import DuckDBEngine
from helpers.engine.poisson_bootstrap import rating_patterns

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "params" / "report.yaml"
POINT = ["importance", "share", "rank", "sign", "signed_importance", "performance", "quadrant", "vif"]


def _patterns_of(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    with DuckDBEngine() as eng:
        eng.register("responses", frame.assign(response_date=pd.Timestamp("2026-01-01")))
        return rating_patterns(eng, columns)


def _same_point_estimates(rows, pats, exact: bool = True):
    """Equal estimates; ``exact=False`` allows rounding (1e-12 relative) for a matrix computed on centred data
    (a constant attribute: ``_weighted_corr``'s fallback sums centred values in another order than BLAS)."""
    kw = {"check_exact": True} if exact else {"check_exact": False, "rtol": 1e-12, "atol": 1e-14}
    pd.testing.assert_frame_equal(rows.table[[c for c in POINT if c in rows.table]],
                                  pats.table[[c for c in POINT if c in pats.table]], **kw)
    assert rows.n == pats.n and rows.dropped == pats.dropped
    assert rows.r2 == pats.r2 if exact else rows.r2 == pytest.approx(pats.r2, rel=1e-12)
    assert rows.warnings == pats.warnings and rows.method == pats.method
    assert rows.ipa.performance_cut == pats.ipa.performance_cut and rows.ipa.scale_max == pats.ipa.scale_max
    pd.testing.assert_frame_equal(rows.ipa.table, pats.ipa.table, **kw)


def _synthetic(n: int, seed: int) -> pd.DataFrame:
    """Ratings 1-5 driven by known weights, with missing values of every kind."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4)) + 0.6 * rng.normal(size=(n, 1))
    ratings = np.clip(np.round(3 + z), 1, 5)
    y = np.clip(np.round(3 + z @ np.array([0.8, 0.5, 0.2, 0.0]) / 1.2 + 0.7 * rng.normal(size=n)), 1, 5)
    frame = pd.DataFrame(ratings, columns=["attr_a", "attr_b", "attr_c", "attr_d"])
    frame.insert(0, "csat", y)
    for col, share in (("csat", 0.05), ("attr_a", 0.04), ("attr_b", 0.06), ("attr_d", 0.03)):
        frame.loc[rng.random(n) < share, col] = np.nan
    frame["attr_never"] = np.nan  # nobody answered: dropped, does not count against the complete rows
    frame["attr_flat"] = np.where(rng.random(n) < 0.1, np.nan, 4.0)  # constant: dropped
    return frame


def test_pattern_analysis_equals_rows_with_missing_values_of_every_kind():
    frame = _synthetic(3000, 1)
    assert frame["csat"].isna().sum() > 0  # VIF rows (complete in the attributes) include these: still equal
    drivers = ["attr_a", "attr_b", "attr_c", "attr_never", "attr_d"]
    patterns = _patterns_of(frame, ["csat", *drivers])
    assert patterns["count"].sum() == len(frame) and len(patterns) < len(frame)
    rows = analyze_drivers(frame, "csat", drivers, n_boot=0, ordinal=False)
    pats = analyze_drivers_from_patterns(patterns, "csat", drivers, n_boot=0)
    assert set(rows.dropped) == {"attr_never"}
    _same_point_estimates(rows, pats)  # bit for bit
    # a constant attribute: dropped by both, the others equal up to rounding (the centred fallback)
    drivers = [*drivers, "attr_flat"]
    patterns = _patterns_of(frame, ["csat", *drivers])
    rows = analyze_drivers(frame, "csat", drivers, n_boot=0, ordinal=False)
    pats = analyze_drivers_from_patterns(patterns, "csat", drivers, n_boot=0)
    assert set(rows.dropped) == {"attr_never", "attr_flat"}
    _same_point_estimates(rows, pats, exact=False)
    # the usable-row count of the sample rule: attributes nobody answered do not count against it
    complete = frame[["csat", "attr_a", "attr_b", "attr_c", "attr_d", "attr_flat"]].dropna()
    assert patterns_usable_rows(patterns, "csat", drivers) == len(complete)


def test_pattern_analysis_errors_like_the_rows():
    frame = _synthetic(200, 2)
    frame["csat"] = 3.0
    patterns = _patterns_of(frame, ["csat", "attr_a", "attr_b"])
    with pytest.raises(ValueError, match="constant"):
        analyze_drivers_from_patterns(patterns, "csat", ["attr_a", "attr_b"], n_boot=0)
    with pytest.raises(ValueError, match="rating patterns have columns"):
        analyze_drivers_from_patterns(patterns, "nps", ["attr_a"], n_boot=0)


def test_pattern_bootstrap_agrees_with_the_row_bootstrap_within_monte_carlo_error():
    frame = _synthetic(1500, 3)
    drivers = ["attr_a", "attr_b", "attr_c", "attr_d"]
    B = 1000
    rows = analyze_drivers(frame, "csat", drivers, n_boot=B, seed=11, ordinal=False)
    pats = analyze_drivers_from_patterns(_patterns_of(frame, ["csat", *drivers]), "csat", drivers, n_boot=B,
                                         seed=12)
    assert rows.attrs["n_boot"] == pats.attrs["n_boot"] == B
    sd = rows.draws.std(axis=0)
    p = 0.025
    se_end = sd * np.sqrt(p * (1 - p) / B) / stats.norm.pdf(stats.norm.ppf(p))
    for col in ("ci_low", "ci_high"):
        gap = np.abs(rows.table[col].to_numpy() - pats.table[col].to_numpy())
        assert np.all(gap <= 4 * np.sqrt(2) * se_end + 1e-12), (col, gap / se_end)
    ratio = pats.draws.std(axis=0) / sd
    assert np.all(np.abs(ratio - 1) <= 4 * np.sqrt(2) / np.sqrt(2 * B)), ratio
    # the means of the draws too (bootstrap bias): within 4 standard errors of their difference
    assert np.all(np.abs(rows.draws.mean(axis=0) - pats.draws.mean(axis=0)) <= 4 * sd * np.sqrt(2 / B))
    # R² interval and the share intervals the pages show
    assert abs(rows.r2_ci[0] - pats.r2_ci[0]) <= 4 * np.sqrt(2) * rows.boot_r2.std() * np.sqrt(p * (1 - p) / B) / \
        stats.norm.pdf(stats.norm.ppf(p))
    assert {"share_low", "share_high"} <= set(pats.table.columns)


def test_pattern_bootstrap_is_reproducible_and_follows_its_seed():
    frame = _synthetic(800, 4)
    patterns = _patterns_of(frame, ["csat", "attr_a", "attr_b", "attr_c"])
    a = analyze_drivers_from_patterns(patterns, "csat", ["attr_a", "attr_b", "attr_c"], n_boot=50, seed=5)
    b = analyze_drivers_from_patterns(patterns.sample(frac=1, random_state=1).reset_index(drop=True)
                                      .pipe(lambda f: f.__finalize__(patterns)), "csat",
                                      ["attr_a", "attr_b", "attr_c"], n_boot=50, seed=5)
    c = analyze_drivers_from_patterns(patterns, "csat", ["attr_a", "attr_b", "attr_c"], n_boot=50, seed=6)
    pd.testing.assert_frame_equal(a.table, c.table.assign(ci_low=a.table["ci_low"], ci_high=a.table["ci_high"],
                                                          share_low=a.table["share_low"],
                                                          share_high=a.table["share_high"]))
    assert not np.allclose(a.draws, c.draws)
    assert a.attrs["bootstrap"] == "multinomial patterns"
    # the engine sorts the patterns: the order they arrive in does not change the point estimates
    pd.testing.assert_frame_equal(a.table[POINT], b.table[POINT], check_exact=True)


# ------------------------------------------------------------------------------------------- the department analysis
@pytest.fixture(scope="module")
def inputs(small_demo):
    from helpers.reports.loader import load_report_inputs

    return load_report_inputs(str(small_demo), str(CONFIG))


def test_department_analysis_equals_the_row_path_on_the_demo(inputs):
    """Every department of the seeded demo: the engine path's point estimates are the row path's, and its
    intervals are close (200 re-samples each: within 0.05 of a share)."""
    import helpers.drivers_report as DR

    ds, cfg = inputs.dataset, inputs.config
    analysed = 0
    for name in sorted(ds.departments):
        eng = DR.department_driver_analysis(ds, cfg, name, "2026-10-31", cache=False)
        assert eng.engine == "duckdb"
        start, end = eng.period
        try:
            rows = select_responses(ds.responses, name, start, end)
        except ValueError:
            assert eng.n_usable == 0
            continue
        assert eng.n_usable == DR._usable_rows(rows, eng.outcome, eng.drivers)
        if eng.analysis is None:
            assert eng.n_usable < eng.min_n
            continue
        ref = analyze_drivers(rows, eng.outcome, eng.drivers, n_boot=DR.DEPARTMENT_N_BOOT,
                              seed=DR.department_seed(name), ordinal=False, min_n=eng.min_n,
                              label=f"{name}, {start} to {end}")
        _same_point_estimates(ref, eng.analysis)
        assert ref.label == eng.analysis.label and ref.attrs["n_boot"] == eng.analysis.attrs["n_boot"]
        for col in ("share_low", "share_high"):
            assert np.max(np.abs(ref.table[col] - eng.analysis.table[col])) < 0.05
        analysed += 1
    assert analysed >= 4


def test_department_analysis_reads_no_rows_and_falls_back_without_an_engine(inputs, monkeypatch):
    import helpers.drivers_report as DR

    ds, cfg = inputs.dataset, inputs.config
    cls = type(ds)

    def no_rows(self):
        raise AssertionError("the department analysis must not read the response rows")

    with monkeypatch.context() as m:
        m.setattr(cls, "responses", property(no_rows))
        aggregated = DR.department_driver_analysis(ds, cfg, "Billing", "2026-10-31", cache=False)
    assert aggregated.analysis is not None and aggregated.engine == "duckdb"
    monkeypatch.setattr(DR, "open_report_engine", lambda dataset, config=None: (None, None))
    in_memory = DR.department_driver_analysis(ds, cfg, "Billing", "2026-10-31", cache=False)
    assert in_memory.engine == "" and in_memory.n_usable == aggregated.n_usable
    pd.testing.assert_frame_equal(in_memory.analysis.table[POINT], aggregated.analysis.table[POINT],
                                  check_exact=True)


def test_department_analysis_names_missing_columns_from_the_engine(inputs):
    import helpers.drivers_report as DR

    res = DR.department_driver_analysis(inputs.dataset, inputs.config, "Billing", "2026-10-31",
                                        drivers=["attr_speed", "attr_nope"], cache=False)
    assert res.analysis is None and "Nope" in res.message and "no driver analysis" in res.message


def test_cached_once_computes_once_and_recomputes_stale_or_broken_files(tmp_path):
    from dataclasses import dataclass, field

    import helpers.drivers_report as DR

    calls = []

    @dataclass
    class Result:
        value: int
        settings: dict = field(default_factory=dict)

    DR._TestResult = Result  # picklable by reference for this test
    Result.__qualname__ = "_TestResult"
    Result.__module__ = DR.__name__
    try:
        def compute(v=1, settings=None):
            calls.append(v)
            return Result(v, settings or {"k": 1})

        file = tmp_path / "cache" / "x.pkl"
        first = DR.cached_once(file, {"k": 1}, Result, lambda: compute(1))
        again = DR.cached_once(file, {"k": 1}, Result, lambda: compute(2))
        assert first.value == again.value == 1 and calls == [1] and file.is_file()
        assert file.with_suffix(".lock").exists()
        stale = DR.cached_once(file, {"k": 2}, Result, lambda: compute(3, {"k": 2}))
        assert stale.value == 3 and calls == [1, 3]
        file.write_bytes(b"not a pickle")
        assert DR.cached_once(file, {"k": 1}, Result, lambda: compute(4)).value == 4
        assert pickle.loads(file.read_bytes()).value == 4
        assert DR.cached_once(None, {"k": 1}, Result, lambda: compute(5)).value == 5 and calls[-1] == 5
    finally:
        del DR._TestResult


def test_a_failing_engine_falls_back_to_the_rows_and_a_given_engine_stays_open(inputs):
    import helpers.drivers_report as DR
    from helpers.engine import EngineError

    ds, cfg = inputs.dataset, inputs.config

    class Broken:
        name, closed = "broken", False

        def columns(self, table):
            raise EngineError("the cluster is gone")

        def close(self):
            self.closed = True

    broken = Broken()
    res = DR.department_driver_analysis(ds, cfg, "Billing", "2026-10-31", cache=False, engine=broken)
    assert res.engine == "" and res.analysis is not None and not broken.closed
    with cfg.engine.connect(dataset=ds) as eng:
        shared = DR.department_driver_analysis(ds, cfg, "Billing", "2026-10-31", cache=False, engine=eng)
        assert shared.engine == "duckdb" and len(eng.query("SELECT 1 AS one")) == 1  # still open
    pd.testing.assert_frame_equal(res.analysis.table[POINT], shared.analysis.table[POINT], check_exact=True)
