"""The demo's closed loop (responses.followed_up_at): drawn from its own stream without moving any other column,
recorded in ground_truth.json, and the voice report's "contacted within N hours" KPI
(helpers.voice_report.contact_kpi) recovers the generated truth within its interval.

Reference: the true probability of a follow-up within h hours, contact_rate x Phi((log h - log median) / sd),
from the generator's parameters (helpers.demo.FOLLOW_UP, recomputed here with scipy), and the demo's column
contents before the column existed (1,500 customers, seed 3).
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats

from helpers import demo as D
from helpers.data import load_dataset
from helpers.voice_report import contact_kpi

# responses.csat/nps/comment and customer_truth.mean_csat of the demo with 1,500 customers, seed 3, before
# followed_up_at was added (the other columns are pinned by tests/test_counterfactual.py's GOLDEN)
GOLDEN_VOICE_COLUMNS = {("responses", "csat"): "0f6cf63d7c01ac30", ("responses", "nps"): "7f983f11e1155054",
                        ("responses", "comment"): "8e2b56d525bd40ec",
                        ("customer_truth", "mean_csat"): "b9ce9b9db2c62d27"}


def _digest(series: pd.Series) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(series, index=False).to_numpy().tobytes()).hexdigest()[:16]


def _true_within(dept_slug: str, hours: float) -> float:
    f = D.FOLLOW_UP[dept_slug]
    return f.contact_rate * stats.norm.cdf((np.log(hours) - np.log(f.median_hours)) / D.FOLLOW_UP_SIGMA)


def test_follow_up_stream_is_new_and_moves_no_other_column(tmp_path):
    assert D.FOLLOW_UP_STREAM not in (D.VOICE_STREAM,) and D.FOLLOW_UP_STREAM != 10_000_019
    D.generate_demo(tmp_path, n_customers=1500, seed=3)
    for (table, column), digest in GOLDEN_VOICE_COLUMNS.items():
        got = _digest(pq.read_table(tmp_path / f"{table}.parquet").to_pandas()[column])
        assert got == digest, (table, column)
    r = pd.read_parquet(tmp_path / "responses.parquet")
    assert list(r.columns)[-1] == "followed_up_at"
    unhappy = (r["nps"] <= 6) | (r["csat"] <= 1)
    followed = r["followed_up_at"].notna()
    assert not (followed & ~unhappy).any()  # only unhappy answers are followed up
    assert 0.6 < followed[unhappy].mean() < 0.95  # most of them, not all
    delay = (r["followed_up_at"] - pd.to_datetime(r["response_date"])).dt.total_seconds() / 3600
    assert (delay[followed] > 0).all() and 24 < delay[followed].median() < 72  # mostly within 1-3 days
    assert (r.loc[followed, "followed_up_at"] < pd.Timestamp("2026-11-01")).all()


def test_ground_truth_records_the_follow_up_model(small_demo):
    truth = json.loads((small_demo / "ground_truth.json").read_text())["follow_up"]
    assert truth["column"] == "responses.followed_up_at" and truth["delay_log_sd"] == D.FOLLOW_UP_SIGMA
    for name, slug in zip(D.DEPARTMENT_NAMES, D.DEPARTMENT_SLUGS):
        entry = truth["by_department"][name]
        assert entry["contact_rate"] == D.FOLLOW_UP[slug].contact_rate
        for h in (24, 48, 72):
            assert entry["within_hours"][str(h)] == pytest.approx(_true_within(slug, h), abs=1e-6)


def test_contact_kpi_recovers_the_true_share_per_department(small_demo):
    ds = load_dataset(small_demo, emit_warnings=False)
    start, end = "2023-11-01", "2026-10-31"
    values = {}
    for name, slug in zip(D.DEPARTMENT_NAMES, D.DEPARTMENT_SLUGS):
        k = contact_kpi(ds, start, end, hours=48, department=name)
        assert k.estimate is not None, k.missing
        truth = 100 * _true_within(slug, 48)
        assert k.estimate.ci_low <= truth <= k.estimate.ci_high, (name, truth, k.estimate)
        values[name] = k.estimate
        assert "not measured" not in k.markdown() and f"n = {k.estimate.n:,}" in k.markdown()
    # the departments differ, and the KPI tells them apart (intervals of the best and the worst do not overlap)
    best, worst = values["Customer Service"], values["Delivery"]
    assert best.ci_low > worst.ci_high
    # company-wide: the expected share is the mix of the departments' truths over the answers it counts
    company = contact_kpi(ds, start, end, hours=48)
    r = ds.responses
    judged = r[((r["nps"] <= 6) | (r["csat"] <= 1))
               & (pd.to_datetime(r["response_date"]) + pd.Timedelta(hours=48) <= pd.Timestamp(end)
                  + pd.Timedelta(days=1))]
    slugs = dict(zip(D.DEPARTMENT_NAMES, D.DEPARTMENT_SLUGS))
    expected = 100 * judged["department"].map(lambda d: _true_within(slugs[d], 48)).mean()
    assert company.estimate.n == len(judged)
    assert company.estimate.ci_low <= expected <= company.estimate.ci_high
