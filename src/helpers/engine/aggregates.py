"""Aggregates computed by an engine (DuckDB or Spark), each a small tidy DataFrame, and the kit's results built
from them. The queries are written once (DuckDB dialect, see :mod:`helpers.engine.base`).

* :func:`kpi_aggregates`: per period and group, ``n``, ``total`` (sum), ``total_sq`` (sum of squares) and the
  numerators ``k1``/``k2`` of the KPI's proportions (promoters/detractors, top-2-box, one-contact, flag);
  :func:`kpi_series_from_aggregates` turns them into :func:`helpers.kpis.kpi_series`' table (same formulas:
  ``mean = total / n``, ``sd^2 = (n total_sq - total^2) / (n (n - 1))``).
* :func:`quantile_aggregates`: quantiles with distribution-free order-statistic intervals. The engine ranks
  the values in each group (``row_number``) and returns only the order statistics needed: for the
  ``p``-quantile ``x_(j+1) + (h - j)(x_(j+2) - x_(j+1))`` with ``h = (n - 1) p`` (``quantile_cont``, Hyndman
  & Fan type 7) and the interval ``[x_(l), x_(u)]`` with ``l = F^-1(alpha/2)``, ``u = F^-1(1 - alpha/2) + 1``,
  ``F`` the Binomial(n, p) CDF (Conover, *Practical Nonparametric Statistics*, 3rd ed., sec. 3.2; for the
  median exactly :func:`helpers.kpis.median_order_ranks`).
* :func:`compare_from_aggregates`: :func:`helpers.kpis.compare_kpi` from the aggregates of two selections
  (the same tests and numbers; retention from SQL counts; medians by the row path's bootstrap on at most
  :data:`MEDIAN_SAMPLE_ROWS` values per period, a seeded hash sample above, rescaled and stated);
  :func:`check_kpi_range` counts impossible values (ratings off their scale, negative durations) and raises
  the messages of the row paths.
* :func:`survival_counts`: customers and churn events per duration (whole days) and group;
  :func:`kaplan_meier_from_counts` / :func:`log_rank_from_counts` give the table of
  :func:`helpers.retention.kaplan_meier` (statsmodels ``SurvfuncRight`` with frequency weights, the same
  log-log intervals) and the log-rank statistic of statsmodels ``survdiff`` from those counts, exactly.
* :func:`sbg_counts`: customers per (group, lifetime, churned, exposure) in whole periods, the discrete-time
  record of :func:`helpers.retention.customer_durations`; :func:`sbg_inputs` gives the per-period churners,
  survivors seen alive and exposures :func:`helpers.retention.fit_sbg_durations` fits, and
  :func:`cohort_survivor_counts` the survivor counts of each signup cohort (:func:`helpers.retention.cohort_survivors`).
* :func:`cox_sample`: a seeded sample of ``size`` customers (the smallest hash values of ``customer_id`` and
  the seed: the same sample on any engine, row order or partitioning) with duration, event and covariates;
  :func:`smallest_hash_rows` (shared with :mod:`helpers.engine.worth_sample`) orders only the customers below a
  hash bound, so memory follows the sample, not the customers.

Durations follow :mod:`helpers.retention`: months = days / 30.4375; a customer churned when the end date is on
or before the as-of date (default: the latest signup or end date).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from helpers.engine.base import Engine, EngineError, quote_ident as q, sql_literal

AVG_DAYS_PER_MONTH = 365.25 / 12  # helpers.retention.AVG_DAYS_PER_MONTH (30.4375, exact in binary)
_FREQS = ("month", "quarter", "year")
_KPI_TABLE = {"csat": "responses", "nps": "responses", "ces": "responses", "response_count": "responses",
              "fcr": "tickets", "reopen_rate": "tickets", "ticket_volume": "tickets",
              "first_response_hours": "tickets", "resolution_hours": "tickets",
              "first_response_hours_mean": "tickets", "resolution_hours_mean": "tickets"}


# ----------------------------------------------------------------------------------------------------
# SQL pieces (DuckDB dialect, transpiled for Spark)
# ----------------------------------------------------------------------------------------------------
def as_columns(by) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def where_sql(filters: Mapping[str, object] | None = None, date_column: str | None = None, start=None,
              end=None, extra: Sequence[str] = ()) -> str:
    """``WHERE`` for ``filters`` (column -> value or list of values, matched exactly) and the inclusive days
    ``start .. end`` of ``date_column``."""
    clauses = list(extra)
    for col, value in (filters or {}).items():
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        plain = [v for v in values if v is not None]
        parts = [f"{q(col)} IN ({', '.join(sql_literal(v) for v in plain)})"] if plain else []
        if len(plain) < len(values):
            parts.append(f"{q(col)} IS NULL")
        clauses.append(parts[0] if len(parts) == 1 else "(" + " OR ".join(parts or ["FALSE"]) + ")")
    if date_column is not None and start is not None:
        clauses.append(f"{q(date_column)} >= {sql_literal(pd.Timestamp(start).normalize())}")
    if date_column is not None and end is not None:
        clauses.append(f"{q(date_column)} < {sql_literal(pd.Timestamp(end).normalize() + pd.Timedelta(days=1))}")
    return ("WHERE " + " AND ".join(clauses)) if clauses else ""


def period_sql(date_column: str, freq: str | None) -> str:
    if freq is None:
        return "CAST(NULL AS TIMESTAMP)"
    if freq not in _FREQS:
        raise EngineError(f"freq must be one of {_FREQS} or None, got {freq!r}")
    return f"CAST(date_trunc('{freq}', {q(date_column)}) AS TIMESTAMP)"


def hours_sql(start_column: str, end_column: str) -> str:
    """Hours between two timestamps (milliseconds exact: the same double on every engine). Divisions are
    written on DOUBLE operands: Spark reads ``3600000.0`` as a DECIMAL and would round the quotient to its scale."""
    return f"(CAST(date_diff('millisecond', {q(start_column)}, {q(end_column)}) AS DOUBLE) / 3600000.0)"


def hash_uint32_sql(text_sql: str, offset: int = 0) -> str:
    """An unsigned 32-bit integer from 8 hex digits (from ``offset``) of ``md5(text)``: the same number on
    every engine (md5 and text functions only), so samples and bootstrap weights do not depend on the engine,
    the row order or the partitioning."""
    h = f"md5({text_sql})"
    # BIGINT before multiplying: Spark's 32-bit INT arithmetic would wrap around above 2^31
    terms = [f"CAST(instr('0123456789abcdef', substr({h}, {offset + k + 1}, 1)) - 1 AS BIGINT) * {16 ** (7 - k)}"
             for k in range(8)]
    return "(" + " + ".join(terms) + ")"


def hash_below_sql(text_sql: str, bound: int) -> str:
    """``hash_uint32_sql(text_sql) < bound`` written as a comparison of text: the first 8 hex digits of
    ``md5(text)`` against ``bound`` in 8 lowercase hex digits. The two are the same test (equal-length strings
    of ``0-9a-f`` sort as their numbers: the digits come before the letters in ASCII), but this one computes
    md5 once per row; a WHERE on :func:`hash_uint32_sql` computed it for each of its 8 digits (DuckDB shares
    common subexpressions within a projection, not within a filter): twice the CPU of the old full sort."""
    bound = int(bound)
    if bound <= 0:
        return "FALSE"
    if bound >= 2 ** 32:
        return "TRUE"
    return f"substr(md5({text_sql}), 1, 8) < {sql_literal(f'{bound:08x}')}"


def hash_sample_bound(size: int, population: int) -> int | None:
    """An upper bound ``b`` on :func:`hash_uint32_sql` below which comfortably more than ``size`` of
    ``population`` rows fall, or None when the bound would keep (nearly) every row.

    The hash is uniform on [0, 2^32), so the rows below ``b`` are Binomial(population, b / 2^32) with mean
    ``m = 1.05 size + 6 sqrt(size) + 100`` and standard deviation below ``sqrt(m)``: ``m - size`` is at least
    about 9 standard deviations (e.g. 21 at ``size`` 100,000), so too few rows pass practically never (and then
    :func:`smallest_hash_rows` reads the full order)."""
    size, population = int(size), int(population)
    expected = size * 1.05 + 6 * np.sqrt(size) + 100
    return int(expected / population * 2 ** 32) if expected < population else None


def smallest_hash_rows(engine: Engine, sql_for, text_sql: str, size: int, population: int) -> pd.DataFrame:
    """The rows of a seeded hash sample: ``sql_for(condition)`` is the query that reads the ``size`` rows with
    the smallest ``hash_uint32_sql(text_sql)`` (ties by id: ``ORDER BY hash, id LIMIT size``) among the rows
    that satisfy ``condition`` (a SQL boolean, ANDed into its WHERE) out of ``population`` rows.

    First only the rows below :func:`hash_sample_bound` are ordered (an ``ORDER BY`` over every row sorted them
    all: 1.2 GB at 10,000,000 customers in DuckDB); when at least ``size`` rows are below the bound, those
    ``size`` rows are exactly the first ``size`` of the full order (every one of them has a hash below the
    bound), so the sample is the same set as without the bound. When fewer passed (practically never), the
    query runs again over every row."""
    bound = hash_sample_bound(size, population)
    if bound is not None:
        rows = engine.query(sql_for(hash_below_sql(text_sql, bound)))
        if len(rows) >= min(int(size), int(population)):
            return rows
    return engine.query(sql_for("TRUE"))


# ----------------------------------------------------------------------------------------------------
# KPIs
# ----------------------------------------------------------------------------------------------------
def _int(expr: str) -> str:
    """An integer aggregate as BIGINT, 0 for a group without values (DuckDB sums integers to HUGEINT, which
    pandas would get as float)."""
    return f"CAST(coalesce({expr}, 0) AS BIGINT)"


def _int_sum(col: str, squared: bool = False) -> str:
    term = f"CAST({col} AS BIGINT)" + (f" * {col}" if squared else "")
    return _int(f"sum({term})")


def _kpi_spec(metric: str):
    from helpers.kpis import _TIME_COLUMNS, KPIS  # noqa: PLC0415

    if metric not in _KPI_TABLE:
        raise EngineError(f"kpi_aggregates: metric {metric!r} is not aggregated by the engine layer yet; "
                          f"known: {sorted(_KPI_TABLE)}")
    k = KPIS[metric]
    later = _TIME_COLUMNS.get(k.column) if k.kind in ("median_hours", "mean_hours") else None
    return k, later


def kpi_aggregates(engine: Engine, metric: str, freq: str | None = "month", by=None, filters=None, start=None,
                   end=None, *, source: str | None = None, bad: bool = False) -> pd.DataFrame:
    """Per period (and ``by`` group): ``n``, ``total``, ``total_sq``, ``k1``, ``k2`` of a KPI (see the module
    docstring), computed by the engine. Ratings are summed as integers (exact on every engine). Medians:
    :func:`quantile_aggregates` (``kpi_series_from_aggregates`` calls it for the median KPIs). ``source``: a
    FROM item replacing the KPI's table (:func:`selected_source`: the table joined with customer columns).
    ``bad``: also ``bad``, the impossible values counted in the same pass (:func:`check_kpi_range`)."""
    k, later = _kpi_spec(metric)
    by_cols = as_columns(by)
    table = k.table
    date_col = k.date_column
    where = where_sql(filters, date_col, start, end)
    col = q(k.column) if k.column and not later else None
    if k.kind == "nps":
        aggs = (f"count({col}) AS n, {_int_sum(col)} AS total, {_int_sum(col, squared=True)} AS "
                f"total_sq, {_int(f'count_if({col} >= 9)')} AS k1, {_int(f'count_if({col} <= 6)')} AS k2")
    elif k.kind == "top_box":
        aggs = (f"count({col}) AS n, {_int_sum(col)} AS total, {_int_sum(col, squared=True)} AS "
                f"total_sq, {_int(f'count_if({col} >= 4)')} AS k1, 0 AS k2")
    elif k.kind == "mean":
        aggs = (f"count({col}) AS n, {_int_sum(col)} AS total, {_int_sum(col, squared=True)} AS "
                f"total_sq, 0 AS k1, 0 AS k2")
    elif k.kind == "share_eq1":
        aggs = f"count({col}) AS n, {_int_sum(col)} AS total, 0 AS total_sq, {_int(f'count_if({col} = 1)')} AS k1, 0 AS k2"
    elif k.kind == "flag":
        aggs = f"count({col}) AS n, {_int(f'count_if({col})')} AS total, 0 AS total_sq, {_int(f'count_if({col})')} AS k1, 0 AS k2"
    elif k.kind in ("median_hours", "mean_hours"):
        h = hours_sql(date_col, later)
        aggs = f"count({h}) AS n, sum({h}) AS total, sum({h} * {h}) AS total_sq, 0 AS k1, 0 AS k2"
    elif k.kind == "count":
        aggs = "count(*) AS n, count(*) AS total, 0 AS total_sq, count(*) AS k1, 0 AS k2"
    else:  # pragma: no cover - _KPI_TABLE lists the kinds above
        raise EngineError(f"kpi_aggregates: kind {k.kind!r}")
    if bad:
        cond = _bad_sql(k, later)
        aggs += f", {_int(f'count_if({cond})') if cond else '0'} AS bad"
    groups = ", ".join(["period", *[q(c) for c in by_cols]])
    sql = (f"SELECT {period_sql(date_col, freq)} AS period{''.join(f', {q(c)}' for c in by_cols)}, {aggs} "
           f"FROM {source or q(table)} {where} GROUP BY {groups}")
    out = engine.query(sql)
    out["period"] = pd.to_datetime(out["period"])
    for c in ("n", "k1", "k2", *(["bad"] if bad else [])):
        out[c] = out[c].astype("int64")
    out.insert(0, "metric", metric)
    return out.sort_values([*by_cols, "period"], kind="stable").reset_index(drop=True)


def kpi_series_from_aggregates(engine: Engine, metric: str, freq: str | None = "month", by=None, filters=None,
                               start=None, end=None, confidence: float = 0.95, *,
                               resolve: bool = False, check: bool = True) -> pd.DataFrame:
    """:func:`helpers.kpis.kpi_series`' table (period, by columns, value, ci_low, ci_high, n, metric) from
    engine aggregates: the same interval formulas on ``n``, the numerators, the mean and SD from the sums, and
    for median KPIs the order statistics of :func:`quantile_aggregates`. ``freq=None``: one row per group with
    ``period`` the window start (or the first date in the data). ``resolve``: filters and groups as
    :func:`helpers.kpis.kpi_series` takes them (aliases, values matched by case or slug, customer columns such
    as segment joined on ``customer_id``; :func:`selected_source`). ``check``: impossible values in the selection
    (a rating off its scale, a negative duration) raise :class:`helpers.kpis.KPIError` with
    :func:`helpers.kpis.kpi_series`' message (:func:`check_kpi_range`: counted in the aggregation's pass)."""
    from helpers.kpis import _finish_series  # noqa: PLC0415

    k, later = _kpi_spec(metric)
    by_cols = as_columns(by)
    source = None
    if resolve:
        source, filters = selected_source(engine, k.table, filters, by_cols, what=f"KPI {metric!r}")
    if k.kind == "median_hours":
        qa = quantile_aggregates(engine, k.table, hours_sql(k.date_column, later), probs=(0.5,),
                                 by=by_cols, freq=freq, date_column=k.date_column, filters=filters, start=start,
                                 end=end, confidence=confidence, source=source,
                                 count_bad=_range_rule(k)[0] if check else None)
        if check:
            check_kpi_range(engine, metric, filters, start, end, source=source, style="series",
                            bad=qa.attrs.get("bad", 0))
        df = qa.rename(columns={"value": "a", "ci_low": "lo", "ci_high": "hi"})
    else:
        agg = kpi_aggregates(engine, metric, freq, by_cols, filters, start, end, source=source, bad=check)
        if check:
            check_kpi_range(engine, metric, filters, start, end, source=source, style="series",
                            bad=int(agg["bad"].sum()))
        n = agg["n"].to_numpy(dtype=float)
        df = agg[["period", *by_cols, "n"]].copy()
        if k.kind in ("mean", "mean_hours"):
            tot, tsq = agg["total"].to_numpy(dtype=float), agg["total_sq"].to_numpy(dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                df["a"] = tot / n
                if k.kind == "mean":  # integer sums: n * total_sq - total^2 is exact
                    num = (agg["n"].astype(object) * agg["total_sq"].astype(object)
                           - agg["total"].astype(object) ** 2).to_numpy(dtype=float)
                    var = num / (n * (n - 1))
                else:
                    var = (tsq - tot * tot / n) / (n - 1)
                df["b"] = np.sqrt(np.where(n >= 2, np.clip(var, 0, None), np.nan))
        else:
            df["a"], df["b"] = agg["k1"].to_numpy(), agg["k2"].to_numpy()
        if k.kind != "count":
            df = df[df["n"] > 0]
    if freq is None:
        first = start
        if first is None:
            first = engine.query(f"SELECT min(CAST({q(k.date_column)} AS DATE)) AS d FROM {source or q(k.table)} "
                                 f"{where_sql(filters, k.date_column, start, end)}")["d"].iloc[0]
        df = df.assign(period=pd.Timestamp(first).normalize() if first is not None else pd.NaT)
    return _finish_series(df.reset_index(drop=True), k, by_cols, confidence)


VALUE_LOOKUPS = "_filter_value_lookups"
"""Attribute of an engine holding :func:`selected_source`'s answers (SQL -> values found); ``register`` drops it."""


def selected_source(engine: Engine, table: str, filters=None, by=None, *, what: str = "") -> tuple[str, dict]:
    """``(FROM item, filters)`` for ``table`` as :mod:`helpers.selection` reads filters: aliases resolved
    (``agent`` -> ``agent_id``), values matched to the data (exact, else by case, else by slug; a value matching
    nothing raises :class:`helpers.selection.SelectionError` listing the values there are), and customer columns
    the table lacks (segment, region...) joined from ``customers`` on ``customer_id`` (a LEFT JOIN aliased to
    the table's name, as :func:`helpers.selection.source_sql`). Same SQL on every engine."""
    from helpers import selection as sel  # noqa: PLC0415

    wanted = sel.normalize_filters(filters) if filters else {}
    own = engine.columns(table)
    extra = [c for c in dict.fromkeys([*as_columns(by), *wanted]) if c not in own]
    source = q(table)
    if extra:
        cust = engine.columns("customers") if table != "customers" and engine.has("customers") else []
        joinable = "customer_id" in own and "customer_id" in cust
        missing = [c for c in extra if not (joinable and c in cust)]
        if missing:
            other = f"; customers has {', '.join(c for c in cust if c != 'customer_id')}" if joinable else ""
            raise sel.SelectionError(f"{what + ': ' if what else ''}cannot filter or group by {missing[0]!r}: table "
                                     f"{table} has no such column (its columns: {', '.join(own)}){other}")
        picks = ", ".join(f"c.{q(c)}" for c in extra)
        source = (f"(SELECT t.*, {picks} FROM {q(table)} AS t LEFT JOIN {q('customers')} AS c "
                  f"ON t.customer_id = c.customer_id) AS {q(table)}")
    resolved: dict[str, list] = {}
    # which of the filter values the data has: asked once per engine (a department page checks the same
    # department, team and agent for every KPI it reads: two dozen identical queries); the engine's register()
    # forgets the answers, as a registered table may replace one of these
    known_values = engine.__dict__.setdefault(VALUE_LOOKUPS, {})
    for col, values in wanted.items():
        plain = [v for v in values if v is not None]
        found: list = []
        if plain:
            sql = (f"SELECT DISTINCT {q(col)} AS v FROM {source} WHERE {q(col)} IN "
                   f"({', '.join(sql_literal(v) for v in plain)})")
            if sql not in known_values:
                try:
                    known_values[sql] = engine.query(sql)["v"].tolist()
                except EngineError:  # a value of another type: matched below by its text
                    known_values[sql] = []
            found = list(known_values[sql])
        if len(found) >= len(set(map(str, plain))) and None not in values:
            resolved[col] = found
            continue
        avail = engine.query(f"SELECT DISTINCT {q(col)} AS v FROM {source} LIMIT 100000")["v"].tolist()
        avail = [None if (v is None or (isinstance(v, float) and np.isnan(v))) else v for v in avail]
        resolved[col] = sel.match_values(col, plain, avail, table=table) if plain else []
        if None in values:
            resolved[col].append(None)
    return source, resolved


MEDIAN_SAMPLE_ROWS = 20_000
"""At most this many rows per period are read for the bootstrap comparison of medians (:func:`median_sample`);
a period with fewer rows is read whole (then the comparison equals :func:`helpers.kpis.compare_medians` on the
rows). 20,000 values per side keep the 2,000 bootstrap resamples near a second and the rows a few hundred KB."""


def _range_rule(k):
    """``(impossible-value condition on _v, kpi_series' scale text, the row path's words for the values, its
    scale text)`` of a KPI kind, or None when no value is impossible (flags, counts)."""
    if k.kind == "nps":
        return "(_v < 0 OR _v > 10 OR _v <> round(_v))", "0-10 (integers)", "NPS scores", "0-10 (integers)"
    if k.kind == "top_box":
        return "(_v < 1 OR _v > 5 OR _v <> round(_v))", "1-5 (integers)", "CSAT scores", "1-5 (integers)"
    if k.kind == "mean":
        return "(_v < 1 OR _v > 7 OR _v <> round(_v))", "1-7 (integers)", "CES scores", "1..7"
    if k.kind == "share_eq1":
        return ("(_v < 1 OR _v <> round(_v))", "integers >= 1", "contacts_to_resolve values", "integers >= 1")
    if k.kind in ("median_hours", "mean_hours"):
        from helpers.kpis import _TIME_COLUMNS  # noqa: PLC0415

        later = _TIME_COLUMNS[k.column]
        return "(_v < 0)", f">= 0 hours ({later} before created_at)", "", ""
    return None


def _bad_sql(k, later) -> str | None:
    """The impossible-value condition of :func:`_range_rule` on the KPI's value (column or hours)."""
    rule = _range_rule(k)
    if rule is None:
        return None
    value = hours_sql(k.date_column, later) if later else q(k.column)
    return rule[0].replace("_v", f"({value})")


def check_kpi_range(engine: Engine, metric: str, filters=None, start=None, end=None, *, source: str | None = None,
                    style: str = "series", bad: int | None = None) -> int:
    """The impossible values of a KPI in one selection (``filters`` as resolved, ``start .. end``), counted by
    the engine: ratings off their scale or not whole (NPS 0-10, CSAT 1-5, CES 1-7, contacts >= 1), durations
    below zero. None: returns 0. Some: :class:`helpers.kpis.KPIError` with the message of the path the engine
    replaces: ``style="series"`` as :func:`helpers.kpis.kpi_series` (``"3 values of responses.csat outside the
    scale 1-5 (integers) (e.g. [6, 7, 9])"``), ``style="rows"`` as :func:`helpers.kpis.compare_kpi` on rows
    (``"3 CSAT scores outside the scale 1-5 (integers) (e.g. 6, 7, 9)"``; durations: ``"2 tickets have
    resolved_at before created_at (negative durations), e.g. ['T1', 'T2']"``). One count query (``bad``: the
    count already made, e.g. by :func:`kpi_aggregates` in its pass); the examples (at most 5) only when there
    is a problem."""
    from helpers.kpis import KPIError  # noqa: PLC0415

    k, later = _kpi_spec(metric)
    rule = _range_rule(k)
    if rule is None:
        return 0
    cond, scale, what, row_scale = rule
    value = hours_sql(k.date_column, later) if later else q(k.column)
    table = source or q(k.table)
    base = f"SELECT {value} AS _v FROM {table} {where_sql(filters, k.date_column, start, end)}"
    if bad is None:
        bad = int(engine.query(f"SELECT count(*) AS n FROM ({base}) AS _b WHERE {cond}")["n"].iloc[0])
    if not bad:
        return 0
    examples = engine.query(f"SELECT _v FROM ({base}) AS _b WHERE {cond} LIMIT 5")["_v"].tolist()
    if style == "series":
        raise KPIError(metric, f"{bad} values of {k.table}.{k.column} outside the scale {scale} (e.g. {examples})")
    if later:  # helpers.kpis.ticket_hours
        ids = []
        if "ticket_id" in engine.columns(k.table):
            ids = engine.query(f"SELECT ticket_id FROM {table} "
                               f"{where_sql(filters, k.date_column, start, end, extra=[f'{value} < 0'])} "
                               "LIMIT 5")["ticket_id"].tolist()
        raise KPIError(f"{k.column}_hours", f"{bad} tickets have {later} before created_at (negative durations)"
                                            + (f", e.g. {ids}" if ids else ""))
    ex = ", ".join(f"{float(v):g}" for v in examples)
    raise KPIError(metric, f"{bad} {what} outside the scale {row_scale} (e.g. {ex})")


def kpi_totals(engine: Engine, metric: str, filters=None, start=None, end=None, *, resolve: bool = True,
               check: str | None = None, source: str | None = None) -> dict:
    """One selection's aggregates of a KPI (``n``, ``total``, ``total_sq``, ``k1``, ``k2`` over ``start ..
    end``), the inputs of :func:`compare_from_aggregates`. ``check``: ``"series"``/``"rows"``: impossible values
    raise (:func:`check_kpi_range`, that message style; counted in the same pass). ``source``: the FROM item
    of filters already resolved (:func:`selected_source`; then nothing is resolved)."""
    k, _ = _kpi_spec(metric)
    if resolve and source is None:
        source, filters = selected_source(engine, k.table, filters, what=f"KPI {metric!r}")
    agg = kpi_aggregates(engine, metric, None, None, filters, start, end, source=source, bad=bool(check))
    if check:
        check_kpi_range(engine, metric, filters, start, end, source=source, style=check,
                        bad=int(agg["bad"].sum()) if len(agg) else 0)
    if agg.empty:
        return {"n": 0, "total": 0, "total_sq": 0, "k1": 0, "k2": 0}
    row = agg.iloc[0]
    return {c: row[c] for c in ("n", "total", "total_sq", "k1", "k2")}


def compares_on_engine(metric: str) -> bool:
    """Whether :func:`compare_from_aggregates` compares ``metric`` (responses' and tickets' KPIs, retention and
    churn); other KPIs (CLV, repeat purchases) keep :func:`helpers.kpis.compare_kpi`'s rows."""
    from helpers.kpis import KPIS  # noqa: PLC0415

    return metric in _KPI_TABLE or (metric in KPIS and KPIS[metric].kind in ("retention", "churn"))


def compare_from_aggregates(engine: Engine, metric: str, filters=None, period_a=(None, None),
                            period_b=(None, None), confidence: float = 0.95, *, filters_a=None, filters_b=None,
                            n_boot: int = 2000, seed: int = 0, max_sample: int | None = None):
    """:func:`helpers.kpis.compare_kpi` (b - a: two periods of one selection, or two selections ``filters_a`` /
    ``filters_b``, each merged over ``filters``) from engine aggregates, with the same tests and numbers:

    * NPS adjusted-Wald, proportions Newcombe + pooled z (counts), means Welch from n, sums and sums of squares
      (``t = (m_b - m_a) / sqrt(v_a/n_a + v_b/n_b)``, Welch-Satterthwaite df), counts Poisson per day when the
      periods differ in length; retention/churn from the counts S (active at the start) and R (of those, active
      after the end) of :func:`retention_window_counts` (Newcombe + pooled z). Exactly the row path's numbers.
    * medians (resolution/first-response hours): each side's median and order-statistic interval from
      :func:`quantile_aggregates` (exact), the difference's interval and p-value by the row path's bootstrap
      (:func:`helpers.kpis.compare_medians`: ``n_boot`` resamples, ``seed``) on at most ``max_sample`` values
      (default :data:`MEDIAN_SAMPLE_ROWS`) per side (:func:`median_sample`: all values in ticket order when the period has no more, the same
      numbers as the rows; else a seeded hash sample of ``max_sample``, stated in ``method`` and ``sample``).
      With a sample of ``m`` of ``n`` values the bootstrap deviations of that side's median are rescaled by
      ``sqrt(m / n)`` and centred on the exact difference (the median's sampling spread shrinks as
      ``1 / sqrt(n)``: the m-out-of-n bootstrap, Bickel, Götze & van Zwet 1997, *Statistica Sinica* 7), so the
      interval estimates the full data's, within Monte-Carlo error (tests/test_compare_engine.py).

    Customer columns in the filters (segment, region) are joined in the engine (:func:`selected_source`).
    Impossible values raise :class:`helpers.kpis.KPIError` with the row path's message (:func:`check_kpi_range`).
    """
    from dataclasses import replace  # noqa: PLC0415

    from helpers import kpis as K  # noqa: PLC0415
    from helpers import selection as sel  # noqa: PLC0415

    common = sel.normalize_filters(filters)
    fa = {**common, **sel.normalize_filters(filters_a)}
    fb = {**common, **sel.normalize_filters(filters_b)}
    period_a = tuple(period_a) if period_a is not None else (None, None)
    period_b = tuple(period_b) if period_b is not None else (None, None)
    if fa != fb and period_b == (None, None):
        period_b = period_a
    labels = tuple(f"{p[0] or 'start'} to {p[1] or 'end'}" for p in (period_a, period_b))
    kind = K.KPIS[metric].kind if metric in K.KPIS else None
    if kind in ("retention", "churn"):
        ca = retention_window_counts(engine, fa, *period_a, metric=metric)
        cb = retention_window_counts(engine, fb, *period_b, metric=metric)
        return replace(K._retention_comparison(ca, cb, metric, confidence), labels=labels, between_groups=False)
    k, _ = _kpi_spec(metric)
    if k.kind == "median_hours":
        comp = compare_medians_from_engine(engine, metric, fa, fb, period_a, period_b, confidence, n_boot=n_boot,
                                           seed=seed, max_sample=max_sample)
        return replace(comp, labels=labels, between_groups=False)
    src_a, ra = selected_source(engine, k.table, fa, what=f"KPI {metric!r}")
    src_b, rb = (src_a, ra) if fb == fa else selected_source(engine, k.table, fb, what=f"KPI {metric!r}")
    a = kpi_totals(engine, metric, ra, *period_a, check="rows", source=src_a)
    b = kpi_totals(engine, metric, rb, *period_b, check="rows", source=src_b)
    for side, period, f in ((a, period_a, fa), (b, period_b, fb)):
        if side["n"] == 0 and k.kind != "count":
            raise K.KPIError(metric, f"no values from {period[0]} to {period[1]} for the filters {f!r}")

    if k.kind == "nps":
        comp = K._compare_nps_counts((int(a["k1"]), int(a["k2"]), int(a["n"])), (int(b["k1"]), int(b["k2"]),
                                     int(b["n"])), confidence)
    elif k.kind in ("top_box", "share_eq1", "flag"):
        comp = K.compare_proportions(int(a["k1"]), int(a["n"]), int(b["k1"]), int(b["n"]), metric, confidence)
    elif k.kind == "count":
        days = [K._period_days(p, metric) for p in (period_a, period_b)]
        if None in days or days[0] == days[1]:
            comp = K.compare_rates(int(a["n"]), int(b["n"]), metric=metric, confidence=confidence)
        else:
            comp = K.compare_rates(int(a["n"]), int(b["n"]), days[0], days[1], metric=metric,
                                   confidence=confidence, unit="per day")
    elif k.kind in ("mean", "mean_hours"):
        comp = _compare_means_from_sums(k, a, b, metric, confidence)
    else:  # pragma: no cover
        raise EngineError(f"compare_from_aggregates: kind {k.kind!r}")
    return replace(comp, labels=labels, between_groups=False)


def retention_window_counts(engine: Engine, filters=None, start=None, end=None, *, metric: str = "retention_rate",
                            table: str = "customers"):
    """:class:`helpers.kpis.RetentionCounts` ``(S, N, E, R)`` of the selected customers for the days ``start ..
    end`` (:func:`helpers.kpis.retention_counts`), counted by the engine. As the row path: ``end`` is clipped to
    the selection's data end (its latest signup or end date), ``start`` defaults to its first signup."""
    from helpers import kpis as K  # noqa: PLC0415

    source, filters = selected_source(engine, table, filters, what=f"KPI {metric!r}")
    w = where_sql(filters)
    if start is None or end is None:
        raise K.KPIError(metric, "needs the period: pass start and end (e.g. the first and last day of a month)")
    info = engine.query(f"SELECT count(*) AS n, max(signup_date) AS last_signup, max(end_date) AS last_end "
                        f"FROM {source} {w}").iloc[0]
    if int(info["n"]) == 0:
        raise K.KPIError(metric, "the customers table is empty")
    days = [pd.Timestamp(v) for v in (info["last_signup"], info["last_end"]) if v is not None and not pd.isna(v)]
    data_end = max(days).normalize()
    s = K._to_day(start, metric, "start")
    e = min(K._to_day(end, metric, "end"), data_end)
    if s > data_end:
        raise K.KPIError(metric, f"the period starts {s.date()}, after the last date in the customers table "
                                 f"({data_end.date()})")
    if e < s:
        raise K.KPIError(metric, f"end {e.date()} is before start {s.date()}")
    s_, e_ = sql_literal(s), sql_literal(e)
    in_s = f"(signup_date < {s_} AND (end_date IS NULL OR end_date >= {s_}))"
    in_e = f"(signup_date <= {e_} AND (end_date IS NULL OR end_date > {e_}))"
    got = engine.query(f"SELECT {_int(f'count_if({in_s})')} AS s, "
                       f"{_int(f'count_if(signup_date >= {s_} AND signup_date <= {e_})')} AS n, "
                       f"{_int(f'count_if({in_e})')} AS e, {_int(f'count_if({in_s} AND {in_e})')} AS r "
                       f"FROM {source} {w}").iloc[0]
    return K.RetentionCounts(int(got["s"]), int(got["n"]), int(got["e"]), int(got["r"]))


def median_sample(engine: Engine, metric: str, filters=None, start=None, end=None, *, source: str | None = None,
                  max_rows: int | None = None, seed: int = 0, check: str | None = None) -> tuple[np.ndarray, int]:
    """The durations (hours) of a median KPI in one selection, at most ``max_rows`` of them: all, in ticket
    order (``ticket_id``: the order of the rows the row path bootstraps), when there are no more; else the
    ``max_rows`` with the smallest hash of (ticket_id, seed) (:func:`hash_uint32_sql`: the same sample on
    every engine, row order or partitioning), in ticket order. Returns ``(values, population)``: the sample
    (a float array) and the number of values in the selection. ``check``: negative durations raise
    (:func:`check_kpi_range` with that message style, counted with the values)."""
    return median_samples(engine, metric, filters, [(start, end)], source=source, max_rows=max_rows, seed=seed,
                          check=check)[0]


def median_samples(engine: Engine, metric: str, filters, periods: Sequence[tuple], *, source: str | None = None,
                   max_rows: int | None = None, seed: int = 0, check: str | None = None) -> list[tuple[np.ndarray, int]]:
    """:func:`median_sample` for several disjoint periods of one selection: one query counts every period's
    values (and impossible ones), one reads the values of all the periods that need no sample."""
    k, later = _kpi_spec(metric)
    max_rows = MEDIAN_SAMPLE_ROWS if max_rows is None else int(max_rows)
    value = hours_sql(k.date_column, later)
    table = source or q(k.table)
    key = "ticket_id" if "ticket_id" in engine.columns(k.table) else k.date_column
    inside = [where_sql(None, k.date_column, s, e)[len("WHERE "):] or "TRUE" for s, e in periods]
    which = "CASE " + " ".join(f"WHEN {c} THEN {i}" for i, c in enumerate(inside)) + " END"
    base = (f"SELECT {value} AS _v, {q(key)} AS _id, {which} AS _p FROM {table} "
            f"{where_sql(filters, extra=[f'{value} IS NOT NULL', '(' + ' OR '.join(inside) + ')'])}")
    sizes = engine.query(f"SELECT _p, count(*) AS n, {_int('count_if(_v < 0)')} AS bad FROM ({base}) AS _b "
                         f"GROUP BY _p")
    got = {int(p): (int(n), int(b)) for p, n, b in zip(sizes["_p"], sizes["n"], sizes["bad"])}
    counts = [got.get(i, (0, 0)) for i in range(len(periods))]
    if check:
        for (s, e), (_, bad) in zip(periods, counts):
            check_kpi_range(engine, metric, filters, s, e, source=source, style=check, bad=bad)
    whole = [i for i, (n, _) in enumerate(counts) if 0 < n <= max_rows]
    values = {i: np.empty(0) for i in range(len(periods))}
    if whole:
        rows = engine.query(f"SELECT _p, _v FROM ({base}) AS _b WHERE _p IN ({', '.join(map(str, whole))}) "
                            f"ORDER BY _p, _id, _v")
        for i in whole:
            values[i] = rows.loc[rows["_p"] == i, "_v"].to_numpy(dtype=float)
    h = hash_uint32_sql(f"CAST(_id AS VARCHAR) || ':' || {sql_literal(str(int(seed)))}")
    for i, (n, _) in enumerate(counts):
        if n > max_rows:
            values[i] = engine.query(
                f"SELECT _v FROM (SELECT _v, _id FROM ({base}) AS _b WHERE _p = {i} ORDER BY {h}, _id, _v "
                f"LIMIT {int(max_rows)}) AS _s ORDER BY _id, _v")["_v"].to_numpy(dtype=float)
    return [(values[i], counts[i][0]) for i in range(len(periods))]


def _disjoint(period_a, period_b) -> bool:
    """Whether two inclusive day ranges (None: open) share no day."""
    a0, a1 = (pd.Timestamp(x) if x is not None else None for x in period_a)
    b0, b1 = (pd.Timestamp(x) if x is not None else None for x in period_b)
    return (a1 is not None and b0 is not None and a1.normalize() < b0.normalize()) or \
        (b1 is not None and a0 is not None and b1.normalize() < a0.normalize())


def compare_medians_from_engine(engine: Engine, metric: str, filters_a, filters_b, period_a, period_b,
                                confidence: float = 0.95, *, n_boot: int = 2000, seed: int = 0,
                                max_sample: int | None = None):
    """The difference of two medians (b - a) of a duration KPI (see :func:`compare_from_aggregates`)."""
    from helpers import kpis as K  # noqa: PLC0415

    k, later = _kpi_spec(metric)
    max_sample = MEDIAN_SAMPLE_ROWS if max_sample is None else int(max_sample)
    what = f"KPI {metric!r}"
    src_a, res_a = selected_source(engine, k.table, filters_a, what=what)
    src_b, res_b = (src_a, res_a) if filters_b == filters_a else selected_source(engine, k.table, filters_b, what=what)
    kw = dict(max_rows=max_sample, seed=seed, check="rows")
    if filters_b == filters_a and _disjoint(period_a, period_b):  # one selection, two periods: counted together
        (xa, na), (xb, nb) = median_samples(engine, metric, res_a, [period_a, period_b], source=src_a, **kw)
    else:
        xa, na = median_sample(engine, metric, res_a, *period_a, source=src_a, **kw)
        xb, nb = median_sample(engine, metric, res_b, *period_b, source=src_b, **kw)
    for n, (start, end), f in ((na, period_a, filters_a), (nb, period_b, filters_b)):
        if n == 0:
            raise K.KPIError(metric, f"no values from {start} to {end} for the filters {f!r}")
    sel_a, sel_b = (src_a, res_a, *period_a), (src_b, res_b, *period_b)
    if len(xa) == na and len(xb) == nb:  # nothing sampled: the row path on the same values
        return K.compare_medians(xa, xb, metric, "hours", confidence, n_boot=n_boot, seed=seed)
    ests = []
    for source, resolved, start, end in (sel_a, sel_b):  # each median and its interval from all the values
        r = quantile_aggregates(engine, k.table, hours_sql(k.date_column, later), probs=(0.5,), freq=None,
                                date_column=k.date_column, filters=resolved, start=start, end=end,
                                confidence=confidence, source=source).iloc[0]
        n = int(r["n"])
        method = "exact order statistics (binomial)"
        coverage = K.median_order_ranks(n, confidence)[2]
        if coverage < confidence:
            method += f"; n too small, [min, max] covers only {coverage:.1%}"
        ests.append(K.Estimate(float(r["value"]), float(r["ci_low"]), float(r["ci_high"]), n, metric, "hours",
                               method, confidence))
    ma, mb = K._bootstrap_median_pairs(xa, xb, n_boot, seed)
    diff = ests[1].value - ests[0].value
    scale_a, scale_b = np.sqrt(len(xa) / na), np.sqrt(len(xb) / nb)
    diffs = diff + scale_b * (mb - np.median(xb)) - scale_a * (ma - np.median(xa))
    alpha = 1 - confidence
    lo, hi = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    sizes = " and ".join(f"{len(x):,} of {n:,}" if len(x) < n else f"all {n:,}" for x, n in ((xa, na), (xb, nb)))
    method = (f"bootstrap difference of medians ({n_boot} resamples of seeded samples of {sizes} tickets, "
              "spread rescaled to all tickets)")
    return K.Comparison(ests[0], ests[1], diff, float(lo), float(hi), float(p), method, confidence,
                        sample={"a": (len(xa), na), "b": (len(xb), nb)})


def _mean_sd(k, t: dict) -> tuple[float, float, int]:
    n = int(t["n"])
    if k.kind == "mean":  # integer sums: exact numerator
        m = int(t["total"]) / n
        var = (n * int(t["total_sq"]) - int(t["total"]) ** 2) / (n * (n - 1)) if n > 1 else float("nan")
    else:
        tot, tsq = float(t["total"]), float(t["total_sq"])
        m = tot / n
        var = (tsq - tot * tot / n) / (n - 1) if n > 1 else float("nan")
    return m, float(np.sqrt(max(var, 0.0))) if np.isfinite(var) else float("nan"), n


def _compare_means_from_sums(k, a: dict, b: dict, metric: str, confidence: float):
    """Welch's test and interval from the two groups' n, mean and SD (scipy ``ttest_ind(equal_var=False)``)."""
    from helpers.kpis import Comparison, Estimate, KPIError, t_interval  # noqa: PLC0415

    ma, sa, na = _mean_sd(k, a)
    mb, sb, nb = _mean_sd(k, b)
    if na < 2 or nb < 2:
        raise KPIError(metric, f"each group needs at least 2 values for Welch's test (got {na}, {nb})")
    res = stats.ttest_ind_from_stats(mb, sb, nb, ma, sa, na, equal_var=False)
    va, vb = sa * sa / na, sb * sb / nb
    se = float(np.sqrt(va + vb))
    df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1)) if se > 0 else float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, df) * se) if se > 0 else 0.0
    unit = "hours" if k.kind == "mean_hours" else k.unit
    ests = []
    for m, s, n in ((ma, sa, na), (mb, sb, nb)):
        lo, hi = t_interval(m, s, n, confidence)
        ests.append(Estimate(m, float(lo), float(hi), n, metric, unit, "Student t", confidence))
    diff = mb - ma
    p = float(res.pvalue) if np.isfinite(res.pvalue) else (1.0 if ma == mb else 0.0)
    return Comparison(ests[0], ests[1], diff, diff - half, diff + half, p, "Welch t-test", confidence)


def quantile_ranks(n: int, p: float, confidence: float = 0.95) -> tuple[int, int]:
    """1-based ranks ``(l, u)`` of the order-statistic interval of the ``p``-quantile (module docstring)."""
    from helpers.kpis import median_order_ranks  # noqa: PLC0415

    if p == 0.5:
        lo, hi, _ = median_order_ranks(n, confidence)
        return lo, hi
    alpha = 1 - confidence
    lo = max(int(stats.binom.ppf(alpha / 2, n, p)), 1)
    hi = min(int(stats.binom.ppf(1 - alpha / 2, n, p)) + 1, n)
    return lo, hi


def quantile_ranks_many(ns: Sequence[int], probs: Sequence[float],
                        confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantile_ranks` of every group size in ``ns`` and every probability in ``probs`` at once: two
    ``(len(ns), len(probs))`` arrays of 1-based ranks ``(l, u)``, equal to :func:`quantile_ranks` entry by
    entry. The same binomial quantiles in one broadcast ``binom.ppf`` call (a department page asked for 1,500
    single ones, 0.2 s; a funnel asks for ~80 probabilities of one group)."""
    n = np.asarray(ns, dtype=np.int64)[:, None]
    p = np.asarray(probs, dtype=float)[None, :]
    alpha = 1 - confidence
    lo = np.maximum(stats.binom.ppf(alpha / 2, n, p).astype(np.int64), 1)
    hi = np.minimum(stats.binom.ppf(1 - alpha / 2, n, p).astype(np.int64) + 1, n)
    hi = np.where(p == 0.5, n - lo + 1, hi)  # the median: kpis.median_order_ranks' symmetric pair
    return lo, hi


def quantile_aggregates(engine: Engine, table: str, value_sql: str, probs: Sequence[float] = (0.5,), by=None,
                        freq: str | None = None, date_column: str | None = None, filters=None, start=None,
                        end=None, confidence: float = 0.95, *, source: str | None = None,
                        count_bad: str | None = None) -> pd.DataFrame:
    """Quantiles of ``value_sql`` (a column or expression of ``table``) per period and group, with their
    order-statistic intervals: columns ``period``, the ``by`` columns, ``prob``, ``n``, ``value``, ``ci_low``,
    ``ci_high``. Two queries: the group sizes, then only the needed order statistics of each group.
    ``count_bad``: a condition on the value ``_v`` (e.g. ``_v < 0``) counted with the sizes, in ``attrs["bad"]``."""
    by_cols = as_columns(by)
    keys = ["period", *by_cols]
    kq = ", ".join(q(c) for c in keys)
    per = period_sql(date_column, freq) if date_column else "CAST(NULL AS TIMESTAMP)"
    base = (f"SELECT {per} AS period{''.join(f', {q(c)}' for c in by_cols)}, {value_sql} AS _v FROM {source or q(table)} "
            f"{where_sql(filters, date_column, start, end, extra=[f'{value_sql} IS NOT NULL'])}")
    bad_sql = f", {_int(f'count_if({count_bad})')} AS bad" if count_bad else ""
    sizes = engine.query(f"SELECT {'' if count_bad else 'DISTINCT '}count(*) AS n{bad_sql} FROM ({base}) AS _b "
                         f"GROUP BY {kq}")
    bad = int(sizes["bad"].sum()) if count_bad else 0
    ns = sorted({int(v) for v in sizes["n"] if v})
    columns = [*keys, "prob", "n", "value", "ci_low", "ci_high"]
    if not ns:
        empty = pd.DataFrame(columns=columns)
        empty.attrs["bad"] = bad
        return empty
    plan = []  # (n, prob, j1, j2, frac, l, u)
    need = []
    rank_lo, rank_hi = quantile_ranks_many(ns, [float(p) for p in probs], confidence)
    for i, n in enumerate(ns):
        for jp, p in enumerate(probs):
            h = (n - 1) * float(p)
            j = int(np.floor(h))
            lo, hi = int(rank_lo[i, jp]), int(rank_hi[i, jp])
            plan.append((n, float(p), j + 1, min(j + 2, n), h - j, lo, hi))
            need += [(n, j + 1), (n, min(j + 2, n)), (n, lo), (n, hi)]
    engine.register("_kit_ranks", pd.DataFrame(sorted(set(need)), columns=["_n", "_r"]))
    sql = f"""
        WITH ranked AS (
            SELECT {kq}, _v, row_number() OVER (PARTITION BY {kq} ORDER BY _v) AS _rn,
                   count(*) OVER (PARTITION BY {kq}) AS _cnt
            FROM ({base}) AS _b)
        SELECT {', '.join(f'ranked.{q(c)}' for c in keys)}, ranked._cnt AS _n, ranked._rn AS _r, ranked._v AS _v
        FROM ranked JOIN _kit_ranks AS k ON ranked._cnt = k._n AND ranked._rn = k._r
    """
    picked = engine.query(sql)
    rows = []
    plan_by_n: dict[int, list] = {}
    for item in plan:
        plan_by_n.setdefault(item[0], []).append(item)
    for key, g in picked.groupby([c for c in keys], dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        at = dict(zip(g["_r"].astype(int), g["_v"].astype(float)))
        n = int(g["_n"].iloc[0])
        for _, p, j1, j2, frac, lo, hi in plan_by_n[n]:
            # (1 - f) x_(j+1) + f x_(j+2): DuckDB's quantile_cont and np.median bit for bit at the median
            value = (1 - frac) * at[j1] + frac * at[j2] if frac else at[j1]
            rows.append((*key, p, n, value, at[lo], at[hi]))
    out = pd.DataFrame(rows, columns=columns)
    out["period"] = pd.to_datetime(out["period"])
    out = out.sort_values([*by_cols, "period", "prob"], kind="stable").reset_index(drop=True)
    out.attrs["bad"] = bad
    return out


# ----------------------------------------------------------------------------------------------------
# Survival: Kaplan-Meier, log-rank, sBG, Cox sample
# ----------------------------------------------------------------------------------------------------
def customers_as_of(engine: Engine, table: str = "customers") -> pd.Timestamp:
    """The default as-of day of the survival analyses: the latest signup or end date of ``table``."""
    got = engine.query(f"SELECT max(signup_date) AS s, max(end_date) AS e FROM {q(table)}")
    s, e = got["s"].iloc[0], got["e"].iloc[0]
    days = [pd.Timestamp(v) for v in (s, e) if v is not None and not pd.isna(v)]
    if not days:
        raise EngineError(f"{engine.name} engine: table {table} has no signup dates")
    return max(days).normalize()


def _stop_sql(as_of: pd.Timestamp) -> tuple[str, str]:
    a = sql_literal(as_of)
    churned = f"(end_date IS NOT NULL AND end_date <= {a})"
    stop = f"CASE WHEN {churned} THEN end_date ELSE {a} END"
    return churned, stop


def survival_counts(engine: Engine, by=None, as_of=None, filters=None, table: str = "customers") -> pd.DataFrame:
    """Per group and duration in whole days: ``customers`` and ``events`` (churned). Durations run from signup
    to the end date when it is on or before ``as_of``, else to ``as_of`` (censored)."""
    as_of = customers_as_of(engine, table) if as_of is None else pd.Timestamp(as_of).normalize()
    by_cols = as_columns(by)
    churned, stop = _stop_sql(as_of)
    gsel = "".join(f"{q(c)}, " for c in by_cols)
    extra = [f"signup_date <= {sql_literal(as_of)}"]
    sql = (f"SELECT {gsel}date_diff('day', signup_date, {stop}) AS days, count(*) AS customers, "
           f"{_int(f'count_if({churned})')} AS events FROM {q(table)} {where_sql(filters, extra=extra)} "
           f"GROUP BY {gsel}date_diff('day', signup_date, {stop})")
    out = engine.query(sql)
    for c in ("days", "customers", "events"):
        out[c] = out[c].astype("int64")
    out["duration"] = out["days"] / AVG_DAYS_PER_MONTH
    return out.sort_values([*by_cols, "days"], kind="stable").reset_index(drop=True)


def kaplan_meier_from_counts(counts: pd.DataFrame, group: str | None = None, alpha: float = 0.05):
    """:class:`helpers.retention.KaplanMeierResult` from :func:`survival_counts` (statsmodels ``SurvfuncRight``
    with the counts as frequency weights, Greenwood SEs as without weights: the same estimates, SEs, log-log intervals and medians as
    :func:`helpers.retention.kaplan_meier` on the rows). With a group and two or more groups the log-rank test
    from the same counts is attached."""
    from statsmodels.duration.survfunc import SurvfuncRight  # noqa: PLC0415

    from helpers.errors import KitError  # noqa: PLC0415
    from helpers.retention import KaplanMeierResult  # noqa: PLC0415

    z = stats.norm.ppf(1 - alpha / 2)
    keys = [None] if group is None else sorted(counts[group].dropna().unique(), key=str)
    rows, meds = [], []
    for k in keys:
        part_counts = counts if k is None else counts[counts[group] == k]
        # one row per (duration, status) with its number of customers
        d = part_counts["duration"].to_numpy(float)
        ev, cens = part_counts["events"].to_numpy(float), (part_counts["customers"] - part_counts["events"]).to_numpy(float)
        time = np.r_[d[ev > 0], d[cens > 0]]
        status = np.r_[np.ones(int((ev > 0).sum())), np.zeros(int((cens > 0).sum()))]
        weight = np.r_[ev[ev > 0], cens[cens > 0]]
        n_total = int(part_counts["customers"].sum())
        if n_total == 0:
            continue
        sf = SurvfuncRight(time, status, freq_weights=weight)
        s = np.asarray(sf.surv_prob, float)
        se = sf.surv_prob_se = _greenwood_se(s, np.asarray(sf.n_risk, float), np.asarray(sf.n_events, float))
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = np.log(-np.log(s))
            sell = se / (s * np.abs(np.log(s)))
            lo = np.exp(-np.exp(ll + z * sell))
            hi = np.exp(-np.exp(ll - z * sell))
        lo = np.where(s >= 1, 1.0, np.where(s <= 0, 0.0, lo))
        hi = np.where(s >= 1, 1.0, np.where(s <= 0, 0.0, hi))
        part = pd.DataFrame({"time": sf.surv_times, "survival": s, "ci_low": lo, "ci_high": hi,
                             "at_risk": np.rint(np.asarray(sf.n_risk, float)).astype("int64"),
                             "events": np.rint(np.asarray(sf.n_events, float)).astype("int64")})
        if part.empty:
            part = pd.DataFrame({"time": [float(d.max())], "survival": [1.0], "ci_low": [1.0], "ci_high": [1.0],
                                 "at_risk": [n_total], "events": [0]})
        if group is not None:
            part.insert(0, group, k)
        rows.append(part)
        med = sf.quantile(0.5) if (s <= 0.5).any() else np.nan
        if np.isfinite(med):
            with np.errstate(divide="ignore", invalid="ignore"):
                lo_m, hi_m = sf.quantile_ci(0.5, alpha=alpha, method="cloglog")
        else:
            lo_m, hi_m = np.nan, np.nan
        mrow = {"n": n_total, "events": int(ev.sum()), "median": float(med),
                "ci_low": float(lo_m) if lo_m is not None else np.nan,
                "ci_high": float(hi_m) if hi_m is not None else np.inf,
                "last_time": float(d.max()), "survival_at_end": float(s[-1]) if len(s) else 1.0}
        if group is not None:
            mrow = {group: k, **mrow}
        meds.append(mrow)
    res = KaplanMeierResult(table=pd.concat(rows, ignore_index=True), medians=pd.DataFrame(meds), group=group,
                            alpha=alpha)
    if group is not None and len(keys) > 1:
        try:
            res.log_rank = log_rank_from_counts(counts, group)
        except KitError as exc:
            res.log_rank_note = str(exc).split(";")[0]
    return res


def _greenwood_se(sp: np.ndarray, n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Greenwood's ``se(S) = S sqrt(sum d / (n (n - d)))``, as statsmodels computes it without weights (with
    frequency weights it switches to Tsiatis' formula, which the row-level curves do not use)."""
    denom = np.clip(n * (n - d), 1e-12, np.inf)
    se = d / denom
    se[(n == d) | (n == 0)] = np.nan
    se = np.sqrt(np.cumsum(se))
    locs = np.isfinite(se) | (sp != 0)
    se[locs] *= sp[locs]
    se[~locs] = np.nan
    return se


def log_rank_from_counts(counts: pd.DataFrame, group: str):
    """The log-rank test (statsmodels ``survdiff``, R ``survdiff``) from :func:`survival_counts` by group:
    ``O - E`` and the hypergeometric variance summed over the distinct durations, ``chi2 = (O-E)' V^-1 (O-E)``
    on the groups but the first, k - 1 degrees of freedom."""
    from helpers.retention import LogRankResult, RetentionInputError, RetentionModelError  # noqa: PLC0415

    c = counts.assign(_g=counts[group].astype(str))
    levels = np.unique(c["_g"].to_numpy())
    if len(levels) < 2:
        raise RetentionInputError(f"has only one group ({levels.tolist()}) - nothing to compare",
                                  table="survival data", column=group, expected="two or more groups")
    if c["events"].sum() == 0:
        raise RetentionInputError("has no churn events - nothing to compare", table="survival data",
                                  column="event", expected="customers who left in at least one group")
    utimes = np.unique(c["duration"].to_numpy(float))
    pos = np.searchsorted(utimes, c["duration"].to_numpy(float))
    ml = len(utimes)
    nrisk, obsv = [], []
    for lv in levels:
        m = (c["_g"] == lv).to_numpy()
        n = np.bincount(pos[m], weights=c["customers"].to_numpy(float)[m], minlength=ml)
        obsv.append(np.bincount(pos[m], weights=c["events"].to_numpy(float)[m], minlength=ml))
        nrisk.append(np.cumsum(n[::-1])[::-1])
    obs, nrisk_tot = sum(obsv), sum(nrisk)
    ix = np.flatnonzero(nrisk_tot > 1)
    dfs = len(levels) - 1
    r = np.vstack(nrisk) / np.clip(nrisk_tot, 1e-10, np.inf)[None, :]
    var_denom = np.clip(nrisk_tot - 1, 1e-10, np.inf)
    oes, variances = [], []
    for g in range(1, dfs + 1):
        oe = obsv[g] - r[g] * obs
        var = (r[1:, :].T * (np.eye(1, dfs, g - 1).ravel() - r[g, :, None])) * (obs * (nrisk_tot - obs) / var_denom)[:, None]
        oes.append(oe[ix].sum())
        variances.append(var[ix].sum(axis=0))
    o, v = np.hstack(oes), np.vstack(variances)
    try:
        chi2 = float(o.dot(np.linalg.solve(v, o)))
    except np.linalg.LinAlgError:
        raise RetentionModelError(f"the log-rank variance is singular ({int(c['events'].sum())} churn events across "
                                  f"{len(levels)} groups are too few to compare them)") from None
    tab = pd.DataFrame({group: levels, "n": [int(c.loc[c["_g"] == lv, "customers"].sum()) for lv in levels],
                        "events": [int(c.loc[c["_g"] == lv, "events"].sum()) for lv in levels]})
    return LogRankResult(statistic=chi2, df=dfs, p_value=float(1 - stats.chi2.cdf(chi2, dfs)), group=group, table=tab)


def sbg_counts(engine: Engine, by=None, as_of=None, filters=None, table: str = "customers") -> pd.DataFrame:
    """Customers per (``by`` groups, ``cohort`` signup month, ``lifetime_periods``, ``sbg_churned``,
    ``exposure_periods``): the discrete-time record of :func:`helpers.retention.customer_durations`
    (exposure = whole months from signup to ``as_of``; a churn in month t = ceil(duration) counts when t <=
    exposure, else the customer is censored after floor(duration) months), counted by the engine."""
    as_of = customers_as_of(engine, table) if as_of is None else pd.Timestamp(as_of).normalize()
    by_cols = [c for c in as_columns(by) if c != "cohort"]
    churned, stop = _stop_sql(as_of)
    m = repr(AVG_DAYS_PER_MONTH)
    dur = f"(CAST(date_diff('day', signup_date, {stop}) AS DOUBLE) / {m})"  # DOUBLE: see hours_sql
    exposure = f"CAST(floor(CAST(date_diff('day', signup_date, {sql_literal(as_of)}) AS DOUBLE) / {m} + 1e-9) AS BIGINT)"
    churn_period = f"CAST(greatest(1, ceil({dur} - 1e-9)) AS BIGINT)"
    observed = f"({churned} AND {churn_period} <= {exposure})"
    lifetime = (f"CASE WHEN {observed} THEN {churn_period} "
                f"ELSE least(CAST(floor({dur} + 1e-9) AS BIGINT), {exposure}) END")
    gsel = "".join(f"{q(c)}, " for c in by_cols)
    cohort = "CAST(date_trunc('month', signup_date) AS DATE)"
    inner = (f"SELECT {gsel}{cohort} AS cohort, {lifetime} AS lifetime_periods, "
             f"CASE WHEN {observed} THEN 1 ELSE 0 END AS sbg_churned, {exposure} AS exposure_periods "
             f"FROM {q(table)} {where_sql(filters, extra=[f'signup_date <= {sql_literal(as_of)}'])}")
    keys = [*[q(c) for c in by_cols], "cohort", "lifetime_periods", "sbg_churned", "exposure_periods"]
    out = engine.query(f"SELECT {', '.join(keys)}, count(*) AS customers FROM ({inner}) AS _c GROUP BY {', '.join(keys)}")
    for c in ("lifetime_periods", "sbg_churned", "exposure_periods", "customers"):
        out[c] = out[c].astype("int64")
    out["cohort"] = pd.to_datetime(out["cohort"]).dt.to_period("M")
    return out.sort_values([*by_cols, "cohort", "lifetime_periods", "sbg_churned", "exposure_periods"],
                           kind="stable").reset_index(drop=True)


def sbg_inputs(counts: pd.DataFrame) -> dict[str, np.ndarray]:
    """What :func:`helpers.retention.fit_sbg_durations` computes from its per-customer arrays, from the
    counts of one group: ``lost[t-1]`` churned in period t, ``alive[c]`` seen alive (censored) after c periods,
    ``exposure``/``exposure_customers`` (the bootstrap's censoring groups) and ``at_risk[t-1]`` (lifetime >= t)."""
    t, ev, ex, n = (counts[c].to_numpy("int64") for c in ("lifetime_periods", "sbg_churned", "exposure_periods",
                                                           "customers"))
    T = int(max(t.max(), ex.max(), 1))
    lost = np.bincount(t[ev == 1] - 1, weights=n[ev == 1], minlength=T)[:T].astype(float)
    alive = np.bincount(t[ev == 0], weights=n[ev == 0], minlength=T + 1)[:T + 1].astype(float)
    exposure = pd.Series(n).groupby(ex).sum().sort_index()
    at_risk = np.array([n[t >= k].sum() for k in range(1, T + 1)], float)
    return {"lost": lost, "alive": alive, "exposure": exposure.index.to_numpy("int64"),
            "exposure_customers": exposure.to_numpy("int64"), "at_risk": at_risk, "customers": int(n.sum())}


def fit_sbg_from_counts(counts: pd.DataFrame, n_boot: int = 200, level: float = 0.95, seed: int = 0,
                        label: str = ""):
    """:func:`helpers.retention.fit_sbg_durations` from the counts of one group (same likelihood, start,
    parametric bootstrap and observed curve; no per-customer arrays)."""
    from helpers.retention import (SBGResult, RetentionInputError, RetentionModelError,  # noqa: PLC0415
                                   _fit_sbg_counts, _sbg_parametric_bootstrap)

    if counts.empty or counts["customers"].sum() == 0:
        raise RetentionInputError("has no customers", table="customers", expected="at least one customer")
    x = sbg_inputs(counts)
    T = len(x["lost"])
    if x["lost"].sum() == 0:
        raise RetentionModelError("sBG: no customer churned, so alpha and beta are not identified")
    a, b, ll, ok = _fit_sbg_counts(x["lost"], x["alive"])
    if not ok:
        raise RetentionModelError(f"sBG did not converge (parameters ran to the bounds: {a:.3g}, {b:.3g})")
    groups = [(int(c), int(n)) for c, n in zip(x["exposure"], x["exposure_customers"])]
    boot = _sbg_parametric_bootstrap(a, b, groups, n_boot, seed, T) if n_boot else np.empty((0, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(x["at_risk"] > 0, 1 - x["lost"] / x["at_risk"], 1.0)
    km = np.r_[1.0, np.cumprod(step)]
    keep = np.r_[True, x["at_risk"] >= 30]
    obs = pd.DataFrame({"t": np.arange(T + 1)[keep], "survival": km[keep]})
    ex = np.repeat(x["exposure"], x["exposure_customers"]) if x["customers"] < 10_000_000 else None
    median_ex = int(np.median(ex)) if ex is not None else int(_weighted_median(x["exposure"], x["exposure_customers"]))
    return SBGResult(alpha=a, beta=b, loglik=ll, n_customers=x["customers"], periods_observed=median_ex,
                     boot=boot, level=level, label=label, observed=obs)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """np.median of ``values`` repeated ``weights`` times, without repeating them."""
    order = np.argsort(values, kind="stable")
    v, w = values[order], np.cumsum(weights[order])
    total = int(w[-1])
    lo, hi = (total - 1) // 2, total // 2
    return (v[np.searchsorted(w, lo + 1)] + v[np.searchsorted(w, hi + 1)]) / 2


def cohort_survivor_counts(counts: pd.DataFrame, min_size: int = 0) -> pd.DataFrame:
    """Per signup cohort of :func:`sbg_counts`: survivors ``n_t`` for t = 0 .. min exposure (the counts
    :func:`helpers.retention.cohort_survivors` gives for that cohort's customers). Columns cohort, t, survivors."""
    rows = []
    for cohort, g in counts.groupby("cohort", sort=True):
        size = int(g["customers"].sum())
        if size == 0 or size < min_size:
            continue
        T = int(g["exposure_periods"].min())
        churn = g[g["sbg_churned"] == 1]
        for k in range(T + 1):
            rows.append((cohort, k, size - int(churn.loc[churn["lifetime_periods"] <= k, "customers"].sum())))
    return pd.DataFrame(rows, columns=["cohort", "t", "survivors"])


def cox_sample(engine: Engine, size: int, seed: int = 0, covariates: Sequence[str] = ("segment",),
               satisfaction: bool = True, as_of=None, table: str = "customers") -> pd.DataFrame:
    """A seeded sample of ``size`` customers for a Cox fit (rows, bounded by ``size``): the customers with the
    smallest hash of (customer_id, seed), with ``duration`` (months), ``event`` and ``covariates`` (customer
    columns), plus ``mean_csat`` and ``n_responses`` (their answers up to ``as_of``) when ``satisfaction``.
    The same customers on every engine; ``attrs``: ``population`` (customers), ``size``, ``seed``."""
    if int(size) < 1:
        raise EngineError(f"cox_sample: size must be at least 1, got {size!r}")
    as_of = customers_as_of(engine, table) if as_of is None else pd.Timestamp(as_of).normalize()
    churned, stop = _stop_sql(as_of)
    text = f"CAST(c.customer_id AS VARCHAR) || ':' || {sql_literal(str(int(seed)))}"
    u = hash_uint32_sql(text)
    cov = "".join(f", c.{q(v)}" for v in covariates)
    sat_join = sat_cols = ""
    if satisfaction and engine.has("responses"):
        # the answers of the sampled customers only (a GROUP BY over every customer's answers held a hash table
        # of all the customers)
        sat_cols = ", s.mean_csat, s.n_responses"
        sat_join = (f"LEFT JOIN (SELECT customer_id, avg(csat) AS mean_csat, count(*) AS n_responses FROM responses "
                    f"WHERE response_date <= {sql_literal(as_of)} AND customer_id IN (SELECT customer_id FROM c) "
                    f"GROUP BY customer_id) AS s ON s.customer_id = c.customer_id")
    where = f"WHERE c.signup_date <= {sql_literal(as_of)}"
    population = int(engine.query(f"SELECT count(*) AS n FROM {q(table)} AS c {where}")["n"].iloc[0])

    def sql_for(condition: str) -> str:
        return (f"WITH c AS (SELECT * FROM {q(table)} AS c {where} AND {condition} ORDER BY {u}, customer_id "
                f"LIMIT {int(size)}) SELECT c.customer_id, date_diff('day', c.signup_date, "
                f"{stop.replace('end_date', 'c.end_date')}) AS days, CASE WHEN "
                f"{churned.replace('end_date', 'c.end_date')} THEN 1 ELSE 0 END AS event{cov}{sat_cols} FROM c "
                f"{sat_join}")

    sample = smallest_hash_rows(engine, sql_for, text, size, population)
    sample["duration"] = sample["days"].astype("int64") / AVG_DAYS_PER_MONTH
    sample["event"] = sample["event"].astype("int64")
    sample = sample.sort_values("customer_id", kind="stable").reset_index(drop=True)
    sample.attrs.update(population=population, size=len(sample), seed=int(seed))
    return sample


def retention_rate_counts(engine: Engine, as_of=None, by=None, filters=None, min_at_risk: int = 20,
                          table: str = "customers") -> pd.DataFrame:
    """:func:`helpers.retention.monthly_retention_rates` from the engine: per full calendar month m (from the
    month after the first signup to the last month ending on or before ``as_of``) and ``by`` group, ``at_risk``
    (signed up before m and not churned before m) and ``churned`` (of those, churned during m; a churn is an end
    date on or before ``as_of``), ``retention = 1 - churned / at_risk``; months with fewer than ``min_at_risk``
    customers at risk are left out. One query over the customers and a small table of months."""
    as_of_ts = customers_as_of(engine, table) if as_of is None else pd.Timestamp(as_of)
    by_cols = as_columns(by)
    columns = ["month", *by_cols, "at_risk", "churned", "retention"]
    extra = [f"signup_date <= {sql_literal(as_of_ts)}", *[f"{q(c)} IS NOT NULL" for c in by_cols]]
    where = where_sql(filters, extra=extra)
    first = engine.query(f"SELECT min(signup_date) AS s FROM {q(table)} {where}")["s"].iloc[0]
    if first is None or pd.isna(first):
        return pd.DataFrame(columns=columns)
    start = pd.Timestamp(first).to_period("M").to_timestamp() + pd.offsets.MonthBegin(1)
    last_full = (as_of_ts + pd.Timedelta(days=1)).to_period("M").to_timestamp() - pd.offsets.MonthBegin(1)
    months = pd.date_range(start, last_full, freq="MS")
    if not len(months):
        return pd.DataFrame(columns=columns)
    engine.register("_kit_months", pd.DataFrame({"_m": months, "_next": months + pd.offsets.MonthBegin(1)}))
    churned = f"(c.end_date IS NOT NULL AND c.end_date <= {sql_literal(as_of_ts)})"
    active = f"(c.signup_date < m._m AND NOT ({churned} AND c.end_date < m._m))"
    gsel = "".join(f", c.{q(col)}" for col in by_cols)
    sql = (f"SELECT m._m AS month{gsel}, {_int(f'count_if({active})')} AS at_risk, "
           f"{_int(f'count_if({active} AND {churned} AND c.end_date < m._next)')} AS churned "
           f"FROM (SELECT * FROM {q(table)} {where}) AS c CROSS JOIN _kit_months AS m "
           f"GROUP BY m._m{gsel}")
    out = engine.query(sql)
    out["month"] = pd.to_datetime(out["month"])
    out = out[out["at_risk"] >= min_at_risk].copy()
    out["at_risk"], out["churned"] = out["at_risk"].astype("int64"), out["churned"].astype("int64")
    out["retention"] = 1 - out["churned"] / out["at_risk"]
    return out.sort_values([*by_cols, "month"], kind="stable")[columns].reset_index(drop=True)
