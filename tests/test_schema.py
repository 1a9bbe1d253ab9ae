"""helpers.schema: the contract is consistent, and data/README.md shows it as it is in code."""
from __future__ import annotations

import subprocess
import sys

import pytest

from helpers.config import repo_root
from helpers.schema import (BEGIN_MARKER, END_MARKER, ROLES, TABLES, attribute_column, contract_markdown,
                            with_contract_tables)

README = repo_root() / "data" / "README.md"


def test_data_readme_is_in_sync_with_schema():
    text = README.read_text(encoding="utf-8")
    assert text == with_contract_tables(text), (
        "data/README.md is out of date: run `python -m helpers.schema --write data/README.md`")


def test_readme_documents_every_column_with_its_rule():
    generated = README.read_text(encoding="utf-8").split(BEGIN_MARKER)[1].split(END_MARKER)[0]
    for table in TABLES.values():
        assert f"### `{table.name}`" in generated
        for c in table.columns:
            row = next(line for line in generated.splitlines() if line.startswith(f"| `{c.name}` |")
                       and c.description.replace("|", "/") in line)
            assert f"| {c.dtype} |" in row and ("| no |" if not c.nullable else "| yes |") in row
    assert "| `nps` | integer | 0-10 |" in generated and "| `csat` | integer | 1-5 |" in generated
    assert ", ".join(ROLES) in generated


def test_schema_module_prints_the_tables():
    out = subprocess.run([sys.executable, "-m", "helpers.schema"], capture_output=True, text=True, check=True)
    assert out.stdout == contract_markdown()


def test_with_contract_tables_replaces_only_between_markers():
    text = f"intro\n{BEGIN_MARKER}\nstale\n{END_MARKER}\noutro\n"
    new = with_contract_tables(text)
    assert new.startswith(f"intro\n{BEGIN_MARKER}") and new.endswith(f"{END_MARKER}\noutro\n")
    assert "stale" not in new and "### `tickets`" in new
    with pytest.raises(ValueError, match="markers not found"):
        with_contract_tables("no markers")


def test_contract_is_consistent():
    for table in TABLES.values():
        names = table.column_names
        assert len(set(names)) == len(names)
        key = table.column(table.key)
        assert key.unique and not key.nullable
        for earlier, later in table.ordered:
            assert {table.column(earlier).dtype, table.column(later).dtype} <= {"date", "timestamp"}
        for c in table.columns:
            if c.references:
                parent, col = c.references.split(".")
                assert TABLES[parent].column(col).unique


def test_attribute_columns_only_where_allowed():
    extra = attribute_column(TABLES["responses"], "attr_price")
    assert extra is not None and (extra.min, extra.max, extra.dtype) == (1, 5, "integer")
    assert attribute_column(TABLES["responses"], "attr_") is None
    assert attribute_column(TABLES["customers"], "attr_price") is None


def test_dated_tables_name_a_date_column_and_its_later_events():
    dated = {t.name: (t.dated_by, t.later_dates) for t in TABLES.values() if t.dated_by}
    assert dated == {"customers": ("signup_date", ("end_date",)), "responses": ("response_date", ()),
                     "tickets": ("created_at", ("first_response_at", "resolved_at"))}
    for name, (column, later) in dated.items():
        for c in (column, *later):
            assert TABLES[name].column(c).dtype in ("date", "timestamp")
        assert not TABLES[name].column(column).nullable
    assert "Dated by `created_at`" in contract_markdown()


def test_only_responses_is_required_and_the_readme_says_which_tables_are_optional():
    """Issue 12: a survey-only start (customers, tickets and org optional)."""
    from helpers.data import REQUIRED_TABLES
    assert [t.name for t in TABLES.values() if t.required] == ["responses"] == list(REQUIRED_TABLES)
    generated = contract_markdown()
    for name in ("customers", "tickets", "org"):
        section = generated.split(f"### `{name}`")[1].split("###")[0]
        assert "Optional: without this file the table is absent" in section
    assert "**Required.**" in generated.split("### `responses`")[1].split("###")[0]
