"""One definition of the NPS groups (issue 11): helpers.kpis.NPS_PROMOTER_MIN / NPS_DETRACTOR_MAX / nps_group, used
by the KPI estimators (pandas and DuckDB paths), the explorer and the voice modules alike; p-values in KPI
sentences through helpers.formatting.fmt_p_value."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from helpers import explore, kpis, voice

SCORES = [0, 5, 6, 7, 8, 9, 10, None]


def test_the_groups_are_reichheld_s_and_shared():
    assert (kpis.NPS_PROMOTER_MIN, kpis.NPS_DETRACTOR_MAX) == (9, 6)
    expected = ["detractor", "detractor", "detractor", "passive", "passive", "promoter", "promoter", None]
    assert list(kpis.nps_group(pd.Series(SCORES, dtype=float)).astype(object).where(lambda s: s.notna(), None)) \
        == expected
    assert voice.nps_group(SCORES).tolist() == expected
    assert explore.nps_group is kpis.nps_group
    est = kpis.nps(pd.Series(SCORES[:-1]))  # 2 promoters, 3 detractors of 7
    assert est.value == 100 * (2 - 3) / 7


def test_duckdb_and_pandas_paths_count_the_same_groups():
    con = duckdb.connect()
    frame = pd.DataFrame({"response_id": [f"R{i}" for i in range(11)], "department": "A",
                          "response_date": pd.Timestamp("2026-01-05"), "nps": np.arange(11)})
    con.register("responses", frame)
    series = kpis.kpi_series(con, "nps", freq="month")
    assert series["value"].iloc[0] == kpis.nps(frame["nps"]).value == 100 * (2 - 7) / 11


def test_comparison_sentences_format_p_values_once():
    big = kpis.compare_proportions(10, 100, 60, 100, metric="csat")
    assert "p < 0.001" in big.describe()
    small = kpis.compare_proportions(50, 100, 52, 100, metric="csat")
    assert f"p = {small.p_value:.3f}" in small.describe()
