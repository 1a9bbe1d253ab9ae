"""Charts: one function per chart, each drawing on a matplotlib axis it is given (seaborn style).

Every function takes ``ax=None`` (a new figure is made when omitted) and returns the axis, so notebooks
compose figures and tests render them headless. The kit's theme is applied by :func:`apply_theme`.
"""
from __future__ import annotations

import os
import sys

import matplotlib

if not os.environ.get("MPLBACKEND") and "ipykernel" not in sys.modules:
    matplotlib.use("Agg", force=False)  # headless scripts and tests; notebooks keep their inline backend
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from helpers.formatting import chart_text  # noqa: E402

PALETTE = {
    "achieved": "#1a7f37",
    "on track": "#2da44e",
    "at risk": "#d4a72c",
    "off track": "#cf222e",
    "missed": "#82071e",
    "no data": "#6e7781",
    "too little data": "#8c959f",
}
ACCENT = "#0969da"
TARGET = "#cf222e"


def apply_theme() -> None:
    """The kit's look: seaborn whitegrid, readable sizes, colour-blind-safe palette."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.figsize": (8, 4.5), "figure.dpi": 100, "axes.titleweight": "bold",
                         "axes.spines.top": False, "axes.spines.right": False})


def show_figure(fig=None, alt: str = "", *, dpi: int = 110) -> None:
    """Show a figure in a report as a PNG that carries its alt text, then close it.

    The PNG is rendered here (``fig.savefig``), so the chart appears whatever matplotlib backend the process
    was given (``MPLBACKEND=Agg`` on a headless scheduler included), and it is displayed with the output
    metadata ``{"image/png": {"alt": alt}}``, which the report export turns into the ``<img alt>`` attribute.
    ``alt`` says what the chart shows (the finding, not "chart"); it is required."""
    import base64  # noqa: PLC0415
    import io  # noqa: PLC0415

    from IPython.display import display  # noqa: PLC0415

    fig = plt.gcf() if fig is None else fig
    if not str(alt or "").strip():
        raise ValueError("show_figure needs an alt text that says what the chart shows")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    display({"image/png": data}, raw=True, metadata={"image/png": {"alt": " ".join(str(alt).split())}})


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


def kpi_trend(series, *, target=None, deadline=None, start=None, forecast=None, status=None, title=None,
              ylabel=None, percent=None, value_label="monthly value", ax=None):
    """A KPI's monthly trend with its confidence band, the target line, the deadline and a forecast band.

    ``series``: DataFrame ``period, value[, ci_low, ci_high]``; ``forecast``: DataFrame
    ``period, value, low, high`` (drawn dashed with a shaded prediction band); ``status`` colours the
    forecast with :data:`PALETTE`; ``percent`` is the value of 100% (100 for KPIs in percent, 1 for
    shares) to label the y axis in percent, or None. Empty or missing series draw a "no data" note instead of failing.
    """
    import pandas as pd  # noqa: PLC0415

    ax = new_axis(ax)
    colour = PALETTE.get(status or "", ACCENT)
    has_data = series is not None and len(series) > 0
    if has_data:
        s = series.sort_values("period")
        ax.plot(s["period"], s["value"], color=ACCENT, marker="o", markersize=3, linewidth=1.6, label=value_label)
        if {"ci_low", "ci_high"} <= set(s.columns) and s[["ci_low", "ci_high"]].notna().any().any():
            ax.fill_between(s["period"], s["ci_low"].astype(float), s["ci_high"].astype(float), color=ACCENT,
                            alpha=0.15, linewidth=0, label="95% confidence interval")
    else:
        ax.text(0.5, 0.5, "no data in this period", transform=ax.transAxes, ha="center", va="center",
                color=PALETTE["no data"])
    if forecast is not None and len(forecast) > 0:
        f = forecast.sort_values("period")
        ax.plot(f["period"], f["value"], color=colour, linestyle="--", linewidth=1.6, label="forecast")
        ax.fill_between(f["period"], f["low"].astype(float), f["high"].astype(float), color=colour, alpha=0.18,
                        linewidth=0, label="prediction interval")
    if target is not None:
        ax.axhline(target, color=TARGET, linestyle=":", linewidth=1.5, label="target")
    if start is not None:
        ax.axvline(pd.Timestamp(start), color="#57606a", linestyle="-", linewidth=0.8, alpha=0.6)
    if deadline is not None:
        ax.axvline(pd.Timestamp(deadline), color=TARGET, linestyle="--", linewidth=1.2, label="deadline")
        if target is not None:
            ax.plot([pd.Timestamp(deadline)], [target], marker="D", color=TARGET, markersize=7, zorder=5)
    if percent:
        _percent_axis(ax, float(percent))
    if has_data or (forecast is not None and len(forecast) > 0):
        import matplotlib.dates as mdates  # noqa: PLC0415

        locator = mdates.AutoDateLocator(maxticks=8)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if title:
        ax.set_title(chart_text(title))  # free text (objective title, owner): a "$" must not start mathtext
    ax.set_xlabel("")
    if ylabel:
        ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return ax


_TEXT_ON = {"at risk": "#1f2328"}


def status_badge_html(status: str) -> str:
    """An HTML badge (coloured pill) for a status; unknown statuses get the "no data" grey. Escaped."""
    import html  # noqa: PLC0415

    colour = PALETTE.get(status, PALETTE["no data"])
    text_colour = _TEXT_ON.get(status, "#ffffff")
    return (f'<span class="status-badge" style="background:{colour};color:{text_colour};padding:2px 10px;'
            f'border-radius:10px;font-weight:600;white-space:nowrap;font-size:0.9em">{html.escape(str(status))}'
            "</span>")


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


def cascade_tree(tree, ax=None, *, width_per_leaf=2.6, wrap=22):
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
        ax = new_axis(None, figsize=(max(6.0, width_per_leaf * n_leaves), 1.9 * depth + 0.6))
    by_id = {r.id: r for r in rows}
    for r in rows:
        if isinstance(r.parent, str) and r.parent in x:
            ax.plot([x[r.parent], x[r.id]], [-by_id[r.parent].level, -r.level], color="#8c959f", linewidth=1,
                    zorder=1)
    for r in rows:
        colour = PALETTE.get(r.status, PALETTE["no data"])
        label = (textwrap.fill(chart_text(r.title), wrap) + "\n" + textwrap.fill(chart_text(r.owner), wrap)
                 + f"\n[{r.status}]")
        ax.text(x[r.id], -r.level, label, ha="center", va="center", fontsize=7.5, zorder=2,
                color=_TEXT_ON.get(r.status, "white"),
                bbox={"boxstyle": "round,pad=0.4", "facecolor": colour, "edgecolor": "white"})
    ax.set_xlim(-0.7, n_leaves - 0.3)
    ax.set_ylim(-(depth - 1) - 0.6, 0.6)
    ax.axis("off")
    handles = [Patch(color=c, label=s) for s, c in PALETTE.items() if s in {r.status for r in rows}]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    return ax
