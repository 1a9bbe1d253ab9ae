"""The explorer's "What customers write" helpers (helpers.explore.comment_themes, suggest_comment_themes,
search_period_comments): shares equal an independent count, suggestions become valid codebook entries that find
their own examples, the search equals a plain regular expression, every text is escaped, and the codebook is an
argument (never read from params by the analysis)."""
from __future__ import annotations

import re

import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from helpers import explore
from helpers.data import load_dataset
from helpers.errors import KitError
from helpers.voice import codebook_from_text, match_themes
from helpers.voice_report import load_themes

PERIOD = ("2025-01-01", "2026-06-30")  # the demo's app problem (2026-01-12 to 2026-04-12) and price increase


@pytest.fixture(scope="module")
def demo(small_demo):
    ds = load_dataset(small_demo, emit_warnings=False)
    periods = explore.explorer_periods(ds, *PERIOD)
    return ds, periods


def _period_comments(ds, periods) -> pd.DataFrame:
    r = ds.responses
    r = r[r["response_date"].between(periods.start, periods.end)]
    return r[r["comment"].notna() & r["comment"].str.strip().ne("")]


def test_comment_themes_match_an_independent_count(demo):
    ds, periods = demo
    cb = load_themes()
    res = explore.comment_themes(ds, periods, cb)
    comments = _period_comments(ds, periods)
    flags = match_themes(comments["comment"], cb)
    table = res.table().set_index("theme")
    for name in cb.names:
        k = int(flags[name].sum())
        lo, hi = proportion_confint(k, len(comments), method="wilson")
        assert table.loc[name, "mentions"] == k
        assert (table.loc[name, "ci_low"], table.loc[name, "ci_high"]) == pytest.approx((100 * lo, 100 * hi))
    by = res.by_group_frame().set_index("Theme")
    for dept, group in comments.groupby("department"):  # per department: share (mentions) of its comments
        k = int(flags.loc[group.index, "mobile_app"].sum())
        assert by.loc[cb.labels["mobile_app"], dept] == f"{100 * k / len(group):.0f}% ({k:,})"
    assert table.loc["mobile_app", "unasked"] and not table.loc["waiting", "unasked"]
    # the unasked problems of the demo cost satisfaction at equal ratings
    assert table.loc["mobile_app", "csat_adjusted_high"] < 0
    html = res._repr_html_()
    assert "Mobile app" in html and "95% CI" in html and "nan" not in html.lower().replace("n/a", "")


def test_suggestions_become_codebook_entries_that_find_their_examples(demo):
    ds, periods = demo
    sug = explore.suggest_comment_themes(ds, periods, load_themes(), n_themes=6, seed=0)
    assert len(sug.table) == 6
    for i, row in sug.table.iterrows():
        snippet = sug.yaml_snippet(i)
        cb = codebook_from_text("themes:\n" + snippet, "pasted.yaml")  # valid YAML and a valid theme
        theme = cb.themes[0]
        assert re.fullmatch(r"suggested_[a-z0-9_]+", theme.name) and len(row["examples"]) == 3
        assert match_themes(pd.Series(row["examples"]), cb)[theme.name].any(), snippet
    again = explore.suggest_comment_themes(ds, periods, load_themes(), n_themes=6, seed=0)
    assert [sug.yaml_snippet(i) for i in range(6)] == [again.yaml_snippet(i) for i in range(6)]  # seeded
    html = sug._repr_html_()
    assert html.count("<pre>") == 6 and "params/themes.yaml" in html


def test_search_equals_a_regular_expression_and_escapes(demo):
    ds, periods = demo
    comments = _period_comments(ds, periods)
    res = explore.search_period_comments(ds, "price*", periods)
    expected = comments["comment"].str.contains(r"(?i)(?:^|[^a-z0-9])price", regex=True)
    assert len(res.matches) == int(expected.sum()) > 0 and res.n_comments == len(comments)
    assert res.matches["response_date"].is_monotonic_decreasing
    assert not {"customer_id", "response_id"} & set(res.matches.columns)
    hostile = explore.search_period_comments(ds, "script", explore.explorer_periods(ds, "2023-11-01", "2026-10-31"))
    assert len(hostile.matches) > 0
    html = hostile._repr_html_()
    assert "<script" not in html and "&lt;script&gt;" in html


def test_the_codebook_is_required(demo):
    ds, periods = demo
    for fn in (explore.comment_themes, explore.suggest_comment_themes):
        with pytest.raises(KitError, match="no codebook of comment themes given.*load_themes"):
            fn(ds, periods, None)
    with pytest.raises(KitError, match="no column 'nope'"):
        explore.comment_themes(ds, periods, load_themes(), by="nope")
