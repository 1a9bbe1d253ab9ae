"""The department page's closed loop (issue 13): "Customers to call back" and the costliest unasked theme in
"What customers say" (helpers.voice_report.customers_to_call_back, costliest_unasked)."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from helpers.data import load_dataset
from helpers.voice import codebook_from_text
from helpers.voice_report import (CALL_BACK_LIMIT, contact_kpi, costliest_unasked, customers_to_call_back, load_themes,
                                  what_customers_say)

IDS = re.compile(r"\b[CR]\d{7,8}\b")
END = pd.Timestamp("2026-10-31")


@pytest.fixture(scope="module")
def ds(small_demo):
    return load_dataset(small_demo, emit_warnings=False)


def _expected(ds, department: str, start, end) -> pd.DataFrame:
    """The unhappy answers with a comment nobody had followed up by the end of ``end``, counted in pandas."""
    r = ds.responses
    day = pd.to_datetime(r["response_date"])
    followed = pd.to_datetime(r["followed_up_at"])
    keep = ((r["department"] == department) & (day >= start) & (day <= end)
            & ((r["nps"] <= 6) | (r["csat"] <= 1)) & r["comment"].fillna("").str.strip().ne("")
            & (followed.isna() | (followed >= end + pd.Timedelta(days=1))))
    return r[keep]


def test_call_back_list_is_the_unhappy_commenters_not_followed_up(ds):
    end = pd.Timestamp("2026-10-15")
    calls = customers_to_call_back(ds, "Delivery", end, weeks=26, show_customer_ids=True, limit=500)
    start = end - pd.Timedelta(days=7 * 26 - 1)
    expected = _expected(ds, "Delivery", start, end)
    assert calls.start == start and calls.total == len(expected) > 5
    assert set(calls.table["response_id"]) == set(expected["response_id"])
    # a call made after the report's date does not count yet: some listed answers were followed up later
    later = expected["followed_up_at"].notna()
    assert later.any()
    assert calls.table["response_date"].is_monotonic_decreasing  # most recent first
    # the contact KPI is the department's, over the same weeks
    ref = contact_kpi(ds, start, end, 48, "Delivery")
    assert calls.contact.estimate.value == ref.estimate.value and calls.contact.estimate.n == ref.estimate.n
    html = calls.html()
    assert "Contacted within 48 hours:" in html and f"n = {ref.estimate.n:,}" in html and "95% CI" in html


def test_call_back_list_is_bounded_and_says_how_many_more(ds):
    full = customers_to_call_back(ds, "Delivery", END, weeks=26, show_customer_ids=True, limit=500)
    short = customers_to_call_back(ds, "Delivery", END, weeks=26, show_customer_ids=True, limit=3)
    assert short.total == full.total > 3 and len(short.table) == 3
    assert list(short.table["response_id"]) == list(full.table["response_id"][:3])  # the 3 most recent
    assert f"And {full.total - 3:,} more" in short.html() and "the 3 most recent first" in short.html()
    assert CALL_BACK_LIMIT == 20 and len(customers_to_call_back(ds, "Delivery", END, weeks=52).table) <= 20


def test_customer_ids_only_when_allowed(ds):
    hidden = customers_to_call_back(ds, "Delivery", END, weeks=26)
    shown = customers_to_call_back(ds, "Delivery", END, weeks=26, show_customer_ids=True)
    assert hidden.total == shown.total > 0
    assert not {"customer_id", "response_id", "ticket_id"} & set(hidden.table.columns)
    assert not IDS.search(hidden.html()) and "show_customer_ids: true" in hidden.html()
    assert "<th>Customer</th>" in shown.html() and "show_customer_ids" not in shown.html()
    assert set(IDS.findall(shown.html())) == set(shown.table["customer_id"])


def test_without_followed_up_at_one_line_says_what_is_missing(small_demo, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(small_demo, out)
    t = pq.read_table(out / "responses.parquet")
    pq.write_table(t.drop(["followed_up_at"]), out / "responses.parquet")
    calls = customers_to_call_back(load_dataset(out, emit_warnings=False), "Delivery", END)
    html = calls.html()
    assert calls.total == 0 and calls.missing and html.count("<p") == 1 and "<table" not in html
    assert "followed_up_at" in html and "who is still waiting" in html


def test_hostile_comments_are_escaped(small_demo, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(small_demo, out)
    t = pq.read_table(out / "responses.parquet")
    df = t.select(["department", "response_date", "nps", "csat"]).to_pandas()
    pick = ((df["department"] == "Billing") & (pd.to_datetime(df["response_date"]) >= "2026-10-04")
            & ((df["nps"] <= 6) | (df["csat"] <= 1))).to_numpy()
    assert pick.sum() >= 1
    hostile = pa.array(np.where(pick, '<script>alert("x")</script> & <b>app</b>', None), type=pa.string())
    t = t.set_column(t.schema.get_field_index("comment"), "comment",
                     pc.if_else(pa.array(pick), hostile, t["comment"]))
    t = t.set_column(t.schema.get_field_index("followed_up_at"), "followed_up_at",
                     pc.if_else(pa.array(pick), pa.nulls(len(t), t["followed_up_at"].type), t["followed_up_at"]))
    pq.write_table(t, out / "responses.parquet")
    calls = customers_to_call_back(load_dataset(out, emit_warnings=False), "Billing", END)
    html = calls.html()
    assert calls.total >= pick.sum() and "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;app&lt;/b&gt;" in html


CODEBOOK = """
themes:
  waiting: {label: Waiting, rating: attr_speed, any: [wait*]}
  app: {label: Mobile app, any: [app]}
  price: {label: Price increases, any: [price]}
  fees: {label: "<b>Fees</b>", any: [fee]}
"""


def test_costliest_unasked_picks_the_most_negative_clear_unasked_effect():
    cb = codebook_from_text(CODEBOOK)
    effects = pd.DataFrame({
        "theme": ["waiting", "app", "price", "fees"], "label": ["Waiting", "Mobile app", "Price increases",
                                                               "<b>Fees</b>"],
        "mentions": [500, 40, 60, 12],
        "csat_adjusted": [-1.5, -0.6, -0.3, -0.9], "csat_adjusted_low": [-1.7, -0.9, -0.5, -2.0],
        "csat_adjusted_high": [-1.3, -0.3, -0.1, 0.2]})
    # waiting is asked by a rating, fees' interval includes 0: the app is the costliest unasked problem
    assert costliest_unasked(effects, cb)["theme"] == "app"
    assert costliest_unasked(effects[effects["theme"] != "app"], cb)["theme"] == "price"
    assert costliest_unasked(effects[effects["theme"].isin(["waiting", "fees"])], cb) is None
    nan = effects.assign(csat_adjusted=np.nan, csat_adjusted_low=np.nan, csat_adjusted_high=np.nan)
    assert costliest_unasked(nan, cb) is None and costliest_unasked(pd.DataFrame(), cb) is None


def test_what_customers_say_names_the_costliest_unasked_theme(ds):
    from helpers.voice_effects import theme_effects

    cb = load_themes()
    say = what_customers_say(ds, None, "2025-11-01", "2026-10-31", cb)  # all departments: enough mentions
    ref = theme_effects(ds, cb, "2025-11-01", "2026-10-31", None).table.set_index("theme")
    c = say.costliest
    assert c["theme"] == "mobile_app" and cb[c["theme"]].unasked
    assert c["csat_adjusted"] == pytest.approx(ref.loc["mobile_app", "csat_adjusted"])
    low, high = abs(ref.loc["mobile_app", "csat_adjusted_high"]), abs(ref.loc["mobile_app", "csat_adjusted_low"])
    sentence = f"(95% CI {low:.2f} to {high:.2f}; {int(ref.loc['mobile_app', 'mentions']):,} comments mention it)"
    assert sentence in say.html() and "<strong>Mobile app</strong>" in say.html()
    md = say.markdown().replace("\\", "")  # md_escape's backslashes
    assert "Mobile app" in md and "the share of detractors among them is " in md and "points higher (95% CI" in md
    # a department where no unasked theme is clear shows nothing about it
    quiet = what_customers_say(ds, "Billing", "2025-11-01", "2026-10-31", cb)
    assert quiet.costliest is None and "costliest" not in quiet.html() and "costliest" not in quiet.markdown()


def test_effect_intervals_in_markdown_keep_two_decimals(ds):
    """Regression: the CSAT effect's interval was printed with the default decimals ("95% CI 0 to 0")."""
    say = what_customers_say(ds, "Technical Support", "2025-11-01", "2026-10-31", load_themes())
    md = say.markdown()
    assert "(95% CI 0 to 0)" not in md
    for r in say.table.dropna(subset=["csat_adjusted"]).itertuples():
        lo, hi = sorted((r.csat_adjusted_low, r.csat_adjusted_high))
        assert f"{lo:.2f}".replace("-", "") in md.replace("\\", "").replace("-", "")


def test_costliest_sentence_reads_the_detractor_change_both_ways():
    from helpers.voice_report import CustomersSay

    row = {"theme": "app", "label": "Mobile app", "mentions": 40, "csat_adjusted": -0.6, "csat_adjusted_low": -0.9,
           "csat_adjusted_high": -0.3, "detractor_change": 12.0, "detractor_change_low": 4.0,
           "detractor_change_high": 20.0}
    say = CustomersSay("Billing", ("2025-11-01", "2026-10-31"), 100, pd.DataFrame(), [], row)
    text = say.costliest_sentence()
    assert "CSAT 0.60 points lower" in text and "(95% CI 0.30 to 0.90; 40 comments mention it)" in text
    assert "is 12 points higher (95% CI 4 to 20)" in text
    say.costliest = {**row, "detractor_change": -6.0, "detractor_change_low": -10.0, "detractor_change_high": -2.0}
    assert "is 6 points lower (95% CI 2 to 10)" in say.costliest_sentence()
    say.costliest = {**row, "label": "<b>App</b>"}
    assert "<b>" not in say.costliest_sentence(html=True) and "<strong>&lt;b&gt;App&lt;/b&gt;</strong>" in \
        say.costliest_sentence(html=True)


def test_survey_only_data_lists_customers_without_a_team_column(small_demo, tmp_path):
    folder = tmp_path / "survey"
    folder.mkdir()
    shutil.copy(small_demo / "responses.parquet", folder)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        survey = load_dataset(folder, emit_warnings=False)
    calls = customers_to_call_back(survey, "Delivery", END, weeks=26)
    assert calls.total > 0 and not calls.has_tickets
    html = calls.html()
    assert "Team (last agent)" not in html and "no ticket in the 30 days before" not in html and "Comment" in html
    with_tickets = customers_to_call_back(load_dataset(small_demo, emit_warnings=False), "Delivery", END, weeks=26)
    assert with_tickets.total == calls.total and "Team (last agent)" in with_tickets.html()
