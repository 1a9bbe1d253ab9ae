"""Report charts drawn once (helpers.charts.figure_png): nothing clipped against matplotlib's tight bounding box,
titles where matplotlib's own placement puts them."""
import io

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import charts

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _theme():
    charts.apply_theme()
    yield
    plt.close("all")


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def _ink(pixels: np.ndarray) -> np.ndarray:
    """The pixels inside the bounding box of everything that is not background (the corner's colour)."""
    ink = (pixels != pixels[0, 0]).any(axis=2)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _tight_png(fig, dpi=110) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi, bbox_inches="tight")
    return out.getvalue()


def _trend_figure(title="CSAT is 3 points short of its target"):
    periods = pd.date_range("2024-01-01", periods=18, freq="MS")
    v = np.linspace(70, 78, 18)
    series = pd.DataFrame({"period": periods, "value": v, "ci_low": v - 2, "ci_high": v + 2, "n": 120})
    forecast = pd.DataFrame({"period": pd.date_range("2025-07-01", periods=6, freq="MS"),
                             "value": np.linspace(78, 80, 6), "low": np.linspace(76, 72, 6),
                             "high": np.linspace(79, 86, 6)})
    fig, ax = plt.subplots(figsize=(8.6, 3.6))
    charts.kpi_trend(series, target=82, deadline="2025-12-31", start="2024-06-01", forecast=forecast,
                     status="at risk", title=title, ylabel="CSAT (% satisfied)", percent=100,
                     window=("2025-10-01", "2025-12-31"), window_label="Q4 2025", ax=ax)
    return fig


def _cascade_figure():
    tree = pd.DataFrame({"id": ["a", "b", "c"], "parent": [None, "a", "a"], "level": [0, 1, 1],
                         "title": ["Raise CSAT to 80%", "Answer within a day", "Fix it first time"],
                         "owner": ["Director", "Manager one", "Manager two"],
                         "status": ["at risk", "on track", "off track"]})
    return charts.cascade_tree(tree).figure


@pytest.mark.parametrize("make", [_trend_figure, _cascade_figure])
def test_figure_png_keeps_everything_the_tight_bounding_box_keeps(make):
    fig = make()
    tight = _ink(_pixels(_tight_png(fig)))
    ours_full = _pixels(charts.figure_png(fig))
    ours = _ink(ours_full)
    # the same drawing: its extent equal within a pixel of anti-aliasing (the tight box is measured from the
    # artists, ours from the pixels; a sub-pixel shift of the origin moves edges by at most one pixel)
    assert abs(ours.shape[0] - tight.shape[0]) <= 1 and abs(ours.shape[1] - tight.shape[1]) <= 1
    h, w = min(ours.shape[0], tight.shape[0]), min(ours.shape[1], tight.shape[1])
    assert np.abs(ours[:h, :w].astype(int) - tight[:h, :w].astype(int)).mean() < 12
    # the pad around the drawing: 0.1 inch at 110 dpi = 11 pixels on every side
    pad = round(charts.PAD_INCHES * 110)
    assert ours_full.shape[0] == ours.shape[0] + 2 * pad and ours_full.shape[1] == ours.shape[1] + 2 * pad


def test_figure_png_with_a_legend_below_the_figure_keeps_the_legend():
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.plot([1, 2, 3], [1, 3, 2], label="a line with a long legend label")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), frameon=False)
    png = charts.figure_png(fig)
    assert _pixels(png).shape[0] > 2.5 * 110  # taller than the figure: the legend hangs below it
    assert _ink(_pixels(png)).shape == pytest.approx(_ink(_pixels(_tight_png(fig))).shape, abs=1)


def test_figure_png_falls_back_to_the_tight_box_when_the_drawing_reaches_past_its_margin():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1])
    ax.text(0.5, -3.0, "far below the figure", transform=ax.transAxes, ha="center")  # > 6 inches below
    ours, tight = _pixels(charts.figure_png(fig)), _pixels(_tight_png(fig))
    assert ours.shape == tight.shape
    assert ours.shape[0] > (3 + charts.RENDER_MARGIN_INCHES[1]) * 110


def test_figure_png_keeps_long_category_labels_on_the_left():
    """Regression: long y tick labels (comment themes) reached past a 2-inch margin and forced the slow path."""
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [f"A long comment theme name number {i} (waiting or quick replies)" for i in range(6)]
    ax.barh(labels, range(1, 7))
    ax.set_title("Themes")
    draws = []
    real = fig.savefig
    fig.savefig = lambda *a, **k: draws.append(k.get("bbox_inches")) or real(*a, **k)
    ours = _pixels(charts.figure_png(fig))
    assert len(draws) == 1 and draws[0] != "tight"  # drawn once, no fallback to the tight box
    tight = _pixels(_tight_png(fig))
    assert abs(ours.shape[1] - tight.shape[1]) <= 2 and abs(ours.shape[0] - tight.shape[0]) <= 12


def test_titles_pinned_only_where_matplotlib_would_not_move_them_and_the_pixels_are_the_same():
    fig = _trend_figure()
    ax = fig.axes[0]
    pinned = charts._fix_title_positions(fig)
    assert [a for a, _ in pinned] == [ax]
    for a, auto in pinned:  # restore, then render both ways
        a._autotitlepos = auto
    with_pin = charts.figure_png(fig)
    assert ax._autotitlepos is True  # restored after drawing
    keep = charts._fix_title_positions
    try:
        charts._fix_title_positions = lambda fig: []
        without = charts.figure_png(fig)
    finally:
        charts._fix_title_positions = keep
    assert with_pin == without


@pytest.mark.parametrize("setup", ["top ticks", "offset text"])
def test_titles_left_to_matplotlib_when_something_could_sit_under_them(setup):
    fig, ax = plt.subplots(figsize=(5, 3))
    if setup == "top ticks":
        ax.plot([0, 1], [0, 1])
        ax.xaxis.tick_top()
    else:
        ax.plot([0, 1], [100000.0, 100000.002])  # y labels need an offset (+1e5) shown above the axis
    ax.set_title("A title", loc="left")
    assert charts._fix_title_positions(fig) == []
    png = charts.figure_png(fig)
    assert ax.title.get_position()[1] > 1.0  # matplotlib moved it above what sits at the top
    assert _ink(_pixels(png)).shape == pytest.approx(_ink(_pixels(_tight_png(fig))).shape, abs=1)


def test_show_figure_still_displays_the_png_with_its_alt_text(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append((a, k)))
    fig = _trend_figure()
    charts.show_figure(fig, alt="CSAT trend")
    (args, kwargs), = shown
    assert kwargs["metadata"] == {"image/png": {"alt": "CSAT trend"}}
    import base64
    assert base64.b64decode(args[0]["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
