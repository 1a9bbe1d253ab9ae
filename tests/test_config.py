"""helpers.config: params/report.yaml parsing, errors that name the file and field, path resolution."""
from __future__ import annotations

import textwrap

import pytest

from helpers.config import (ReportConfig, load_report_config, repo_root, resolve_data_source,
                            resolve_retention_file, uses_demo_data)
from helpers.errors import ParamsError


def write_yaml(tmp_path, text: str, name: str = "report.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def params_error(tmp_path, text: str) -> ParamsError:
    path = write_yaml(tmp_path, text)
    with pytest.raises(ParamsError) as info:
        load_report_config(path)
    assert str(path) in str(info.value)
    return info.value


def test_the_repository_report_yaml_loads_with_documented_defaults():
    cfg = load_report_config()
    assert cfg.data_source == "demo" and cfg.min_responses == 30 and cfg.outcome == "csat"
    assert cfg.drivers == [] and cfg.column_mapping == {}
    assert cfg.retention.start_column == "signup_date" and cfg.retention.end_column == "end_date"
    assert uses_demo_data() is True
    assert resolve_data_source(cfg) == repo_root() / "data" / "demo"


def test_every_key_of_report_yaml_is_commented():
    lines = (repo_root() / "params" / "report.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and ":" in stripped and not stripped.startswith("-"):
            assert lines[i - 1].strip().startswith("#") or "#" in line, f"undocumented key: {line!r}"


def test_full_config_with_mapping_and_retention(tmp_path):
    path = write_yaml(tmp_path, """
        company: Acme
        data_source: data/acme
        min_responses: 50
        outcome: nps
        drivers: [attr_speed, attr_price]
        column_mapping:
          tickets: {Ticket ID: ticket_id, Assignee: agent_id}
          responses: {Price rating: attr_price}
        retention:
          file: data/telco.csv
          id_column: customerID
          start_column: null
          end_column: null
          duration_column: tenure
          event_column: Churn
          churn_values: [Yes, true, 1]
          segment_column: Contract
    """)
    cfg = load_report_config(path)
    assert cfg.company == "Acme" and cfg.min_responses == 50 and cfg.outcome == "nps"
    assert cfg.column_mapping["tickets"]["Ticket ID"] == "ticket_id"
    # YAML 1.1 reads the unquoted Yes as a boolean; it still matches a 'Yes' churn column
    assert cfg.retention.churn_values == ["true", "yes", "1"]
    assert resolve_data_source(cfg) == repo_root() / "data" / "acme"
    assert resolve_retention_file(cfg) == repo_root() / "data" / "telco.csv"
    assert not uses_demo_data(path)


def test_empty_file_gives_defaults(tmp_path):
    assert load_report_config(write_yaml(tmp_path, "")) == ReportConfig()


def test_malformed_yaml_names_file_and_line(tmp_path):
    err = params_error(tmp_path, "company: Acme\ndata_source: [demo\nmin_responses: 3\n")
    assert "malformed YAML" in str(err) and "line" in str(err)


def test_not_a_mapping(tmp_path):
    assert "expected a mapping" in str(params_error(tmp_path, "- demo\n- csat\n"))


def test_unknown_key(tmp_path):
    err = params_error(tmp_path, "company: Acme\nmin_response: 30\n")
    assert err.field == "min_response" and "unknown key" in str(err) and "min_responses" in str(err)


def test_unknown_nested_key(tmp_path):
    err = params_error(tmp_path, "retention:\n  duration: tenure\n")
    assert err.field == "retention.duration" and "duration_column" in str(err)


def test_wrong_type(tmp_path):
    err = params_error(tmp_path, "min_responses: thirty\n")
    assert err.field == "min_responses" and "'thirty'" in str(err)


def test_min_responses_must_be_positive(tmp_path):
    assert params_error(tmp_path, "min_responses: 0\n").field == "min_responses"


def test_mapping_names_unknown_table(tmp_path):
    err = params_error(tmp_path, "column_mapping:\n  ticket: {Ticket ID: ticket_id}\n")
    assert err.field == "column_mapping" and "unknown table 'ticket'" in str(err)


def test_mapping_to_unknown_contract_column(tmp_path):
    err = params_error(tmp_path, "column_mapping:\n  tickets: {Ticket ID: ticket_number}\n")
    assert err.field == "column_mapping"
    assert "'Ticket ID' is mapped to 'ticket_number'" in str(err) and "ticket_id" in str(err)


def test_two_columns_mapped_to_one(tmp_path):
    err = params_error(tmp_path, "column_mapping:\n  tickets: {A: ticket_id, B: ticket_id}\n")
    assert "both mapped to 'ticket_id'" in str(err)


def test_outcome_and_drivers_must_be_ratings(tmp_path):
    assert params_error(tmp_path, "outcome: revenue\n").field == "outcome"
    assert params_error(tmp_path, "drivers: [speed]\n").field == "drivers"


def test_retention_needs_duration_or_dates(tmp_path):
    err = params_error(tmp_path, "retention:\n  start_column: null\n  duration_column: null\n")
    assert err.field == "retention" and "duration_column" in str(err)
    err = params_error(tmp_path, "retention:\n  end_column: null\n")
    assert "event_column" in str(err)


@pytest.mark.parametrize("source", ["", "https://example.com/data.parquet", "s3://bucket/cx"])
def test_data_source_must_be_a_local_path(tmp_path, source):
    assert params_error(tmp_path, f"data_source: '{source}'\n").field == "data_source"


def test_relative_path_may_not_leave_the_repository(tmp_path):
    cfg = ReportConfig(data_source="data/../../elsewhere")
    with pytest.raises(ParamsError, match="leaves the repository") as info:
        resolve_data_source(cfg)
    assert info.value.field == "data_source"
    # inside the repo after normalisation is fine; absolute paths are the user's explicit choice
    assert resolve_data_source(ReportConfig(data_source="data/x/../y")) == repo_root() / "data" / "y"
    assert resolve_data_source(ReportConfig(data_source=str(tmp_path))) == tmp_path


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_report_config(tmp_path / "nope.yaml")
    assert uses_demo_data(tmp_path / "nope.yaml") is True  # no config = the demo defaults


def test_config_path_remembers_the_file_a_config_was_read_from(tmp_path):
    """The params checks (helpers.params_check) find departments/ next to the report.yaml a run was given."""
    from helpers.config import ReportConfig, config_path, load_report_config
    (tmp_path / "report.yaml").write_text("min_responses: 5\n")
    cfg = load_report_config(tmp_path / "report.yaml")
    assert config_path(cfg) == (tmp_path / "report.yaml").resolve()
    assert config_path(ReportConfig(min_responses=5)) is None and cfg == ReportConfig(min_responses=5)
    assert config_path("report.yaml") is None
