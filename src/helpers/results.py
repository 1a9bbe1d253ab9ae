"""How result objects show themselves in a notebook: a one-sentence summary, a compact reader table (with n and
intervals, :func:`helpers.formatting.reader_table`) and how to get the full table; a short ``repr``.

Use the mixin :class:`ResultDisplay` as a base class, or the decorator :func:`displayable` on an existing
dataclass (it replaces the dataclass-generated ``__repr__``, which printed every row of every table, and adds
``_repr_html_`` unless the class defines its own). A class customises the compact table by defining
``_display_frame() -> (DataFrame, formats)`` and the sentence by ``_display_sentence() -> str``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.formatting import fmt_interval, fmt_number, html_escape, interval_decimals, reader_table, shorten

__all__ = ["ResultDisplay", "displayable", "compact_frame", "first_sentence", "clip"]

MAX_ROWS = 12
MAX_COLUMNS = 8


def first_sentence(text: object, limit: int = 400) -> str:
    """The first paragraph of a summary, at most ``limit`` characters, with Markdown emphasis removed."""
    s = str(text or "").strip().split("\n\n")[0].replace("\n", " ").replace("**", "").replace("\\", "")
    return s if len(s) <= limit else s[: limit - 1].rsplit(" ", 1)[0] + "…"


def clip(text: object, limit: int = 160) -> str:
    """Text cut to ``limit`` characters (with "…"), without quotes (for a repr)."""
    t = str(text)
    return t if len(t) <= limit else t[: limit - 1] + "…"


def _interval_cell(lo, hi, unit: str = "") -> str:
    """An interval with one decimal below 100 (more when its ends would print alike), none above."""
    try:
        big = max(abs(float(lo)), abs(float(hi))) >= 100
    except (TypeError, ValueError):
        big = False
    d = interval_decimals(lo, hi, least=0 if big else 1)
    if unit == "%":
        return fmt_interval(lo, hi, d, percent=True, share=False)
    return fmt_interval(lo, hi, d)


def compact_frame(table: pd.DataFrame, unit: str = "") -> tuple[pd.DataFrame, dict]:
    """A reader's version of a result table: index as columns, ``ci_low``/``ci_high`` (or ``low``/``high``)
    joined into one "95% CI" column next to the value, numbers rounded, at most :data:`MAX_COLUMNS` columns
    (identifiers, value, interval, n, flags first)."""
    df = table.copy()
    if not isinstance(df.index, pd.RangeIndex) or df.index.name:
        df = df.reset_index()
    for lo, hi in (("ci_low", "ci_high"), ("low", "high"), ("share_low", "share_high")):
        if {lo, hi} <= set(df.columns):
            pos = list(df.columns).index(lo)
            col = "95% CI" if lo == "ci_low" else ("Share 95% CI" if lo == "share_low" else "Interval")
            cells = [_interval_cell(a, b, unit) for a, b in zip(df[lo], df[hi])]
            df = df.drop(columns=[lo, hi])
            df.insert(min(pos, len(df.columns)), col, cells)
    ids = [c for c in df.columns if df[c].dtype == object and not str(c).endswith("CI") and c != "Interval"]
    priority = ["value", "estimate", "importance", "share", "rank", "95% CI", "Share 95% CI", "Interval", "n",
                "small", "small_group", "p_value", "p_adjusted"]
    ordered = ids[:3] + [c for c in priority if c in df.columns and c not in ids[:3]]
    rest = [c for c in df.columns if c not in ordered]
    keep = (ordered + rest)[:MAX_COLUMNS]
    keep = [c for c in df.columns if c in keep]  # table order
    formats: dict = {}
    for c in keep:
        if c in ("p_value", "p_adjusted", "p"):
            formats[c] = "p"
        elif c == "share":
            formats[c] = "percent:1"
        elif c == "n":
            formats[c] = "int"
        elif pd.api.types.is_float_dtype(df[c].dtype):
            vals = df[c].to_numpy(dtype=float)
            big = np.nanmax(np.abs(vals)) if np.isfinite(vals).any() else 0
            formats[c] = "number:" + ("0" if big >= 1000 else "1" if big >= 10 else "3" if big < 1 else "2")
    return df[keep], formats


class ResultDisplay:
    """Mixin: ``_repr_html_`` (summary sentence, compact reader table, how to get the full table) and a short
    ``__repr__``. Expects ``summary()`` and/or ``table`` on the class; both are optional."""

    _full_table_hint = "`.table`"

    def _display_sentence(self) -> str:
        summary = getattr(self, "summary", None)
        try:
            text = summary() if callable(summary) else (summary or "")
        except Exception as exc:  # noqa: BLE001 - a display must never raise
            text = f"(summary not available: {shorten(str(exc), 120)})"
        return first_sentence(text)

    def _display_table(self) -> pd.DataFrame | None:
        try:
            t = getattr(self, "table", None)
        except Exception:  # noqa: BLE001
            return None
        return t if isinstance(t, pd.DataFrame) else None

    def _display_frame(self) -> tuple[pd.DataFrame, dict] | None:
        t = self._display_table()
        if t is None or t.empty:
            return None
        return compact_frame(t, getattr(self, "unit", "") or "")

    def _repr_html_(self) -> str:
        name = type(self).__name__
        parts = [f'<div class="kit-result"><p><strong>{html_escape(name)}</strong>: '
                 f"{html_escape(self._display_sentence())}</p>"]
        try:
            shown = self._display_frame()
        except Exception:  # noqa: BLE001 - fall back to the sentence alone
            shown = None
        full = self._display_table()
        if shown is not None:
            frame, formats = shown
            labels = {c: c for c in frame.columns if "CI" in str(c)}
            parts.append(reader_table(frame, formats=formats, labels=labels, max_rows=MAX_ROWS))
        if full is not None:
            rows, cols = full.shape
            parts.append(f'<p class="kit-result-hint">Full table: {html_escape(self._full_table_hint)} '
                         f"({fmt_number(rows)} rows × {fmt_number(cols)} columns)"
                         + ("; `.plot(ax)` draws it" if callable(getattr(self, "plot", None)) else "")
                         + "; `.summary()` for the full text.</p>")
        parts.append("</div>")
        return "".join(parts)

    def __repr__(self) -> str:
        t = self._display_table()
        size = f" [{t.shape[0]} rows]" if t is not None else ""
        return f"<{type(self).__name__}{size}: {clip(self._display_sentence(), 160)}>"


def _generated_repr(cls) -> bool:
    r = cls.__dict__.get("__repr__")
    return r is None or hasattr(r, "__wrapped__")  # dataclass' repr is wrapped by reprlib.recursive_repr


def displayable(cls):
    """Class decorator: give a (data)class the :class:`ResultDisplay` ``_repr_html_`` and short ``__repr__``
    (the dataclass-generated repr is replaced; a class's own ``_repr_html_``/``__repr__`` are kept)."""
    for name in ("_display_sentence", "_display_table", "_display_frame", "_full_table_hint"):
        if name not in cls.__dict__ and not hasattr(cls, name):
            setattr(cls, name, ResultDisplay.__dict__[name])
    if "_repr_html_" not in cls.__dict__:
        cls._repr_html_ = ResultDisplay._repr_html_
    if _generated_repr(cls):
        cls.__repr__ = ResultDisplay.__repr__
    return cls
