"""helpers.voice_effects: theme shares, trends and onset, effects on satisfaction, and the follow-up list."""
from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from helpers.data import Dataset, load_dataset
from helpers.kpis import compare_proportions, proportion
from helpers.voice import codebook_from_text, match_themes
from helpers.voice_effects import (binomial_change_point, follow_up_display, follow_up_list, theme_effects,
                                   theme_effects_frame, theme_shares, theme_trends, theme_verbatims)

CODEBOOK = codebook_from_text("""
themes:
  mobile_app:
    label: Mobile app
    any: [app, crash*]
  waiting:
    label: Waiting
    any: [wait*, slow]
  billing:
    label: Billing <errors> & fees
    any: [charg*, fee*]
""", "test_themes.yaml")

ONSET = pd.Timestamp("2025-04-01")
CSAT_SHIFT = -0.4          # E[csat] change when the app theme is mentioned, at equal attribute ratings
DETRACTOR_ODDS = 2.5       # odds ratio of being a detractor when the app theme is mentioned


def _dataset(responses: pd.DataFrame, customers=None, tickets=None, org=None) -> Dataset:
    """A Dataset over in-memory DuckDB tables (the kit's types: dates DATE, times TIMESTAMP)."""
    con = duckdb.connect()
    ids = responses["customer_id"].unique()
    customers = customers if customers is not None else pd.DataFrame({
        "customer_id": ids, "signup_date": pd.Timestamp("2023-01-01"), "end_date": pd.NaT, "segment": "consumer",
        "region": "north", "monthly_revenue": 10.0, "purchases": 1})
    tickets = tickets if tickets is not None else pd.DataFrame({
        "ticket_id": pd.Series([], dtype=str), "customer_id": pd.Series([], dtype=str),
        "department": pd.Series([], dtype=str), "team": pd.Series([], dtype=str),
        "agent_id": pd.Series([], dtype=str), "channel": pd.Series([], dtype=str),
        "created_at": pd.Series([], dtype="datetime64[us]"), "first_response_at": pd.Series([], dtype="datetime64[us]"),
        "resolved_at": pd.Series([], dtype="datetime64[us]"), "contacts_to_resolve": pd.Series([], dtype=float),
        "reopened": pd.Series([], dtype=bool)})
    org = org if org is not None else pd.DataFrame({"person_id": ["d"], "name": ["Dee"], "role": ["director"],
                                                    "department": ["Billing"], "team": [None], "manager_id": [None]})
    for name, df in (("responses", responses), ("customers", customers), ("tickets", tickets), ("org", org)):
        con.register(f"_{name}", df)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM _{name}")
        con.unregister(f"_{name}")
    con.execute("ALTER TABLE responses ALTER response_date TYPE DATE")
    return Dataset(con, "synthetic", "x", [], {})


def _synthetic(n=24_000, seed=12) -> pd.DataFrame:
    """Responses over 2024-2025; the app theme appears from ONSET on, more often when attr_a is low (so the raw
    difference is confounded), and shifts E[csat] by CSAT_SHIFT and the detractor odds by DETRACTOR_ODDS.

    Both outcome models are the ones the kit fits (E[csat] linear and logit P(detractor) linear in the ratings
    and the flag), so its 95% intervals should cover the truth in 95% of the seeds
    (:func:`test_effect_intervals_cover_the_truth_at_the_nominal_rate_across_seeds`). ``eta`` (the true
    log-odds of being a detractor) is returned in the column ``_eta`` for the true detractor-share change."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2024-01-01", "2025-12-31", freq="D")
    date = days[rng.integers(0, len(days), n)]
    a = rng.integers(1, 6, n)
    b = rng.integers(1, 6, n)
    p_app = np.where(date >= ONSET, 0.06 + 0.04 * (5 - a), 0.0)
    app = rng.random(n) < p_app
    p = 0.5 + 0.1 * (a - 3) + 0.05 * (b - 3) + CSAT_SHIFT / 4 * app  # csat = 1 + Binomial(4, p)
    csat = 1 + rng.binomial(4, p)
    eta = -1.0 - 0.5 * (a - 3) - 0.2 * (b - 3) + np.log(DETRACTOR_ODDS) * app
    det = rng.random(n) < 1 / (1 + np.exp(-eta))
    nps = np.where(det, rng.integers(0, 7, n), rng.integers(7, 11, n))
    other = np.array(["Fine overall.", "I had to wait a while.", "Charged twice!", "Thanks", "So slow...", "ok"])
    app_text = np.array(["The app crashes at login", "APP keeps crashing", "app won't open"])
    comment = np.where(app, app_text[rng.integers(0, 3, n)], other[rng.integers(0, len(other), n)]).astype(object)
    comment[rng.random(n) < 0.05] = None  # some responses without a comment
    return pd.DataFrame({
        "response_id": [f"R{i:06d}" for i in range(n)], "customer_id": [f"C{i % 5000:05d}" for i in range(n)],
        "response_date": date, "department": np.where(rng.random(n) < 0.5, "Billing", "Delivery"),
        "channel": "web", "csat": csat.astype(float), "nps": nps.astype(float), "ces": np.nan,
        "attr_a": a.astype(float), "attr_b": b.astype(float), "comment": comment, "_eta": eta})


@pytest.fixture(scope="module")
def synthetic():
    df = _synthetic()
    return df, _dataset(df)


# --- shares -------------------------------------------------------------------------------------------------

def test_shares_count_like_pandas_and_use_the_kpis_wilson_interval(synthetic):
    df, ds = synthetic
    res = theme_shares(ds, CODEBOOK, start="2025-01-01", end="2025-06-30")
    window = df[(df["response_date"] >= "2025-01-01") & (df["response_date"] <= "2025-06-30")
                & df["comment"].notna()]
    flags = match_themes(window["comment"], CODEBOOK)
    assert res.n_comments == len(window)
    for row in res.table.itertuples():
        est = proportion(int(flags[row.theme].sum()), len(window), confidence=0.95)
        assert row.mentions == flags[row.theme].sum() and row.comments == len(window)
        assert (row.share, row.ci_low, row.ci_high) == pytest.approx((est.value, est.ci_low, est.ci_high), rel=1e-12)
    assert res.table["share"].is_monotonic_decreasing
    assert "comments; the most mentioned theme is" in res.summary()
    by = theme_shares(ds, CODEBOOK, by="department")
    assert set(by.table["department"]) == {"Billing", "Delivery"}
    assert by.table.groupby("theme")["mentions"].sum().to_dict() == theme_shares(ds, CODEBOOK).table.set_index(
        "theme")["mentions"].to_dict()


# --- trends and onset ---------------------------------------------------------------------------------------

def test_change_point_against_scipy_binomial_likelihoods():
    rng = np.random.default_rng(2)
    n = rng.integers(50, 200, 12)
    k = rng.binomial(n, np.where(np.arange(12) < 7, 0.1, 0.25))
    got = binomial_change_point(k, n, min_segment=2)
    best = None
    for s in range(2, 11):
        p1, p2, p0 = k[:s].sum() / n[:s].sum(), k[s:].sum() / n[s:].sum(), k.sum() / n.sum()
        lr = 2 * (stats.binom.logpmf(k[:s], n[:s], p1).sum() + stats.binom.logpmf(k[s:], n[s:], p2).sum()
                  - stats.binom.logpmf(k, n, p0).sum())
        if best is None or lr > best[1]:
            best = (s, lr)
    assert got["index"] == best[0] == 7
    assert got["lr"] == pytest.approx(best[1], rel=1e-9)
    assert got["p_value"] == pytest.approx(min(1, 9 * stats.chi2.sf(best[1], 1)), rel=1e-9)
    flat = binomial_change_point(np.full(12, 10), np.full(12, 100))
    assert flat["p_value"] == 1.0
    assert binomial_change_point([1, 2], [10, 10])["index"] is None


def test_trends_find_the_onset_and_compare_periods_like_the_kpis(synthetic):
    df, ds = synthetic
    res = theme_trends(ds, CODEBOOK)
    onset = res.onsets.set_index("theme").loc["mobile_app"]
    assert onset["onset"] == ONSET and onset["significant"] and onset["share_before"] == 0
    ch = res.changes.set_index("theme").loc["waiting"]
    with_c = df[df["comment"].notna()]
    flags = match_themes(with_c["comment"], CODEBOOK)["waiting"]
    month = with_c["response_date"].dt.to_period("M")
    a, b = month == pd.Period("2025-11"), month == pd.Period("2025-12")
    ref = compare_proportions(int(flags[a].sum()), int(a.sum()), int(flags[b].sum()), int(b.sum()))
    assert (ch["difference"], ch["ci_low"], ch["ci_high"], ch["p_value"]) == pytest.approx(
        (ref.difference, ref.ci_low, ref.ci_high, ref.p_value), rel=1e-12)
    assert len(res.table) == 24 * 3 and res.summary().startswith("Latest month (2025-12)")


# --- effects ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("joint", [True, False])
def test_adjusted_effects_equal_a_direct_statsmodels_fit(synthetic, joint):
    df, ds = synthetic
    res = theme_effects(ds, CODEBOOK, joint=joint)
    row = res.table.set_index("theme").loc["waiting"]
    d = df[df["comment"].notna()].copy()
    d[CODEBOOK.names] = match_themes(d["comment"], CODEBOOK).astype(float)
    X = sm.add_constant(d[(CODEBOOK.names if joint else ["waiting"]) + ["attr_a", "attr_b"]])
    ols = sm.OLS(d["csat"], X).fit(cov_type="HC3")
    assert row["csat_adjusted"] == pytest.approx(ols.params["waiting"], rel=1e-9)
    assert (row["csat_adjusted_low"], row["csat_adjusted_high"]) == pytest.approx(
        tuple(ols.conf_int().loc["waiting"]), rel=1e-9)
    logit = sm.Logit((d["nps"] <= 6).astype(float), X).fit(disp=0)
    assert row["detractor_odds_ratio"] == pytest.approx(np.exp(logit.params["waiting"]), rel=1e-6)
    assert (row["detractor_odds_ratio_low"], row["detractor_odds_ratio_high"]) == pytest.approx(
        tuple(np.exp(logit.conf_int().loc["waiting"])), rel=1e-6)
    assert row["n_csat"] == row["n_nps"] == len(d)
    raw = stats.ttest_ind(d.loc[d["waiting"] == 1, "csat"], d.loc[d["waiting"] == 0, "csat"], equal_var=False)
    assert (row["csat_difference_low"], row["csat_difference_high"]) == pytest.approx(
        tuple(raw.confidence_interval(0.95)), rel=1e-9)


def test_effects_rank_the_planted_theme_and_remove_the_confounding(synthetic):
    """Structure, not coverage (that is the next test): the planted theme comes first, its raw difference is
    confounded (the app is mentioned more by customers who rate attr_a low) and the adjusted one is not."""
    df, ds = synthetic
    res = theme_effects(ds, CODEBOOK)
    app = res.table.set_index("theme").loc["mobile_app"]
    assert app["csat_difference"] < CSAT_SHIFT - 0.2 < app["csat_adjusted"]
    assert res.table["theme"].iloc[0] == "mobile_app"  # the most costly theme comes first
    assert res.summary().startswith("Of the comment themes, Mobile app costs the most satisfaction")


def _true_detractor_change(frame: pd.DataFrame) -> float:
    """Mean over the app rows of P(detractor | eta) - P(detractor | eta without the app), in points."""
    eta = frame["_eta"].to_numpy()
    return 100 * float(np.mean(1 / (1 + np.exp(-eta)) - 1 / (1 + np.exp(-(eta - np.log(DETRACTOR_ODDS))))))


def test_effect_intervals_cover_the_truth_at_the_nominal_rate_across_seeds():
    """Over 200 seeds, each 95% interval covers its truth in 95% of them within Monte-Carlo error (binomial
    standard error sqrt(0.95 * 0.05 / 200) = 1.5 points; the bounds are 3.5 of those): the adjusted CSAT shift,
    the detractor odds ratio, the adjusted change in the detractor share among the mentioning responses (its
    truth from the generating probabilities, per seed), and 0 for two themes with no effect. Intervals 1.3 times
    too narrow (true coverage 87%) or a biased estimate (e.g. the raw difference) fall outside the bounds."""
    seeds = range(1000, 1200)
    covered = {k: 0 for k in ("csat", "odds", "change", "waiting", "billing")}
    for seed in seeds:
        df = _synthetic(n=5_000, seed=seed)
        d = df[df["comment"].notna()].reset_index(drop=True)
        flags = match_themes(d["comment"], CODEBOOK)
        frame = pd.concat([d[["csat", "nps", "attr_a", "attr_b"]], flags], axis=1)
        t = theme_effects_frame(frame, CODEBOOK.names, ["attr_a", "attr_b"], CODEBOOK.labels).table.set_index("theme")
        app = t.loc["mobile_app"]
        truth_change = _true_detractor_change(d[flags["mobile_app"].to_numpy()])
        covered["csat"] += app["csat_adjusted_low"] < CSAT_SHIFT < app["csat_adjusted_high"]
        covered["odds"] += app["detractor_odds_ratio_low"] < DETRACTOR_ODDS < app["detractor_odds_ratio_high"]
        covered["change"] += app["detractor_change_low"] < truth_change < app["detractor_change_high"]
        for theme in ("waiting", "billing"):
            covered[theme] += t.loc[theme, "csat_adjusted_low"] < 0 < t.loc[theme, "csat_adjusted_high"]
    n = len(seeds)
    se = np.sqrt(0.95 * 0.05 / n)
    rates = {k: v / n for k, v in covered.items()}
    assert all(abs(r - 0.95) < 3.5 * se for r in rates.values()), rates


def test_effects_handle_rare_and_separated_themes():
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({"csat": rng.integers(1, 6, n).astype(float), "nps": rng.integers(0, 11, n).astype(float),
                          "attr_a": rng.integers(1, 6, n).astype(float), "rare": False, "sep": False})
    frame.loc[:4, "rare"] = True
    frame.loc[:49, "sep"] = True
    frame.loc[:49, "nps"] = 0.0  # every mention a detractor: the odds ratio is not estimable
    res = theme_effects_frame(frame, ["rare", "sep"], ["attr_a"], {"rare": "Rare", "sep": "Sep"})
    t = res.table.set_index("theme")
    assert np.isnan(t.loc["rare", "csat_adjusted"]) and t.loc["rare", "mentions"] == 5
    assert np.isfinite(t.loc["sep", "csat_adjusted"]) and np.isnan(t.loc["sep", "detractor_odds_ratio"])
    assert t.loc["sep", "detractor_share_with"] == 1.0


# --- the follow-up list -------------------------------------------------------------------------------------

def _loop_dataset():
    responses = pd.DataFrame({
        "response_id": ["R1", "R2", "R3", "R4", "R5", "R6"],
        "customer_id": ["C1", "C2", "C3", "C4", "C5", "C1"],
        "response_date": pd.to_datetime(["2026-03-20", "2026-03-05", "2026-03-10", "2026-03-12", "2026-02-27",
                                         "2026-03-25"]),
        "department": ["Billing"] * 6, "channel": "web",
        "csat": [1.0, 4.0, 5.0, 2.0, 1.0, 3.0], "nps": [9.0, 3.0, 10.0, 8.0, 0.0, 6.0], "ces": np.nan,
        "attr_a": 3.0,
        "comment": ['<script>alert("x")</script> charged twice', "The app crashed", "great", None, "old",
                    "slow & <b>rude</b>"]})
    t = pd.to_datetime
    tickets = pd.DataFrame({
        "ticket_id": ["T1", "T2", "T3", "T4", "T5"], "customer_id": ["C1", "C1", "C2", "C2", "C1"],
        "department": ["Billing", "Billing", "Billing", "Delivery", "Billing"],
        "team": ["Payments", "Collections", "Payments", "Couriers", "Payments"],
        "agent_id": ["a1", "a2", "a1", "a3", "a1"], "channel": "web",
        "created_at": t(["2026-03-01 09:00", "2026-03-18 10:00", "2026-01-02 10:00", "2026-03-04 08:00",
                         "2026-03-30 08:00"]),
        "first_response_at": pd.NaT,
        "resolved_at": t(["2026-03-02", "2026-03-19", "2026-01-03", None, None]),
        "contacts_to_resolve": 1.0, "reopened": False})
    org = pd.DataFrame({"person_id": ["a1", "a2", "a3"], "name": ["Ann <Lee>", "Bo", "Cy"],
                        "role": "representative", "department": ["Billing", "Billing", "Delivery"],
                        "team": ["Payments", "Collections", "Couriers"], "manager_id": None})
    return _dataset(responses, tickets=tickets, org=org)


def test_follow_up_list_selects_links_and_orders():
    fu = follow_up_list(_loop_dataset(), CODEBOOK)
    t = fu.table
    assert (fu.start, fu.end) == (pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-25"))
    # R1 (CSAT 1), R2 (NPS 3), R6 (NPS 6) in March; R3/R4 are not unhappy; R5 is February
    assert "customer_id" not in t and "response_id" not in t and "ticket_id" not in t
    by = {c: r for c, r in zip(t["comment"], t.itertuples())}
    r1 = by['<script>alert("x")</script> charged twice']
    assert (r1.team, r1.owner) == ("Collections", "Bo")  # the latest Billing ticket before the response (T2)
    assert r1.themes == ["Billing <errors> & fees"] and r1.days_waiting == 5
    assert r1.open_tickets == 1  # T5 has no resolved_at
    assert r1.recent_tickets == 2  # T1 and T2 were created in the 30 days up to the end (T5 after it)
    r2 = by["The app crashed"]
    assert r2.team == "(no linked ticket)" and pd.isna(r2.owner)  # T3 is too old, T4 another department
    assert r2.open_tickets == 1 and r2.recent_tickets == 1  # T4 (Delivery) is open and recent
    r6 = by["slow & <b>rude</b>"]
    assert (r6.team, r6.owner) == ("Collections", "Bo")
    # ordered by department, team, then oldest first
    assert t["team"].tolist() == ["(no linked ticket)", "Collections", "Collections"]
    assert t.loc[t["team"] == "Collections", "response_date"].is_monotonic_increasing
    assert "3 customers to follow up" in fu.summary()
    none = follow_up_list(_loop_dataset(), CODEBOOK, department="Delivery")
    assert none.table.empty and none.summary().startswith("No customers to follow up")
    strict = follow_up_list(_loop_dataset(), CODEBOOK, nps_max=3, csat_max=1)
    assert sorted(strict.table["nps"]) == [3.0, 9.0]  # R2 (NPS 3) and R1 (CSAT 1)
    assert set(fu.by_team()) == {("Billing", "(no linked ticket)"), ("Billing", "Collections")}


def test_follow_up_ids_only_when_allowed_and_display_escapes():
    ds = _loop_dataset()
    shown = follow_up_list(ds, CODEBOOK, show_customer_ids=True).table
    assert {"customer_id", "response_id", "ticket_id"} <= set(shown)
    assert set(shown["customer_id"]) == {"C1", "C2"}
    html = follow_up_display(follow_up_list(ds, CODEBOOK), "html")
    text = html.to_string()
    assert "<script>" not in text and "&lt;script&gt;" in text and "<b>" not in text
    assert "Billing &lt;errors&gt; &amp; fees" in html["Themes"].tolist()
    assert "Customer" not in html.columns and "Comment" in html.columns
    md = follow_up_display(follow_up_list(ds, CODEBOOK, start="2026-03-01", end="2026-03-31"), "markdown")
    assert all("<" not in v for v in md["Comment"])


def test_on_the_small_demo(small_demo):
    ds = load_dataset(small_demo)
    from helpers.voice_report import load_themes

    cb = load_themes()
    shares = theme_shares(ds, cb)
    n = ds.con.execute("SELECT count(*) FROM responses WHERE comment IS NOT NULL AND trim(comment) <> ''").fetchone()[0]
    assert shares.n_comments == n > 0 and (shares.table["comments"] == n).all()
    fu = follow_up_list(ds, cb)
    assert len(fu.table) > 0 and "customer_id" not in fu.table
    assert ((fu.table["nps"] <= 6) | (fu.table["csat"] <= 1)).all()
    assert fu.table["response_date"].between(fu.start, fu.end).all()
    eff = theme_effects(ds, cb)
    assert set(eff.table["theme"]) == set(cb.names)


def test_empty_period_and_plots(synthetic):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.voice import distinctive_terms, load_comments, nps_group, suggest_themes

    df, ds = synthetic
    empty = theme_shares(ds, CODEBOOK, start="2030-01-01")
    assert empty.n_comments == 0 and empty.table.empty and empty.summary() == "No comments in this period."
    assert theme_trends(ds, CODEBOOK, start="2030-01-01").summary() == "Too few periods with comments to compare."
    comments = load_comments(ds, start="2025-01-01", department="Billing")
    assert list(comments.columns) == ["response_date", "department", "csat", "nps", "comment"]
    assert len(comments) == ((df["response_date"] >= "2025-01-01") & (df["department"] == "Billing")
                             & df["comment"].notna()).sum()
    assert nps_group([0, 6, 7, 8, 9, 10, None]).tolist() == ["detractor", "detractor", "passive", "passive",
                                                              "promoter", "promoter", None]
    results = [theme_shares(ds, CODEBOOK), theme_trends(ds, CODEBOOK), theme_effects(ds, CODEBOOK),
               suggest_themes(comments["comment"], n_themes=3, codebook=CODEBOOK),
               distinctive_terms(comments["comment"], nps_group(comments["nps"]), min_count=3, z_min=0)]
    for res in results:
        fig, ax = plt.subplots()
        assert res.plot(ax=ax) is ax and ax.get_title()
        plt.close(fig)
        assert isinstance(res.summary(), str) and res.summary()


def test_verbatims_are_the_most_frequent_comments_per_theme(synthetic):
    df, ds = synthetic
    got = theme_verbatims(ds, CODEBOOK, start="2025-01-01", n=2)
    d = df[(df["response_date"] >= "2025-01-01") & df["comment"].notna()]
    flags = match_themes(d["comment"], CODEBOOK)
    for theme in CODEBOOK.names:
        counts = d.loc[flags[theme], "comment"].value_counts()
        exp = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
        rows = got[got["theme"] == theme]
        assert list(zip(rows["comment"], rows["count"])) == exp, theme
    assert list(got.columns) == ["theme", "label", "comment", "count"]
    assert got["theme"].drop_duplicates().tolist() == CODEBOOK.names  # codebook order
    neg = theme_verbatims(ds, CODEBOOK, tone="negative", n=50)
    neg_d = df[df["comment"].notna() & ((df["csat"] <= 2) | (df["nps"] <= 6))]
    assert neg["count"].sum() == match_themes(neg_d["comment"], CODEBOOK).to_numpy().sum()


def test_share_chart_survives_an_interval_end_that_rounds_past_the_estimate():
    """Fuzz finding: a theme with share 0 whose Wilson lower bound came out as 1e-17 made errorbar raise
    "'xerr' must not contain negative values" and failed the whole voice report."""
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd

    from helpers.voice_effects import ThemeShares, _nonnegative_errors

    low, high = _nonnegative_errors([0.0, 5.0], [1e-17, 4.0], [0.5, 4.5])  # second: interval below the estimate
    assert (low >= 0).all() and (high >= 0).all() and high[1] == 0 and low[1] == 1.0
    table = pd.DataFrame({"theme": ["a", "b"], "label": ["A", "B"], "share": [0.0, 12.0], "ci_low": [1e-17, 9.0],
                          "ci_high": [3.0, 15.0], "n": [0, 30]})
    fields = {f: None for f in ThemeShares.__dataclass_fields__}
    fields.update(table=table, confidence=0.95)
    ax = ThemeShares(**fields).plot()
    assert len(ax.get_yticklabels()) == 2


def test_the_codebook_is_an_argument_never_read_from_params(synthetic, monkeypatch, tmp_path):
    """Issue 11: analysis modules never read params. Every theme function takes the codebook explicitly; none,
    or a path, is a clear KitError saying how to load one; and nothing is read from the working directory."""
    import inspect

    from helpers import voice, voice_effects
    from helpers.errors import KitError

    _, ds = synthetic
    monkeypatch.chdir(tmp_path)  # no params/ here: a function that read params/themes.yaml would fail differently
    for fn in (theme_shares, theme_trends, theme_effects, theme_verbatims, follow_up_list, match_themes):
        assert inspect.signature(fn).parameters["codebook"].default is inspect.Parameter.empty, fn.__name__
    for bad in (None, "params/themes.yaml"):
        with pytest.raises(KitError, match="codebook of comment themes.*load_themes"):
            theme_shares(ds, bad)
        with pytest.raises(KitError, match="match themes"):
            match_themes(pd.Series(["the app crashed"]), bad)
    assert not hasattr(voice, "DEFAULT_CODEBOOK")
    for module in (voice, voice_effects):
        code = inspect.getsource(module)
        assert "load_codebook()" not in code and "load_themes(" not in code.replace("voice_report.load_themes(", "")
    assert theme_shares(ds, CODEBOOK).n_comments > 0  # a codebook given: works anywhere


def test_trend_summary_formats_p_values_like_every_page():
    from helpers.voice_effects import ThemeTrends

    changes = pd.DataFrame({"period": [pd.Timestamp("2026-03-01")] * 2, "theme": ["a", "b"], "label": ["A", "B"],
                            "share_before": [1.0, 5.0], "share": [9.0, 2.0], "difference": [8.0, -3.0],
                            "p_value": [1e-6, 0.0312], "significant": [True, True]})
    text = ThemeTrends(pd.DataFrame(), changes, pd.DataFrame(), "month").summary()
    assert "A rose from 1.0% to 9.0% (p < 0.001)" in text and "B fell from 5.0% to 2.0% (p = 0.031)" in text
