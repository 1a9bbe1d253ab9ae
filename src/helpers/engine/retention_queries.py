"""Engine queries of the retention pages (issue 14): what the company retention page and the department page's
retention section still read as rows, as aggregates (DuckDB dialect, transpiled for Spark like
:mod:`helpers.engine.aggregates`, whose conventions they follow: months = days / 30.4375, a customer churned when
the end date is on or before the as-of day, customers who signed up later are not counted).

* :func:`customer_dates`: first and last signup, last end date, customers, rows without a signup date and rows
  ending before they start (what :func:`helpers.retention.survival_frame` checks on the rows).
* :func:`customer_counts`: per group, customers, churned, and the count and sum of ``monthly_revenue`` (the
  page's headline counts and the lifetime values' average monthly revenue).
* :func:`cohort_counts`: customers per signup month and whole days as a customer, with each month's last
  signup; :func:`helpers.retention.cohort_table_from_counts` turns them into the heatmap exactly.
* :func:`delayed_entry_counts`: one department's customers per (group, entry day, exit day, churned): entry =
  days from signup to the first ticket or survey answer with the department, exit = days from signup to churn or
  the as-of day; :func:`delayed_entry_km_from_counts` gives the Kaplan-Meier curves with delayed entry (left
  truncation: at risk at t when entry < t <= exit, so the number at risk is the number entered before t minus
  the number exited before t; Klein & Moeschberger, *Survival Analysis*, 2nd ed., 4.6) of
  :func:`helpers.objectives_report.delayed_entry_survival`, exactly.
* :func:`delayed_entry_margins`: the same customers' entries and exits counted separately (bounded by the
  number of days, not customers), which is all those curves need; :func:`couple_margins` pairs them back into
  records for ``SurvfuncRight``.
* :func:`department_survival`: that section of the department page in one call (from the margins).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.engine.aggregates import AVG_DAYS_PER_MONTH, _int, _stop_sql, as_columns, where_sql
from helpers.engine.base import Engine, quote_ident as q, sql_literal
from helpers.errors import KitError


def _day(value) -> pd.Timestamp | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).normalize()


def customer_dates(engine: Engine, cutoff=None, table: str = "customers") -> dict:
    """``first_signup``, ``last_signup``, ``last_end`` (Timestamps or None), ``customers``, ``no_signup`` (rows
    without a signup date) and ``end_before_signup``. ``cutoff``: the day the data were cut at (signups after it
    left out, end dates after it read as empty), for an engine reading the uncut files (Spark)."""
    signup, end = "signup_date", "end_date"
    where = ""
    if cutoff is not None:
        day = sql_literal(pd.Timestamp(cutoff).normalize())
        where = f"WHERE signup_date IS NULL OR signup_date <= {day}"
        end = f"CASE WHEN end_date <= {day} THEN end_date END"
    got = engine.query(f"SELECT min({signup}) AS first_signup, max({signup}) AS last_signup, max({end}) AS last_end, "
                       f"count(*) AS customers, {_int('count_if(signup_date IS NULL)')} AS no_signup, "
                       f"{_int(f'count_if({end} < signup_date)')} AS end_before_signup FROM {q(table)} {where}")
    row = got.iloc[0]
    return {"first_signup": _day(row["first_signup"]), "last_signup": _day(row["last_signup"]),
            "last_end": _day(row["last_end"]), "customers": int(row["customers"]),
            "no_signup": int(row["no_signup"]), "end_before_signup": int(row["end_before_signup"])}


def customer_counts(engine: Engine, as_of, by=None, filters=None, table: str = "customers") -> pd.DataFrame:
    """Per ``by`` group (customers who signed up on or before ``as_of``): ``customers``, ``churned`` (end date on
    or before ``as_of``), ``revenue_n`` and ``revenue_total`` (count and sum of ``monthly_revenue``; 0 and NaN
    without that column). Groups in sorted order (a missing group value last)."""
    day = sql_literal(pd.Timestamp(as_of).normalize())
    by_cols = as_columns(by)
    churned, _ = _stop_sql(pd.Timestamp(as_of).normalize())
    revenue = "monthly_revenue" in engine.columns(table)
    rev = (f"count(monthly_revenue) AS revenue_n, sum(CAST(monthly_revenue AS DOUBLE)) AS revenue_total"
           if revenue else "0 AS revenue_n, CAST(NULL AS DOUBLE) AS revenue_total")
    gsel = "".join(f"{q(c)}, " for c in by_cols)
    group = f"GROUP BY {', '.join(q(c) for c in by_cols)}" if by_cols else ""
    out = engine.query(f"SELECT {gsel}count(*) AS customers, {_int(f'count_if({churned})')} AS churned, {rev} "
                       f"FROM {q(table)} {where_sql(filters, extra=[f'signup_date <= {day}'])} {group}")
    for c in ("customers", "churned", "revenue_n"):
        out[c] = out[c].astype("int64")
    out["revenue_total"] = out["revenue_total"].astype("float64")
    if by_cols:
        out = out.sort_values(by_cols, kind="stable", na_position="last", key=lambda s: s.astype(str)
                              .where(s.notna(), None))
    return out.reset_index(drop=True)


def cohort_counts(engine: Engine, as_of, filters=None, table: str = "customers") -> pd.DataFrame:
    """Customers per signup month (``cohort``, a month start) and whole ``days`` from signup to churn (end date
    on or before ``as_of``) or ``as_of``, with the first and last signup among them (the customers observed the
    longest and the shortest)."""
    as_of = pd.Timestamp(as_of).normalize()
    _, stop = _stop_sql(as_of)
    cohort = "CAST(date_trunc('month', signup_date) AS DATE)"
    days = f"date_diff('day', signup_date, {stop})"
    inner = (f"SELECT {cohort} AS cohort, {days} AS days, signup_date FROM {q(table)} "
             f"{where_sql(filters, extra=[f'signup_date <= {sql_literal(as_of)}'])}")
    out = engine.query(f"SELECT cohort, days, count(*) AS customers, min(signup_date) AS first_signup, "
                       f"max(signup_date) AS last_signup FROM ({inner}) AS _c GROUP BY cohort, days")
    for c in ("cohort", "first_signup", "last_signup"):
        out[c] = pd.to_datetime(out[c])
    out["days"], out["customers"] = out["days"].astype("int64"), out["customers"].astype("int64")
    return out.sort_values(["cohort", "days"], kind="stable").reset_index(drop=True)


def cohort_table_inputs(counts: pd.DataFrame, as_of) -> tuple[pd.DataFrame, pd.Series]:
    """:func:`cohort_counts` as the inputs of :func:`helpers.retention.cohort_table_from_counts`: customers per
    (cohort label ``YYYY-MM``, whole months survived = floor(days / 30.4375 + 1e-9)) and each cohort's
    exposure (whole months from its last signup to ``as_of``, :func:`helpers.retention.customer_durations`)."""
    from helpers.retention import whole_months  # noqa: PLC0415

    label = counts["cohort"].dt.to_period("M").astype(str)
    months = whole_months(counts["days"].to_numpy() / AVG_DAYS_PER_MONTH)
    survived = (pd.DataFrame({"cohort": label.to_numpy(), "months": months, "customers": counts["customers"].to_numpy()})
                .groupby(["cohort", "months"], as_index=False)["customers"].sum())
    last = counts.assign(cohort=label).groupby("cohort")["last_signup"].max()
    days_observed = (pd.Timestamp(as_of).normalize() - last).dt.days.to_numpy()
    exposure = pd.Series(whole_months(days_observed / AVG_DAYS_PER_MONTH), index=last.index)
    return survived, exposure


def _contacts_sql(engine: Engine, department: str, until) -> str | None:
    """Every ticket and survey answer of ``department`` (customer id as text, when as a timestamp), up to
    ``until`` (inclusive, a timestamp) when given."""
    parts = []
    for table, col in (("tickets", "created_at"), ("responses", "response_date")):
        if not engine.has(table):
            continue
        when = f"CAST({q(col)} AS TIMESTAMP)"
        extra = [f"{q(col)} IS NOT NULL"] + ([f"{when} <= {sql_literal(pd.Timestamp(until))}"]
                                               if until is not None else [])
        parts.append(f"SELECT CAST(customer_id AS VARCHAR) AS customer_id, {when} AS contact FROM {q(table)} "
                     f"{where_sql({'department': department}, extra=extra)}")
    return " UNION ALL ".join(parts) if parts else None


def _delayed_entry_rows(engine: Engine, department: str, as_of, by_cols: list[str], contacts_until,
                        table: str) -> tuple[str | None, pd.Timestamp | None]:
    """``(SQL of one row per customer: by columns, entry_days, exit_days, event; the as-of day)`` for
    :func:`delayed_entry_counts` and :func:`delayed_entry_margins`; ``(None, None)`` without contacts or dates."""
    contacts = _contacts_sql(engine, department, contacts_until)
    if contacts is None:
        return None, None
    joined = (f"(SELECT c.*, f.first_contact FROM {q(table)} AS c JOIN (SELECT customer_id, min(contact) AS "
              f"first_contact FROM ({contacts}) AS _t GROUP BY customer_id) AS f "
              f"ON CAST(c.customer_id AS VARCHAR) = f.customer_id) AS _d")
    if as_of is None:
        got = engine.query(f"SELECT max(signup_date) AS s, max(end_date) AS e FROM {joined}")
        days = [_day(got[c].iloc[0]) for c in ("s", "e")]
        days = [d for d in days if d is not None]
        as_of = max(days) if days else None
    if as_of is None:
        return None, None
    as_of = pd.Timestamp(as_of).normalize()
    churned, stop = _stop_sql(as_of)
    inner = (f"SELECT {''.join(f'{q(c)}, ' for c in by_cols)}"
             f"date_diff('day', signup_date, CAST(first_contact AS DATE)) AS entry_days, "
             f"date_diff('day', signup_date, {stop}) AS exit_days, CASE WHEN {churned} THEN 1 ELSE 0 END AS event "
             f"FROM {joined} WHERE signup_date <= {sql_literal(as_of)}")
    return inner, as_of


def delayed_entry_counts(engine: Engine, department: str, as_of=None, by=None, contacts_until=None,
                         table: str = "customers") -> pd.DataFrame:
    """One department's customers (a ticket or survey answer with it up to ``contacts_until``) per ``by`` group,
    ``entry_days`` (signup to the first contact's day, not clipped), ``exit_days`` (signup to churn or ``as_of``),
    ``event`` (churned on or before ``as_of``): ``customers``. ``as_of`` None: the latest signup or end date of
    those customers (:func:`helpers.retention.customer_durations`). ``attrs["as_of"]``: the day used.

    The joint table has up to (days of entry) x (days of exit) rows per group, which grows with the data (380,000
    rows for one department at 1M customers): the department page uses :func:`delayed_entry_margins` instead."""
    by_cols = as_columns(by)
    columns = [*by_cols, "entry_days", "exit_days", "event", "customers"]
    inner, as_of = _delayed_entry_rows(engine, department, as_of, by_cols, contacts_until, table)
    if inner is None:
        return pd.DataFrame(columns=columns)
    keys = [*[q(c) for c in by_cols], "entry_days", "exit_days", "event"]
    out = engine.query(f"SELECT {', '.join(keys)}, count(*) AS customers FROM ({inner}) AS _e "
                       f"GROUP BY {', '.join(keys)}")
    for c in ("entry_days", "exit_days", "event", "customers"):
        out[c] = out[c].astype("int64")
    out = out.sort_values([*by_cols, "entry_days", "exit_days", "event"], kind="stable").reset_index(drop=True)
    out.attrs["as_of"] = as_of
    return out[columns]


def delayed_entry_margins(engine: Engine, department: str, as_of=None, by=None, contacts_until=None,
                          table: str = "customers") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What the Kaplan-Meier curve with delayed entry needs from :func:`delayed_entry_counts`, in one pass and
    bounded by the number of days rather than the number of customers: ``(entries, exits, totals)``.

    Of the customers with time at risk (entry clipped at 0 before exit): ``entries`` = customers per (group,
    ``entry_days`` clipped at 0), ``exits`` = customers per (group, ``exit_days``, ``event``); ``totals`` = all
    the department's customers per group, with or without time at risk. At risk at t is the number entered before
    t minus the number exited before t, so these margins give the curve exactly (statsmodels ``SurvfuncRight``
    counts them so: :func:`couple_margins` turns them back into records). ``attrs["as_of"]`` of each: the day."""
    by_cols = as_columns(by)
    frames = (pd.DataFrame(columns=[*by_cols, "entry_days", "customers"]),
              pd.DataFrame(columns=[*by_cols, "exit_days", "event", "customers"]),
              pd.DataFrame(columns=[*by_cols, "customers"]))
    inner, as_of = _delayed_entry_rows(engine, department, as_of, by_cols, contacts_until, table)
    if inner is None:
        return frames
    group = [q(c) for c in by_cols]
    sets = [[*group, "entry_days", "at_risk"], [*group, "exit_days", "event", "at_risk"]]
    out = engine.query(
        f"SELECT {''.join(f'{c}, ' for c in group)}entry_days, exit_days, event, at_risk, "
        f"grouping(exit_days) AS entry_set, count(*) AS customers FROM (SELECT {''.join(f'{c}, ' for c in group)}"
        f"greatest(entry_days, 0) AS entry_days, exit_days, event, "
        f"CASE WHEN greatest(entry_days, 0) < exit_days THEN 1 ELSE 0 END AS at_risk FROM ({inner}) AS _e) AS _m "
        f"GROUP BY GROUPING SETS ({', '.join('(' + ', '.join(s) + ')' for s in sets)})")
    for c in ("at_risk", "entry_set", "customers"):
        out[c] = out[c].astype("int64")
    entry_rows = out[out["entry_set"] == 1]
    totals = entry_rows.groupby(by_cols, dropna=False, sort=True)["customers"].sum().reset_index() if by_cols \
        else pd.DataFrame({"customers": [int(entry_rows["customers"].sum())]})
    entries = entry_rows[entry_rows["at_risk"] == 1][[*by_cols, "entry_days", "customers"]]
    exits = out[(out["entry_set"] == 0) & (out["at_risk"] == 1)][[*by_cols, "exit_days", "event", "customers"]]
    entries = entries.astype({"entry_days": "int64"}).sort_values([*by_cols, "entry_days"], kind="stable")
    exits = exits.astype({"exit_days": "int64", "event": "int64"}).sort_values([*by_cols, "exit_days", "event"],
                                                                                kind="stable")
    result = (entries.reset_index(drop=True), exits.reset_index(drop=True), totals.reset_index(drop=True))
    for frame in result:
        frame.attrs["as_of"] = as_of
    return result


def couple_margins(entries: pd.DataFrame, exits: pd.DataFrame, group: str | None = None) -> pd.DataFrame:
    """Records (``entry_days``, ``exit_days``, ``event``, ``customers``) with the margins of
    :func:`delayed_entry_margins`, each with entry before exit: the k-th earliest entry paired with the k-th
    earliest exit (the quantile coupling of the two weighted margins; at most ``len(entries) + len(exits)``
    records per group). Every quantity of the Kaplan-Meier curve with delayed entry (numbers at risk, events,
    times) depends on the margins only, so :func:`delayed_entry_km_from_counts` gives the same curve as on the
    customers' own (entry, exit) pairs. Entry before exit holds for each pair: the k customers who exit first
    all entered before the k-th exit, so the k-th entry comes before it."""
    keys = [None] if group is None else sorted(set(entries[group]) | set(exits[group]), key=str)
    parts = []
    for k in keys:
        e = entries if k is None else entries[entries[group] == k]
        x = exits if k is None else exits[exits[group] == k]
        e = e.groupby("entry_days", sort=True)["customers"].sum()
        x = x.groupby(["exit_days", "event"], sort=True)["customers"].sum()
        ce, cx = np.cumsum(e.to_numpy(np.int64)), np.cumsum(x.to_numpy(np.int64))
        if not len(ce) or not len(cx) or ce[-1] != cx[-1]:
            raise ValueError("couple_margins: the entry and exit margins must count the same customers")
        cuts = np.union1d(ce, cx)
        weights = np.diff(np.concatenate([[0], cuts]))
        ie, ix = np.searchsorted(ce, cuts, side="left"), np.searchsorted(cx, cuts, side="left")
        exit_days, events = x.index.get_level_values(0).to_numpy(), x.index.get_level_values(1).to_numpy()
        part = pd.DataFrame({"entry_days": e.index.to_numpy()[ie], "exit_days": exit_days[ix],
                             "event": events[ix], "customers": weights})
        if group is not None:
            part.insert(0, group, k)
        parts.append(part)
    cols = ([group] if group is not None else []) + ["entry_days", "exit_days", "event", "customers"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def loglog_survival_interval(s: np.ndarray, se: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Log-log (complementary log-log) pointwise interval of a survival curve ``s`` with standard errors ``se``:
    ``exp(-exp(log(-log s) -/+ z se / (s |log s|)))``, 1 where ``s = 1`` and 0 where ``s = 0`` (Kalbfleisch &
    Prentice 2002, 4.3; R survival's ``conf.type = "log-log"``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = np.log(-np.log(s))
        sell = se / (s * np.abs(np.log(s)))
        lo = np.where(s >= 1, 1.0, np.where(s <= 0, 0.0, np.exp(-np.exp(ll + z * sell))))
        hi = np.where(s >= 1, 1.0, np.where(s <= 0, 0.0, np.exp(-np.exp(ll - z * sell))))
    return lo, hi


def delayed_entry_km_from_counts(counts: pd.DataFrame, group: str | None = None, alpha: float = 0.05):
    """:func:`helpers.objectives_report.delayed_entry_survival` from :func:`delayed_entry_counts`: months =
    days / 30.4375, entry clipped at 0, customers with entry at or after their exit left out; statsmodels
    ``SurvfuncRight(time, status, entry=, freq_weights=)`` (numbers at risk = entered before t minus exited
    before t) with Greenwood standard errors as without weights, log-log intervals, the median with its
    ``cloglog`` interval. Returns a :class:`helpers.retention.KaplanMeierResult`."""
    from scipy import stats  # noqa: PLC0415
    from statsmodels.duration.survfunc import SurvfuncRight  # noqa: PLC0415

    from helpers.engine.aggregates import _greenwood_se  # noqa: PLC0415
    from helpers.errors import KitError  # noqa: PLC0415
    from helpers.retention import KaplanMeierResult  # noqa: PLC0415

    c = counts.assign(entry=np.maximum(counts["entry_days"].to_numpy() / AVG_DAYS_PER_MONTH, 0.0),
                      duration=counts["exit_days"].to_numpy() / AVG_DAYS_PER_MONTH)
    c = c[c["entry"] < c["duration"]]
    if c.empty or c["customers"].sum() == 0:
        raise KitError("no customer has time at risk after entering the sample (entry before the end)")
    z = stats.norm.ppf(1 - alpha / 2)
    keys = [None] if group is None else sorted(c[group].dropna().unique(), key=str)
    rows, meds = [], []
    for k in keys:
        part = c if k is None else c[c[group] == k]
        d, e = part["duration"].to_numpy(float), part["event"].to_numpy(float)
        w, en = part["customers"].to_numpy(float), part["entry"].to_numpy(float)
        sf = SurvfuncRight(d, e, entry=en, freq_weights=w)
        s = np.asarray(sf.surv_prob, float)
        se = sf.surv_prob_se = _greenwood_se(s, np.asarray(sf.n_risk, float), np.asarray(sf.n_events, float))
        lo, hi = loglog_survival_interval(s, se, z)
        n_total = int(w.sum())
        table = pd.DataFrame({"time": sf.surv_times, "survival": s, "ci_low": lo, "ci_high": hi,
                              "at_risk": np.rint(np.asarray(sf.n_risk, float)).astype("int64"),
                              "events": np.rint(np.asarray(sf.n_events, float)).astype("int64")})
        if table.empty:
            table = pd.DataFrame({"time": [float(d.max())], "survival": [1.0], "ci_low": [1.0], "ci_high": [1.0],
                                  "at_risk": [n_total], "events": [0]})
        if group is not None:
            table.insert(0, group, k)
        rows.append(table)
        med, lo_m, hi_m = float("nan"), float("nan"), float("inf")
        if (s <= 0.5).any():
            med = float(sf.quantile(0.5))
            with np.errstate(divide="ignore", invalid="ignore"):
                ci = sf.quantile_ci(0.5, alpha=alpha, method="cloglog")
            lo_m = float(ci[0]) if ci[0] is not None else float("nan")
            hi_m = float(ci[1]) if ci[1] is not None else float("inf")
        mrow = {"n": n_total, "events": int((e * w).sum()), "median": med, "ci_low": lo_m, "ci_high": hi_m,
                "last_time": float(d.max()), "survival_at_end": float(s[-1]) if len(s) else 1.0}
        meds.append({group: k, **mrow} if group is not None else mrow)
    return KaplanMeierResult(table=pd.concat(rows, ignore_index=True), medians=pd.DataFrame(meds), group=group,
                             alpha=alpha, log_rank_note="curves with delayed entry are not compared by a test here")


def department_survival(engine: Engine, department: str, as_of=None, by: str = "segment"):
    """``(KaplanMeierResult or None, message)``: the department page's retention section from the engine (the
    curves of :meth:`helpers.objectives_report.DepartmentReport.retention` on the rows): the department's
    customers (a ticket or answer with it up to the end of the as-of day) counted from their first contact,
    by ``by`` when it has two or more values. Raises :class:`helpers.errors.KitError` when nobody has time at
    risk after entering."""
    until = None if as_of is None else pd.Timestamp(as_of) + pd.Timedelta(days=1)
    group = by if by and by in engine.columns("customers") else None
    entries, exits, totals = delayed_entry_margins(engine, department, as_of=as_of, by=group, contacts_until=until)
    if totals.empty or int(totals["customers"].sum()) == 0:
        return None, f"No customers contacted {department} up to the as-of date."
    if group is not None and totals[group].nunique() < 2:
        group = None
    if entries.empty:
        raise KitError("no customer has time at risk after entering the sample (entry before the end)")
    return delayed_entry_km_from_counts(couple_margins(entries, exits, group), group=group), ""
