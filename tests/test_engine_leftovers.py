"""Issue #14 leftovers: the bounded hash sample shared by the Cox and worth samples (the same customers as the full
sort), the params check's distinct values in few queries, the index page's KPIs on the configured engine, the
Comparison's ``sample`` field, and the funnel's range checks on the engine path."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from helpers.engine import DuckDBEngine
from helpers.engine import aggregates as A


@pytest.fixture(scope="module")
def eng(demo_dir):
    tables = {t: str(demo_dir / f"{t}.parquet") for t in ("customers", "responses", "tickets")}
    with DuckDBEngine(tables=tables) as engine:
        yield engine


class CountingEngine:
    """An engine wrapper that records every query (to count them, not to time them)."""

    def __init__(self, engine):
        self._engine, self.queries = engine, []

    def query(self, sql):
        self.queries.append(sql)
        return self._engine.query(sql)

    def __getattr__(self, name):
        return getattr(self._engine, name)


# --- the bounded hash sample ---------------------------------------------------------------------------------
def _md5_uint32(text: str) -> int:
    return int(hashlib.md5(text.encode()).hexdigest()[:8], 16)


def test_hash_below_is_the_numeric_hash_comparison(eng):
    """The text comparison of md5's first 8 hex digits is the same test as hash_uint32_sql < bound (checked
    against Python's md5 too), including bounds at the ends of the range."""
    ids = eng.query("SELECT CAST(customer_id AS VARCHAR) AS id FROM customers ORDER BY 1")["id"].tolist()[:400]
    eng.register("_ids", pd.DataFrame({"id": ids}))
    hashes = np.array([_md5_uint32(f"{i}:9") for i in ids])
    text = "id || ':9'"
    for bound in (0, 1, int(np.median(hashes)), int(hashes.max()), int(hashes.max()) + 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32):
        got = eng.query(f"SELECT id, {A.hash_uint32_sql(text)} AS u, {A.hash_below_sql(text, bound)} AS below "
                        "FROM _ids ORDER BY id")
        assert got["u"].tolist() == hashes.tolist()
        assert got["below"].tolist() == (hashes < bound).tolist(), bound


def test_hash_sample_bound_keeps_more_than_the_sample():
    assert A.hash_sample_bound(100, 150) is None  # the bound would keep (nearly) everyone
    for size, population in ((300, 2_000), (100_000, 1_000_000), (100_000, 10_000_000), (1, 10 ** 9)):
        b = A.hash_sample_bound(size, population)
        mean = population * b / 2 ** 32
        assert mean - size > 9 * np.sqrt(mean)  # too few below the bound: more than 9 standard deviations away


def _full_sort_cox(engine, size, seed, as_of):
    """The Cox sample as it was read before the bound: every customer ordered by the hash (the reference)."""
    churned, stop = A._stop_sql(as_of)
    u = A.hash_uint32_sql(f"CAST(c.customer_id AS VARCHAR) || ':' || '{seed}'")
    got = engine.query(
        f"SELECT c.customer_id, date_diff('day', c.signup_date, {stop.replace('end_date', 'c.end_date')}) AS days, "
        f"CASE WHEN {churned.replace('end_date', 'c.end_date')} THEN 1 ELSE 0 END AS event, c.segment, "
        "s.mean_csat, s.n_responses FROM (SELECT * FROM customers AS c WHERE c.signup_date <= "
        f"DATE '{as_of:%Y-%m-%d}' ORDER BY {u}, customer_id LIMIT {size}) AS c LEFT JOIN (SELECT customer_id, "
        "avg(csat) AS mean_csat, count(*) AS n_responses FROM responses WHERE response_date <= "
        f"DATE '{as_of:%Y-%m-%d}' GROUP BY customer_id) AS s ON s.customer_id = c.customer_id")
    return got.sort_values("customer_id", kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 11, 20261125])
def test_cox_sample_is_the_full_sorts_first_rows(eng, seed, monkeypatch):
    """The bounded query returns exactly the customers (and their columns, mean CSAT included) of the full
    order's first ``size`` rows; with a bound that lets too few through it falls back to the full order."""
    as_of = A.customers_as_of(eng)
    ref = _full_sort_cox(eng, 300, seed, as_of)
    counting = CountingEngine(eng)
    got = A.cox_sample(counting, 300, seed=seed, covariates=["segment"], as_of=as_of)
    assert any(A.hash_below_sql("CAST(c.customer_id AS VARCHAR) || ':' || '%s'" % seed,
                                A.hash_sample_bound(300, got.attrs["population"])) in s for s in counting.queries)
    pd.testing.assert_frame_equal(got[ref.columns], ref, check_dtype=False)
    assert len(got) == 300 and got.attrs["size"] == 300 and got["mean_csat"].notna().any()
    # too few below the bound: the full order (the same rows)
    monkeypatch.setattr(A, "hash_sample_bound", lambda size, population: 2 ** 22)
    fallback = CountingEngine(eng)
    again = A.cox_sample(fallback, 300, seed=seed, covariates=["segment"], as_of=as_of)
    pd.testing.assert_frame_equal(again, got)
    assert sum("LIMIT 300" in s for s in fallback.queries) == 2  # the bounded read, then the full order


def test_cox_sample_deterministic_and_everyone_when_small(eng):
    a = A.cox_sample(eng, 250, seed=5)
    pd.testing.assert_frame_equal(a, A.cox_sample(eng, 250, seed=5))
    population = a.attrs["population"]
    everyone = A.cox_sample(eng, population + 10, seed=5)
    assert len(everyone) == population and everyone["customer_id"].is_unique


def test_worth_sample_shares_the_bounded_sample(eng):
    """worth_sample's customers are the Cox sample's (one helper: the same bounded read) and the full sort's."""
    from helpers.engine import worth_sample as WS

    as_of = pd.Timestamp("2026-06-30")
    for seed in (2, 8):
        ids = WS.worth_sample(eng, 400, seed=seed, as_of=as_of).customers["customer_id"].tolist()
        assert ids == _full_sort_cox(eng, 400, seed, as_of)["customer_id"].tolist()


# --- the params check: the values of every filter in one query per column -----------------------------------
def _many_filter_params(root, repo_params):
    """The repo's params with 11 more filtered objectives per department (good and bad values, a team of another
    department, the agent alias by case, customer columns on responses, tickets and customers, a column that
    does not exist): 66 filters on top of the repo's."""
    import shutil

    import yaml

    params = root / "params"
    shutil.copytree(repo_params, params)
    common = {"baseline": {"start": "2025-01-01", "end": "2025-12-31"}, "target": 75.0, "start": "2026-01-01",
              "deadline": "2026-12-31", "owner": {"name": "Jo", "role": "manager"}}
    other = {"billing": "Front Desk", "customer_service": "Collections", "delivery": "Tier 1", "marketing": "Returns",
             "sales": "Campaigns", "technical_support": "New Business"}
    for f in sorted((params / "departments").glob("*.yaml")):
        doc, s = yaml.safe_load(f.read_text()), f.stem
        extra = [("team-other", "fcr", {"team": other[s]}),
                 ("team-typo", "reopen_rate", {"team": ["Nobody", "Ghost Team"]}),
                 ("agent-case", "resolution_hours", {"agent": f"{s.upper()}-REP002"}),
                 ("agent-bad", "ticket_volume", {"agent_id": "rep-999"}),
                 ("seg", "csat", {"segment": "Enterprise"}),
                 ("seg-bad", "fcr", {"segment": ["enterprise", "Giant"]}),
                 ("region", "nps", {"region": "North", "channel": "email"}),
                 ("channel-bad", "ces", {"channel": "pigeon"}),
                 ("team-csat", "csat", {"team": "A"}),
                 ("nocol", "fcr", {"colour": "red"}),
                 ("ret-seg", "retention_rate", {"segment": "small business", "region": "Mars"})]
        doc["objectives"] += [json.loads(json.dumps({"id": f"{s}-{i}", "title": i, "metric": m, "filters": flt,
                                                     **common})) for i, m, flt in extra]  # no YAML anchors
        f.write_text(yaml.safe_dump(doc, sort_keys=False))
    return params


def test_params_check_reads_filter_values_in_few_queries_with_the_same_messages(demo_dir, tmp_path):
    """Before: one SELECT DISTINCT per objective filter (91 here; 22.6 s at 1,000,000 customers). Now one
    query per (table, column): the messages are those of checking each objective on its own (each filter's
    values then come from a query about that objective alone, as before)."""
    import dataclasses
    from pathlib import Path

    from helpers.config import load_report_config
    from helpers.params_check import ParamsCheck, _check_departments, _check_objectives, check_params
    from tests.test_data import load_quiet

    params = _many_filter_params(tmp_path, Path(__file__).resolve().parents[1] / "params")
    ds = load_quiet(demo_dir)
    plans = _check_departments(ds, params, ParamsCheck())
    filters = [(o.metric, k) for p in plans for o in p.objectives for k in o.filters]
    assert len(plans) == 6 and len(filters) > 80
    real, queries = ds.con, []

    class CountingConnection:
        def execute(self, sql, *args, **kw):
            queries.append(sql)
            return real.execute(sql, *args, **kw)

        def __getattr__(self, name):
            return getattr(real, name)

    ds.con = CountingConnection()
    try:
        together = ParamsCheck()
        _check_objectives(ds, plans, together)
    finally:
        ds.con = real
    selects = [s for s in queries if s.lstrip().upper().startswith("SELECT")]
    # team, agent_id, segment and channel of tickets; segment, region, channel of responses; segment, region of
    # customers: at most one query per (table, column)
    assert 0 < len(selects) <= 9, selects
    one_by_one = ParamsCheck()
    for p in plans:
        for o in p.objectives:
            _check_objectives(ds, [dataclasses.replace(p, objectives=(o,))], one_by_one)
    assert [x.text() for x in together.problems] == [x.text() for x in one_by_one.problems]
    assert [x.text() for x in together.warnings] == [x.text() for x in one_by_one.warnings]
    # every kind of message is there (the wording itself is tests/test_params_check.py's)
    texts = "\n".join(x.text() for x in [*together.problems, *together.warnings])
    for s in ("billing", "sales"):
        for i in ("team-other", "team-typo", "agent-bad", "seg-bad", "channel-bad", "team-csat", "nocol", "ret-seg"):
            assert f"objective '{s}-{i}'" in texts, (s, i)
        assert f"objective '{s}-agent-case'" not in texts and f"objective '{s}-seg'," not in texts
    assert "team='Nobody', 'Ghost Team' matches no rows of Billing's tickets" in texts
    assert "region='Mars' matches no rows of customers" in texts
    full = check_params(ds, load_report_config(params / "report.yaml"))
    assert [x.text() for x in full.warnings if x.field.startswith("filters.")] == \
        [x.text() for x in together.warnings]


# --- the index page's company KPIs on the configured engine --------------------------------------------------
def _report_yaml(folder, engine: dict):
    import yaml

    from tests.reports_support import REPO

    doc = yaml.safe_load((REPO / "params" / "report.yaml").read_text()) or {}
    doc["engine"] = engine
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder / "report.yaml"


@pytest.fixture(scope="module")
def snapshot(demo_dir, tmp_path_factory):
    """The run's snapshot of the demo data, by reference (what the runner hands company_kpis)."""
    from tests.test_data import load_quiet

    ds = load_quiet(demo_dir)
    try:
        return ds.snapshot(tmp_path_factory.mktemp("kpi_snapshot") / "data.duckdb", by_reference=True)
    finally:
        ds.close()


def test_company_kpis_use_the_configured_engine(snapshot, demo_dir, tmp_path, monkeypatch):
    """Before: company_kpis opened DuckDB over the snapshot whatever report.yaml's ``engine:`` said. Now the run's
    config selects the engine (here DuckDB over the Parquet files named in ``engine.tables``); the entries are
    the same numbers as the default engine's."""
    from helpers import engine as engine_module
    from helpers.config import load_report_config
    from helpers.reports.changes import company_kpis

    as_of = "2026-06-30"
    opened = []
    real_open = engine_module.open_report_engine

    def spy(dataset, config=None):
        engine, note = real_open(dataset, config)
        opened.append((config, engine is not None and engine.con is not dataset.con, note))
        return engine, note

    monkeypatch.setattr(engine_module, "open_report_engine", spy)
    default = company_kpis(snapshot, as_of)
    assert opened[-1] == (None, False, None)  # DuckDB over the snapshot's own views
    tables = {t: str(demo_dir / f"{t}.parquet") for t in ("customers", "responses", "tickets")}
    path = _report_yaml(tmp_path / "params", {"kind": "duckdb", "tables": tables})
    cfg = load_report_config(path)
    for config in (cfg, path, str(path)):
        got = company_kpis(snapshot, as_of, config=config)
        used, own_connection, note = opened[-1]
        assert used is not None and dict(used.engine.tables) == tables and note is None
        assert own_connection  # DuckDB over the configured files, not the snapshot's connection
        assert [e["kpi"] for e in got] == ["csat", "nps", "fcr"]
        assert got == default


def _spark_reason():
    from helpers.engine.spark_engine import spark_unavailable_reason

    return spark_unavailable_reason()


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_company_kpis_on_spark_equal_duckdb(snapshot, tmp_path, monkeypatch):
    """``engine: {kind: spark}``: the index's KPIs come from Spark (local mode) over the snapshot's referenced
    files, with DuckDB's numbers (integer counts and sums: exactly)."""
    reason = _spark_reason()
    if reason is not None:
        pytest.skip(f"needs Spark: {reason}")
    from helpers.reports.changes import company_kpis

    as_of = "2026-06-30"
    path = _report_yaml(tmp_path / "params", {"kind": "spark", "spark": {
        "master": "local[1]", "conf": {"spark.sql.shuffle.partitions": 2, "spark.ui.enabled": False}}})
    import helpers.kpis as K

    calls = []
    real = K.compare_kpi

    def spy(*a, **kw):
        calls.append(getattr(kw.get("engine"), "name", None))
        return real(*a, **kw)

    monkeypatch.setattr(K, "compare_kpi", spy)
    got = company_kpis(snapshot, as_of, config=path)
    monkeypatch.setattr(K, "compare_kpi", real)
    assert calls and set(calls) == {"spark"}
    assert got == company_kpis(snapshot, as_of)


# --- Comparison.to_dict carries the sample ------------------------------------------------------------------
def test_comparison_to_dict_carries_the_sample_through_json(eng):
    """Before: the engine's median comparison on seeded samples set ``Comparison.sample``, but ``to_dict`` (what
    is written out) dropped it. Now it is there, JSON-safe, and reads back as the same sizes and populations."""
    periods = dict(period_a=("2025-01-01", "2025-06-30"), period_b=("2025-07-01", "2025-12-31"))
    sampled = A.compare_from_aggregates(eng, "resolution_hours", n_boot=200, max_sample=150, **periods)
    assert sampled.sample and all(m == 150 < n for m, n in sampled.sample.values())
    d = json.loads(json.dumps(sampled.to_dict()))
    assert {k: tuple(v) for k, v in d["sample"].items()} == sampled.sample
    assert d["sample"]["a"][1] == sampled.a.n and d["sample"]["b"][1] == sampled.b.n
    assert sampled.table[["sample_a", "sample_b"]].iloc[0].tolist() == [150, 150]
    whole = A.compare_from_aggregates(eng, "resolution_hours", n_boot=200, **periods)
    assert not whole.sample
    d = json.loads(json.dumps(whole.to_dict()))
    assert d["sample"] == {} and "sample_a" not in whole.table.columns
    without = {k: v for k, v in d.items() if k != "sample"}
    assert list(without) == [c for c in whole.table.columns]  # the table: the same scalars as before


# --- funnel range checks: the engine path raises the row path's message ---------------------------------------
FUNNEL_START, FUNNEL_END = pd.Timestamp("2025-07-01"), pd.Timestamp("2025-12-31")


@pytest.fixture(scope="module")
def funnel_rows(demo_dir):
    """Billing's responses and tickets of the funnel window (the frames the row path is given)."""
    from tests.test_data import load_quiet

    ds = load_quiet(demo_dir)
    out = {}
    for table, date in (("responses", "response_date"), ("tickets", "created_at")):
        frame = ds.frame(table, department="Billing")
        d = pd.to_datetime(frame[date])
        out[table] = frame[(d >= FUNNEL_START) & (d < FUNNEL_END + pd.Timedelta(days=1))].reset_index(drop=True)
    ds.close()
    return out


def _both_errors(funnel_rows, table, edit, metric, by):
    """The funnel's error on the rows and on the engine (the same edited rows registered as the table)."""
    from helpers.errors import KitError
    from helpers.funnel import funnel, funnel_from_engine

    frame = funnel_rows[table].copy()
    edit(frame)
    errors = []
    with pytest.raises(KitError) as rows_error:
        funnel(frame, metric, by, min_n=2)
    errors.append(rows_error.value)
    with DuckDBEngine() as engine:
        engine.register(table, frame)
        with pytest.raises(KitError) as engine_error:
            funnel_from_engine(engine, metric, by, filters={"department": "billing"}, start=FUNNEL_START,
                               end=FUNNEL_END, min_n=2)
    errors.append(engine_error.value)
    return [(type(e).__name__, str(e)) for e in errors]


def _set(column, rows, value):
    def edit(frame):
        if pd.api.types.is_integer_dtype(frame[column].dtype) and not float(value).is_integer():
            frame[column] = frame[column].astype("float64")
        frame.loc[rows, column] = value
    return edit


@pytest.mark.parametrize("table, metric, by, edit, expected", [
    ("responses", "nps", "channel", _set("nps", [3, 8], 11), "2 NPS scores outside the scale 0-10 (integers) "
                                                            "(e.g. 11, 11)"),
    ("responses", "csat", "channel", _set("csat", [5], 6), "1 CSAT scores outside the scale 1-5 (integers) (e.g. 6)"),
    ("responses", "ces", "channel", _set("ces", [7], 7.5), "1 CES scores outside the scale 1..7 (e.g. 7.5)"),
    ("tickets", "fcr", "team", _set("contacts_to_resolve", [2], 0),
     "1 contacts_to_resolve values outside the scale integers >= 1 (e.g. 0)"),
])
def test_funnel_rating_off_its_scale_is_the_same_error_on_both_paths(funnel_rows, table, metric, by, edit, expected):
    """Before: the engine path counted NPS 11 as a promoter (and the row path did too); now both raise the KPI
    row path's message, naming the column's values and how many."""
    got = _both_errors(funnel_rows, table, edit, metric, by)
    assert got[0] == got[1] == ("KPIError", f"KPI {metric!r}: {expected}"), got


@pytest.mark.parametrize("metric", ["resolution_hours", "resolution_hours_mean", "first_response_hours"])
def test_funnel_negative_duration_is_the_same_error_on_both_paths(funnel_rows, metric):
    """A ticket answered or resolved before it was created: both paths name the ticket (the row path raised
    already; the engine path computed a funnel with a negative median)."""
    from helpers.kpis import _TIME_COLUMNS, KPIS

    later = _TIME_COLUMNS[KPIS[metric].column]

    def edit(frame):
        i = frame.index[frame[later].notna()][4]
        frame.loc[i, later] = pd.Timestamp(frame.loc[i, "created_at"]) - pd.Timedelta(hours=3)
        frame.loc[i, "team"] = None  # a ticket without a team still counts: the row path reads every row
        edit.ticket = frame.loc[i, "ticket_id"]

    got = _both_errors(funnel_rows, "tickets", edit, metric, "team")
    assert got[0] == got[1] == ("KPIError", f"KPI '{KPIS[metric].column}_hours': 1 tickets have {later} before "
                                            f"created_at (negative durations), e.g. [{edit.ticket!r}]"), got


def test_funnel_with_possible_values_is_unchanged_by_the_check(funnel_rows):
    """The check raises only on impossible values: a 10 and a 0 are NPS answers, and both paths still agree."""
    from helpers.funnel import funnel, funnel_from_engine

    frame = funnel_rows["responses"].copy()
    frame.loc[[3, 8], "nps"] = [10, 0]
    want = funnel(frame, "nps", "channel", min_n=2)
    with DuckDBEngine() as engine:
        engine.register("responses", frame)
        got = funnel_from_engine(engine, "nps", "channel", filters={"department": "billing"}, start=FUNNEL_START,
                                 end=FUNNEL_END, min_n=2)
    assert got.n_total == want.n_total and got.centre == pytest.approx(want.centre, abs=1e-9)


def test_a_company_kpi_left_out_says_why_on_the_index(demo_dir, tmp_path, monkeypatch):
    """Before: a company KPI that could not be computed (here: no tickets, so no first-contact resolution)
    silently vanished from the index. Now the runner's worker returns a note per KPI left out (shown with the
    run's warnings), and it reads rows under the kernels' row limit unless the operator set one."""
    import os
    import shutil

    from helpers.data import FRAME_ROW_LIMIT_ENV
    from helpers.reports import runner

    folder = tmp_path / "no_tickets"
    folder.mkdir()
    for table in ("customers", "responses", "org"):
        shutil.copy(demo_dir / f"{table}.parquet", folder / f"{table}.parquet")
    monkeypatch.delenv(FRAME_ROW_LIMIT_ENV, raising=False)
    seen = []
    real = runner.company_kpis_of
    monkeypatch.setattr(runner, "company_kpis_of",
                        lambda *a, **k: (seen.append(os.environ.get(FRAME_ROW_LIMIT_ENV)), real(*a, **k))[1])
    kpis, notes = runner.company_kpis_with_notes(str(folder), "2026-06-30")
    assert [e["kpi"] for e in kpis] == ["csat", "nps"]
    assert len(notes) == 1 and notes[0].startswith("The company's First-contact resolution for June 2026 is not "
                                                   "shown: "), notes
    assert "tickets" in notes[0].lower()
    assert seen == [runner.KERNEL_DEFAULTS[FRAME_ROW_LIMIT_ENV]]  # the limit while it ran ...
    assert FRAME_ROW_LIMIT_ENV not in os.environ  # ... and the worker's environment as it was after
