"""helpers.drivers: the relative-importance engine against published results and independent computations.

Published references (see tests/reference/drivers/SOURCES.md for where each number comes from):
R relaimpo / domir on mtcars, R rwa on mtcars, R lm on swiss, Azen & Budescu (2003).
"""
from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from helpers.drivers import (METHODS, DriverInputError, conditional_dominance, relative_importance,
                             relative_importance_from_corr, vif)
from helpers.errors import KitError

REF = Path(__file__).parent / "reference" / "drivers"


def rel6(actual, expected):
    """Agreement to 6 significant digits (published values carry 7)."""
    np.testing.assert_allclose(actual, expected, rtol=5e-7, atol=0)


@pytest.fixture(scope="module")
def mtcars():
    return pd.read_csv(REF / "mtcars.csv")


@pytest.fixture(scope="module")
def swiss():
    return pd.read_csv(REF / "swiss.csv").rename(columns={"Infant.Mortality": "Infant_Mortality"})


SWISS_X = ["Agriculture", "Examination", "Education", "Catholic", "Infant_Mortality"]


# --- relaimpo calc.relimp / domir on mtcars (domir README: mpg ~ am + vs + cyl) -----------------------------
def test_lmg_matches_relaimpo_mtcars(mtcars):
    t = relative_importance(mtcars, "mpg", ["am", "vs", "cyl"], method="shapley")
    rel6(t.attrs["r2"], 0.7619773)
    rel6(t.loc[["am", "vs", "cyl"], "importance"], [0.1774892, 0.2027032, 0.3817849])
    # domir's "Standardized" column = share of R^2
    rel6(t.loc[["am", "vs", "cyl"], "share"], [0.2329324, 0.2660226, 0.5010450])
    assert t.loc[["am", "vs", "cyl"], "rank"].tolist() == [3, 2, 1]
    assert t.attrs["exact"] and t.attrs["n"] == 32 and t.attrs["method"] == "shapley"


def test_conditional_dominance_first_last_match_domir_mtcars(mtcars):
    cd = conditional_dominance(mtcars, "mpg", ["am", "vs", "cyl"])
    # domir "Conditional Dominance Values", subset sizes 1, 2, 3
    rel6(cd.loc["am"], [0.3597989, 0.1389842, 0.033684441])
    rel6(cd.loc["vs"], [0.4409477, 0.1641982, 0.002963748])
    rel6(cd.loc["cyl"], [0.7261800, 0.3432799, 0.075894823])
    first = relative_importance(mtcars, "mpg", ["am", "vs", "cyl"], method="first")["importance"]
    last = relative_importance(mtcars, "mpg", ["am", "vs", "cyl"], method="last")["importance"]
    rel6(first.loc[["am", "vs", "cyl"]], [0.3597989, 0.4409477, 0.7261800])
    rel6(last.loc[["am", "vs", "cyl"]], [0.033684441, 0.002963748, 0.075894823])


# --- rwa (Johnson 2000 relative weights) on mtcars ---------------------------------------------------------
@pytest.mark.parametrize("drivers, r2, weights", [
    (["cyl", "disp", "hp", "gear"], 0.7791896, [0.2284797, 0.2221469, 0.2321744, 0.0963886]),
    (["cyl", "disp", "hp", "wt"], None, [0.2096904, 0.1883043, 0.1799590, 0.2706812]),
])
def test_relative_weights_match_rwa_mtcars(mtcars, drivers, r2, weights):
    t = relative_importance(mtcars, "mpg", drivers, method="relative_weights")
    rel6(t.loc[drivers, "importance"], weights)
    if r2 is not None:
        rel6(t.attrs["r2"], r2)
    else:  # the rwa vignette prints R-squared: 0.8486
        assert round(t.attrs["r2"], 4) == 0.8486
    np.testing.assert_allclose(t["importance"].sum(), t.attrs["r2"], rtol=1e-12)


# --- swiss: betasq and pratt from R's published lm coefficients -------------------------------------------
SWISS_COEF = [-0.1721140, -0.2580082, -0.8709401, 0.1041153, 1.0770481]  # summary(lm(Fertility ~ ., swiss))


def test_betasq_and_pratt_match_r_lm_swiss(swiss):
    sd = swiss[SWISS_X].std()
    sy = swiss["Fertility"].std()
    r = swiss[SWISS_X].corrwith(swiss["Fertility"])
    beta_std = np.array(SWISS_COEF) * sd.to_numpy() / sy
    bsq = relative_importance(swiss, "Fertility", SWISS_X, method="betasq")
    pratt = relative_importance(swiss, "Fertility", SWISS_X, method="pratt")
    # the published coefficients carry 7 significant digits; squaring doubles their rounding error, so
    # compare the standardized coefficient recovered from each metric
    rel6(np.sign(SWISS_COEF) * np.sqrt(bsq.loc[SWISS_X, "importance"]), beta_std)
    rel6(pratt.loc[SWISS_X, "importance"] / r.to_numpy(), beta_std)
    assert round(bsq.attrs["r2"], 4) == 0.7067
    np.testing.assert_allclose(pratt["importance"].sum(), pratt.attrs["r2"], rtol=1e-12)
    # the sign column is the direction of the published coefficients
    assert bsq.loc[SWISS_X, "sign"].tolist() == [int(np.sign(c)) for c in SWISS_COEF]


# --- Azen & Budescu (2003): dominance analysis from a published correlation matrix ------------------------
AB_NAMES = ["y", "x1", "x2", "x3", "x4"]
AB_CORR = pd.DataFrame([[1.0, 0.6, 0.3, 0.4, 0.5],
                        [0.6, 1.0, 0.8, 0.1, 0.3],
                        [0.3, 0.8, 1.0, 0.1, 0.1],
                        [0.4, 0.1, 0.1, 1.0, 0.5],
                        [0.5, 0.3, 0.1, 0.5, 1.0]], index=AB_NAMES, columns=AB_NAMES)
# average contribution by subset size (rows: sizes 0..3; columns x1..x4), as published to 3 decimals
AB_LEVELS = np.array([[0.360, 0.090, 0.160, 0.250],
                      [0.300, 0.074, 0.095, 0.152],
                      [0.263, 0.069, 0.063, 0.073],
                      [0.246, 0.071, 0.061, 0.010]])


def test_dominance_from_corr_matches_azen_budescu_2003():
    x = ["x1", "x2", "x3", "x4"]
    cd = conditional_dominance(AB_CORR, "y", x, from_corr=True)
    np.testing.assert_allclose(cd.to_numpy().T, AB_LEVELS, atol=0.0015)
    t = relative_importance_from_corr(AB_CORR, "y", x)
    np.testing.assert_allclose(t.loc[x, "importance"], AB_LEVELS.mean(axis=0), atol=0.0015)
    np.testing.assert_allclose(t["importance"].sum(), t.attrs["r2"], rtol=1e-12)
    # general dominance designations published: x1 > x4 > x3 > x2
    assert t.sort_values("importance", ascending=False).index.tolist() == ["x1", "x4", "x3", "x2"]
    # complete dominance of x1 over all others: it contributes more at every subset size
    assert (cd.loc["x1"] > cd.loc[["x2", "x3", "x4"]].max()).all()


def test_invalid_correlation_matrix_is_refused():
    bad = AB_CORR.copy()
    bad.loc["x1", "x2"] = bad.loc["x2", "x1"] = -0.9  # with x1-x3/x2-x3 etc. no longer a correlation matrix
    bad.loc["x1", "y"] = bad.loc["y", "x1"] = 0.95
    bad.loc["x2", "y"] = bad.loc["y", "x2"] = 0.95
    with pytest.raises(DriverInputError, match="not positive semi-definite"):
        relative_importance_from_corr(bad, "y", ["x1", "x2", "x3", "x4"])
    with pytest.raises(DriverInputError, match="symmetric"):
        relative_importance_from_corr(AB_CORR.to_numpy() + np.triu(np.full((5, 5), 0.01), 1), "y",
                                      ["x1", "x2", "x3", "x4"])


def test_from_corr_equals_from_data_for_every_method(swiss):
    corr = swiss[["Fertility", *SWISS_X]].corr()
    for m in METHODS:
        a = relative_importance(swiss, "Fertility", SWISS_X, method=m)
        b = relative_importance_from_corr(corr, "Fertility", SWISS_X, method=m)
        np.testing.assert_allclose(a["importance"], b["importance"], rtol=1e-10, atol=1e-14)
        # a covariance matrix gives the same answer
        c = relative_importance_from_corr(swiss[["Fertility", *SWISS_X]].cov(), "Fertility", SWISS_X, method=m)
        np.testing.assert_allclose(c["importance"], a["importance"], rtol=1e-10, atol=1e-14)


# --- independent brute force: average over orderings with statsmodels OLS --------------------------------
def _ols_r2(df, outcome, terms):
    if not terms:
        return 0.0
    return smf.ols(f"{outcome} ~ " + " + ".join(terms), data=df).fit().rsquared


def _brute_force_lmg(df, outcome, players, term_of):
    r2 = {}
    phi = dict.fromkeys(players, 0.0)
    orders = list(permutations(players))
    for order in orders:
        before = []
        for p in order:
            key0, key1 = frozenset(before), frozenset(before + [p])
            for key in (key0, key1):
                if key not in r2:
                    r2[key] = _ols_r2(df, outcome, [term_of[q] for q in sorted(key)])
            phi[p] += (r2[key1] - r2[key0]) / len(orders)
            before.append(p)
    return pd.Series(phi)


def test_shapley_equals_average_over_all_orderings_with_groups():
    rng = np.random.default_rng(7)
    n = 400
    x1 = rng.normal(size=n)
    x2 = 0.6 * x1 + rng.normal(size=n)
    g = rng.choice(["a", "b", "c"], size=n)
    x3 = rng.normal(size=n) + (g == "b")
    y = 0.5 * x1 - 0.3 * x2 + 0.8 * (g == "c") + 0.2 * x3 + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "x3": x3, "channel": g})
    players = ["x1", "x2", "channel", "x3"]
    expected = _brute_force_lmg(df, "y", players, {"x1": "x1", "x2": "x2", "x3": "x3", "channel": "C(channel)"})
    t = relative_importance(df, "y", players)
    np.testing.assert_allclose(t.loc[players, "importance"], expected.loc[players], rtol=1e-9)
    np.testing.assert_allclose(t.attrs["r2"], _ols_r2(df, "y", ["x1", "x2", "C(channel)", "x3"]), rtol=1e-10)
    assert t.loc["channel", "sign"] == 0 and t.loc["x2", "sign"] == -1
    # "first" and "last" for a factor are the group's R^2 alone / R^2 lost when the group is dropped
    first = relative_importance(df, "y", players, method="first")
    np.testing.assert_allclose(first.loc["channel", "importance"], _ols_r2(df, "y", ["C(channel)"]), rtol=1e-9)
    last = relative_importance(df, "y", players, method="last")
    full = _ols_r2(df, "y", ["x1", "x2", "C(channel)", "x3"])
    np.testing.assert_allclose(last.loc["channel", "importance"], full - _ols_r2(df, "y", ["x1", "x2", "x3"]),
                               rtol=1e-9)
    with pytest.raises(DriverInputError, match="categorical"):
        relative_importance(df, "y", players, method="betasq")


def test_exact_for_twenty_drivers_sums_to_r2():
    rng = np.random.default_rng(3)
    p = 20
    X = rng.normal(size=(300, p)) + rng.normal(size=(300, 1))
    y = X @ rng.uniform(0, 1, p) + rng.normal(size=300) * 3
    df = pd.DataFrame(X, columns=[f"a{i}" for i in range(p)]).assign(y=y)
    t = relative_importance(df, "y", [f"a{i}" for i in range(p)])
    assert t.attrs["exact"] and t.attrs["method_used"] == "shapley"
    np.testing.assert_allclose(t["importance"].sum(), t.attrs["r2"], rtol=1e-10)
    assert (t["importance"] > 0).all()


def test_above_exact_limit_falls_back_to_relative_weights_and_says_so(mtcars):
    drivers = ["cyl", "disp", "hp", "wt"]
    t = relative_importance(mtcars, "mpg", drivers, max_exact=3)
    assert not t.attrs["exact"] and t.attrs["method_used"] == "relative_weights"
    assert "relative weights" in t.attrs["fallback"] and t.attrs["fallback"] in t.attrs["warnings"]
    rel6(t.loc[drivers, "importance"], [0.2096904, 0.1883043, 0.1799590, 0.2706812])


# --- case weights and missing data -------------------------------------------------------------------------
def test_integer_case_weights_equal_duplicated_rows(swiss):
    w = np.arange(len(swiss)) % 3 + 1
    dup = swiss.loc[swiss.index.repeat(w)].reset_index(drop=True)
    for m in ("shapley", "relative_weights", "pratt"):
        a = relative_importance(swiss.assign(w=w), "Fertility", SWISS_X, method=m, weights="w")
        b = relative_importance(dup, "Fertility", SWISS_X, method=m)
        np.testing.assert_allclose(a["importance"], b["importance"], rtol=1e-10)
        assert a.attrs["weighted"] and not b.attrs["weighted"]


def test_pairwise_missing_uses_pairwise_complete_correlations(swiss):
    rng = np.random.default_rng(11)
    df = swiss.copy()
    for c in SWISS_X:
        df.loc[rng.choice(len(df), 4, replace=False), c] = np.nan
    t = relative_importance(df, "Fertility", SWISS_X, missing="pairwise")
    ref = relative_importance_from_corr(df[["Fertility", *SWISS_X]].corr(), "Fertility", SWISS_X)  # pandas: pairwise
    np.testing.assert_allclose(t["importance"], ref["importance"], rtol=1e-10)
    assert t.attrs["missing"] == "pairwise"
    lw = relative_importance(df, "Fertility", SWISS_X)
    assert lw.attrs["missing"] == "listwise" and lw.attrs["n"] == df.dropna().shape[0]
    ref_lw = relative_importance(df.dropna(), "Fertility", SWISS_X)
    np.testing.assert_allclose(lw["importance"], ref_lw["importance"], rtol=1e-12)


def test_weighted_pairwise_equals_duplicated_rows(swiss):
    rng = np.random.default_rng(2)
    df = swiss.copy().astype({c: float for c in SWISS_X})
    for c in SWISS_X:
        df.loc[rng.choice(len(df), 3, replace=False), c] = np.nan
    w = np.arange(len(df)) % 2 + 1
    dup = df.loc[df.index.repeat(w)].reset_index(drop=True)
    a = relative_importance(df.assign(w=w), "Fertility", SWISS_X, weights="w", missing="pairwise")
    b = relative_importance(dup, "Fertility", SWISS_X, missing="pairwise")
    np.testing.assert_allclose(a["importance"], b["importance"], rtol=1e-10)


def test_pairwise_bootstrap_replicates_match_pandas(swiss):
    from helpers.drivers import _build_design, _pairwise_corr_stack, _resample_weights
    rng = np.random.default_rng(4)
    df = swiss.copy().astype({c: float for c in SWISS_X})
    for c in SWISS_X:
        df.loc[rng.choice(len(df), 4, replace=False), c] = np.nan
    d = _build_design(df, "Fertility", SWISS_X, None, "pairwise")
    W = _resample_weights(len(d.X), d.w, 4, np.random.default_rng(0))
    stack, _ = _pairwise_corr_stack(d.X, W)
    for b in range(4):
        idx = np.repeat(np.arange(len(d.X)), W[b].astype(int))
        ref = pd.DataFrame(d.X[idx]).corr().to_numpy()
        np.testing.assert_allclose(stack[b], ref, rtol=1e-9, atol=1e-12)
    t = relative_importance(df, "Fertility", SWISS_X, missing="pairwise", n_boot=100, seed=3)
    assert np.isfinite(t[["ci_low", "ci_high"]].to_numpy()).all()


# --- bootstrap -------------------------------------------------------------------------------------------
def test_bootstrap_is_reproducible_and_covers_the_true_value():
    # independent standard-normal drivers: the true Shapley value of x_j is b_j^2 / var(y)
    rng = np.random.default_rng(5)
    b = np.array([0.8, 0.5, 0.3])
    n = 3000
    X = rng.normal(size=(n, 3))
    y = X @ b + rng.normal(size=n)
    truth = b ** 2 / (b @ b + 1)
    df = pd.DataFrame(X, columns=list("abc")).assign(y=y)
    t1 = relative_importance(df, "y", list("abc"), n_boot=400, seed=1)
    t2 = relative_importance(df, "y", list("abc"), n_boot=400, seed=1)
    pd.testing.assert_frame_equal(t1.table, t2.table)
    assert ((t1["ci_low"] <= truth) & (truth <= t1["ci_high"])).all()
    assert (t1["ci_low"] <= t1["importance"]).all() and (t1["importance"] <= t1["ci_high"]).all()
    bca = relative_importance(df, "y", list("abc"), n_boot=400, seed=1, ci_method="bca")
    assert ((bca["ci_low"] <= truth) & (truth <= bca["ci_high"])).all()
    assert ((bca["ci_low"] < bca["importance"]) & (bca["importance"] < bca["ci_high"])).all()


def test_bootstrap_vectorised_replicates_match_a_loop(swiss):
    """The stacked (one-GEMM) replicate correlations equal refitting each resample."""
    from helpers.drivers import _build_design, _complete_corr_stack, _resample_weights, _weighted_corr
    d = _build_design(swiss, "Fertility", SWISS_X, None, "listwise")
    W = _resample_weights(len(swiss), d.w, 5, np.random.default_rng(0))
    stack = _complete_corr_stack(d.X, W)
    for b in range(5):
        idx = np.repeat(np.arange(len(swiss)), W[b].astype(int))
        np.testing.assert_allclose(stack[b], np.corrcoef(d.X[idx].T), rtol=1e-10, atol=1e-12)


def _rating_data(n, seed):
    """Survey-like data: drivers and outcome on 1-5 scales, so rows repeat."""
    rng = np.random.default_rng(seed)
    X = rng.integers(1, 6, size=(n, 3)).astype(float)
    y = np.clip(np.round(0.6 * X[:, 0] + 0.3 * X[:, 1] + 0.1 * X[:, 2] + rng.normal(0, 0.8, n)), 1, 5)
    return pd.DataFrame(X, columns=list("abc")).assign(y=y, w=rng.integers(1, 3, n).astype(float))


@pytest.mark.parametrize("weights", [None, "w"])
def test_large_data_bootstrap_on_distinct_rows_matches_row_resampling(monkeypatch, weights):
    """Above COLLAPSE_MIN_ROWS the replicates draw multinomial counts of the distinct rows; that is the
    same bootstrap distribution as resampling rows, so means and spreads of the draws agree (checked here
    by lowering the threshold so both schemes run on the same data), and a fixed seed reproduces it."""
    import helpers.drivers as drivers_engine

    df = _rating_data(3000, seed=8)
    row_level = relative_importance(df, "y", list("abc"), weights=weights, n_boot=1500, seed=3)
    collapsed_calls = []
    original = drivers_engine._collapsed_rows

    def spy(design):
        out = original(design)
        collapsed_calls.append(out is not None)
        return out

    monkeypatch.setattr(drivers_engine, "COLLAPSE_MIN_ROWS", 1000)
    monkeypatch.setattr(drivers_engine, "_collapsed_rows", spy)
    collapsed = relative_importance(df, "y", list("abc"), weights=weights, n_boot=1500, seed=3)
    again = relative_importance(df, "y", list("abc"), weights=weights, n_boot=1500, seed=3)
    assert collapsed_calls == [True, True]
    pd.testing.assert_frame_equal(collapsed.table, again.table)
    pd.testing.assert_series_equal(collapsed["importance"], row_level["importance"])
    assert not np.allclose(collapsed["ci_low"], row_level["ci_low"], rtol=0, atol=1e-12)  # other draws
    d_row, d_col = row_level.draws, collapsed.draws
    se_row, se_col = d_row.std(axis=0), d_col.std(axis=0)
    np.testing.assert_allclose(se_col, se_row, rtol=0.12)  # SE of an SE from 1500 draws is about 2%
    np.testing.assert_allclose(d_col.mean(axis=0), d_row.mean(axis=0), atol=0.15 * se_row.max())
    np.testing.assert_allclose(collapsed["ci_low"], row_level["ci_low"], atol=0.3 * se_row.max())
    np.testing.assert_allclose(collapsed["ci_high"], row_level["ci_high"], atol=0.3 * se_row.max())


def test_distinct_rows_are_not_used_when_rows_do_not_repeat(monkeypatch):
    import helpers.drivers as drivers_engine
    from helpers.drivers import _build_design, _collapsed_rows

    monkeypatch.setattr(drivers_engine, "COLLAPSE_MIN_ROWS", 100)
    rng = np.random.default_rng(1)
    continuous = pd.DataFrame(rng.normal(size=(500, 3)), columns=list("aby"))
    assert _collapsed_rows(_build_design(continuous, "y", ["a", "b"], None, "listwise")) is None
    ratings = _rating_data(3000, seed=2)  # at most 5^4 = 625 distinct rows
    X_u, w_u, counts = _collapsed_rows(_build_design(ratings, "y", list("abc"), None, "listwise"))
    assert counts.sum() == 3000 and (w_u == 1).all() and X_u.shape == (len(counts), 4) and len(counts) == len(ratings[["y", "a", "b", "c"]].drop_duplicates())
    monkeypatch.setattr(drivers_engine, "COLLAPSE_MIN_ROWS", 3000)  # at the threshold: row-level draws
    assert _collapsed_rows(_build_design(ratings, "y", list("abc"), None, "listwise")) is None


# --- bad input -----------------------------------------------------------------------------------------
def test_constant_all_missing_and_aliased_drivers_are_dropped_and_named(swiss):
    df = swiss.assign(const=3.0, empty=np.nan, alias=swiss["Agriculture"] + 2 * swiss["Education"])
    t = relative_importance(df, "Fertility", [*SWISS_X, "const", "empty", "alias"])
    assert set(t.attrs["dropped"]) == {"const", "empty", "alias"}
    assert "constant" in t.attrs["dropped"]["const"] and "aliased" in t.attrs["dropped"]["alias"]
    ref = relative_importance(swiss, "Fertility", SWISS_X)
    pd.testing.assert_series_equal(t["importance"], ref["importance"])
    assert np.isfinite(t.to_numpy(dtype=float)).all()


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.assign(Fertility=d["Fertility"].astype(str)), "outcome 'Fertility' has dtype"),
    (lambda d: d.head(5), "5 usable rows for 5 driver columns"),
    (lambda d: d.assign(Fertility=np.nan), "missing in all"),
    (lambda d: d.assign(Fertility=1.0), "constant"),
    (lambda d: d.drop(columns="Catholic"), "not in the data"),
])
def test_bad_input_raises_a_clear_error(swiss, mutate, match):
    with pytest.raises(DriverInputError, match=match) as e:
        relative_importance(mutate(swiss), "Fertility", SWISS_X)
    assert isinstance(e.value, KitError) and isinstance(e.value, ValueError)


def test_infinite_values_count_as_missing(swiss):
    df = swiss.copy()
    df["Education"] = df["Education"].astype(float)
    df.loc[3, "Education"] = np.inf
    t = relative_importance(df, "Fertility", SWISS_X)
    ref = relative_importance(swiss.drop(index=3), "Fertility", SWISS_X)
    assert t.attrs["n"] == 46
    np.testing.assert_allclose(t["importance"], ref["importance"], rtol=1e-12)


def test_bad_arguments(swiss):
    with pytest.raises(DriverInputError, match="method"):
        relative_importance(swiss, "Fertility", SWISS_X, method="lmg2")
    with pytest.raises(DriverInputError, match="weights"):
        relative_importance(swiss, "Fertility", SWISS_X, weights=np.ones(3))
    with pytest.raises(DriverInputError, match="usable"):
        relative_importance(swiss.assign(e=np.nan), "Fertility", ["e"])


def test_vif_matches_statsmodels(swiss):
    from statsmodels.stats.outliers_influence import variance_inflation_factor
    X = np.column_stack([np.ones(len(swiss)), swiss[SWISS_X].to_numpy()])
    expected = [variance_inflation_factor(X, i) for i in range(1, X.shape[1])]
    np.testing.assert_allclose(vif(swiss, SWISS_X).loc[SWISS_X], expected, rtol=1e-9)


# --- by=: one analysis per group (issue 17) ----------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(small_demo):
    from helpers.data import load_dataset
    return load_dataset(small_demo)


def test_by_a_customer_column_equals_the_analysis_of_each_groups_filter(demo):
    """relative_importance(ds, by="segment"): per group the shares, n and R^2 of relative_importance on that
    segment's filter (customer column joined in DuckDB), intervals alike within bootstrap error."""
    from helpers.drivers import GroupedDriverImportance
    drivers = demo.attributes
    grouped = relative_importance(demo, "nps", drivers, by="segment", n_boot=200, seed=4,
                                  filters={"department": "billing"}, start="2025-01-01")
    assert isinstance(grouped, GroupedDriverImportance)
    segments = sorted(demo.customers["segment"].dropna().unique())
    assert grouped.sizes["group"].tolist() == segments and not grouped.sizes["small"].any()
    for seg in segments:
        alone = relative_importance(demo, "nps", drivers, n_boot=200, seed=4, start="2025-01-01",
                                    filters={"department": "Billing", "segment": seg})
        rows = grouped.table[grouped.table["segment"] == seg].set_index("driver")
        np.testing.assert_allclose(rows.loc[alone.table.index, "share"], alone.table["share"], rtol=1e-10)
        np.testing.assert_allclose(rows.loc[alone.table.index, "importance"], alone.table["importance"], rtol=1e-10)
        assert (rows["rank"].loc[alone.table.index] == alone.table["rank"]).all()
        assert (rows["n"] == alone.n).all() and grouped.sizes.set_index("group").loc[seg, "n"] == alone.n
        assert grouped[seg].r2 == pytest.approx(alone.r2, rel=1e-10)
        ref = alone.share_intervals()
        # same seed, rows possibly in another order: the percentile ends agree within bootstrap error
        np.testing.assert_allclose(rows.loc[ref.index, "share_low"], ref["share_low"], atol=0.04)
        np.testing.assert_allclose(rows.loc[ref.index, "share_high"], ref["share_high"], atol=0.04)
        assert (rows["share_low"] <= rows["share"]).all() and (rows["share"] <= rows["share_high"]).all()
    # and by hand, independently of the kit's selection: pandas merge of the raw tables, n counted listwise
    merged = demo.responses.merge(demo.customers[["customer_id", "segment"]], on="customer_id", how="left")
    part = merged[(merged["department"] == "Billing") & (merged["response_date"] >= "2025-01-01")
                  & (merged["segment"] == "enterprise")]
    by_hand = relative_importance(part, "nps", drivers)
    np.testing.assert_allclose(grouped["enterprise"].table["share"], by_hand.table["share"], rtol=1e-10)


def test_by_flags_small_groups_and_does_not_analyse_them(demo):
    grouped = relative_importance(demo, "csat", demo.attributes, by=["segment"], filters={"department": "Billing"},
                                  start="2026-01-01", min_responses=100)
    sizes = grouped.sizes.set_index("group")
    small = sizes.index[sizes["small"]].tolist()
    assert small and len(small) < len(sizes)  # the fixture has both kinds
    assert (sizes.loc[small, "n"] < 100).all() and (sizes.loc[~sizes["small"], "n"] >= 100).all()
    assert set(grouped.results) == set(sizes.index[~sizes["small"]])
    assert not grouped.table["segment"].isin(small).any()
    assert all(np.isnan(sizes.loc[s, "r2"]) for s in small)
    assert f"Not analysed (fewer than 100 usable responses): {small[0]} (n = " in grouped.summary()
    assert any(f"{small[0]!r}: only" in w for w in grouped.warnings)
    html = grouped._repr_html_()
    assert "not analysed" in html and "Share 95% CI" in html and "GroupedDriverImportance" in html
    assert repr(grouped).startswith(f"<GroupedDriverImportance [{len(grouped.results)} of {len(sizes)} groups]")
    # n is the listwise-complete count of the group's rows
    merged = demo.responses.merge(demo.customers[["customer_id", "segment"]], on="customer_id")
    sel = merged[(merged["department"] == "Billing") & (merged["response_date"] >= "2026-01-01")]
    complete = sel[["csat", *demo.attributes]].notna().all(axis=1)
    assert sizes["n"].to_dict() == complete.groupby(sel["segment"]).sum().astype(int).to_dict()


def test_by_on_a_frame_and_share_intervals(swiss):
    df = swiss.assign(grp=np.where(swiss["Catholic"] > 50, "catholic", "protestant"))
    grouped = relative_importance(df, "Fertility", ["Agriculture", "Examination", "Education"], by="grp",
                                  min_responses=10, n_boot=300, seed=1)
    for g in ("catholic", "protestant"):
        alone = relative_importance(df[df["grp"] == g], "Fertility", ["Agriculture", "Examination", "Education"],
                                    n_boot=300, seed=1)
        # a frame keeps its row order: even the bootstrap intervals are those of the group's own analysis
        pd.testing.assert_frame_equal(grouped[g].share_intervals(), alone.share_intervals())
        q = np.quantile(alone.draws / alone.boot_r2[:, None], [0.025, 0.975], axis=0)
        si = alone.share_intervals()
        np.testing.assert_allclose(si["share_low"], np.minimum(q[0], si["share"]))
        np.testing.assert_allclose(si["share_high"], np.maximum(q[1], si["share"]))
    with pytest.raises(KitError, match=r"by 'segment': the responses frame has no such column.*pass the Dataset"):
        relative_importance(df, "Fertility", ["Agriculture"], by="segment")
