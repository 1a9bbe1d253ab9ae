"""The department page's KPI numbers from engine aggregates equal the row-level/kpis path (issue 14).

``evaluate_objectives`` aggregates the KPIs of responses and tickets through an engine (DuckDB over the dataset's
connection by default; ``engine=False`` keeps the ``helpers.kpis`` path, the reference here). On the seeded test
demo every department's evaluation table, KPI series, period-over-period comparisons and KPI tiles are the same
numbers and texts on both paths. The Spark engine is checked against DuckDB in tests/test_engine_spark.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import kpis
from helpers.data import load_dataset
from helpers.engine import DuckDBEngine, EngineSettings
from helpers.engine import aggregates as A
from helpers.kpi_tiles import tiles_from_evaluation
from helpers.objectives import KpiSource, evaluate_objectives, load_department, parse_objectives

DEPARTMENT_FILES = sorted(p.stem for p in Path("params/departments").glob("*.yaml"))


@pytest.fixture(scope="module")
def ds(demo_dir):
    return load_dataset(demo_dir, emit_warnings=False)


def assert_same_evaluation(old, new, what: str = "") -> None:
    """Statuses, texts and counts identical; float columns within 1e-9 (sums of doubles may be added in another
    order by another engine); series, comparisons and tiles likewise."""
    pd.testing.assert_frame_equal(old.table.reset_index(drop=True), new.table.reset_index(drop=True),
                                  check_exact=False, rtol=0, atol=1e-9, obj=f"{what} table")
    assert old.warnings == new.warnings
    assert set(old.series) == set(new.series)
    for oid, s in old.series.items():
        pd.testing.assert_frame_equal(s.reset_index(drop=True), new.series[oid].reset_index(drop=True),
                                      check_exact=False, rtol=0, atol=1e-9, obj=f"{what} series {oid}")
    assert set(old.changes) == set(new.changes)
    for oid, ca in old.changes.items():
        cb = new.changes[oid]
        assert (ca is None) == (cb is None), oid
        if ca is None:
            continue
        assert (ca.method, ca.labels, ca.a.n, ca.b.n) == (cb.method, cb.labels, cb.a.n, cb.b.n), oid
        for f in ("difference", "ci_low", "ci_high", "p_value"):
            assert getattr(ca, f) == pytest.approx(getattr(cb, f), rel=0, abs=1e-9), (oid, f)
        assert ca.describe() == cb.describe(), oid
    ta = [t.to_summary() for t in tiles_from_evaluation(old)]
    tb = [t.to_summary() for t in tiles_from_evaluation(new)]
    assert len(ta) == len(tb)
    for x, y in zip(ta, tb):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], float):
                assert x[key] == pytest.approx(y[key], rel=0, abs=1e-9), key
            else:
                assert x[key] == y[key], key


@pytest.mark.parametrize("slug", DEPARTMENT_FILES)
def test_every_department_evaluates_alike_on_the_engine(ds, slug):
    plan = load_department(slug)
    old = evaluate_objectives(plan, ds, engine=False, min_responses=30)
    new = evaluate_objectives(plan, ds, min_responses=30)
    assert len(new.table) == len(plan.objectives)
    assert_same_evaluation(old, new, slug)


def test_department_slice_and_engine_settings_give_the_same_page(ds):
    """As the department report calls it (its lean department slice), with the report config's engine settings
    (opened over the dataset and closed after) and with an engine given: the same evaluation."""
    from helpers.objectives_report import DepartmentData

    plan = load_department("customer_service")
    reference = DepartmentData(ds, plan.department).for_kpis()
    old = evaluate_objectives(plan, reference, engine=False, min_responses=30)
    assert "responses" in reference._frames  # the reference path compares periods on rows
    view = DepartmentData(ds, plan.department).for_kpis()
    assert_same_evaluation(old, evaluate_objectives(plan, view, min_responses=30), "default")
    assert_same_evaluation(old, evaluate_objectives(plan, view, min_responses=30, engine=EngineSettings()), "settings")
    with DuckDBEngine(ds.con) as eng:
        assert_same_evaluation(old, evaluate_objectives(plan, view, min_responses=30, engine=eng), "engine")
    # no survey rows reach pandas; tickets only for the bootstrap comparison of median hours (rows by design)
    assert "responses" not in view._frames


def test_the_engine_path_reads_no_rows(ds, monkeypatch):
    """The KPI source's series, windows and comparisons never ask the dataset for frames."""
    from helpers.objectives_report import DepartmentData

    plan = load_department("billing")
    view = DepartmentData(ds, plan.department).for_kpis()

    def refuse(*_a, **_k):
        raise AssertionError("rows were read")

    monkeypatch.setattr(DepartmentData, "_department_frame", refuse)
    src = KpiSource(view, plan.department, engine=DuckDBEngine(ds.con))
    for metric in ("nps", "csat", "fcr", "ces", "reopen_rate", "ticket_volume", "resolution_hours_mean"):
        s = src.series(metric, {}, None, None)
        assert len(s) and np.isfinite(s["value"]).all()
        comp = src.compare(metric, {}, ("2025-01-01", "2025-01-31"), ("2025-02-01", "2025-02-28"))
        assert comp.a.n > 0


PERIODS = (("2025-01-01", "2025-03-31"), ("2025-04-01", "2025-05-31"))  # different lengths: counts per day


@pytest.mark.parametrize("metric", ["nps", "csat", "ces", "fcr", "reopen_rate", "ticket_volume",
                                    "resolution_hours_mean", "first_response_hours_mean", "response_count"])
def test_period_comparison_from_aggregates_equals_compare_kpi(ds, metric):
    """Every comparison kind from aggregates (NPS adjusted Wald, Newcombe, Welch from sums and sums of squares,
    Poisson per day), including a customer-column filter (segment, joined) and a value given in another case."""
    filters = {"department": "billing", "segment": ds.customers["segment"].dropna().iloc[0].upper()}
    ref = kpis.compare_kpi(metric, ds, filters=filters, period_a=PERIODS[0], period_b=PERIODS[1])
    with DuckDBEngine(ds.con) as eng:
        got = A.compare_from_aggregates(eng, metric, filters, *PERIODS)
    assert (got.method, got.a.n, got.b.n, got.a.unit, got.b.unit) == (ref.method, ref.a.n, ref.b.n, ref.a.unit,
                                                                      ref.b.unit)
    for f in ("difference", "ci_low", "ci_high", "p_value"):
        assert getattr(got, f) == pytest.approx(getattr(ref, f), rel=1e-9, abs=1e-9), f
    for side in ("a", "b"):
        e, r = getattr(got, side), getattr(ref, side)
        assert (e.value, e.ci_low, e.ci_high) == pytest.approx((r.value, r.ci_low, r.ci_high), rel=1e-9, abs=1e-9)


def test_resolved_series_equals_kpi_series_with_customer_filters(ds):
    seg = ds.customers["segment"].dropna().iloc[0]
    with DuckDBEngine(ds.con) as eng:
        for metric in ("csat", "fcr", "first_response_hours"):
            f = {"department": "Billing", "segment": seg.lower()}
            ref = kpis.kpi_series(ds.con, metric, freq="quarter", filters=f)
            got = A.kpi_series_from_aggregates(eng, metric, freq="quarter", filters=f, resolve=True)
            pd.testing.assert_frame_equal(got.reset_index(drop=True), ref.reset_index(drop=True),
                                          check_dtype=False, check_exact=True)


def test_a_filter_that_matches_nothing_gets_the_same_message(ds):
    doc = {"department": "Billing", "objectives": [
        {"id": "x", "title": "FCR for a team that does not exist", "metric": "fcr", "target": 80,
         "baseline": {"start": "2025-01-01", "end": "2025-12-31"}, "start": "2026-01-01",
         "deadline": "2026-12-31", "filters": {"team": "Nope"}, "owner": {"person": "billing-dir", "role": "director"}}]}
    plan = parse_objectives(doc, "billing.yaml")
    old = evaluate_objectives(plan, ds, engine=False)
    new = evaluate_objectives(plan, ds)
    assert new.table["status"].iloc[0] == "no data"
    assert "matches no rows" in new.table["message"].iloc[0]
    assert list(old.table["message"]) == list(new.table["message"])


def test_an_unreachable_engine_is_named_once_and_duckdb_computes_the_page(ds, monkeypatch):
    from helpers.engine import EngineError

    def unreachable(self, tables=None, dataset=None):
        raise EngineError("spark engine: no Java runtime")

    monkeypatch.setattr(EngineSettings, "connect", unreachable)
    plan = load_department("billing")
    got = evaluate_objectives(plan, ds, min_responses=30, engine=EngineSettings(kind="spark"))
    notes = [w for w in got.warnings if "not available" in w]
    assert notes == ["The spark engine is not available (spark engine: no Java runtime); the KPIs were computed "
                     "with DuckDB."]
    want = evaluate_objectives(plan, ds, min_responses=30, engine=False)
    pd.testing.assert_frame_equal(got.table, want.table, check_exact=False, rtol=0, atol=1e-9)
