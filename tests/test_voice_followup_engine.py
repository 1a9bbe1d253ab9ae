"""Issue 14: the voice-of-the-customer follow-up work (the follow-up list of the voice page, the department
page's customers to call back and "contacted within 48 hours") runs on the report's engine, DuckDB or Spark.

The reference is the implementation these replaced, kept here verbatim: DuckDB SQL on the dataset's own
connection (:func:`_reference_follow_up_list`, :func:`_reference_contact_counts`). On the seeded test demo
(``SATISFACTION_KIT_DATA``, else the session's small demo) the engine versions equal it on DuckDB (every case
here) and on Spark in local mode (one test, the Spark session of tests/test_engine_spark.py); the list is
ordered and cut in the engine (ties by response id) with its total counted there; the voice page and the
department page hand their engine over (before, both ran on the dataset's DuckDB connection whatever the
report's engine).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from helpers.data import load_dataset
from helpers.errors import KitError
from helpers.engine import DuckDBEngine
from helpers.kpis import NPS_DETRACTOR_MAX
from helpers.voice import _as_codebook, match_themes, sentiment
from helpers.voice_effects import FollowUpList, _and, follow_up_display, follow_up_list
from helpers.voice_report import contact_kpi, customers_to_call_back, load_themes

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

END = "2026-10-31"

# (start, end, department, options): the voice page (company and department), the department call-backs (newest
# first, still waiting, bounded), the latest month by default, another rule, a past as-of date, an empty period
CASES = [
    ("2026-10-01", END, None, dict(require_comment=True, limit=40, teams=True)),
    ("2026-08-01", END, None, dict(require_comment=True, show_customer_ids=True, teams=True)),
    ("2026-10-01", END, "Billing", dict(require_comment=True, limit=40, show_customer_ids=True)),
    ("2026-05-03", END, "Delivery", dict(require_comment=True, limit=20, newest_first=True, waiting_only=True,
                                         show_customer_ids=True)),
    ("2026-04-04", "2026-05-01", "Technical Support", dict(require_comment=True, limit=20, newest_first=True,
                                                           waiting_only=True)),
    (None, None, None, dict(nps_max=3, csat_max=2, ticket_days=7, show_customer_ids=True)),
    ("2030-01-01", "2030-01-31", "Sales", dict(require_comment=True, limit=20, teams=True)),
]


def _reference_follow_up_list(ds, codebook, start=None, end=None, department=None, nps_max=NPS_DETRACTOR_MAX,
                               csat_max=1, ticket_days=30, show_customer_ids=False, require_comment=False,
                               limit=None, newest_first=False, waiting_only=False, teams=False) -> FollowUpList:
    """helpers.voice_effects.follow_up_list as it was before it ran on engines (commit 18a73e5~1): DuckDB SQL
    on the dataset's own connection, verbatim."""
    from helpers.engine.base import sql_literal

    cb = _as_codebook(codebook, "follow-up list")
    con = ds.con
    if end is None:
        last = con.execute("SELECT max(response_date) FROM responses").fetchone()[0]
        if last is None:
            raise KitError("follow-up list: the responses table is empty")
        end = pd.Timestamp(last)
        start = end.replace(day=1) if start is None else start
    start = pd.Timestamp(start) if start is not None else pd.Timestamp(end).replace(day=1)
    end = pd.Timestamp(end)
    end_day = sql_literal(end.normalize())
    present = getattr(ds, "tables", ("tickets", "org"))  # survey-only data (issue 12): no ticket links, no owners
    tickets = "tickets" if "tickets" in present else (
        "(SELECT NULL::VARCHAR AS ticket_id, NULL::VARCHAR AS customer_id, NULL::VARCHAR AS department, NULL::VARCHAR"
        " AS team, NULL::VARCHAR AS agent_id, NULL::TIMESTAMP AS created_at, NULL::TIMESTAMP AS resolved_at LIMIT 0)")
    org = "org" if "org" in present else "(SELECT NULL::VARCHAR AS person_id, NULL::VARCHAR AS name LIMIT 0)"
    where = _and(f"CAST(r.response_date AS DATE) BETWEEN {sql_literal(start.normalize())} AND {end_day}",
                 f"r.nps <= {int(nps_max)} OR r.csat <= {int(csat_max)}",
                 f"r.department = {sql_literal(str(department))}" if department is not None else "",
                 "r.comment IS NOT NULL AND trim(r.comment) <> ''" if require_comment else "",
                 f"r.followed_up_at IS NULL OR CAST(r.followed_up_at AS TIMESTAMP) >= {end_day} + INTERVAL 1 DAY"
                 if waiting_only else "")
    base = f"""
    WITH flagged AS (
        SELECT r.response_id, r.customer_id, CAST(r.response_date AS DATE) AS response_date, r.department,
               r.csat, r.nps, r.comment
        FROM responses r WHERE {where}),
    linked AS (
        SELECT f.response_id, t.ticket_id, t.team, t.agent_id,
               row_number() OVER (PARTITION BY f.response_id ORDER BY t.created_at DESC, t.ticket_id DESC) AS rk
        FROM flagged f JOIN {tickets} t ON t.customer_id = f.customer_id AND t.department = f.department
             AND CAST(t.created_at AS DATE) <= f.response_date
             AND CAST(t.created_at AS DATE) >= f.response_date - INTERVAL {int(ticket_days)} DAY),
    counts AS (
        SELECT f.response_id,
               count(t.ticket_id) FILTER (WHERE t.resolved_at IS NULL) AS open_tickets,
               count(t.ticket_id) FILTER (WHERE CAST(t.created_at AS DATE) > {end_day} - INTERVAL
                   {int(ticket_days)} DAY AND CAST(t.created_at AS DATE) <= {end_day}) AS recent_tickets
        FROM flagged f LEFT JOIN {tickets} t ON t.customer_id = f.customer_id GROUP BY f.response_id),
    listed AS (
        SELECT f.*, l.ticket_id, coalesce(l.team, '(no linked ticket)') AS team, o.name AS owner,
               coalesce(c.open_tickets, 0) AS open_tickets, coalesce(c.recent_tickets, 0) AS recent_tickets,
               date_diff('day', f.response_date, {end_day}) AS days_waiting
        FROM flagged f
        LEFT JOIN linked l ON l.response_id = f.response_id AND l.rk = 1
        LEFT JOIN {org} o ON o.person_id = l.agent_id
        LEFT JOIN counts c ON c.response_id = f.response_id)
    """
    total, n_teams, oldest = con.execute(
        base + "SELECT count(*), count(DISTINCT (department, team)), max(days_waiting) FROM listed").fetchone()
    order = ("response_date DESC, response_id DESC" if newest_first
             else "department, team, response_date, response_id")
    bound = "" if limit is None else f" LIMIT {max(int(limit), 0)}"
    t = con.execute(base + f"SELECT * FROM listed ORDER BY {order}{bound}").df()
    per_team = None
    if teams:
        per_team = con.execute(
            base + "SELECT department, team, count(*) AS customers, max(days_waiting) AS oldest, "
                   "median(days_waiting) AS median_wait, count_if(open_tickets > 0) AS open_tickets FROM listed "
                   "GROUP BY department, team ORDER BY customers DESC, oldest DESC, department, team").df()
        for c in ("customers", "oldest", "open_tickets"):
            per_team[c] = per_team[c].astype(int)
        per_team["median_wait"] = per_team["median_wait"].astype(float)
    t["response_date"] = pd.to_datetime(t["response_date"])
    flags = match_themes(t["comment"], cb)
    t["themes"] = [[cb.labels[n] for n, hit in zip(cb.names, row) if hit] for row in flags.to_numpy()]
    t["sentiment"] = sentiment(t["comment"]).to_numpy()
    t["days_waiting"] = t["days_waiting"].astype(int)
    for c in ("csat", "nps"):  # one dtype whether or not the listed rows have a missing score
        t[c] = pd.to_numeric(t[c]).astype("Int64")
    for c in ("open_tickets", "recent_tickets"):
        t[c] = t[c].fillna(0).astype(int)
    t["team"] = t["team"].astype(object)
    t = t.reset_index(drop=True)
    cols = ["department", "team", "owner", "response_date", "days_waiting", "csat", "nps", "themes", "sentiment",
            "comment", "open_tickets", "recent_tickets"]
    if show_customer_ids:
        cols += ["customer_id", "response_id", "ticket_id"]
    rule = f"NPS 0-{nps_max} or CSAT <= {csat_max}" + (", with a comment" if require_comment else "")
    return FollowUpList(t[cols], start, end, bool(show_customer_ids), rule, int(total or 0), int(n_teams or 0),
                        None if oldest is None else int(oldest), per_team)



def _reference_contact_counts(ds, start, end, hours=48, department=None, nps_max=NPS_DETRACTOR_MAX, csat_max=1):
    """``(k, n)`` of helpers.voice_report.contact_kpi as it was before it ran on engines (verbatim SQL)."""
    conds = ["CAST(response_date AS DATE) BETWEEN CAST(? AS DATE) AND CAST(? AS DATE)", "(nps <= ? OR csat <= ?)",
             f"CAST(response_date AS TIMESTAMP) + INTERVAL {int(hours)} HOUR <= CAST(? AS DATE) + INTERVAL 1 DAY"]
    params = [pd.Timestamp(start).date(), pd.Timestamp(end).date(), nps_max, csat_max, pd.Timestamp(end).date()]
    if department is not None:
        conds.append("department = ?")
        params.append(department)
    k, n = ds.con.execute(
        f"SELECT count_if(followed_up_at IS NOT NULL AND CAST(followed_up_at AS TIMESTAMP) <= "
        f"CAST(response_date AS TIMESTAMP) + INTERVAL {int(hours)} HOUR), count(*) FROM responses WHERE "
        + " AND ".join(conds), params).fetchone()
    return int(k or 0), int(n or 0)


def _same_list(got: FollowUpList, want: FollowUpList, what, **kw) -> None:
    assert (got.total, got.n_teams, got.oldest, got.start, got.end, got.rule, got.show_customer_ids) == (
        want.total, want.n_teams, want.oldest, want.start, want.end, want.rule, want.show_customer_ids), what
    try:
        kw.setdefault("check_dtype", len(want.table) > 0)  # an empty answer's dtypes are DuckDB's guess
        pd.testing.assert_frame_equal(got.table, want.table, **kw)
        if want.teams is None:
            assert got.teams is None
        else:
            pd.testing.assert_frame_equal(got.teams, want.teams, **kw)
    except AssertionError as exc:
        raise AssertionError(f"{what}: {exc}") from None


def _same_contact(got, k: int, n: int, what) -> None:
    if n == 0:
        assert got.estimate is None and "No unhappy answers" in got.missing, what
        return
    from helpers.kpis import proportion

    ref = proportion(k, n, metric="contacted_within")
    e = got.estimate
    assert (e.n, e.value, e.ci_low, e.ci_high) == (ref.n, ref.value, ref.ci_low, ref.ci_high), what


@pytest.fixture(scope="module")
def ds(demo_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset(demo_dir, emit_warnings=False)
    yield data
    data.close()


@pytest.fixture(scope="module")
def cb():
    return load_themes()


def _both(ds, cb, start, end, dept, opts, engine):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = _reference_follow_up_list(ds, cb, start, end, dept, **opts)
        got = follow_up_list(ds, cb, start, end, dept, engine=engine, **opts)
    return got, want


# --- DuckDB ------------------------------------------------------------------------------------------------------

def test_follow_up_list_on_the_engine_equals_the_reference(ds, cb):
    sizes = []
    with DuckDBEngine(ds.con) as engine:
        for start, end, dept, opts in CASES:
            got, want = _both(ds, cb, start, end, dept, opts, engine)
            _same_list(got, want, (start, end, dept, opts))
            sizes.append((len(want.table), want.total))
            # no engine: DuckDB over the dataset, the same list
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _same_list(follow_up_list(ds, cb, start, end, dept, **opts), want, ("default", start, dept))
            # the engine may also be the first argument (as for the other voice functions)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _same_list(follow_up_list(engine, cb, start, end, dept, **opts), want, ("engine", start, dept))
    # the cases are not vacuous: bounded lists with more behind them, a full list, an empty period
    assert any(0 < rows < total for rows, total in sizes) and sizes[1][0] == sizes[1][1] > 40
    assert sizes[-1] == (0, 0) and min(t for _, t in sizes[:-1]) > 0


def test_contact_kpi_on_the_engine_equals_the_reference(ds):
    seen = []
    with DuckDBEngine(ds.con) as engine:
        for dept in (None, *ds.departments):
            for start, end, hours in (("2026-08-01", END, 48), ("2026-10-01", END, 24), ("2026-03-01", "2026-03-31", 5),
                                      ("2030-01-01", "2030-01-31", 48)):
                k, n = _reference_contact_counts(ds, start, end, hours, dept)
                _same_contact(contact_kpi(ds, start, end, hours, dept, engine=engine), k, n, (dept, start, hours))
                _same_contact(contact_kpi(ds, start, end, hours, dept), k, n, ("default", dept, start, hours))
                seen.append((k, n))
    assert sum(n for _, n in seen) > 1000 and 0 < sum(k for k, _ in seen) < sum(n for _, n in seen)


def test_call_backs_on_the_engine_equal_the_dataset_path(ds):
    with DuckDBEngine(ds.con) as engine:
        for dept in ("Delivery", "Billing"):
            a = customers_to_call_back(ds, dept, END, weeks=26, limit=5, show_customer_ids=True, engine=engine)
            b = customers_to_call_back(ds, dept, END, weeks=26, limit=5, show_customer_ids=True)
            assert a.total == b.total > len(a.table) > 0
            pd.testing.assert_frame_equal(a.table, b.table)
            assert a.html() == b.html()


class _Recording(DuckDBEngine):
    """A DuckDB engine over a connection that records every query and the size of its answer."""

    def __init__(self, con):
        super().__init__(con)
        self.log: list[tuple[str, int]] = []

    def _run(self, sql):
        out = super()._run(sql)
        self.log.append((sql, len(out)))
        return out


def test_the_list_is_ordered_and_cut_in_the_engine_ties_by_response_id():
    from test_voice_effects import CODEBOOK, _dataset

    day = pd.Timestamp("2026-03-10")
    ids = ["R9", "R3", "R7", "R5", "R1"]  # one day, one department, no ticket: only the id breaks the tie
    responses = pd.DataFrame({
        "response_id": ids, "customer_id": [f"C{i}" for i in range(5)], "response_date": day,
        "department": "Billing", "channel": "web", "csat": 1.0, "nps": 2.0, "ces": np.nan,
        "attr_speed": np.nan, "comment": ["slow & rude"] * 5,
        "followed_up_at": pd.NaT})
    ds = _dataset(responses)
    engine = _Recording(ds.con)
    oldest = follow_up_list(ds, CODEBOOK, "2026-03-01", "2026-03-31", show_customer_ids=True, limit=3,
                            engine=engine)
    assert oldest.table["response_id"].tolist() == ["R1", "R3", "R5"] and oldest.total == 5
    newest = follow_up_list(ds, CODEBOOK, "2026-03-01", "2026-03-31", show_customer_ids=True, limit=2,
                            newest_first=True, waiting_only=True, engine=engine)
    assert newest.table["response_id"].tolist() == ["R9", "R7"] and newest.total == 5
    listed = [(sql, rows) for sql, rows in engine.log if "SELECT * FROM listed" in sql]
    assert len(listed) == 2 and [rows for _, rows in listed] == [3, 2]  # the engine answered the bounded list
    assert all(sql.rstrip().endswith(("LIMIT 3", "LIMIT 2")) for sql, _ in listed)
    assert max(rows for _, rows in engine.log) == 3  # nothing else came back as rows
    shown = follow_up_display(oldest, "html")
    assert (shown["Comment"] == "slow &amp; rude").all()  # free text escaped as before


def test_survey_only_data_on_the_engine_equals_the_reference(demo_dir, tmp_path, cb):
    import shutil

    folder = tmp_path / "survey"
    folder.mkdir()
    shutil.copy(demo_dir / "responses.parquet", folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        survey = load_dataset(folder, emit_warnings=False)
    try:
        with DuckDBEngine(survey.con) as engine:
            assert not engine.has("tickets") and not engine.has("org")
            got, want = _both(survey, cb, "2026-08-01", END, "Delivery",
                              dict(require_comment=True, limit=10, teams=True, show_customer_ids=True), engine)
            _same_list(got, want, "survey only")
            assert got.total > 10 and set(got.table["team"]) == {"(no linked ticket)"}
            # an engine alone (no dataset to ask): the tables it has decide
            _same_list(follow_up_list(engine, cb, "2026-08-01", END, "Delivery", require_comment=True, limit=10,
                                      teams=True, show_customer_ids=True), want, "engine alone")
        # an engine configured with fewer tables than the dataset has (engine.tables): it is not asked for them
        full = load_dataset(demo_dir, emit_warnings=False)
        with DuckDBEngine(tables={"responses": str(demo_dir / "responses.parquet")}) as engine:
            _same_list(follow_up_list(full, cb, "2026-08-01", END, "Delivery", require_comment=True, limit=10,
                                      teams=True, show_customer_ids=True, engine=engine), want, "fewer tables")
        full.close()
    finally:
        survey.close()


# --- the pages hand their engine over (regression: both ran on the dataset's connection) --------------------------

@pytest.fixture()
def recording(monkeypatch):
    """open_report_engine returns a recording DuckDB engine over the dataset (the pages import it when they run)."""
    import helpers.engine as engine_module

    opened: list[_Recording] = []

    def fake(dataset, config=None):
        opened.append(_Recording(dataset.con))
        return opened[-1], None

    monkeypatch.setattr(engine_module, "open_report_engine", fake)
    return opened


def _follow_up_queries(opened) -> tuple[int, int]:
    sqls = [sql for engine in opened for sql, _ in engine.log]
    return (sum("WITH flagged AS" in s for s in sqls), sum("followed_up_at IS NOT NULL" in s for s in sqls))


def test_the_department_page_counts_its_call_backs_on_the_report_engine(demo_dir, recording):
    from pathlib import Path

    from helpers.objectives_report import prepare_department_report

    root = Path(__file__).resolve().parents[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = prepare_department_report("delivery", data_source=str(demo_dir),
                                           report_config=str(root / "params" / "report.yaml"), as_of=END)
        before = _follow_up_queries(recording)
        calls, message = report.call_backs()
    assert calls is not None and not message and calls.total > 0 and calls.contact.estimate is not None
    lists, contacts = _follow_up_queries(recording)
    assert lists - before[0] >= 2 and contacts - before[1] == 1  # total + bounded list, and the KPI's counts
    assert calls.table.equals(customers_to_call_back(report.dataset, report.department, END).table)


def test_the_voice_page_counts_its_follow_up_on_the_report_engine(demo_dir, recording):
    from pathlib import Path

    from helpers.voice_report import prepare_voice_report

    root = Path(__file__).resolve().parents[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = prepare_voice_report("Billing", data_source=str(demo_dir),
                                      report_config=str(root / "params" / "report.yaml"), as_of=END,
                                      text_sample=500)
    assert report.follow_up is not None and report.follow_up.total > 0 and report.contact is not None
    lists, contacts = _follow_up_queries(recording)
    assert lists >= 2 and contacts == 1


# --- Spark (local mode) ------------------------------------------------------------------------------------------

def _spark_reason():
    from helpers.engine.spark_engine import spark_unavailable_reason

    return spark_unavailable_reason()


SPARK_REASON = _spark_reason()
if SPARK_REASON is None:
    from test_engine_spark import spark, tables  # noqa: F401 - the Spark session fixture (local[1]) for this module


@pytest.mark.skipif(SPARK_REASON is not None, reason=f"Spark engine tests need Spark: {SPARK_REASON}")
def test_follow_up_on_spark_equals_the_reference(spark, ds, cb):  # noqa: F811
    """The report's Spark engine over the dataset (its typed, cut views: helpers.engine.spark_dataset_sources):
    the voice page's list with its team counts, the call-backs' list (newest first, still waiting, bounded) at a
    past as-of date, the default period, an empty period, and "contacted within" (what customers_to_call_back
    asks the engine for; its page is compared on DuckDB above)."""
    from helpers.engine import EngineSettings, connect

    with connect(EngineSettings(kind="spark", spark={"master": "local[1]"}), dataset=ds) as engine:
        assert engine.name == "spark"
        for start, end, dept, opts in (CASES[0], CASES[4], CASES[5], CASES[6]):
            got, want = _both(ds, cb, start, end, dept, opts, engine)
            _same_list(got, want, ("spark", start, end, dept, opts))
        for dept, start, hours in ((None, "2026-08-01", 48), ("Delivery", "2026-05-03", 24)):
            k, n = _reference_contact_counts(ds, start, END, hours, dept)
            assert n > 30
            _same_contact(contact_kpi(ds, start, END, hours, dept, engine=engine), k, n, ("spark", dept, hours))


def test_when_the_report_engine_fails_on_the_list_the_page_says_what_computed_it(demo_dir, monkeypatch):
    """Before: an engine error on the call-back list made the page recompute it with DuckDB over the dataset
    without a word. The list is the same (test above); the page now says the engine failed and what computed it."""
    from pathlib import Path

    import helpers.engine as engine_module
    from helpers.engine import EngineError
    from helpers.objectives_report import prepare_department_report

    class Failing(_Recording):
        name = "spark"

        def query(self, sql):
            if "WITH flagged AS" in sql:
                raise EngineError("spark engine: the cluster went away <b>")
            return super().query(sql)

    monkeypatch.setattr(engine_module, "open_report_engine", lambda dataset, config=None: (Failing(dataset.con), None))
    root = Path(__file__).resolve().parents[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = prepare_department_report("delivery", data_source=str(demo_dir),
                                           report_config=str(root / "params" / "report.yaml"), as_of=END)
        calls, message = report.call_backs()
    assert calls is not None and not message and calls.total > 0
    assert calls.table.equals(customers_to_call_back(report.dataset, report.department, END).table)
    assert calls.engine_note.startswith("The spark engine could not give this list (spark engine: the cluster")
    page = report.call_backs_html()
    assert "DuckDB computed it over the run" in page and "copy of the data.</p>" in page
    assert "<b>" not in page.split("could not give this list")[1]  # the error text is escaped
