"""Charts: one function per chart, each drawing on a matplotlib axis it is given (seaborn style).

Every function takes ``ax=None`` (a new figure is made when omitted) and returns the axis, so notebooks
compose figures and tests render them headless. The kit's theme is applied by :func:`apply_theme`.
"""
from __future__ import annotations

import io
import os
import sys

import matplotlib

if not os.environ.get("MPLBACKEND") and "ipykernel" not in sys.modules:
    matplotlib.use("Agg", force=False)  # headless scripts and tests; notebooks keep their inline backend
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from helpers.formatting import chart_text  # noqa: E402

# Okabe & Ito (2008) colour-blind-safe hues: blue for good, orange and vermillion for risk (they stay apart
# under deuteranopia by lightness), greys for no verdict; every status also has a marker shape and a glyph,
# so colour is never the only cue.
PALETTE = {
    "achieved": "#005a8c",
    "on track": "#0072b2",
    "at risk": "#e69f00",
    "off track": "#d55e00",
    "missed": "#8a3b00",
    "no data": "#6e7781",
    "too little data": "#8c959f",
}
STATUS_MARKERS = {"achieved": "*", "on track": "o", "at risk": "D", "off track": "v", "missed": "X",
                  "no data": "s", "too little data": "s"}
"""matplotlib marker per status (shape as well as colour)."""
STATUS_GLYPHS = {"achieved": "\u2714", "on track": "\u25cf", "at risk": "\u25c6", "off track": "\u25bc",
                 "missed": "\u2716", "no data": "\u25a0", "too little data": "\u25a0"}
"""Text glyph per status, the same shapes as the markers (check, circle, diamond, down triangle, cross)."""
ACCENT = "#0072b2"
TARGET = "#d55e00"
NEUTRAL = "#3d444d"
"""Target and deadline lines: a neutral dark grey, never the colour of a status."""
CHART_FONT_PT = 10.5
"""Smallest text size (points) in the report charts: at the report's 110 dpi, scaled to a ~60rem page, over 10 px."""


def apply_theme() -> None:
    """The kit's look: seaborn whitegrid, readable sizes, colour-blind-safe palette."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.figsize": (8, 4.5), "figure.dpi": 100, "axes.titleweight": "bold",
                         "axes.spines.top": False, "axes.spines.right": False})


def show_figure(fig=None, alt: str = "", *, dpi: int = 110) -> None:
    """Show a figure in a report as a PNG that carries its alt text, then close it.

    The PNG is rendered here (:func:`figure_png`), so the chart appears whatever matplotlib backend the process
    was given (``MPLBACKEND=Agg`` on a headless scheduler included), and it is displayed with the output
    metadata ``{"image/png": {"alt": alt}}``, which the report export turns into the ``<img alt>`` attribute.
    ``alt`` says what the chart shows (the finding, not "chart"); it is required."""
    import base64  # noqa: PLC0415

    from IPython.display import display  # noqa: PLC0415

    fig = plt.gcf() if fig is None else fig
    if not str(alt or "").strip():
        raise ValueError("show_figure needs an alt text that says what the chart shows")
    png = figure_png(fig, dpi=dpi)
    plt.close(fig)
    data = base64.b64encode(png).decode("ascii")
    display({"image/png": data}, raw=True, metadata={"image/png": {"alt": " ".join(str(alt).split())}})


RENDER_MARGIN_INCHES = (5.0, 2.5, 3.5, 2.0)
"""Room drawn around the figure by :func:`figure_png` (left, bottom, right, top; inches), for labels and legends
placed outside it: most on the left (long category names as y tick labels), on the right (a title of 95
characters in bold at 12 pt reaches about 2 inches past an 8.6-inch figure) and below (legends)."""
PAD_INCHES = 0.1
"""White space kept around the drawn content (matplotlib's ``savefig.pad_inches`` default)."""
PNG_COMPRESS_LEVEL = 3
"""zlib level of the report PNGs (:func:`_png_bytes`)."""


def figure_png(fig, *, dpi: int = 110) -> bytes:
    """The figure as PNG bytes, cropped to what is drawn plus :data:`PAD_INCHES`, in one draw.

    ``savefig(bbox_inches="tight")`` lays the figure out twice (a draw to measure every artist's extent, then
    the real draw): about half of a report chart's time. Here the figure is drawn once over its own area
    widened by :data:`RENDER_MARGIN_INCHES` (an explicit ``bbox_inches``, which needs no measuring draw), and
    the image is cropped to its non-background pixels plus the pad. So labels, legends and annotations outside
    the axes, or outside the figure, stay in the picture as with the tight bounding box; the crop follows the
    ink rather than the artists' boxes (a white axes area with nothing drawn at its edge is trimmed). When the
    drawing reaches the widened area's edge (something lies further out still), or the figure's background is
    not opaque, the tight bounding box is used instead, so nothing is ever clipped.

    The crop and the check that nothing lies beyond the widened area are made at the end of that draw (its
    ``draw_event``), on the renderer that drew it: the pixels are read in place and every text's size is
    already measured. An opaque picture is written as RGB (the same colours as RGBA with an opaque alpha) at
    zlib level :data:`PNG_COMPRESS_LEVEL`."""
    import io  # noqa: PLC0415

    from matplotlib.transforms import Bbox  # noqa: PLC0415

    width_in, height_in = fig.get_size_inches()
    left, bottom, right, top = RENDER_MARGIN_INCHES
    region = Bbox.from_extents(-left, -bottom, width_in + right, height_in + top)
    pad = int(round(PAD_INCHES * dpi))
    drawn: dict = {}

    def at_end_of_draw(event) -> None:
        renderer = getattr(event, "renderer", None)
        buffer = getattr(renderer, "buffer_rgba", None)
        if buffer is None:
            return
        import numpy as np  # noqa: PLC0415

        pixels = np.asarray(buffer())
        crop = _ink_crop(pixels, pad) if pixels.ndim == 3 and pixels.shape[2] == 4 else None
        if crop is not None and _drawn_past(fig, renderer, pad):
            crop = None
        drawn["crop"] = None if crop is None else crop.copy()  # the renderer's buffer is reused

    fixed = _fix_title_positions(fig)
    callback = fig.canvas.mpl_connect("draw_event", at_end_of_draw)
    try:
        fig.savefig(_Discard(), format="rgba", dpi=dpi, bbox_inches=region)
    finally:
        fig.canvas.mpl_disconnect(callback)
        for ax, auto in fixed:
            ax._autotitlepos = auto
    crop = drawn.get("crop")
    if crop is None:
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=dpi, bbox_inches="tight", pad_inches=PAD_INCHES)
        return out.getvalue()
    return _png_bytes(crop, dpi)


class _Discard(io.RawIOBase):
    """A file that forgets what is written to it (the raw RGBA copy ``savefig`` makes; the pixels are read from
    the renderer at the end of the draw)."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


def _png_bytes(pixels, dpi: int) -> bytes:
    """``pixels`` (``(h, w, 4)`` RGBA, 8 bits) as a PNG file (W3C PNG specification, 3rd ed.): colour type 2 (RGB)
    when every pixel is opaque, else 6 (RGBA); filter type 0 (none) on every row; zlib level
    :data:`PNG_COMPRESS_LEVEL`; the resolution in a ``pHYs`` chunk. On the report charts (large flat areas)
    unfiltered rows compress better than Pillow's adaptive per-row filters (about 10% smaller) and
    several times faster; any PNG reader gives back exactly these pixels."""
    import struct  # noqa: PLC0415
    import zlib  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    height, width = pixels.shape[:2]
    opaque = bool((pixels[:, :, 3] == 255).all())
    channels = pixels[:, :, :3] if opaque else pixels
    rows = np.zeros((height, 1 + width * channels.shape[2]), dtype=np.uint8)  # a filter byte 0 before each row
    rows[:, 1:] = channels.reshape(height, -1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    per_metre = int(round(dpi / 0.0254))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2 if opaque else 6, 0, 0, 0))
            + chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_COMPRESS_LEVEL))
            + chunk(b"IEND", b""))


def _fix_title_positions(fig) -> list:
    """Pin the titles of the axes whose automatic title position is the default one anyway; returns
    ``(axes, previous setting)`` pairs to restore.

    matplotlib places an axes title above anything at the top of the axes (x tick labels or an x label on top,
    a y-axis offset text such as ``1e6`` or ``+1000`` under the title) and, to find out, measures the x and y
    axes at every draw (the kit's theme hides tick marks, so matplotlib cannot tell the x labels are at the
    bottom and measures them all): about 40% of a report chart's drawing time. For an axes with its x tick
    labels, label and offset text at the bottom, no twin, inset or aligned title, and a y axis whose formatter
    shows no offset text at the current ticks, that measuring cannot move the title from ``y = 1`` (axes
    coordinates), so the title is pinned there: the same picture, without the measuring."""
    fixed = []
    for ax in fig.axes:
        auto = getattr(ax, "_autotitlepos", None)
        if not auto or not hasattr(ax, "_twinned_axes") or ax.child_axes:
            continue
        if (not _x_labels_below(ax.xaxis) or len(ax._twinned_axes.get_siblings(ax)) != 1
                or len(ax.figure._align_label_groups["title"].get_siblings(ax)) != 1):
            continue
        formatter = ax.yaxis.get_major_formatter()
        try:
            formatter.set_locs(ax.yaxis.get_majorticklocs())
            offset = formatter.get_offset()
        except Exception:  # noqa: BLE001 - an unusual formatter: let matplotlib measure as usual
            continue
        if offset:
            continue
        for title in (ax.title, ax._left_title, ax._right_title):
            title.set_y(1.0)
        ax._autotitlepos = False
        fixed.append((ax, auto))
    return fixed


def _drawn_past(fig, renderer, pad: int) -> bool:
    """Whether an artist that is not clipped to its axes (a legend, a text or annotation, a title, the axes
    themselves) extends past the renderer's canvas less ``pad`` pixels on every side, or the check cannot be
    made. Called at the end of the draw, on its renderer (display pixels of the widened area; every text already
    measured). Tick labels and axis labels sit next to their axes, which are checked, and need no measuring.
    A legend's extent is its frame's, which the draw has just set to the legend's box."""
    from matplotlib.axis import Axis  # noqa: PLC0415
    from matplotlib.legend import Legend  # noqa: PLC0415
    from matplotlib.spines import Spine  # noqa: PLC0415

    x0, y0, x1, y1 = pad, pad, renderer.width - pad, renderer.height - pad
    artists = [*fig.legends, *fig.texts, *fig.artists]
    for ax in fig.axes:
        artists.append(ax)  # its own frame
        artists += [a for a in ax.get_children() if not isinstance(a, (Axis, Spine)) and a is not ax.patch
                    and a.get_visible() and a.get_in_layout() and (not a.get_clip_on() or a.get_clip_box() is None)]
    for artist in artists:
        try:
            if artist in fig.axes:
                box = artist.get_window_extent(renderer)
            elif isinstance(artist, Legend):
                box = artist.legendPatch.get_window_extent(renderer)
            else:
                box = artist.get_tightbbox(renderer)
        except Exception:  # noqa: BLE001 - an artist that cannot say where it is: measure everything
            return True
        if box is None or not (0 < box.width < float("inf") and 0 < box.height < float("inf")):
            continue
        if box.x0 < x0 or box.y0 < y0 or box.x1 > x1 or box.y1 > y1:
            return True
    return False


def _x_labels_below(xaxis) -> bool:
    """Whether the x axis shows nothing above the axes: tick labels only at the bottom (as matplotlib judges
    it, on the first major and minor tick), its label and offset text at the bottom."""
    from matplotlib.ticker import NullLocator  # noqa: PLC0415

    ticks = [xaxis.majorTicks[0]] if not isinstance(xaxis.get_major_locator(), NullLocator) else []
    if not isinstance(xaxis.get_minor_locator(), NullLocator):
        ticks.append(xaxis.minorTicks[0])
    return (all(not tick.label2.get_visible() for tick in ticks) and xaxis.get_label_position() == "bottom"
            and getattr(xaxis, "offset_text_position", "bottom") == "bottom")


def _ink_crop(pixels, pad: int):
    """``pixels`` cropped to the pixels that differ from the (opaque) background plus ``pad``; None when the
    background is not opaque, nothing is drawn, or the drawing comes within ``pad`` of the edge."""
    import numpy as np  # noqa: PLC0415

    if pixels[0, 0, 3] != 255:
        return None
    packed = pixels.view(np.uint32)[:, :, 0]  # one 32-bit word per pixel: one comparison instead of four
    ink = packed != packed[0, 0]
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    h, w = ink.shape
    if rows[0] < pad or cols[0] < pad or rows[-1] >= h - pad or cols[-1] >= w - pad:
        return None
    return pixels[rows[0] - pad:rows[-1] + pad + 1, cols[0] - pad:cols[-1] + pad + 1]


def new_axis(ax=None, figsize=None):
    """Return ``ax`` or a fresh axis on a new figure."""
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


# ------------------------------------------------------------------------------------ objectives charts
def _percent_axis(ax, xmax: float = 100.0) -> None:
    from matplotlib.ticker import PercentFormatter  # noqa: PLC0415

    ax.yaxis.set_major_formatter(PercentFormatter(xmax=xmax, decimals=0))


def robust_range(values, *, pad: float = 0.08) -> tuple[float, float] | None:
    """``(low, high)`` spanning the finite ``values`` with ``pad`` of the span added each side (a zero span
    gets +/- 1 unit or 5%); None without a finite value."""
    import numpy as np  # noqa: PLC0415

    v = np.asarray([float(x) for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo
    if span <= 0:
        span = max(abs(hi) * 0.1, 1.0)
    return lo - pad * span, hi + pad * span


def frequency_label(periods) -> str:
    """"monthly", "quarterly", "yearly" (or "period") from the typical spacing of period starts."""
    import pandas as pd  # noqa: PLC0415

    p = pd.Series(pd.to_datetime(pd.Series(periods)).drop_duplicates().sort_values().to_numpy())
    if len(p) < 2:
        return "period"
    days = float(p.diff().dt.days.median())
    return "monthly" if days <= 31 else "quarterly" if days <= 92 else "yearly" if days <= 366 else "period"


def kpi_trend(series, *, target=None, deadline=None, start=None, forecast=None, status=None, title=None,
              ylabel=None, percent=None, value_label=None, window=None, window_label="",
              recent_periods: int = 12, bounds=None, context_months: int | None = 12, ax=None):
    """A KPI's trend for readers: values with their 95% band, the objective window shaded, target and deadline
    in neutral dark grey, the forecast band in the status colour ending in the status's marker shape and label.

    ``series``: DataFrame ``period, value[, ci_low, ci_high]``; ``forecast``: ``period, value, low, high``;
    ``window``: ``(start, end)`` of the period the objective is judged on (shaded, labelled ``window_label``);
    ``percent``: the value of 100% for a percent axis, or None. The y-range is set by the recent history
    (last ``recent_periods`` values and the values since ``start``), the forecast band and the target, not by
    noisy early months: the recent values inside Tukey's fences (1.5 IQR beyond the quartiles) set it, and every
    value outside it is drawn at the edge as an open triangle ("beyond the axis").
    ``context_months``: history shown before ``start`` (None: all of it).
    ``bounds``: the KPI's possible range (the y-range never goes past it). Empty series draw a note.
    ``value_label`` defaults to the series' frequency ("monthly value", "quarterly value", "yearly value").
    A series with several rows per period (grouped, e.g. by channel) is refused: plot one group, or all groups
    as one line each with :func:`helpers.kpis.plot_series`."""
    import matplotlib.dates as mdates  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    ax = new_axis(ax)
    colour = PALETTE.get(status or "", ACCENT)
    has_data = series is not None and len(series) > 0
    has_forecast = forecast is not None and len(forecast) > 0
    pool: list = []
    if target is not None:
        pool.append(float(target))
    if has_forecast:
        f = forecast.sort_values("period")
        pool += list(f["value"]) + list(f["low"]) + list(f["high"])
    s = None
    if has_data:
        s = series.sort_values("period").reset_index(drop=True)
        if s["period"].duplicated().any():
            from helpers.errors import KitError  # noqa: PLC0415

            extra = [c for c in s.columns if c not in ("period", "value", "ci_low", "ci_high", "n", "metric")]
            raise KitError(f"kpi_trend draws one series, but the data has several rows per period (grouped by "
                           f"{extra or 'an unnamed column'}): select one group, or use "
                           "helpers.kpis.plot_series(series, by=...) for one line per group")
        if value_label is None:
            value_label = frequency_label(s["period"]) + " value"
        recent = s.tail(recent_periods)
        if start is not None:
            recent = pd.concat([recent, s[s["period"] >= pd.Timestamp(start)]])
        recent_values = recent["value"].astype(float).dropna().to_numpy()
        if recent_values.size >= 4:  # Tukey's fences: one wild recent month does not set the scale either
            q1, q3 = np.percentile(recent_values, [25, 75])
            fence = 1.5 * (q3 - q1)
            recent_values = recent_values[(recent_values >= q1 - fence) & (recent_values <= q3 + fence)]
        pool += list(recent_values)
    limits = robust_range(pool)
    if limits is not None and bounds is not None:
        lo_b, hi_b = bounds
        limits = (max(limits[0], lo_b) if lo_b is not None and np.isfinite(lo_b) else limits[0],
                  min(limits[1], hi_b) if hi_b is not None and np.isfinite(hi_b) else limits[1])
    if window is not None:
        w0, w1 = pd.Timestamp(window[0]), pd.Timestamp(window[1])
        ax.axvspan(w0, w1 + pd.Timedelta(days=1), color="#d0d7de", alpha=0.55, linewidth=0,
                   label=f"judged on {window_label}" if window_label else "objective window", zorder=0)
    if has_data:
        ax.plot(s["period"], s["value"], color=ACCENT, marker="o", markersize=3.5, linewidth=1.6,
                label=value_label, zorder=3)
        if {"ci_low", "ci_high"} <= set(s.columns) and s[["ci_low", "ci_high"]].notna().any().any():
            ax.fill_between(s["period"], s["ci_low"].astype(float), s["ci_high"].astype(float), color=ACCENT,
                            alpha=0.15, linewidth=0, label="95% confidence interval", zorder=1)
        if limits is not None:
            v = s["value"].astype(float)
            high, low = v > limits[1], v < limits[0]
            if high.any() or low.any():
                edge = (limits[1] - limits[0]) * 0.02
                ax.scatter(s.loc[high, "period"], [limits[1] - edge] * int(high.sum()), marker="^", s=36,
                           facecolors="white", edgecolors=ACCENT, zorder=4, label="beyond the axis")
                ax.scatter(s.loc[low, "period"], [limits[0] + edge] * int(low.sum()), marker="v", s=36,
                           facecolors="white", edgecolors=ACCENT, zorder=4,
                           label=None if high.any() else "beyond the axis")
    else:
        ax.text(0.5, 0.5, "no data in this period", transform=ax.transAxes, ha="center", va="center",
                color=PALETTE["no data"], fontsize=CHART_FONT_PT + 1)
    if has_forecast:
        ax.plot(f["period"], f["value"], color=colour, linestyle="--", linewidth=1.8, label="forecast", zorder=3)
        ax.fill_between(f["period"], f["low"].astype(float), f["high"].astype(float), color=colour, alpha=0.22,
                        linewidth=0, label="prediction interval", zorder=1)
        end = f.iloc[-1]
        ax.plot([end["period"]], [end["value"]], marker=STATUS_MARKERS.get(status or "", "o"), color=colour,
                markeredgecolor=NEUTRAL, markersize=10, linestyle="none", zorder=5)
        if status:
            ax.annotate(chart_text(status), (end["period"], end["value"]), xytext=(8, 0),
                        textcoords="offset points", va="center", ha="left", fontsize=CHART_FONT_PT,
                        fontweight="bold", color=NEUTRAL, zorder=6,
                        bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    if target is not None:
        ax.axhline(target, color=NEUTRAL, linestyle=":", linewidth=1.6, label="target", zorder=2)
    if start is not None:
        ax.axvline(pd.Timestamp(start), color="#8c959f", linestyle="-", linewidth=0.8, alpha=0.7)
    if deadline is not None:
        ax.axvline(pd.Timestamp(deadline), color=NEUTRAL, linestyle="--", linewidth=1.2, label="deadline")
    if percent:
        _percent_axis(ax, float(percent))
    if limits is not None:
        ax.set_ylim(*limits)
    if has_data or has_forecast:
        locator = mdates.AutoDateLocator(maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        x0, x1 = ax.get_xlim()
        if context_months is not None and start is not None:
            first = mdates.date2num(pd.Timestamp(start) - pd.DateOffset(months=context_months))
            x0 = max(x0, first - 10)
        ends = [mdates.date2num(pd.Timestamp(x)) for x in
                ([f["period"].max()] if has_forecast else []) + ([deadline] if deadline is not None else [])
                + ([s["period"].max()] if has_data else [])]
        x1 = max(ends) if ends else x1
        ax.set_xlim(x0, x1 + (x1 - x0) * (0.1 if has_forecast and status else 0.03))
    ax.tick_params(labelsize=CHART_FONT_PT)
    if title:
        ax.set_title(chart_text(title), fontsize=CHART_FONT_PT + 1.5, loc="left")
    ax.set_xlabel("")
    if ylabel:
        ax.set_ylabel(chart_text(ylabel), fontsize=CHART_FONT_PT)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, fontsize=CHART_FONT_PT, frameon=False)
    return ax


_TEXT_ON = {"at risk": "#1f2328", "off track": "#1f2328", "too little data": "#1f2328"}
"""Dark text on the light status colours (contrast >= 4.5:1); white on the others."""


def status_badge_html(status: str) -> str:
    """An HTML badge (coloured pill) for a status; unknown statuses get the "no data" grey. Escaped."""
    import html  # noqa: PLC0415

    colour = PALETTE.get(status, PALETTE["no data"])
    text_colour = _TEXT_ON.get(status, "#ffffff")
    glyph = STATUS_GLYPHS.get(status, STATUS_GLYPHS["no data"])
    return (f'<span class="status-badge" style="background:{colour};color:{text_colour};padding:2px 10px;'
            f'border-radius:10px;font-weight:600;white-space:nowrap;font-size:0.9em">'
            f'<span aria-hidden="true">{glyph}</span> {html.escape(str(status))}</span>')


def status_table_html(table, columns=None) -> str:
    """The objectives status table as HTML: badge per status, every cell's free text HTML-escaped.

    ``table`` is ``ObjectiveEvaluation.table`` (or any frame with ``status``); ``columns`` maps shown
    column -> header (default: objective, owner, current, target, forecast, progress, status, sentence).
    Numbers are pre-formatted strings in the optional ``*_text`` columns when present.
    """
    import html  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    columns = columns or {"title": "Objective", "owner": "Owner", "current_text": "Now", "target_text": "Target",
                          "deadline_text": "Deadline", "forecast_text": "Forecast at deadline",
                          "progress_text": "Progress", "status": "Status", "sentence": "In one sentence"}
    columns = {k: v for k, v in columns.items() if k in table.columns}
    head = "".join(f'<th style="text-align:left;padding:4px 8px">{html.escape(v)}</th>' for v in columns.values())
    body = []
    for _, row in table.iterrows():
        cells = []
        for col in columns:
            val = row[col]
            if col == "status":
                cell = status_badge_html(str(val))
            elif col == "title" and "level" in row.index and np.isfinite(float(row["level"])):
                cell = "&nbsp;" * 4 * int(row["level"]) + html.escape(str(val))
            else:
                cell = "" if val is None or (isinstance(val, float) and np.isnan(val)) else html.escape(str(val))
            cells.append(f'<td style="padding:4px 8px;vertical-align:top">{cell}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return ('<table class="objective-status" style="border-collapse:collapse">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def cascade_tree(tree, ax=None, *, width_per_leaf=2.5, wrap=20, max_width=10.0):
    """Draw the objectives cascade (top-down tree) with each node's box coloured by its status.

    ``tree``: DataFrame in depth-first order with ``id, parent, level, title, owner, status`` (as from
    ``ObjectiveEvaluation.cascade()``). Leaves are spaced evenly; a parent sits above the middle of its
    children (a tidy layered layout). Returns the axis.
    """
    import textwrap  # noqa: PLC0415

    from matplotlib.patches import Patch  # noqa: PLC0415

    rows = list(tree.itertuples(index=False))
    children: dict = {}
    for r in rows:
        children.setdefault(r.parent if isinstance(r.parent, str) else None, []).append(r.id)
    x: dict[str, float] = {}
    next_leaf = [0.0]

    def place(node_id):
        kids = children.get(node_id, [])
        if not kids:
            x[node_id] = next_leaf[0]
            next_leaf[0] += 1
            return
        for k in kids:
            place(k)
        x[node_id] = (x[kids[0]] + x[kids[-1]]) / 2

    for root in children.get(None, []):
        place(root)
    n_leaves = max(next_leaf[0], 1)
    depth = max((int(r.level) for r in rows), default=0) + 1
    if ax is None:
        ax = new_axis(None, figsize=(min(max(6.0, width_per_leaf * n_leaves), max_width), 2.2 * depth + 0.6))
    fig_width = ax.figure.get_size_inches()[0]
    # at most ~2.2 inches of text per box: narrower figures (many leaves) wrap the text shorter
    wrap = max(12, min(wrap, int(wrap * fig_width / (width_per_leaf * n_leaves))))
    by_id = {r.id: r for r in rows}
    for r in rows:
        if isinstance(r.parent, str) and r.parent in x:
            ax.plot([x[r.parent], x[r.id]], [-by_id[r.parent].level, -r.level], color="#8c959f", linewidth=1,
                    zorder=1)
    for r in rows:
        colour = PALETTE.get(r.status, PALETTE["no data"])
        glyph = STATUS_GLYPHS.get(r.status, STATUS_GLYPHS["no data"])
        label = (textwrap.fill(chart_text(r.title), wrap) + "\n" + textwrap.fill(chart_text(r.owner), wrap)
                 + f"\n{glyph} {r.status}")
        ax.text(x[r.id], -r.level, label, ha="center", va="center", fontsize=CHART_FONT_PT, zorder=2,
                color=_TEXT_ON.get(r.status, "white"), linespacing=1.25,
                bbox={"boxstyle": "round,pad=0.45", "facecolor": colour, "edgecolor": NEUTRAL, "linewidth": 0.6})
    ax.set_xlim(-0.7, n_leaves - 0.3)
    ax.set_ylim(-(depth - 1) - 0.6, 0.6)
    ax.axis("off")
    handles = [Patch(color=c, label=f"{STATUS_GLYPHS[s]} {s}") for s, c in PALETTE.items()
               if s in {r.status for r in rows}]
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles),
                  fontsize=CHART_FONT_PT, frameon=False)
    return ax


def funnel_plot(result, ax=None, *, names=None, unit_label: str = ""):
    """A funnel plot (``helpers.funnel.FunnelResult``): each unit's value against its n (log axis), the
    department's value as a line, 95% (dashed) and 99.8% (dotted) control limits in neutral grey. Units inside
    the limits are plain grey dots; units outside are named, blue triangles up when better, vermillion
    triangles down when worse (shape and label as well as colour). ``names`` maps unit codes to names."""
    import numpy as np  # noqa: PLC0415

    ax = new_axis(ax)
    names = dict(names or {})
    c = result.curve
    ax.axhline(result.centre, color=NEUTRAL, linewidth=1.3, label="department")
    spread = " (with the usual spread)" if getattr(result, "tau2", 0) > 0 else ""
    ax.plot(c["n"], c["low_95"], color=NEUTRAL, linestyle="--", linewidth=1.0, label=f"95% limits{spread}")
    ax.plot(c["n"], c["high_95"], color=NEUTRAL, linestyle="--", linewidth=1.0)
    ax.plot(c["n"], c["low_998"], color=NEUTRAL, linestyle=":", linewidth=1.2, label=f"99.8% limits{spread}")
    ax.plot(c["n"], c["high_998"], color=NEUTRAL, linestyle=":", linewidth=1.2)
    t = result.table
    inside = t["outside"] == ""
    ax.scatter(t.loc[inside, "n"], t.loc[inside, "value"], s=30, color="#8c959f", edgecolors="white",
               linewidths=0.5, zorder=3, label="within the limits")
    for direction, marker, colour in (("better", "^", PALETTE["on track"]), ("worse", "v", PALETTE["off track"])):
        sel = t["direction"] == direction
        if sel.any():
            ax.scatter(t.loc[sel, "n"], t.loc[sel, "value"], s=60, marker=marker, color=colour,
                       edgecolors=NEUTRAL, linewidths=0.6, zorder=4, label=f"outside: {direction}")
            for _, r in t[sel].iterrows():
                ax.annotate(chart_text(names.get(r["unit"], r["unit"])), (r["n"], r["value"]), xytext=(6, 4),
                            textcoords="offset points", fontsize=CHART_FONT_PT, color=NEUTRAL)
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if len(t):
        ax.set_xlim(max(float(t["n"].min()) / 1.6, 1.0), float(t["n"].max()) * 1.25)
    pool = list(t["value"]) + list(c["low_998"].iloc[-3:]) + list(c["high_998"].iloc[-3:]) + [result.centre]
    limits = robust_range([v for v in pool if np.isfinite(v)], pad=0.15)
    if limits is not None:
        ax.set_ylim(*limits)
    if result.unit == "%":
        _percent_axis(ax, 100.0)
    ax.set_xlabel(f"{unit_label or 'observations'} (n, log scale)", fontsize=CHART_FONT_PT)
    unit = {"%": "%", "hours": "hours", "points": "points"}.get(result.unit, "")
    ax.set_ylabel(result.label + (f" ({unit})" if unit else ""), fontsize=CHART_FONT_PT)
    ax.tick_params(labelsize=CHART_FONT_PT)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=CHART_FONT_PT, frameon=False)
    return ax
