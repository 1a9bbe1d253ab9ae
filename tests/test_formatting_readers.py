"""Reader-facing formatting: numbers, intervals, p-values, labels, slugs and tables (helpers.formatting)."""
import math

import numpy as np
import pandas as pd
import pytest

from helpers.formatting import (column_label, fmt_currency, fmt_interval, fmt_number, fmt_p_value, fmt_percent,
                                interval_decimals, reader_table, slug)


def test_numbers_have_separators_and_never_nan():
    assert fmt_number(1234567.4) == "1,234,567"
    assert fmt_number(2.345, 1) == "2.3"
    assert fmt_number(-0.004, 2) == "0.00"  # no "-0.00"
    assert fmt_number(3, signed=True) == "+3"
    for missing in (None, float("nan"), math.inf, "x"):
        assert fmt_number(missing) == "n/a"


def test_percent_and_currency():
    assert fmt_percent(0.8125, 1) == "81.2%"
    assert fmt_percent(81.25, 0, share=False) == "81%"
    assert fmt_currency(68116.62, "EUR") == "€68,117"
    assert fmt_currency(-56.4, "usd") == "-$56"
    assert fmt_currency(1234, "SEK") == "1,234 SEK"
    assert fmt_currency(float("nan"), "EUR") == "n/a"


def test_interval_ends_never_print_alike_and_are_ordered():
    assert fmt_interval(7.62, 8.08) == "7.6 to 8.1"
    assert fmt_interval(7.96, 8.04) == "7.96 to 8.04"  # not "8 to 8"
    assert fmt_interval(-0.58, -0.60, percent=True) == "-60% to -58%"
    assert fmt_interval(12, float("nan"), upper_na="not reached") == "12 to not reached"
    assert fmt_interval(1.0, 2.0, 1, unit="hours") == "1.0 to 2.0 hours"
    assert interval_decimals(1.0, 1.0, most=2) == 2


def test_p_values():
    assert fmt_p_value(0.0004) == "<0.001"
    assert fmt_p_value(0.0312, prefix=True) == "p = 0.031"
    assert fmt_p_value(None) == "n/a"


@pytest.mark.parametrize("name, label", [("attr_speed", "Speed"), ("first_response_at", "First response"),
                                         ("segment_small_business", "Segment: small business"),
                                         ("mean_csat", "Mean CSAT"), ("ci_low", "95% CI low"),
                                         ("survival_12_low", "Survival 12 low"), ("Status", "Status"),
                                         ("95% CI", "95% CI"), ("p-value", "p-value"),
                                         ("Mean rating (1-5)", "Mean rating (1-5)"), ("region", "Region")])
def test_column_labels(name, label):
    assert column_label(name) == label


def test_slug_is_path_safe():
    assert slug("Kundendienst Süd") == "kundendienst_sud"
    assert slug("../../etc/passwd") == "etc_passwd"
    assert slug("Technical Support") == "technical_support"
    assert slug("../") == ""


def test_reader_table_has_no_index_nan_or_raw_names_and_escapes():
    frame = pd.DataFrame({"attr_speed": [0.1234, np.nan], "n_responses": [13091, 20],
                          "segment": ["<b>SMB</b>", None]}, index=[5, 9])
    html = reader_table(frame, formats={"attr_speed": "percent:1"})
    assert "NaN" not in html and "None" not in html and "attr_speed" not in html
    assert "12.3%" in html and "13,091" in html and "n/a" in html
    assert "&lt;b&gt;SMB&lt;/b&gt;" in html and "<b>" not in html
    assert ">5<" not in html and ">9<" not in html  # no index
    more = reader_table(pd.DataFrame({"x": range(30)}), max_rows=10)
    assert more.count("<tr>") == 11 and "first 10 of 30" in more


def test_chances_never_read_impossible_or_certain():
    from helpers.formatting import fmt_chance
    assert fmt_chance(0.001) == "<1%" and fmt_chance(0.999) == ">99%" and fmt_chance(0.42) == "42%"
    assert fmt_chance(None) == "n/a"


def test_portal_status_badges_use_the_charts_palette():
    """The index's status badges read like the department pages' (same Okabe-Ito colours and shapes)."""
    from helpers.charts import PALETTE
    from helpers.reports.export import kit_css
    css = kit_css().lower()
    for status in ("on track", "at risk", "off track", "missed", "achieved"):
        cls = status.replace(" ", "-")
        assert f".badge.{cls} {{ background: {PALETTE[status].lower()}" in css, status
        assert f".badge.{cls}::before" in css, status
