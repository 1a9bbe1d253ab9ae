"""Export profiles (helpers.sources): reading and recoding real export layouts into the data contract.

The shipped samples (data/samples/, written by data/samples/make_samples.py from the seeded demo) are loaded
end to end through params/sources/samples.yaml and compared with the demo's own contract values of the same
rows (data/samples/expected/): every recoding rule has to give back exactly what the demo generated.
The other tests each build a small export in a temporary folder for one rule.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.data import load_dataset
from helpers.errors import DataContractError, DataValidationError, ParamsError
from helpers.sources import load_profile, load_source_set

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
SAMPLE_SET = ROOT / "params" / "sources" / "samples.yaml"


# --- the shipped samples, end to end -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def samples():
    ds = load_dataset(SAMPLE_SET, emit_warnings=False)
    yield ds
    ds.close()


def _expected(table: str) -> pd.DataFrame:
    return pd.read_csv(SAMPLES / "expected" / f"{table}.csv")


def test_samples_load_every_table_through_its_profile(samples):
    assert samples.tables == ("customers", "responses", "tickets", "org")
    assert (samples.count("customers"), samples.count("responses"), samples.count("tickets")) == (300, 400, 500)
    # the survey tool's question-text and import-id rows are not data
    assert not samples.responses["response_id"].str.contains("ImportId|Response ID").any()


def test_survey_tool_sample_recodes_to_the_demo_values(samples):
    got = samples.responses.set_index("response_id").sort_index()
    want = _expected("responses").set_index("response_id").sort_index()
    assert list(got.index) == list(want.index)
    # 1-10 ratings (2v-1 or 2v in the export) read back as the demo's 1-5; N/A code 11 and blanks are missing
    for col in ["csat", "nps", "ces", "attr_speed", "attr_resolution", "attr_knowledge", "attr_courtesy",
                "attr_ease", "attr_value"]:
        pd.testing.assert_series_equal(got[col], want[col].astype("float64"), check_names=False, obj=col)
    # department and channel were answer labels
    assert (got["department"] == want["department"]).all()
    assert (got["channel"] == want["channel"]).all()
    # local Denver times (08:00-16:00) give the same UTC day
    assert (got["response_date"] == pd.to_datetime(want["response_date"])).all()
    assert (got["comment"].fillna("") == want["comment"].fillna("")).all()
    # extra columns kept as dimensions
    assert {"region", "plan"} <= set(samples.columns("responses"))
    assert set(got["plan"]) == {"Basic", "Plus", "Pro"}


def test_helpdesk_sample_offsets_minutes_and_counts(samples):
    got = samples.tickets.set_index("ticket_id").sort_index()
    want = _expected("tickets").set_index("ticket_id").sort_index()
    # "2025-01-03 08:33:00 -0700" (created) and "...-0700" (solved) both converted to the demo's UTC
    assert (got["created_at"] == pd.to_datetime(want["created_at"])).all()
    pd.testing.assert_series_equal(got["resolved_at"], pd.to_datetime(want["resolved_at"]).astype(got["resolved_at"].dtype),
                                   check_names=False)
    # first reply = created + "447,92" minutes (two decimals: within a second of the demo's)
    gap = (got["first_response_at"] - pd.to_datetime(want["first_response_at"])).dt.total_seconds().abs()
    assert gap.max() <= 0.6 and got["first_response_at"].isna().sum() == want["first_response_at"].isna().sum()
    # reopen counts -> booleans, empty where the ticket is not solved
    want_reopened = want["reopened"].map({True: "True", False: "False", "True": "True", "False": "False"})
    assert got["reopened"].isna().sum() == want_reopened.isna().sum() > 0
    assert (got["reopened"].astype("string").fillna("NA") == want_reopened.fillna("NA")).all()
    assert (got["channel"] == want["channel"]).all()
    assert (got["contacts_to_resolve"].fillna(-1) == want["contacts_to_resolve"].fillna(-1)).all()
    assert {"product", "priority"} <= set(samples.columns("tickets"))


def test_crm_sample_xlsx_us_dates_currency_labels(samples):
    got = samples.customers.set_index("customer_id").sort_index()
    want = _expected("customers").set_index("customer_id").sort_index()
    assert (got["signup_date"] == pd.to_datetime(want["signup_date"])).all()  # 03/04/2025 is 4 March
    assert (got["end_date"].fillna(pd.Timestamp(0)) == pd.to_datetime(want["end_date"]).fillna(pd.Timestamp(0))).all()
    np.testing.assert_allclose(got["monthly_revenue"], want["monthly_revenue"], rtol=0, atol=0.005)
    assert (got["segment"] == want["segment"]).all()
    assert (got["region"].fillna("") == want["region"].fillna("")).all()
    assert (got["purchases"] == want["purchases"]).all()
    assert {"plan", "product"} <= set(samples.columns("customers"))


def test_samples_notes_name_recodings_and_unused_columns(samples):
    text = "\n".join(samples.warnings)
    assert "csat 1-10 -> 1-5" in text and "top box 7-10 -> 4-5" in text
    assert "ces 1-7 reverse-scored -> 1-7 (1 -> 7" in text
    assert "'Industry', 'Last Activity'" in text  # not mapped, not ignored: named


def test_sample_dimensions_work_in_kpi_breakdowns(samples):
    from helpers.kpis import compute_kpi, kpi_series
    by_plan = kpi_series(samples.con, "csat", freq=None, by="plan")
    assert set(by_plan["plan"]) == {"Basic", "Plus", "Pro"}
    assert by_plan["n"].sum() == samples.responses["csat"].notna().sum()
    pro = compute_kpi("csat", samples, filters={"plan": "Pro"})
    sub = samples.responses.loc[samples.responses["plan"] == "Pro", "csat"].dropna()
    assert pro.n == len(sub)
    assert pro.value == pytest.approx(100 * (sub >= 4).mean())


def test_sample_csat_kpi_equals_the_declared_top_box_share(samples):
    """CSAT on 1-10 with top box 7-10: the kit's CSAT (share of 4-5) is the export's share of 7-10."""
    raw = pd.read_csv(SAMPLES / "survey_tool_responses.csv", skiprows=[1, 2])
    answers = pd.to_numeric(raw["Q3_Overall"], errors="coerce").dropna()
    from helpers.kpis import compute_kpi
    k = compute_kpi("csat", samples)
    assert k.n == len(answers)
    assert k.value == pytest.approx(100 * (answers >= 7).mean())


# --- small exports, one rule each --------------------------------------------------------------------------

def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(textwrap.dedent(text).lstrip("\n").encode(encoding))
    return path


def _set(tmp_path: Path, **profiles: str) -> Path:
    """A source set in tmp_path with the given profiles (YAML text, {file} replaced by the data file)."""
    lines = ["tables:"]
    for table, text in profiles.items():
        p = _write(tmp_path / f"{table}.yaml", text)
        lines.append(f"  {table}: {p}")
    return _write(tmp_path / "set.yaml", "\n".join(lines) + "\n")


RESPONSES_HEAD = """
    table: responses
    file: {file}
    columns:
      response_id: id
      customer_id: cust
      response_date: day
      department: dept
"""


def _responses(tmp_path, csv_text: str, extra: str = "", read: str = "", encoding="utf-8", name="r.csv",
               head: str = RESPONSES_HEAD):
    f = _write(tmp_path / name, csv_text, encoding)
    text = textwrap.dedent(head).format(file=f) + extra
    if read:
        text += "read:\n" + textwrap.indent(textwrap.dedent(read).strip(), "  ") + "\n"
    return _set(tmp_path, responses=text)


def test_na_code_6_on_a_1_to_5_scale_is_missing(tmp_path):
    csv = """
        id,cust,day,dept,q_speed
        R1,C1,2025-01-02,Billing,5
        R2,C1,2025-01-02,Billing,6
        R3,C1,2025-01-02,Billing,2
    """
    with pytest.raises(DataValidationError) as err:  # without the code: 6 is named, with the setting to fix it
        load_dataset(_responses(tmp_path, csv, "  attr_speed: q_speed\n"), emit_warnings=False)
    msg = str(err.value)
    assert "q_speed" in msg and "outside the scale 1-5" in msg and "'R2'" in msg and "na_codes: [6]" in msg
    ds = load_dataset(_responses(tmp_path, csv, "  attr_speed: {from: q_speed, na_codes: [6]}\n"),
                      emit_warnings=False)
    assert ds.responses.set_index("response_id")["attr_speed"].to_dict() == {"R1": 5, "R2": None or pytest.approx(np.nan, nan_ok=True), "R3": 2} \
        or ds.responses["attr_speed"].isna().tolist() == [False, True, False]
    assert ds.responses["attr_speed"].tolist()[0] == 5 and np.isnan(ds.responses["attr_speed"].tolist()[1])


def test_reverse_scored_effort_item(tmp_path):
    csv = """
        id,cust,day,dept,effort
        R1,C1,2025-01-02,Billing,7
        R2,C1,2025-01-02,Billing,1
        R3,C1,2025-01-02,Billing,3
    """
    ds = load_dataset(_responses(tmp_path, csv, "  ces: {from: effort, scale: [1, 7], reverse: true}\n"),
                      emit_warnings=False)
    assert ds.responses["ces"].tolist() == [1, 7, 5]  # 7 = very easy in the export -> 1 = easy in the kit


@pytest.mark.parametrize("scale, top_box, answers, want", [
    ([1, 7], [6, 7], [1, 2, 3, 4, 5, 6, 7], [1, 2, 2, 3, 3, 4, 5]),
    ([1, 10], [9, 10], [1, 4, 5, 8, 9, 10], [1, 2, 2, 3, 4, 5]),
    ([1, 10], None, [1, 2, 3, 6, 7, 10], [1, 1, 2, 3, 4, 5]),
    ([0, 10], 2, [0, 8, 9, 10], [1, 3, 4, 5]),
])
def test_csat_scales_rescale_with_the_declared_top_box(tmp_path, scale, top_box, answers, want):
    rows = "\n".join(f"R{i},C1,2025-01-02,Billing,{a}" for i, a in enumerate(answers))
    rule = f"  csat: {{from: sat, scale: {scale}" + (f", top_box: {top_box}" if top_box is not None else "") + "}\n"
    ds = load_dataset(_responses(tmp_path, "id,cust,day,dept,sat\n" + rows + "\n", rule), emit_warnings=False)
    got = ds.responses["csat"].tolist()
    assert got == want
    if top_box is not None:  # the kit's top-2-box share is the declared top box's share
        lo = scale[1] - top_box + 1 if isinstance(top_box, int) else top_box[0]
        assert np.mean(np.array(got) >= 4) == np.mean(np.array(answers) >= lo)


def test_undeclared_1_to_10_ratings_suggest_the_scale(tmp_path):
    csv = "id,cust,day,dept,sat\n" + "\n".join(f"R{i},C1,2025-01-02,Billing,{v}" for i, v in
                                               enumerate([3, 6, 8, 9, 10, 10])) + "\n"
    with pytest.raises(DataValidationError) as err:
        load_dataset(_responses(tmp_path, csv, "  csat: sat\n"), emit_warnings=False)
    msg = str(err.value)
    assert "has values outside the scale 1-5" in msg and "in 5 rows" in msg
    assert "scale: [1, 10]" in msg and "'10'" in msg


def test_nps_labels_keep_the_nps_exact_and_say_what_they_cannot_be(tmp_path):
    labels = ["Promoter"] * 5 + ["Passive"] * 3 + ["Detractor"] * 2 + [""]
    rows = "\n".join(f"R{i},C1,2025-01-02,Billing,{v}" for i, v in enumerate(labels))
    ds = load_dataset(_responses(tmp_path, "id,cust,day,dept,grp\n" + rows + "\n",
                                 "  nps: {from: grp, labels: {Promoter: 10, Passive: 8, Detractor: 0}}\n"),
                      emit_warnings=False)
    from helpers.kpis import compute_kpi
    assert compute_kpi("nps", ds).value == pytest.approx(100 * (5 - 2) / 10)
    assert any("nps from labels" in w and "not meaningful" in w for w in ds.warnings)


def test_good_bad_satisfaction_and_unknown_labels(tmp_path):
    csv = """
        id,cust,day,dept,sat
        R1,C1,2025-01-02,Billing,Good
        R2,C1,2025-01-02,Billing,bad
        R3,C1,2025-01-02,Billing, GOOD
        R4,C1,2025-01-02,Billing,Meh
    """
    rule = "  csat: {from: sat, labels: {Good: 5, Bad: 1}}\n"
    with pytest.raises(DataValidationError) as err:
        load_dataset(_responses(tmp_path, csv, rule), emit_warnings=False)
    assert "not in its labels map" in str(err.value) and "'Meh'" in str(err.value) and "'R4'" in str(err.value)
    csv = csv.replace("Meh", "Good")
    ds = load_dataset(_responses(tmp_path, csv, rule), emit_warnings=False)
    assert ds.responses["csat"].tolist() == [5, 1, 5, 5]  # case and spaces ignored
    assert any("csat from labels" in w for w in ds.warnings)


def test_latin1_semicolon_decimal_comma_and_offsets(tmp_path):
    csv = """
        Id;Cust;Dept;Created;Minutes;Reopens;Org
        T1;C1;Billing;2025-01-03 08:33:00 -0700;12,5;0;Société Exemple
        T2;C1;Billing;2025-01-03 08:33:00-0700;1.234,25;2;Müller & Söhne
        T3;C1;Billing;2025-01-03T08:33:00-07:00;0,0;;Ærø
        T4;C1;Billing;2025-01-03 15:33:00Z;;1;Niño
        T5;C1;Billing;2025-01-03 08:33:00 -07:00;3;0;x
        T6;C1;Billing;2025-01-03 21:03:00 +05:30;3;0;x
    """
    f = _write(tmp_path / "t.csv", csv, "latin-1")
    profile = f"""
        table: tickets
        file: {f}
        read: {{encoding: latin-1, delimiter: ";", decimal: ",", thousands: "."}}
        columns:
          ticket_id: Id
          customer_id: Cust
          department: Dept
          created_at: Created
          first_response_at: {{derive: {{start: created_at, add: Minutes, unit: minute}}}}
          reopened: {{from: Reopens, count_to_boolean: true}}
        dimensions: {{organisation: Org}}
    """
    responses = _write(tmp_path / "r.csv", "id,cust,day,dept\nR1,C1,2025-01-02,Billing\n")
    sset = _set(tmp_path, tickets=profile, responses=textwrap.dedent(RESPONSES_HEAD).format(file=responses))
    ds = load_dataset(sset, emit_warnings=False)
    t = ds.tickets.set_index("ticket_id")
    assert (t["created_at"] == pd.Timestamp("2025-01-03 15:33:00")).all()  # every offset form, one instant
    assert t.loc["T1", "first_response_at"] == pd.Timestamp("2025-01-03 15:45:30")
    assert t.loc["T2", "first_response_at"] == pd.Timestamp("2025-01-03 15:33:00") + pd.Timedelta(minutes=1234.25)
    assert pd.isna(t.loc["T4", "first_response_at"])
    assert t["reopened"].tolist()[:4] == [False, True, pd.NA, True] or \
        [None if pd.isna(v) else bool(v) for v in t["reopened"]][:4] == [False, True, None, True]
    assert t.loc["T2", "organisation"] == "Müller & Söhne" and t.loc["T3", "organisation"] == "Ærø"


def test_naive_times_in_a_zone_12_hour_and_output_zone(tmp_path):
    csv = """
        Id,Cust,Dept,Created
        T1,C1,Billing,01/03/2025 08:33 AM
        T2,C1,Billing,07/03/2025 08:33 PM
        T3,C1,Billing,2025-07-03 20:33:00
    """
    f = _write(tmp_path / "t.csv", csv)
    responses = _write(tmp_path / "r.csv", "id,cust,day,dept\nR1,C1,2025-01-02,Billing\n")
    for out_zone, want in [("UTC", ["2025-01-03 15:33", "2025-07-04 02:33", "2025-07-04 02:33"]),
                           ("Europe/Berlin", ["2025-01-03 16:33", "2025-07-04 04:33", "2025-07-04 04:33"])]:
        profile = f"""
            table: tickets
            file: {f}
            read: {{timezone: America/Denver, output_timezone: {out_zone}, timestamp_format: "%m/%d/%Y %I:%M %p"}}
            columns: {{ticket_id: Id, customer_id: Cust, department: Dept, created_at: Created}}
        """
        sset = _set(tmp_path, tickets=profile, responses=textwrap.dedent(RESPONSES_HEAD).format(file=responses))
        ds = load_dataset(sset, emit_warnings=False, today="2026-01-01")
        assert ds.tickets["created_at"].tolist() == [pd.Timestamp(w) for w in want], out_zone
        ds.close()


def test_us_dates_and_currency_strings(tmp_path):
    csv = """
        acct,since,until,seg,mrr
        A1,03/04/2025,,consumer,"USD 1,234.50"
        A2,12/31/2024,01/15/2025,consumer,$12.00
        A3,1/2/2025,,consumer,
    """
    f = _write(tmp_path / "c.csv", csv)
    responses = _write(tmp_path / "r.csv", "id,cust,day,dept\nR1,A1,2025-05-02,Billing\n")
    profile = f"""
        table: customers
        file: {f}
        read: {{date_format: "%m/%d/%Y"}}
        columns:
          customer_id: acct
          signup_date: since
          end_date: until
          segment: seg
          monthly_revenue: {{from: mrr, currency: USD}}
    """
    sset = _set(tmp_path, customers=profile, responses=textwrap.dedent(RESPONSES_HEAD).format(file=responses))
    ds = load_dataset(sset, emit_warnings=False)
    c = ds.customers.set_index("customer_id")
    assert c.loc["A1", "signup_date"] == pd.Timestamp("2025-03-04")
    assert c.loc["A3", "signup_date"] == pd.Timestamp("2025-01-02")
    assert c.loc["A2", "end_date"] == pd.Timestamp("2025-01-15")
    assert c["monthly_revenue"].tolist()[:2] == [1234.5, 12.0] and np.isnan(c["monthly_revenue"].iloc[2])
    ds.close()
    _write(f, csv.replace("$12.00", "EUR 12.00").replace("03/04/2025", "2025-13-45"))
    with pytest.raises(DataValidationError) as err:
        load_dataset(sset, emit_warnings=False)
    msg = str(err.value)
    assert "2 problems" in msg  # both at once
    assert "another currency" in msg and "'EUR 12.00'" in msg and "'A2'" in msg
    assert "not dates in the declared format" in msg and "'2025-13-45'" in msg


def test_xlsx_sheet_header_row_and_missing_sheet(tmp_path):
    from openpyxl import Workbook
    wb = Workbook()
    ws = wb.active
    ws.title = "Export"
    ws.append(["Survey export"])
    ws.append(["id", "cust", "day", "dept", "sat"])
    ws.append(["Response ID", "Customer", "Date", "Team", "Overall satisfaction"])  # a question-text row
    ws.append([1001, "C1", "03/04/2025", "Billing", 4])
    ws.append([1002, "C1", "03/05/2025", "Billing", None])
    path = tmp_path / "r.xlsx"
    wb.save(path)
    read = "sheet: Export\nheader_row: 2\nskip_after_header: 1\ndate_format: '%m/%d/%Y'"
    profile = textwrap.dedent(RESPONSES_HEAD).format(file=path) + "  csat: sat\nread:\n" + \
        textwrap.indent(read, "  ") + "\n"
    ds = load_dataset(_set(tmp_path, responses=profile), emit_warnings=False)
    r = ds.responses
    assert r["response_id"].tolist() == ["1001", "1002"]  # Excel numbers as ids without '.0'
    assert r["response_date"].tolist() == [pd.Timestamp("2025-03-04"), pd.Timestamp("2025-03-05")]
    assert r["csat"].iloc[0] == 4 and np.isnan(r["csat"].iloc[1])
    ds.close()
    with pytest.raises(DataValidationError, match="has no sheet 'Answers'.*Export"):
        load_dataset(_set(tmp_path, responses=profile.replace("sheet: Export", "sheet: Answers")),
                     emit_warnings=False)


def test_glob_of_survey_files_each_with_three_header_rows(tmp_path):
    head = 'id,cust,day,dept,sat\nResponse,Customer,Date,Team,"How satisfied, overall?"\n' \
           '{"ImportId":"_recordId"},{"ImportId":"x"},{"ImportId":"y"},{"ImportId":"z"},{"ImportId":"QID1"}\n'
    (tmp_path / "exports").mkdir()
    _write(tmp_path / "exports" / "week1.csv", head + "R1,C1,2025-01-02,Billing,5\n")
    _write(tmp_path / "exports" / "week2.csv", head + "R2,C1,2025-01-09,Billing,3\nR3,C1,2025-01-09,Sales,4\n")
    profile = textwrap.dedent(RESPONSES_HEAD).format(file=tmp_path / "exports" / "week*.csv") + \
        "  csat: sat\nread: {skip_after_header: 2}\n"
    ds = load_dataset(_set(tmp_path, responses=profile), emit_warnings=False)
    assert ds.responses["response_id"].tolist() == ["R1", "R2", "R3"]
    assert ds.responses["csat"].tolist() == [5, 3, 4]


def test_decimal_comma_without_the_setting_is_named(tmp_path):
    csv = "id;cust;day;dept;rev\nR1;C1;2025-01-02;Billing;10,5\n"
    f = _write(tmp_path / "t.csv", "Id;Cust;Dept;Created;Minutes\nT1;C1;Billing;2025-01-03 08:33:00;12,5\n")
    responses = _write(tmp_path / "r.csv", "id,cust,day,dept\nR1,C1,2025-01-02,Billing\n")
    profile = f"""
        table: tickets
        file: {f}
        read: {{delimiter: ";"}}
        columns:
          ticket_id: Id
          customer_id: Cust
          department: Dept
          created_at: Created
          first_response_at: {{derive: {{start: created_at, add: Minutes}}}}
    """
    with pytest.raises(DataValidationError) as err:
        load_dataset(_set(tmp_path, tickets=profile, responses=textwrap.dedent(RESPONSES_HEAD).format(file=responses)),
                     emit_warnings=False)
    assert "'12,5'" in str(err.value) and "decimal: ','" in str(err.value)
    del csv


def test_extra_columns_ignored_with_a_note_or_silently(tmp_path):
    csv = "id,cust,day,dept,Browser,Device\nR1,C1,2025-01-02,Billing,Firefox,phone\n"
    ds = load_dataset(_responses(tmp_path, csv), emit_warnings=False)
    assert "Browser" not in ds.columns("responses")
    assert any("2 export columns not used" in w and "'Browser', 'Device'" in w for w in ds.warnings)
    ds = load_dataset(_responses(tmp_path, csv, "ignore: [Browser]\ndimensions: [Device]\n"), emit_warnings=False)
    assert ds.responses["Device"].tolist() == ["phone"]
    assert not any("not used" in w for w in ds.warnings)


def test_survey_only_source_set(tmp_path):
    csv = "id,cust,day,dept,sat\nR1,C1,2025-01-02,Billing,5\n"
    ds = load_dataset(_responses(tmp_path, csv, "  csat: sat\n"), emit_warnings=False)
    assert ds.tables == ("responses",)


# --- bad profiles: clear errors naming the file and the field ----------------------------------------------

@pytest.mark.parametrize("extra, needle", [
    ("  csat: {from: sat, scael: [1, 10]}\n", "columns.csat.scael: unknown key"),
    ("  comment: {from: sat, scale: [1, 10]}\n", "columns.comment: scale, top_box and reverse apply to rating"),
    ("  nps: {from: sat, scale: [1, 10]}\n", "NPS is 0-10 by definition"),
    ("  csat: {from: sat, scale: [1, 10], top_box: [7, 9]}\n", "must be the top of the scale"),
    ("  loyalty: sat\n", "columns.loyalty: 'loyalty' is not a column of the responses contract"),
    ("  csat: {from: sat, value: 3}\n", "give exactly one of from"),
    ("read: {encoding: klingon}\n", "read.encoding: unknown encoding 'klingon'"),
    ("read: {timezone: Mars/Base}\n", "unknown time zone 'Mars/Base'"),
    ("  csat: {from: sat, labels: {Good: great}}\n", "labels map to numbers"),
])
def test_bad_profile_is_a_params_error_naming_file_and_field(tmp_path, extra, needle):
    f = _write(tmp_path / "r.csv", "id,cust,day,dept,sat\nR1,C1,2025-01-02,Billing,5\n")
    p = _write(tmp_path / "responses.yaml", textwrap.dedent(RESPONSES_HEAD).format(file=f) + extra)
    with pytest.raises(ParamsError) as err:
        load_profile(p)
    assert str(p) in str(err.value) and needle in str(err.value)


def test_profile_without_a_required_column(tmp_path):
    p = _write(tmp_path / "responses.yaml", "table: responses\nfile: x.csv\ncolumns: {response_id: id}\n")
    with pytest.raises(ParamsError, match="columns.customer_id: the contract column customer_id is required"):
        load_profile(p)


def test_source_set_errors(tmp_path):
    f = _write(tmp_path / "r.csv", "id,cust,day,dept\nR1,C1,2025-01-02,Billing\n")
    prof = _write(tmp_path / "responses.yaml", textwrap.dedent(RESPONSES_HEAD).format(file=f))
    with pytest.raises(ParamsError, match="is for table responses, not tickets"):
        load_source_set(_write(tmp_path / "s.yaml", f"tables: {{tickets: {prof}}}\n"))
    with pytest.raises(ParamsError, match="unknown table 'answers'"):
        load_source_set(_write(tmp_path / "s.yaml", f"tables: {{answers: {prof}}}\n"))
    with pytest.raises(ParamsError, match="this is one export profile"):
        load_dataset(prof)


def test_export_column_missing_lists_the_file_columns(tmp_path):
    csv = "id,cust,day,team\nR1,C1,2025-01-02,Billing\n"
    with pytest.raises(DataContractError) as err:
        load_dataset(_responses(tmp_path, csv), emit_warnings=False)
    msg = str(err.value)
    assert "no column 'dept' (columns.department)" in msg and "'team'" in msg


def test_export_file_not_found(tmp_path):
    sset = _set(tmp_path, responses=textwrap.dedent(RESPONSES_HEAD).format(file=tmp_path / "nope" / "*.csv"))
    with pytest.raises(DataContractError, match="export file not found"):
        load_dataset(sset, emit_warnings=False)


def test_problems_of_several_tables_reported_together(tmp_path):
    r = _write(tmp_path / "r.csv", "id,cust,day,dept,sat\nR1,C1,2025-01-02,Billing,12\nR1,C1,2025-01-02,Billing,4\n")
    t = _write(tmp_path / "t.csv", "Id,Cust,Dept,Created\nT1,C1,Billing,yesterday\n")
    sset = _set(tmp_path,
                responses=textwrap.dedent(RESPONSES_HEAD).format(file=r) + "  csat: sat\n",
                tickets=f"table: tickets\nfile: {t}\ncolumns: {{ticket_id: Id, customer_id: Cust, department: Dept, "
                        "created_at: Created}\n")
    with pytest.raises(DataValidationError) as err:
        load_dataset(sset, emit_warnings=False)
    msg = str(err.value)
    rules = {(p.table, p.column) for p in err.value.problems}
    assert ("responses", "sat") in rules and ("tickets", "Created") in rules
    assert "duplicate" in msg  # the contract's own check on the recoded table, in the same pass
    assert "'yesterday'" in msg and "'12'" in msg


# --- more forms the docs promise ----------------------------------------------------------------------------

def test_more_offset_forms_and_zone_names(tmp_path):
    csv = """
        Id,Cust,Created
        T1,C1,2025-01-03 08:33:00-07
        T2,C1,2025-01-03 15:33:00 UTC
        T3,C1,2025-01-03 15:33:00+00:00
        T4,C1,2025-01-03 08:33:00
        T5,C1,2025-07-03 08:33:00
    """
    f = _write(tmp_path / "t.csv", csv)
    responses = _write(tmp_path / "r.csv", "id,cust,day,dept\nR1,C1,2025-01-02,Billing\n")
    profile = f"""
        table: tickets
        file: {f}
        read: {{timezone: America/Denver}}
        columns: {{ticket_id: Id, customer_id: Cust, department: {{value: Billing}}, created_at: Created}}
    """
    sset = _set(tmp_path, tickets=profile, responses=textwrap.dedent(RESPONSES_HEAD).format(file=responses))
    ds = load_dataset(sset, emit_warnings=False)
    got = ds.tickets.set_index("ticket_id")["created_at"]
    assert (got[["T1", "T2", "T3", "T4"]] == pd.Timestamp("2025-01-03 15:33:00")).all()
    assert got["T5"] == pd.Timestamp("2025-07-03 14:33:00")  # summer time: UTC-6
    assert set(ds.tickets["department"]) == {"Billing"}  # a constant (value:)


def test_counts_currency_negatives_null_labels_cp1252_and_parquet(tmp_path):
    # cp1252 (a codec DuckDB does not read itself: through pandas), the euro sign is 0x80 there
    csv = "acct;since;seg;mrr;Owner\nA1;2025-01-02;Consumer;(12.00);Zoë €\nA2;2025-01-02;Unknown;USD 3.50;x\n"
    f = _write(tmp_path / "c.csv", csv, "cp1252")
    responses = _write(tmp_path / "r.csv", "id,cust,day,dept\nR1,A1,2025-05-02,Billing\n")
    profile = f"""
        table: customers
        file: {f}
        read: {{encoding: cp1252, delimiter: ";"}}
        columns:
          customer_id: acct
          signup_date: since
          segment: {{from: seg, labels: {{Consumer: consumer, Unknown: null}}}}
          monthly_revenue: {{from: mrr, currency: USD}}
        dimensions: [Owner]
    """
    sset = _set(tmp_path, customers=profile, responses=textwrap.dedent(RESPONSES_HEAD).format(file=responses))
    with pytest.raises(DataValidationError) as err:  # segment is required: a label read as missing is named
        load_dataset(sset, emit_warnings=False)
    assert "segment" in str(err.value) and "monthly_revenue" in str(err.value)  # and the negative amount
    assert err.value.problems[0].table == "customers"
    _write(f, csv.replace("(12.00)", "12.00").replace("Unknown", "Consumer"), "cp1252")
    ds = load_dataset(sset, emit_warnings=False)
    assert ds.customers["Owner"].tolist() == ["Zoë €", "x"]
    assert ds.customers["monthly_revenue"].tolist() == [12.0, 3.5]
    ds.close()
    # Parquet exports: typed columns read as text, then recoded like any other
    t = pd.DataFrame({"Id": ["T1", "T2", "T3"], "Cust": ["A1"] * 3, "Dept": ["Billing"] * 3,
                      "Created": pd.to_datetime(["2025-01-03 08:00"] * 3), "Reopens": [0, 3, -1]})
    t.to_parquet(tmp_path / "t.parquet")
    tickets = f"""
        table: tickets
        file: {tmp_path / 't.parquet'}
        columns: {{ticket_id: Id, customer_id: Cust, department: Dept, created_at: Created,
                   reopened: {{from: Reopens, count_to_boolean: true}}}}
    """
    sset = _set(tmp_path, customers=profile, tickets=tickets,
                responses=textwrap.dedent(RESPONSES_HEAD).format(file=responses))
    with pytest.raises(DataValidationError, match="'Reopens' is not a count.*'-1'.*'T3'"):
        load_dataset(sset, emit_warnings=False)
    t.assign(Reopens=[0, 3, 1]).to_parquet(tmp_path / "t.parquet")
    ds = load_dataset(sset, emit_warnings=False)
    assert ds.tickets["reopened"].tolist() == [False, True, True]
    assert ds.tickets["created_at"].tolist() == [pd.Timestamp("2025-01-03 08:00")] * 3


def test_dimension_named_like_a_contract_column(tmp_path):
    p = _write(tmp_path / "responses.yaml", textwrap.dedent(RESPONSES_HEAD).format(file="x.csv")
               + "dimensions: {channel: Via}\n")
    with pytest.raises(ParamsError, match="dimensions.channel: channel is a contract column"):
        load_profile(p)


def test_dates_from_local_timestamps_take_the_day_in_the_output_zone(tmp_path):
    csv = """
        id,cust,day,dept,sat
        R1,C1,03/04/2025 11:30 PM,Billing, 
        R2,C1,03/04/2025 11:30 PM -0700,Billing,4
        R3,C1,03/04/2025,Billing,
    """
    read = "timezone: America/Denver\ndate_format: '%m/%d/%Y'\ntimestamp_format: '%m/%d/%Y %I:%M %p'"
    ds = load_dataset(_responses(tmp_path, csv, "  csat: sat\n", read=read), emit_warnings=False, today="2026-01-01")
    # 23:30 in Denver (UTC-7 in March before DST) is 06:30 UTC the next day; a date alone stays that day
    assert ds.responses["response_date"].tolist() == [pd.Timestamp("2025-03-05"), pd.Timestamp("2025-03-05"),
                                                      pd.Timestamp("2025-03-04")]
    assert np.isnan(ds.responses["csat"].iloc[0])  # a blank (' ') answer is missing, not an error


def test_latin1_file_read_as_utf8_names_the_encoding_setting(tmp_path):
    csv = "id,cust,day,dept,note\nR1,C1,2025-01-02,Billing,Société\n"
    sset = _responses(tmp_path, csv, "dimensions: [note]\n", encoding="latin-1")
    with pytest.raises(DataValidationError) as err:
        load_dataset(sset, emit_warnings=False)
    assert "encoding" in str(err.value) and "latin-1" in str(err.value)


def test_column_mapping_of_report_yaml_is_part_of_a_source_sets_fingerprint(tmp_path):
    """Regression: report.yaml's column_mapping renames a source set's columns, but the fingerprint hashed only the
    set, its profiles and the exports, so two runs on differently mapped data looked like the same data (the
    run-over-run comparison, the run's caches and reproductions key on it)."""
    csv = """
        id,cust,day,dept,q_speed
        R1,C1,2025-01-02,Billing,5
        R2,C1,2025-01-02,Billing,3
    """
    src = _responses(tmp_path, csv, "  attr_speed: q_speed\n")
    plain = load_dataset(src, emit_warnings=False)
    mapped = load_dataset(src, column_mapping={"responses": {"attr_speed": "attr_ease"}}, emit_warnings=False)
    again = load_dataset(src, column_mapping={"responses": {"attr_speed": "attr_ease"}}, emit_warnings=False)
    assert "attr_ease" in mapped.responses.columns and "attr_ease" not in plain.responses.columns
    assert mapped.fingerprint != plain.fingerprint
    assert mapped.fingerprint == again.fingerprint  # still a function of the inputs
