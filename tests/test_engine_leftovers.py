"""Issue #14 leftovers: the bounded hash sample shared by the Cox and worth samples (the same customers as the full
sort), the params check's distinct values in few queries, the index page's KPIs on the configured engine, the
Comparison's ``sample`` field, and the funnel's range checks on the engine path."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from helpers.engine import DuckDBEngine
from helpers.engine import aggregates as A


@pytest.fixture(scope="module")
def eng(demo_dir):
    tables = {t: str(demo_dir / f"{t}.parquet") for t in ("customers", "responses", "tickets")}
    with DuckDBEngine(tables=tables) as engine:
        yield engine


class CountingEngine:
    """An engine wrapper that records every query (to count them, not to time them)."""

    def __init__(self, engine):
        self._engine, self.queries = engine, []

    def query(self, sql):
        self.queries.append(sql)
        return self._engine.query(sql)

    def __getattr__(self, name):
        return getattr(self._engine, name)


# --- the bounded hash sample ---------------------------------------------------------------------------------
def _md5_uint32(text: str) -> int:
    return int(hashlib.md5(text.encode()).hexdigest()[:8], 16)


def test_hash_below_is_the_numeric_hash_comparison(eng):
    """The text comparison of md5's first 8 hex digits is the same test as hash_uint32_sql < bound (checked
    against Python's md5 too), including bounds at the ends of the range."""
    ids = eng.query("SELECT CAST(customer_id AS VARCHAR) AS id FROM customers ORDER BY 1")["id"].tolist()[:400]
    eng.register("_ids", pd.DataFrame({"id": ids}))
    hashes = np.array([_md5_uint32(f"{i}:9") for i in ids])
    text = "id || ':9'"
    for bound in (0, 1, int(np.median(hashes)), int(hashes.max()), int(hashes.max()) + 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32):
        got = eng.query(f"SELECT id, {A.hash_uint32_sql(text)} AS u, {A.hash_below_sql(text, bound)} AS below "
                        "FROM _ids ORDER BY id")
        assert got["u"].tolist() == hashes.tolist()
        assert got["below"].tolist() == (hashes < bound).tolist(), bound


def test_hash_sample_bound_keeps_more_than_the_sample():
    assert A.hash_sample_bound(100, 150) is None  # the bound would keep (nearly) everyone
    for size, population in ((300, 2_000), (100_000, 1_000_000), (100_000, 10_000_000), (1, 10 ** 9)):
        b = A.hash_sample_bound(size, population)
        mean = population * b / 2 ** 32
        assert mean - size > 9 * np.sqrt(mean)  # too few below the bound: more than 9 standard deviations away


def _full_sort_cox(engine, size, seed, as_of):
    """The Cox sample as it was read before the bound: every customer ordered by the hash (the reference)."""
    churned, stop = A._stop_sql(as_of)
    u = A.hash_uint32_sql(f"CAST(c.customer_id AS VARCHAR) || ':' || '{seed}'")
    got = engine.query(
        f"SELECT c.customer_id, date_diff('day', c.signup_date, {stop.replace('end_date', 'c.end_date')}) AS days, "
        f"CASE WHEN {churned.replace('end_date', 'c.end_date')} THEN 1 ELSE 0 END AS event, c.segment, "
        "s.mean_csat, s.n_responses FROM (SELECT * FROM customers AS c WHERE c.signup_date <= "
        f"DATE '{as_of:%Y-%m-%d}' ORDER BY {u}, customer_id LIMIT {size}) AS c LEFT JOIN (SELECT customer_id, "
        "avg(csat) AS mean_csat, count(*) AS n_responses FROM responses WHERE response_date <= "
        f"DATE '{as_of:%Y-%m-%d}' GROUP BY customer_id) AS s ON s.customer_id = c.customer_id")
    return got.sort_values("customer_id", kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 11, 20261125])
def test_cox_sample_is_the_full_sorts_first_rows(eng, seed, monkeypatch):
    """The bounded query returns exactly the customers (and their columns, mean CSAT included) of the full
    order's first ``size`` rows; with a bound that lets too few through it falls back to the full order."""
    as_of = A.customers_as_of(eng)
    ref = _full_sort_cox(eng, 300, seed, as_of)
    counting = CountingEngine(eng)
    got = A.cox_sample(counting, 300, seed=seed, covariates=["segment"], as_of=as_of)
    assert any(A.hash_below_sql("CAST(c.customer_id AS VARCHAR) || ':' || '%s'" % seed,
                                A.hash_sample_bound(300, got.attrs["population"])) in s for s in counting.queries)
    pd.testing.assert_frame_equal(got[ref.columns], ref, check_dtype=False)
    assert len(got) == 300 and got.attrs["size"] == 300 and got["mean_csat"].notna().any()
    # too few below the bound: the full order (the same rows)
    monkeypatch.setattr(A, "hash_sample_bound", lambda size, population: 2 ** 22)
    fallback = CountingEngine(eng)
    again = A.cox_sample(fallback, 300, seed=seed, covariates=["segment"], as_of=as_of)
    pd.testing.assert_frame_equal(again, got)
    assert sum("LIMIT 300" in s for s in fallback.queries) == 2  # the bounded read, then the full order


def test_cox_sample_deterministic_and_everyone_when_small(eng):
    a = A.cox_sample(eng, 250, seed=5)
    pd.testing.assert_frame_equal(a, A.cox_sample(eng, 250, seed=5))
    population = a.attrs["population"]
    everyone = A.cox_sample(eng, population + 10, seed=5)
    assert len(everyone) == population and everyone["customer_id"].is_unique


def test_worth_sample_shares_the_bounded_sample(eng):
    """worth_sample's customers are the Cox sample's (one helper: the same bounded read) and the full sort's."""
    from helpers.engine import worth_sample as WS

    as_of = pd.Timestamp("2026-06-30")
    for seed in (2, 8):
        ids = WS.worth_sample(eng, 400, seed=seed, as_of=as_of).customers["customer_id"].tolist()
        assert ids == _full_sort_cox(eng, 400, seed, as_of)["customer_id"].tolist()
