"""md_escape / shorten (helpers.formatting) and the default as-of date (helpers.data.default_as_of)."""
import pandas as pd
import pytest

from helpers.data import default_as_of
from helpers.formatting import md_escape, shorten

HOSTILE = ["[click](javascript:alert(3))", "![x](http://host/x.png)", "<img src=x onerror=alert(1)>",
           "<javascript:alert(1)>", "a *b* _c_", "# heading", "1. item", "line\n# head", "$x^2$", "`code`",
           "| a | b |", "C:\\path", "&amp; literal",
           "it's \"quoted\" <a href='javascript:alert(5)'>raw</a>", "> quoted block", "a > b & c < d", "&#x27; &lt;",
           "\\[not a link\\](x)", "<!-- comment -->", "<https://host/>", "www.host.com/x", "http://host/x.png"]


@pytest.mark.parametrize("text", HOSTILE)
def test_md_escape_renders_as_the_same_characters(text):
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    rendered = markdown2html_mistune(md_escape(text))
    assert "<a " not in rendered and "<img" not in rendered and "<em>" not in rendered
    assert "<h1" not in rendered and "<ol" not in rendered and "<code>" not in rendered
    assert "<blockquote" not in rendered and "<table" not in rendered and "<!--" not in rendered
    import html
    import re
    visible = html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()
    assert visible == " ".join(text.split())


def test_md_escape_none_and_numbers():
    assert md_escape(None) == ""
    assert md_escape(12) == "12"


def test_shorten_bounds_long_and_nested_values():
    assert len(shorten("x" * 10_000, 40)) <= 40
    bomb = [[["lol"] * 9] * 9] * 9
    for _ in range(20):  # 9**23 leaves if expanded: only a bounded prefix is ever looked at
        bomb = [bomb] * 9
    assert len(shorten(bomb)) <= 80 and shorten(bomb).startswith("[[[")
    assert shorten("ok") == "'ok'"
    assert shorten(["attr_a", "speed"]) == "['attr_a', 'speed']"
    assert shorten({"k": list(range(100))}, 200) == "{'k': [0, 1, 2, 3, 4, 5, ...]}"
    assert shorten(10 ** 200).startswith("1000") and len(shorten(10 ** 200)) <= 80


@pytest.mark.parametrize("last, today, expected", [
    ("2025-12-31", "2026-06-01", "2025-12-31"),   # a complete month
    ("2025-12-15", "2026-06-01", "2025-11-30"),   # a partly observed month counts from the month before
    ("2099-01-01", "2026-03-10", "2026-02-28"),   # future-dated rows never move "now" past today
    ("2024-02-29", "2026-01-01", "2024-02-29"),
])
def test_default_as_of_is_the_last_complete_month(last, today, expected):
    assert default_as_of(last, today=today) == pd.Timestamp(expected)


def test_fmt_estimate_prints_the_estimate_with_its_intervals_decimals():
    """At 10M customers the voice page read "9% of comments are negative (95% CI 8.9% to 9.2%)"."""
    from helpers.formatting import fmt_estimate

    assert fmt_estimate(9.04, 8.9, 9.2, percent=True, share=False) == ("9.0%", "8.9% to 9.2%")
    assert fmt_estimate(0.41, 0.39, 0.43, percent=True) == ("41%", "39% to 43%")
    assert fmt_estimate(7.83, 7.81, 7.84) == ("7.83", "7.81 to 7.84")
    assert fmt_estimate(7.8, 7.0, 9.0, least=1) == ("7.8", "7.0 to 9.0")
    assert fmt_estimate(5.0, float("nan"), 6.0) == ("5", "n/a to 6")


def test_clip_text_is_one_unquoted_line_cut_with_an_ellipsis():
    from helpers.formatting import clip_text

    assert clip_text("spark engine:\n  the cluster\twent away") == "spark engine: the cluster went away"
    assert clip_text(ValueError("no tickets")) == "no tickets"  # an exception's message, not its repr
    cut = clip_text("word " * 100, 20)
    assert len(cut) == 20 and cut.endswith("\u2026") and cut.startswith("word word")
