"""The demo's unasked comment themes (issue 13): what ground_truth.json records, that nothing else of the demo
moved, and that the kit finds them (codebook and suggested), dates them and recovers their effects."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from helpers import demo
from helpers.data import load_dataset
from helpers.demo_text import HTML_SPECIAL_COMMENTS, UNASKED_COMMENTS
from helpers.voice import emerging_themes, load_comments, match_themes
from helpers.voice_report import load_themes
from helpers.voice_effects import theme_effects, theme_trends

MEDIUM = 20_000


@pytest.fixture(scope="module")
def medium_voice_demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("voice_demo")
    demo.generate_demo(out, n_customers=MEDIUM, seed=2024)
    return out


def _truth(folder: Path) -> dict:
    return json.loads((folder / "ground_truth.json").read_text(encoding="utf-8"))["unasked_themes"]


def test_ground_truth_records_the_unasked_themes(small_demo):
    gt = _truth(small_demo)
    cb = load_themes()
    assert set(gt) == {t.name for t in demo.UNASKED_THEMES} == {"mobile_app", "price_increase"}
    for th in demo.UNASKED_THEMES:
        g = gt[th.name]
        assert g["codebook_theme"] in cb.unasked  # the shipped codebook has the theme, and no rating covers it
        assert g["onset"] == th.onset.isoformat() and g["latent_shift"] == th.latent_shift
        assert g["effect"]["csat_mean_change"] < 0 and g["effect"]["nps_mean_change"] < 0
        assert g["effect"]["detractor_share_after"] > g["effect"]["detractor_share_before"]
    assert gt["mobile_app"]["end"] == "2026-04-12" and gt["price_increase"]["end"] is None
    assert gt["price_increase"]["segment"] == "small_business"
    # the recorded mentions are the comments carrying one of the theme's sentences, in its window and segment
    r = pq.read_table(small_demo / "responses.parquet").to_pandas()
    cust = pq.read_table(small_demo / "customers.parquet").to_pandas().set_index("customer_id")
    for name, sentences in UNASKED_COMMENTS.items():
        has = r["comment"].fillna("").map(lambda c, s=sentences: any(c.endswith(" " + x) for x in s))
        assert has.sum() == gt[name]["n_mentions"] > 0, name
        days = pd.to_datetime(r.loc[has, "response_date"])
        assert days.min() >= pd.Timestamp(gt[name]["onset"])
        if gt[name]["end"]:
            assert days.max() <= pd.Timestamp(gt[name]["end"])
    price = r["comment"].fillna("").map(lambda c: any(c.endswith(" " + x) for x in UNASKED_COMMENTS["price_increase"]))
    assert (cust.loc[r.loc[price, "customer_id"], "segment"] == "small_business").all()
    # the HTML-special comments are still there, so escaping stays exercised
    assert set(HTML_SPECIAL_COMMENTS) & set(r["comment"].dropna())


def test_the_themes_move_only_csat_nps_and_comment_of_the_affected_responses(tmp_path, monkeypatch):
    """An independent random stream: without the themes every table is identical except those three columns
    of the mentioning responses (and the per-customer mean CSAT that follows from CSAT, and the follow-up time of
    an answer the problem made unhappy)."""
    with_themes = demo.generate_demo(tmp_path / "with", 1_500, seed=5).parent
    monkeypatch.setattr(demo, "UNASKED_THEMES",
                        tuple(dataclasses.replace(t, mention_rate=0.0) for t in demo.UNASKED_THEMES))
    without = demo.generate_demo(tmp_path / "without", 1_500, seed=5).parent
    for table in ("customers", "tickets", "org"):
        assert pq.read_table(with_themes / f"{table}.parquet").equals(pq.read_table(without / f"{table}.parquet"))
    a = pq.read_table(with_themes / "responses.parquet").to_pandas()
    b = pq.read_table(without / "responses.parquet").to_pandas()
    hit = a["comment"].fillna("") != b["comment"].fillna("")
    gt = _truth(with_themes)
    assert hit.sum() == sum(g["n_mentions"] for g in gt.values()) > 0
    for col in a.columns:
        same = (a[col].astype(object).fillna("NA") == b[col].astype(object).fillna("NA"))
        if col == "followed_up_at":  # its own stream: only answers the problem made unhappy can gain a contact
            assert same[~hit].all()
            gained = ~same & hit
            assert a.loc[gained, col].notna().all() and b.loc[gained, col].isna().all()
        elif col in ("csat", "nps", "comment"):
            assert same[~hit].all(), col
            if col != "comment":  # a problem never raises a score; missing answers stay missing
                x, y = a.loc[hit, col].astype(float), b.loc[hit, col].astype(float)
                assert (x.isna() == y.isna()).all() and (x.fillna(0) <= y.fillna(0)).all(), col
        else:
            assert same.all(), col
    assert all(x.startswith(y + " ") for x, y in zip(a.loc[hit, "comment"], b.loc[hit, "comment"]))  # appended


def test_the_codebook_finds_dates_and_prices_the_unasked_themes(medium_voice_demo):
    gt = _truth(medium_voice_demo)
    ds = load_dataset(medium_voice_demo, emit_warnings=False)
    cb = load_themes()
    comments = load_comments(ds)
    flags = match_themes(comments["comment"], cb)
    for name, g in gt.items():
        assert flags[name].sum() == g["n_mentions"] + g["n_background_mentions"], name
    onsets = theme_trends(ds, cb).onsets.set_index("theme")
    for name, g in gt.items():
        row = onsets.loc[name]
        assert row["significant"] and f"{row['onset']:%Y-%m}" == g["onset_month"], (name, row["onset"])
    # the app was fixed on 2026-04-13: the share drops back in April (12 affected days) or May
    assert f"{onsets.loc['mobile_app', 'end']:%Y-%m}" in ("2026-04", "2026-05")
    assert pd.isna(onsets.loc["price_increase", "end"])
    eff = theme_effects(ds, cb).table.set_index("theme")
    for name, g in gt.items():
        e, r = g["per_mention"], eff.loc[name]
        assert r["csat_adjusted_low"] < e["csat_mean_change"] < r["csat_adjusted_high"], (name, e, r.to_dict())
        change = 100 * (e["detractor_share_after"] - e["detractor_share_before"])
        assert r["detractor_change_low"] < change < r["detractor_change_high"], (name, change, r.to_dict())
        assert r["detractor_odds_ratio_low"] > 1
    # the app (the larger shift) costs more than the price rise, both with intervals below 0
    assert eff.loc["mobile_app", "csat_adjusted"] < eff.loc["price_increase", "csat_adjusted"]
    assert (eff.loc[list(gt), "csat_adjusted_high"] < 0).all()


def test_suggested_themes_find_the_new_problems_without_the_codebook(medium_voice_demo):
    """What is new in the last 12 months (emerging words, then topics of the comments using them) is the app
    and the price rise, each with its top terms and three representative comments."""
    ds = load_dataset(medium_voice_demo, emit_warnings=False)
    recent = load_comments(ds, "2025-11-01", "2026-10-31")["comment"]
    before = load_comments(ds, None, "2025-10-31")["comment"]
    em = emerging_themes(recent, before, codebook=load_themes())
    words = set(em.terms["term"].head(6))
    assert "app" in words and words & {"fee", "subscription", "increase"}, em.terms.head(10)
    table = em.suggested.table
    assert {"mobile_app", "price_increase"} <= set(table["closest_theme"])
    app = table[table["closest_theme"] == "mobile_app"].iloc[0]
    assert "app" in app["top_terms"][:3] and len(app["examples"]) == 3
    assert all(any(s in ex for s in UNASKED_COMMENTS["mobile_app"]) for ex in app["examples"])
    # a stable vocabulary gives nothing new
    none = emerging_themes(before.iloc[: len(before) // 2], before.iloc[len(before) // 2:])
    assert none.suggested is None and "No word" in none.summary()
    assert np.isfinite(em.terms["z"]).all()
