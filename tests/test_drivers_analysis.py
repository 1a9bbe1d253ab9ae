"""helpers.drivers_analysis: ordinal check, importance-performance map, segments, report objects, demo truth."""
import json

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from helpers.drivers import DriverInputError  # noqa: E402
from helpers.drivers_analysis import (analyze_by_segment, analyze_drivers, importance_performance,  # noqa: E402
                                      ordinal_check, select_responses)

ATTRS = ["attr_speed", "attr_resolution", "attr_knowledge", "attr_courtesy"]


def _ordinal_data(n, b, seed, cuts=(-2.0, -0.5, 1.0, 2.5)):
    """Proportional-odds data with known coefficients: P(y <= k) = logistic(cut_k - x'b)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(1, 6, size=(n, len(b))).astype(float)
    eta = (X - 3) @ np.asarray(b)
    y = 1 + np.searchsorted(np.asarray(cuts), eta + rng.logistic(size=n))
    df = pd.DataFrame(X, columns=ATTRS[:len(b)])
    df["csat"] = y.astype(float)
    return df


def test_ordinal_check_recovers_known_odds_ratios():
    b = np.array([0.9, 0.5, 0.2, 0.0])
    df = _ordinal_data(6000, b, seed=4)
    oc = ordinal_check(df, "csat", ATTRS)
    t = oc.table.loc[ATTRS]
    truth = np.exp(b)
    assert ((t["or_low"] <= truth) & (truth <= t["or_high"])).all(), t
    assert t["ordinal_rank"].tolist() == [1, 2, 3, 4]
    assert oc.n == 6000 and "multiplies the odds" in oc.summary()


def test_fast_ordinal_fit_equals_statsmodels_ordered_model():
    """The analytic-score subclass gives statsmodels OrderedModel's own estimates and standard errors."""
    from statsmodels.miscmodels.ordinal_model import OrderedModel
    from statsmodels.tools.numdiff import approx_fprime

    from helpers.drivers_analysis import _prop_odds_model_class

    df = _ordinal_data(2000, [0.9, 0.5, 0.2, 0.0], seed=12)
    y = pd.Series(pd.Categorical(df["csat"], ordered=True))
    ref = OrderedModel(y, df[ATTRS], distr="logit").fit(method="bfgs", disp=False, maxiter=500)
    fast_model = _prop_odds_model_class()(y, df[ATTRS], distr="logit")
    fast = fast_model.fit(method="bfgs", disp=False, maxiter=500)
    np.testing.assert_allclose(fast.params, ref.params, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(fast.bse, ref.bse, rtol=1e-4)
    p = ref.params.to_numpy()
    np.testing.assert_allclose(fast_model.score(p), approx_fprime(p, fast_model.loglike, centered=True), atol=1e-5)


def test_ordinal_check_on_large_data_uses_a_seeded_subsample_and_says_so():
    b = np.array([0.9, 0.5, 0.2, 0.0])
    df = _ordinal_data(12000, b, seed=21)
    full = ordinal_check(df, "csat", ATTRS)
    assert full.n == 12000 and full.n_available is None and not full.subsampled
    assert "subsample" not in full.summary()
    sub = ordinal_check(df, "csat", ATTRS, max_rows=4000, seed=7)
    assert sub.n == 4000 and sub.n_available == 12000 and sub.subsampled
    assert "random subsample of 4,000 of the 12,000 complete responses" in sub.summary()
    assert any("subsample" in note for note in sub.notes)
    pd.testing.assert_frame_equal(sub.table, ordinal_check(df, "csat", ATTRS, max_rows=4000, seed=7).table)
    other = ordinal_check(df, "csat", ATTRS, max_rows=4000, seed=8)
    assert not np.allclose(other.table["odds_ratio"], sub.table["odds_ratio"])
    # the subsample estimates the same model: the true odds ratios lie in its (wider) intervals
    t = sub.table.loc[ATTRS]
    assert ((t["or_low"] <= np.exp(b)) & (np.exp(b) <= t["or_high"])).all(), t
    assert (t["or_high"] - t["or_low"]).gt(full.table.loc[ATTRS, "or_high"] - full.table.loc[ATTRS, "or_low"]).all()
    # below the limit nothing changes (the default limit is 100,000 rows)
    pd.testing.assert_frame_equal(ordinal_check(df, "csat", ATTRS, max_rows=12000, seed=7).table, full.table)


def test_driver_analysis_passes_its_seed_to_the_ordinal_subsample():
    df = _ordinal_data(8000, [0.9, 0.5, 0.2, 0.0], seed=5)
    a = analyze_drivers(df, "csat", ATTRS, n_boot=0, seed=11, ordinal_max_rows=3000)
    b = analyze_drivers(df, "csat", ATTRS, n_boot=0, seed=11, ordinal_max_rows=3000)
    assert analyze_drivers(df, "csat", ATTRS, n_boot=0, seed=11).ordinal.n == 8000  # default limit 100,000
    assert a.ordinal.n == 3000 and a.ordinal.n_available == 8000
    pd.testing.assert_frame_equal(a.ordinal.table, b.ordinal.table)


def test_ordinal_ranking_disagreement_is_reported():
    df = _ordinal_data(3000, [0.9, 0.5, 0.2, 0.05], seed=2)
    fake_shapley = pd.Series([2, 1, 3, 4], index=ATTRS)
    oc = ordinal_check(df, "csat", ATTRS, shapley_rank=fake_shapley)
    assert oc.disagreements == ["attr_speed", "attr_resolution"]
    assert "differ for Speed (ordinal #1, Shapley #2)" in oc.summary()


def test_importance_performance_quadrants_follow_the_rule():
    imp = pd.DataFrame({"share": [0.4, 0.3, 0.2, 0.1]}, index=ATTRS)
    # means: speed 2 (low), resolution 4 (high), knowledge 2 (low), courtesy 4 (high); cut = 3, 1/p = 0.25
    data = pd.DataFrame({"attr_speed": [1, 3], "attr_resolution": [4, 4], "attr_knowledge": [2, 2],
                         "attr_courtesy": [5, 3]}, dtype=float)
    ipa = importance_performance(imp, data, scale_max=5)
    assert ipa.table["quadrant"].to_dict() == {"attr_speed": "fix first", "attr_resolution": "keep up",
                                                "attr_knowledge": "low priority", "attr_courtesy": "possible overkill"}
    assert ipa.fix_first == ["attr_speed"]
    assert ipa.table.loc["attr_speed", "opportunity"] == pytest.approx(0.4 * 3)
    assert "Speed (40% of explained variance, rated 2.00)" in ipa.summary()
    weighted = importance_performance(imp, data, weights=np.array([3.0, 1.0]))
    assert weighted.table.loc["attr_speed", "performance"] == pytest.approx(1.5)


def _segment_data(seed):
    rng = np.random.default_rng(seed)
    n = 1500
    parts = []
    for seg, b in (("A", [0.8, 0.2, 0.2, 0.2]), ("B", [0.2, 0.2, 0.2, 0.8]), ("C", [0.8, 0.2, 0.2, 0.2])):
        X = rng.normal(size=(n, 4))
        y = X @ np.array(b) + rng.normal(size=n)
        parts.append(pd.DataFrame(X, columns=ATTRS).assign(csat=y, dept=seg))
    small = pd.DataFrame(rng.normal(size=(12, 4)), columns=ATTRS).assign(csat=rng.normal(size=12), dept="tiny")
    return pd.concat([*parts, small], ignore_index=True)


def test_segment_difference_interval_finds_real_differences_only():
    df = _segment_data(9)
    seg = analyze_by_segment(df, "csat", ATTRS, "dept", n_boot=300, seed=3)
    assert set(seg.results) == {"A", "B", "C"} and not seg.sizes.loc["tiny", "analysed"]
    assert any("'tiny'" in w for w in seg.warnings)
    ab = seg.compare("A", "B")
    assert ab.loc["attr_speed", "differs"] and ab.loc["attr_speed", "difference"] > 0
    assert ab.loc["attr_courtesy", "differs"] and ab.loc["attr_courtesy", "difference"] < 0
    ac = seg.compare("A", "C")  # same true structure
    assert not ac["differs"].any(), ac
    assert seg.shares().shape == (3, 4)
    assert "Too few responses to analyse: tiny" in seg.summary()
    with pytest.raises(DriverInputError, match="not analysed"):
        seg.compare("A", "tiny")
    fig, ax = plt.subplots()
    assert seg.plot(ax) is ax
    plt.close(fig)


def test_driver_analysis_report_object():
    df = _ordinal_data(2500, [0.9, 0.5, 0.2, 0.0], seed=8)
    res = analyze_drivers(df, "csat", ATTRS, n_boot=200, seed=1, label="Billing")
    t = res.table
    assert t.index[0] == "attr_speed" and list(t["rank"]) == [1, 2, 3, 4]
    assert {"ci_low", "ci_high", "share_low", "share_high", "vif", "performance", "quadrant"} <= set(t.columns)
    assert (t["share_low"] <= t["share"]).all() and (t["share"] <= t["share_high"]).all()
    np.testing.assert_allclose(t["share"].sum(), 1.0)
    s = res.summary()
    assert "Speed is the strongest driver" in s and "% of explained variance (95% CI" in s and "Billing" in s
    assert res.ordinal is not None and res.ordinal.table["ordinal_rank"].loc["attr_speed"] == 1
    fig, ax = plt.subplots()
    assert res.plot(ax) is ax and len(ax.patches) == 4
    res.ipa.plot(ax)
    res.ordinal.plot(ax)
    plt.close(fig)
    few = analyze_drivers(df.head(30), "csat", ATTRS, n_boot=0, ordinal=False)
    assert any("fewer than" in w for w in few.warnings) and "Caution" in few.summary()


def test_select_responses_by_slug_and_period():
    r = pd.DataFrame({"department": ["Technical Support", "Sales", "Technical Support"],
                      "response_date": pd.to_datetime(["2024-01-05", "2024-02-01", "2024-03-01"])})
    assert len(select_responses(r, "technical_support")) == 2
    assert len(select_responses(r, "Technical Support", period_start="2024-02-01")) == 1
    assert len(select_responses(r, "all", period_end="2024-02-01")) == 2
    with pytest.raises(DriverInputError, match="departments in the data: Sales, Technical Support"):
        select_responses(r, "billing")
    with pytest.raises(DriverInputError, match="not an ISO date"):
        select_responses(r, "all", period_start="last year")


def test_demo_recovers_true_driver_ranking_per_department(small_demo):
    """Ground truth: the population LMG shares of the latent model (ground_truth.json). Observed ratings are
    rounded to 1..5, so near-ties can swap; every pair of drivers whose true shares differ by at least 3
    points must come out in the true order, and the top driver must be right, in every department with at
    least 500 responses."""
    from helpers.data import load_dataset

    ds = load_dataset(small_demo)
    truth = json.loads((small_demo / "ground_truth.json").read_text())["drivers"]["by_department"]
    checked = 0
    for dept, entry in truth.items():
        part = ds.responses[ds.responses["department"] == dept]
        if "relative_importance" not in entry or part[["csat", *ds.attributes]].dropna().shape[0] < 500:
            continue
        res = analyze_drivers(part, "csat", ds.attributes, n_boot=0, ordinal=False, label=dept)
        est = res.table["share"]
        true = pd.Series(entry["relative_importance"])
        for a in true.index:
            for b in true.index:
                if true[a] - true[b] >= 0.03:
                    assert est[a] > est[b], (dept, a, b, true.round(3).to_dict(), est.round(3).to_dict())
        tops = true[true >= true.max() - 0.005].index  # an exact tie for first place allows either
        assert est.idxmax() in tops, (dept, true.round(3).to_dict(), est.round(3).to_dict())
        checked += 1
    assert checked >= 4


def test_drivers_report_text_mentions_the_ordinal_subsample():
    from helpers.drivers_report import DriversReport

    df = _ordinal_data(8000, [0.9, 0.5, 0.2, 0.0], seed=6)
    report = DriversReport(department="all", outcome="csat", drivers=ATTRS, period=("2025-01-01", "2025-12-31"),
                           n_boot=0)
    report.main = analyze_drivers(df, "csat", ATTRS, n_boot=0, seed=1, ordinal_max_rows=3000)
    assert "seeded random subsample of 3,000 of the 8,000 complete responses" in report.what_to_fix_markdown()
    report.main = analyze_drivers(df, "csat", ATTRS, n_boot=0, seed=1)
    assert "subsample" not in report.what_to_fix_markdown()
