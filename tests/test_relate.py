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
        r = relate("y", "grp", df)
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
