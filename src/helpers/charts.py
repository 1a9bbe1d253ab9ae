"""Charts: one function per chart, each drawing on a matplotlib axis it is given (seaborn style).

Every function takes ``ax=None`` (a new figure is made when omitted) and returns the axis, so notebooks
compose figures and tests render them headless. The kit's theme is applied by :func:`apply_theme`.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)  # headless by default; notebooks' inline backend still works
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

PALETTE = {
    "achieved": "#1a7f37",
    "on track": "#2da44e",
    "at risk": "#d4a72c",
    "off track": "#cf222e",
    "missed": "#82071e",
    "no data": "#6e7781",
}
ACCENT = "#0969da"
TARGET = "#cf222e"


def apply_theme() -> None:
    """The kit's look: seaborn whitegrid, readable sizes, colour-blind-safe palette."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.figsize": (8, 4.5), "figure.dpi": 100, "axes.titleweight": "bold",
                         "axes.spines.top": False, "axes.spines.right": False})


def new_axis(ax=None, figsize=None):
    """Return ``ax`` or a fresh axis on a new figure."""
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax
