"""The KPIs the kit knows (:data:`KPIS`): label, unit, direction, table, estimator kind and bounds of each.

A registry only, without the estimators (:mod:`helpers.kpis`, which re-exports it): what validating an objectives
file needs, so the report runner checks params without importing pandas' and SciPy's statistics first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class KPI:
    """A KPI the kit knows: how to label it, where its data lives and how it is estimated."""

    name: str
    label: str
    unit: str  # "%", "points", "score", "hours", "count", "currency"
    higher_is_better: bool
    table: str  # responses | tickets | customers
    kind: str  # nps | top_box | mean | share_eq1 | flag | median_hours | mean_hours | count | retention | ...
    column: str | None
    date_column: str | None
    bounds: tuple[float, float] | None
    description: str
    periodic: bool = True  # can be computed per period by kpi_series
    extra: dict = field(default_factory=dict)


KPIS: dict[str, KPI] = {k.name: k for k in (
    KPI("csat", "CSAT", "%", True, "responses", "top_box", "csat", "response_date", (0, 100),
        "Top-2-box satisfaction: percent of survey answers 4 or 5 on the 1-5 scale (Wilson interval)."),
    KPI("nps", "NPS", "points", True, "responses", "nps", "nps", "response_date", (-100, 100),
        "Net Promoter Score: percent promoters (9-10) minus percent detractors (0-6), adjusted-Wald interval."),
    KPI("ces", "CES", "score", False, "responses", "mean", "ces", "response_date", (1, 7),
        "Customer Effort Score: mean of 1 (very easy) to 7 (very difficult); lower is better (t interval)."),
    KPI("response_count", "Survey responses", "count", True, "responses", "count", None, "response_date",
        (0, math.inf), "Number of survey responses (exact Poisson interval)."),
    KPI("fcr", "First-contact resolution", "%", True, "tickets", "share_eq1", "contacts_to_resolve",
        "created_at", (0, 100), "Percent of tickets resolved in one contact (Wilson interval)."),
    KPI("reopen_rate", "Reopen rate", "%", False, "tickets", "flag", "reopened", "created_at", (0, 100),
        "Percent of tickets reopened after resolution (Wilson interval)."),
    KPI("first_response_hours", "Median first response time", "hours", False, "tickets", "median_hours",
        "first_response", "created_at", (0, math.inf),
        "Median hours from ticket creation to first reply (exact order-statistic interval)."),
    KPI("resolution_hours", "Median resolution time", "hours", False, "tickets", "median_hours", "resolution",
        "created_at", (0, math.inf),
        "Median hours from ticket creation to resolution (exact order-statistic interval)."),
    KPI("first_response_hours_mean", "Mean first response time", "hours", False, "tickets", "mean_hours",
        "first_response", "created_at", (0, math.inf),
        "Mean hours to first reply (t interval; durations are skewed, prefer the median)."),
    KPI("resolution_hours_mean", "Mean resolution time", "hours", False, "tickets", "mean_hours",
        "resolution", "created_at", (0, math.inf),
        "Mean hours to resolution (t interval; durations are skewed, prefer the median)."),
    KPI("ticket_volume", "Ticket volume", "count", False, "tickets", "count", None, "created_at",
        (0, math.inf), "Number of tickets opened (exact Poisson interval)."),
    KPI("retention_rate", "Retention rate", "%", True, "customers", "retention", None, "signup_date", (0, 100),
        "Customer retention rate per period: share of customers active at the period start still active at "
        "its end, i.e. (E - N) / S when no new customer leaves within the period (Wilson interval)."),
    KPI("churn_rate", "Churn rate", "%", False, "customers", "churn", None, "signup_date", (0, 100),
        "Churn rate per period: 1 - retention rate (Wilson interval)."),
    KPI("repeat_purchase_rate", "Repeat purchase rate", "%", True, "customers", "repeat", "purchases", None,
        (0, 100), "Percent of purchasing customers with two or more purchases (Wilson interval).",
        periodic=False),
    KPI("clv", "Customer lifetime value", "currency", True, "customers", "clv", "monthly_revenue", None,
        (0, math.inf), "Discounted CLV m(1+d)/(1+d-r) from mean monthly revenue of active customers and the "
        "pooled monthly retention of the window (delta-method interval).", periodic=False),
)}


__all__ = ["KPI", "KPIS"]
