"""KPI comparisons from engine aggregates equal the row path (issue 14, "aggregates, not rows").

``helpers.kpis.compare_kpi(..., engine=)`` and ``helpers.engine.aggregates.compare_from_aggregates`` compare every
KPI of responses and tickets, retention and churn from counts, sums and sums of squares computed by the engine; the
row path (``compare_kpi`` without an engine) is the reference. Medians: the row path's bootstrap on at most
``max_sample`` values per period (all of them: identical numbers; a seeded hash sample above: the interval within
Monte-Carlo error of the rows' and covering a known difference on synthetic data). Impossible values raise the
messages of the paths the engine replaces. The Spark engine: tests/test_compare_engine_spark.py.
"""
from __future__ import annotations


import duckdb
import numpy as np
import pandas as pd
import pytest

from helpers import kpis as K
from helpers.data import load_dataset
from helpers.engine import DuckDBEngine
from helpers.engine import aggregates as A

PERIODS = (("2025-01-01", "2025-03-31"), ("2025-04-01", "2025-05-31"))  # different lengths: counts per day
METRICS = ["csat", "nps", "ces", "response_count", "fcr", "reopen_rate", "ticket_volume", "first_response_hours",
           "resolution_hours", "first_response_hours_mean", "resolution_hours_mean", "retention_rate", "churn_rate"]


@pytest.fixture(scope="module")
def ds(demo_dir):
    d = load_dataset(demo_dir, emit_warnings=False)
    yield d
    d.close()


@pytest.fixture(scope="module")
def eng(ds):
    with DuckDBEngine(ds.con) as e:
        yield e


def assert_same_comparison(got: K.Comparison, ref: K.Comparison, tol: float = 1e-9) -> None:
    assert (got.method, got.labels, got.between_groups, got.sample) == (ref.method, ref.labels, ref.between_groups,
                                                                        ref.sample)
    for f in ("difference", "ci_low", "ci_high", "p_value"):
        assert getattr(got, f) == pytest.approx(getattr(ref, f), rel=tol, abs=tol), f
    for side in ("a", "b"):
        e, r = getattr(got, side), getattr(ref, side)
        assert (e.n, e.unit, e.method, e.metric) == (r.n, r.unit, r.method, r.metric), side
        assert (e.value, e.ci_low, e.ci_high) == pytest.approx((r.value, r.ci_low, r.ci_high), rel=tol, abs=tol)
    assert got.describe() == ref.describe()


def _filters(ds, metric: str) -> dict:
    """A department and a customer column (segment, joined in the engine; given in another case)."""
    seg = {"segment": "Consumer"}
    if K.KPIS[metric].table == "customers":
        return seg
    return {"department": "customer service", **seg}


@pytest.mark.parametrize("metric", METRICS)
def test_engine_comparison_equals_the_rows(ds, eng, metric):
    """Every kind (NPS adjusted Wald, Newcombe, Welch from sums, Poisson per day, retention counts, bootstrap
    of medians on all the values of each period) with a joined segment filter: the row path's numbers."""
    f = _filters(ds, metric)
    ref = K.compare_kpi(metric, ds, filters=f, period_a=PERIODS[0], period_b=PERIODS[1])
    got = K.compare_kpi(metric, ds, filters=f, period_a=PERIODS[0], period_b=PERIODS[1], engine=eng)
    assert got.a.n > 0 and got.b.n > 0
    exact = K.KPIS[metric].kind not in ("mean", "mean_hours")  # means from sums of doubles: to rounding
    assert_same_comparison(got, ref, tol=0 if exact else 1e-9)


@pytest.mark.parametrize("metric", ["nps", "resolution_hours", "fcr"])
def test_two_selections_in_one_period_equal_the_rows(ds, eng, metric):
    kw = dict(filters={"department": "Technical Support"}, filters_a={"channel": "email"},
              filters_b={"channel": "phone"}, period_a=("2025-01-01", "2025-12-31"))
    ref = K.compare_kpi(metric, ds, **kw)
    got = K.compare_kpi(metric, ds, **kw, engine=eng)
    assert got.between_groups and got.labels == ("email", "phone")
    assert_same_comparison(got, ref, tol=0)


def test_the_engine_path_builds_no_frame(ds, eng, monkeypatch):
    """No table reaches pandas: the Dataset's frames refuse to be built."""
    from helpers.data import Dataset

    def refuse(*_a, **_k):
        raise AssertionError("a frame was built")

    monkeypatch.setattr(Dataset, "frame", refuse)
    fresh = load_dataset(ds.source, validate=False, emit_warnings=False)
    try:
        with DuckDBEngine(fresh.con) as e:
            for metric in METRICS:
                c = K.compare_kpi(metric, fresh, filters=_filters(fresh, metric), period_a=PERIODS[0],
                                  period_b=PERIODS[1], engine=e)
                assert np.isfinite(c.difference)
    finally:
        fresh.close()


# ---------------------------------------------------------------------------------------------- medians sampled
def test_sample_is_exact_below_the_cap_and_seeded_above(eng):
    f = {"department": ["Technical Support"]}
    x, n = A.median_sample(eng, "resolution_hours", f, *PERIODS[0], max_rows=10_000)
    assert len(x) == n > 200
    y, m = A.median_sample(eng, "resolution_hours", f, *PERIODS[0], max_rows=200, seed=3)
    assert (len(y), m) == (200, n)
    assert set(y) <= set(x)
    again, _ = A.median_sample(eng, "resolution_hours", f, *PERIODS[0], max_rows=200, seed=3)
    other, _ = A.median_sample(eng, "resolution_hours", f, *PERIODS[0], max_rows=200, seed=4)
    np.testing.assert_array_equal(y, again)
    assert not np.array_equal(np.sort(y), np.sort(other))


def test_sampled_median_comparison_agrees_with_the_rows_within_monte_carlo_error(ds, eng):
    """With at most 400 of the ~900 and ~2,000 values of two years: the medians and their intervals are exact
    (engine order statistics), the sample is stated, and the rescaled bootstrap interval of the difference
    matches the row bootstrap's (all values) within Monte-Carlo error: each bound within a third of the
    interval's width, averaged over eight sample seeds within a sixth."""
    f = {"department": "Technical Support"}
    years = (("2024-01-01", "2024-12-31"), ("2025-01-01", "2025-12-31"))
    ref = K.compare_kpi("resolution_hours", ds, filters=f, period_a=years[0], period_b=years[1])
    assert min(ref.a.n, ref.b.n) > 800
    width = ref.ci_high - ref.ci_low
    bounds = []
    for seed in range(8):
        got = A.compare_from_aggregates(eng, "resolution_hours", f, *years, max_sample=400, seed=seed)
        (sa, na), (sb, nb) = got.sample["a"], got.sample["b"]
        assert (sa, sb, na, nb) == (400, 400, ref.a.n, ref.b.n)
        assert f"400 of {na:,} and 400 of {nb:,} tickets" in got.method
        for side in ("a", "b"):
            e, r = getattr(got, side), getattr(ref, side)
            assert (e.value, e.ci_low, e.ci_high, e.n) == (r.value, r.ci_low, r.ci_high, r.n)
        assert got.difference == ref.difference
        assert got.ci_low <= got.difference <= got.ci_high
        assert abs(got.ci_low - ref.ci_low) < width / 3 and abs(got.ci_high - ref.ci_high) < width / 3
        bounds.append((got.ci_low, got.ci_high))
    lo, hi = np.mean(bounds, axis=0)
    assert abs(lo - ref.ci_low) < width / 6 and abs(hi - ref.ci_high) < width / 6


def _synthetic_tickets(rng, n: int, medians: tuple[float, float], sigma: float = 1.0) -> pd.DataFrame:
    """Two months of tickets whose resolution hours are log-normal with the given medians (exp(mu))."""
    parts = []
    for month, median in zip(("2025-01-01", "2025-02-01"), medians):
        created = pd.Timestamp(month) + pd.to_timedelta(rng.integers(0, 27 * 86400, n), unit="s")
        hours = np.exp(np.log(median) + sigma * rng.standard_normal(n))
        parts.append(pd.DataFrame({"created_at": created,
                                   "resolved_at": created + pd.to_timedelta(np.round(hours * 3.6e6), unit="ms")}))
    df = pd.concat(parts, ignore_index=True)
    df.insert(0, "ticket_id", [f"T{i:07d}" for i in rng.permutation(len(df))])
    return df


def test_sampled_interval_covers_a_known_difference_with_the_full_data_width():
    """Synthetic log-normal durations, medians 10 h then 12 h (difference 2 h), 5,000 tickets a month, samples of
    1,000: over 40 data sets the 95% interval covers 2 h at least 85% of the time (binomial sd 3.4%), and its
    mean width is the full data's asymptotic width (``2 z sqrt(se_a^2 + se_b^2)``, ``se = m sigma
    sqrt(pi / 2) / sqrt(n)`` for the log-normal median) within 15%, not the sample's (sqrt(5) times wider)."""
    rng = np.random.default_rng(20240611)
    n, medians = 5000, (10.0, 12.0)
    se = [m * np.sqrt(np.pi / 2) / np.sqrt(n) for m in medians]
    full_width = 2 * 1.959964 * np.hypot(*se)
    covered, widths = 0, []
    with DuckDBEngine() as e:
        for rep in range(40):
            e.register("tickets", _synthetic_tickets(rng, n, medians))
            c = A.compare_from_aggregates(e, "resolution_hours", None, ("2025-01-01", "2025-01-31"),
                                          ("2025-02-01", "2025-02-28"), max_sample=1000, seed=rep, n_boot=1000)
            assert c.sample == {"a": (1000, n), "b": (1000, n)}
            covered += c.ci_low <= medians[1] - medians[0] <= c.ci_high
            widths.append(c.ci_high - c.ci_low)
    assert covered >= 34
    assert np.mean(widths) == pytest.approx(full_width, rel=0.15)


# ---------------------------------------------------------------------------------------------- range checks
BAD = {  # metric -> (table, SQL that plants impossible values in Technical Support's first quarter 2025)
    "nps": ("responses", "UPDATE responses SET nps = 11 WHERE response_id IN (SELECT response_id FROM responses "
                         "WHERE department = 'Technical Support' AND nps IS NOT NULL AND response_date BETWEEN "
                         "DATE '2025-01-01' AND DATE '2025-03-31' ORDER BY response_id LIMIT 2)"),
    "csat": ("responses", "UPDATE responses SET csat = 6 WHERE response_id IN (SELECT response_id FROM responses "
                          "WHERE department = 'Technical Support' AND csat IS NOT NULL AND response_date BETWEEN "
                          "DATE '2025-01-01' AND DATE '2025-03-31' ORDER BY response_id LIMIT 3)"),
    "ces": ("responses", "UPDATE responses SET ces = 0 WHERE response_id IN (SELECT response_id FROM responses "
                         "WHERE department = 'Technical Support' AND ces IS NOT NULL AND response_date BETWEEN "
                         "DATE '2025-01-01' AND DATE '2025-03-31' ORDER BY response_id LIMIT 1)"),
    "fcr": ("tickets", "UPDATE tickets SET contacts_to_resolve = 0 WHERE ticket_id IN (SELECT ticket_id FROM "
                       "tickets WHERE department = 'Technical Support' AND contacts_to_resolve IS NOT NULL AND "
                       "created_at BETWEEN DATE '2025-01-01' AND DATE '2025-03-31' ORDER BY ticket_id LIMIT 2)"),
    "resolution_hours": ("tickets", "UPDATE tickets SET resolved_at = created_at - INTERVAL 90 MINUTE WHERE "
                                    "ticket_id IN (SELECT ticket_id FROM tickets WHERE department = 'Technical "
                                    "Support' AND resolved_at IS NOT NULL AND created_at BETWEEN DATE '2025-01-01' "
                                    "AND DATE '2025-03-31' ORDER BY ticket_id LIMIT 2)"),
}
BAD["resolution_hours_mean"] = BAD["resolution_hours"]


@pytest.fixture()
def bad_con(demo_dir):
    con = duckdb.connect()
    for t in ("responses", "tickets", "customers"):
        con.execute(f"CREATE TABLE {t} AS SELECT * FROM read_parquet('{demo_dir / (t + '.parquet')}')")
    yield con
    con.close()


@pytest.mark.parametrize("metric", sorted(BAD))
def test_impossible_values_raise_the_messages_of_the_paths_the_engine_replaces(bad_con, metric):
    """Regression (issue 14): the engine's series and comparisons computed KPIs over impossible values (a CSAT
    of 6, a negative resolution time) that ``kpi_series`` and the row comparisons refuse. Now the same
    KPIError, counted in SQL: kpi_series' message for series, the rows' for comparisons."""
    table, plant = BAD[metric]
    bad_con.execute(plant)
    f = {"department": "Technical Support"}
    period = ("2025-01-01", "2025-03-31")
    with pytest.raises(K.KPIError) as want:
        K.kpi_series(bad_con, metric, freq="quarter", filters=f, start=period[0], end=period[1])
    eng = DuckDBEngine(bad_con)
    with pytest.raises(K.KPIError) as got:
        A.kpi_series_from_aggregates(eng, metric, freq="quarter", filters=f, start=period[0], end=period[1],
                                     resolve=True)
    assert str(got.value) == str(want.value)
    assert "outside the scale" in str(got.value)

    rows = {t: bad_con.execute(f"SELECT * FROM {t}").df() for t in ("responses", "tickets", "customers")}
    later = ("2025-04-01", "2025-06-30")
    with pytest.raises(K.KPIError) as want:
        K.compare_kpi(metric, rows, filters=f, period_a=period, period_b=later)
    with pytest.raises(K.KPIError) as got:
        K.compare_kpi(metric, rows, filters=f, period_a=period, period_b=later, engine=eng)
    assert str(got.value) == str(want.value)
    # outside the selection the bad values do not count (as on the rows)
    assert K.compare_kpi(metric, rows, filters=f, period_a=later, period_b=("2025-07-01", "2025-09-30"),
                         engine=eng).a.n > 0


# ---------------------------------------------------------------------------------------------- callers
def test_department_evaluation_reads_no_rows_and_keeps_its_changes(ds):
    """The department page's evaluation (its lean department slice) compares periods on the engine: no ticket
    or survey frame is built, and every change (median hours included) equals the row path's."""
    from helpers.objectives import evaluate_objectives, load_department
    from helpers.objectives_report import DepartmentData

    for slug in ("customer_service", "technical_support"):
        plan = load_department(slug)
        old = evaluate_objectives(plan, DepartmentData(ds, plan.department).for_kpis(), engine=False,
                                  min_responses=30)
        view = DepartmentData(ds, plan.department).for_kpis()
        new = evaluate_objectives(plan, view, min_responses=30)
        assert view._frames == {}
        medians = [o.id for o in plan.objectives if K.KPIS[o.metric].kind == "median_hours"]
        assert medians and any(old.changes[i] is not None for i in medians)
        for oid, ca in old.changes.items():
            cb = new.changes[oid]
            assert (ca is None) == (cb is None), oid
            if ca is not None:
                assert_same_comparison(cb, ca, tol=1e-9)
        pd.testing.assert_frame_equal(old.table, new.table, check_exact=False, rtol=0, atol=1e-9)


def test_company_kpis_come_from_the_engine_with_the_rows_numbers(demo_dir, monkeypatch):
    from helpers import engine as engine_module
    from helpers.data import Dataset
    from helpers.reports.changes import company_kpis

    as_of = "2026-06-30"
    with monkeypatch.context() as m:  # the row path: no engine opens
        m.setattr(engine_module, "open_report_engine", lambda *_a, **_k: (None, "no engine"))
        ref = company_kpis(demo_dir, as_of)

    def refuse(*_a, **_k):
        raise AssertionError("a frame was built")

    monkeypatch.setattr(Dataset, "frame", refuse)
    got = company_kpis(demo_dir, as_of)
    assert [e["kpi"] for e in got] == [e["kpi"] for e in ref] == ["csat", "nps", "fcr"]
    assert got == ref


def test_a_sampled_median_change_says_its_sample_on_the_tile(ds, monkeypatch):
    """Above the cap (here 60 values per period) the department page's median change is tested on seeded samples,
    and its tile says how large (the demo's periods are far below the real cap of 20,000: nothing sampled)."""
    from helpers.kpi_tiles import tiles_from_evaluation
    from helpers.objectives import evaluate_objectives, load_department

    plan = load_department("customer_service")
    full = evaluate_objectives(plan, ds, min_responses=30)
    assert all(not c.sample for c in full.changes.values() if c is not None)
    assert all("seeded samples" not in t.change_note for t in tiles_from_evaluation(full))
    monkeypatch.setattr(A, "MEDIAN_SAMPLE_ROWS", 60)
    small = evaluate_objectives(plan, ds, min_responses=30)
    sampled = {oid: c for oid, c in small.changes.items() if c is not None and c.sample}
    assert "cs-resolution-retention-desk" in sampled
    c = sampled["cs-resolution-retention-desk"]
    ref = full.changes["cs-resolution-retention-desk"]
    assert (c.a.value, c.b.value, c.difference) == (ref.a.value, ref.b.value, ref.difference)
    tile = next(t for t in tiles_from_evaluation(small) if t.objective_id == "cs-resolution-retention-desk")
    (ma, na), (mb, nb) = c.sample["a"], c.sample["b"]
    assert f"tested on seeded samples of {ma} of {na:,} and {mb} of {nb:,}" in tile.change_note
