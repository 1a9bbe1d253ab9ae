"""Objectives: params schema and errors, SMART lint, progress, the trend forecast and the status rule."""
import copy
import re
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from helpers.errors import ObjectiveError, ParamsError
from helpers.objectives import (evaluate_objectives, lint_objectives, load_department, load_objectives,
                                parse_objectives, plausibility_warning)
from helpers.objectives_status import classify_status, expected_progress, forecast_at, forecast_path, progress_score

BASE = {
    "department": "Customer Service",
    "people": {"director": "customer_service-dir", "managers": ["customer_service-mgr1"],
               "representatives": "org"},
    "objectives": [
        {"id": "retention", "title": "Keep more customers", "metric": "retention_rate", "baseline": 95.0,
         "target": 96.0, "direction": "raise", "start": "2026-01-01", "deadline": "2026-12-31",
         "owner": {"person": "customer_service-dir", "role": "director"}},
        {"id": "fcr", "title": "Resolve at first contact", "metric": "fcr",
         "baseline": {"start": "2025-01-01", "end": "2025-12-31"}, "target": 80.0, "start": "2026-01-01",
         "deadline": "2026-12-31", "owner": {"person": "customer_service-mgr1", "role": "manager"},
         "parent": "retention", "filters": {"channel": ["phone", "email"]}},
        {"id": "frt", "title": "Reply within 12 hours", "metric": "first_response_hours", "baseline": 24,
         "target": 12, "direction": "lower", "start": "2026-07-01", "deadline": "2026-09-30",
         "owner": {"person": "customer_service-rep001", "role": "representative"}, "parent": "fcr"},
    ],
}


def _doc(**changes):
    """A copy of BASE with objective fields changed: changes = {"<index>.<field>": value or DELETE}."""
    doc = copy.deepcopy(BASE)
    for key, value in changes.items():
        index, fld = key.split(".", 1)
        target = doc if index == "top" else doc["objectives"][int(index)]
        if value is DELETE:
            target.pop(fld)
        else:
            target[fld] = value
    return doc


DELETE = object()


def _write(tmp_path, doc, name="customer_service.yaml"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------ loading
def test_valid_file_loads_with_tree_and_types(tmp_path):
    plan = load_objectives(_write(tmp_path, BASE))
    assert plan.department == "Customer Service"
    assert plan.ids == ["retention", "fcr", "frt"]
    frt = plan.get("frt")
    assert frt.direction == "lower" and frt.target == 12.0 and frt.owner.role == "representative"
    assert frt.deadline == pd.Timestamp("2026-09-30") and frt.start == pd.Timestamp("2026-07-01")
    assert plan.get("fcr").baseline.start == pd.Timestamp("2025-01-01")
    assert plan.get("fcr").filters == {"channel": ("phone", "email")}
    assert plan.get("fcr").direction == "raise"  # default from the KPI registry (higher is better)
    assert [o.id for o in plan.children(None)] == ["retention"]
    assert [o.id for o in plan.children("fcr")] == ["frt"]
    assert plan.depth("frt") == 2
    assert plan.people["representatives"] == "org"


@pytest.mark.parametrize("changes, objective_id, field, words", [
    ({"0.metric": "happiness"}, "retention", "metric", "unknown metric 'happiness'"),
    ({"0.metric": "clv"}, "retention", "metric", "no time dimension"),
    ({"1.target": DELETE}, "fcr", "target", "missing"),
    ({"2.deadline": DELETE}, "frt", "deadline", "missing"),
    ({"2.deadline": "2026-06-01"}, "frt", "deadline", "not after start"),
    ({"1.parent": "nowhere"}, "fcr", "parent", "does not exist"),
    ({"0.parent": "frt"}, "retention", "parent", "cycle"),
    ({"0.target": "high"}, "retention", "target", "expected a number"),
    ({"0.target": True}, "retention", "target", "expected a number"),
    ({"0.start": "first of May"}, "retention", "start", "YYYY-MM-DD"),
    ({"0.direction": "up"}, "retention", "direction", "'raise' or 'lower'"),
    ({"0.owner": {"person": "x", "role": "boss"}}, "retention", "owner.role", "role must be one of"),
    ({"0.owner": "Ann"}, "retention", "owner", "expected a mapping"),
    ({"0.colour": "red"}, "retention", "colour", "unknown field"),
    ({"1.filters": {1: "mars"}}, "fcr", "filters.1", "must be a column name"),
    ({"1.filters": {"my plan": "gold"}}, "fcr", "filters.my plan", "must be a column name"),
    ({"1.filters": {"plan": {"name": "gold"}}}, "fcr", "filters.plan", "expected text or a list of text"),
    ({"1.filters": {"plan": [["gold"]]}}, "fcr", "filters.plan", "expected text or a list of text"),
    ({"1.filters": {"plan": []}}, "fcr", "filters.plan", "expected text or a list of text"),
    ({"1.filters": {"department": "Sales"}}, "fcr", "filters.department", "cannot name the department"),
    ({"1.filters": {"agent": "a1", "agent_id": "a2"}}, "fcr", "filters.agent_id", "name the same column"),
    ({"0.target": 94.0}, "retention", "target", "already met by the baseline"),
    ({"1.baseline": {"start": "2025-12-01", "end": "2025-01-01"}}, "fcr", "baseline.end", "before its start"),
])
def test_schema_errors_name_file_objective_and_field(tmp_path, changes, objective_id, field, words):
    path = _write(tmp_path, _doc(**changes))
    with pytest.raises(ObjectiveError) as info:
        load_objectives(path)
    err = info.value
    assert isinstance(err, ValueError) and isinstance(err, ParamsError)
    assert err.objective_id == objective_id and err.field == field
    message = str(err)
    assert str(path) in message and repr(objective_id) in message and repr(field) in message
    assert words in message


def test_duplicate_ids_are_rejected(tmp_path):
    doc = copy.deepcopy(BASE)
    doc["objectives"].append(copy.deepcopy(doc["objectives"][0]))
    with pytest.raises(ObjectiveError, match="duplicate id"):
        load_objectives(_write(tmp_path, doc))


@pytest.mark.parametrize("text, words", [
    ("department: Sales\nobjectives: [\n", "malformed YAML at line"),
    ("- just\n- a list\n", "expected a mapping"),
    ("department: Sales\nobjectives: []\n", "non-empty list"),
    ("department: 12\nobjectives: [{}]\n", "field 'department'"),
    ("department: Sales\nobjectvies: []\n", "unknown key"),
])
def test_malformed_files_name_the_file(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(ObjectiveError) as info:
        load_objectives(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_unknown_department_lists_known_ones(tmp_path):
    _write(tmp_path, BASE, "customer_service.yaml")
    with pytest.raises(ObjectiveError) as info:
        load_department("legal", tmp_path)
    assert "unknown department 'legal'" in str(info.value) and "customer_service" in str(info.value)
    assert load_department("customer_service", tmp_path).department == "Customer Service"


def test_unquoted_yaml_dates_are_accepted(tmp_path):
    text = yaml.safe_dump(BASE, sort_keys=False).replace("'2026-01-01'", "2026-01-01")
    assert "start: 2026-01-01" in text
    assert load_objectives(_write(tmp_path, text)).get("retention").start == pd.Timestamp("2026-01-01")


# --------------------------------------------------------------------------------------------- lint
def test_lint_flags_perfect_target_overloaded_owner_and_late_child():
    doc = _doc(**{"1.target": 100.0, "2.deadline": "2027-03-31"})
    for k in range(3):  # give the director three more objectives
        extra = copy.deepcopy(doc["objectives"][0])
        extra["id"] = f"extra{k}"
        doc["objectives"].append(extra)
    plan = parse_objectives(doc, "cs.yaml")
    text = "\n".join(plan.warnings)
    assert "'fcr': target 100 is the best possible" in text
    assert "owner 'customer_service-dir' has 4 objectives" in text
    assert "'frt': deadline 2027-03-31 is after its parent 'fcr'" in text
    assert lint_objectives(parse_objectives(BASE, "cs.yaml")) == []


def test_plausibility_compares_needed_pace_with_best_monthly_change():
    plan = parse_objectives(BASE, "cs.yaml")
    frt = plan.get("frt")  # 24 h -> 12 h in 3 months: needs 4 h per month
    periods = pd.date_range("2025-01-01", periods=12, freq="MS")
    slow = pd.DataFrame({"period": periods, "value": 24 - 1.0 * np.arange(12) % 3})  # best drop 1 h/month
    fast = pd.DataFrame({"period": periods, "value": 24 - 5.0 * (np.arange(12) % 2)})  # drops of 5 h seen
    warning = plausibility_warning(frt, slow, 24.0, "cs.yaml")
    assert warning is not None and "needs 4 per month" in warning and "(1 per month)" in warning
    assert plausibility_warning(frt, fast, 24.0, "cs.yaml") is None


# ------------------------------------------------------------------------------------------ progress
def test_progress_is_signed_and_never_clipped():
    assert progress_score(18, 24, 12) == pytest.approx(0.5)  # lowering: 24 -> 12, at 18
    assert progress_score(77, 70, 80) == pytest.approx(0.7)
    assert progress_score(65, 70, 80) == pytest.approx(-0.5)  # moved the wrong way: negative, not 0
    assert progress_score(85, 70, 80) == pytest.approx(1.5)  # beyond the target: above 1, not 1
    assert progress_score(30, 24, 12, "lower") == pytest.approx(-0.5)
    assert np.isnan(progress_score(np.nan, 70, 80))
    assert expected_progress("2026-01-01", "2026-12-31", "2026-07-02") == pytest.approx(182 / 364)
    assert expected_progress("2026-01-01", "2026-12-31", "2025-01-01") == 0.0


def test_progress_with_the_target_on_the_wrong_side_of_the_baseline_stays_negative():
    """Issue 10: FCR now 64.1%, target 70.0% from a baseline of 71.7% showed "100%" (two negatives divided, then
    clipped). The KPI is to be raised and fell by 7.6 points: progress is -7.6 / 1.7 = -447%."""
    assert progress_score(64.1, 71.7, 70.0, "raise") == pytest.approx(-7.6 / 1.7)
    assert progress_score(72.5, 71.7, 70.0, "raise") == pytest.approx(0.8 / 1.7)  # rose: positive
    assert progress_score(13.0, 12.0, 14.0, "lower") == pytest.approx(-0.5)  # hours rose: negative


# ------------------------------------------------------------------------------------------ forecast
def _trend(n=24, a=70.0, b=0.5, sd=1.0, seed=0, start="2024-11-01"):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    v = a + b * t + rng.normal(0, sd, n)
    return pd.DataFrame({"period": pd.date_range(start, periods=n, freq="MS"), "value": v,
                         "ci_low": v - 1.96 * sd, "ci_high": v + 1.96 * sd, "n": 400})


def test_forecast_matches_the_textbook_prediction_interval():
    s = _trend(n=18, sd=2.0, seed=3)
    f = forecast_at(s, "2026-12-31", "2026-04-30", level=0.9, window=24)
    # independent computation: Montgomery, Peck & Vining eq. 2.45 with numpy/scipy only
    t, y = np.arange(18.0), s["value"].to_numpy()
    b = np.sum((t - t.mean()) * (y - y.mean())) / np.sum((t - t.mean()) ** 2)
    a = y.mean() - b * t.mean()
    resid = y - a - b * t
    s2 = resid @ resid / (18 - 2)
    t0 = 25.0  # Dec 2026 is 25 months after Nov 2024
    half = stats.t.ppf(0.95, 16) * np.sqrt(s2 * (1 + 1 / 18 + (t0 - t.mean()) ** 2 / np.sum((t - t.mean()) ** 2)))
    assert f.method == "linear trend" and f.n_points == 18
    assert f.value == pytest.approx(a + b * t0, rel=1e-10)
    assert f.low == pytest.approx(a + b * t0 - half, rel=1e-10)
    assert f.high == pytest.approx(a + b * t0 + half, rel=1e-10)
    assert f.slope_per_month == pytest.approx(b, rel=1e-10)
    path = forecast_path(s, "2026-12-31", "2026-04-30", level=0.9)
    assert path["period"].iloc[0] == pd.Timestamp("2026-04-01") and len(path) == 9
    assert path["value"].iloc[-1] == pytest.approx(f.value) and path["high"].iloc[-1] == pytest.approx(f.high)


def test_forecast_interval_covers_the_truth_at_its_level():
    """Synthetic series with known trend: the 80% interval holds the true future value ~80% of the time."""
    rng = np.random.default_rng(7)
    hits, errors = 0, []
    n_sim = 250
    for i in range(n_sim):
        s = _trend(n=20, a=50, b=-0.3, sd=1.5, seed=1000 + i)
        f = forecast_at(s, "2026-12-31", "2026-06-30", level=0.8)  # 6 months ahead of the last point
        truth = 50 - 0.3 * 25 + rng.normal(0, 1.5)
        hits += f.low <= truth <= f.high
        errors.append(f.value - (50 - 0.3 * 25))
    coverage = hits / n_sim
    assert abs(coverage - 0.8) < 3 * np.sqrt(0.8 * 0.2 / n_sim)  # within 3 binomial standard errors
    assert abs(np.mean(errors)) < 3 * np.std(errors) / np.sqrt(n_sim)  # unbiased point forecast


def test_forecast_falls_back_to_last_value_and_uses_observed_after_deadline():
    s = _trend(n=3)
    f = forecast_at(s, "2026-12-31", "2025-01-31")
    assert f.method == "last value" and f.value == s["value"].iloc[-1] and f.low == s["ci_low"].iloc[-1]
    full = _trend(n=24)
    observed = forecast_at(full, "2025-06-15", "2026-10-31")
    row = full[full["period"] == "2025-06-01"].iloc[0]
    assert observed.method == "observed" and observed.value == row["value"]
    assert forecast_at(full.iloc[0:0], "2026-12-31", "2026-10-31") is None
    bounded = forecast_at(_trend(n=12, a=95, b=2.0, sd=0.1), "2026-12-31", "2025-10-31", bounds=(0, 100))
    assert bounded.high == 100 and bounded.value <= 100


# ------------------------------------------------------------------------------------------ status rule
@pytest.mark.parametrize("kwargs, expected", [
    (dict(p_met=0.99, current_clears=True), ("achieved", "early")),
    (dict(p_met=0.95, current_clears=True), ("on track", "")),   # the window forecast does not clear enough
    (dict(p_met=0.99, current_clears=False), ("on track", "")),  # clears in the forecast only
    (dict(p_met=0.80), ("on track", "")),
    (dict(p_met=0.79), ("at risk", "ahead but uncertain")),
    (dict(p_met=0.50), ("at risk", "ahead but uncertain")),
    (dict(p_met=0.49), ("at risk", "behind")),
    (dict(p_met=0.20), ("at risk", "behind")),
    (dict(p_met=0.19), ("off track", "")),
    (dict(p_met=float("nan")), ("no data", "")),
    (dict(p_met=0.9, too_little_data=True), ("too little data", "")),
])
def test_status_rule_thresholds_on_p_met(kwargs, expected):
    assert classify_status(deadline_passed=False, **kwargs) == expected


def test_status_after_deadline_is_achieved_or_missed_on_the_observed_window():
    assert classify_status(p_met=float("nan"), deadline_passed=True, met=True) == ("achieved", "")
    assert classify_status(p_met=float("nan"), deadline_passed=True, met=False, target_in_ci=True) == \
        ("missed", "within the margin of error")
    assert classify_status(p_met=0.99, deadline_passed=True, met=None) == ("no data", "")


SERIES_DOC = textwrap.dedent("""\
    department: Support
    objectives:
      - {id: good, title: Good, metric: fcr, baseline: 60, target: 70, start: 2026-01-01, deadline: 2026-12-31,
         owner: {person: p1, role: director}}
      - {id: close, title: Close, metric: fcr, baseline: 60, target: 70, start: 2026-01-01, deadline: 2026-12-31,
         owner: {person: p2, role: manager}, parent: good}
      - {id: bad, title: Bad <b>bold</b>, metric: fcr, baseline: 60, target: 70, start: 2026-01-01,
         deadline: 2026-12-31, owner: {person: p3, role: manager}, parent: good}
      - {id: done, title: Done, metric: fcr, baseline: 60, target: 70, start: 2025-01-01, deadline: 2026-03-31,
         owner: {person: p4, role: representative}, parent: close}
      - {id: late, title: Late, metric: fcr, baseline: 60, target: 70, start: 2025-01-01, deadline: 2026-03-31,
         owner: {person: p5, role: representative}, parent: close}
      - {id: hit, title: Hit, metric: fcr, baseline: 60, target: 70, start: 2026-01-01, deadline: 2026-12-31,
         owner: {person: p6, role: representative}, parent: bad}
      - {id: broken, title: Broken, metric: csat, baseline: 60, target: 70, start: 2026-01-01,
         deadline: 2026-12-31, owner: {person: p6, role: representative}, parent: bad}
    """)


def test_evaluation_gives_every_status_on_constructed_series(tmp_path):
    """One constructed monthly series per objective, chosen so the rule must give each status."""
    doc = yaml.safe_load(SERIES_DOC)
    for o in doc["objectives"]:
        o["filters"] = {"channel": o["id"]}
    plan = load_objectives(_write(tmp_path, doc, "support.yaml"))
    periods = pd.date_range("2024-11-01", "2026-10-01", freq="MS")
    t = np.arange(len(periods), dtype=float)
    wiggle = 0.3 * np.sin(t)  # deterministic noise so the trend's interval has width
    shapes = {
        "good": 52 + 0.8 * t + wiggle,                  # 70.4 (CI 69.4-71.4) in Oct, ~72 by Dec 2026
        "close": 70 + np.random.default_rng(3).normal(0, 1.5, len(t)),  # flat at the target: a coin toss
        "bad": 60 + 0.05 * t + wiggle,                  # flat around 61
        "done": np.where(periods >= "2026-03-01", 71.0, 60.0) + wiggle,  # 71 at the deadline month
        "late": 60 + 0.1 * t + wiggle,                  # 61.7 at the deadline month
        "hit": 50 + 1.0 * t + wiggle,                   # 73 in Oct 2026, CI 72-74
    }
    names = {"p1": "Dana <Director>", "p2": "Max", "p3": "Ivy", "p4": "Sam", "p5": "Lee", "p6": "Ola"}

    n = 3000  # tickets a month: each month's sampling error is about +/- 1.6 points

    def provider(metric, filters, start, end, freq):
        if metric == "csat":
            raise ValueError("table responses has no column 'csat'")
        v = shapes[filters["channel"][0]]  # each objective asks for its own channel
        half = 1.96 * np.sqrt(v * (100 - v) / n)
        return pd.DataFrame({"period": periods, "value": v, "ci_low": v - half, "ci_high": v + half, "n": n})

    ev = evaluate_objectives(plan, as_of="2026-10-31", series_provider=provider, names=names)
    status = dict(zip(ev.table["id"], ev.table["status"]))
    assert status == {"good": "on track", "close": "at risk", "bad": "off track", "done": "achieved",
                      "late": "missed", "hit": "achieved", "broken": "no data"}
    broken = ev.row("broken")
    assert "support.yaml" in broken["message"] and "'broken'" in broken["message"]
    assert "field 'metric'" in broken["message"] and "no column 'csat'" in broken["message"]
    assert ev.status_counts() == {"achieved": 2, "on track": 1, "at risk": 1, "off track": 1, "missed": 1,
                                  "too little data": 0,
                                  "no data": 1}
    good = ev.row("good")
    assert good["owner"] == "Dana <Director> (director)" and good["n"] == n
    assert good["current"] == pytest.approx(shapes["good"][-1])
    assert good["progress"] == pytest.approx((shapes["good"][-1] - 60) / 10)  # past the target: above 1, signed
    assert good["p_met"] >= 0.8 and ev.row("bad")["p_met"] < 0.2 and 0.2 <= ev.row("close")["p_met"] < 0.8
    assert ev.row("bad")["progress"] == pytest.approx((shapes["bad"][-1] - 60) / 10)
    assert good["expected_progress"] == pytest.approx(303 / 364)
    assert good["forecast_low"] > 70 and "On track" in good["sentence"] and "80% prediction interval" in \
        good["sentence"]
    cascade = ev.cascade()
    assert list(cascade["id"]) == ["good", "close", "done", "late", "bad", "hit", "broken"]
    assert list(cascade["level"]) == [0, 1, 2, 2, 1, 2, 2]
    html_table = ev.status_table_html()
    assert "Bad &lt;b&gt;bold&lt;/b&gt;" in html_table and "<b>bold" not in html_table
    assert "Dana &lt;Director&gt;" in html_table
    text = ev.summary()
    assert "7 objectives" in text and "1 missed" in text
    assert 'Look first at "Bad <b>bold</b>"' in text  # the open objective least likely to be met, not "Late"
    assert not set(ev.forecasts) - set(plan.ids)


def test_unknown_department_and_missing_data_still_report(tmp_path):
    plan = load_objectives(_write(tmp_path, SERIES_DOC, "support.yaml"))

    class FakeDataset:
        departments = ["Sales", "Billing"]
        org = pd.DataFrame({"person_id": ["p1"], "name": ["Dana"]})
        con = None

    ev = evaluate_objectives(plan, FakeDataset(), as_of="2026-10-31")
    assert set(ev.table["status"]) == {"no data"}
    assert any("field 'department'" in w and "'Support' is not in the data" in w for w in ev.warnings)
    assert all(isinstance(s, str) and s for s in ev.table["sentence"])

    def empty(metric, filters, start, end, freq):
        return pd.DataFrame({"period": pd.to_datetime([]), "value": [], "ci_low": [], "ci_high": [], "n": []})

    ev = evaluate_objectives(plan, as_of="2026-10-31", series_provider=empty)
    assert set(ev.table["status"]) == {"no data"}
    assert "no fcr data" in ev.row("good")["message"]


def _flat_provider(values, start="2024-11-01"):
    periods = pd.date_range(start, periods=len(values), freq="MS")
    v = np.asarray(values, dtype=float)

    def provider(metric, filters, start_, end, freq):
        return pd.DataFrame({"period": periods, "value": v, "ci_low": v - 1, "ci_high": v + 1, "n": 100})

    return provider


def test_objective_without_data_in_its_period_is_no_data(tmp_path):
    doc = yaml.safe_load(SERIES_DOC)
    doc["objectives"] = doc["objectives"][:1]
    plan = parse_objectives(doc, "support.yaml")
    stale = _flat_provider([60.0] * 12)  # Nov 2024 - Oct 2025 only; the objective starts Jan 2026
    ev = evaluate_objectives(plan, as_of="2026-10-31", series_provider=stale)
    row = ev.row("good")
    assert row["status"] == "no data" and "field 'start'" in row["message"] and "2025-10" in row["message"]


def test_implausible_target_is_warned_at_evaluation():
    doc = yaml.safe_load(SERIES_DOC)
    doc["objectives"] = doc["objectives"][:1]  # 60 -> 70 in 12 months needs 0.83 points a month
    plan = parse_objectives(doc, "support.yaml")
    calm = _flat_provider(60 + 0.2 * np.sin(np.arange(24)))  # never moved more than 0.4 a month
    ev = evaluate_objectives(plan, as_of="2026-10-31", series_provider=calm)
    assert any("not plausible from history" in w and "'good'" in w for w in ev.warnings)
    assert ev.row("good")["status"] == "off track"


def test_value_and_interval_are_rounded_alike():
    """Issue 11 (follow-up): a forecast read "+14 (80% PI -9.6 to +37)"; a value and its interval now share
    their decimals (the unit's usual ones, from the largest of the three), more only where the ends would print
    alike."""
    from helpers.objectives import MetricInfo, value_and_interval

    nps = MetricInfo("nps", "NPS", "points", True, (-100, 100))
    assert value_and_interval(14.2, -9.6, 37.4, nps) == ("+14", "-10 to +37")
    assert value_and_interval(4.3, -1.2, 8.9, nps) == ("+4.3", "-1.2 to +8.9")
    assert value_and_interval(4.3, -18.4, 26.0, nps) == ("+4", "-18 to +26")
    assert value_and_interval(12.0, 11.96, 12.04, nps) == ("+12.00", "+11.96 to +12.04")  # ends never alike
    assert value_and_interval(3.0, float("nan"), 4.0, nps) == ("+3.0", "")
    share = MetricInfo("fcr", "FCR", "share", True, (0, 1))
    assert value_and_interval(0.8125, 0.7851, 0.8362, share) == ("81.2%", "78.5% to 83.6%")
    hours = MetricInfo("first_response_hours", "Median first response time", "hours", False, (0, None))
    assert value_and_interval(16.02, 16.01, 16.04, hours) == ("16.02 h", "16.01 h to 16.04 h")
    assert value_and_interval(float("nan"), 1, 2, hours) == ("n/a", "")


def test_texts_for_readers_come_clean_from_the_source(tmp_path):
    """The sentence and the reader reason of an objective name no file, objective id, KPI code or setting;
    the analyst's message still names the file, objective and field; "Now" says what its interval is; the
    forecast's interval is rounded like its value."""
    doc = yaml.safe_load(SERIES_DOC)
    for o in doc["objectives"]:
        o["filters"] = {"channel": o["id"]}
    plan = parse_objectives(doc, str(tmp_path / "support.yaml"))

    def provider(metric, filters, start, end, freq):
        if metric == "csat":
            raise ValueError("the survey answers hold no satisfaction ratings")
        if filters.get("channel") == ("close",):
            return pd.DataFrame({"period": pd.to_datetime([]), "value": [], "ci_low": [], "ci_high": [], "n": []})
        return _flat_provider(np.linspace(55, 66, 24))(metric, filters, start, end, freq)

    ev = evaluate_objectives(plan, as_of="2026-10-31", series_provider=provider)
    for _, r in ev.table.iterrows():
        for text in (r["sentence"], r["reason"], r["current_text"], r["forecast_text"]):
            for leak in ("support.yaml", str(tmp_path), f"'{r['id']}'", "field '", "min_responses", "'fcr'",
                         "'csat'", " fcr ", " csat "):
                assert leak not in text, (leak, text)
    empty = ev.row("close")
    assert empty["status"] == "no data" and "support.yaml" in empty["message"] and "field 'metric'" in empty["message"]
    assert empty["reason"].startswith("no First-contact resolution data for this department for channel close")
    assert empty["sentence"] == f"No data to judge this objective: {empty['reason']}."
    good = ev.row("good")
    assert good["current_text"].startswith("66.0% (95% CI 65.0% to 67.0%), n=100, ")
    assert re.fullmatch(r"\d+\.\d% \(80% PI \d+\.\d% to \d+\.\d%\)", good["forecast_text"])
    broken = ev.row("broken")
    assert broken["reason"] == "CSAT cannot be computed: the survey answers hold no satisfaction ratings"
    assert "metric 'csat' cannot be computed" in broken["message"]


def test_chances_read_as_not_certain_at_the_source():
    """A forecast never makes an open objective impossible or certain: the sentence says "<1%" where rounding
    would show 0% (the page used to reword "0% chance" afterwards)."""
    from helpers.objectives import chance_text

    assert [chance_text(p) for p in (0.0, 0.004, 0.01, 0.46, 0.995, 1.0, float("nan"), None)] == \
        ["<1%", "<1%", "1%", "46%", ">99%", ">99%", "n/a", "n/a"]
    doc = yaml.safe_load(SERIES_DOC)
    doc["objectives"] = doc["objectives"][:1]
    ev = evaluate_objectives(parse_objectives(doc, "support.yaml"), as_of="2026-10-31",
                             series_provider=_flat_provider([40.0] * 24))  # far below the target of 70
    row = ev.row("good")
    assert row["p_met"] < 0.005 and "<1% chance of meeting it" in row["sentence"]
    assert row["chance_text"] == "<1%" and "<1% chance" in ev.summary()


def test_objective_filtered_by_a_customer_column_evaluates_on_the_joined_rows(small_demo, tmp_path):
    """Issue 17: any customers column (here ``plan``, kept by the export profile as a dimension) filters an
    objective on a survey KPI; the window's value is CSAT (top-2-box) of the department's answers whose customer
    has that plan, as a hand merge of the two tables gives it."""
    import shutil

    from helpers.data import load_dataset

    data = tmp_path / "data"
    shutil.copytree(small_demo, data)
    customers = pd.read_parquet(data / "customers.parquet")
    customers["plan"] = np.where(customers["customer_id"].str[-1].isin(list("02468")), "gold", "basic")
    customers.to_parquet(data / "customers.parquet", index=False)
    ds = load_dataset(data, emit_warnings=False, dimensions={"customers": ["plan"]})
    doc = {"department": "Billing", "objectives": [
        {"id": "gold-csat", "title": "Gold customers satisfied", "metric": "csat", "filters": {"plan": "gold"},
         "baseline": 70, "target": 90, "start": "2026-01-01", "deadline": "2026-09-30", "window": "quarter",
         "owner": {"person": "billing-dir", "role": "director"}}]}
    plan = load_objectives(_write(tmp_path, doc, name="billing.yaml"))
    assert plan.get("gold-csat").filters == {"plan": ("gold",)}
    row = evaluate_objectives(plan, ds, "2026-10-31", min_responses=1).table.iloc[0]
    joined = ds.responses.merge(customers[["customer_id", "plan"]], on="customer_id", how="left")
    days = pd.to_datetime(joined["response_date"])
    window = joined[(joined["department"] == "Billing") & (joined["plan"] == "gold") & joined["csat"].notna()
                    & (days >= "2026-07-01") & (days <= "2026-09-30")]
    everyone = joined[(joined["department"] == "Billing") & joined["csat"].notna()
                      & (days >= "2026-07-01") & (days <= "2026-09-30")]
    assert 0 < len(window) < len(everyone)  # the filter selects a real subset
    assert row["status"] not in ("no data",), row["message"]
    assert int(row["n"]) == len(window)
    assert row["current"] == pytest.approx(100 * (window["csat"] >= 4).mean())
