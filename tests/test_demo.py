"""Demo data: contract compliance, determinism, realistic shapes, and the ground truth it claims.

The ground-truth tests are statistical: each compares an estimate from the generated (observable or,
for the latent covariate, customer_truth) data with the parameter recorded in ground_truth.json, using
an established estimator (statsmodels Kaplan-Meier / PHReg / OLS) and its own standard error.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.duration.hazard_regression import PHReg
from statsmodels.duration.survfunc import SurvfuncRight

from helpers import demo
from helpers.data import load_dataset
from helpers.schema import TABLES

TABLE_FILES = ("customers.parquet", "responses.parquet", "tickets.parquet", "org.parquet")
MEDIUM = 20_000  # the default size: what "recoverable at the default size" refers to


@pytest.fixture(scope="module")
def medium_demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("medium_demo")
    demo.generate_demo(out, n_customers=MEDIUM, seed=2024)
    return out


def _truth(folder: Path) -> dict:
    return json.loads((folder / "ground_truth.json").read_text(encoding="utf-8"))


def _read(folder: Path, table: str) -> pd.DataFrame:
    return pq.read_table(folder / f"{table}.parquet").to_pandas()


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------------------------
# structure and contract
# ------------------------------------------------------------------------------------------------
def test_small_demo_loads_through_the_contract(small_demo):
    ds = load_dataset(small_demo)
    assert ds.count("customers") == 2_000
    assert ds.departments == sorted(demo.DEPARTMENT_NAMES)
    assert ds.attributes == list(demo.ATTRIBUTES)
    for name, spec in TABLES.items():
        assert list(ds.frame(name).columns) == list(spec.column_names), name
    # nothing the loader would warn about except possibly small samples
    assert not [w for w in ds.warnings if "not in org" in w or "unknown" in w.lower()]
    ds.close()


def test_written_arrow_types_follow_the_brief(small_demo):
    resp = pq.read_schema(small_demo / "responses.parquet")
    tick = pq.read_schema(small_demo / "tickets.parquet")
    cust = pq.read_schema(small_demo / "customers.parquet")
    assert str(cust.field("signup_date").type) == "date32[day]"
    assert str(tick.field("created_at").type).startswith("timestamp")
    assert all(str(resp.field(c).type).startswith("int") for c in ("csat", "nps", "ces", *demo.ATTRIBUTES))
    assert all(str(s.field(c).type) in ("string", "large_string")
               for s, c in ((resp, "response_id"), (tick, "agent_id"), (cust, "customer_id")))


def test_ground_truth_has_the_shared_keys(small_demo):
    gt = _truth(small_demo)
    assert {"seed", "n_customers", "start", "end", "departments", "drivers", "churn", "kpi_trends"} <= set(gt)
    assert (gt["seed"], gt["n_customers"], gt["start"], gt["end"]) == (7, 2_000, "2023-11-01", "2026-10-31")
    assert gt["departments"] == ["Customer Service", "Sales", "Marketing", "Delivery", "Billing",
                                 "Technical Support"]
    assert gt["drivers"]["outcome"] == "csat"
    for dept in gt["departments"]:
        entry = gt["drivers"]["by_department"][dept]
        assert set(entry["weights"]) == set(demo.ATTRIBUTES)
        assert sum(entry["weights"].values()) == pytest.approx(1.0)
        assert sorted(entry["ranking"]) == sorted(demo.ATTRIBUTES)
        shares = entry["relative_importance"]
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
        assert sum(entry["lmg_r2"].values()) == pytest.approx(entry["latent_r2"], abs=1e-5)
        # the ranking is the order of the recorded importances
        assert [shares[a] for a in entry["ranking"]] == sorted(shares.values(), reverse=True)
        assert set(gt["kpi_trends"][dept]) >= {"ticket_volume", "first_response_hours", "resolution_hours",
                                               "fcr", "csat", "nps"}
    churn = gt["churn"]
    assert churn["period"] == "month"
    assert set(churn["sbg"]) == {"consumer", "small_business", "enterprise"}
    assert all(p["alpha"] > 0 and p["beta"] > 0 for p in churn["sbg"].values())
    assert 0 < churn["hazard_ratio_per_csat_point"] < 1
    assert "latent_csat" in churn["covariate"]
    assert gt["counts"]["responses"] == pq.read_metadata(small_demo / "responses.parquet").num_rows
    assert gt["counts"]["tickets"] == pq.read_metadata(small_demo / "tickets.parquet").num_rows


def test_org_structure_and_ids(small_demo):
    org = _read(small_demo, "org")
    assert org.person_id.is_unique
    for d in demo.DEPARTMENTS:
        people = org[org.department == d.name]
        directors = people[people.role == "director"]
        assert directors.person_id.tolist() == [f"{d.slug}-dir"] and directors.manager_id.isna().all()
        managers = people[people.role == "manager"].sort_values("person_id")
        assert managers.person_id.tolist() == [f"{d.slug}-mgr{k}" for k in range(1, len(managers) + 1)]
        assert 2 <= len(managers) <= 3 and (managers.manager_id == f"{d.slug}-dir").all()
        reps = people[people.role == "representative"]
        assert reps.person_id.str.fullmatch(rf"{d.slug}-rep\d{{3}}").all()
        for team, members in reps.groupby("team"):
            assert 4 <= len(members) <= 12
            boss = managers[managers.team == team].person_id
            assert len(boss) == 1 and (members.manager_id == boss.iloc[0]).all()
    assert org.name.str.contains("'").any() or org.name.str.contains(r"[^\x00-\x7f]").any()


def test_tickets_are_handled_by_their_own_department_and_team(small_demo):
    org = _read(small_demo, "org").set_index("person_id")
    tickets = _read(small_demo, "tickets")
    assert (org.loc[tickets.agent_id, "department"].to_numpy() == tickets.department.to_numpy()).all()
    assert (org.loc[tickets.agent_id, "team"].to_numpy() == tickets.team.to_numpy()).all()
    assert (org.loc[tickets.agent_id, "role"] == "representative").all()


def test_activity_only_while_the_customer_is_active(small_demo):
    cust = _read(small_demo, "customers").set_index("customer_id")
    last = pd.to_datetime(cust.end_date).fillna(pd.Timestamp("2026-10-31"))
    first = pd.to_datetime(cust.signup_date)
    tickets = _read(small_demo, "tickets")
    created_day = tickets.created_at.dt.floor("D")
    assert (created_day >= first.loc[tickets.customer_id].to_numpy()).all()
    assert (created_day <= last.loc[tickets.customer_id].to_numpy()).all()
    resp = _read(small_demo, "responses")
    rdate = pd.to_datetime(resp.response_date)
    assert (rdate >= first.loc[resp.customer_id].to_numpy()).all()
    assert (rdate <= last.loc[resp.customer_id].to_numpy()).all()
    assert rdate.max() <= pd.Timestamp("2026-10-31") and first.min() >= pd.Timestamp("2023-11-01")
    assert set(first.dt.to_period("M").astype(str)) == {str(p) for p in pd.period_range("2023-11", "2026-10",
                                                                                        freq="M")}


def test_cli_writes_the_files_and_rejects_bad_arguments(tmp_path):
    cmd = [sys.executable, "-m", "helpers.demo", "--out", str(tmp_path / "d"), "--customers", "300",
           "--seed", "3"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert {p.name for p in (tmp_path / "d").iterdir()} == {*TABLE_FILES, "ground_truth.json",
                                                              "customer_truth.parquet"}
    bad = subprocess.run(cmd[:-3] + ["0", "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--customers must be a positive integer" in bad.stderr
    with pytest.raises(ValueError, match="seed"):
        demo.generate_demo(tmp_path / "e", 10, seed=-1)


# ------------------------------------------------------------------------------------------------
# determinism
# ------------------------------------------------------------------------------------------------
def test_same_seed_identical_files_other_seed_differs(tmp_path):
    a, b, c = (demo.generate_demo(tmp_path / x, 1_500, seed=s).parent for x, s in (("a", 5), ("b", 5), ("c", 6)))
    assert _hashes(a) == _hashes(b)
    ha, hc = _hashes(a), _hashes(c)
    assert all(ha[f] != hc[f] for f in ("customers.parquet", "responses.parquet", "tickets.parquet"))


def test_chunks_are_independent_streams(tmp_path, monkeypatch):
    """Chunk k draws from rng([seed, k]); a run with a smaller chunk size reproduces the first chunk."""
    monkeypatch.setattr(demo, "CHUNK_SIZE", 400)
    folder = demo.generate_demo(tmp_path / "small_chunks", 900, seed=11).parent
    truth = _read(folder, "customer_truth")
    org = demo.build_org(11)
    comments = demo.pa.array(demo.comment_catalogue(demo.DEPARTMENT_SLUGS, demo.STANDARD_ATTRIBUTES)
                             + list(demo.HTML_SPECIAL_COMMENTS))
    first, _ = demo._generate_chunk(11, 0, 0, 400, org, (0, 0), comments)
    assert first["customer_truth"].to_pandas().equals(truth.iloc[:400].reset_index(drop=True))
    ids = _read(folder, "customers").customer_id
    assert ids.is_unique and ids.iloc[-1] == "C0000900"


# ------------------------------------------------------------------------------------------------
# realistic shapes
# ------------------------------------------------------------------------------------------------
def test_durations_are_right_skewed_and_mostly_positive_ratings(small_demo):
    t = _read(small_demo, "tickets")
    frt = (t.first_response_at - t.created_at).dt.total_seconds().dropna() / 3600
    res = (t.resolved_at - t.created_at).dt.total_seconds().dropna() / 3600
    for x in (frt, res):
        assert (x >= 0).all() and x.mean() > 1.3 * x.median() and stats.skew(x) > 2
    r = _read(small_demo, "responses")
    top2 = (r.csat.dropna() >= 4).mean()
    assert 0.65 < top2 < 0.9
    assert r.csat.dropna().between(1, 5).all() and r.nps.dropna().between(0, 10).all()
    # CSAT and NPS move together; CES (effort) moves against ease
    assert r[["csat", "nps"]].astype(float).corr().iloc[0, 1] > 0.5
    assert r[["attr_ease", "ces"]].astype(float).corr().iloc[0, 1] < -0.3


def test_missing_answers_and_comments(small_demo):
    r = _read(small_demo, "responses")
    miss = r.isna().mean()
    assert 0.005 < miss["csat"] < 0.05
    assert 0.1 < miss["nps"] < 0.3 and 0.25 < miss["ces"] < 0.45
    assert all(0.05 < miss[a] < 0.25 for a in demo.ATTRIBUTES)
    assert 0.5 < miss["comment"] < 0.85
    comments = r.comment.dropna()
    assert comments.str.contains("<").any() and comments.str.contains("&").any()
    # negative comments come with low scores
    catalogue = demo.comment_catalogue(demo.DEPARTMENT_SLUGS, demo.STANDARD_ATTRIBUTES)
    negative = set(catalogue[: len(catalogue) // 3])  # tones are blocks: negative, neutral, positive
    neg = r[r.comment.isin(negative)]
    assert neg.csat.mean() < r.csat.mean() - 1


def test_seasonality_is_visible(medium_demo):
    """Tickets per active customer-month peak in December and dip in summer (July-August)."""
    t = _read(medium_demo, "tickets")
    cust = _read(medium_demo, "customers")
    months = pd.period_range("2023-11", "2026-10", freq="M")
    start = pd.to_datetime(cust.signup_date).to_numpy()
    stop = pd.to_datetime(cust.end_date).fillna(pd.Timestamp("2026-11-01")).to_numpy()
    exposure = np.array([np.clip((np.minimum(stop, m.end_time.to_datetime64()) - np.maximum(start, m.start_time
                         .to_datetime64())) / np.timedelta64(1, "D"), 0, None).sum() for m in months])
    counts = t.created_at.dt.to_period("M").value_counts().reindex(months).to_numpy()
    rate = pd.Series(counts / exposure, index=months)
    dec = rate[[m.month == 12 for m in months]].mean()
    summer = rate[[m.month in (7, 8) for m in months]].mean()
    assert dec / summer == pytest.approx(1.30 / 0.81, rel=0.12)


def test_marketing_is_small_and_the_worse_agent_and_team_stand_out(medium_demo):
    r = _read(medium_demo, "responses")
    per_month = r[r.department == "Marketing"].groupby(pd.to_datetime(r.response_date).dt.to_period("M")).size()
    assert per_month.median() < 30
    t = _read(medium_demo, "tickets")
    t["frt"] = (t.first_response_at - t.created_at).dt.total_seconds() / 3600
    ts = t[t.department == "Technical Support"].groupby("agent_id").frt.median()
    worse = demo.WORSE_AGENT[1]
    assert ts[worse] > 1.8 * ts.drop(worse).median()
    dl = t[t.department == "Delivery"].groupby("team").frt.median()
    assert dl["Last Mile"] > 1.4 * dl.drop("Last Mile").max()


def test_kpi_trends_go_the_documented_way(medium_demo):
    """Regressions on the ticket data recover the documented monthly trends: log first-response time
    (OLS with calendar-month dummies for seasonality) and first-contact resolution (logit)."""
    gt = _truth(medium_demo)
    t = _read(medium_demo, "tickets")
    t["log_frt"] = np.log((t.first_response_at - t.created_at).dt.total_seconds() / 3600)
    t["month"] = (t.created_at.dt.year - 2023) * 12 + t.created_at.dt.month - 11
    t["cal"] = t.created_at.dt.month
    t["fcr"] = (t.contacts_to_resolve == 1).astype(float)
    resolved = t[t.resolved_at.notna()]
    directions = set()
    for dept, trend in gt["kpi_trends"].items():
        if dept == "Marketing":
            continue
        d = t[t.department == dept].dropna(subset=["log_frt"])
        X = pd.get_dummies(d.cal, prefix="cal", drop_first=True, dtype=float).assign(month=d.month.astype(float))
        fit = sm.OLS(d.log_frt, sm.add_constant(X)).fit()
        truth = trend["first_response_hours"]["log_slope_per_month"]
        assert abs(fit.params["month"] - truth) < 4 * fit.bse["month"] + 0.002, (dept, fit.params["month"], truth)
        directions.add(trend["first_response_hours"]["direction"])
        r = resolved[resolved.department == dept]
        logit = sm.Logit(r.fcr, sm.add_constant(r.month.astype(float))).fit(disp=0)
        f = trend["fcr"]
        slope = (np.log(f["end"] / (1 - f["end"])) - np.log(f["start"] / (1 - f["start"]))) / 35
        assert abs(logit.params["month"] - slope) < 4 * logit.bse["month"] + 0.002, (dept, logit.params, slope)
    assert {"improving", "deteriorating", "flat"} <= directions


# ------------------------------------------------------------------------------------------------
# the ground truth is what an analysis of the data recovers
# ------------------------------------------------------------------------------------------------
def _tenure(folder: Path) -> pd.DataFrame:
    cust = _read(folder, "customers")
    end = pd.to_datetime(cust.end_date)
    last = end.fillna(pd.Timestamp("2026-11-01"))  # censored customers were active through 2026-10-31
    cust["months"] = (last - pd.to_datetime(cust.signup_date)).dt.days / demo.DAYS_PER_MONTH
    cust["churned"] = end.notna().astype(int)
    return cust


def test_sbg_survival_formula_matches_the_retention_recursion():
    """S(t) = B(a, b+t)/B(a, b) equals the product of retention rates r(t) = (b+t-1)/(a+b+t-1)
    (Fader & Hardie 2007, eqs. 4-5)."""
    a, b = 0.704, 1.182  # the paper's 'regular' segment estimates
    t = np.arange(0, 13)
    recursion = np.concatenate([[1.0], np.cumprod((b + t[1:] - 1) / (a + b + t[1:] - 1))])
    assert demo.sbg_survival(a, b, t) == pytest.approx(recursion, rel=1e-12)


def test_cohort_survival_follows_the_true_sbg_per_segment(medium_demo):
    gt = _truth(medium_demo)
    cust = _tenure(medium_demo)
    ts = np.array([1, 2, 3, 6, 9, 12, 18, 24])
    for seg, p in gt["churn"]["sbg"].items():
        c = cust[cust.segment == seg]
        sf = SurvfuncRight(c.months.to_numpy(), c.churned.to_numpy())
        i = np.searchsorted(sf.surv_times, ts, side="right") - 1
        km, se = sf.surv_prob[i], sf.surv_prob_se[i]
        z = (km - demo.sbg_survival(p["alpha"], p["beta"], ts)) / se
        assert np.abs(z).max() < 3.5, (seg, z.round(2))


def test_cox_on_the_documented_covariate_covers_the_true_hazard_ratio(medium_demo):
    gt = _truth(medium_demo)["churn"]
    assert gt["customer_truth_file"] == "customer_truth.parquet"
    cust = _tenure(medium_demo).merge(_read(medium_demo, "customer_truth"), on="customer_id")
    fit = PHReg(cust.months.to_numpy(), cust[["latent_csat"]].to_numpy(), status=cust.churned.to_numpy(),
                ties="efron").fit()
    lo, hi = np.exp(fit.conf_int()[0])
    assert lo < gt["hazard_ratio_per_csat_point"] < hi
    # the observable proxy (mean observed CSAT) is attenuated toward 1, as documented
    obs = cust.dropna(subset=["mean_csat"])
    fit_obs = PHReg(obs.months.to_numpy(), obs[["mean_csat"]].to_numpy(), status=obs.churned.to_numpy(),
                    ties="efron").fit()
    hr_obs = float(np.exp(fit_obs.params[0]))
    assert gt["hazard_ratio_per_csat_point"] < hr_obs < 1
    # and the proxy's documented calibration slope matches an OLS of latent on observed mean
    slope = sm.OLS(obs.latent_csat, sm.add_constant(obs.mean_csat)).fit().params["mean_csat"]
    assert slope == pytest.approx(gt["observable_proxy"]["calibration_slope_latent_on_mean"], abs=1e-3)


def test_per_customer_truth_is_consistent(small_demo):
    gt = _truth(small_demo)["churn"]
    tr = _read(small_demo, "customer_truth")
    assert np.allclose(tr.monthly_hazard, -np.log1p(-tr.theta))
    b = -np.log(gt["hazard_ratio_per_csat_point"])
    assert np.allclose(np.log(tr.monthly_hazard), gt["baseline_log_hazard_per_month"] - b * tr.latent_csat)
    # theta ~ Beta(alpha, beta) within each segment (Kolmogorov-Smirnov against the true law)
    for seg, p in gt["sbg"].items():
        assert stats.kstest(tr.theta[tr.segment == seg], "beta", args=(p["alpha"], p["beta"])).pvalue > 0.001


def test_lmg_matches_the_closed_form_for_uncorrelated_drivers():
    """With uncorrelated predictors LMG_j = beta_j^2 var(x_j) / var(y) (no shared variance to split)."""
    var_x = np.array([1.0, 2.0, 0.5])
    beta = np.array([0.5, -0.3, 1.0])
    cov = np.zeros((4, 4))
    cov[:3, :3] = np.diag(var_x)
    cov[:3, 3] = cov[3, :3] = beta * var_x
    cov[3, 3] = beta @ (var_x * beta) + 0.7
    assert demo.lmg_importance(cov) == pytest.approx(beta ** 2 * var_x / cov[3, 3], rel=1e-12)


def test_lmg_matches_the_shapley_definition_by_orderings():
    """Average over all p! orderings of the R^2 increments (the definition) on a correlated example."""
    import itertools
    rng = np.random.default_rng(0)
    m = rng.standard_normal((4, 4))
    cov = m @ m.T + np.eye(4)

    def r2(idx):
        if not idx:
            return 0.0
        c = cov[idx, 3]
        return c @ np.linalg.solve(cov[np.ix_(idx, idx)], c) / cov[3, 3]

    brute = np.zeros(3)
    perms = list(itertools.permutations(range(3)))
    for perm in perms:
        for k, j in enumerate(perm):
            brute[j] += r2(list(perm[:k + 1])) - r2(list(perm[:k]))
    assert demo.lmg_importance(cov) == pytest.approx(brute / len(perms), rel=1e-10)


def test_regression_recovers_the_true_driver_ranking(medium_demo):
    """OLS of observed CSAT on the observed attribute ratings ranks the drivers as the truth does, in every
    department with enough responses; the LMG shares of the observed ratings do too."""
    gt = _truth(medium_demo)["drivers"]["by_department"]
    r = _read(medium_demo, "responses")
    cols = list(demo.ATTRIBUTES)
    for dept, truth in gt.items():
        d = r[r.department == dept][["csat", *cols]].dropna().astype(float)
        if dept == "Marketing":
            continue
        assert len(d) > 5_000
        ols = sm.OLS(d.csat, sm.add_constant(d[cols])).fit()
        by_weight = sorted(cols, key=lambda a: -truth["weights"][a])
        assert list(ols.params[cols].sort_values(ascending=False).index) == by_weight, dept
        lmg = demo.lmg_importance(np.cov(d[[*cols, "csat"]].to_numpy(), rowvar=False))
        assert [cols[j] for j in np.argsort(-lmg)] == truth["ranking"], dept
