"""Issue 10, "counts are rates": ticket volume of months of different lengths is compared and judged per day."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import kpis as K
from helpers.objectives import evaluate_objectives, parse_objectives


def _tickets(rng, per_day: float) -> pd.DataFrame:
    """Tickets opened at the same daily rate in January (31 days) and February (28 days) 2026."""
    days = list(pd.date_range("2026-01-01", "2026-02-28", freq="D"))
    counts = rng.poisson(per_day, len(days))
    created = np.repeat(np.array(days, dtype="datetime64[ns]"), counts)
    return pd.DataFrame({"created_at": created, "department": "Support"})


@pytest.mark.parametrize("per_day", [20, 100])
def test_equal_daily_rates_in_unequal_months_are_not_significant(per_day):
    """Regression: January vs February at the same daily rate was "significant" 43% (20/day) and 98% (100/day) of
    the time with raw counts. Per day, the test keeps its 5% false-positive rate (binomial 3-sigma band)."""
    rng = np.random.default_rng(per_day)
    n_sim, rejections = 300, 0
    for _ in range(n_sim):
        tickets = _tickets(rng, per_day)
        c = K.compare_kpi("ticket_volume", tickets, tickets, period_a=("2026-01-01", "2026-01-31"),
                          period_b=("2026-02-01", "2026-02-28"))
        rejections += c.significant()
    rate = rejections / n_sim
    assert abs(rate - 0.05) < 3 * np.sqrt(0.05 * 0.95 / n_sim)
    assert c.b.unit == "per day" and "per day" in c.describe()
    assert c.a.value == pytest.approx(len(tickets[tickets["created_at"] < "2026-02-01"]) / 31)


def test_a_real_change_in_the_daily_rate_is_found_and_said_per_day():
    rng = np.random.default_rng(1)
    jan = _tickets(rng, 100)
    jan = jan[jan["created_at"] < "2026-02-01"]
    feb = _tickets(rng, 130)
    feb = feb[feb["created_at"] >= "2026-02-01"]
    tickets = pd.concat([jan, feb])
    c = K.compare_kpi("ticket_volume", tickets, tickets, period_a=("2026-01-01", "2026-01-31"),
                      period_b=("2026-02-01", "2026-02-28"))
    assert c.significant() and c.difference == pytest.approx(len(feb) / 28 - len(jan) / 31)
    assert c.describe().startswith("Ticket volume rose by") and "per day" in c.describe()


def test_a_ticket_volume_objective_is_judged_per_day():
    """Monthly counts at exactly 50 tickets a day: 1,550 in 31-day months, 1,400 in February. Per day the
    series is flat at 50, the forecast is 50 per day, and a target of 45 per day (lower) is off track."""
    doc = {"department": "Support", "objectives": [
        {"id": "volume", "title": "Fewer tickets", "metric": "ticket_volume", "baseline": 55, "target": 45,
         "direction": "lower", "start": "2026-01-01", "deadline": "2026-12-31",
         "owner": {"name": "Jo", "role": "director"}}]}
    plan = parse_objectives(doc, "support.yaml")
    periods = pd.date_range("2024-01-01", "2026-10-01", freq="MS")
    days = periods.days_in_month.to_numpy()
    counts = 50.0 * days

    def provider(metric, filters, start, end, freq):
        return pd.DataFrame({"period": periods, "value": counts, "ci_low": counts - 2 * np.sqrt(counts),
                             "ci_high": counts + 2 * np.sqrt(counts), "n": counts})

    ev = evaluate_objectives(plan, as_of="2026-10-31", series_provider=provider)
    row = ev.row("volume")
    assert row["current"] == pytest.approx(50.0)  # October: 1,550 tickets / 31 days
    assert np.allclose(ev.series["volume"]["value"], 50.0)
    assert row["forecast"] == pytest.approx(50.0, rel=0.02)
    assert row["status"] == "off track" and "per day" in row["sentence"]
