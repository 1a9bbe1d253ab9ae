"""Lookups a department page makes dozens of times, made once: the DuckDB engine's table columns, the snapshot
probe, an objective's row, the org's names and an objective's chart texts. Same answers as asking again."""
import duckdb
import numpy as np
import pandas as pd
import pytest

from helpers.engine import DuckDBEngine, EngineError


def _counting(con):
    """A connection wrapper counting the statements run through it."""

    class Counting:
        def __init__(self):
            self.sql = []

        def execute(self, sql, *args):
            self.sql.append(sql)
            return con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(con, name)

    return Counting()


def test_engine_columns_are_looked_up_once_and_the_same_as_describe():
    con = duckdb.connect()
    con.execute("CREATE TABLE tickets AS SELECT 1 AS ticket_id, 'x' AS team")
    counting = _counting(con)
    engine = DuckDBEngine(counting)
    assert engine.columns("tickets") == ["ticket_id", "team"]
    asked = len(counting.sql)
    for _ in range(5):
        assert engine.has("tickets") and engine.columns("tickets") == ["ticket_id", "team"]
    assert len(counting.sql) == asked  # no catalog query after the first
    engine.columns("tickets").append("changed by a caller")
    assert engine.columns("tickets") == ["ticket_id", "team"]  # callers get a copy


def test_engine_register_forgets_the_replaced_tables_columns():
    engine = DuckDBEngine(duckdb.connect())
    engine.register("ranks", pd.DataFrame({"a": [1]}))
    assert engine.columns("ranks") == ["a"]
    engine.register("ranks", pd.DataFrame({"b": [1], "c": [2]}))
    assert engine.columns("ranks") == ["b", "c"]


def test_engine_asks_again_for_a_table_it_did_not_find():
    con = duckdb.connect()
    engine = DuckDBEngine(con)
    assert not engine.has("later")
    with pytest.raises(EngineError, match="no table 'later'"):
        engine.columns("later")
    con.execute("CREATE VIEW later AS SELECT 2 AS v")
    assert engine.has("later") and engine.columns("later") == ["v"]


def test_engine_has_a_table_of_another_attached_database(tmp_path):
    """has() finds a table in any attached database (as before); columns() by its bare name is a kit error."""
    other = duckdb.connect(str(tmp_path / "other.duckdb"))
    other.execute("CREATE TABLE meta AS SELECT 'k' AS key")
    other.close()
    con = duckdb.connect()
    con.execute(f"ATTACH '{tmp_path / 'other.duckdb'}' AS other (READ_ONLY)")
    engine = DuckDBEngine(con)
    assert engine.has("meta")
    with pytest.raises(EngineError):
        engine.columns("meta")


def test_is_snapshot_probes_a_file_version_once(tmp_path, monkeypatch, small_demo):
    from helpers import data

    snap = tmp_path / "snap.duckdb"
    data.load_dataset(small_demo).snapshot(snap)
    probes = []
    real = data._probe_snapshot
    monkeypatch.setattr(data, "_probe_snapshot", lambda p: probes.append(p) or real(p))
    assert data.is_snapshot(snap) and data.is_snapshot(str(snap)) and data.is_snapshot(snap)
    assert len(probes) == 1
    plain = tmp_path / "plain.duckdb"
    con = duckdb.connect(str(plain))
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()
    assert not data.is_snapshot(plain) and not data.is_snapshot(plain)
    assert len(probes) == 3  # a no is asked again (a file may still be being written)
    snap.unlink()
    plain.rename(snap)  # another file at the same path: probed again
    assert not data.is_snapshot(snap)


def _evaluation(target_b=65):
    from helpers.objectives import evaluate_objectives, parse_objectives

    doc = {"department": "Support", "objectives": [
        {"id": "a", "title": "First", "metric": "csat", "baseline": 60, "target": 70, "start": "2026-01-01",
         "deadline": "2026-12-31", "owner": {"name": "Ann", "role": "director"}},
        {"id": "b", "title": "Second", "metric": "csat", "baseline": 60, "target": target_b, "start": "2026-01-01",
         "deadline": "2026-12-31", "owner": {"name": "Bo", "role": "manager"}, "parent": "a"}]}
    periods = pd.date_range("2024-11-01", periods=24, freq="MS")
    v = np.linspace(58, 66, 24)

    def provider(metric, filters, start, end, freq):
        return pd.DataFrame({"period": periods, "value": v, "ci_low": v - 1, "ci_high": v + 1, "n": 100})

    return evaluate_objectives(parse_objectives(doc, "support.yaml"), as_of="2026-10-31", series_provider=provider)


def test_objective_row_is_the_tables_row_and_a_copy():
    ev = _evaluation()
    for oid in ("a", "b", "a"):
        expected = ev.table[ev.table["id"] == oid].iloc[0]
        pd.testing.assert_series_equal(ev.row(oid), expected)
    row = ev.row("a")
    row["title"] = "changed"
    assert ev.row("a")["title"] == "First" and ev.table.loc[0, "title"] == "First"
    with pytest.raises(KeyError, match="no objective 'c'"):
        ev.row("c")
    ev.table = ev.table.iloc[::-1].reset_index(drop=True)  # a new table: looked up in it
    assert ev.row("b")["title"] == "Second" and ev.row("b").name == 0


def test_page_names_and_chart_texts_are_built_once_and_follow_a_new_evaluation():
    from helpers.objectives_report import DepartmentReport

    class Data:
        org = pd.DataFrame({"person_id": ["p1"], "name": ["Pat"]})

    ev = _evaluation()
    report = DepartmentReport(slug="support", department="Support", params_file="support.yaml",
                              as_of=pd.Timestamp("2026-10-31"), dataset=Data(), plan=ev.plan, evaluation=ev)
    names = report.names
    assert names == {"p1": "Pat"}
    names["p2"] = "changed by a caller"
    assert report.names == {"p1": "Pat"}
    title = report.objective_chart_title("b")
    assert "65.0%" in title and report.objective_chart_title("b") == title
    again = _evaluation(target_b=64)
    report.evaluation, report.plan = again, again.plan
    assert "64.0%" in report.objective_chart_title("b")  # a new evaluation: built again


def test_missing_values_asks_each_tables_columns_once(small_demo, monkeypatch):
    from helpers.data import Dataset, load_dataset
    from helpers.objectives_report import DepartmentReport

    dataset = load_dataset(small_demo)
    asked = []
    real = Dataset.columns
    monkeypatch.setattr(Dataset, "columns", lambda self, table: asked.append(table) or real(self, table))
    report = DepartmentReport(slug="billing", department="Billing", params_file="billing.yaml",
                              as_of=pd.Timestamp("2026-10-31"), dataset=dataset)
    table = report.missing_values()
    # tickets: the fields present; responses: the attribute columns and the fields present (was one per field)
    assert asked.count("tickets") == 1 and asked.count("responses") == 2
    rows = dataset.con.execute("SELECT count(*), count(*) - count(csat) FROM responses WHERE department = 'Billing'"
                               ).fetchone()
    assert (table.loc[("responses", "csat"), "rows"], table.loc[("responses", "csat"), "missing"]) == rows
