"""The retention page from engine aggregates (issue 14): the curves, the log-rank test, the sBG fits and their
holdout check, the monthly retention rates and the Cox model come from the engine of ``report.yaml`` (DuckDB by default, Spark on request)
and every number the page shows equals the in-memory path; above ``COX_SAMPLE_SIZE`` customers the Cox model is
fitted on a seeded sample that the page states, and that fit agrees with the full fit within its intervals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import retention_report as RR

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "params" / "report.yaml"
N_BOOT = 40

pytestmark = [pytest.mark.slow]

PAGE_TABLES = ("survival_table_html", "hazard_table_html", "projection_table_html", "segments_table_html",
               "value_table_html", "sbg_parameters_table_html", "model_comparison_table_html")


def _in_memory(monkeypatch, **kwargs) -> RR.RetentionReport:
    with monkeypatch.context() as m:
        m.setattr(RR, "open_report_engine", lambda *a, **k: (None, None))
        return RR.prepare_retention_report(n_boot=N_BOOT, **kwargs)


def _page(report: RR.RetentionReport) -> dict:
    """What a reader sees: headline, findings, every table, the notes."""
    return {"headline": report.headline(), "headline_md": report.headline_markdown(), "findings": report.findings(),
            "warnings": list(report.warnings), **{t: getattr(report, t)() for t in PAGE_TABLES}}


def _assert_same_numbers(a: RR.RetentionReport, b: RR.RetentionReport) -> None:
    pd.testing.assert_frame_equal(a.survival.table, b.survival.table, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(a.survival.medians, b.survival.medians, check_exact=False, rtol=1e-12)
    assert a.survival.log_rank.statistic == pytest.approx(b.survival.log_rank.statistic, rel=1e-12)
    pd.testing.assert_frame_equal(a.hazards.table, b.hazards.table, check_exact=False, rtol=1e-9)
    assert a.sbg.keys() == b.sbg.keys()
    for k in a.sbg:
        assert (a.sbg[k].alpha, a.sbg[k].beta) == pytest.approx((b.sbg[k].alpha, b.sbg[k].beta), rel=1e-12)
        np.testing.assert_allclose(a.sbg[k].boot, b.sbg[k].boot, rtol=1e-9)
    pd.testing.assert_frame_equal(a.sbg_groups.table, b.sbg_groups.table, check_exact=False, rtol=1e-9)
    assert (a.sbg_check is None) == (b.sbg_check is None)
    if a.sbg_check is not None:
        pd.testing.assert_frame_equal(a.sbg_check.table, b.sbg_check.table, check_exact=False, rtol=1e-9)
    assert (a.rates is None) == (b.rates is None)
    if a.rates is not None:
        pd.testing.assert_frame_equal(a.rates.table, b.rates.table, check_exact=False, rtol=1e-12)
        assert a.rates.summary() == b.rates.summary()
    assert _page(a) == _page(b)


@pytest.mark.parametrize("segment", ["all", "enterprise"])
def test_engine_page_equals_in_memory_page(small_demo, monkeypatch, segment):
    engine = RR.prepare_retention_report(segment=segment, n_boot=N_BOOT, data_source=str(small_demo))
    assert engine.engine_name == "duckdb" and engine.rates is not None
    assert (engine.sbg_check is not None) == (segment == "all")  # enterprise's first cohorts are too small
    assert engine.cox_population == engine.cox_sample_size  # everyone: no sample stated
    assert segment != "all" or engine.cox_population == engine.n_customers
    assert engine.cox_sample_text() == ""
    rows = _in_memory(monkeypatch, segment=segment, data_source=str(small_demo))
    assert rows.engine_name == ""
    _assert_same_numbers(engine, rows)


def test_engine_page_with_an_as_of_inside_the_data(small_demo, monkeypatch):
    """Later signups left out and later churn censored by the engine queries as by the data layer."""
    engine = RR.prepare_retention_report(n_boot=N_BOOT, data_source=str(small_demo), as_of="2024-06-30")
    rows = _in_memory(monkeypatch, data_source=str(small_demo), as_of="2024-06-30")
    assert engine.engine_name == "duckdb" and engine.survival is not None
    _assert_same_numbers(engine, rows)


def test_cox_sample_is_stated_and_agrees_with_the_full_fit(small_demo, monkeypatch):
    full = RR.prepare_retention_report(n_boot=N_BOOT, data_source=str(small_demo))
    monkeypatch.setattr(RR, "COX_SAMPLE_SIZE", 900)
    sampled = RR.prepare_retention_report(n_boot=N_BOOT, data_source=str(small_demo))
    n = full.n_customers
    assert (sampled.cox_sample_size, sampled.cox_population) == (900, n)
    statement = f"sample of 900 of the {n:,} customers"
    assert statement in sampled.cox_sample_text() and statement in sampled.hazard_table_html()
    assert statement not in full.hazard_table_html()
    for cov in full.hazards.table.index:  # the full estimate lies within the sample's 95% interval
        row = sampled.hazards.table.loc[cov]
        assert row["ci_low"] <= full.hazards.table.loc[cov, "hazard_ratio"] <= row["ci_high"], cov
    # the other sections do not depend on the Cox sample
    assert full.survival_table_html() == sampled.survival_table_html()


def test_spark_engine_gives_the_duckdb_page(small_demo, tmp_path):
    """``engine: {kind: spark}`` in a copy of report.yaml: the page's numbers equal the DuckDB run (one local[1]
    Spark session)."""
    from helpers.engine.spark_engine import spark_unavailable_reason

    reason = spark_unavailable_reason()
    if reason:
        pytest.skip(reason)
    cfg = yaml.safe_load(CONFIG.read_text()) or {}
    cfg["engine"] = {"kind": "spark", "spark": {"master": "local[1]", "conf": {"spark.sql.shuffle.partitions": 2}}}
    spark_yaml = tmp_path / "report.yaml"
    spark_yaml.write_text(yaml.safe_dump(cfg))
    spark = RR.prepare_retention_report(n_boot=N_BOOT, data_source=str(small_demo), report_config=str(spark_yaml))
    assert spark.engine_name == "spark", spark.warnings
    duck = RR.prepare_retention_report(n_boot=N_BOOT, data_source=str(small_demo))
    assert duck.engine_name == "duckdb"
    _assert_same_numbers(spark, duck)


def test_unreachable_engine_is_named_and_the_page_computed_in_memory(small_demo, tmp_path, monkeypatch):
    """An engine whose tables cannot be read: one note naming the engine and the table, the in-memory numbers."""
    cfg = yaml.safe_load(CONFIG.read_text()) or {}
    cfg["engine"] = {"tables": {"customers": str(tmp_path / "gone" / "customers.parquet")}}
    broken = tmp_path / "report.yaml"
    broken.write_text(yaml.safe_dump(cfg))
    page = RR.prepare_retention_report(n_boot=N_BOOT, data_source=str(small_demo), report_config=str(broken))
    assert page.engine_name == ""
    notes = [w for w in page.warnings if "engine could not be opened" in w]
    assert len(notes) == 1 and "customers" in notes[0] and "computed in memory" in notes[0]
    rows = _in_memory(monkeypatch, data_source=str(small_demo))
    assert page.findings() == rows.findings() and page.hazard_table_html() == rows.hazard_table_html()


def test_tenure_layout_keeps_the_in_memory_path():
    """The engine's survival queries assume signup_date/end_date: other retention layouts are not sent to it."""
    from helpers.config import RetentionConfig

    assert RR._uses_contract_dates(RetentionConfig())
    assert not RR._uses_contract_dates(RetentionConfig(duration_column="tenure", event_column="Churn",
                                                       start_column=None, end_column=None))
    assert not RR._uses_contract_dates(RetentionConfig(start_column="joined"))
