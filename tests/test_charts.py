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
    assert ax.get_title(loc="left") == "FCR"
    # target and deadline in the neutral grey, never a status colour
    assert mcolors.to_hex(lines["target"].get_color()) == charts.NEUTRAL
    assert mcolors.to_hex(lines["deadline"].get_color()) == charts.NEUTRAL
    assert charts.NEUTRAL not in charts.PALETTE.values()
    assert ax.yaxis.get_major_formatter()(80, 0) == "80%"


def test_kpi_trend_without_data_says_so():
    ax = charts.kpi_trend(pd.DataFrame(columns=["period", "value"]), target=12, deadline="2026-12-31")
    assert any("no data" in t.get_text() for t in ax.texts)
    ax = charts.kpi_trend(None)
    assert any("no data" in t.get_text() for t in ax.texts)


def test_status_badge_uses_palette_and_escapes():
    for status in STATUSES:
        badge = charts.status_badge_html(status)
        assert charts.PALETTE[status] in badge and f"</span> {status}</span>" in badge
        assert charts.STATUS_GLYPHS[status] in badge  # a shape as well as a colour
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


def test_kpi_trend_y_range_follows_recent_values_forecast_and_target_and_marks_clipped_points():
    """Noisy early months do not set the scale: the y-range spans the recent values, the forecast band and the
    target; an older value beyond it is drawn at the edge as an open triangle labelled "beyond the axis"."""
    periods = pd.date_range("2024-01-01", periods=24, freq="MS")
    values = np.r_[[-60.0, 55.0], np.full(22, 10.0)]
    series = pd.DataFrame({"period": periods, "value": values})
    forecast = pd.DataFrame({"period": pd.date_range("2026-01-01", periods=3, freq="MS"), "value": [11, 12, 13],
                             "low": [5, 4, 3], "high": [17, 19, 21]})
    fig, ax = plt.subplots()
    charts.kpi_trend(series, target=25, start="2025-01-01", deadline="2026-03-31", forecast=forecast,
                     status="off track", window=("2026-03-01", "2026-03-31"), window_label="Mar 2026",
                     context_months=None, ax=ax)
    lo, hi = ax.get_ylim()
    assert lo > -60 and hi < 55 and lo <= 3 and hi >= 25
    clipped = [c for c in ax.collections if c.get_label() == "beyond the axis"]
    assert clipped and sum(len(c.get_offsets()) for c in ax.collections if c.get_label() in
                           ("beyond the axis", "_child0", "")) >= 1
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "judged on Mar 2026" in labels and "beyond the axis" in labels
    assert any(t.get_text() == "off track" for t in ax.texts)  # the status in words at the forecast's end
    markers = [ln.get_marker() for ln in ax.get_lines()]
    assert charts.STATUS_MARKERS["off track"] in markers  # and by its marker shape


def test_status_colours_stay_apart_under_deuteranopia():
    """Good (on track) and bad (off track) statuses stay distinguishable for deuteranopes: simulated with the
    Machado et al. (2009) deuteranopia matrix (severity 1), their colours differ clearly."""
    machado = np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                        [-0.011820, 0.042940, 0.968881]])

    def simulate(hex_colour):
        rgb = np.array(mcolors.to_rgb(hex_colour))
        linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
        return np.clip(machado @ linear, 0, 1)

    pairs = [("on track", "off track"), ("on track", "at risk"), ("achieved", "missed"), ("at risk", "off track")]
    for a, b in pairs:
        assert np.linalg.norm(simulate(charts.PALETTE[a]) - simulate(charts.PALETTE[b])) > 0.12, (a, b)


def test_cascade_text_is_at_least_10_points_and_names_the_status():
    tree = pd.DataFrame({"id": ["d", "m"], "parent": [None, "d"], "level": [0, 1], "title": ["A", "B"],
                         "owner": ["Dir", "Mgr"], "status": ["on track", "off track"]})
    ax = charts.cascade_tree(tree)
    assert all(t.get_fontsize() >= 10 for t in ax.texts)
    assert any("\u25bc off track" in t.get_text() for t in ax.texts)


def test_funnel_plot_names_only_units_outside_the_limits():
    from helpers.funnel import funnel

    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"team": np.repeat(["North", "South", "East", "Slow"], 600),
                          "contacts_to_resolve": np.where(rng.random(2400) < np.repeat([0.8, 0.8, 0.8, 0.55], 600),
                                                          1, 2)})
    result = funnel(frame, "fcr", "team")
    ax = charts.funnel_plot(result)
    named = {t.get_text() for t in ax.texts}
    assert named == set(result.flagged["unit"]) and "Slow" in named
    assert ax.get_xscale() == "log"


def test_one_wild_recent_month_does_not_set_the_scale():
    periods = pd.date_range("2025-01-01", periods=18, freq="MS")
    values = np.full(18, 20.0) + np.tile([0.0, 1.0, -1.0], 6)
    values[-3] = 300.0  # one recent month far off (a data glitch or a tiny sample)
    fig, ax = plt.subplots()
    charts.kpi_trend(pd.DataFrame({"period": periods, "value": values}), target=15, start="2025-06-01", ax=ax)
    lo, hi = ax.get_ylim()
    assert hi < 40 and lo <= 15
    edge = [c for c in ax.collections if c.get_label() == "beyond the axis"]
    assert edge and len(edge[0].get_offsets()) == 1
