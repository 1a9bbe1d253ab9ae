"""Issue 12: every problem of every table at once (with values and suggested settings), time zones, survey-only
data sets, numeric-looking text columns, the data-quality page."""
from __future__ import annotations

import warnings

import pandas as pd
import pytest

from helpers.data import DataQualityWarning, data_quality_html, load_dataset, numeric_text_columns
from helpers.errors import DataContractError, DataProblem, DataValidationError, MissingTableError
from tests.test_data import load_quiet, set_value, valid_tables, write


def _error(folder) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        load_quiet(folder)
    return info.value


def test_a_multi_problem_export_yields_one_error_listing_every_problem_with_values(tmp_path):
    """Before: one error per run (17 dry-runs of hand fixes), naming row keys but not the values."""
    def responses(df):
        df["csat"] = [7, 10, 6, 9]                      # a 1-10 scale
        df["response_date"] = ["03/04/2024", "03/14/2024", "2024-03-01", "2024-03-01"]  # US dates
        return df

    def tickets(df):
        df["reopened"] = ["0", "2", "3"]                # reopen counts, not flags
        df.loc[2, "ticket_id"] = "T1"                   # a duplicate id
        return df

    folder = write(tmp_path / "d", responses=responses, tickets=tickets,
                   customers=set_value("monthly_revenue", 0, "USD 1,234.50"))
    err = _error(folder)
    assert isinstance(err, DataContractError)  # callers catching the old error keep working
    by_column = {(p.table, p.column, p.rule): p for p in err.problems}
    assert set(by_column) >= {("responses", "csat", "range"), ("responses", "response_date", "type"),
                              ("tickets", "reopened", "type"), ("tickets", "ticket_id", "unique"),
                              ("customers", "monthly_revenue", "type")}
    csat = by_column[("responses", "csat", "range")]
    assert csat.n_rows == 4 and csat.examples == ["R1", "R2", "R3", "R4"]
    assert set(csat.values) == {"6", "7", "9", "10"}
    assert "values 6-10 found: is this a 1-10 scale? set `scale: [1, 10]`" in csat.suggestion
    dates = by_column[("responses", "response_date", "type")]
    assert dates.n_rows == 2 and set(dates.values) == {"03/04/2024", "03/14/2024"}
    assert "US dates" in dates.suggestion and "%m/%d/%Y" in dates.suggestion
    reopened = by_column[("tickets", "reopened", "type")]
    assert set(reopened.values) == {"2", "3"} and "counts" in reopened.suggestion
    money = by_column[("customers", "monthly_revenue", "type")]
    assert money.values == ["USD 1,234.50"] and "thousands" in money.suggestion
    # one message lists them all, each with its values
    msg = str(err)
    assert msg.startswith(f"{len(err.problems)} problems in the data (customers, responses, tickets)")
    for p in err.problems:
        assert p.message() in msg
    assert "'10'" in msg and "'6'" in msg
    assert "'USD 1,234.50'" in msg and "'03/14/2024'" in msg


def test_day_first_dates_and_twelve_hour_times_get_their_own_format(tmp_path):
    def tickets(df):
        df["created_at"] = ["25/02/2024 09:00 PM", "2024-03-01 10:00:00", "2024-04-01 11:00:00"]
        return df
    err = _error(write(tmp_path / "d", tickets=tickets))
    [p] = [p for p in err.problems if p.column == "created_at"]
    assert "day/month/year" in p.suggestion and "%d/%m/%Y %I:%M %p" in p.suggestion


def test_the_old_single_problem_message_is_unchanged(tmp_path):
    err = _error(write(tmp_path / "d", responses=set_value("nps", 0, 11)))
    assert len(err.problems) == 1
    assert str(err) == err.problems[0].message()
    assert "column 'nps' has values out of range ('11') in 1 row e.g. 'R1'; expected whole numbers 0-10" in str(err)


def test_missing_and_extra_columns_and_value_problems_of_several_tables_are_collected(tmp_path):
    def customers(df):
        df["Loyalty tier"] = "gold"
        return df.drop(columns=["segment"])
    err = _error(write(tmp_path / "d", customers=customers, org=set_value("role", 2, "agent")))
    found = {(p.table, p.column, p.rule) for p in err.problems}
    assert found == {("customers", "segment", "required column"), ("customers", "Loyalty tier", "extra column"),
                     ("org", "role", "allowed")}


@pytest.mark.parametrize("written,expected", [
    ("2025-01-03 08:33:00 -0700", "2025-01-03 15:33:00"),   # was 08:33: the offset after a space was dropped
    ("2025-01-03 08:33:00-0700", "2025-01-03 15:33:00"),
    ("2025-01-03T08:33:00-07:00", "2025-01-03 15:33:00"),
    ("2025-01-03 08:33:00 -07:00", "2025-01-03 15:33:00"),
    ("2025-01-03 08:33:00-07", "2025-01-03 15:33:00"),
    ("2025-01-03 08:33 +0530", "2025-01-03 03:03:00"),
    ("2025-01-03T08:33:00Z", "2025-01-03 08:33:00"),
    ("2025-01-03 08:33:00 UTC", "2025-01-03 08:33:00"),
    ("2025-01-03 08:33:00", "2025-01-03 08:33:00"),         # no offset: as written (UTC)
])
def test_every_accepted_time_zone_form_is_converted_to_utc(tmp_path, written, expected):
    def tickets(df):
        df["created_at"] = [written, "2024-03-01 10:00:00", "2024-04-01 11:00:00"]
        df["first_response_at"] = [None, None, None]
        df["resolved_at"] = [None, None, None]
        return df
    ds = load_quiet(write(tmp_path / "d", tickets=tickets), today="2026-01-01")
    assert ds.tickets.loc[0, "created_at"] == pd.Timestamp(expected)


# --- survey-only ------------------------------------------------------------------------------------------

def survey_only(folder, **changes):
    return write(folder, tables={"responses": valid_tables(8)["responses"]}, **changes)


def test_a_survey_only_data_set_loads_without_fabricated_tables(tmp_path):
    ds = load_quiet(survey_only(tmp_path / "s"), min_responses=1)
    assert ds.tables == ("responses",)
    assert ds.has("responses") and not ds.has("customers") and not ds.has("tickets") and not ds.has("org")
    assert ds.departments == ["Billing", "Sales"]  # from the responses: no org table
    assert len(ds.responses) == 8
    # absent, not empty: no view, and the frame raises the reason (also an AttributeError)
    assert not ds.con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'tickets'").fetchone()[0]
    with pytest.raises(MissingTableError, match="Ticket KPIs .* need the tickets table: add tickets.csv"):
        ds.tickets
    assert getattr(ds, "org", None) is None and not hasattr(ds, "customers")
    assert ds.missing_reason("retention") == ("Retention needs the customers table (signup and churn dates): "
                                              "add customers.csv")
    assert ds.missing_reason("fcr") == "First-contact resolution needs the tickets table (one row per ticket): add tickets.csv"
    assert ds.missing_reason("csat") == "" and ds.missing_reason("responses") == ""
    assert ds.date_range() == (pd.Timestamp("2024-02-01"), pd.Timestamp("2024-05-01"))
    # the snapshot keeps what the data has
    again = load_quiet(ds.snapshot(tmp_path / "snap.duckdb"), validate=False)
    assert again.tables == ("responses",) and again.departments == ds.departments
    pd.testing.assert_frame_equal(again.responses, ds.responses)


def test_survey_only_kpis_and_a_department_objective_evaluate(tmp_path):
    from helpers.kpis import compute_kpi
    from helpers.objectives import evaluate_objectives, parse_objectives
    responses = valid_tables(240)["responses"]
    responses["response_date"] = [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(240)]
    responses["csat"] = [[5, 4, 3, 4, 5, 2][i % 6] for i in range(240)]
    ds = load_quiet(write(tmp_path / "s", tables={"responses": responses}), today="2025-06-30")
    est = compute_kpi("csat", ds, filters={"department": "Billing"})
    billing = responses[responses["department"] == "Billing"]["csat"]
    assert est.value == pytest.approx(100 * (billing >= 4).mean()) and est.n == len(billing)
    plan = parse_objectives({"department": "Billing", "objectives": [{
        "id": "b-csat", "title": "CSAT to 80%", "metric": "csat", "baseline": 60, "target": 80,
        "start": "2024-07-01", "deadline": "2024-12-31", "owner": {"name": "Jo", "role": "director"}}]}, "billing.yaml")
    evaluation = evaluate_objectives(plan, ds, as_of="2024-12-31")
    row = evaluation.table.set_index("id").loc["b-csat"]
    assert row["status"] in ("achieved", "missed") and row["n"] > 0  # judged on the survey data, not "no data"


def test_absent_nullable_columns_read_as_empty_and_are_named(tmp_path):
    """Nullable contract columns need not exist (a survey without NPS, tickets without a team)."""
    ds = load_quiet(write(tmp_path / "d", responses=lambda df: df.drop(columns=["nps", "channel", "attr_ease"]),
                          tickets=lambda df: df.drop(columns=["team"])), min_responses=1)
    assert ds.absent_columns == {"responses": ["channel", "nps", "followed_up_at"], "tickets": ["team"]}
    assert ds.responses["nps"].isna().all() and "attr_ease" not in ds.attributes
    assert not ds.has("responses", "nps") and ds.has("responses", "csat")
    assert "does not have" in ds.missing_reason("nps")
    assert not any("nps" in w for w in ds.warnings)  # not "100% missing": the column is absent, and said so


# --- numeric-looking text -------------------------------------------------------------------------------

def test_a_numeric_looking_text_column_names_its_blanks():
    """Before: TotalCharges with ' ' blanks became a 6,532-level category ("1869 events for 6532 covariates")."""
    charges = [f"{20 + i * 1.37:.2f}" for i in range(60)]
    charges[5] = charges[17] = " "
    frame = pd.DataFrame({"customerID": [f"C{i}" for i in range(60)], "TotalCharges": charges,
                          "Contract": ["Month-to-month", "One year"] * 30})
    [p] = numeric_text_columns(frame, "retention", "telco.csv", key="customerID")
    assert p.column == "TotalCharges" and p.severity == "warning" and p.n_rows == 2
    assert p.examples == ["C5", "C17"] and p.values == [" "]
    assert "58 distinct numbers, 2 blanks" in p.message() and "blanks are not numbers" in p.message()
    assert "58 levels" in p.suggestion


def test_retention_export_warns_about_numeric_text(tmp_path):
    from helpers.config import ReportConfig
    from helpers.data import load_retention_table
    rows = "\n".join(f"C{i},{i % 70 + 1},{'Yes' if i % 4 == 0 else 'No'},{'' if i == 3 else ' ' if i == 9 else 20 + i * 1.5}"
                     for i in range(80))
    export = tmp_path / "telco.csv"
    export.write_text("customerID,tenure,Churn,TotalCharges\n" + rows + "\n")
    cfg = ReportConfig(retention={"file": str(export), "id_column": "customerID", "start_column": None,
                                  "end_column": None, "duration_column": "tenure", "event_column": "Churn",
                                  "churn_values": ["yes"], "segment_column": None})
    with pytest.warns(DataQualityWarning, match=r"TotalCharges.*numeric-looking text.*1 blank"):
        frame = load_retention_table(cfg)
    assert frame.attrs["data_problems"][0]["examples"] == ["C9"]


def test_data_quality_page_lists_every_problem_escaped(tmp_path):
    err = _error(write(tmp_path / "d", responses=set_value("csat", 0, "<script>x</script>"),
                       org=set_value("role", 2, "agent")))
    page = data_quality_html(err, title="Data quality <run>", source=str(tmp_path))
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "Data quality &lt;run&gt;" in page and page.count("<tr>") == len(err.problems) + 2  # + header rows
    assert "<h2>responses</h2>" in page and "<h2>org</h2>" in page and "2 problems to fix" in page
    assert "No problems found" in data_quality_html([])
    # the problems survive a round trip through dicts (manifest, snapshot)
    assert [DataProblem.from_dict(p.to_dict()) for p in err.problems] == err.problems


def test_numeric_text_in_a_kept_dimension_is_a_warning_not_an_error(tmp_path):
    big = valid_tables()
    n = 40
    big["customers"] = pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(1, n + 1)], "signup_date": "2024-01-05", "end_date": None,
        "segment": "consumer", "region": None, "monthly_revenue": None, "purchases": None,
        "TotalCharges": [" " if i == 7 else f"{10 + i * 2.5:.2f}" for i in range(n)]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        ds = load_dataset(write(tmp_path / "d", tables=big), dimensions={"customers": ["TotalCharges"]})
    assert ds.customers.loc[7, "TotalCharges"] == " " and ds.customers.loc[0, "TotalCharges"] == "10.00"
    [p] = ds.problems
    assert p.column == "TotalCharges" and p.examples == ["C8"] and p.values == [" "]
    assert any("numeric-looking text" in w and "1 blank" in w for w in ds.warnings)


def test_cox_on_a_numeric_looking_text_covariate_names_the_column_not_thousands_of_covariates():
    """Before: 'only 1869 churn events for 6532 covariates' with no hint that TotalCharges is text."""
    import numpy as np

    from helpers.retention import RetentionInputError, fit_cox
    rng = np.random.default_rng(3)
    n = 200
    charges = [f"{x:.2f}" for x in rng.uniform(20, 8000, n)]
    charges[4] = charges[40] = " "
    frame = pd.DataFrame({"duration": rng.integers(1, 72, n), "event": rng.random(n) < 0.3,
                          "TotalCharges": charges})
    with pytest.raises(RetentionInputError) as info:
        fit_cox(frame, "duration", "event", ["TotalCharges"])
    msg = str(info.value)
    assert "'TotalCharges'" in msg and "numeric-looking text" in msg and "2 blanks" in msg
    assert "covariates -" not in msg and "pd.to_numeric" in msg
    # converted as suggested, the model fits
    frame["TotalCharges"] = pd.to_numeric(frame["TotalCharges"], errors="coerce")
    assert list(fit_cox(frame, "duration", "event", ["TotalCharges"]).table.index) == ["TotalCharges"]


def test_survey_only_department_and_drivers_reports_explain_what_they_cannot_show(small_demo, tmp_path):
    """A survey-only data set (the demo's responses alone) gives a department report whose survey objectives are
    judged and whose ticket and retention sections say which table they need, and a drivers report."""
    import shutil

    from helpers.drivers_report import prepare_drivers_report
    from helpers.objectives_report import prepare_department_report
    folder = tmp_path / "survey"
    folder.mkdir()
    shutil.copy(small_demo / "responses.parquet", folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        snap = str(load_dataset(folder).snapshot(tmp_path / "snap.duckdb"))
    dept = prepare_department_report("billing", data_source=snap, as_of="2026-10-31")
    table = dept.evaluation.table.set_index("id")
    survey = table[table["metric"].isin(["csat", "nps", "ces"])]
    assert len(survey) and (survey["status"] != "no data").all()
    assert (table.loc[table["metric"].isin(["fcr", "first_response_hours"]), "status"] == "no data").all()
    survival, message = dept.retention()
    assert survival is None and message == ("Retention needs the customers table (signup and churn dates): "
                                            "add customers.csv")
    _, notes = dept.funnels()
    assert any("needs the tickets table" in n for n in notes)
    assert "Survey answers" in dept.missing_values_html() and "Tickets" not in dept.missing_values_html()
    drivers = prepare_drivers_report("Billing", data_source=snap, n_boot=0, as_of="2026-10-31")
    assert drivers.main is not None and len(drivers.main.table) >= 6


def test_zone_aware_parquet_timestamps_are_read_in_utc(tmp_path):
    from tests.test_data import _typed
    tables = {k: _typed(v) for k, v in valid_tables().items()}
    t = tables["tickets"]
    for c in ("created_at", "first_response_at", "resolved_at"):
        t[c] = t[c].dt.tz_localize("America/Denver")
    folder = tmp_path / "d"
    folder.mkdir()
    for name, df in tables.items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
    ds = load_quiet(folder, today="2026-01-01")
    assert ds.tickets.loc[0, "created_at"] == pd.Timestamp("2024-02-01 16:00")  # 09:00 MST = 16:00 UTC
