"""Memory follows the answer in the data load (issue #14): ``load_dataset`` validates, cuts and fingerprints the
data without holding a table's rows, and its messages stay those of the row-by-row reading.

The bound is checked on DuckDB's own plans: every statement the load runs is run again under ``EXPLAIN ANALYZE``
and no operator that keeps rows (a hash table's build side or groups, a materialised CTE, a sort, a window) may
keep more rows than the largest table another table refers to (customers, org: the key sets the foreign-key
checks hash). The demo's responses and tickets are 5-10 times that, so a plan that holds them fails. Memory
itself is measured on 1M customers by the bench (the numbers are in the commit messages of helpers.data)."""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import helpers.data as data
from helpers.data import LAST_COMPLETE_MONTH, DataQualityWarning, Dataset, load_dataset
from helpers.errors import DataValidationError

DEMO = Path(__file__).resolve().parents[1] / "build" / "test-demo"
# operators that keep rows until they are done, and which of their inputs they keep (None: their own output)
HOLDING = {"HASH_GROUP_BY": None, "PERFECT_HASH_GROUP_BY": None, "HASH_JOIN": 1, "NESTED_LOOP_JOIN": 1,
           "PIECEWISE_MERGE_JOIN": 1, "BLOCKWISE_NL_JOIN": 1, "CROSS_PRODUCT": 1, "CTE": 0, "WINDOW": 0,
           "ORDER_BY": 0, "LEFT_DELIM_JOIN": 0, "RIGHT_DELIM_JOIN": 0, "DELIM_JOIN": 0}

pytestmark = pytest.mark.skipif(not (DEMO / "responses.parquet").is_file(),
                                reason="needs build/test-demo (python -m helpers.demo --out build/test-demo "
                                       "--customers 2000 --seed 7)")


class RecordingConnection:
    """A DuckDB connection that records every statement run through ``execute`` (SQL and parameters) and how many
    rows each brought into Python (``fetched``)."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con
        self.statements: list[tuple[str, object]] = []
        self.fetched: list[tuple[int, str]] = []

    def __getattr__(self, name):
        return getattr(self._con, name)

    def execute(self, sql, parameters=None):
        self.statements.append((sql, parameters))
        result = self._con.execute(sql) if parameters is None else self._con.execute(sql, parameters)
        return _CountedResult(result, self.fetched, sql)


class _CountedResult:
    """A statement's result whose fetches are counted (rows into Python lists or pandas frames)."""

    def __init__(self, result, fetched: list, sql: str):
        self._result, self._fetched, self._sql = result, fetched, " ".join(sql.split())[:200]

    def __getattr__(self, name):
        return getattr(self._result, name)

    def _count(self, rows):
        self._fetched.append((len(rows) if rows is not None else 0, self._sql))
        return rows

    def fetchall(self):
        return self._count(self._result.fetchall())

    def fetchone(self):
        row = self._result.fetchone()
        self._fetched.append((row is not None, self._sql))
        return row

    def df(self):
        return self._count(self._result.df())

    fetchdf = df


@pytest.fixture
def recorded(monkeypatch):
    """``data._connect`` patched to hand out recording connections; yields the list of them."""
    cons: list[RecordingConnection] = []
    real = data._connect

    def connect():
        cons.append(RecordingConnection(real()))
        return cons[-1]

    monkeypatch.setattr(data, "_connect", connect)
    return cons


def _held_rows(node: dict) -> list[tuple[str, int]]:
    """(operator, rows it keeps) for every row-keeping operator of an ``EXPLAIN (ANALYZE, FORMAT json)`` tree."""
    out = []
    kind, children = node.get("name", ""), node.get("children", [])
    if kind in HOLDING:
        side = HOLDING[kind]
        rows = node.get("operator_cardinality", node.get("intermediate_rows", 0)) if side is None \
            else (children[side].get("operator_cardinality", children[side].get("intermediate_rows", 0))
                  if len(children) > side else 0)
        out.append((kind, int(rows or 0)))
    for child in children:
        out += _held_rows(child)
    return out


def _plans_holding_more_than(con: RecordingConnection, limit: int) -> list[str]:
    """Every recorded SELECT whose plan keeps more than ``limit`` rows in one operator, with those operators."""
    found = []
    for sql, params in con.statements:
        if not sql.lstrip().upper().startswith("SELECT"):
            continue
        explain = f"EXPLAIN (ANALYZE, FORMAT json) {sql}"
        plan = json.loads((con._con.execute(explain, params) if params is not None
                           else con._con.execute(explain)).fetchall()[0][1])
        assert "operator" in plan, (sql, str(plan)[:300])
        held = [(op, n) for top in plan["operator"] for op, n in _held_rows(top) if n > limit]
        if held:
            found.append(f"{held} <- {' '.join(sql.split())[:300]}")
    return found


def _quiet_load(source, **kw) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return load_dataset(source, **kw)


def _parent_rows(folder: Path) -> int:
    """Rows of the largest table another table refers to (customers, org)."""
    con = duckdb.connect()
    try:
        return max(con.execute(f"SELECT count(*) FROM read_parquet('{folder / t}.parquet')").fetchall()[0][0]
                   for t in ("customers", "org"))
    finally:
        con.close()


def test_the_load_keeps_no_table_of_rows_in_memory(recorded):
    """Validation (types, ranges, duplicate ids, foreign keys), the as-of cut and the soft warnings of the demo
    keep at most the customers' keys; a correlated NOT EXISTS (which materialised every ticket), a GROUP BY of
    every ticket id or a join of every response to the departments would keep 5-10 times more."""
    ds = _quiet_load(DEMO, as_of=LAST_COMPLETE_MONTH)
    con = recorded[0]
    load = list(con.statements)
    limit = _parent_rows(DEMO)
    assert min(ds.count(t) for t in ("responses", "tickets")) > 4 * limit  # the bound tells them apart
    con.statements = load
    assert _plans_holding_more_than(con, limit) == []
    # the foreign keys were checked (a statement reads tickets and customers)
    assert any("__typed_tickets" in sql and "__typed_customers" in sql for sql, _ in con.statements)
    ds.close()


def test_no_rows_come_into_python_while_loading_and_snapshotting(monkeypatch, tmp_path, recorded):
    """The load and the run's snapshot by reference build no pandas frame of a table (``Dataset.frame``) and
    bring at most a few rows of any statement into Python (counts, up to six example values, departments)."""
    built = []
    monkeypatch.setattr(Dataset, "frame", lambda self, table, department=None: built.append(table))
    ds = _quiet_load(DEMO.resolve(), as_of=LAST_COMPLETE_MONTH)
    snap = ds.snapshot(tmp_path / "data.duckdb", by_reference=True)
    ds.close()
    assert built == []
    fetched = [n for con in recorded for n, _ in con.fetched]
    assert fetched and max(fetched) <= 20, max(f for con in recorded for f in con.fetched)
    con = duckdb.connect(str(snap), read_only=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    con.close()
    assert tables == {data.META_TABLE}  # views and the record only: no rows copied


def _write_demo_copy(folder: Path, **selects: str) -> Path:
    """The demo's tables as Parquet in ``folder``, each optionally through a SELECT over ``t`` (its rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    for table in ("customers", "responses", "tickets", "org"):
        select = selects.get(table, "SELECT * FROM t")
        con.execute(f"CREATE OR REPLACE VIEW t AS SELECT * FROM read_parquet('{DEMO / table}.parquet')")
        con.execute(f"COPY ({select}) TO '{folder / table}.parquet' (FORMAT parquet)")
    con.close()
    return folder


def test_missing_references_are_counted_and_shown_as_the_rows_read_them(tmp_path, recorded):
    """Half the customers gone: every response and ticket of the others refers to a missing id. The count and
    the first five rows (in the file's order) equal pandas' reading of the same files, and the plans keep at
    most the customers' keys."""
    folder = _write_demo_copy(tmp_path / "d", customers="SELECT * FROM t WHERE hash(customer_id) % 2 = 0")
    with pytest.raises(DataValidationError) as info:
        _quiet_load(folder)
    found = {(p.table, p.column): p for p in info.value.problems if p.rule == "reference"}
    assert set(found) == {("responses", "customer_id"), ("tickets", "customer_id")}
    kept = set(pd.read_parquet(folder / "customers.parquet")["customer_id"])
    for (table, column), problem in found.items():
        rows = pd.read_parquet(folder / f"{table}.parquet")
        orphans = rows[rows[column].notna() & ~rows[column].isin(kept)]
        key = data.TABLES[table].key
        assert problem.n_rows == len(orphans) > 100
        assert problem.examples == orphans[key].head(5).tolist()
        assert problem.values == list(dict.fromkeys(orphans[column].head(5)))
        assert f"(e.g. '{orphans[column].iloc[0]}')" in problem.problem
    # the same check on the loaded views (validation off, so the connection stays open): plans bounded
    ds = _quiet_load(folder, validate=False)
    con = recorded[-1]
    con.statements.clear()
    again = data._check_foreign_keys(con, ds.files, ds.tables)
    assert [p.to_dict() for p in again] == [p.to_dict() for p in found.values()]
    assert _plans_holding_more_than(con, _parent_rows(DEMO)) == []
    assert sum("LIMIT 5" in sql for sql, _ in con.statements) == 2  # the examples were read, once per reference
    ds.close()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_duplicate_ids_in_increasing_order_are_found_as_in_any_order(tmp_path, fmt):
    """Repeated ids next to each other in increasing order (the streaming check's case) give the same problem
    as the same rows shuffled (counted in a hash table)."""
    def problems(name: str, order: str) -> list[dict]:
        folder = _write_demo_copy(tmp_path / name, tickets=(
            "SELECT * REPLACE (CASE WHEN ticket_id IN ('T00000002', 'T00000009') THEN 'T00000001' "
            f"WHEN ticket_id = 'T00000011' THEN 'T00000010' ELSE ticket_id END AS ticket_id) FROM t {order}"))
        if fmt == "csv":
            con = duckdb.connect()
            for table in ("customers", "responses", "tickets", "org"):
                con.execute(f"COPY (SELECT * FROM read_parquet('{folder / table}.parquet')) TO "
                            f"'{folder / table}.csv' (HEADER)").fetchall()
                os.remove(folder / f"{table}.parquet")
            con.close()
        with pytest.raises(DataValidationError) as info:
            _quiet_load(folder)
        out = [p.to_dict() for p in info.value.problems if p.rule == "unique"]
        for p in out:  # the folders differ
            p["source"], p["message"] = Path(p["source"]).name, p["message"].replace(str(folder), "")
        return out

    in_order = problems("sorted", "ORDER BY ticket_id")
    shuffled = problems("shuffled", "ORDER BY hash(ticket_id)")
    assert in_order == shuffled
    assert len(in_order) == 1 and in_order[0]["rows"] == 5 and in_order[0]["examples"] == ["T00000001", "T00000010"]
    assert "2 ids used more than once" in in_order[0]["problem"]


def test_keys_in_increasing_order(tmp_path):
    """The streaming check: strictly increasing set keys (gaps of missing keys allowed) and nothing else."""
    con = duckdb.connect()
    cases = {("a", "b", "c"): True, ("a", None, "b"): True, (): True, ("a", "b", "b"): False,
             ("b", "a"): False, ("a", None, "a"): False, ("a10", "a9"): True, ("a9", "a10"): False}
    for keys, increasing in cases.items():
        con.execute("CREATE OR REPLACE TABLE t AS SELECT unnest(?::VARCHAR[]) AS k", [list(keys)])
        assert data._keys_increasing(con, "t", "k", "CAST(k AS VARCHAR)") is increasing, keys
    con.close()
