"""Charts: theme, axis helper, KPI trend, status badges and table, cascade tree (rendered headless)."""
import matplotlib
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from helpers import charts
from helpers.objectives_status import STATUSES

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_theme_and_new_axis():
    charts.apply_theme()
    assert plt.rcParams["axes.spines.top"] is False
    fig, ax = plt.subplots()
    assert charts.new_axis(ax) is ax
    assert charts.new_axis(None) is not ax
    assert set(STATUSES) <= set(charts.PALETTE)
    for colour in [*charts.PALETTE.values(), charts.ACCENT, charts.TARGET]:
        assert mcolors.is_color_like(colour)


def _series():
    periods = pd.date_range("2025-01-01", periods=10, freq="MS")
    v = np.linspace(70, 75, 10)
    return pd.DataFrame({"period": periods, "value": v, "ci_low": v - 1, "ci_high": v + 1, "n": 100})


def test_kpi_trend_draws_target_deadline_and_forecast_on_the_given_axis():
    fig, ax = plt.subplots()
    forecast = pd.DataFrame({"period": pd.date_range("2025-10-01", periods=3, freq="MS"),
                             "value": [75, 75.5, 76], "low": [75, 74, 73], "high": [75, 77, 79]})
    out = charts.kpi_trend(_series(), target=80, deadline="2025-12-31", start="2025-01-01", forecast=forecast,
                           status="at risk", title="FCR", ylabel="%", percent=100, ax=ax)
    assert out is ax
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["target"].get_ydata()) == [80, 80]
    deadline_x = lines["deadline"].get_xdata()[0]
    assert matplotlib.dates.num2date(matplotlib.dates.date2num(deadline_x)).date() == pd.Timestamp(
        "2025-12-31").date()
    assert list(lines["forecast"].get_ydata()) == [75, 75.5, 76]
    assert mcolors.to_hex(lines["forecast"].get_color()) == charts.PALETTE["at risk"]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"monthly value", "95% confidence interval", "forecast", "prediction interval", "target",
            "deadline"} <= set(labels)
    assert ax.get_title() == "FCR"
    assert ax.yaxis.get_major_formatter()(80, 0) == "80%"


def test_kpi_trend_without_data_says_so():
    ax = charts.kpi_trend(pd.DataFrame(columns=["period", "value"]), target=12, deadline="2026-12-31")
    assert any("no data" in t.get_text() for t in ax.texts)
    ax = charts.kpi_trend(None)
    assert any("no data" in t.get_text() for t in ax.texts)


def test_status_badge_uses_palette_and_escapes():
    for status in STATUSES:
        badge = charts.status_badge_html(status)
        assert charts.PALETTE[status] in badge and f">{status}</span>" in badge
    assert "&lt;script&gt;" in charts.status_badge_html("<script>")
    assert charts.PALETTE["no data"] in charts.status_badge_html("<script>")


def test_status_table_escapes_free_text_and_indents_levels():
    table = pd.DataFrame({"title": ["Grow <NPS>", "Reply & resolve"], "owner": ["O'Brien \"Jo\"", "Ann"],
                          "level": [0, 1], "status": ["on track", "off track"], "sentence": ["ok", "<i>x</i>"]})
    out = charts.status_table_html(table)
    assert "Grow &lt;NPS&gt;" in out and "Reply &amp; resolve" in out
    assert "O&#x27;Brien &quot;Jo&quot;" in out and "&lt;i&gt;x&lt;/i&gt;" in out and "<i>" not in out
    assert out.count("<tr>") == 3 and "&nbsp;&nbsp;&nbsp;&nbsp;Reply" in out
    assert charts.PALETTE["off track"] in out and "Objective" in out and "Now" not in out


def test_cascade_tree_puts_parents_above_the_middle_of_their_children():
    tree = pd.DataFrame({
        "id": ["d", "m1", "r1", "r2", "m2"], "parent": [None, "d", "m1", "m1", "d"], "level": [0, 1, 2, 2, 1],
        "title": ["Retention", "FCR", "FRT a", "FRT b", "NPS"], "owner": ["Dir", "Mgr", "Rep", "Rep2", "Mgr2"],
        "status": ["on track", "at risk", "off track", "achieved", "no data"]})
    fig, ax = plt.subplots()
    assert charts.cascade_tree(tree, ax=ax) is ax
    pos = {t.get_text().split("\n")[0]: t.get_position() for t in ax.texts}
    assert pos["FRT a"][0] == 0 and pos["FRT b"][0] == 1 and pos["NPS"][0] == 2  # leaves left to right
    assert pos["FCR"][0] == pytest.approx(0.5) and pos["Retention"][0] == pytest.approx(1.25)
    assert [pos[k][1] for k in ("Retention", "FCR", "FRT a")] == [0, -1, -2]
    colours = {t.get_text().split("\n")[0]: mcolors.to_hex(t.get_bbox_patch().get_facecolor()) for t in ax.texts}
    assert colours["FRT a"] == charts.PALETTE["off track"] and colours["NPS"] == charts.PALETTE["no data"]
    assert len(ax.get_lines()) == 4  # one edge per child


def test_every_status_has_a_readable_badge_on_the_index_page():
    """The index page's badges are coloured by CSS class (status with '-' for spaces); a status without a rule
    showed white text on no background (invisible): every status must have its own background colour."""
    import re

    from helpers.objectives_status import STATUSES
    from helpers.reports.export import kit_css
    css = kit_css()
    for status in STATUSES:
        cls = status.replace(" ", "-")
        assert re.search(rf"\.badge\.{re.escape(cls)}\s*{{\s*background:", css), f"no badge colour for {status!r}"
