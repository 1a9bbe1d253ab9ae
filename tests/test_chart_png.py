"""helpers.charts.figure_png: one draw, the crop and the "nothing beyond the margin" check made on that draw's
renderer, the PNG written by helpers.charts._png_bytes (exact pixels for any PNG reader)."""
import io

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.transforms import Bbox
from PIL import Image

from helpers import charts

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _theme():
    charts.apply_theme()
    yield
    plt.close("all")


def _decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def _reference(fig, dpi=110) -> np.ndarray:
    """matplotlib's own PNG of the widened area (Pillow's encoder), cropped to the ink plus the pad here."""
    w, h = fig.get_size_inches()
    left, bottom, right, top = charts.RENDER_MARGIN_INCHES
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi, bbox_inches=Bbox.from_extents(-left, -bottom, w + right, h + top))
    pixels = np.asarray(_decode(out.getvalue()).convert("RGBA"))
    ink = (pixels != pixels[0, 0]).any(axis=2)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    pad = round(charts.PAD_INCHES * dpi)
    return pixels[rows[0] - pad:rows[-1] + pad + 1, cols[0] - pad:cols[-1] + pad + 1]


def _count_draws(fig) -> list:
    draws = []
    real = fig.savefig
    fig.savefig = lambda *a, **k: draws.append(k.get("bbox_inches")) or real(*a, **k)
    return draws


@pytest.mark.parametrize("alpha", [False, True])
def test_png_bytes_gives_back_the_exact_pixels_and_the_resolution(alpha):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (41, 67, 4), dtype=np.uint8)
    if not alpha:
        pixels[:, :, 3] = 255
    image = _decode(charts._png_bytes(pixels, 110))
    assert image.mode == ("RGBA" if alpha else "RGB")  # opaque pictures need no alpha channel
    assert np.array_equal(np.asarray(image.convert("RGBA")), pixels)
    assert image.info["dpi"] == pytest.approx((110, 110), abs=0.01)


def test_png_bytes_of_a_non_contiguous_crop():
    pixels = np.full((30, 40, 4), 255, dtype=np.uint8)
    pixels[10:20, 5:35, :3] = (0, 114, 178)
    crop = pixels[5:25, 2:38]
    assert np.array_equal(np.asarray(_decode(charts._png_bytes(crop, 96)).convert("RGBA")), crop)


def _trend(title="CSAT: 78.0% in Oct 2026, forecast 79.1% for Dec 2026 - target 82.0%, 23% chance"):
    fig, ax = plt.subplots(figsize=(8.6, 3.6))
    x = np.arange(18)
    ax.plot(x, 70 + 0.4 * x, marker="o", label="monthly value")
    ax.axhline(82, linestyle=":", label="target")
    ax.set_title(title, loc="left", fontsize=12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, frameon=False)
    return fig


def test_figure_png_is_matplotlibs_picture_of_the_widened_area_cropped_to_the_ink():
    fig = _trend()
    draws = _count_draws(fig)
    ours = np.asarray(_decode(charts.figure_png(fig)).convert("RGBA"))
    assert len(draws) == 1
    assert np.array_equal(ours, _reference(fig))


def test_figure_png_leaves_no_draw_callback_behind():
    fig = _trend()
    before = dict(fig.canvas.callbacks.callbacks.get("draw_event", {}))
    charts.figure_png(fig)
    assert dict(fig.canvas.callbacks.callbacks.get("draw_event", {})) == before


def test_a_long_bold_title_stays_on_the_one_draw_path():
    """Regression: a 95-character title in bold at 12 pt reached past a 2-inch right margin on the 8.6-inch
    funnel charts, and every such chart was drawn three times (the tight bounding box fallback)."""
    title = ("Median resolution time by team, May 2026 to Oct 2026: Escalations better (28.5 h) vs department "
             "29.6 h")
    import textwrap

    fig = _trend(textwrap.fill(title, 95))
    draws = _count_draws(fig)
    ours = np.asarray(_decode(charts.figure_png(fig)).convert("RGBA"))
    assert len(draws) == 1 and draws[0] != "tight"
    tight = io.BytesIO()
    fig.savefig(tight, format="png", dpi=110, bbox_inches="tight")
    assert abs(ours.shape[1] - np.asarray(_decode(tight.getvalue())).shape[1]) <= 2  # the whole title is there


def test_a_legend_beyond_the_margin_sends_the_chart_to_the_tight_box():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1], [0, 1], label="a line")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -2.2), frameon=False)  # > 6 inches below the axes
    draws = _count_draws(fig)
    ours = np.asarray(_decode(charts.figure_png(fig)).convert("RGBA"))
    assert draws[-1] == "tight"
    assert ours.shape[0] > (3 + charts.RENDER_MARGIN_INCHES[1]) * 110  # the legend is in the picture
