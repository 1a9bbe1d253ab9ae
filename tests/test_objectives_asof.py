"""Issue 10 / 16 item 1: any as-of date (inside, before or after the data) gives a verdict for every
objective, never a crash; the default as-of is the last day of the last complete month in the data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.data import load_dataset
from helpers.objectives import evaluate_objectives, load_department, parse_objectives
from helpers.objectives_report import prepare_department_report
from helpers.objectives_status import STATUSES

ROOT = Path(__file__).resolve().parents[1]
DEPARTMENTS = sorted(p.stem for p in (ROOT / "params" / "departments").glob("*.yaml"))


@pytest.fixture(scope="module")
def demo(small_demo):
    return load_dataset(small_demo, emit_warnings=False)


@pytest.mark.parametrize("as_of", [None, "2027-01-31", "2099-01-01", "2023-12-15", "2024-06-30", "2026-10-31"])
def test_every_department_gets_a_verdict_for_any_as_of(demo, as_of):
    """Regression: ``KeyError: 'missed'`` (objectives._sentence) for the default as-of on Sales and for every
    as-of after the data."""
    for slug in DEPARTMENTS:
        plan = load_department(slug, ROOT / "params" / "departments")
        ev = evaluate_objectives(plan, demo, as_of)
        assert len(ev.table) == len(plan.objectives)
        assert set(ev.table["status"]) <= set(STATUSES), slug
        assert all(isinstance(s, str) and s for s in ev.table["sentence"]), slug


def test_after_the_data_an_unobserved_deadline_is_no_data_not_a_verdict(demo):
    plan = load_department("sales", ROOT / "params" / "departments")
    ev = evaluate_objectives(plan, demo, "2099-01-01")
    row = ev.row("sales-nps")  # deadline 2026-12-31; the demo ends 2026-10-31
    assert row["status"] == "no data"
    assert "deadline" in row["message"] and "2026-12-31" in row["message"]


def test_default_as_of_is_the_last_complete_month(demo):
    last = demo.date_range()[1]
    assert last == pd.Timestamp("2026-10-31")
    ev = evaluate_objectives(load_department("sales", ROOT / "params" / "departments"), demo)
    assert ev.as_of == pd.Timestamp("2026-10-31")


class _PartialMonthData:
    """A data set whose last row is on 15 December: December is only half observed."""

    org = None
    departments = None

    @staticmethod
    def date_range():
        return pd.Timestamp("2024-11-01"), pd.Timestamp("2026-12-15")


def test_default_as_of_does_not_count_a_half_observed_quarter_as_finished():
    """The old default took the end of the last (partly observed) period as the as-of date, so a deadline
    on 31 December counted as passed in mid-December; now the as-of is 30 November, the deadline is open."""
    doc = {"department": "Support", "objectives": [
        {"id": "q4", "title": "FCR 70% in Q4", "metric": "fcr", "frequency": "quarter", "baseline": 60,
         "target": 70, "start": "2026-01-01", "deadline": "2026-12-31", "owner": {"name": "Jo", "role": "director"}}]}
    plan = parse_objectives(doc, "support.yaml")
    periods = pd.date_range("2024-10-01", "2026-10-01", freq="QS")
    v = np.linspace(60, 66, len(periods))

    def provider(metric, filters, start, end, freq):
        return pd.DataFrame({"period": periods, "value": v, "ci_low": v - 1, "ci_high": v + 1, "n": 300})

    ev = evaluate_objectives(plan, _PartialMonthData(), series_provider=provider)
    assert ev.as_of == pd.Timestamp("2026-11-30")
    assert ev.row("q4")["status"] not in ("missed", "achieved")


def test_department_report_states_its_default_as_of(small_demo):
    report = prepare_department_report("sales", data_source=str(small_demo))
    assert report.as_of == pd.Timestamp("2026-10-31")
    head = report.headline_markdown()
    assert "last complete month" in head and "31 October 2026" in head
    assert sum(report.status_counts().values()) == 5
