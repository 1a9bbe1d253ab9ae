"""helpers.voice_report: the voice-of-the-customer page's content, privacy switch, escaping and the contact KPI."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from helpers.data import Dataset, load_dataset
from helpers.voice import codebook_from_text, match_themes
from helpers.voice_report import contact_kpi, load_themes, prepare_voice_report, what_customers_say

IDS = re.compile(r"\b[CR]\d{7,8}\b")
HOSTILE = ['<script>alert("app")</script> The app crashed', "[click](javascript:alert(1)) app **bold**",
           "<img src=x onerror=alert(1)> app & <b>fees</b>"]
HOSTILE_CODEBOOK = """
themes:
  mobile_app:
    label: "<b>App</b> & [x](javascript:1)"
    any: [app, crash*]
  waiting:
    label: Waiting
    rating: attr_speed
    any: [wait*, slow]
"""


def _config(tmp_path: Path, data: Path, show_ids: bool) -> str:
    cfg = tmp_path / f"report_{show_ids}.yaml"
    cfg.write_text(f"data_source: {data}\nshow_customer_ids: {'true' if show_ids else 'false'}\n")
    return str(cfg)


def _html(report) -> str:
    return "".join([report.themes_table_html(), report.effects_table_html(), report.suggested_html(),
                    report.examples_html(), report.sentiment_table_html(), report.follow_up_html(max_rows=500)])


@pytest.fixture(scope="module")
def company(small_demo):
    return prepare_voice_report(data_source=str(small_demo))


def test_company_page_content(company, small_demo):
    r = company
    assert r.warnings == [] and r.ok and r.period == ("2025-11-01", "2026-10-31") and r.company_wide
    ds = load_dataset(small_demo, emit_warnings=False)
    n = ds.con.execute("SELECT count(*) FROM responses WHERE comment IS NOT NULL AND trim(comment) <> '' AND "
                       "response_date BETWEEN DATE '2025-11-01' AND DATE '2026-10-31'").fetchone()[0]
    assert r.n_comments == n > 0
    t = r.theme_table()
    assert list(t["theme"]) == list(r.shares.table["theme"]) and set(t["theme"]) == set(load_themes().names)
    assert t.loc[t["theme"] == "mobile_app", "unasked"].item() and not t.loc[t["theme"] == "waiting", "unasked"].item()
    # the costliest unasked theme is the one with the lowest adjusted effect whose interval is below 0
    worst = r.costliest_unasked()
    cand = t[t["unasked"] & (t["csat_adjusted_high"] < 0)]
    assert worst["theme"] == cand.sort_values("csat_adjusted")["theme"].iloc[0]
    assert worst["label"] in r.headline() and "95% CI" in r.headline()
    assert r.findings_markdown().count("\n- ") <= 4 and "95% CI" in r.findings_markdown()
    assert r.expected_charts() == 3
    assert set(r.sentiment["tone"]) == {"negative", "neutral", "positive"}
    assert r.sentiment["n"].sum() == n
    # the follow-up list: unhappy customers of the last month who wrote a comment
    fu = r.follow_up.table
    assert len(fu) > 0 and ((fu["nps"] <= 6) | (fu["csat"] <= 1)).all() and fu["comment"].notna().all()
    assert fu["response_date"].min() >= pd.Timestamp("2026-10-01")
    # the demo records when unhappy customers were contacted (responses.followed_up_at): the KPI is measured
    assert r.contact.estimate is not None and not r.contact.missing
    assert "not measured" not in r.follow_up_markdown()
    assert f"n = {r.contact.estimate.n:,}" in r.follow_up_markdown() and "95% CI" in r.contact.markdown()


def test_company_page_never_shows_ids_or_comments_of_customers(company, small_demo, tmp_path):
    html = company.follow_up_html(max_rows=500)
    assert not IDS.search(html)
    assert not any(c in html for c in company.follow_up.table["comment"] if len(c) > 25)
    assert "Customers to call back" in html
    allowed = prepare_voice_report(data_source=str(small_demo), report_config=_config(tmp_path, small_demo, True))
    assert not allowed.show_customer_ids and not IDS.search(_html(allowed))  # the setting is for departments only


def test_department_page_lists_customers_with_ids_only_when_allowed(small_demo, tmp_path):
    hidden = prepare_voice_report(department="billing", data_source=str(small_demo),
                                  report_config=_config(tmp_path, small_demo, False))
    assert hidden.department == "Billing" and not hidden.company_wide
    html = hidden.follow_up_html(max_rows=500)
    assert not IDS.search(_html(hidden)) and "Comment" in html
    assert (hidden.follow_up.table["department"] == "Billing").all()
    assert "ids are hidden" in hidden.follow_up_markdown()
    shown = prepare_voice_report(department="Billing", data_source=str(small_demo),
                                 report_config=_config(tmp_path, small_demo, True))
    ids = set(IDS.findall(shown.follow_up_html(max_rows=500)))
    assert ids and ids == set(shown.follow_up.table["customer_id"]) | set(shown.follow_up.table["response_id"])
    unknown = prepare_voice_report(department="nope", data_source=str(small_demo))
    assert unknown.warnings and "not in the data" in unknown.warnings[0] and not unknown.ok


@pytest.fixture(scope="module")
def hostile_demo(small_demo, tmp_path_factory) -> Path:
    """The small demo with hostile comments on Billing's unhappy answers of October 2026."""
    out = tmp_path_factory.mktemp("hostile") / "data"
    shutil.copytree(small_demo, out)
    t = pq.read_table(out / "responses.parquet")
    df = t.select(["department", "response_date", "nps", "csat"]).to_pandas()
    pick = ((df["department"] == "Billing") & (pd.to_datetime(df["response_date"]) >= "2026-10-01")
            & ((df["nps"] <= 6) | (df["csat"] <= 1))).to_numpy()
    assert pick.sum() >= 3
    texts = np.array([HOSTILE[i % len(HOSTILE)] for i in range(len(df))], dtype=object)
    comment = pc.if_else(pa.array(pick), pa.array(texts, type=pa.string()), t["comment"])
    pq.write_table(t.set_column(t.schema.get_field_index("comment"), "comment", comment), out / "responses.parquet")
    return out


def test_every_text_is_escaped(hostile_demo, tmp_path):
    cb_file = tmp_path / "themes.yaml"
    cb_file.write_text(HOSTILE_CODEBOOK)
    for dept in ("all", "billing"):
        r = prepare_voice_report(department=dept, data_source=str(hostile_demo), codebook=str(cb_file),
                                 report_config=_config(tmp_path, hostile_demo, True))
        html = _html(r)
        assert "<script" not in html and "<img" not in html and "<b>" not in html, dept
        md = r.findings_markdown() + r.headline_markdown() + r.follow_up_markdown() + r.suggested_markdown()
        assert "<b>" not in md and "](javascript" not in md and "[x]" not in md, dept
        if dept == "billing":
            assert "&lt;script&gt;alert(&quot;app&quot;)&lt;/script&gt;" in html  # shown, as text
            assert "&lt;b&gt;App&lt;/b&gt; &amp;" in html
    say = what_customers_say(load_dataset(hostile_demo, emit_warnings=False), "Billing", "2026-10-01", "2026-10-31",
                             codebook_from_text(HOSTILE_CODEBOOK))
    assert "<script" not in say.html() and "<script" not in say.markdown() and "](javascript" not in say.markdown()
    assert any(h in say.examples for h in HOSTILE)  # raw in the object, escaped on output


def test_what_customers_say(small_demo):
    ds = load_dataset(small_demo, emit_warnings=False)
    cb = load_themes()
    say = what_customers_say(ds, "Technical Support", "2025-11-01", "2026-10-31", cb)
    assert 0 < len(say.table) <= 3 and len(say.examples) <= 3
    assert say.table["share"].is_monotonic_decreasing
    # shares and the change against the previous 12 months, counted directly
    r = ds.responses
    r = r[(r["department"] == "Technical Support") & r["comment"].notna()]
    d = pd.to_datetime(r["response_date"])
    now, before = r[(d >= "2025-11-01") & (d <= "2026-10-31")], r[(d >= "2024-11-01") & (d <= "2025-10-31")]
    fn, fb = match_themes(now["comment"], cb), match_themes(before["comment"], cb)
    for row in say.table.itertuples():
        assert row.share == pytest.approx(100 * fn[row.theme].mean())
        assert row.change == pytest.approx(100 * (fn[row.theme].mean() - fb[row.theme].mean()))
    assert set(say.examples) <= set(now["comment"])
    assert say.markdown().startswith("- **") and "95% CI" in say.markdown()
    empty = what_customers_say(ds, "Technical Support", "2030-01-01", "2030-12-31", cb)
    assert empty.n_comments == 0 and "No comments" in empty.markdown()


def test_contact_kpi_counts_answers_followed_up_in_time():
    con = duckdb.connect()
    day = pd.Timestamp("2026-03-01")
    rows = pd.DataFrame({
        "response_id": [f"R{i}" for i in range(8)], "department": "Billing",
        "response_date": [day] * 6 + [pd.Timestamp("2026-03-31")] * 2,
        "nps": [2.0, 3.0, 5.0, 9.0, np.nan, 6.0, 1.0, 0.0], "csat": [3.0, 3.0, 3.0, 5.0, 1.0, 2.0, 1.0, 1.0],
        "followed_up_at": [day + pd.Timedelta(hours=h) for h in (5, 47.9, 50)] + [pd.NaT, day + pd.Timedelta(hours=1),
                                                                                   pd.NaT, pd.NaT, pd.NaT]})
    con.register("_r", rows)
    con.execute("CREATE TABLE responses AS SELECT * FROM _r")
    ds = Dataset(con, "synthetic", "x", [], {})
    k = contact_kpi(ds, "2026-03-01", "2026-03-31", hours=48)
    # unhappy: R0, R1, R2 (NPS), R4 (CSAT 1), R5 (NPS 6); R6/R7 answered on the last day: too young to judge
    assert k.estimate.n == 5 and k.estimate.value == pytest.approx(100 * 3 / 5)  # R0, R1, R4 within 48 h
    from helpers.kpis import proportion

    ref = proportion(3, 5)
    assert (k.estimate.ci_low, k.estimate.ci_high) == pytest.approx((ref.ci_low, ref.ci_high))
    assert "60% of unhappy customers" in k.markdown() and "n = 5" in k.markdown()
    none = contact_kpi(ds, "2027-01-01", "2027-01-31")
    assert none.estimate is None and "No unhappy answers" in none.missing
    # without the column: not measured, and the sentence names the column to add
    con.execute("ALTER TABLE responses DROP COLUMN followed_up_at")
    absent = contact_kpi(Dataset(con, "synthetic", "x", [], {}), "2026-03-01", "2026-03-31")
    assert absent.estimate is None and "followed_up_at" in absent.missing and "not measured" in absent.markdown()
