"""helpers.data: loading (CSV, Parquet, DuckDB), the column mapping, validation errors, snapshots."""
from __future__ import annotations

import re
import warnings

import duckdb
import numpy as np
import pandas as pd
import pytest

from helpers.data import DataQualityWarning, Dataset, data_quality_summary, load_dataset
from helpers.errors import DataContractError, ParamsError

TABLES = ("customers", "responses", "tickets", "org")
ATTRS = ("speed", "resolution", "knowledge", "courtesy", "ease", "value")


def valid_tables(n_responses: int = 4) -> dict[str, pd.DataFrame]:
    """Small tables that satisfy the contract (written as text, like a CSV export)."""
    customers = pd.DataFrame({
        "customer_id": ["C1", "C2", "C3"],
        "signup_date": ["2024-01-05", "2024-02-01", "2024-03-10"],
        "end_date": [None, "2024-06-30", None],
        "segment": ["consumer", "enterprise", "small_business"],
        "region": ["north", None, "west"],
        "monthly_revenue": [10.5, 200.0, None],
        "purchases": [1, 4, None]})
    k = n_responses
    responses = pd.DataFrame({
        "response_id": [f"R{i + 1}" for i in range(k)],
        "customer_id": [["C1", "C2", "C2", "C3"][i % 4] for i in range(k)],
        "response_date": [f"2024-0{2 + i % 4}-01" for i in range(k)],
        "department": [["Sales", "Billing"][i % 2] for i in range(k)],
        "channel": [["phone", "email", None, "chat"][i % 4] for i in range(k)],
        "csat": [[5, 3, None, 4][i % 4] for i in range(k)],
        "nps": [[10, 6, 7, None][i % 4] for i in range(k)],
        "ces": [[1, 4, 7, 2][i % 4] for i in range(k)],
        **{f"attr_{a}": [[5, 2, 3, 4][i % 4] for i in range(k)] for a in ATTRS},
        "comment": [["great", None, "<b>meh</b>", "ok"][i % 4] for i in range(k)]})
    tickets = pd.DataFrame({
        "ticket_id": ["T1", "T2", "T3"],
        "customer_id": ["C1", "C2", "C3"],
        "department": ["Sales", "Billing", "Sales"],
        "team": ["A", "B", "A"],
        "agent_id": ["sales-rep001", "billing-rep001", "sales-rep001"],
        "channel": ["phone", "email", "chat"],
        "created_at": ["2024-02-01 09:00:00", "2024-03-01 10:00:00", "2024-04-01 11:00:00"],
        "first_response_at": ["2024-02-01 09:30:00", None, "2024-04-01 12:00:00"],
        "resolved_at": ["2024-02-02 09:00:00", None, "2024-04-03 11:00:00"],
        "contacts_to_resolve": [1, None, 2],
        "reopened": [False, None, True]})
    org = pd.DataFrame({
        "person_id": ["sales-dir", "sales-mgr1", "sales-rep001", "billing-dir", "billing-rep001"],
        "name": ["Ann", "Bob", "Cy", "Di", "Ed"],
        "role": ["director", "manager", "representative", "director", "representative"],
        "department": ["Sales", "Sales", "Sales", "Billing", "Billing"],
        "team": [None, "A", "A", None, "B"],
        "manager_id": [None, "sales-dir", "sales-mgr1", None, "billing-dir"]})
    return {"customers": customers, "responses": responses, "tickets": tickets, "org": org}


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Native types (as a Parquet export from pandas would have them)."""
    out = df.copy()
    for c in out.columns:
        if c.endswith(("_date", "_at")):
            out[c] = pd.to_datetime(out[c])
        elif c == "reopened":
            out[c] = out[c].astype("boolean")
        elif c in ("purchases", "contacts_to_resolve", "csat", "nps", "ces") or c.startswith("attr_"):
            out[c] = out[c].astype("Int64")
    return out


def write(folder, tables=None, fmt="csv", **changes):
    """Write the valid tables (or ``tables``) to ``folder`` as csv/parquet, applying per-table edits."""
    folder.mkdir(parents=True, exist_ok=True)
    tables = tables or valid_tables()
    for name, df in tables.items():
        df = changes[name](df.copy()) if name in changes else df
        if fmt == "csv":
            df.to_csv(folder / f"{name}.csv", index=False)
        else:
            _typed(df).to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def load_quiet(source, **kw) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return load_dataset(source, **kw)


def set_value(column, row, value):
    def edit(df):
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
        return df
    return edit


def contract_error(folder, **changes) -> DataContractError:
    write(folder, **changes)
    with pytest.raises(DataContractError) as info:
        load_quiet(folder)
    return info.value


# --- round trips ----------------------------------------------------------------------------------------

EXPECTED_DTYPES = {
    "customers": {"customer_id": "str", "signup_date": "datetime64[us]", "end_date": "datetime64[us]",
                  "segment": "str", "region": "str", "monthly_revenue": "float64", "purchases": "float64"},
    "tickets": {"ticket_id": "str", "created_at": "datetime64[us]", "contacts_to_resolve": "float64",
                "reopened": "boolean", "agent_id": "str"},
    "responses": {"csat": "float64", "nps": "float64", "attr_value": "float64", "response_date": "datetime64[us]"},
}


@pytest.mark.parametrize("fmt", ["csv", "parquet", "duckdb"])
def test_round_trip_keeps_values_and_contract_dtypes(tmp_path, fmt):
    src = tmp_path / "data"
    if fmt == "duckdb":
        src = tmp_path / "cx.duckdb"
        con = duckdb.connect(str(src))
        for name, df in valid_tables().items():
            typed = _typed(df)  # noqa: F841 (used by DuckDB's replacement scan)
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM typed")
        con.close()
    else:
        write(src, fmt=fmt)
    ds = load_quiet(src)
    for table, dtypes in EXPECTED_DTYPES.items():
        frame = getattr(ds, table)
        for col, dtype in dtypes.items():
            assert str(frame[col].dtype) == dtype, (table, col, frame[col].dtype)
    assert ds.customers["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert ds.customers["end_date"].isna().tolist() == [True, False, True]
    assert ds.customers.loc[1, "end_date"] == pd.Timestamp("2024-06-30")
    assert ds.responses["csat"].tolist()[:2] == [5.0, 3.0] and np.isnan(ds.responses["csat"][2])
    assert ds.tickets["reopened"].tolist()[0] is False and ds.tickets["reopened"].isna().tolist()[1]
    assert ds.tickets.loc[0, "resolved_at"] == pd.Timestamp("2024-02-02 09:00:00")
    assert ds.departments == ["Billing", "Sales"]
    assert ds.attributes == [f"attr_{a}" for a in ATTRS]
    # the tables are in DuckDB for SQL aggregation
    means = dict(ds.con.execute("SELECT department, avg(csat) FROM responses GROUP BY 1").fetchall())
    assert means == {"Sales": 5.0, "Billing": 3.5}  # R1 (R3 unanswered); R2, R4


def test_csv_and_parquet_give_equal_frames(tmp_path):
    a = load_quiet(write(tmp_path / "a", fmt="csv"))
    b = load_quiet(write(tmp_path / "b", fmt="parquet"))
    for t in TABLES:
        pd.testing.assert_frame_equal(getattr(a, t), getattr(b, t))


def test_snapshot_reloads_identically_with_the_same_fingerprint(tmp_path):
    ds = load_quiet(write(tmp_path / "d"))
    path = ds.snapshot(tmp_path / "run" / "data.duckdb")
    assert path.is_file() and not list(path.parent.glob(".*tmp"))
    again = load_quiet(path, validate=False)
    assert again.fingerprint == ds.fingerprint
    assert again.warnings == ds.warnings
    for t in TABLES:
        pd.testing.assert_frame_equal(getattr(again, t), getattr(ds, t))
    # a snapshot also validates cleanly (it holds contract tables)
    assert load_quiet(path).customers.shape == ds.customers.shape


def test_fingerprint_changes_with_the_data_and_not_otherwise(tmp_path):
    a = load_quiet(write(tmp_path / "a"))
    b = load_quiet(write(tmp_path / "b"))
    c = load_quiet(write(tmp_path / "c", customers=set_value("region", 0, "south")))
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != c.fingerprint


def test_soft_problems_are_warnings_not_errors(tmp_path):
    folder = write(tmp_path / "d", tickets=set_value("agent_id", 1, None))
    with pytest.warns(DataQualityWarning) as record:
        ds = load_dataset(folder, min_responses=3)
    messages = [str(w.message) for w in record]
    assert messages == ds.warnings
    assert any("'Billing' has only 2 survey responses" in m and "min_responses=3" in m for m in messages)
    assert any("1 of 3 tickets" in m and "agent_id" in m for m in messages)
    # a department of the org without any response is the extreme case
    ds = load_quiet(write(tmp_path / "f", org=lambda df: pd.concat(
        [df, pd.DataFrame([{"person_id": "mkt-dir", "name": "Mo", "role": "director", "department": "Marketing"}])])),
        min_responses=1)
    assert ds.warnings == ["responses: department 'Marketing' has only 0 survey responses (fewer than "
                           "min_responses=1); its KPIs and drivers are unreliable"]
    # nothing about departments with enough responses
    ds = load_quiet(write(tmp_path / "e", tables=valid_tables(n_responses=8)), min_responses=4)
    assert not any("only" in w for w in ds.warnings)


def test_mostly_missing_ratings_and_unknown_departments_warn(tmp_path):
    def edit(df):
        df["nps"] = None
        df.loc[0, "department"] = "Logistics"
        return df
    ds = load_quiet(write(tmp_path / "d", responses=edit), min_responses=1)
    assert any("100% of the responses have no 'nps'" in w for w in ds.warnings)
    assert any("'Logistics' not in org.department" in w for w in ds.warnings)
    ds = load_quiet(write(tmp_path / "t", tickets=set_value("team", 0, "Z")), min_responses=1)
    assert ds.warnings == ["tickets: team Sales/Z not in org (department/team); their tickets count for the "
                           "department but for no team"]


def test_extra_attribute_columns_are_allowed_and_validated(tmp_path):
    def add(value):
        def edit(df):
            df["attr_price"] = [4, 5, value, 1]
            return df
        return edit
    ds = load_quiet(write(tmp_path / "ok", responses=add(3)))
    assert "attr_price" in ds.attributes and ds.responses["attr_price"].dtype == "float64"
    err = contract_error(tmp_path / "bad", responses=add(9))
    assert err.column == "attr_price" and err.examples == ["R3"]


def test_data_quality_summary(tmp_path):
    ds = load_quiet(write(tmp_path / "d"))
    summary = data_quality_summary(ds)
    row = summary.set_index(["table", "column"]).loc[("customers", "end_date")]
    assert row["rows"] == 3 and row["missing"] == 2 and row["missing_share"] == pytest.approx(2 / 3)
    assert (row["min"], row["max"]) == ("2024-06-30", "2024-06-30")
    assert set(summary["table"]) == set(TABLES)
    nps = summary.set_index(["table", "column"]).loc[("responses", "nps")]
    assert nps["missing"] == 1 and nps["max"] == "10"


# --- the column mapping ---------------------------------------------------------------------------------

HELPDESK = {"Ticket ID": "ticket_id", "Requester": "customer_id", "Dept": "department", "Group": "team",
            "Assignee": "agent_id", "Via": "channel", "Created at": "created_at",
            "First reply at": "first_response_at", "Solved at": "resolved_at", "Contacts": "contacts_to_resolve",
            "Reopened?": "reopened"}


def helpdesk_export(df):
    out = df.rename(columns={v: k for k, v in HELPDESK.items()})
    out["Reopened?"] = ["No", "", "Yes"]  # a helpdesk's yes/no flag
    return out


def test_column_mapping_reads_a_helpdesk_export(tmp_path):
    folder = write(tmp_path / "d", tickets=helpdesk_export)
    ds = load_quiet(folder, column_mapping={"tickets": HELPDESK})
    reference = load_quiet(write(tmp_path / "ref"))
    pd.testing.assert_frame_equal(ds.tickets, reference.tickets)
    assert ds.fingerprint != reference.fingerprint
    # without the mapping the export breaks the contract, naming a missing column
    with pytest.raises(DataContractError, match=r"tickets \(.*tickets.csv\): column 'ticket_id' is missing"):
        load_quiet(folder)


def test_mapping_to_an_unknown_contract_column_is_a_params_error(tmp_path):
    folder = write(tmp_path / "d")
    with pytest.raises(ParamsError, match="'Requester'.*'client_id'.*not a column of the tickets contract"):
        load_quiet(folder, column_mapping={"tickets": {"Requester": "client_id"}})
    with pytest.raises(ParamsError, match="unknown table 'ticket'"):
        load_quiet(folder, column_mapping={"ticket": {"Requester": "customer_id"}})


def test_mapping_a_column_the_file_does_not_have(tmp_path):
    err = contract_error_with_mapping(tmp_path, {"tickets": {"Requester": "customer_id"}})
    assert err.table == "tickets" and err.column == "Requester" and "column_mapping" in str(err)
    assert "tickets.csv" in str(err)


def contract_error_with_mapping(tmp_path, mapping):
    folder = write(tmp_path / "d")
    with pytest.raises(DataContractError) as info:
        load_quiet(folder, column_mapping=mapping)
    return info.value


# --- one test per bad input -----------------------------------------------------------------------------

def assert_names(err: DataContractError, table: str, file: str, column: str | None, n_rows: int | None,
                 examples: list[str] | None):
    msg = str(err)
    assert err.table == table and msg.startswith(f"{table} (")
    assert file in err.source and file in msg
    if column:
        assert err.column == column and repr(column) in msg
    if n_rows is not None:
        assert err.n_rows == n_rows and re.search(rf"\b{n_rows} rows?\b", msg)
    if examples is not None:
        assert err.examples == examples
        for e in examples:
            assert repr(e) in msg
    assert "expected" in msg


def test_missing_column(tmp_path):
    err = contract_error(tmp_path / "d", customers=lambda df: df.drop(columns=["segment"]))
    assert_names(err, "customers", "customers.csv", "segment", None, None)
    assert "missing" in str(err) and "column_mapping" in str(err)


def test_extra_column(tmp_path):
    def add(df):
        df["Loyalty tier"] = "gold"
        return df
    err = contract_error(tmp_path / "d", customers=add)
    assert_names(err, "customers", "customers.csv", "Loyalty tier", None, None)
    assert "not in the contract" in str(err)


def test_text_in_a_rating_column(tmp_path):
    err = contract_error(tmp_path / "d", responses=set_value("csat", 1, "abc"))
    assert_names(err, "responses", "responses.csv", "csat", 1, ["R2"])
    assert "wrong type" in str(err) and "whole numbers 1-5" in str(err)


def test_fraction_in_an_integer_column(tmp_path):
    err = contract_error(tmp_path / "d", responses=set_value("ces", 0, 2.5))
    assert_names(err, "responses", "responses.csv", "ces", 1, ["R1"])


def test_bad_date(tmp_path):
    err = contract_error(tmp_path / "d", customers=set_value("signup_date", 2, "31/12/2024"))
    assert_names(err, "customers", "customers.csv", "signup_date", 1, ["C3"])
    assert "YYYY-MM-DD" in str(err)


@pytest.mark.parametrize("column,value,expected", [("nps", 11, "0-10"), ("csat", 0, "1-5"), ("ces", 8, "1-7")])
def test_rating_out_of_range(tmp_path, column, value, expected):
    def edit(df):
        df[column] = df[column].astype(object)
        df.loc[[0, 3], column] = value
        return df
    err = contract_error(tmp_path / "d", responses=edit)
    assert_names(err, "responses", "responses.csv", column, 2, ["R1", "R4"])
    assert "out of range" in str(err) and expected in str(err)


def test_out_of_range_in_parquet(tmp_path):
    folder = write(tmp_path / "d", fmt="parquet", responses=set_value("nps", 2, 11))
    with pytest.raises(DataContractError) as info:
        load_quiet(folder)
    assert_names(info.value, "responses", "responses.parquet", "nps", 1, ["R3"])


def test_resolved_before_created(tmp_path):
    err = contract_error(tmp_path / "d", tickets=set_value("resolved_at", 2, "2024-03-31 08:00:00"))
    assert_names(err, "tickets", "tickets.csv", "resolved_at", 1, ["T3"])
    assert "before 'created_at'" in str(err)


def test_end_date_before_signup(tmp_path):
    err = contract_error(tmp_path / "d", customers=set_value("end_date", 1, "2023-12-31"))
    assert_names(err, "customers", "customers.csv", "end_date", 1, ["C2"])


def test_negative_revenue(tmp_path):
    err = contract_error(tmp_path / "d", customers=set_value("monthly_revenue", 0, -5))
    assert_names(err, "customers", "customers.csv", "monthly_revenue", 1, ["C1"])


def test_duplicate_ids(tmp_path):
    def dup(df):
        df.loc[2, "ticket_id"] = "T1"
        return df
    err = contract_error(tmp_path / "d", tickets=dup)
    assert_names(err, "tickets", "tickets.csv", "ticket_id", 2, ["T1"])
    assert "duplicate" in str(err)


def test_missing_id(tmp_path):
    err = contract_error(tmp_path / "d", customers=set_value("customer_id", 1, None))
    assert_names(err, "customers", "customers.csv", "customer_id", 1, ["row 2"])


def test_role_not_allowed(tmp_path):
    err = contract_error(tmp_path / "d", org=set_value("role", 2, "agent"))
    assert_names(err, "org", "org.csv", "role", 1, ["sales-rep001"])
    assert "director, manager, representative" in str(err)


def test_orphan_customer_id(tmp_path):
    err = contract_error(tmp_path / "d", responses=set_value("customer_id", 3, "C99"))
    assert_names(err, "responses", "responses.csv", "customer_id", 1, ["R4"])
    assert "'C99'" in str(err) and "customers.customer_id" in str(err)


def test_orphan_agent_id(tmp_path):
    err = contract_error(tmp_path / "d", tickets=set_value("agent_id", 0, "sales-rep999"))
    assert_names(err, "tickets", "tickets.csv", "agent_id", 1, ["T1"])
    assert "org.person_id" in str(err)


def test_empty_table(tmp_path):
    err = contract_error(tmp_path / "d", tickets=lambda df: df.iloc[:0])
    assert_names(err, "tickets", "tickets.csv", None, None, None)
    assert "has no rows" in str(err)


def test_missing_table_file(tmp_path):
    """Only responses is required (issue 12): without it the load stops; without org the table is absent."""
    folder = write(tmp_path / "d")
    (folder / "responses.csv").unlink()
    with pytest.raises(DataContractError, match=r"responses \(.*\): file not found.*responses.parquet or responses.csv"):
        load_quiet(folder)
    folder = write(tmp_path / "e")
    (folder / "org.csv").unlink()
    ds = load_quiet(folder)
    assert ds.tables == ("customers", "responses", "tickets") and not ds.has("org")


def test_missing_table_in_duckdb(tmp_path):
    path = tmp_path / "cx.duckdb"
    con = duckdb.connect(str(path))
    customers = valid_tables()["customers"]  # noqa: F841
    con.execute("CREATE TABLE customers AS SELECT * FROM customers")
    con.close()
    with pytest.raises(DataContractError, match=r"responses \(.*cx.duckdb\): table not found"):
        load_quiet(path)


def test_missing_source(tmp_path):
    with pytest.raises(DataContractError, match="not found"):
        load_dataset(tmp_path / "nowhere")


# --- the demo data --------------------------------------------------------------------------------------

def test_demo_data_loads_and_validates_cleanly(small_demo, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)  # the demo has no soft problems either
        ds = load_dataset(small_demo)
    assert ds.warnings == []
    assert ds.departments == sorted(["Customer Service", "Sales", "Marketing", "Delivery", "Billing",
                                     "Technical Support"])
    assert len(ds.customers) == 2000 and ds.customers["customer_id"].is_unique
    assert set(ds.customers["segment"]) == {"consumer", "small_business", "enterprise"}
    assert set(ds.org["role"]) == {"director", "manager", "representative"}
    assert len(ds.attributes) >= 6 and set(ds.attributes) >= {f"attr_{a}" for a in ATTRS}
    first, last = ds.date_range()
    assert first >= pd.Timestamp("2023-11-01") and last <= pd.Timestamp("2026-10-31")
    again = load_dataset(ds.snapshot(tmp_path / "demo.duckdb"), validate=False)
    pd.testing.assert_frame_equal(again.responses, ds.responses)


# --- entry points driven by report.yaml -----------------------------------------------------------------

def test_load_report_dataset_uses_the_config_mapping_and_skips_revalidating_snapshots(tmp_path):
    from helpers.data import is_snapshot, load_report_dataset
    folder = write(tmp_path / "export", tickets=helpdesk_export)
    mapping = "\n".join(f"    '{k}': {v}" for k, v in HELPDESK.items())
    config = tmp_path / "report.yaml"
    config.write_text(f"data_source: {folder}\nmin_responses: 2\ncolumn_mapping:\n  tickets:\n{mapping}\n")
    ds = load_report_dataset("", config, emit_warnings=False)
    assert ds.source == str(folder) and ds.tickets["reopened"].tolist()[2] is True
    assert not any("only" in w for w in ds.warnings)  # min_responses=2 from the config
    snap = ds.snapshot(tmp_path / "run" / "data.duckdb")
    assert is_snapshot(snap) and not is_snapshot(folder)
    again = load_report_dataset(str(snap), config, emit_warnings=False)  # the mapping is not re-applied
    assert again.fingerprint == ds.fingerprint
    pd.testing.assert_frame_equal(again.tickets, ds.tickets)


def test_retention_table_from_a_telecom_export(tmp_path):
    from helpers.config import ReportConfig
    from helpers.data import load_retention_table
    export = tmp_path / "telco.csv"
    export.write_text("customerID,tenure,Churn,Contract\n7590-VHVEG,1,No,Month-to-month\n"
                      "5575-GNVDE,34,No,One year\n3668-QPYBK,2,Yes,Month-to-month\n")
    cfg = ReportConfig(retention={"file": str(export), "id_column": "customerID", "start_column": None,
                                  "end_column": None, "duration_column": "tenure", "event_column": "Churn",
                                  "churn_values": ["yes"], "segment_column": "Contract"})
    frame = load_retention_table(cfg)
    assert frame["tenure"].tolist() == [1, 34, 2] and frame["Churn"].tolist() == ["No", "No", "Yes"]
    bad = ReportConfig(retention={**cfg.retention.model_dump(), "event_column": "Churned"})
    with pytest.raises(DataContractError) as info:
        load_retention_table(bad)
    assert info.value.column == "Churned" and "telco.csv" in str(info.value) and "retention.event_column" in str(info.value)


def test_retention_table_defaults_to_the_customers_table(tmp_path):
    from helpers.config import ReportConfig
    from helpers.data import load_retention_table
    ds = load_quiet(write(tmp_path / "d"))
    frame = load_retention_table(ReportConfig(), ds)
    pd.testing.assert_frame_equal(frame, ds.customers)
    with pytest.raises(ParamsError, match="pass the loaded dataset"):
        load_retention_table(ReportConfig())


def test_common_export_formats_are_converted(tmp_path):
    def tickets(df):
        df["created_at"] = ["2024-02-01T09:00:00Z", "2024-03-01 12:00:00+02:00", "2024-04-01 11:00"]
        df["reopened"] = ["No", "", "YES"]
        df["contacts_to_resolve"] = ["1.0", None, "2"]
        return df
    ds = load_quiet(write(tmp_path / "d", tickets=tickets))
    assert ds.tickets["created_at"].tolist() == [pd.Timestamp("2024-02-01 09:00"), pd.Timestamp("2024-03-01 10:00"),
                                                 pd.Timestamp("2024-04-01 11:00")]
    assert ds.tickets["reopened"].tolist()[0] is False and ds.tickets["reopened"].tolist()[2] is True
    assert ds.tickets["contacts_to_resolve"].tolist()[::2] == [1.0, 2.0]


def test_numeric_ids_in_parquet_are_read_as_text(tmp_path):
    tables = valid_tables()
    tables["customers"]["customer_id"] = [1.0, 2.0, 3.0]
    for name in ("responses", "tickets"):
        tables[name]["customer_id"] = tables[name]["customer_id"].str[1:].astype(int)
    ds = load_quiet(write(tmp_path / "d", tables=tables, fmt="parquet"))
    assert ds.customers["customer_id"].tolist() == ["1", "2", "3"]
    assert ds.tickets["customer_id"].tolist() == ["1", "2", "3"]


# --- dates beyond the as-of date (issue 16, item 1) -------------------------------------------------------

TODAY = "2024-12-31"  # a fixed "today" for the small tables (dated 2024-01 .. 2024-06)


def test_future_dated_rows_are_a_finding_left_out_of_every_view_and_the_snapshot(tmp_path):
    # three answers dated 2099 used to move the data's last date (and so the run's as-of) to 2099
    def future(df):
        df["response_date"] = ["2099-01-01", "2024-03-01", "2099-01-01", "2099-01-01"]
        return df
    folder = write(tmp_path / "d", tables=valid_tables(n_responses=4), responses=future)
    with pytest.warns(DataQualityWarning, match=r"3 rows dated after today \(2024-12-31\) in column 'response_date'"):
        ds = load_dataset(folder, today=TODAY, min_responses=0)
    assert ds.responses["response_id"].tolist() == ["R2"]
    assert ds.count("responses") == 1
    assert ds.con.execute("SELECT max(response_date) FROM responses").fetchone()[0] == pd.Timestamp("2024-03-01").date()
    assert ds.date_range()[1] == pd.Timestamp("2024-04-01")  # the last ticket, not 2099
    assert ds.default_as_of(today=TODAY) == pd.Timestamp("2024-03-31")
    [finding] = ds.excluded
    assert (finding.table, finding.column, finding.kind, finding.action, finding.n_rows) == (
        "responses", "response_date", "future", "row left out", 3)
    assert finding.examples == (("R1", "2099-01-01"), ("R3", "2099-01-01"), ("R4", "2099-01-01"))
    assert ds.warnings[0] == finding.message() and "'R1' (2099-01-01)" in finding.message()
    assert "responses.csv" in finding.message() and "data error" in finding.message()
    table = ds.excluded_table()
    assert table.loc[0, "rows"] == 3 and table.loc[0, "examples"].startswith("R1 (2099-01-01)")
    # the snapshot holds only the included rows and remembers the finding
    again = load_quiet(ds.snapshot(tmp_path / "run" / "data.duckdb"), validate=False, today=TODAY)
    assert again.count("responses") == 1 and again.warnings == ds.warnings
    assert again.excluded == ds.excluded


def test_one_future_ticket_and_a_future_signup_are_left_out(tmp_path):
    folder = write(tmp_path / "d", tickets=set_value("created_at", 1, "2099-01-01 10:00:00"),
                   customers=lambda df: set_value("end_date", 1, None)(set_value("signup_date", 1, "2099-06-01")(df)))
    ds = load_quiet(folder, today=TODAY)
    assert ds.tickets["ticket_id"].tolist() == ["T1", "T3"]
    assert ds.customers["customer_id"].tolist() == ["C1", "C3"]
    found = {(f.table, f.column): f for f in ds.excluded}
    assert found[("tickets", "created_at")].examples == (("T2", "2099-01-01 10:00:00"),)
    assert found[("customers", "signup_date")].examples == (("C2", "2099-06-01"),)
    assert set(found) == {("tickets", "created_at"), ("customers", "signup_date")}


def test_later_events_after_today_read_as_empty(tmp_path):
    folder = write(tmp_path / "d", customers=set_value("end_date", 0, "2030-01-31"),
                   tickets=set_value("resolved_at", 0, "2030-01-01 00:00:00"))
    ds = load_quiet(folder, today=TODAY)
    assert ds.count("customers") == 3 and ds.count("tickets") == 3  # rows kept
    assert pd.isna(ds.customers.loc[0, "end_date"]) and pd.isna(ds.tickets.loc[0, "resolved_at"])
    msgs = {(f.table, f.column): f.message() for f in ds.excluded}
    assert "planned end date counts as still a customer" in msgs[("customers", "end_date")]
    assert "read as empty" in msgs[("tickets", "resolved_at")] and "data error" in msgs[("tickets", "resolved_at")]


def test_as_of_inside_the_data_cuts_there_and_censors_later_events(tmp_path):
    folder = write(tmp_path / "d", tables=valid_tables(n_responses=8))
    ds = load_quiet(folder, as_of="2024-03-05", today=TODAY)
    assert ds.as_of == pd.Timestamp("2024-03-05")
    assert ds.customers["customer_id"].tolist() == ["C1", "C2"]  # C3 signed up 2024-03-10
    assert pd.isna(ds.customers.loc[1, "end_date"])  # C2 left 2024-06-30: still a customer on 2024-03-05
    assert ds.tickets["ticket_id"].tolist() == ["T1", "T2"]
    assert ds.responses["response_date"].max() == pd.Timestamp("2024-03-01")
    kinds = {(f.table, f.column): (f.kind, f.action, f.n_rows, f.cutoff) for f in ds.excluded}
    assert kinds == {("customers", "signup_date"): ("after_as_of", "row left out", 1, "2024-03-05"),
                     ("customers", "end_date"): ("after_as_of", "read as empty", 1, "2024-03-05"),
                     ("responses", "response_date"): ("after_as_of", "row left out", 4, "2024-03-05"),
                     ("tickets", "created_at"): ("after_as_of", "row left out", 1, "2024-03-05")}
    # not a data problem, only not in the report: one sentence (the examples stay in ds.excluded)
    assert ds.warnings[0] == ("Data dated after the as-of date 2024-03-05 is not part of this report: 1 customer, "
                              "4 responses, 1 ticket left out; later events read as not yet happened on 2024-03-05 "
                              "(1 end_date value).")
    # the same cut on the snapshot finds nothing new; an earlier cut adds its own findings
    snap = ds.snapshot(tmp_path / "run.duckdb")
    assert load_quiet(snap, validate=False, as_of="2024-03-05", today=TODAY).excluded == ds.excluded
    earlier = load_quiet(snap, validate=False, as_of="2024-02-15", today=TODAY)
    assert earlier.count("responses") == 2 and len(earlier.excluded) > len(ds.excluded)


def test_as_of_after_today_still_cuts_at_today(tmp_path):
    folder = write(tmp_path / "d", responses=set_value("response_date", 0, "2099-01-01"))
    ds = load_quiet(folder, as_of="2099-12-31", today=TODAY)
    assert ds.count("responses") == 3
    assert [(f.kind, f.cutoff) for f in ds.excluded] == [("future", TODAY)]
    assert ds.as_of == pd.Timestamp("2099-12-31")  # the report date stays what was asked for


def test_as_of_before_the_data_is_too_little_history(tmp_path):
    folder = write(tmp_path / "d")
    with pytest.raises(DataContractError, match=r"too little history before 2023-12-15.*on or after 2024-01-05") as info:
        load_quiet(folder, as_of="2023-12-15", today=TODAY)
    assert info.value.table == "customers" and info.value.column == "signup_date"
    with pytest.raises(ParamsError, match="'someday' is not a date"):
        load_quiet(folder, as_of="someday")


def test_last_complete_month_cut_leaves_out_a_partial_month(tmp_path):
    from helpers.data import LAST_COMPLETE_MONTH
    folder = write(tmp_path / "d", tables=valid_tables(n_responses=8),
                   responses=set_value("response_date", 0, "2099-01-01"))
    ds = load_quiet(folder, as_of=LAST_COMPLETE_MONTH, today=TODAY)
    # last real date: answers on 2024-05-01 (a partly observed May) -> April; 2099 does not count
    assert ds.as_of == pd.Timestamp("2024-04-30")
    assert ds.date_range()[1] == pd.Timestamp("2024-04-01")
    assert {(f.column, f.kind, f.n_rows) for f in ds.excluded} == {
        ("response_date", "future", 1), ("response_date", "after_as_of", 2),  # R4, R8 on 2024-05-01
        ("end_date", "after_as_of", 1)}  # C2 left on 2024-06-30: still a customer on 2024-04-30


def test_the_runner_takes_the_as_of_from_the_included_data(tmp_path):
    """Regression (issue 16): three answers dated 2099 in the demo made the run's as-of 2099-01-01."""
    import shutil

    from helpers.config import ReportConfig
    from helpers.demo import generate_demo
    from helpers.reports.runner import prepare_data
    folder = tmp_path / "demo"
    generate_demo(folder, n_customers=300, seed=3)
    responses = pd.read_parquet(folder / "responses.parquet")
    responses.loc[[5, 50, 100], "response_date"] = pd.Timestamp("2099-01-01")
    responses.to_parquet(folder / "responses.parquet", index=False)
    info = prepare_data(str(folder), ReportConfig(), tmp_path / "run")
    assert info.as_of == "2026-10-31" and info.last_date == "2026-10-31"
    assert info.excluded[0]["n_rows"] == 3 and info.excluded[0]["column"] == "response_date"
    assert any("3 rows dated after today" in w for w in info.warnings)
    snap = load_dataset(info.snapshot, validate=False, emit_warnings=False)
    assert snap.count("responses") == len(responses) - 3 and snap.warnings == info.warnings
    inside = prepare_data(str(folder), ReportConfig(), None, "2025-06-15")
    assert inside.as_of == "2025-06-15" and inside.last_date == "2025-06-15"
    shutil.rmtree(tmp_path / "run")


# --- CSV files in another dialect (issue 16, item 12): the message says what is wrong and what to do ---

def test_semicolon_file_with_decimal_commas_names_the_delimiter_and_decimal_mark(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    for name, df in valid_tables().items():  # as Excel in a German locale saves "CSV"
        df.to_csv(folder / f"{name}.csv", index=False, sep=";", decimal=",")
    with pytest.raises(DataContractError) as info:
        load_quiet(folder)
    msg = str(info.value)
    assert info.value.column == "monthly_revenue" and "customers.csv" in msg
    assert "('10,5', '200,0')" in msg  # the offending values, shortened
    assert "decimal comma" in msg and "semicolon-delimited" in msg and "decimal point" in msg
    from helpers.data import csv_delimiter
    assert csv_delimiter(folder / "customers.csv") == ";"


def test_wrong_type_without_decimal_commas_has_no_such_hint(tmp_path):
    msg = str(contract_error(tmp_path / "d", customers=set_value("monthly_revenue", 0, "ten")))
    assert "('ten')" in msg and "decimal comma" not in msg


@pytest.mark.parametrize("table", ["customers", "org"])
def test_latin1_file_says_it_is_not_utf8_with_offset_line_and_fix(tmp_path, table):
    folder = tmp_path / "d"
    tables = valid_tables()
    tables["customers"].loc[1, "region"] = "Zürich"
    tables["org"].loc[2, "name"] = "Anaïs"
    write(folder, tables=tables)
    path = folder / f"{table}.csv"
    text = path.read_text(encoding="utf-8")
    path.write_bytes(text.encode("latin-1"))
    offset = text.encode("latin-1").index(b"\xfc" if table == "customers" else b"\xef")
    line = text.encode("latin-1")[:offset].count(b"\n") + 1
    with pytest.raises(DataContractError) as info:
        load_quiet(folder)
    msg = str(info.value)
    assert f"{table}.csv" in msg and "not UTF-8" in msg and "CSV Error" not in msg
    assert f"byte offset {offset:,} (line {line})" in msg and "iconv" in msg
    assert ("'ü'" if table == "customers" else "'ï'") in msg


def test_first_non_utf8_finds_a_byte_across_chunks(tmp_path):
    from helpers.data import first_non_utf8
    path = tmp_path / "x.csv"
    data = ("a,b\n" + "é,1\n" * 10).encode("utf-8") + b"caf\xe9,2\n"
    path.write_bytes(data)
    expected = (data.index(b"\xe9,2"), 12, b"\xe9,2\n")
    for chunk in (3, 5, 1 << 20):  # a two-byte 'é' split between chunks is not an error
        got = first_non_utf8(path, chunk=chunk)
        assert got[:2] == expected[:2] and got[2][:1] == b"\xe9"
    path.write_bytes("a,b\né,1\n".encode("utf-8"))
    assert first_non_utf8(path, chunk=3) is None


def test_values_in_messages_are_shortened(tmp_path):
    long_text = "x" * 5000
    msg = str(contract_error(tmp_path / "d", responses=set_value("csat", 0, long_text)))
    assert long_text not in msg and len(msg) < 800 and "…" in msg


def test_future_dated_rows_reach_the_department_drivers_and_retention_reports(small_demo, tmp_path):
    """Each report's data-quality section lists the future-dated rows of a run's snapshot."""
    import shutil

    from helpers.config import ReportConfig
    from helpers.drivers_report import prepare_drivers_report
    from helpers.objectives_report import prepare_department_report
    from helpers.reports.runner import prepare_data
    from helpers.retention_report import prepare_retention_report
    folder = tmp_path / "data"
    shutil.copytree(small_demo, folder)
    tickets = pd.read_parquet(folder / "tickets.parquet")
    tickets.loc[7, ["created_at", "first_response_at", "resolved_at"]] = [pd.Timestamp("2099-01-01 08:00"), None, None]
    tickets.to_parquet(folder / "tickets.parquet", index=False)
    ticket_id = tickets.loc[7, "ticket_id"]
    info = prepare_data(str(folder), ReportConfig(), tmp_path / "run")
    assert info.as_of == "2026-10-31"
    expected = f"'{ticket_id}' (2099-01-01 08:00:00)"
    drivers = prepare_drivers_report("Billing", data_source=info.snapshot, n_boot=0, as_of=info.as_of)
    assert any(expected in w for w in drivers.warnings)
    dept = prepare_department_report("billing", data_source=info.snapshot, as_of=info.as_of)
    assert any(expected in w for w in dept.all_warnings())
    retention = prepare_retention_report(data_source=info.snapshot, as_of=info.as_of, n_boot=0, horizon=6)
    assert any(expected in w for w in retention.warnings)


def test_a_future_created_at_before_its_reply_shows_both_dates(tmp_path):
    """One ticket's created_at typed as 2099: the order check names the row and shows the impossible date."""
    err = contract_error(tmp_path / "d", tickets=set_value("created_at", 2, "2099-01-01 10:00:00"))
    assert err.column == "first_response_at" and err.examples == ["T3"]
    assert "(first: created_at 2099-01-01 10:00:00, first_response_at 2024-04-01 12:00:00)" in str(err)


def test_data_entirely_in_the_future_says_so_instead_of_suggesting_an_as_of(tmp_path):
    """Found by the fuzz harness (F10): with every row after today the message recommended an as-of 'on or after
    <first date>', which cannot help (the cut-off never passes today)."""
    folder = write(tmp_path / "d")
    for as_of in (None, "2099-12-31"):
        with pytest.raises(DataContractError, match=r"dated in the future") as info:
            load_quiet(folder, as_of=as_of, today="2020-01-01")
        assert "as-of date on or after" not in str(info.value)
        assert "machine's clock" in str(info.value)
