"""helpers.funnel: control limits hold their nominal false-alarm rates on synthetic units with known equal
rates (Monte Carlo), a truly worse team is flagged, and bad input is a clear error."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.errors import KitError
from helpers.funnel import binomial_limits, funnel, mean_limits, median_limits


def _within_mc(rate: float, nominal: float, trials: int) -> bool:
    """The observed false-alarm rate is within 4 Monte-Carlo standard errors of the nominal one."""
    se = np.sqrt(nominal * (1 - nominal) / trials)
    return abs(rate - nominal) < 4 * se


@pytest.mark.parametrize("level", [0.95, 0.998])
def test_binomial_limits_false_alarm_rate_is_nominal(level):
    rng = np.random.default_rng(11)
    trials, theta = 100_000, 0.3
    n = rng.integers(200, 3000, trials)
    share = rng.binomial(n, theta) / n
    lo, hi = binomial_limits(theta, n, level)
    rate = float(np.mean((share < lo) | (share > hi)))
    assert _within_mc(rate, 1 - level, trials), rate


@pytest.mark.parametrize("level", [0.95, 0.998])
def test_mean_limits_false_alarm_rate_is_nominal(level):
    rng = np.random.default_rng(12)
    trials = 100_000
    n = rng.integers(5, 500, trials)
    means = rng.normal(4.0, 1.5 / np.sqrt(n))  # the mean of n draws with sd 1.5
    lo, hi = mean_limits(4.0, 1.5, n, level)
    assert _within_mc(float(np.mean((means < lo) | (means > hi))), 1 - level, trials)


def test_median_limits_false_alarm_rate_is_nominal_for_a_skewed_distribution():
    rng = np.random.default_rng(13)
    reference = rng.lognormal(2.5, 1.0, 400_000)  # the department's (skewed) hours
    trials = 20_000
    n = rng.integers(5, 150, trials) | 1  # odd n: the median is one order statistic
    medians = np.array([np.median(rng.lognormal(2.5, 1.0, k)) for k in n])
    for level in (0.95, 0.998):
        lo, hi = median_limits(reference, n, level)
        rate = float(np.mean((medians < lo) | (medians > hi)))
        assert abs(rate - (1 - level)) < 4 * np.sqrt((1 - level) * level / trials) + 0.003, (level, rate)


def _tickets(rates: dict[str, tuple[float, int]], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for team, (p, n) in rates.items():
        first = rng.random(n) < p
        rows.append(pd.DataFrame({"team": team, "contacts_to_resolve": np.where(first, 1, 2)}))
    return pd.concat(rows, ignore_index=True)


def test_equal_teams_are_flagged_at_the_nominal_rate_end_to_end():
    """Many departments of 40 teams with the same first-contact resolution: funnel() (centre estimated
    from the pooled rows) flags about 5% of teams at 95% and 0.2% at 99.8%."""
    rng = np.random.default_rng(5)
    out95 = out998 = total = 0
    for dept in range(150):
        sizes = rng.integers(100, 1500, 40)
        frame = _tickets({f"T{i}": (0.7, int(s)) for i, s in enumerate(sizes)}, seed=dept)
        result = funnel(frame, "fcr", "team")
        out95 += int((result.table["outside"] != "").sum())
        out998 += int((result.table["outside"] == "99.8%").sum())
        total += len(result.table)
    assert _within_mc(out95 / total, 0.05, total), out95 / total
    assert _within_mc(out998 / total, 0.002, total), out998 / total


def test_a_truly_worse_team_is_flagged_and_named_as_worse():
    frame = _tickets({"North": (0.75, 800), "South": (0.75, 900), "East": (0.75, 700), "Last Mile": (0.55, 600)},
                     seed=3)
    result = funnel(frame, "fcr", "team")
    flagged = result.flagged.set_index("unit")
    assert "Last Mile" in flagged.index
    assert flagged.loc["Last Mile", "outside"] == "99.8%" and flagged.loc["Last Mile", "direction"] == "worse"
    assert result.centre == pytest.approx(100 * (frame["contacts_to_resolve"] == 1).mean())
    # the limits narrow as n grows and always hold the centre
    c = result.curve
    assert (c["low_998"] <= c["low_95"]).all() and (c["low_95"] <= result.centre).all()
    assert (c["high_95"] - c["low_95"]).is_monotonic_decreasing


def test_hours_kpi_lower_is_better_and_small_units_left_out():
    rng = np.random.default_rng(8)
    created = pd.Timestamp("2026-01-01")
    rows = []
    agents = [(f"a{i}", 10, 300) for i in range(12)] + [("slow", 30, 300), ("tiny", 10, 3)]
    for agent, scale, n in agents:
        hours = rng.exponential(scale, n)
        rows.append(pd.DataFrame({"agent_id": agent, "created_at": created,
                                  "first_response_at": created + pd.to_timedelta(hours, unit="h")}))
    frame = pd.concat(rows, ignore_index=True)
    result = funnel(frame, "first_response_hours", "agent_id")
    assert "tiny" not in set(result.table["unit"]) and "fewer than 5" in result.notes[0]
    flagged = result.flagged.set_index("unit")
    assert flagged.loc["slow", "direction"] == "worse" and flagged.loc["slow", "outside"] == "99.8%"
    assert list(flagged.index[flagged["direction"] == "worse"]) == ["slow"]


def test_unsupported_kpis_and_columns_are_clear_errors():
    frame = _tickets({"A": (0.5, 50)}, seed=1)
    with pytest.raises(KitError, match="ticket_volume|Ticket volume"):
        funnel(frame, "ticket_volume", "team")
    with pytest.raises(KitError, match="no column 'agent_id'"):
        funnel(frame, "fcr", "agent_id")


def test_overdispersed_units_are_not_all_named_but_an_extreme_one_is():
    """Agents whose true rates differ (random effects, sd 4 points) with large n: plain limits name most of them;
    with the overdispersion adjustment (Spiegelhalter 2005, s.5) about 5% of ordinary agents fall outside the
    95% limits, and an agent 25 points worse is still named."""
    rng = np.random.default_rng(21)
    plain = adjusted = total = 0
    weak_flagged = []
    for rep in range(40):
        rates = np.clip(rng.normal(0.65, 0.04, 30), 0.05, 0.95)
        spec = {f"A{i}": (float(p), int(n)) for i, (p, n) in enumerate(zip(rates, rng.integers(800, 2000, 30)))}
        spec["Weak"] = (0.40, 1000)
        frame = _tickets(spec, seed=100 + rep)
        raw = funnel(frame, "fcr", "team", adjust_overdispersion=False).table
        fair_result = funnel(frame, "fcr", "team")
        fair = fair_result.table
        assert fair_result.tau2 > 0 and fair_result.phi > 1
        ordinary = fair["unit"] != "Weak"
        plain += int((raw.loc[raw["unit"] != "Weak", "outside"] != "").sum())
        adjusted += int((fair.loc[ordinary, "outside"] != "").sum())
        total += int(ordinary.sum())
        weak_flagged.append(fair.set_index("unit").loc["Weak", "direction"] == "worse")
    assert plain / total > 0.4  # without the adjustment, ordinary variation is named
    assert 0.02 < adjusted / total < 0.09, adjusted / total
    assert all(weak_flagged)


def test_no_overdispersion_adjustment_with_few_units():
    frame = _tickets({"North": (0.80, 3000), "South": (0.70, 3000), "East": (0.75, 3000)}, seed=4)
    result = funnel(frame, "fcr", "team")
    assert result.tau2 == 0 and result.phi > 10 and set(result.flagged["unit"]) == {"North", "South"}
