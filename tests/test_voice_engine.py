"""Issue 14/16: the voice of the customer from engine aggregates, bounded reads and one computation per run.

The row path stays the reference: shares are checked against the comments read as rows and matched in pandas,
effects from patterns against the row fit (statsmodels OLS HC3 + Logit on every comment), the seeded comment
sample against the rows (all of them when it is not smaller; a subset, seeded, whose theme share lies in the
population's interval when it is), the bounded follow-up list against the unbounded one, and the department
section against the per-department row computation it replaced.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from helpers.data import load_dataset
from helpers.engine import DuckDBEngine
from helpers.reports.loader import date_parameter_problem
from helpers.voice import _connect, _match_text_sql, accent_table, load_comments, match_themes, theme_flags_sql
from helpers.voice_effects import (PATTERN_WEIGHT, comment_sample, follow_up_list, theme_effect_patterns,
                                   theme_effects, theme_effects_from_patterns, theme_shares, theme_trends,
                                   theme_verbatims)
from helpers.voice_report import _MEMO, costliest_unasked, load_themes, what_customers_say, window_themes

START, END = "2025-11-01", "2026-10-31"


@pytest.fixture(scope="module")
def ds(small_demo):
    return load_dataset(small_demo, emit_warnings=False)


@pytest.fixture(scope="module")
def cb():
    return load_themes()


@pytest.fixture()
def engine(ds):
    with DuckDBEngine(ds.con) as eng:
        yield eng


# --- the date check shared by the drivers and voice pages ------------------------------------------------------

def test_date_parameter_problem_names_the_first_bad_date():
    assert date_parameter_problem(as_of="", period_end="2026-10-31", period_start=None) is None
    assert date_parameter_problem(as_of="2026-13-01", period_end="nope") == (
        "as_of '2026-13-01' is not an ISO date (YYYY-MM-DD)")
    assert date_parameter_problem(as_of="", period_end="31/31/2026") == (
        "period_end '31/31/2026' is not an ISO date (YYYY-MM-DD)")
    assert date_parameter_problem(period_start=["2026-01-01"]).startswith("period_start ")  # not a deep TypeError


# --- the portable matcher (for Spark) equals DuckDB's ------------------------------------------------------------

def test_portable_matcher_text_equals_strip_accents_on_every_character_of_its_table():
    src, dst = accent_table()
    assert len(src) > 1000 and "é" in src and "\u0301" in src and 0 < len(dst) < len(src)
    chars = [chr(i) for i in range(0xC0, 0x2000) if not 0xD800 <= i <= 0xDFFF]
    texts = ["Café, DON’T!", "Ångström naïve façade", "e\u0301te\u0301", "Việt Nam", "Привет й"] + chars
    con = _connect()
    try:
        con.register("t", pd.DataFrame({"x": texts}))
        rows = con.execute(f"SELECT {_match_text_sql('x')} AS duck, {_match_text_sql('x', True)} AS portable "
                           "FROM t").df()
    finally:
        con.close()
    different = rows[rows["duck"] != rows["portable"]]
    assert different.empty, different.head()
    assert rows["duck"].iloc[0] == "cafe, don’t!" and rows["portable"].iloc[2] == "ete"


def test_portable_theme_flags_equal_duckdb_flags_on_the_demo(ds, cb):
    cols = ["response_id"]
    duck = ds.con.execute(theme_flags_sql(cb, "responses", "comment", cols) + " ORDER BY response_id").df()
    portable = ds.con.execute(theme_flags_sql(cb, "responses", "comment", cols, portable=True)
                              + " ORDER BY response_id").df()
    assert len(duck) > 1000 and duck[cb.names].to_numpy().any()
    pd.testing.assert_frame_equal(duck, portable)


def test_engine_queries_transpile_to_spark_sql(ds, cb):
    """The window aggregates' SQL as the Spark engine would send it: no DuckDB-only function left."""
    from helpers.engine.spark_engine import to_spark_sql
    from helpers.voice_effects import _flags_sql

    class NotDuckDB(DuckDBEngine):  # only the engine's name chooses the matcher's text
        name = "spark"

    sql = _flags_sql(NotDuckDB(ds.con), cb, ["department", "csat"], "department = 'Billing'")
    out = to_spark_sql(sql)
    assert "STRIP_ACCENTS" not in out.upper() and "TRANSLATE(" in out.upper() and "RLIKE" in out.upper()
    assert "strip_accents" in _flags_sql(DuckDBEngine(ds.con), cb, ["csat"], "")  # DuckDB keeps its own


# --- shares, trends and verbatims on an engine equal the rows ----------------------------------------------------

def test_theme_shares_on_the_engine_equal_the_comments_matched_as_rows(ds, cb, engine):
    for dept in (None, "Billing"):
        rows = load_comments(ds, START, END, dept)
        flags = match_themes(rows["comment"], cb)
        got = theme_shares(engine, cb, START, END, dept)
        assert got.n_comments == len(rows) > 100
        mentions = got.table.set_index("theme")["mentions"]
        assert mentions.to_dict() == {n: int(flags[n].sum()) for n in cb.names}
        pd.testing.assert_frame_equal(got.table, theme_shares(ds, cb, START, END, dept).table)
    pd.testing.assert_frame_equal(theme_trends(engine, cb, "month", None, END).table,
                                  theme_trends(ds, cb, "month", None, END).table)
    pd.testing.assert_frame_equal(theme_verbatims(engine, cb, START, END, "Delivery", n=3, tone="negative"),
                                  theme_verbatims(ds, cb, START, END, "Delivery", n=3, tone="negative"))


# --- effects from patterns equal the row fit ---------------------------------------------------------------------

@pytest.mark.parametrize("dept", [None, "Technical Support"])
def test_theme_effects_from_patterns_equal_the_row_fit(ds, cb, engine, dept):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = theme_effects(ds, cb, START, END, dept).table  # statsmodels on every comment: the reference
        patterns = theme_effect_patterns(engine, cb, START, END, dept, ds.attributes)
        got = theme_effects_from_patterns(patterns, cb.names, ds.attributes, cb.labels).table
    assert len(patterns) < patterns[PATTERN_WEIGHT].sum()  # fewer patterns than comments
    assert patterns[PATTERN_WEIGHT].sum() == len(load_comments(ds, START, END, dept))
    assert list(got["theme"]) == list(rows["theme"])
    assert got["csat_adjusted"].notna().sum() >= 3 and got["detractor_change"].notna().sum() >= 3
    for c in ("mentions", "n_csat", "n_nps"):
        pd.testing.assert_series_equal(got[c], rows[c], check_dtype=False)
    numeric = rows.select_dtypes("number").columns
    pd.testing.assert_frame_equal(got[numeric], rows[numeric], check_dtype=False, rtol=1e-6, atol=1e-9)


def test_pattern_hc3_and_welch_equal_statsmodels_and_scipy_on_synthetic_weights():
    """Known truth: a frame of repeated rows; the pattern fit (weights) equals the fit on the repeated rows."""
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame({"csat": rng.integers(1, 6, n).astype(float), "nps": rng.integers(0, 11, n).astype(float),
                          "a": rng.integers(1, 4, n).astype(float), "t1": rng.random(n) < 0.3,
                          "t2": rng.random(n) < 0.4})
    frame.loc[frame["t1"], "csat"] = np.clip(frame.loc[frame["t1"], "csat"] - 1, 1, 5)
    frame.loc[::17, "nps"] = np.nan
    patterns = frame.groupby(list(frame.columns), dropna=False).size().rename(PATTERN_WEIGHT).reset_index()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from helpers.voice_effects import theme_effects_frame

        want = theme_effects_frame(frame, ["t1", "t2"], ["a"], min_mentions=5).table
        got = theme_effects_from_patterns(patterns, ["t1", "t2"], ["a"], min_mentions=5).table
    numeric = want.select_dtypes("number").columns
    pd.testing.assert_frame_equal(got[numeric], want[numeric], check_dtype=False, rtol=1e-6, atol=1e-9)
    assert got["csat_adjusted"].iloc[0] < 0  # t1 lowers CSAT by construction


# --- the seeded, bounded comment sample -------------------------------------------------------------------------

def test_comment_sample_is_all_rows_when_small_and_a_seeded_subset_otherwise(ds, cb, engine):
    rows = load_comments(ds, START, END)
    full = comment_sample(engine, START, END, None, size=len(rows))
    pd.testing.assert_frame_equal(full, rows)
    assert full.attrs == {"population": len(rows), "size": len(rows), "seed": 0, "sampled": False}
    a = comment_sample(engine, START, END, None, size=600, seed=11)
    again = comment_sample(engine, START, END, None, size=600, seed=11)
    other = comment_sample(engine, START, END, None, size=600, seed=12)
    assert a.attrs == {"population": len(rows), "size": 600, "seed": 11, "sampled": True}
    pd.testing.assert_frame_equal(a, again)
    assert not a.equals(other)
    assert a["response_date"].is_monotonic_increasing
    assert set(a["comment"]) <= set(rows["comment"])
    # the sample's theme share lies in the population share's 99.9% interval (finite-population SE)
    p_all = match_themes(rows["comment"], cb).mean()
    p_sample = match_themes(a["comment"], cb).mean()
    fpc = (len(rows) - 600) / (len(rows) - 1)
    se = np.sqrt(p_all * (1 - p_all) / 600 * fpc)
    assert (np.abs(p_sample - p_all) <= 3.29 * se + 1e-12).all()


# --- bounded follow-up lists -------------------------------------------------------------------------------------

def test_bounded_follow_up_list_is_the_head_of_the_full_list_with_its_total(ds, cb):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = follow_up_list(ds, cb, "2026-08-01", END, None, show_customer_ids=True, require_comment=True)
        short = follow_up_list(ds, cb, "2026-08-01", END, None, show_customer_ids=True, require_comment=True,
                               limit=7, teams=True)
    assert len(full.table) > 7 and len(short.table) == 7
    assert short.total == full.total == len(full.table)
    assert short.n_teams == full.n_teams and short.oldest == full.oldest
    pd.testing.assert_frame_equal(short.table, full.table.head(7))
    want = full.table.groupby(["department", "team"], dropna=False).agg(
        customers=("days_waiting", "size"), oldest=("days_waiting", "max"), median_wait=("days_waiting", "median"),
        open_tickets=("open_tickets", lambda x: int((x > 0).sum())))
    want = want.reset_index().sort_values(["customers", "oldest"], ascending=False).reset_index(drop=True)
    pd.testing.assert_frame_equal(short.teams, want, check_dtype=False)
    assert short.summary() == full.summary()


# --- what customers say: equal to the row computation, once per run ----------------------------------------------

def _reference_customers_say(ds, cb, department, start, end, n_themes=3, n_examples=3):
    """The department section as it was computed from the department's rows before issue 16."""
    from helpers.kpis import compare_proportions

    start, end = pd.Timestamp(start), pd.Timestamp(end)
    now = theme_shares(ds, cb, start, end, department)
    length = end - start
    before = theme_shares(ds, cb, start - length - pd.Timedelta(days=1), start - pd.Timedelta(days=1), department)
    t = now.table.head(n_themes).copy()
    prev = before.table.set_index("theme")
    t["change"] = [compare_proportions(int(prev.loc[r.theme, "mentions"]), int(prev.loc[r.theme, "comments"]),
                                       int(r.mentions), int(r.comments)).difference for r in t.itertuples()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        effects = theme_effects(ds, cb, start, end, department).table
    t["csat_adjusted"] = t["theme"].map(effects.set_index("theme")["csat_adjusted"])
    verb = theme_verbatims(ds, cb, start, end, department, n=n_examples, tone="negative")
    examples = []
    for rank in range(n_examples):
        for theme in t["theme"]:
            v = verb[verb["theme"] == theme]["comment"].tolist()
            if rank < len(v) and v[rank] not in examples and len(examples) < n_examples:
                examples.append(v[rank])
    return now.n_comments, t, examples, costliest_unasked(effects, cb)


@pytest.mark.parametrize("dept", [None, "Billing", "Customer Service", "Technical Support"])
def test_what_customers_say_equals_the_row_computation(ds, cb, dept):
    say = what_customers_say(ds, dept, START, END, cb, cache_folder=None)
    n, table, examples, costliest = _reference_customers_say(ds, cb, dept, START, END)
    assert say.n_comments == n > 0
    assert list(say.table["theme"]) == list(table["theme"])
    np.testing.assert_allclose(say.table["share"], table["share"])
    np.testing.assert_allclose(say.table["change"], table["change"])
    np.testing.assert_allclose(say.table["csat_adjusted"], table["csat_adjusted"], rtol=1e-6)
    assert say.examples == examples
    assert (say.costliest is None) == (costliest is None)
    if costliest is not None:
        assert say.costliest["theme"] == costliest["theme"]
        assert say.costliest["csat_adjusted"] == pytest.approx(costliest["csat_adjusted"], rel=1e-6)


def test_customers_say_is_computed_once_per_run_and_data(ds, cb, tmp_path, monkeypatch):
    """Issue 16: six department pages and the voice page share one computation. The second call (another
    department, or the same) is a cache hit with identical HTML; another process reads the run folder's file;
    a changed data fingerprint misses."""
    import helpers.voice_report as V

    calls = []
    real = V._compute_window_themes

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(V, "_compute_window_themes", counting)
    _MEMO.clear()
    folder = tmp_path / "cache" / "voice"
    first = what_customers_say(ds, "Billing", START, END, cb, cache_folder=folder)
    again = what_customers_say(ds, "Billing", START, END, cb, cache_folder=folder)
    other = what_customers_say(ds, "Delivery", START, END, cb, cache_folder=folder)
    shared = window_themes(ds, START, END, cb, cache_folder=folder)  # what the voice page reads
    assert len(calls) == 1 and again is first and first.html() == again.html()
    assert other.n_comments > 0 and shared.shares(cb, None).n_comments > first.n_comments
    assert len(list(folder.glob("window-themes-*.pkl"))) == 1
    _MEMO.clear()  # another page's process: no memo, the run folder's file
    from_file = what_customers_say(ds, "Billing", START, END, cb, cache_folder=folder)
    assert len(calls) == 1 and from_file.html() == first.html()
    _MEMO.clear()
    monkeypatch.setattr(ds, "fingerprint", ds.fingerprint + "-changed")
    changed = what_customers_say(ds, "Billing", START, END, cb, cache_folder=folder)
    assert len(calls) == 2 and changed.html() == first.html()  # same data, so the same result, recomputed
    assert len(list(folder.glob("window-themes-*.pkl"))) == 2
    _MEMO.clear()


def test_welch_interval_of_constant_ratings_is_undefined_like_scipy_not_an_error():
    """Fuzz regression: every csat equal (variance 0 on both sides) raised ZeroDivisionError in the pattern
    path; the row path (scipy) gives the empty interval (0, 0)."""
    import numpy as np
    from scipy import stats

    from helpers.voice_effects import _welch_interval

    low, high = _welch_interval(4.0, 3.0, 0.0, 6.0, 3.0, 0.0, 0.95)
    ref = stats.ttest_ind([3.0] * 4, [3.0] * 6, equal_var=False).confidence_interval(0.95)
    assert (low, high) == (ref.low, ref.high) == (0.0, 0.0)  # scipy: df 1, standard error 0
    low, high = _welch_interval(4.0, 3.5, 0.5, 6.0, 3.0, 0.4, 0.95)  # the ordinary case is unchanged
    a, b = [3.0, 4.0, 3.0, 4.0], [3.0, 3.0, 2.0, 4.0, 3.0, 3.0]
    n1, m1, v1 = 4.0, np.mean(a), np.var(a, ddof=1)
    n0, m0, v0 = 6.0, np.mean(b), np.var(b, ddof=1)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert np.allclose(_welch_interval(n1, m1, v1, n0, m0, v0, 0.95), (ref.low, ref.high))


def test_window_effects_are_fitted_on_a_stated_seeded_sample_above_the_bound(ds, cb, monkeypatch):
    """Issue 14 (10M customers: the effects' patterns grew with the comments, 9.5 GB in a department kernel):
    above ``EFFECT_SAMPLE`` comments the effects are fitted on a seeded hash sample of about that many, stated
    on the page; the theme shares stay exact (the same as without a sample)."""
    import helpers.voice_report as V

    _MEMO.clear()
    exact = window_themes(ds, START, END, cb, cache_folder=None)
    population = exact.shares(cb, None).n_comments
    assert exact.effect_sample is None and exact.effects(cb, None).sample_note == ""
    monkeypatch.setattr(V, "EFFECT_SAMPLE", population // 3)
    _MEMO.clear()
    sampled = window_themes(ds, START, END, cb, cache_folder=None)
    _MEMO.clear()
    again = window_themes(ds, START, END, cb, cache_folder=None)
    size = sampled.effect_sample["size"]
    assert sampled.effect_sample["population"] == population
    assert 0.7 * population / 3 < size < 1.3 * population / 3  # a hash sample of about the bound
    assert int(sampled.patterns[PATTERN_WEIGHT].sum()) == size == again.effect_sample["size"]  # seeded
    pd.testing.assert_frame_equal(sampled.shares(cb, None).table, exact.shares(cb, None).table)
    pd.testing.assert_frame_equal(sampled.shares(cb, "Billing").table, exact.shares(cb, "Billing").table)
    effects = sampled.effects(cb, None)
    assert f"{size:,} of the {population:,} comments" in effects.sample_note
    assert effects.sample_note in effects.summary()
    assert effects.table["mentions"].sum() < exact.effects(cb, None).table["mentions"].sum()
    _MEMO.clear()
