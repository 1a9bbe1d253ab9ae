"""helpers.voice: the codebook parser and matcher, sentiment, suggested themes and distinctive n-grams."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.demo_text import COMMENTS, HTML_SPECIAL_COMMENTS, UNASKED_COMMENTS, comment_catalogue
from helpers.errors import ParamsError
from helpers.voice import (codebook_from_text, distinctive_terms, escape_text, load_codebook, log_odds_dirichlet,
                           match_themes, normalise_text, search_comments, sentiment, sentiment_label,
                           suggest_themes)

ROOT = Path(__file__).resolve().parents[1]


def _cb(body: str):
    return codebook_from_text("themes:\n" + body, "test_themes.yaml")


# --- parser -------------------------------------------------------------------------------------------------

def test_shipped_codebook_loads_and_every_theme_matches_some_demo_comment():
    cb = load_codebook(ROOT / "params/themes.yaml")
    assert len(cb) >= 8 and cb.names[0] == "waiting"
    assert cb["waiting"].rating == "attr_speed" and not cb["waiting"].unasked
    assert set(cb.unasked) == {"billing_errors", "price_increase", "mobile_app", "no_human", "leaving"}
    depts = ("customer_service", "sales", "marketing", "delivery", "billing", "technical_support")
    attrs = ("speed", "resolution", "knowledge", "courtesy", "ease", "value")
    unasked = [x for v in UNASKED_COMMENTS.values() for x in v]
    texts = pd.Series(comment_catalogue(depts, attrs) + list(HTML_SPECIAL_COMMENTS) + unasked)
    flags = match_themes(texts, cb)
    assert flags.any().all(), flags.sum()[~flags.any()]
    # the demo's unasked problems: each sentence is found by its own theme and by no other; nothing else in the
    # demo's vocabulary mentions them (so the effect per mention is the problem's)
    for theme, sentences in UNASKED_COMMENTS.items():
        got = match_themes(pd.Series(sentences), cb)
        assert got[theme].all() and not got.drop(columns=theme).any().any(), theme
        assert cb[theme].unasked
        assert not flags[theme].iloc[: len(texts) - len(unasked)].any(), theme
    # nearly every demo comment has a theme (the codebook fits the demo's vocabulary)
    assert flags.any(axis=1).mean() > 0.95
    # each attribute's negative comments land in that attribute's theme
    # (wrong charges and hidden fees are a theme of their own: no rating question asks about them)
    theme_of = {"speed": ["waiting"], "resolution": ["unresolved"], "knowledge": ["knowledge"],
                "courtesy": ["courtesy"], "ease": ["effort", "no_human"], "value": ["value", "billing_errors"]}
    for attr, themes in theme_of.items():
        neg = pd.Series([v.replace("{who}", "billing") for v in COMMENTS["negative"][attr]])
        assert match_themes(neg, cb)[themes].any(axis=1).all(), attr


def test_boolean_rules_any_all_none():
    cb = _cb("""
  price_rise:
    label: Price rise
    all: [[price, cost*], [went up, increase*]]
    none: [no increase]
  refund:
    label: Refund
    any: [refund*, money back]
    all: [please]
""")
    texts = pd.Series(["The price went up again", "Costs increased", "price is fine", "it went up",
                       "price: no increase this year", "Refund please", "refund", "please give my money back",
                       None, ""])
    got = match_themes(texts, cb)
    assert got["price_rise"].tolist() == [True, True, False, False, False, False, False, False, False, False]
    assert got["refund"].tolist() == [False, False, False, False, False, True, False, True, False, False]
    assert list(got.index) == list(texts.index)


def test_case_accents_punctuation_word_boundaries_and_prefix():
    cb = _cb("""
  cafe: {label: Café, any: [café crème]}
  app: {label: App, any: [app]}
  dont: {label: Dont, any: ["don't work"]}
  charge: {label: Charge, any: ["charg*"]}
""")
    texts = pd.Series(["CAFE CREME please", "cafe-crème!", "Café\ncrème", "cafécrème", "the APP crashed",
                       "apply here", "happy", "<b>app</b>", "It DON’T WORK", "dont work", "Don't... work!",
                       "Charged twice", "discharge", "surcharge", "CHARGES"],
                      index=range(100, 115))
    got = match_themes(texts, cb)
    assert got["cafe"].tolist()[:4] == [True, True, True, False]
    assert got["app"].tolist()[4:8] == [True, False, False, True]
    assert got["dont"].tolist()[8:11] == [True, False, True]
    assert got["charge"].tolist()[11:] == [True, False, False, True]
    assert list(got.index) == list(range(100, 115))


def test_non_ascii_scripts_and_emoji():
    cb = _cb("""
  privet: {label: Привет, any: [привет]}
  strasse: {label: Straße, any: [straße]}
  great: {label: Great, any: [great]}
""")
    texts = pd.Series(["ПРИВЕТ, мир", "приветствие", "Die Straße ist laut", "Strasse", "great😀", "🙂great🙂",
                       "greatest"])
    got = match_themes(texts, cb)
    assert got["privet"].tolist()[:2] == [True, False]
    assert got["strasse"].tolist()[2:4] == [True, False]  # ß is a letter, not an accent
    assert got["great"].tolist()[4:] == [True, True, False]


def test_normalise_text():
    assert normalise_text(["Café, DON’T!  naïve—ÉTÉ", None, "  "]) == ["cafe don t naive ete", "", ""]


def test_matching_agrees_with_a_python_reference_on_random_text():
    """The DuckDB matcher against an independent pure-Python implementation of the same rules."""
    cb = load_codebook(ROOT / "params/themes.yaml")
    rng = np.random.default_rng(3)
    words = ("price", "went", "up", "app", "apply", "wait", "waiting", "on", "hold", "not", "leaving", "café",
             "refunds", "charged", "more", "Hidden", "fees", "the", "mobile", "!", ",", "—", "’", "crash", "x")
    texts = pd.Series([" ".join(rng.choice(words, rng.integers(1, 9))) for _ in range(3000)])
    got = match_themes(texts, cb)

    sep = r"[^\w]|_"

    def norm(s):
        import unicodedata
        s = "".join(c for c in unicodedata.normalize("NFKD", s.lower()) if not unicodedata.combining(c))
        return " " + " ".join(w for w in re.split(sep, s) if w) + " "

    def hit(pat, text):
        return (" " + pat.text + ("" if pat.prefix else " ")) in text

    for theme in cb.themes:
        exp = []
        for t in texts:
            n = norm(t)
            ok = (not theme.any or any(hit(p, n) for p in theme.any)) and all(
                any(hit(p, n) for p in g) for g in theme.all) and not any(hit(p, n) for p in theme.none)
            exp.append(ok)
        assert got[theme.name].tolist() == exp, theme.name
    assert got.to_numpy().sum() > 300  # the random text does hit themes


def test_search_comments():
    s = pd.Series(["Hidden FEES again", "fee", "coffee", None])
    assert search_comments(s, "fee*").tolist() == [True, True, False, False]


@pytest.mark.parametrize("body, field, words", [
    ("  Bad Name: {label: x, any: [a]}\n", "themes.Bad Name", "lower-case"),
    ("  t: {any: [a]}\n", "themes.t.label", "label"),
    ("  t: {label: x}\n", "themes.t", "'any'"),
    ("  t: {label: x, any: [a], anyy: [b]}\n", "themes.t.anyy", "unknown key"),
    ("  t: {label: x, any: [\"!!\"]}\n", "themes.t.any", "no letters or digits"),
    ("  t: {label: x, any: [a, \"*b\"]}\n", "themes.t.any[1]", "only once, at the end"),
    ("  t: {label: x, any: [a, {b: 1}]}\n", "themes.t.any[1]", "expected a phrase"),
    ("  t: {label: x, all: [[]]}\n", "themes.t.all[0]", "empty group"),
    ("  t: {label: x, none: 5, any: [a]}\n", "themes.t.none", "list of phrases"),
    ("  t: [a, b]\n", "themes.t", "rules"),
    ("  t: {label: x, any: [a], rating: speed}\n", "themes.t.rating", "attr_*"),
    ("  t: {label: x, any: [a], rating: [attr_speed]}\n", "themes.t.rating", "rating column"),
])
def test_codebook_errors_name_file_theme_and_field(body, field, words):
    with pytest.raises(ParamsError) as exc:
        _cb(body)
    msg = str(exc.value)
    assert msg.startswith("test_themes.yaml: "), msg
    assert exc.value.field == field and repr(field) in msg and words in msg, msg


def test_codebook_file_errors(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_codebook(tmp_path / "nope.yaml")
    f = tmp_path / "themes.yaml"
    f.write_text("")
    with pytest.raises(ParamsError, match="empty"):
        load_codebook(f)
    f.write_text("themes: {}\nextra: 1\n")
    with pytest.raises(ParamsError, match="unknown key"):
        load_codebook(f)
    f.write_text("themes:\n  a: &x {label: A, any: [a]}\n  b: *x\n")
    with pytest.raises(ParamsError, match="anchor"):  # loaded through helpers.params_yaml
        load_codebook(f)


# --- sentiment ----------------------------------------------------------------------------------------------

def test_sentiment_is_vader_compound_from_the_package():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    texts = pd.Series(["Great value for money.", "The agent was rude and cut me off.", None, "OK.",
                       "Great value for money.", '<script>alert("x")</script>'], index=list("abcdef"))
    got = sentiment(texts)
    ref = SentimentIntensityAnalyzer()
    for k, t in texts.items():
        if pd.isna(t):
            assert np.isnan(got[k])
        else:
            assert got[k] == ref.polarity_scores(t)["compound"]
    assert got["a"] > 0.5 and got["b"] < -0.3
    labels = sentiment_label(got)
    assert labels[["a", "b", "c", "f"]].tolist() == ["positive", "negative", None, "neutral"]
    assert sentiment_label([0.05, -0.05, 0.0499]).tolist() == ["positive", "negative", "neutral"]


def test_vader_import_needs_no_network_library():
    import subprocess
    import sys

    code = ("import sys, helpers.voice as v; v.sentiment(['good']); "
            "print('requests' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- suggested themes ---------------------------------------------------------------------------------------

def _planted_corpus(n=3000, seed=1):
    rng = np.random.default_rng(seed)
    topics = {
        "app": ["the mobile app crashes on login", "app keeps crashing after the update", "mobile app login broken"],
        "price": ["price increase is too steep", "the price went up again this month", "steep price increase"],
        "delivery": ["parcel arrived late and damaged", "late parcel delivery", "damaged parcel, arrived late"],
    }
    names = list(topics)
    k = rng.integers(0, 3, n)
    texts = [topics[names[i]][rng.integers(0, 3)] for i in k]
    return pd.Series(texts), np.array(names)[k], topics


def test_suggest_themes_finds_planted_topics_and_is_deterministic():
    texts, truth, topics = _planted_corpus()
    cb = _cb("  app: {label: App, any: [app]}\n")
    res = suggest_themes(texts, n_themes=3, seed=0, codebook=cb)
    res2 = suggest_themes(texts, n_themes=3, seed=0, codebook=cb)
    pd.testing.assert_frame_equal(res.table, res2.table)
    assert res.n_sample == res.n_comments == 3000
    assert sorted(res.table["share"].round(1)) == sorted(pd.Series(truth).value_counts(normalize=True).round(1))
    keys = {"app": "mobile", "price": "price", "delivery": "parcel"}
    for topic, word in keys.items():
        row = res.table[res.table["top_terms"].map(lambda t, w=word: w in t[:5])]
        assert len(row) == 1, (topic, res.table)
        ex = row["examples"].iloc[0]
        assert sorted(ex) == sorted(topics[topic])  # three representative comments, all of that topic
    app = res.table[res.table["closest_theme"] == "app"]
    assert app["overlap"].max() == 1.0
    assert "suggested themes from 3,000 comments" in res.summary()


def test_suggest_themes_samples_at_most_max_comments():
    texts, _, _ = _planted_corpus(5000)
    res = suggest_themes(texts, n_themes=3, max_comments=1000, seed=5)
    assert res.n_sample == 1000 and res.n_comments == 5000
    assert "seeded sample of 5,000" in res.summary()


# --- distinctive n-grams ------------------------------------------------------------------------------------

def test_log_odds_matches_a_direct_computation():
    """Monroe et al. (2008) eqs. 16 and 20 written out term by term for a 3-word vocabulary."""
    yi, yj = np.array([10, 0, 5]), np.array([2, 8, 5])
    a = yi + yj
    delta, z = log_odds_dirichlet(yi, yj, a)
    ni, nj, a0 = 15, 15, 30
    for w in range(3):
        d = (np.log((yi[w] + a[w]) / (ni + a0 - yi[w] - a[w]))
             - np.log((yj[w] + a[w]) / (nj + a0 - yj[w] - a[w])))
        assert delta[w] == pytest.approx(d, rel=1e-12)
        assert z[w] == pytest.approx(d / np.sqrt(1 / (yi[w] + a[w]) + 1 / (yj[w] + a[w])), rel=1e-12)
    assert delta[2] == pytest.approx(0.0)


def test_distinctive_terms_recover_planted_words():
    rng = np.random.default_rng(0)
    common = ["the service was", "i called about my order", "thanks for the call", "my account"]
    det = [f"{common[rng.integers(4)]} hidden fees again" if rng.random() < 0.3 else common[rng.integers(4)]
           for _ in range(2000)]
    pro = [f"{common[rng.integers(4)]} lovely staff" if rng.random() < 0.3 else common[rng.integers(4)]
           for _ in range(2000)]
    res = distinctive_terms(det + pro, ["detractor"] * 2000 + ["promoter"] * 2000)
    top_det = res.top("detractor", 5)["term"].tolist()
    top_pro = res.top("promoter", 5)["term"].tolist()
    assert {"hidden", "fees", "hidden fees"} <= set(top_det)
    assert {"lovely", "staff", "lovely staff"} <= set(top_pro)
    assert "the" not in top_det + top_pro
    row = res.table[res.table["term"] == "hidden fees"].iloc[0]
    assert all("hidden fees" in e for e in row["examples"]) and len(row["examples"]) <= 3
    assert row["count_b"] == 0 and row["count_a"] == sum("hidden fees" in d for d in det)


# --- escaping -----------------------------------------------------------------------------------------------

def test_escape_text_html_and_markdown():
    df = pd.DataFrame({"comment": ['<script>alert("x")</script>', "[x](javascript:1) *b*", None],
                       "themes": [["A & B"], [], ["<i>"]], "n": [1, 2, 3]})
    h = escape_text(df, how="html")
    assert h["comment"][0] == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" and h["comment"][2] == ""
    assert h["themes"][0] == "A &amp; B" and h["themes"][2] == "&lt;i&gt;" and h["n"].tolist() == [1, 2, 3]
    m = escape_text(df, how="markdown")
    assert "<" not in m["comment"][0] and "\\[x\\]" in m["comment"][1] and "\\*b\\*" in m["comment"][1]


def test_phrases_cannot_break_the_sql_and_large_codebooks_work():
    from helpers.voice import parse_codebook

    words = [f"word{i} extra{i}" for i in range(500)]
    cb = parse_codebook({"themes": {"big": {"label": "B", "any": words},
                                    "inj": {"label": "I", "any": ["a'); DROP TABLE x; --", "x.y", "a\\b"]}}})
    got = match_themes(pd.Series(["WORD499, extra499!", "nothing", "A') drop table X", "x y", "xzy", "a b",
                                  "a\\b"]), cb)
    assert got["big"].tolist() == [True] + [False] * 6
    assert got["inj"].tolist() == [False, False, True, True, False, True, True]  # words, not SQL or regex
