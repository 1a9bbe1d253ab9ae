"""The report layer under the company pages: one loader (config + dataset, snapshot-aware, one min_responses rule),
the currency setting, and the one driver analysis per department that the drivers page and the department page
share (same shares by both call paths; cached once per run)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.config import ReportConfig, load_report_config
from helpers.errors import ParamsError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "params" / "report.yaml"


@pytest.fixture(scope="module")
def run_snapshot(small_demo, tmp_path_factory):
    """A run folder with the small demo's snapshot (as the runner writes it)."""
    from helpers.reports.runner import prepare_data

    run = tmp_path_factory.mktemp("run")
    info = prepare_data(str(small_demo), ReportConfig(), run)
    return Path(info.snapshot), info.as_of


# ------------------------------------------------------------------------------------------------ loader

def test_loader_reads_folder_and_snapshot_alike(small_demo, run_snapshot):
    from helpers.reports.loader import load_report_inputs

    snapshot, _ = run_snapshot
    folder = load_report_inputs(str(small_demo), str(CONFIG))
    snap = load_report_inputs(str(snapshot), str(CONFIG))
    assert not folder.snapshot and snap.snapshot
    assert snap.run_folder == snapshot.parent.resolve() and folder.run_folder is None
    assert folder.dataset.count("responses") == snap.dataset.count("responses")
    assert folder.min_responses == snap.min_responses == load_report_config(CONFIG).min_responses
    # readers see the data's name, never the machine's path
    assert folder.data_label == small_demo.name and "/" not in snap.data_label
    assert folder.currency == "EUR"


def test_loader_relative_config_and_min_responses(small_demo, tmp_path, monkeypatch):
    from helpers.reports.loader import driver_min_responses, load_report_inputs

    cfg = tmp_path / "report.yaml"
    cfg.write_text("min_responses: 75\ncurrency: usd\n")
    monkeypatch.chdir(tmp_path)
    inputs = load_report_inputs(str(small_demo), "report.yaml")
    assert inputs.min_responses == 75 and inputs.currency == "USD"
    assert driver_min_responses(75, 6) == 75 and driver_min_responses(30, 6) == 60


@pytest.mark.parametrize("value", ["euro", "E1R", "", "€"])
def test_currency_must_be_an_iso_code(tmp_path, value):
    cfg = tmp_path / "report.yaml"
    cfg.write_text(f"currency: {value!r}\n")
    with pytest.raises(ParamsError, match="currency"):
        load_report_config(cfg)


def test_loader_errors_name_the_file(tmp_path):
    from helpers.reports.loader import load_report_inputs

    with pytest.raises(ParamsError, match="report.yaml"):
        load_report_inputs(str(tmp_path), str(tmp_path / "report.yaml"))


# ------------------------------------------------------------------------------------------------ shared driver analysis

def test_drivers_page_and_department_page_paths_give_identical_shares(small_demo):
    """The drivers page's per-department analysis and the department page's call (dataset, config, department,
    as-of) are one analysis: same period, seed, bootstrap count and sample rule, so the same shares and intervals."""
    from helpers.drivers_report import department_driver_analysis, department_window, prepare_drivers_report
    from helpers.reports.loader import load_report_inputs

    page = prepare_drivers_report(n_boot=0, data_source=str(small_demo), report_config=str(CONFIG),
                                  as_of="2026-10-31")
    assert page.period == department_window("2026-10-31")
    inputs = load_report_inputs(str(small_demo), str(CONFIG))
    analysed = [n for n, d in page.departments.items() if d.analysis is not None]
    assert len(analysed) >= 4
    for name in analysed:
        # the department page: slug, the run's as-of date, its own dataset and config
        own = department_driver_analysis(inputs.dataset, inputs.config, name.lower().replace(" ", "_"),
                                         "2026-10-31", cache=False)
        shared = page.departments[name]
        assert own.department == name and own.period == shared.period
        pd.testing.assert_series_equal(own.analysis.table["share"], shared.analysis.table["share"])
        pd.testing.assert_frame_equal(own.analysis.table[["share_low", "share_high"]],
                                      shared.analysis.table[["share_low", "share_high"]])
        assert own.analysis.attrs["n_boot"] == shared.analysis.attrs["n_boot"] == 200
    # the page's department table shows exactly those shares
    html = page.departments_table_html()
    from helpers.drivers_analysis import share_text
    for name in analysed:
        t = page.departments[name].analysis.table
        point, ci = share_text(t, t.index[0])
        assert f"<td>{point}</td><td>{ci}</td>" in html


def test_departments_below_the_sample_rule_get_no_analysis(small_demo):
    from helpers.drivers_report import department_driver_analysis
    from helpers.reports.loader import load_report_inputs

    inputs = load_report_inputs(str(small_demo), str(CONFIG))
    small = department_driver_analysis(inputs.dataset, inputs.config, "Marketing", "2026-10-31", cache=False)
    assert small.analysis is None and small.n_usable < small.min_n == 60
    assert "too few answers" in small.message and f"{small.n_usable:,} complete responses" in small.message
    strict = inputs.config.model_copy(update={"min_responses": 10_000})
    big = department_driver_analysis(inputs.dataset, strict, "Technical Support", "2026-10-31", cache=False)
    assert big.analysis is None and big.min_n == 10_000


def test_department_analysis_is_cached_once_per_run(run_snapshot, monkeypatch):
    import helpers.drivers_report as DR
    from helpers.reports.loader import load_report_inputs

    snapshot, as_of = run_snapshot
    inputs = load_report_inputs(str(snapshot), str(CONFIG))
    first = DR.department_driver_analysis(inputs.dataset, inputs.config, "billing", as_of, n_boot=50)
    files = list((snapshot.parent / "cache" / "drivers").glob("billing-*.pkl"))
    assert len(files) == 1 and first.analysis is not None

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached analysis should have been read")

    monkeypatch.setattr(DR, "analyze_drivers", must_not_run)
    monkeypatch.setattr(DR, "analyze_drivers_from_patterns", must_not_run)
    monkeypatch.setattr(DR, "open_report_engine", must_not_run)
    again = DR.department_driver_analysis(load_report_inputs(str(snapshot), str(CONFIG)).dataset, inputs.config,
                                          "Billing", as_of, n_boot=50)
    pd.testing.assert_frame_equal(again.analysis.table, first.analysis.table)
    monkeypatch.undo()
    # other settings, another key: computed and stored next to it
    other = DR.department_driver_analysis(inputs.dataset, inputs.config, "billing", as_of, n_boot=60)
    assert other.analysis.attrs["n_boot"] != first.analysis.attrs["n_boot"] or other.settings != first.settings
    assert len(list((snapshot.parent / "cache" / "drivers").glob("billing-*.pkl"))) == 2
    # an unreadable cache file is recomputed, never shown
    files[0].write_bytes(b"not a pickle")
    fixed = DR.department_driver_analysis(inputs.dataset, inputs.config, "billing", as_of, n_boot=50)
    pd.testing.assert_series_equal(fixed.analysis.table["share"], first.analysis.table["share"])


def test_department_seeds_differ_between_departments_and_not_between_calls():
    from helpers.drivers_report import department_seed

    a = np.random.default_rng(department_seed("Billing")).random(3)
    assert np.array_equal(a, np.random.default_rng(department_seed("billing")).random(3))
    assert not np.array_equal(a, np.random.default_rng(department_seed("Sales")).random(3))


def test_drivers_page_data_line_shows_no_machine_path(small_demo, tmp_path):
    from helpers.drivers_report import prepare_drivers_report

    folder = tmp_path / "acme_export"
    shutil.copytree(small_demo, folder)
    page = prepare_drivers_report(n_boot=0, data_source=str(folder), report_config=str(CONFIG))
    text = page.headline_markdown()
    assert "acme\\_export" in text and str(tmp_path) not in text and "/" not in text.split("**Data:**")[1]


def test_report_yaml_documents_currency():
    text = (ROOT / "params" / "report.yaml").read_text()
    assert "currency: EUR" in text
    assert "`currency`" in (ROOT / "params" / "README.md").read_text()


# ------------------------------------------------------------------------------------------------ charts for readers

PAGE_WIDTH_PX = 920  # the page's content width (~60rem): wider PNGs are scaled down to it
PNG_DPI = 110  # helpers.charts.show_figure


def _text_problems(name, fig):
    """Every visible text of a figure smaller than 10 px once the PNG is scaled to the page, and titles that only
    name the chart instead of stating a finding."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width_px = fig.get_tightbbox(renderer).width * PNG_DPI
    scale = min(1.0, PAGE_WIDTH_PX / width_px)
    problems = []
    for text in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text")):
        if not text.get_visible() or not str(text.get_text()).strip():
            continue
        px = text.get_fontsize() * PNG_DPI / 72 * scale
        if px < 10:
            problems.append(f"{name}: {text.get_text()!r} is {px:.1f} px")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles, f"{name}: no title"
    for t in titles:
        assert len(t.split()) >= 4 and not t.lower().startswith(("drivers of", "sbg projection", "customer survival (")), \
            f"{name}: title {t!r} names the chart instead of stating its finding"
    plt.close(fig)
    return problems


def test_company_charts_have_readable_text_and_finding_titles(small_demo):
    from helpers.drivers_report import prepare_drivers_report
    from helpers.retention_report import prepare_retention_report

    drivers = prepare_drivers_report(n_boot=50, data_source=str(small_demo), report_config=str(CONFIG))
    retention = prepare_retention_report(data_source=str(small_demo), report_config=str(CONFIG), n_boot=30)
    problems = []
    for report in (drivers, retention):
        figures = report.figures()
        assert len(figures) == report.expected_charts() >= 4
        for name, fig in figures:
            problems += _text_problems(name, fig)
    assert problems == [], "\n".join(problems[:20])


def test_one_department_drivers_page_shows_its_shared_analysis(small_demo):
    """The drivers page of one department and the comparison on it print the same shares and intervals (the
    department's one analysis), with the ordinal check added."""
    from helpers.drivers_report import prepare_drivers_report

    page = prepare_drivers_report(department="billing", n_boot=50, data_source=str(small_demo),
                                  report_config=str(CONFIG))
    shared = page.departments["Billing"].analysis
    pd.testing.assert_frame_equal(page.main.table[["share", "share_low", "share_high"]],
                                  shared.table[["share", "share_low", "share_high"]])
    assert page.main.ordinal is not None and shared.ordinal is None  # the cached result is not changed
    first = page.findings()[0]
    row = page.departments_table_html().split("<td>Billing</td>")[1].split("</tr>")[0]
    top_share = row.split("<td>")[2].split("</td>")[0]
    assert f": {top_share} (95% CI " in first
