"""Text that reaches a stakeholder page: escaping for Markdown and HTML, and shortened values for messages.

Every piece of text that comes from params (objective titles, owner names, notes) or from data (segment values,
team names, customer comments) and is put into a Markdown string must go through :func:`md_escape`, and into an
HTML string through :func:`html_escape`. :func:`md_escape` makes the text inert in both languages: after it, the
text renders as exactly the characters it had, never as a link, an image, emphasis, a heading or raw HTML.

:func:`shorten` is for error messages: a value from a file is shown at most ``limit`` characters long.
"""
from __future__ import annotations

import html
import re
import reprlib

__all__ = ["chart_text", "html_escape", "md_escape", "shorten"]

# CommonMark lets a backslash escape any ASCII punctuation; these are the ones that can start or form Markdown
# syntax (links, images, emphasis, code, headings, lists, tables, math); the HTML-special characters (& < > " ')
# become entities instead (a blockquote's ">" too: "&gt;" starts no block).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$:])")
_WHITESPACE_RUN = re.compile(r"\s+")


def html_escape(text: object) -> str:
    """HTML-escape any free text (``&``, ``<``, ``>``, quotes); ``None`` -> ``""``."""
    return html.escape("" if text is None else str(text), quote=True)


def md_escape(text: object) -> str:
    """Free text made inert for Markdown *and* HTML, on one line.

    HTML-special characters become entities (so ``<img src=...>`` stays text), every Markdown punctuation
    character gets a backslash (so ``[click](javascript:alert(1))`` and ``![x](http://host/x.png)`` stay text,
    ``*`` is no emphasis, ``#`` no heading, ``$`` no math), and line breaks become spaces (so a value cannot
    start a new block). ``None`` -> ``""``.
    """
    if text is None:
        return ""
    one_line = _WHITESPACE_RUN.sub(" ", str(text)).strip()
    # backslashes first, entities second: an entity the escaping produces (``&#x27;`` for ``'``) stays whole,
    # and ``<``, ``>``, ``&`` and quotes are handled by the entities alone (a ``\\`` before ``&gt;`` would show)
    return html.escape(_MD_SPECIAL.sub(r"\\\1", one_line), quote=True)


def chart_text(text: object) -> str:
    """Free text for a matplotlib title, label or annotation, shown as written: every ``$`` is escaped, so a
    title like ``Cut $x^$ cost`` neither starts mathtext (unbalanced, it raises while the PNG is saved) nor
    turns ``$5 and $10`` into italic math. ``None`` -> ``""``."""
    return "" if text is None else str(text).replace("$", r"\$")


def clip_text(text: object, limit: int = 160) -> str:
    """``text`` for a sentence on a page: one line (whitespace collapsed), at most ``limit`` characters, cut with
    an ellipsis; not quoted (:func:`shorten` quotes, for error messages). Escape it where it goes into HTML."""
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[: max(limit - 1, 0)].rstrip() + "\u2026"


def shorten(value: object, limit: int = 80) -> str:
    """``repr``-like display of a value for an error message, at most ``limit`` characters.

    Containers are never expanded in full (a YAML alias bomb stays one short line): :mod:`reprlib` shows at
    most 3 levels and the first 6 items of each (``[[1, 2, ...], ...]``), and the result is cut to ``limit``.
    """
    if isinstance(value, str):
        shown = repr(value[: limit + 1])
    else:
        try:
            shown = _BOUNDED_REPR.repr(value)
        except Exception:  # noqa: BLE001 - a value whose repr fails still gets a message
            shown = f"<{type(value).__name__}>"
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


_BOUNDED_REPR = reprlib.Repr()
_BOUNDED_REPR.maxlevel = 3
_BOUNDED_REPR.maxlist = _BOUNDED_REPR.maxtuple = _BOUNDED_REPR.maxset = _BOUNDED_REPR.maxfrozenset = 6
_BOUNDED_REPR.maxdeque = _BOUNDED_REPR.maxarray = 6
_BOUNDED_REPR.maxdict = 4
_BOUNDED_REPR.maxstring = _BOUNDED_REPR.maxother = 60
_BOUNDED_REPR.maxlong = 40


# ----------------------------------------------------------------------------------------------------------
# Numbers, intervals, labels and tables as readers see them (one place for every report and result object)
# ----------------------------------------------------------------------------------------------------------
import math as _math  # noqa: E402
import unicodedata as _unicodedata  # noqa: E402

__all__ += ["NA", "column_label", "fmt_chance", "fmt_currency", "fmt_interval", "fmt_number", "fmt_p_value", "fmt_percent",
            "interval_decimals", "reader_table", "slug"]

NA = "n/a"
CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "INR": "₹", "CHF": "CHF ", "": ""}

# column names a reader meets, spelled for readers; everything else goes through the generic rule
_LABELS = {
    "csat": "CSAT", "nps": "NPS", "ces": "CES", "fcr": "First-contact resolution", "clv": "Lifetime value",
    "n": "n", "n_responses": "Responses", "n_tickets": "Tickets", "n_customers": "Customers",
    "ci_low": "95% CI low", "ci_high": "95% CI high", "pi_low": "80% PI low", "pi_high": "80% PI high",
    "p_value": "p-value", "p": "p-value", "se": "Std. error", "mape": "Mean abs. % error", "r2": "R²",
    "first_response_at": "First response", "first_response_hours": "First response (hours)",
    "resolution_hours": "Resolution time (hours)", "response_date": "Response date", "agent_id": "Agent",
    "team": "Team", "segment": "Segment", "department": "Department", "channel": "Channel",
    "customer_id": "Customer", "signup_date": "Signup date", "churn_date": "Churn date",
    "monthly_revenue": "Monthly revenue",
}
_ACRONYMS = {"csat", "nps", "ces", "fcr", "clv", "ci", "pi", "id", "kpi", "sbg", "ets", "arima", "hr"}


def fmt_number(x: object, decimals: int = 0, *, signed: bool = False, na: str = NA) -> str:
    """``1234.5`` -> ``"1,235"`` (thousands separators, ``decimals`` places); ``None``/NaN/inf -> ``na``.
    ``signed``: a ``+`` on positive values; ``-0`` never shows."""
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return na
    if not _math.isfinite(v):
        return na
    text = f"{v:+,.{decimals}f}" if signed else f"{v:,.{decimals}f}"
    if text.lstrip("+-").strip("0.,") == "":  # rounds to zero: no sign
        text = text.lstrip("+-")
    return text


def fmt_percent(x: object, decimals: int = 0, *, share: bool = True, signed: bool = False, na: str = NA) -> str:
    """A percentage: ``0.812`` -> ``"81%"`` when ``share`` (a 0-1 share), ``81.2`` -> ``"81%"`` otherwise."""
    try:
        v = float(x) * (100.0 if share else 1.0)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return na
    text = fmt_number(v, decimals, signed=signed, na=na)
    return text if text == na else text + "%"


def fmt_chance(p: object, na: str = NA) -> str:
    """A probability for readers: whole percent, but ``"<1%"`` / ``">99%"`` where rounding would show 0% or 100%
    (a forecast never makes an open objective impossible or certain); ``na`` when missing."""
    text = fmt_percent(p, 0, na=na)
    return {"0%": "<1%", "-0%": "<1%", "100%": ">99%"}.get(text, text)


def fmt_currency(x: object, currency: str = "", decimals: int = 0, *, signed: bool = False, na: str = NA) -> str:
    """Money with its currency from params (``report.yaml`` ``currency:``, an ISO code): ``"€68,117"``,
    ``"-$56"``, ``"1,234 SEK"`` for codes without a symbol here; no currency -> the plain number."""
    text = fmt_number(abs(float(x)) if _finite(x) else x, decimals, na=na)
    if text == na:
        return na
    code = (currency or "").strip().upper()
    sign = "-" if _finite(x) and float(x) < 0 and text.strip("0.,") else ("+" if signed and float(x) > 0 else "")
    if code in CURRENCY_SYMBOLS:
        return f"{sign}{CURRENCY_SYMBOLS[code]}{text}"
    return f"{sign}{text} {code}" if len(code) <= 3 and code.isalpha() else f"{sign}{text} {currency.strip()}"


def _finite(x: object) -> bool:
    try:
        return _math.isfinite(float(x))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def interval_decimals(low: object, high: object, least: int = 0, most: int = 3) -> int:
    """Fewest decimals (``least`` to ``most``) at which an interval's two ends print differently, so a
    sentence never says "95% CI 8 to 8" where a table says 7.6 to 8.1."""
    if not (_finite(low) and _finite(high)):
        return least
    for d in range(least, most + 1):
        if f"{float(low):.{d}f}" != f"{float(high):.{d}f}":
            return d
    return most


def fmt_interval(low: object, high: object, decimals: int | None = None, *, unit: str = "", percent: bool = False,
                 share: bool = True, na: str = NA, upper_na: str | None = None) -> str:
    """``"7.6 to 8.1"`` (``unit`` appended once: ``"7.6 to 8.1 hours"``; ``percent``: ``"58% to 60%"``).
    Ends are ordered low to high; ``decimals=None`` uses :func:`interval_decimals`. A missing end is ``na``
    (``upper_na`` for a missing upper end, e.g. ``"not reached"`` for a median survival time)."""
    lo_ok, hi_ok = _finite(low), _finite(high)
    if lo_ok and hi_ok and float(low) > float(high):
        low, high = high, low
    if percent:
        scale = 100.0 if share else 1.0
        d = interval_decimals(float(low) * scale if lo_ok else low, float(high) * scale if hi_ok else high) \
            if decimals is None else decimals
        lo = fmt_percent(low, d, share=share, na=na)
        hi = fmt_percent(high, d, share=share, na=upper_na or na)
        return f"{lo} to {hi}"
    d = interval_decimals(low, high) if decimals is None else decimals
    lo = fmt_number(low, d, na=na)
    hi = fmt_number(high, d, na=upper_na or na)
    return f"{lo} to {hi}" + (f" {unit}" if unit else "")


def fmt_estimate(point: object, low: object, high: object, *, percent: bool = False, share: bool = True,
                 least: int = 0, unit: str = "", na: str = NA) -> tuple[str, str]:
    """``(estimate, interval)`` printed with the same decimals: the fewest (at least ``least``) at which the
    interval's ends differ (:func:`interval_decimals`), so a sentence never reads "9% (95% CI 8.9% to 9.2%)"
    when millions of answers make the interval narrow. ``percent``/``share``/``unit`` as :func:`fmt_interval`."""
    scale = 100.0 if percent and share else 1.0
    if _finite(low) and _finite(high):
        d = interval_decimals(float(low) * scale, float(high) * scale, least=least)
    else:
        d = least
    point_text = fmt_percent(point, d, share=share, na=na) if percent else fmt_number(point, d, na=na)
    return point_text, fmt_interval(low, high, d, unit=unit, percent=percent, share=share, na=na)


def fmt_p_value(p: object, *, prefix: bool = False) -> str:
    """``"<0.001"`` below one in a thousand, else three decimals (``"0.031"``); ``prefix``: ``"p < 0.001"`` /
    ``"p = 0.031"``; missing -> ``"n/a"``."""
    if not _finite(p):
        return NA
    v = float(p)
    if v < 0.001:
        return "p < 0.001" if prefix else "<0.001"
    return f"p = {v:.3f}" if prefix else f"{v:.3f}"


def column_label(name: object) -> str:
    """A column or code name as a reader reads it: ``attr_speed`` -> ``"Speed"``, ``first_response_at`` ->
    ``"First response"``, ``segment_small_business`` -> ``"Segment: small business"``, ``mean_csat`` ->
    ``"Mean CSAT"``. Known names come from one table; any other snake_case becomes a sentence-case phrase."""
    text = str(name)
    key = text.strip().lower()
    if key in _LABELS:
        return _LABELS[key]
    if key.startswith("attr_"):
        return key[5:].replace("_", " ").strip().capitalize() or text
    if key.startswith("segment_"):
        return "Segment: " + key[8:].replace("_", " ")
    if "_" not in text and (not text.islower() or not text.replace(" ", "").isalnum()):
        return text  # already a label ("Status", "Team A", "95% CI", "p-value", "Mean rating (1-5)")
    words = [w.upper() if w in _ACRONYMS else w for w in key.replace("-", "_").split("_") if w]
    if not words:
        return text
    first = words[0] if words[0].isupper() else words[0].capitalize()
    return " ".join([first, *words[1:]])


_SLUG_BAD = re.compile(r"[^a-z0-9_-]+")


def slug(name: object) -> str:
    """The one slug of the kit: lower-case ``[a-z0-9_]``, accents folded, every other run of characters one
    ``_`` (``"Kundendienst Süd"`` -> ``"kundendienst_sud"``, ``"../../etc/passwd"`` -> ``"etc_passwd"``), at
    most 80 characters; ``""`` when nothing usable is left (callers that need a file name raise then)."""
    folded = _unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii").lower()
    text = _SLUG_BAD.sub("_", folded.replace("-", "_")).strip("_-")
    return re.sub(r"_+", "_", text)[:80].strip("_")


def reader_table(frame, *, formats: dict | None = None, labels: dict | None = None, columns: list | None = None,
                 currency: str = "", caption: str = "", na: str = NA, max_rows: int | None = None) -> str:
    """A DataFrame as an HTML table for stakeholders: no index, reader labels (:func:`column_label` unless
    ``labels`` names one), every cell formatted, escaped and never ``NaN``; text columns left-aligned, numbers
    right-aligned (class ``num``). ``formats``: column -> ``"int"``, ``"number:<d>"``, ``"percent:<d>"`` (a 0-1
    share), ``"points:<d>"`` (already in %), ``"currency"``, ``"p"``, ``"date"``, ``"text"`` or a callable
    ``value -> str``; columns not named are formatted by dtype (integers with separators, floats with 2
    decimals). ``max_rows``: only the first rows, with a line saying how many were left out."""
    import pandas as pd  # local: this module stays light

    formats = dict(formats or {})
    labels = dict(labels or {})
    df = frame if columns is None else frame.loc[:, list(columns)]
    if isinstance(df, pd.Series):
        df = df.to_frame()
    df = df.reset_index(drop=True) if not isinstance(df.index, pd.RangeIndex) or df.index.name else df
    shown = df if max_rows is None else df.head(max_rows)

    def formatter(col):
        spec = formats.get(col)
        if callable(spec):
            return spec
        kind, _, digits = (spec or "").partition(":")
        d = int(digits) if digits.isdigit() else None
        if kind == "int":
            return lambda v: fmt_number(v, 0, na=na)
        if kind == "number":
            return lambda v: fmt_number(v, 2 if d is None else d, na=na)
        if kind == "percent":
            return lambda v: fmt_percent(v, 0 if d is None else d, na=na)
        if kind == "points":
            return lambda v: fmt_percent(v, 0 if d is None else d, share=False, na=na)
        if kind == "currency":
            return lambda v: fmt_currency(v, currency, 0 if d is None else d, na=na)
        if kind == "p":
            return lambda v: fmt_p_value(v)
        if kind == "date":
            return lambda v: na if v is None or (isinstance(v, float) and _math.isnan(v)) or v is pd.NaT \
                else str(pd.Timestamp(v).date())
        if kind == "text":
            return lambda v: na if v is None or (isinstance(v, float) and _math.isnan(v)) else str(v)
        dtype = shown[col].dtype
        if pd.api.types.is_bool_dtype(dtype):
            return lambda v: na if v is None or v is pd.NA else ("yes" if v else "no")
        if pd.api.types.is_integer_dtype(dtype):
            return lambda v: fmt_number(v, 0, na=na)
        if pd.api.types.is_float_dtype(dtype):
            return lambda v: fmt_number(v, 2, na=na)
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return lambda v: na if pd.isna(v) else str(pd.Timestamp(v).date())
        return lambda v: na if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)

    head, numeric = [], []
    for col in shown.columns:
        is_num = (pd.api.types.is_numeric_dtype(shown[col].dtype) and not pd.api.types.is_bool_dtype(
            shown[col].dtype)) or str(formats.get(col, "")).split(":")[0] in (
            "int", "number", "percent", "points", "currency", "p")
        numeric.append(is_num)
        cls = ' class="num"' if is_num else ""
        head.append(f"<th{cls}>{html_escape(labels.get(col, column_label(col)))}</th>")
    body = []
    fmts = [formatter(c) for c in shown.columns]
    for row in shown.itertuples(index=False, name=None):
        cells = []
        for value, fmt, is_num in zip(row, fmts, numeric):
            cls = ' class="num"' if is_num else ""
            cells.append(f"<td{cls}>{html_escape(fmt(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html_escape(caption)}</caption>" if caption else ""
    more = ""
    if max_rows is not None and len(df) > max_rows:
        more = (f'<p class="kit-table-more">Showing the first {fmt_number(max_rows)} of {fmt_number(len(df))} '
                "rows.</p>")
    return (f'<table class="kit-table">{cap}<thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>{more}')
