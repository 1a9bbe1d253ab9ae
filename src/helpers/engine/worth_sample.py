"""What the satisfaction-value chain (:mod:`helpers.impact`, :mod:`helpers.impact_report`) needs, from the engine:
a seeded sample of customers with their per-customer statistics, and the population totals the sample's
estimates are scaled to.

The chain's links 1-2 (regression, calibration, Cox) and its predictions (links 3-4) are per customer and
cannot be aggregated, so they run on a seeded sample whose size the page states; the numbers of customers
and their revenue are population totals from aggregates, exact.

* **Sample**: the ``size`` customers signed up by the as-of day with the smallest hash of
  ``customer_id || ':' || seed`` (:func:`helpers.engine.aggregates.hash_uint32_sql`, ties by id: the same
  customers as :func:`helpers.engine.aggregates.cox_sample` with the same seed, on any engine, row order or
  partitioning), with their contract columns (signup and end date, segment, monthly revenue); the sample's ids
  are registered in the engine and joined, so every per-customer statistic comes back for the sample only
  (rows bounded by ``size``):

  - per rating (csat, nps): ``n_ratings``, ``mean_rating``, ``within_ss = var_samp * (n - 1)`` of the answers up
    to the as-of day (:func:`helpers.churn_link.rating_summary`);
  - the regression's per-customer cross-products of [1, attributes, csat] over complete answers
    (:func:`helpers.impact.driver_crossproducts`);
  - answers per department (main department, ties alphabetical: :func:`helpers.impact_report.main_department`;
    the share about a department: :func:`helpers.impact_report.department_exposure`).
* **Population** (all customers, by GROUP BY): per cell (main department x segment) the customers active at
  the as-of day and the sum of their monthly revenue (non-missing); each department's share of all answers.

The chain turns sample sums into population figures with ratio estimators per cell (:func:`helpers.impact._chain`
with ``population=``): customers kept x N_g / n_g, revenue x R_g / r_g (R, r: the cell's monthly revenue in the
population and the sample); when the sample is every customer both ratios are 1 and the result is the row
path's. Reference for the ratio estimator and its bootstrap: Cochran, *Sampling Techniques*, 3rd ed. 1977,
ch. 6; Rao & Wu (1988), JASA 83, for the rescaled bootstrap weights that carry the finite-population
correction.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.engine.aggregates import hash_uint32_sql, smallest_hash_rows
from helpers.engine.base import Engine, EngineError, quote_ident as q, sql_literal

NO_ANSWERS = "no answers"  # helpers.impact_report.NO_ANSWERS
CELL_SEP = "\x1f"          # helpers.impact_report.CELL_SEP
SAMPLE_TABLE = "_kit_worth_sample"
DEFAULT_SIZE = 100_000
PART_CUSTOMERS = 1_500_000  # customers per part of the population query (its hash table follows the part)
HEX = "0123456789abcdef"


@dataclass
class WorthSample:
    """The chain's inputs from the engine. ``customers``: the sampled customers (``customer_id``,
    ``signup_date``, ``end_date``, the segment, the revenue column, ``_cell`` = main department x segment),
    ordered by id; ``ratings``: rating -> per-customer summary; ``crossproducts``: index customer id, columns
    ``cp_i_j``; ``attributes`` in their order; ``department_answers``: customer_id, department (None for answers
    without one), n; ``department_share``: each department's share of all answers; ``population``: per cell
    ``customers`` (active at the as-of day) and ``revenue`` (their monthly revenue); ``population_size``:
    customers signed up by the as-of day."""

    customers: pd.DataFrame
    ratings: dict
    crossproducts: pd.DataFrame
    attributes: list
    department_answers: pd.DataFrame
    department_share: pd.Series
    population: pd.DataFrame
    population_size: int
    size: int
    seed: int
    as_of: pd.Timestamp
    notes: list = field(default_factory=list)

    @property
    def covers_all(self) -> bool:
        """True when every customer is in the sample (the chain's result is then the row path's)."""
        return self.size >= self.population_size

    @property
    def fraction(self) -> float:
        return self.size / self.population_size if self.population_size else 1.0

    def sentence(self) -> str:
        """"fitted on a seeded sample of 100,000 of 1,000,000 customers" (or "on all 2,000 customers")."""
        if self.covers_all:
            return f"fitted on all {self.population_size:,} customers"
        return (f"fitted on a seeded sample of {self.size:,} of {self.population_size:,} customers (seed "
                f"{self.seed}); customers and revenue are totals over all customers, and the intervals include "
                "the sampling error")

    def exposure(self, department: str) -> pd.Series:
        """Each sampled customer's share of answers about ``department`` (customers without answers: the
        department's share of all answers), by customer id (:func:`helpers.impact_report.department_exposure`)."""
        da = self.department_answers
        total = da.groupby("customer_id")["n"].sum()
        hit = da[da["department"] == department].groupby("customer_id")["n"].sum()
        share = (hit.reindex(total.index).fillna(0.0) / total).astype("float64")
        fill = float(self.department_share.get(department, 0.0))
        return share.reindex(pd.Index(self.customers["customer_id"])).fillna(fill)


def _until(as_of) -> str:
    """``response_date <= as_of`` (as the row path: ``pd.to_datetime(response_date) <= as_of``)."""
    return f"response_date <= {sql_literal(pd.Timestamp(as_of))}"


def responses_as_of(engine: Engine, date: str = "response_date") -> pd.Timestamp:
    """The latest answer's day (the chain's default as-of day)."""
    got = engine.query(f"SELECT max({q(date)}) AS d FROM responses")["d"].iloc[0]
    if got is None or pd.isna(got):
        raise EngineError(f"{engine.name} engine: the responses have no dates")
    return pd.Timestamp(got)


def rating_summary_engine(engine: Engine, rating: str, as_of, join: str = "") -> pd.DataFrame:
    """:func:`helpers.churn_link.rating_summary` by the engine, for the customers of ``join`` (a JOIN clause on
    ``r.customer_id``; "" = everyone)."""
    x = f"CAST(r.{q(rating)} AS DOUBLE)"
    out = engine.query(
        f"SELECT r.customer_id, count(*) AS n_ratings, avg({x}) AS mean_rating, "
        f"coalesce(var_samp({x}), 0.0) * (count(*) - 1) AS within_ss FROM responses AS r {join} "
        f"WHERE r.{q(rating)} IS NOT NULL AND r.{_until(as_of)} GROUP BY r.customer_id")
    out["n_ratings"] = out["n_ratings"].astype("int64")
    out["within_ss"] = np.maximum(out["within_ss"].astype("float64"), 0.0)
    return out.sort_values("customer_id", kind="stable").reset_index(drop=True)


def crossproducts_engine(engine: Engine, attributes: Sequence[str], as_of, outcome: str = "csat",
                         join: str = "") -> pd.DataFrame:
    """:func:`helpers.impact.driver_crossproducts` by the engine (index customer id, columns ``cp_i_j``)."""
    cols = [*attributes, outcome]
    v = ["1.0"] + [f"CAST(r.{q(c)} AS DOUBLE)" for c in cols]
    ia, ib = np.triu_indices(len(v))
    sums = ", ".join(f"sum({v[i]} * {v[j]}) AS cp_{i}_{j}" for i, j in zip(ia, ib))
    where = " AND ".join(f"r.{q(c)} IS NOT NULL" for c in cols)
    out = engine.query(f"SELECT r.customer_id, {sums} FROM responses AS r {join} WHERE {where} AND "
                       f"r.{_until(as_of)} GROUP BY r.customer_id")
    return out.sort_values("customer_id", kind="stable").set_index("customer_id")


def _main_department_sql(as_of, join: str = "") -> str:
    """Per customer the department with the most answers up to the as-of day (ties: alphabetical), by two
    GROUP BYs (no window: the same memory as an aggregate on any engine); ``join``: the customers to count."""
    n = (f"SELECT r.customer_id, r.department, count(*) AS n FROM responses AS r {join} "
         f"WHERE r.department IS NOT NULL AND r.{_until(as_of)} GROUP BY r.customer_id, r.department")
    return (f"WITH n AS ({n}), mx AS (SELECT customer_id, max(n) AS n FROM n GROUP BY customer_id) "
            f"SELECT n.customer_id, min(CAST(n.department AS VARCHAR)) AS main_department FROM n "
            f"JOIN mx ON n.customer_id = mx.customer_id AND n.n = mx.n GROUP BY n.customer_id")


def worth_sample(engine: Engine, size: int = DEFAULT_SIZE, seed: int = 0, as_of=None, *, segment: str = "segment",
                 revenue: str = "monthly_revenue", ratings: Sequence[str] = ("csat", "nps"),
                 attributes: Sequence[str] | None = None, outcome: str = "csat",
                 extra_columns: Sequence[str] = ()) -> WorthSample:
    """The chain's inputs for a seeded sample of ``size`` customers and the population totals (module
    docstring). ``as_of``: the day customers are followed up to (default: the latest answer). ``attributes``:
    the rated attributes (default: every ``attr_*`` column of the responses); ``extra_columns``: more customer
    columns of the sample (e.g. covariates)."""
    if int(size) < 1:
        raise EngineError(f"worth_sample: size must be at least 1, got {size!r}")
    for table in ("customers", "responses"):
        if not engine.has(table):
            raise EngineError(f"{engine.name} engine: no {table} table for the satisfaction-value chain")
    as_of = responses_as_of(engine) if as_of in (None, "") else pd.Timestamp(as_of)
    rcols = engine.columns("responses")
    ccols = engine.columns("customers")
    extra = [c for c in dict.fromkeys(extra_columns) if c not in ("customer_id", "signup_date", "end_date", segment,
                                                                   revenue)]
    missing = [c for c in ("customer_id", "signup_date", "end_date", segment, *extra) if c not in ccols]
    if missing:
        raise EngineError(f"{engine.name} engine: the customers table has no column(s) {missing}")
    attrs = list(attributes) if attributes is not None else [c for c in rcols if str(c).startswith("attr_")]
    asof_lit = sql_literal(pd.Timestamp(as_of))
    text = f"CAST(c.customer_id AS VARCHAR) || ':' || {sql_literal(str(int(seed)))}"
    u = hash_uint32_sql(text)
    known = f"c.signup_date <= {asof_lit}"
    more = "".join(f", c.{q(c)}" for c in extra)
    # without a revenue column the sample still serves the churn link (the chain then says what is missing)
    rev_sql = f"CAST(c.{q(revenue)} AS DOUBLE)" if revenue in ccols else "CAST(NULL AS DOUBLE)"
    population_size = int(engine.query(f"SELECT count(*) AS n FROM customers AS c WHERE {known}")["n"].iloc[0])
    # the smallest hashes, ordering only the customers below a hash bound (aggregates.smallest_hash_rows)
    cust = smallest_hash_rows(
        engine, lambda condition: (f"SELECT c.customer_id, c.signup_date, c.end_date, c.{q(segment)}, {rev_sql} AS "
                                   f"{q(revenue)}{more} FROM customers AS c WHERE {known} AND {condition} "
                                   f"ORDER BY {u}, c.customer_id LIMIT {int(size)}"),
        text, size, population_size)
    cust = cust.sort_values("customer_id", kind="stable").reset_index(drop=True)
    for c in ("signup_date", "end_date"):
        cust[c] = pd.to_datetime(cust[c])
    covers_all = len(cust) >= population_size
    if covers_all:
        join = ""
    else:
        engine.register(SAMPLE_TABLE, cust[["customer_id"]])
        join = f"JOIN {q(SAMPLE_TABLE)} AS s ON s.customer_id = r.customer_id"
    summaries = {m: rating_summary_engine(engine, m, as_of, join) for m in ratings if m in rcols}
    cps = crossproducts_engine(engine, attrs, as_of, outcome, join) if attrs and outcome in rcols \
        else pd.DataFrame()
    has_dept = "department" in rcols
    if has_dept:
        da = engine.query(f"SELECT r.customer_id, CAST(r.department AS VARCHAR) AS department, count(*) AS n "
                          f"FROM responses AS r {join} WHERE r.{_until(as_of)} "
                          f"GROUP BY r.customer_id, r.department")
        da["n"] = da["n"].astype("int64")
        by_dept = engine.query(f"SELECT CAST(department AS VARCHAR) AS department, count(*) AS n FROM responses "
                               f"WHERE {_until(as_of)} GROUP BY department")
        share = pd.Series(by_dept["n"].to_numpy("float64") / max(float(by_dept["n"].sum()), 1.0),
                          index=by_dept["department"].to_numpy())
        share = share[share.index.notna()]
        named = da[da["department"].notna()].sort_values(["customer_id", "n", "department"],
                                                         ascending=[True, False, True], kind="stable")
        main = named.drop_duplicates("customer_id").set_index("customer_id")["department"]
    else:
        da = pd.DataFrame({"customer_id": pd.Series(dtype=object), "department": pd.Series(dtype=object),
                           "n": pd.Series(dtype="int64")})
        share, main = pd.Series(dtype="float64"), pd.Series(dtype=object)
    dept = main.reindex(cust["customer_id"]).fillna(NO_ANSWERS).to_numpy()
    cust["_cell"] = pd.Series(dept, index=cust.index).astype(str) + CELL_SEP + cust[segment].astype(str)
    # population per cell: today's customers (not churned by the as-of day, segment known) and their revenue
    # in parts of about PART_CUSTOMERS customers (by the first hex digit of md5(customer_id)), so the per
    # (customer, department) hash table of the main department follows a part, not the data
    active = f"{known} AND NOT (c.end_date IS NOT NULL AND c.end_date <= {asof_lit}) AND c.{q(segment)} IS NOT NULL"
    cell = (f"coalesce(m.main_department, {sql_literal(NO_ANSWERS)}) || {sql_literal(CELL_SEP)} || "
            f"CAST(c.{q(segment)} AS VARCHAR)")
    parts = min(len(HEX), max(1, -(-population_size // PART_CUSTOMERS)))
    got = []
    for k in range(parts):
        digits = ", ".join(sql_literal(h) for i, h in enumerate(HEX) if i % parts == k)
        part = "" if parts == 1 else f" AND substr(md5(CAST(c.customer_id AS VARCHAR)), 1, 1) IN ({digits})"
        today = f"SELECT c.* FROM customers AS c WHERE {active}{part}"
        main_sql = (_main_department_sql(as_of, "JOIN t ON t.customer_id = r.customer_id") if has_dept else
                    "SELECT customer_id, CAST(NULL AS VARCHAR) AS main_department FROM t WHERE FALSE")
        got.append(engine.query(f"WITH t AS ({today}), m AS ({main_sql}) SELECT {cell} AS cell, count(*) AS customers, "
                                f"sum({rev_sql}) AS revenue FROM t AS c "
                                f"LEFT JOIN m ON m.customer_id = c.customer_id GROUP BY {cell}"))
    pop = pd.concat(got).groupby("cell", sort=True)[["customers", "revenue"]].sum(min_count=1)
    pop["customers"] = pop["customers"].astype("int64")
    pop["revenue"] = pop["revenue"].astype("float64").fillna(0.0)
    return WorthSample(customers=cust, ratings=summaries, crossproducts=cps, attributes=attrs,
                       department_answers=da, department_share=share, population=pop,
                       population_size=population_size, size=len(cust), seed=int(seed), as_of=pd.Timestamp(as_of))


def rating_distribution(engine: Engine, metric: str, department: str, filters: dict, since, as_of) -> tuple:
    """(values, counts) of the ``metric`` answers about ``department`` dated after ``since`` and up to the
    as-of day, with ``filters`` (column -> values, compared as text): what
    :func:`helpers.impact_report.rating_shift_from_counts` needs. Values rounded to whole ratings (``np.rint``)."""
    where = [f"{q(metric)} IS NOT NULL", f"response_date > {sql_literal(pd.Timestamp(since))}", _until(as_of), f"CAST(department AS VARCHAR) = {sql_literal(str(department))}"]
    for col, vals in (filters or {}).items():
        where.append(f"CAST({q(col)} AS VARCHAR) IN ({', '.join(sql_literal(str(v)) for v in vals)})"
                     if vals else "FALSE")
    got = engine.query(f"SELECT CAST({q(metric)} AS DOUBLE) AS v, count(*) AS n FROM responses "
                       f"WHERE {' AND '.join(where)} GROUP BY {q(metric)}")
    if got.empty:
        return np.array([]), np.array([])
    tab = pd.DataFrame({"v": np.rint(got["v"].to_numpy("float64")), "n": got["n"].to_numpy("float64")})
    tab = tab.groupby("v", sort=True)["n"].sum()
    return tab.index.to_numpy("float64"), tab.to_numpy("float64")
