"""The department page's team/agent funnels come from engine aggregates and equal the row-level funnels."""
from __future__ import annotations

import pandas as pd
import pytest

from helpers.objectives_report import prepare_department_report


@pytest.mark.parametrize("slug", ["delivery", "technical_support"])
def test_report_funnels_from_the_engine_equal_the_row_funnels(small_demo, slug, monkeypatch):
    report = prepare_department_report(slug, data_source=str(small_demo), as_of="2026-10-31")
    engine = report._funnel_engine()
    assert engine is not None  # the default DuckDB engine opens over the dataset
    engine.close()
    via_engine, notes_engine = report.funnels()
    assert via_engine, notes_engine  # both departments have ticket objectives with teams and agents
    monkeypatch.setattr(type(report), "_funnel_engine", lambda self: None)
    via_rows, notes_rows = report.funnels()
    assert notes_engine == notes_rows
    assert [(f["by"], f["unit"]) for f in via_engine] == [(f["by"], f["unit"]) for f in via_rows]
    for a, b in zip(via_engine, via_rows):
        pd.testing.assert_frame_equal(a["result"].table.reset_index(drop=True), b["result"].table.reset_index(drop=True),
                                      check_exact=False, rtol=1e-9, atol=1e-12)
        assert a["result"].centre == pytest.approx(b["result"].centre, rel=1e-12)


def test_report_funnels_fall_back_to_rows_when_the_engine_fails(small_demo, monkeypatch):
    import helpers.funnel as F

    report = prepare_department_report("delivery", data_source=str(small_demo), as_of="2026-10-31")
    expected, _ = report.funnels()

    def broken(*args, **kwargs):
        raise RuntimeError("engine lost")

    monkeypatch.setattr(F, "funnel_from_engine", broken)
    got, _ = report.funnels()
    assert len(got) == len(expected) and all(len(g["result"].table) == len(e["result"].table)
                                             for g, e in zip(got, expected))
