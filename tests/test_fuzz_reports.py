"""Fuzz harness: hostile but contract-valid data and params never crash a report with an internal error.

Each report notebook (department, satisfaction drivers, retention forecast) is replayed in-process
(``fuzz_support.run_notebook``: the notebook's own code cells, parameters injected after its parameters cell,
figures drawn on Agg) on data built by ``fuzz_support.DataSpec``: future-dated rows and signups, constant,
all-missing and skewed ratings, 6 to 20 attributes, a department with one response, months without data, a
short history, the whole data set years back or after today, no or full churn, one segment, one cohort, no
revenue, unresolved or instant tickets, hostile names. Params are drawn by Hypothesis: objectives with
deadlines anywhere and targets at the metric's bounds, report settings, as-of dates anywhere in and around
the data. The data go through the runner's own load-and-snapshot step (``runner.prepare_data``) first, as in
a real run, which must accept them.

Every example must either complete or raise a kit error (``helpers.errors.KitError``) with a readable
message; anything else (a KeyError, a bare ValueError from pandas/numpy, an IndexError, a matplotlib error)
fails with Hypothesis' smallest failing input. Seeded (``derandomize=True``) and bounded in examples.
The ``@example`` cases are the crashes found by hand (issue 16) and by this harness.

One end-to-end test runs the real runner CLI on fixed hostile data sets (``-k runner``).
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fuzz_support import (BASE_SEEDS, DEPARTMENTS, HOSTILE_DEPARTMENT, DataSpec, ObjectiveSpec, ReportSettings,
                          as_of_dates, base_date_range, build_tables, data_specs, department_document, must_load,
                          objective_specs, report_settings, run_notebook, strict_and_small, write_data)
from helpers.errors import KitError

FUZZ = settings(max_examples=20, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
SMALL_BOOT = 10
MAX_DRIVERS = 20
FIRST, LAST = (f"{d:%Y-%m-%d}" for d in base_date_range(BASE_SEEDS[0]))


def assert_clear_kit_error(exc: BaseException) -> None:
    """A kit error whose message reads as a sentence (not a bare key, not a traceback, not a megabyte)."""
    assert isinstance(exc, KitError), f"{type(exc).__name__} is not a kit error: {exc}"
    message = str(exc)
    assert len(message.split()) >= 4, f"kit error message too terse to act on: {message!r}"
    assert len(message) <= 5000, f"kit error message of {len(message)} characters"
    assert "Traceback (most recent call last)" not in message


def renders_or_kit_error(step) -> object:
    """Run ``step()``; a kit error is an accepted outcome (checked for a clear message), anything else fails."""
    try:
        return step()
    except KitError as exc:
        assert_clear_kit_error(exc)
        return None


INTERNAL_ERROR_NAMES = re.compile(r"\b(KeyError|IndexError|TypeError|AttributeError|ZeroDivisionError|LinAlgError|"
                                  r"NameError|AssertionError|RuntimeError|UnboundLocalError|OverflowError)\b")


def assert_no_internal_error_in(texts) -> None:
    """Messages a report shows (warnings, problems, "no analysis because ...") must not be a swallowed
    internal exception (``f"... ({type(exc).__name__}: {exc})"``)."""
    for text in texts:
        assert not INTERNAL_ERROR_NAMES.search(str(text)), f"internal error shown as a message: {text}"


def shown_messages(report_name: str, namespace: dict | None) -> list[str]:
    """The texts a finished report shows about what it could not do."""
    if namespace is None:
        return []
    report = namespace["report"]
    if report_name == "department_report":
        texts = [*report.all_warnings(), namespace.get("driver_message", ""), namespace.get("survival_message", "")]
        if report.evaluation is not None:
            texts += list(report.evaluation.table["message"])
        return texts
    return list(report.warnings)


class Run:
    """One example's run folder: the hostile data, loaded and snapshotted as the runner does, and params."""

    def __init__(self, root: Path, data: DataSpec, report: ReportSettings):
        from helpers.config import load_report_config
        from helpers.reports.runner import prepare_data

        self.root = root
        self.config = report.write(root / "params")
        cfg = load_report_config(self.config)
        source = write_data(data, root / "data")
        run_dir = root / "run"
        run_dir.mkdir()
        # contract-valid data: the runner must accept them (rows after the as-of are findings), unless a table
        # has no row before the default as-of (all in the future: a clear kit error, the runner's exit 2)
        try:
            self.snapshot = prepare_data(str(source), cfg, run_dir).snapshot
        except KitError as exc:
            if must_load(build_tables(data)):
                raise AssertionError(f"contract-valid data refused at load: {exc}") from exc
            assert_clear_kit_error(exc)
            self.snapshot = None

    def common(self, as_of: str) -> dict:
        return {"data_source": self.snapshot, "report_config": str(self.config), "as_of": as_of,
                "run_id": "fuzz", "summary_path": str(self.root / "run" / "summary.json")}


def run_department(data: DataSpec, department: str, objectives: tuple[ObjectiveSpec, ...],
                   report: ReportSettings, as_of: str) -> dict | None:
    with tempfile.TemporaryDirectory(prefix="fuzz-department-") as tmp:
        run = Run(Path(tmp), data, report)
        if run.snapshot is None:
            return None
        slug = department.lower().replace(" ", "_")
        name = HOSTILE_DEPARTMENT if data.renamed and department == "Billing" else department
        params_file = Path(tmp) / "params" / "departments" / f"{slug}.yaml"
        params_file.parent.mkdir(parents=True)
        params_file.write_text(yaml.safe_dump(department_document(name, objectives, slug), sort_keys=False))
        with strict_and_small(SMALL_BOOT):
            namespace = renders_or_kit_error(lambda: run_notebook("department_report", dict(
                run.common(as_of), department=slug, params_file=str(params_file))))
        assert_no_internal_error_in(shown_messages("department_report", namespace))
        return namespace


def run_drivers(data: DataSpec, report: ReportSettings, notebook: dict, as_of: str) -> dict | None:
    with tempfile.TemporaryDirectory(prefix="fuzz-drivers-") as tmp:
        run = Run(Path(tmp), data, report)
        if run.snapshot is None:
            return None
        with strict_and_small(SMALL_BOOT):
            namespace = renders_or_kit_error(lambda: run_notebook("satisfaction_drivers",
                                                                  dict(run.common(as_of), **notebook)))
        assert_no_internal_error_in(shown_messages("satisfaction_drivers", namespace))
        return namespace


def run_retention(data: DataSpec, notebook: dict, as_of: str) -> dict | None:
    with tempfile.TemporaryDirectory(prefix="fuzz-retention-") as tmp:
        run = Run(Path(tmp), data, ReportSettings())
        if run.snapshot is None:
            return None
        with strict_and_small(SMALL_BOOT):
            namespace = renders_or_kit_error(lambda: run_notebook("retention_forecast",
                                                                  dict(run.common(as_of), **notebook)))
        assert_no_internal_error_in(shown_messages("retention_forecast", namespace))
        return namespace


# ------------------------------------------------------------------------------------------------ department

DEFAULT_OBJECTIVES = (ObjectiveSpec("csat", target=85.0, baseline=70.0),
                      ObjectiveSpec("first_response_hours", target=10.0, baseline=20.0, parent=True),
                      ObjectiveSpec("retention_rate", target=95.0, baseline=(FIRST, LAST), frequency="quarter"))


@FUZZ
@given(data=data_specs(max_drivers=MAX_DRIVERS), department=st.sampled_from((*DEPARTMENTS, "Ghost Department")),
       objectives=st.lists(objective_specs(), min_size=1, max_size=4).map(tuple), report=report_settings(),
       as_of=as_of_dates())
@example(data=DataSpec(future_responses=3, future_days=27_000), department="Billing",
         objectives=DEFAULT_OBJECTIVES, report=ReportSettings(), as_of="")  # issue 16 item 1
@example(data=DataSpec(), department="Sales", objectives=DEFAULT_OBJECTIVES, report=ReportSettings(),
         as_of="2027-01-31")  # issue 16 item 1: as-of after the data
@example(data=DataSpec(thin_department="Delivery", future_tickets=1), department="Delivery",
         objectives=DEFAULT_OBJECTIVES, report=ReportSettings(min_responses=1), as_of="")
@example(data=DataSpec(n_drivers=10), department="Customer Service", objectives=DEFAULT_OBJECTIVES,
         report=ReportSettings(), as_of=LAST)  # issue 16 item 2: noise attributes
@example(data=DataSpec(shift_years=2, history_days=45), department="Sales", objectives=DEFAULT_OBJECTIVES,
         report=ReportSettings(), as_of="")  # every row after today: refused at load with a clear kit error
@example(data=DataSpec(), department="Sales", objectives=DEFAULT_OBJECTIVES, report=ReportSettings(),
         as_of="2026-02-30")  # fuzz F7: an as-of that is not a date (a notebook run directly)
@example(data=DataSpec(constant=("csat",)), department="Billing",
         objectives=(ObjectiveSpec("csat", target=100, baseline=("2024-01-01", "2024-01-01"), start="2024-01-01",
                                   deadline="2024-01-02"),),
         report=ReportSettings(min_responses=1), as_of="")  # fuzz F9: calibration table KeyError 'predicted'
def test_department_report_renders_or_fails_with_a_kit_error(data, department, objectives, report, as_of):
    run_department(data, department, objectives, report, as_of)


# ------------------------------------------------------------------------------------------------ drivers

def _drivers_notebook_params():
    period = st.just("") | st.just("") | st.integers(-60, 1200).map(
        lambda d: f"{pd.Timestamp(FIRST) + pd.Timedelta(days=d):%Y-%m-%d}")
    return st.fixed_dictionaries({
        "department": st.sampled_from(("all", "all", "Billing", "technical_support", "Marketing", "Ghost")),
        "outcome": st.sampled_from(("", "csat", "nps")),
        "period_start": period,
        "period_end": period,
        "n_boot": st.sampled_from((SMALL_BOOT, SMALL_BOOT, SMALL_BOOT, 1)),
    })


@FUZZ
@given(data=data_specs(max_drivers=MAX_DRIVERS), report=report_settings(), notebook=_drivers_notebook_params(),
       as_of=as_of_dates())
@example(data=DataSpec(n_drivers=10), report=ReportSettings(),
         notebook={"department": "all", "outcome": "", "period_start": "", "period_end": "", "n_boot": SMALL_BOOT},
         as_of="")  # issue 16 item 2: negative xerr with noise attributes
@example(data=DataSpec(future_responses=3, future_days=27_000, all_missing=("attr_speed",)),
         report=ReportSettings(),
         notebook={"department": "Billing", "outcome": "csat", "period_start": "", "period_end": "",
                   "n_boot": SMALL_BOOT}, as_of="")
@example(data=DataSpec(), report=ReportSettings(),
         notebook={"department": "all", "outcome": "", "period_start": "", "period_end": "2025-01-01",
                   "n_boot": SMALL_BOOT}, as_of="soon")  # fuzz F8: as_of not a date while period_end is set
def test_drivers_report_renders_or_fails_with_a_kit_error(data, report, notebook, as_of):
    run_drivers(data, report, notebook, as_of)


# ------------------------------------------------------------------------------------------------ retention

def _retention_notebook_params():
    return st.fixed_dictionaries({
        "segment": st.sampled_from(("all", "all", "consumer", "enterprise", "no such segment")),
        "horizon": st.integers(1, 36),
        "holdout": st.integers(1, 14),
        "discount_rate": st.sampled_from((0.1, 0.1, 0.99, 0.0)),
    })


@FUZZ
@given(data=data_specs(max_drivers=MAX_DRIVERS), notebook=_retention_notebook_params(), as_of=as_of_dates())
@example(data=DataSpec(), notebook={"segment": "all", "horizon": 12, "holdout": 6, "discount_rate": 0.1},
         as_of="2023-12-15")  # issue 16 item 1: KeyError 'at_risk' for an early as-of
@example(data=DataSpec(future_responses=3, future_tickets=1, future_days=27_000, churn="none"),
         notebook={"segment": "all", "horizon": 12, "holdout": 6, "discount_rate": 0.1}, as_of="")
@example(data=DataSpec(seed=11, churn="none"),
         notebook={"segment": "consumer", "horizon": 28, "holdout": 13, "discount_rate": 0.1},
         as_of="2024-09-07")  # fuzz F1: log-rank LinAlgError when nobody churned
@example(data=DataSpec(thin_department="Customer Service", gap=(5, 4), one_segment=True),
         notebook={"segment": "consumer", "horizon": 35, "holdout": 12, "discount_rate": 0.1},
         as_of="2023-12-27")  # fuzz F5: Cox model on a one-level segment, KeyError 'covariate'
@example(data=DataSpec(), notebook={"segment": "all", "horizon": 1, "holdout": 1, "discount_rate": 0.1},
         as_of="2024-07-20")  # fuzz F6: no sBG fit for all customers, KeyError 'all' in the summary
def test_retention_report_renders_or_fails_with_a_kit_error(data, notebook, as_of):
    run_retention(data, notebook, as_of)


# ------------------------------------------------------------------------------------------------ runner

def kit_error_names() -> set[str]:
    """Names of every kit error class (``KitError`` and its subclasses in the kit's modules)."""
    import importlib
    import pkgutil

    import helpers

    for module in pkgutil.walk_packages(helpers.__path__, "helpers."):
        if module.name.split(".")[-1] not in ("__main__", "demo_text"):
            importlib.import_module(module.name)
    names, todo = set(), [KitError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


HOSTILE_RUNS = {  # name: (data, --only department, --as-of or None); each run takes about a minute
    "future_dates_and_a_single_response_department": (
        DataSpec(future_responses=3, future_tickets=1, future_days=27_000, thin_department="Delivery"), "delivery",
        None),
    "as_of_after_the_data_noise_attributes_no_churn": (
        DataSpec(n_drivers=10, churn="none"), "sales", f"{pd.Timestamp(LAST) + pd.Timedelta(days=75):%Y-%m-%d}"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(HOSTILE_RUNS))
def test_runner_on_hostile_data_renders_every_page_or_names_a_kit_error(case, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from reports_support import REPO

    data, department, as_of = HOSTILE_RUNS[case]
    source = write_data(data, tmp_path / "data")
    out = tmp_path / "reports"
    cmd = [sys.executable, "-m", "helpers.reports", "run", "--params", str(REPO / "params"), "--data", str(source),
           "--out", str(out), "--only", department, "--workers", "2"] + (["--as-of", as_of] if as_of else [])
    env = {k: v for k, v in os.environ.items() if k != "SATISFACTION_KIT_DATA"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode in (0, 1), f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    run_dir = out / "latest"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    reports = {r["name"]: r for r in manifest["reports"]}
    from helpers.reports.registry import reports as registered
    expected = {f"{spec.name}_{department}" if spec.kind == "department" else spec.name for spec in registered()}
    assert set(reports) == expected  # every registered report ran (none skipped)
    kit_errors = kit_error_names()
    for name, report in reports.items():
        page = (run_dir / report["html"]).read_text()
        if report["status"] == "ok":
            assert "Report failed" not in page
            continue
        error = report.get("error") or {}
        assert error.get("name") in kit_errors, (
            f"{case}: {name} failed with an internal error {error.get('name')}: {error.get('message')}")
        assert error["name"] in page


# ------------------------------------------------------------------------------------------------ regressions
# Focused tests for the small bugs the harness found and this module's author fixed (fuzz findings F3, F7, F8).

def test_department_report_as_of_that_is_not_a_date_is_a_params_error():  # F7: was a pandas DateParseError
    from helpers.errors import ParamsError
    from helpers.objectives_report import prepare_department_report

    for bad in ("2026-02-30", "soon"):
        with pytest.raises(ParamsError, match="not an ISO date") as caught:
            prepare_department_report("sales", as_of=bad)
        assert repr(bad) in str(caught.value)


def test_drivers_report_as_of_that_is_not_a_date_is_a_warning(tmp_path):  # F8: was a pandas DateParseError
    from helpers.drivers_report import prepare_drivers_report

    run = Run(tmp_path, DataSpec(), ReportSettings())
    for period_end, as_of in (("2025-01-01", "soon"), ("soon", "2025-01-01")):
        report = prepare_drivers_report(period_end=period_end, as_of=as_of, n_boot=0, data_source=run.snapshot,
                                        report_config=str(run.config))
        assert report.main is None
        assert any("'soon'" in w and "not an ISO date" in w for w in report.warnings), report.warnings


def test_too_few_bootstrap_draws_are_refused_with_that_reason():  # F3: said "only 5 of 5 ... gave a usable model"
    from fuzz_support import STANDARD_ATTRIBUTES, build_tables
    from helpers.drivers import DriverInputError
    from helpers.drivers_analysis import analyze_drivers

    responses = build_tables(DataSpec())["responses"]
    with pytest.raises(DriverInputError, match="at least 10") as caught:
        analyze_drivers(responses, "csat", list(STANDARD_ATTRIBUTES), n_boot=5, seed=0, ordinal=False)
    assert "usable model" not in str(caught.value)


def test_reliability_table_without_predicted_chances_keeps_its_columns():  # F9: was KeyError 'predicted'
    import numpy as np

    from helpers.objectives_backtest import Backtest

    backtest = Backtest(forecasts=pd.DataFrame({"covered": [True]}),
                        events=pd.DataFrame({"p": [np.nan], "met": [True]}))
    table = backtest.reliability()
    assert table.empty
    assert list(table.columns) == ["predicted", "events", "mean predicted", "share met", "ci_low", "ci_high"]
