"""helpers.relate: each test reproduces scipy/statsmodels on the same data, the type-I error under simulated nulls
is at its nominal level within Monte-Carlo error, and a planted difference is found."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from helpers.data import load_dataset
from helpers.errors import KitError
from helpers.relate import relate

ALPHA = 0.05


def _groups(rng, sizes, draw):
    parts = [pd.DataFrame({"grp": name, "y": draw(rng, n)}) for name, n in sizes.items()]
    return pd.concat(parts, ignore_index=True)


SIZES = {"a": 60, "b": 90, "c": 150, "d": 40}


# ---------------------------------------------------------------- agreement with the reference implementations
def test_proportion_matches_scipy_chi_square_and_holm():
    rng = np.random.default_rng(1)
    df = _groups(rng, SIZES, lambda r, n: r.random(n) < 0.6)
    df.loc[df["grp"] == "c", "y"] = rng.random(150) < 0.8
    r = relate("y", "grp", df)
    assert r.kind == "proportion"
    tab = pd.crosstab(df["y"], df["grp"]).to_numpy()
    chi2, p, dof, _ = stats.chi2_contingency(tab, correction=False)
    assert r.statistic == pytest.approx(chi2) and r.p_value == pytest.approx(p) and r.df == dof
    assert r.effect_size == pytest.approx(np.sqrt(chi2 / len(df)))  # Cramér's V, 2 rows
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.proportion import proportions_ztest
    raw = []
    for a, b in zip(r.pairwise["a"], r.pairwise["b"]):
        ka, na = int(df.loc[df.grp == a, "y"].sum()), int((df.grp == a).sum())
        kb, nb = int(df.loc[df.grp == b, "y"].sum()), int((df.grp == b).sum())
        raw.append(proportions_ztest([kb, ka], [nb, na])[1])
    np.testing.assert_allclose(r.pairwise["p_value"], raw, rtol=1e-10)
    np.testing.assert_allclose(r.pairwise["p_adjusted"], multipletests(raw, method="holm")[1], rtol=1e-10)
    assert set(r.surviving()["b"]) | set(r.surviving()["a"]) >= {"c"}  # the planted group stands out


def test_mean_matches_welch_anova_and_welch_t():
    rng = np.random.default_rng(2)
    df = _groups(rng, SIZES, lambda r, n: r.normal(4, 1 + 0.5 * (n > 100), n))
    r = relate("y", "grp", df, kind="mean")
    from statsmodels.stats.oneway import anova_oneway
    ref = anova_oneway([df.loc[df.grp == g, "y"] for g in sorted(SIZES)], use_var="unequal")
    assert r.statistic == pytest.approx(ref.statistic) and r.p_value == pytest.approx(ref.pvalue)
    row = r.pairwise[(r.pairwise.a == "a") & (r.pairwise.b == "b")].iloc[0]
    t = stats.ttest_ind(df.loc[df.grp == "b", "y"], df.loc[df.grp == "a", "y"], equal_var=False)
    assert row["p_value"] == pytest.approx(t.pvalue) and row["ci_low"] == pytest.approx(t.confidence_interval().low)
    # two groups: Welch's ANOVA is Welch's t-test (F = t^2)
    two = relate("y", "grp", df[df.grp.isin(["a", "b"])], kind="mean")
    assert two.p_value == pytest.approx(t.pvalue) and two.statistic == pytest.approx(t.statistic ** 2)


def test_skewed_durations_use_kruskal_wallis_and_medians():
    rng = np.random.default_rng(3)
    df = _groups(rng, SIZES, lambda r, n: r.lognormal(2, 1, n))
    r = relate("y", "grp", df)
    assert r.kind == "skewed" and "Kruskal" in r.test
    h, p = stats.kruskal(*[df.loc[df.grp == g, "y"] for g in sorted(SIZES)])
    assert r.statistic == pytest.approx(h) and r.p_value == pytest.approx(p)
    med = r.table.set_index("group")["estimate"]
    assert med["a"] == pytest.approx(df.loc[df.grp == "a", "y"].median())


def test_ordinal_ratings_use_the_proportional_odds_model():
    rng = np.random.default_rng(4)
    df = _groups(rng, {"a": 200, "b": 200, "c": 200}, lambda r, n: r.choice([1, 2, 3, 4, 5], n, p=[.1, .15, .3, .3, .15]))
    df.loc[df.grp == "c", "y"] = np.minimum(df.loc[df.grp == "c", "y"] + (rng.random(200) < 0.9), 5)
    r = relate("y", "grp", df)
    assert r.kind == "ordinal" and "proportional-odds" in r.test
    from statsmodels.miscmodels.ordinal_model import OrderedModel
    X = pd.get_dummies(df["grp"], drop_first=True).astype(float)
    fit = OrderedModel(pd.Categorical(df["y"], ordered=True), X, distr="logit").fit(method="bfgs", disp=False)
    counts = df["y"].value_counts().to_numpy(float)
    ll0 = (counts * np.log(counts / counts.sum())).sum()
    assert r.statistic == pytest.approx(2 * (fit.llf - ll0), rel=1e-4)
    assert r.p_value < 0.01
    assert r.table.set_index("group").loc["c", "odds_ratio"] == pytest.approx(np.exp(fit.params["c"]), rel=1e-3)


# ---------------------------------------------------------------- type-I error under the null, by simulation
@pytest.mark.parametrize("kind,draw", [
    ("proportion", lambda r, n: (r.random(n) < 0.7).astype(float)),
    ("nps", lambda r, n: r.choice(np.arange(11), n, p=np.r_[np.full(7, 0.2 / 7), 0.15, 0.15, 0.25, 0.25])),
    ("mean", lambda r, n: r.normal(0, 1, n) * (1 + (n > 100))),  # unequal variances: Welch's case
    ("skewed", lambda r, n: r.lognormal(1, 1.2, n)),
])
def test_type_one_error_is_nominal(kind, draw):
    rng = np.random.default_rng(11)
    reps = 300
    rejected = 0
    for _ in range(reps):
        df = _groups(rng, SIZES, draw)
        rejected += relate("y", "grp", df, kind=kind, n_boot=0).p_value < ALPHA
    rate = rejected / reps
    mc = np.sqrt(ALPHA * (1 - ALPHA) / reps)
    assert abs(rate - ALPHA) < 3.5 * mc, f"{kind}: rejection rate {rate:.3f} under the null"


def test_type_one_error_of_the_ordinal_model_and_holm_family_wise():
    rng = np.random.default_rng(12)
    reps, rejected, any_pair = 100, 0, 0
    for _ in range(reps):
        df = _groups(rng, {"a": 80, "b": 80, "c": 80, "d": 80}, lambda r, n: r.choice([1, 2, 3, 4, 5], n,
                                                                                    p=[.1, .2, .3, .25, .15]))
        r = relate("y", "grp", df, n_boot=0)
        rejected += r.p_value < ALPHA
        any_pair += bool(r.pairwise["significant"].any())
    mc = np.sqrt(ALPHA * (1 - ALPHA) / reps)
    assert abs(rejected / reps - ALPHA) < 3.5 * mc
    assert any_pair / reps < ALPHA + 3.5 * mc  # Holm keeps the family-wise error at most alpha


# ---------------------------------------------------------------- on the demo, through the selection model
@pytest.fixture(scope="module")
def ds(small_demo):
    return load_dataset(small_demo)


def test_relate_on_the_demo_finds_the_slow_team_and_flags_small_groups(ds):
    r = relate("first_response_hours", "team", ds, filters={"department": "delivery"}, start="2026-01-01",
               end="2026-06-30")
    assert r.kind == "skewed" and r.significant
    slowest = r.table.sort_values("estimate").iloc[-1]["group"]
    assert slowest == "Last Mile"
    html = r._repr_html_()
    assert "Kruskal-Wallis" in html and "Last Mile" in html and "pairwise" in html
    small = relate("csat", "team", ds, filters={"department": "Delivery"}, start="2026-06-01", end="2026-06-30",
                   min_responses=10_000) if "team" in ds.columns("responses") else relate(
        "csat", "channel", ds, start="2026-06-01", end="2026-06-30", min_responses=10_000)
    assert small.table["small"].all() and "Small groups" in small.summary()


def test_relate_by_a_customer_column_joins_in_duckdb(ds):
    r = relate("nps", "segment", ds)
    seg = r.table.set_index("group")
    ref = pd.merge(ds.responses[["customer_id", "nps"]].dropna(), ds.customers[["customer_id", "segment"]])
    assert seg.loc["enterprise", "n"] == int((ref["segment"] == "enterprise").sum())
    assert r.kind == "nps" and "promoters" in r.test


def test_relate_errors_name_the_problem(ds):
    with pytest.raises(KitError, match=r"bogus.*neither a KPI"):
        relate("bogus", "channel", ds)
    with pytest.raises(KitError, match=r"department=.*'nowhere'.*Billing"):
        relate("csat", "channel", ds, filters={"department": "nowhere"})
    with pytest.raises(KitError, match=r"cannot filter or group by 'planet'"):
        relate("csat", "planet", ds)


# ---------------------------------------------------------------- effect sizes with intervals (issue 17)
from helpers.relate import (_cells, _epsilon_squared_replicates, bias_corrected_interval,  # noqa: E402
                            cramers_v_interval, eta_squared_interval, kruskal_from_counts, noncentrality_limits)


def test_eta_squared_noncentrality_limits_match_r_effectsize():
    """R effectsize::eta_squared(aov(value ~ treatment), alternative = "two.sided") on afex's obk.long (every third
    row: N = 80, 3 groups) prints Eta2 = 0.22348040, 95% CI [0.07209814, 0.36848290] (effectsize issue #611);
    effectsize maps the noncentral-F limits of lambda as lambda / (lambda + df_error)."""
    eta2, df1, df2 = 0.22348040, 2, 77
    f_value = eta2 / (1 - eta2) * df2 / df1
    lo, hi = noncentrality_limits(lambda x, lam: stats.ncf.cdf(x, df1, df2, lam), f_value)
    np.testing.assert_allclose([lo / (lo + df2), hi / (hi + df2)], [0.07209814, 0.36848290], atol=3e-7)
    # the kit's estimand (Steiger 2004): lambda / (lambda + N)
    assert eta_squared_interval(f_value, df1, df2, 80) == pytest.approx((lo / (lo + 80), hi / (hi + 80)))
    # the limits put the observed F at the 97.5% and 2.5% points of their noncentral F
    assert stats.ncf.cdf(f_value, df1, df2, lo) == pytest.approx(0.975, abs=1e-8)
    assert stats.ncf.cdf(f_value, df1, df2, hi) == pytest.approx(0.025, abs=1e-8)


def test_kruskal_from_counts_is_scipys_kruskal_on_the_resampled_rows():
    rng = np.random.default_rng(21)
    data = [np.round(rng.normal(0.3 * j, 1, n), 1) for j, n in enumerate((20, 30, 25))]  # many ties
    cell_value, cell_group, cell_n, starts, _, _ = _cells(data)
    values = np.unique(np.concatenate(data))
    counts = rng.integers(0, 3, size=(5, cell_value.size))
    h = kruskal_from_counts(counts, cell_value, cell_group, starts, 3)
    for row, hb in zip(counts, h):
        groups = [np.repeat(values[cell_value[cell_group == j]], row[cell_group == j]) for j in range(3)]
        assert hb == pytest.approx(stats.kruskal(*groups).statistic, rel=1e-12)
    assert kruskal_from_counts(cell_n, cell_value, cell_group, starts, 3)[0] == pytest.approx(
        stats.kruskal(*data).statistic, rel=1e-12)
    # resamples keep each group's size and only its own values
    reps = _epsilon_squared_replicates([np.array([1.0, 2, 3]), np.array([2.0, 5, 6, 7])], 50, 3)
    assert reps.shape == (50,) and np.all((reps >= 0) & (reps <= 1))


def _coverage_limit(reps):
    return 3.5 * np.sqrt(0.95 * 0.05 / reps)


def test_cramers_v_interval_covers_the_population_v_at_nominal_rate():
    """Fixed group sizes, known shares: noncentrality lambda = sum n_j (p_j - p)^2 / (p (1 - p)), population
    V = sqrt(lambda / N). The relate() interval must cover it in about 95% of samples."""
    shares = {"a": 0.55, "b": 0.6, "c": 0.7, "d": 0.6}
    n = np.array([SIZES[g] for g in shares])
    p = np.array(list(shares.values()))
    pbar = (n * p).sum() / n.sum()
    v_true = np.sqrt((n * (p - pbar) ** 2).sum() / (pbar * (1 - pbar)) / n.sum())
    rng = np.random.default_rng(31)
    reps, covered = 400, 0
    for _ in range(reps):
        df = pd.concat([pd.DataFrame({"grp": g, "y": (rng.random(SIZES[g]) < shares[g]).astype(float)})
                        for g in shares], ignore_index=True)
        r = relate("y", "grp", df, n_boot=0)
        covered += r.effect_ci[0] <= v_true <= r.effect_ci[1]
    assert abs(covered / reps - 0.95) < _coverage_limit(reps), covered / reps
    # the interval is the noncentral chi-square inversion of the test's own statistic
    assert r.effect_ci == pytest.approx(cramers_v_interval(r.statistic, 3, len(df), 1))
    assert "noncentral chi-square" in r.effect_ci_method


def test_eta_squared_interval_covers_the_population_eta_squared_at_nominal_rate():
    means = {"a": 0.0, "b": 0.25, "c": 0.4, "d": 0.1}
    n = np.array([SIZES[g] for g in means])
    mu = np.array(list(means.values()))
    lam = (n * (mu - (n * mu).sum() / n.sum()) ** 2).sum()  # sigma = 1
    eta2_true = lam / (lam + n.sum())
    rng = np.random.default_rng(32)
    reps, covered = 400, 0
    for _ in range(reps):
        df = pd.concat([pd.DataFrame({"grp": g, "y": rng.normal(means[g], 1, SIZES[g])}) for g in means],
                       ignore_index=True)
        r = relate("y", "grp", df, kind="mean")
        covered += r.effect_ci[0] <= eta2_true <= r.effect_ci[1]
    assert abs(covered / reps - 0.95) < _coverage_limit(reps), covered / reps


def test_epsilon_squared_bootstrap_interval_covers_the_population_value():
    """Skewed outcome (lognormal, groups scaled): the population epsilon squared is the limit of H / (N - 1) with
    the same group shares, taken from one very large sample (its bias (k - 1) / N is 1e-5 there)."""
    scale = {"a": 1.0, "b": 1.4, "c": 1.8, "d": 1.0}

    def draw(rng, mult):
        return [rng.lognormal(0, 1, SIZES[g] * mult) * scale[g] for g in scale]

    big = draw(np.random.default_rng(0), 1000)
    eps_true = stats.kruskal(*big).statistic / (sum(v.size for v in big) - 1)
    rng = np.random.default_rng(33)
    reps, covered = 200, 0
    for i in range(reps):
        data = draw(rng, 1)
        est = stats.kruskal(*data).statistic / (sum(v.size for v in data) - 1)
        lo, hi = bias_corrected_interval(est, _epsilon_squared_replicates(data, 400, i))
        covered += lo <= eps_true <= hi
    assert abs(covered / reps - 0.95) < _coverage_limit(reps), covered / reps


def test_effect_interval_is_in_the_overall_table_summary_and_display():
    rng = np.random.default_rng(5)
    df = _groups(rng, SIZES, lambda r, n: r.lognormal(2, 1, n))
    r = relate("y", "grp", df, n_boot=300, seed=2)
    data = [df.loc[df.grp == g, "y"].to_numpy() for g in sorted(SIZES)]
    want = bias_corrected_interval(r.effect_size, _epsilon_squared_replicates(data, 300, 2))
    assert r.effect_ci == pytest.approx(want) and r.effect_ci[0] <= r.effect_size <= r.effect_ci[1]
    row = r.overall.iloc[0]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(want) and row["effect"] == "epsilon²"
    from helpers.formatting import fmt_interval
    text = f"epsilon² {r.effect_size:.3f}, 95% CI {fmt_interval(*want, 3)}"
    assert text in r.summary() and text in r._repr_html_() and "bias-corrected percentile bootstrap" in r._repr_html_()
    assert "no interval (n_boot=0)" in relate("y", "grp", df, n_boot=0).summary()
