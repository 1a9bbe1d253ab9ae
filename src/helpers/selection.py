"""One selection model for every analysis: ``filters=`` (column -> value or list of values) and ``by=``
(a column or list of columns), the same in :mod:`helpers.kpis`, :mod:`helpers.drivers`,
:mod:`helpers.retention`, :mod:`helpers.relate` and the objective files.

* **Names** are the data contract's (``agent_id``, ``customer_id``); the objective files' short names are
  accepted as documented aliases (:data:`ALIASES`: ``agent`` -> ``agent_id``, ``customer`` ->
  ``customer_id``, ``person`` -> ``person_id``, ``manager`` -> ``manager_id``).
* **Values** of text columns match exactly, else ignoring case, else by :func:`helpers.formatting.slug`
  (``"billing"``, ``"BILLING"`` and ``"Billing"`` select the department ``Billing``; ``"technical_support"``
  selects ``Technical Support``). A value that matches nothing is a :class:`SelectionError` naming the filter
  and listing the values that exist.
* **Customer dimensions**: a survey or ticket table has a ``customer_id``; any column of ``customers``
  (segment, region, plan, any extra dimension) can filter or group it. The join is done by DuckDB
  (:func:`source_sql`: ``LEFT JOIN customers USING customer_id``), never by hand in pandas.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from helpers.errors import KitError
from helpers.formatting import shorten, slug

__all__ = ["ALIASES", "SelectionError", "canonical", "as_columns", "normalize_filters", "match_values",
           "table_columns", "source_sql", "resolve_filters", "where_sql", "describe_filters", "connection_of",
           "select_rows", "unmatched_values", "listing"]

ALIASES = {"agent": "agent_id", "customer": "customer_id", "person": "person_id", "manager": "manager_id"}
"""Short names (as written in ``params/departments/*.yaml`` filters) -> contract column names."""

MAX_LISTED = 25


class SelectionError(KitError):
    """A filter or grouping names a column or value the data does not have; the message says which filter and
    lists what exists."""


def canonical(column: object) -> str:
    """The contract name of a filter or grouping column (aliases resolved)."""
    name = str(column)
    return ALIASES.get(name, name)


def as_columns(by) -> list[str]:
    """``by`` as a list of contract column names (``None`` -> ``[]``, one string -> one column)."""
    if by is None:
        return []
    if isinstance(by, str):
        return [canonical(by)]
    try:
        return [canonical(c) for c in by]
    except TypeError:
        raise SelectionError(f"by must be a column name or a list of column names, got {shorten(by)}") from None


def normalize_filters(filters) -> dict[str, list]:
    """``{column: value or list}`` -> ``{contract column: [values]}``; ``None``/``{}`` -> ``{}``."""
    if not filters:
        return {}
    if not isinstance(filters, Mapping):
        raise SelectionError(f"filters must be a dict column -> value or list of values "
                             f"(e.g. {{'department': 'Billing'}}), got {shorten(filters)}")
    out: dict[str, list] = {}
    for col, val in filters.items():
        vals = list(val) if isinstance(val, (list, tuple, set, frozenset)) else [val]
        if not vals:
            raise SelectionError(f"filter {shorten(col)} has an empty list of values")
        out.setdefault(canonical(col), []).extend(vals)
    return out


def describe_filters(filters) -> str:
    """``{'department': ['Billing']}`` -> ``"department='Billing'"`` (for messages)."""
    parts = []
    for col, vals in normalize_filters(filters).items():
        shown = shorten(vals[0], 40) if len(vals) == 1 else shorten(vals, 60)
        parts.append(f"{col}={shown}")
    return ", ".join(parts) or "no filters"


def listing(values: Iterable[object]) -> str:
    """The distinct values, sorted and quoted, at most :data:`MAX_LISTED` (for messages)."""
    vals = sorted({str(v) for v in values if v is not None})
    shown = ", ".join(shorten(v, 40) for v in vals[:MAX_LISTED])
    more = len(vals) - MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "") if vals else "(none)"


def match_values(column: str, wanted: Iterable[object], available: Iterable[object], *, table: str = "") -> list:
    """The values of ``available`` that ``wanted`` selects: exact, else case-insensitive, else by slug.

    Raises :class:`SelectionError` naming the filter and listing the available values when one matches none.
    """
    avail = [v for v in available if v is not None]
    exact = set(avail)
    by_case: dict[str, list] = {}
    by_slug: dict[str, list] = {}
    for v in avail:
        if isinstance(v, str):
            by_case.setdefault(v.casefold(), []).append(v)
            by_slug.setdefault(slug(v), []).append(v)
    out: list = []
    for w in wanted:
        try:
            hit = [w] if w in exact else []
        except TypeError:  # unhashable
            hit = []
        if not hit and isinstance(w, str):
            hit = by_case.get(w.casefold()) or (by_slug.get(slug(w)) if slug(w) else None) or []
        if not hit and not isinstance(w, str) and w is not None:
            hit = [v for v in avail if str(v) == str(w)]
        if not hit:
            where = f" in {table}" if table else ""
            raise SelectionError(f"filter {column}={shorten(w, 60)} matches no rows{where}: {column} has the "
                                 f"values {listing(avail)}")
        out.extend(h for h in hit if h not in out)
    return out


def unmatched_values(wanted: Iterable[object], available: Iterable[object]) -> list:
    """The values of ``wanted`` that select nothing in ``available`` under :func:`match_values`' rules (exact,
    case, slug), all of them (:func:`match_values` stops at the first), e.g. to list every bad value at once."""
    avail = list(available)
    bad = []
    for w in wanted:
        try:
            match_values("", [w], avail)
        except SelectionError:
            bad.append(w)
    return bad


# ---------------------------------------------------------------------------------------------- DuckDB
def _quote(name: object) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def connection_of(data):
    """A DuckDB connection holding ``data``'s tables: a Dataset's ``.con``, a connection as is, or a new
    in-memory connection with a dict of DataFrames (or one ``responses``/``tickets``/``customers`` frame
    given as ``table``) registered as views."""
    import duckdb  # noqa: PLC0415

    if isinstance(data, duckdb.DuckDBPyConnection):
        return data
    con = getattr(data, "con", None)
    if con is not None:
        return con
    if isinstance(data, Mapping):
        from helpers.engine.duckdb_engine import duckdb_connection  # noqa: PLC0415 - memory limit, spill folder

        con = duckdb_connection()
        for name, frame in data.items():
            con.register(str(name), frame)
        return con
    raise SelectionError(f"expected a Dataset, a DuckDB connection or a dict of DataFrames, got "
                         f"{type(data).__name__}")


def table_columns(con, table: str) -> list[str] | None:
    """The columns of ``table`` in ``con``, or None when it has no such table."""
    try:
        return [r[0] for r in con.execute(f"DESCRIBE {_quote(table)}").fetchall()]
    except Exception:  # noqa: BLE001 - duckdb.CatalogException and friends: no such table
        return None


def source_sql(con, table: str, needed: Iterable[str], *, what: str = "") -> tuple[str, list[str]]:
    """A FROM item for ``table`` that also has every column of ``needed``: the table itself, or the table
    LEFT JOINed with ``customers`` on ``customer_id`` for the customer columns it lacks (segment, region, ...),
    aliased to the table's own name so the rest of a query is unchanged. Returns ``(sql, columns)``."""
    own = table_columns(con, table)
    if own is None:
        raise SelectionError(f"{what + ': ' if what else ''}the data has no table {table!r}")
    extra = [c for c in dict.fromkeys(needed) if c not in own]
    if not extra:
        return _quote(table), own
    cust = table_columns(con, "customers") if table != "customers" else None
    joinable = cust is not None and "customer_id" in own and "customer_id" in cust
    missing = [c for c in extra if not (joinable and c in cust)]
    if missing:
        col = missing[0]
        other = f"; customers has {', '.join(c for c in cust if c != 'customer_id')}" if joinable else (
            "; no customers table to join" if cust is None and table != "customers" else "")
        raise SelectionError(f"{what + ': ' if what else ''}cannot filter or group by {col!r}: table {table} has "
                             f"no such column (its columns: {', '.join(own)}){other}")
    picks = ", ".join(f"c.{_quote(c)}" for c in extra)
    sql = (f"(SELECT t.*, {picks} FROM {_quote(table)} AS t LEFT JOIN customers AS c "
           f"ON t.customer_id = c.customer_id) AS {_quote(table)}")
    return sql, [*own, *extra]


_MATCHED: "weakref.WeakKeyDictionary" = None  # connection -> {(source, column, values): matched values}


def _matched_cache(con) -> dict:
    global _MATCHED
    import weakref  # noqa: PLC0415

    if _MATCHED is None:
        _MATCHED = weakref.WeakKeyDictionary()
    try:
        return _MATCHED.setdefault(con, {})
    except TypeError:  # a connection that takes no weak reference: no cache
        return {}


def resolve_filters(con, source: str, filters, *, table: str) -> dict[str, list]:
    """Filters with their values matched to the values in the data (see :func:`match_values`). Exact matches
    are remembered per connection (a report asks for the same department many times)."""
    out = {}
    cache = _matched_cache(con)
    for col, wanted in normalize_filters(filters).items():
        q = _quote(col)
        params = [w for w in wanted if w is not None]
        try:
            key = (source, col, tuple(wanted))
            hash(key)
        except TypeError:
            key = None
        if key is not None and key in cache:
            out[col] = list(cache[key])
            continue
        found = []
        if params:
            try:
                found = [r[0] for r in con.execute(
                    f"SELECT DISTINCT {q} FROM {source} WHERE {q} IN ({', '.join('?' for _ in params)})",
                    params).fetchall()]
            except Exception:  # noqa: BLE001 - a value of another type: matched below by its text
                found = []
        if len(found) >= len(set(map(str, params))) and None not in wanted:
            out[col] = found
            if key is not None:
                cache[key] = tuple(found)
            continue
        avail = [r[0] for r in con.execute(f"SELECT DISTINCT {q} FROM {source} LIMIT 100000").fetchall()]
        out[col] = match_values(col, [w for w in wanted if w is not None], avail, table=table) if params else []
        if None in wanted:
            out[col].append(None)
    return out


def where_sql(filters: Mapping[str, list], params: list, alias: str = "") -> list[str]:
    """SQL clauses (``col IN (?, ...)``; ``None`` -> ``IS NULL``) for resolved filters; values appended to
    ``params``."""
    clauses = []
    for col, vals in filters.items():
        q = f"{alias}{_quote(col)}"
        real = [v for v in vals if v is not None]
        parts = []
        if real:
            parts.append(f"{q} IN ({', '.join('?' for _ in real)})")
            params.extend(real)
        if len(real) < len(vals):
            parts.append(f"{q} IS NULL")
        clauses.append("(" + " OR ".join(parts) + ")" if len(parts) > 1 else parts[0])
    return clauses


def select_rows(data, table: str, filters=None, columns=None, *, start=None, end=None,
                date_column: str | None = None, what: str = "") -> "pd.DataFrame":
    """Rows of ``table`` selected by ``filters`` (and the inclusive days ``start .. end`` on
    ``date_column``), with ``columns`` (default: all of the table's) plus every filter column.

    ``data`` is a Dataset / DuckDB connection / dict of DataFrames (the query runs in DuckDB, customer columns
    joined on ``customer_id``) or the table itself as a DataFrame (filtered in pandas; it must have the
    columns). An empty result is a :class:`SelectionError` naming the filters and period."""
    import pandas as pd  # noqa: PLC0415

    wanted = normalize_filters(filters)
    label = f"{what + ': ' if what else ''}"
    if isinstance(data, pd.DataFrame):
        df = data
        absent = [c for c in [*wanted, *(columns or [])] if c not in df.columns]
        if absent:
            raise SelectionError(f"{label}cannot filter by or use {absent[0]!r}: the {table} frame has no such "
                                 f"column (columns: {', '.join(map(str, df.columns))}); pass the Dataset to use "
                                 "customer columns (segment, region, ...)")
        mask = pd.Series(True, index=df.index)
        for col, vals in wanted.items():
            matched = match_values(col, vals, pd.unique(df[col].dropna()), table=table)
            mask &= df[col].isin(matched)
        if date_column and (start is not None or end is not None):
            d = pd.to_datetime(df[date_column])
            if start is not None:
                mask &= d >= pd.Timestamp(start)
            if end is not None:
                mask &= d < pd.Timestamp(end) + pd.Timedelta(days=1)
        out = df.loc[mask.to_numpy(dtype=bool)]
        if columns is not None:
            out = out[list(dict.fromkeys([*columns, *wanted]))]
    else:
        con = connection_of(data)
        own = table_columns(con, table)
        if own is None:
            raise SelectionError(f"{label}the data has no table {table!r}")
        needed = list(dict.fromkeys([*(columns or own), *wanted]))
        source, cols = source_sql(con, table, needed, what=what)
        resolved = resolve_filters(con, source, wanted, table=table)
        params: list = []
        clauses = where_sql(resolved, params)
        if date_column and start is not None:
            clauses.append(f"{_quote(date_column)} >= ?")
            params.append(pd.Timestamp(start).to_pydatetime())
        if date_column and end is not None:
            clauses.append(f"{_quote(date_column)} < ?")
            params.append((pd.Timestamp(end) + pd.Timedelta(days=1)).to_pydatetime())
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        out = con.execute(f"SELECT {', '.join(_quote(c) for c in needed)} FROM {source}{where}", params).df()
    if len(out) == 0:
        period = f"; {start or 'the start'} to {end or 'the end'}" if (start is not None or end is not None) else ""
        raise SelectionError(f"{label}no {table} rows match {describe_filters(filters)}{period}")
    return out
