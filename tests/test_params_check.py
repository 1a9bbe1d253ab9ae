"""Issue 12: the params must match the data, checked at --dry-run (before anything runs), all mismatches at once."""
from __future__ import annotations

import shutil

import pytest
import yaml

from helpers.config import load_report_config
from helpers.params_check import ParamsMismatchError, check_params, check_params_for_run
from helpers.reports.__main__ import main as cli_main
from tests.reports_support import REPO, department_doc, write_params
from tests.test_data import load_quiet, valid_tables, write


def other_company(folder):
    """Valid tables of a company whose departments are not the demo's."""
    tables = valid_tables(8)
    for name in ("responses", "tickets", "org"):
        tables[name]["department"] = tables[name]["department"].map({"Sales": "Support", "Billing": "Onboarding"})
    return write(folder, tables=tables)


def demo_params(tmp_path):
    params = tmp_path / "params"
    shutil.copytree(REPO / "params", params)
    return params


def dry_run(params, data, tmp_path, capsys) -> tuple[int, str]:
    code = cli_main(["run", "--params", str(params), "--data", str(data), "--out", str(tmp_path / "out"), "--dry-run"])
    return code, capsys.readouterr().err


def test_the_demo_params_against_other_data_stop_at_dry_run(tmp_path, capsys):
    """Before: the demo's objectives were scored against the user's data and reports were produced for
    departments that do not exist, with exit 0."""
    code, err = dry_run(demo_params(tmp_path), other_company(tmp_path / "data"), tmp_path, capsys)
    assert code == 2, err
    assert ("none of the 6 departments in params/departments/ occur in the data: these params were written for "
            "other data. The data's departments are 'Onboarding', 'Support'") in err
    for f in ("billing", "customer_service", "delivery", "marketing", "sales", "technical_support"):
        assert f"departments/{f}.yaml: field 'department':" in err
    assert "dry run: params" not in err and not (tmp_path / "out").exists()


def test_a_real_run_with_params_for_other_data_stops_before_anything_runs(tmp_path):
    params = demo_params(tmp_path)
    ds = load_quiet(other_company(tmp_path / "data"))
    with pytest.raises(ParamsMismatchError, match="these params were written for other data"):
        check_params_for_run(load_report_config(params / "report.yaml"), ds, dry_run=False)


def test_one_department_not_in_the_data_is_an_error_at_dry_run_only(tmp_path):
    params = write_params(tmp_path, {"sales": "Sales", "ghost": "Ghost Team"})
    cfg = load_report_config(params / "report.yaml")
    ds = load_quiet(write(tmp_path / "data"))
    with pytest.raises(ParamsMismatchError) as info:
        check_params_for_run(cfg, ds, dry_run=True)
    [problem] = info.value.problems
    assert problem.file.endswith("ghost.yaml") and problem.field == "department"
    assert "'Ghost Team' is not a department in the data; the departments in the data are 'Billing', 'Sales'" \
        in str(info.value)
    # in a run, that department gets its own failure page (the runner's); the other reports run
    assert check_params_for_run(cfg, ds, dry_run=False) == []
    # a config built in code has no params folder: nothing to check
    from helpers.config import ReportConfig
    assert check_params_for_run(ReportConfig(), ds, dry_run=True) == []


def test_a_wrong_event_column_fails_dry_run(tmp_path, capsys):
    """Before: a wrong event_column passed --dry-run; the run exited 0 and the error appeared inside a report."""
    params = write_params(tmp_path, {"sales": "Sales", "billing": "Billing"})
    cfg = yaml.safe_load((params / "report.yaml").read_text())
    cfg["retention"]["event_column"] = "Churned"
    cfg["retention"]["segment_column"] = "Plan"
    (params / "report.yaml").write_text(yaml.safe_dump(cfg))
    code, err = dry_run(params, write(tmp_path / "data"), tmp_path, capsys)
    assert code == 2, err
    assert "2 problems: the params do not match the data" in err
    assert "report.yaml: field 'retention.event_column': 'Churned' is not a column of" in err
    assert "report.yaml: field 'retention.segment_column': 'Plan' is not a column of" in err
    assert "'customer_id', 'signup_date', 'end_date', 'segment'" in err


def test_retention_file_columns_are_checked_without_running_anything(tmp_path):
    export = tmp_path / "telco.csv"
    export.write_text("customerID,tenure,Churn\n7590-VHVEG,1,No\n5575-GNVDE,34,No\n3668-QPYBK,2,Yes\n")
    params = write_params(tmp_path, {"sales": "Sales"})
    cfg = yaml.safe_load((params / "report.yaml").read_text())
    cfg["retention"] = {"file": str(export), "id_column": "customerID", "start_column": None, "end_column": None,
                        "duration_column": "tenure", "event_column": "churn", "churn_values": ["yes"],
                        "segment_column": None}
    (params / "report.yaml").write_text(yaml.safe_dump(cfg))
    ds = load_quiet(write(tmp_path / "data"))
    check = check_params(ds, load_report_config(params / "report.yaml"))
    assert [(p.field, p.file.endswith("report.yaml")) for p in check.problems] == [("retention.event_column", True)]
    assert "'churn' is not a column of" in check.problems[0].message and "'Churn'" in check.problems[0].message


def test_survey_only_data_rejects_objectives_on_missing_tables_with_the_reason(tmp_path):
    params = write_params(tmp_path, {"sales": "Sales"})
    doc = department_doc("Sales", "sales")
    doc["objectives"] += [
        {"id": "fcr", "title": "Resolve at first contact", "metric": "fcr", "baseline": 70.0, "target": 75.0,
         "start": "2026-01-01", "deadline": "2026-12-31", "owner": {"name": "Jo", "role": "manager"}},
        {"id": "keep", "title": "Keep customers", "metric": "retention_rate", "baseline": 80.0, "target": 85.0,
         "start": "2026-01-01", "deadline": "2026-12-31", "owner": {"name": "Jo", "role": "manager"}},
        {"id": "ent", "title": "Enterprise CSAT", "metric": "csat", "filters": {"segment": "enterprise"},
         "baseline": 70.0, "target": 75.0, "start": "2026-01-01", "deadline": "2026-12-31",
         "owner": {"name": "Jo", "role": "manager"}}]
    (params / "departments" / "sales.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    ds = load_quiet(write(tmp_path / "data", tables={"responses": valid_tables(8)["responses"]}), min_responses=1)
    check = check_params(ds, load_report_config(params / "report.yaml"))
    texts = [p.text() for p in check.problems]
    assert len(texts) == 3
    assert texts[2].endswith("objective 'ent', field 'filters.segment': 'csat' by 'segment' needs the customers "
                             "table (segment comes from it): add customers.csv or drop the filter")
    assert texts[0].endswith("sales.yaml: objective 'fcr', field 'metric': 'fcr' cannot be computed on this data: "
                             "First-contact resolution needs the tickets table (one row per ticket): add tickets.csv")
    assert "objective 'keep'" in texts[1] and "Retention rate needs the customers table" in texts[1]
    # the csat objective is fine; retention settings at their defaults are a warning, not an error
    assert [w.field for w in check.warnings] == ["retention"]
    assert "Retention needs the customers table" in check.warnings[0].message


def test_outcome_drivers_and_filters_the_data_cannot_serve(tmp_path):
    params = write_params(tmp_path, {"sales": "Sales"})
    doc = department_doc("Sales", "sales")
    doc["objectives"].append({"id": "team", "title": "Front desk FCR", "metric": "fcr", "filters": {"team": "A"},
                              "baseline": 70.0, "target": 75.0, "start": "2026-01-01", "deadline": "2026-12-31",
                              "owner": {"name": "Jo", "role": "manager"}})
    (params / "departments" / "sales.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    cfg = yaml.safe_load((params / "report.yaml").read_text())
    cfg.update(outcome="nps", drivers=["attr_speed", "attr_price"])
    (params / "report.yaml").write_text(yaml.safe_dump(cfg))
    ds = load_quiet(write(tmp_path / "data", responses=lambda df: df.drop(columns=["nps"]),
                          tickets=lambda df: df.drop(columns=["team"])), min_responses=1)
    problems = {p.field: p.text() for p in check_params(ds, load_report_config(params / "report.yaml")).problems}
    assert set(problems) == {"filters.team", "outcome", "drivers"}
    assert "the tickets data has no 'team' column to filter 'fcr' by" in problems["filters.team"]
    assert "'nps' is not a rating the responses have" in problems["outcome"]
    assert "'attr_price' not in the responses" in problems["drivers"]


def test_dry_run_prints_every_data_problem_at_once(tmp_path, capsys):
    """Before: one error per run, so 17 dry-runs of hand fixes before anything loaded."""
    def responses(df):
        df["csat"] = [7, 10, 6, 9, 8, 7, 6, 10]
        df["response_date"] = ["03/14/2024"] * 8
        return df
    data = write(tmp_path / "data", tables=valid_tables(8), responses=responses,
                 org=lambda df: df.assign(role=["director", "boss", "representative", "director", "agent"]))
    code, err = dry_run(write_params(tmp_path, {"sales": "Sales"}), data, tmp_path, capsys)
    assert code == 2
    assert "3 problems in the data (org, responses); all of them:" in err
    assert "column 'response_date' has values of the wrong type ('03/14/2024') in 8 rows" in err
    assert "is this a 1-10 scale? set `scale: [1, 10]`" in err
    assert "column 'role' has values not allowed ('agent', 'boss') in 2 rows e.g. 'sales-mgr1', 'billing-rep001'" in err


def test_objective_filters_naming_a_missing_column_or_value_fail_dry_run_all_at_once(tmp_path, capsys):
    """Issue 17: an objective filtered by a column the KPI's table and the customers lack, or by a value that occurs
    nowhere in the department, passed --dry-run and failed (or came out empty) in the run. Checked with
    helpers.selection's rules: aliases (agent -> agent_id), values by case or slug, customer columns joined."""
    params = write_params(tmp_path, {"sales": "Sales"})
    doc = department_doc("Sales", "sales")
    common = {"baseline": 70.0, "target": 75.0, "start": "2026-01-01", "deadline": "2026-12-31"}
    doc["objectives"] += [{**o, "owner": {"name": "Jo", "role": "manager"}} for o in [
        # fine: a customer column, a value by case, the agent alias, a team by slug
        {"id": "ok-seg", "title": "Enterprise CSAT", "metric": "csat", "filters": {"segment": "Enterprise"}, **common},
        {"id": "ok-agent", "title": "Agent FCR", "metric": "fcr", "filters": {"agent": "SALES-REP001", "team": "a"},
         **common},
        # a bad value of a customer column (two bad values in one list: both named)
        {"id": "bad-seg", "title": "Big CSAT", "metric": "csat",
         "filters": {"segment": ["enterprise", "Giant", "Huge"]}, **common},
        # a bad column: survey answers have no team, and customers have none either
        {"id": "bad-col", "title": "Team CSAT", "metric": "csat", "filters": {"team": "A"}, **common},
        # a team that exists, but in another department (Billing's team B)
        {"id": "bad-team", "title": "Team B FCR", "metric": "fcr", "filters": {"team": "B"}, **common}]]
    (params / "departments" / "sales.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    data = write(tmp_path / "data")
    check = check_params(load_quiet(data, min_responses=1), load_report_config(params / "report.yaml"))
    errors = {(p.objective, p.field): p.message for p in check.problems}
    warned = {(p.objective, p.field): p.message for p in check.warnings}
    # a column the data cannot filter by is an error; a value with no rows (a typo, or a team that has not
    # worked yet) is a warning: that objective has no data, the others still run
    assert set(errors) == {("bad-col", "filters.team")}
    assert {("bad-seg", "filters.segment"), ("bad-team", "filters.team")} <= set(warned)
    assert warned["bad-seg", "filters.segment"].startswith("segment='Giant', 'Huge' matches no rows of Sales's "
                                                           "responses (the objective will have no data")
    # the values of the department's own answers (Sales' respondents are C1 and C2)
    assert warned["bad-seg", "filters.segment"].endswith("segment has the values 'consumer', 'enterprise' (names "
                                                         "match exactly, by case or by slug)")
    assert errors["bad-col", "filters.team"].startswith("'csat' is computed from responses, which has no column "
                                                         "'team' to filter by; its columns are 'response_id'")
    assert "the customers' 'signup_date', 'end_date', 'segment', 'region'" in errors["bad-col", "filters.team"]
    assert warned["bad-team", "filters.team"].startswith("team='B' matches no rows of Sales's tickets")
    assert warned["bad-team", "filters.team"].endswith("team has the values 'A' (names match exactly, by case or "
                                                       "by slug)")
    # the dry run stops on the error, naming file, objective and field, and shows the warnings too
    code, err = dry_run(params, data, tmp_path, capsys)
    assert code == 2, err
    assert "sales.yaml: objective 'bad-col', field 'filters.team':" in err
    assert not (tmp_path / "out").exists()
