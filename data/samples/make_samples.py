"""Write the small anonymised export samples of data/samples/ from the seeded demo company.

    .venv/bin/python data/samples/make_samples.py            # demo generated in a temporary folder (seed 7)
    .venv/bin/python data/samples/make_samples.py --demo build/test-demo

Three real export layouts, read by the profiles in params/sources/ (source set params/sources/samples.yaml):

- ``survey_tool_responses.csv``: a survey tool's CSV (three header rows: column names, question text, import
  ids; 29 columns; local times without offset in America/Denver; overall satisfaction and six attribute
  ratings on 1-10 with 11 = "does not apply"; an effort item where 7 = very easy; department and channel as
  answer labels; NPS 0-10 and its Promoter/Passive/Detractor group; region and plan as embedded data);
- ``helpdesk_tickets.csv``: a helpdesk ticket export (41 columns, Latin-1, ';'-delimited, decimal commas;
  timestamps with UTC offsets written "2025-01-03 08:33:00 -0700" and "2025-01-03 15:33:00-0700"; first reply
  as minutes after creation; reopens as counts; channel as the helpdesk's "Via" labels);
- ``crm_customers.xlsx``: a CRM account export (a title row and a blank row above the header; US dates
  03/04/2025 as text; monthly revenue as "USD 1,234.50"; segment and region as labels; plan and product as
  extra dimensions; a 12-hour "Last activity" timestamp);
- ``org.csv``: the demo's organisation in the contract's format.

Every person, company and address is fictional (the demo's generated names); e-mail fields are empty or
``@example.invalid``. The same demo gives the same contents (seeded choices, fixed order; the .xlsx differs only
in its zip timestamps). ``expected/`` holds the demo's own contract values of the sampled rows, which
tests/test_sources.py compares with what the profiles read back.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SEED = 20251103
N_CUSTOMERS, N_RESPONSES, N_TICKETS = 300, 400, 500
LOCAL = "America/Denver"

DEPARTMENT_LABELS = {"Customer Service": "Customer service desk", "Technical Support": "Technical support (IT help)",
                     "Billing": "Billing & payments", "Delivery": "Delivery / shipping", "Sales": "Sales team",
                     "Marketing": "Marketing & offers"}
SURVEY_CHANNEL_LABELS = {"phone": "Phone call", "email": "E-mail", "chat": "Live chat", "web": "Website form",
                         "store": "In a store"}
VIA_LABELS = {"phone": "Voice", "email": "Mail", "chat": "Chat", "web": "Web form", "store": "Walk-in"}
SEGMENT_LABELS = {"consumer": "Consumer", "small_business": "Small Business", "enterprise": "Enterprise"}
ATTRIBUTES = ("speed", "resolution", "knowledge", "courtesy", "ease", "value")
ATTRIBUTE_TEXT = {"speed": "Speed of service", "resolution": "Your problem was solved",
                  "knowledge": "Knowledge of the staff", "courtesy": "Courtesy of the staff",
                  "ease": "Ease of getting help", "value": "Value for money"}
SUBJECTS = ["Problème de facturation", "Lieferverzögerung bei Bestellung", "Café order not delivered",
            "Contraseña olvidada", "Invoice question", "App crashes on login", "Señal débil en casa",
            "Déménagement : changement d'adresse", "Rückerstattung angefragt", "Upgrade my plan"]
ORGANISATIONS = ["Société Exemple", "Müller & Söhne (fictional)", "Café Lumière", "Niño Imports",
                 "Ærø Trading", ""]


def _ten_point(values: pd.Series, rng: np.random.Generator) -> pd.Series:
    """A 1-5 rating written on 1-10: v -> 2v - 1 or 2v (the profile's linear rescale reads both back as v)."""
    shift = rng.integers(0, 2, len(values))
    return (2 * values - 1 + shift).where(values.notna())


def _text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: "" if pd.isna(v) else str(int(v)))


def _local(ts: pd.Series) -> pd.Series:
    return ts.dt.tz_localize("UTC").dt.tz_convert(LOCAL)


def _with_offset(ts: pd.Series, space: bool) -> pd.Series:
    local = _local(ts)
    text = local.dt.strftime("%Y-%m-%d %H:%M:%S") + (" " if space else "") + local.dt.strftime("%z")
    return text.where(ts.notna(), "")


def survey_tool(responses: pd.DataFrame, customers: pd.DataFrame, rng: np.random.Generator) -> list[list[str]]:
    r = responses.reset_index(drop=True)
    n = len(r)
    # a local answer time between 08:00 and 15:59 in Denver keeps the day the same in UTC
    seconds = rng.integers(8 * 3600, 16 * 3600, n)
    end_local = pd.to_datetime(r["response_date"]) + pd.to_timedelta(seconds, unit="s")
    duration = rng.integers(40, 900, n)
    start_local = end_local - pd.to_timedelta(duration, unit="s")
    fmt = "%Y-%m-%d %H:%M:%S"
    region = r["customer_id"].map(customers.set_index("customer_id")["region"]).fillna("")
    plans = rng.choice(["Basic", "Plus", "Pro"], n, p=[0.5, 0.35, 0.15])
    nps = r["nps"]
    group = np.select([nps >= 9, nps >= 7, nps >= 0], ["Promoter", "Passive", "Detractor"], "")
    cols: dict[str, tuple[str, str, list[str]]] = {}

    def add(name, question, import_id, values):
        cols[name] = (question, import_id, [str(v) for v in values])

    add("StartDate", "Start Date", '{"ImportId":"startDate","timeZone":"America/Denver"}', start_local.dt.strftime(fmt))
    add("EndDate", "End Date", '{"ImportId":"endDate","timeZone":"America/Denver"}', end_local.dt.strftime(fmt))
    add("Status", "Response Type", '{"ImportId":"status"}', ["IP Address"] * n)
    add("Progress", "Progress", '{"ImportId":"progress"}', ["100"] * n)
    add("Duration (in seconds)", "Duration (in seconds)", '{"ImportId":"duration"}', duration)
    add("Finished", "Finished", '{"ImportId":"finished"}', ["True"] * n)
    add("RecordedDate", "Recorded Date", '{"ImportId":"recordedDate","timeZone":"America/Denver"}',
        end_local.dt.strftime(fmt))
    add("ResponseId", "Response ID", '{"ImportId":"_recordId"}', r["response_id"])
    add("RecipientLastName", "Recipient Last Name", '{"ImportId":"recipientLastName"}', [""] * n)
    add("RecipientFirstName", "Recipient First Name", '{"ImportId":"recipientFirstName"}', [""] * n)
    add("RecipientEmail", "Recipient Email", '{"ImportId":"recipientEmail"}', [""] * n)
    add("ExternalReference", "External Data Reference", '{"ImportId":"externalDataReference"}', r["customer_id"])
    add("DistributionChannel", "Distribution Channel", '{"ImportId":"distributionChannel"}', ["email"] * n)
    add("UserLanguage", "User Language", '{"ImportId":"userLanguage"}', ["EN"] * n)
    add("Q1_Team", "Which of our teams did you deal with?", '{"ImportId":"QID1"}',
        r["department"].map(DEPARTMENT_LABELS))
    add("Q2_Channel", "How did you contact us?", '{"ImportId":"QID2"}', r["channel"].map(SURVEY_CHANNEL_LABELS))
    add("Q3_Overall", "Overall, how satisfied are you with your recent contact? (1 = very dissatisfied, "
        "10 = very satisfied)", '{"ImportId":"QID3"}', _text(_ten_point(r["csat"], rng)))
    add("Q4_NPS", "How likely are you to recommend us to a friend or colleague?", '{"ImportId":"QID4"}',
        _text(nps))
    add("Q4_NPS_GROUP", "How likely are you to recommend us to a friend or colleague? - Group",
        '{"ImportId":"QID4_NPS_GROUP"}', group)
    add("Q5_Effort", "How easy was it to get what you needed? (1 = very difficult, 7 = very easy)",
        '{"ImportId":"QID5"}', _text(8 - r["ces"]))
    for i, a in enumerate(ATTRIBUTES, 1):
        ten = _ten_point(r[f"attr_{a}"], rng)
        not_applicable = r[f"attr_{a}"].isna() & (rng.random(n) < 0.7)
        values = _text(ten).where(~not_applicable, "11")
        add(f"Q6_{i}", f"How would you rate the following? (11 = does not apply) - {ATTRIBUTE_TEXT[a]}",
            f'{{"ImportId":"QID6_{i}"}}', values)
    add("Q7_Comment", "Is there anything else you would like to tell us?", '{"ImportId":"QID7_TEXT"}',
        r["comment"].fillna(""))
    add("Region", "Region", '{"ImportId":"Region"}', region.str.title())
    add("Plan", "Plan", '{"ImportId":"Plan"}', plans)
    names = list(cols)
    rows = [names, [cols[c][0] for c in names], [cols[c][1] for c in names]]
    rows += [[cols[c][2][i] for c in names] for i in range(n)]
    return rows


def _minutes(delta: pd.Series) -> pd.Series:
    """Minutes with two decimals and a decimal comma ("12,53"), empty when there is no reply."""
    minutes = delta.dt.total_seconds() / 60
    return minutes.map(lambda m: "" if pd.isna(m) else f"{m:.2f}".replace(".", ","))


def helpdesk(tickets: pd.DataFrame, org: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    t = tickets.reset_index(drop=True)
    n = len(t)
    names = t["agent_id"].map(org.set_index("person_id")["name"]).fillna("")
    solved = t["resolved_at"].notna()
    reopens = np.where(t["reopened"].fillna(False).astype(bool), rng.integers(1, 3, n), 0)
    updated = t["resolved_at"].fillna(t["first_response_at"]).fillna(t["created_at"])
    out = {
        "Summation column": ["1"] * n,
        "Id": t["ticket_id"],
        "Requester": [f"Customer {c[-4:]}" for c in t["customer_id"]],
        "Requester id": [str(900000 + int(c[1:])) for c in t["customer_id"]],
        "Requester external id": t["customer_id"],
        "Requester email": [f"{c.lower()}@example.invalid" for c in t["customer_id"]],
        "Requester domain": ["example.invalid"] * n,
        "Submitter": [f"Customer {c[-4:]}" for c in t["customer_id"]],
        "Assignee": names,
        "Assignee external id": t["agent_id"].fillna(""),
        "Group": t["team"].fillna(""),
        "Subject": rng.choice(SUBJECTS, n),
        "Tags": rng.choice(["billing", "delivery app", "vip", ""], n),
        "Status": np.where(solved, "Solved", "Open"),
        "Priority": rng.choice(["Low", "Normal", "High", "Urgent"], n, p=[0.2, 0.6, 0.15, 0.05]),
        "Via": t["channel"].map(VIA_LABELS).fillna(""),
        "Ticket type": rng.choice(["Question", "Incident", "Problem", "Task"], n),
        "Created at": _with_offset(t["created_at"], space=True),
        "Updated at": _local(updated).dt.strftime("%Y-%m-%dT%H:%M:%S%z").str.replace(
            r"(\d\d)(\d\d)$", r"\1:\2", regex=True),
        "Assigned at": _with_offset(t["created_at"], space=True),
        "Initially assigned at": _with_offset(t["created_at"], space=True),
        "Solved at": _with_offset(t["resolved_at"], space=False),
        "Due date": [""] * n,
        "Organization": rng.choice(ORGANISATIONS, n),
        "Satisfaction Score": rng.choice(["Offered", "Not Offered", "Good", "Bad"], n),
        "Group stations": rng.integers(1, 3, n).astype(str),
        "Assignee stations": rng.integers(1, 3, n).astype(str),
        "Reopens": [str(v) if s else "" for v, s in zip(reopens, solved)],
        "Replies": rng.integers(1, 6, n).astype(str),
        "First reply time in minutes": _minutes(t["first_response_at"] - t["created_at"]),
        "First reply time in minutes within business hours": _minutes(t["first_response_at"] - t["created_at"]),
        "First resolution time in minutes": _minutes(t["resolved_at"] - t["created_at"]),
        "Full resolution time in minutes": _minutes(t["resolved_at"] - t["created_at"]),
        "Agent wait time in minutes": _minutes(t["resolved_at"] - t["created_at"]),
        "Requester wait time in minutes": [""] * n,
        "On hold time in minutes": ["0"] * n,
        "Department [txt]": t["department"],
        "Product [list]": rng.choice(["Fibre", "Mobile", "TV", "Bundle"], n),
        "Customer contacts [int]": _text(t["contacts_to_resolve"]),
        "Language": rng.choice(["English", "Français", "Español", "Deutsch"], n),
        "Brand": ["Example Télécom"] * n,
    }
    return pd.DataFrame(out)


def crm(customers: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    c = customers.reset_index(drop=True)
    n = len(c)
    us = "%m/%d/%Y"
    revenue = c["monthly_revenue"].map(lambda v: "" if pd.isna(v) else f"USD {v:,.2f}")
    activity = pd.to_datetime(c["signup_date"]) + pd.to_timedelta(rng.integers(0, 400 * 86400, n), unit="s")
    return pd.DataFrame({
        "Account ID": c["customer_id"],
        "Account Name": [f"Account {i[-4:]}" for i in c["customer_id"]],
        "Account Owner": rng.choice(["Ana Horvat", "José Núñez", "Lea Müller", "Sam Okafor"], n),
        "Customer Type": c["segment"].map(SEGMENT_LABELS),
        "Billing Region": c["region"].str.title(),
        "Plan": rng.choice(["Basic", "Plus", "Pro"], n, p=[0.5, 0.35, 0.15]),
        "Product": rng.choice(["Fibre", "Mobile", "TV", "Bundle"], n),
        "Industry": rng.choice(["Retail", "Health", "Education", "Private"], n),
        "Created Date": pd.to_datetime(c["signup_date"]).dt.strftime(us),
        "Churn Date": pd.to_datetime(c["end_date"]).dt.strftime(us).fillna(""),
        "Status": np.where(c["end_date"].notna(), "Churned", "Active"),
        "MRR": revenue,
        "Orders": c["purchases"].astype("Int64"),
        "Last Activity": activity.dt.strftime("%m/%d/%Y %I:%M %p"),
    })


def write_xlsx(frame: pd.DataFrame, path: Path) -> None:
    """An account report as a CRM writes it: a title row, a blank row, then the header and the rows (text
    cells for dates and amounts, numbers for orders)."""
    from openpyxl import Workbook
    wb = Workbook()
    ws = wb.active
    ws.title = "Accounts"
    ws.append(["Accounts report (all accounts, fictional sample)"])
    ws.append([])
    ws.append(list(frame.columns))
    for row in frame.itertuples(index=False):
        ws.append([None if (isinstance(v, str) and v == "") or v is pd.NA else
                   (int(v) if isinstance(v, (np.integer,)) else v) for v in row])
    notes = wb.create_sheet("Notes")
    notes.append(["Exported from the CRM's account report"])
    # fixed workbook metadata: the same demo gives the same bytes
    import datetime as dt
    wb.properties.created = wb.properties.modified = dt.datetime(2026, 11, 1)
    wb.properties.creator = "satisfaction kit samples"
    wb.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", help="a demo data folder (default: generate 2000 customers, seed 7)")
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(args.demo) if args.demo else Path(tmp) / "demo"
        if not args.demo:
            from helpers.demo import generate_demo
            generate_demo(demo, n_customers=2000, seed=7)
        customers = pd.read_parquet(demo / "customers.parquet")
        responses = pd.read_parquet(demo / "responses.parquet")
        tickets = pd.read_parquet(demo / "tickets.parquet")
        org = pd.read_parquet(demo / "org.parquet")
    rng = np.random.default_rng(SEED)
    chosen = np.sort(rng.choice(customers["customer_id"].to_numpy(), N_CUSTOMERS, replace=False))
    customers = customers[customers["customer_id"].isin(chosen)]
    responses = responses[responses["customer_id"].isin(chosen)]
    responses = responses.loc[np.sort(rng.choice(responses.index.to_numpy(), min(N_RESPONSES, len(responses)),
                                                 replace=False))]
    tickets = tickets[tickets["customer_id"].isin(chosen)]
    tickets = tickets.loc[np.sort(rng.choice(tickets.index.to_numpy(), min(N_TICKETS, len(tickets)),
                                             replace=False))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import csv
    with open(out / "survey_tool_responses.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\r\n").writerows(survey_tool(responses, customers, rng))
    helpdesk(tickets, org, rng).to_csv(out / "helpdesk_tickets.csv", sep=";", index=False, encoding="latin-1",
                                       lineterminator="\r\n")
    write_xlsx(crm(customers, rng), out / "crm_customers.xlsx")
    org.to_csv(out / "org.csv", index=False)
    # the demo's own values of the sampled rows, for the round-trip tests (contract format)
    truth = out / "expected"
    truth.mkdir(exist_ok=True)
    customers.to_csv(truth / "customers.csv", index=False)
    responses.to_csv(truth / "responses.csv", index=False)
    tickets.to_csv(truth / "tickets.csv", index=False)
    print(f"wrote {N_CUSTOMERS} customers, {len(responses)} responses, {len(tickets)} tickets into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
