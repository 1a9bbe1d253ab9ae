"""Demo data with known ground truth: a fictional company's customers, surveys, tickets and organisation.

Command line::

    python -m helpers.demo --out data/demo --customers 20000 --seed 42

writes ``customers.parquet``, ``responses.parquet``, ``tickets.parquet``, ``org.parquet`` (the four
contract tables of :mod:`helpers.schema`), ``ground_truth.json`` (the parameters the data were drawn
from) and ``customer_truth.parquet`` (ground truth, not data: ``customer_id``, ``segment``, ``theta``
(monthly churn probability), ``monthly_hazard`` (-log(1 - theta)), ``latent_csat`` (the Cox covariate of
the true hazard ratio), ``n_responses`` and ``mean_csat`` (the observable proxy: mean answered CSAT)). The demo period is 36 months, 2023-11-01 .. 2026-10-31.

The generative model (every number is in :data:`SEGMENTS`, :data:`DEPARTMENTS` and ``ground_truth.json``)
-------------------------------------------------------------------------------------------------------

**Customers and churn (shifted-beta-geometric, exact).** Customer *i* of segment *g* signs up on a
uniform day of a monthly cohort (cohort sizes grow ~1.2 %/month with a January and autumn peak). Their
monthly churn probability is :math:`\\theta_i \\sim \\mathrm{Beta}(\\alpha_g, \\beta_g)` and their
lifetime in months is exponential with rate :math:`\\lambda_i = -\\log(1-\\theta_i)`, so
:math:`P(T_i > t \\mid \\theta_i) = (1-\\theta_i)^t` at every whole month *t* and a cohort's survival is
exactly the sBG law of Fader & Hardie (2007), *How to project customer retention*, J. Interactive
Marketing 21(1), eq. (4): :math:`S(t) = B(\\alpha, \\beta + t) / B(\\alpha, \\beta)`. Tenure in months is
``(end_date - signup_date).days / 30.4375`` (the lifetime is floored to whole days); customers alive on
2026-10-31 are censored (``end_date`` empty).

**Satisfaction and churn (proportional hazards, exact in the latent level).** Each customer's latent
satisfaction is the deterministic, decreasing function of their churn rate

.. math:: s_i = (c - \\log \\lambda_i) / b \\quad\\Longleftrightarrow\\quad \\lambda_i = \\exp(c - b\\, s_i),

so the continuous-time hazard is exactly proportional in *s* with hazard ratio :math:`e^{-b}` per CSAT
point and no residual frailty (all heterogeneity of :math:`\\theta` is carried by *s*). *s* is on the
CSAT scale: it is the centre of the customer's latent overall rating (see below). A Cox model on *s*
(from ``customer_truth.parquet``) recovers :math:`e^{-b}` exactly. No observable column can do the same:
*s* is continuous and every rating is an integer 1-5, so a customer's observed mean CSAT is *s* plus
measurement error and a Cox fit on it is attenuated toward 1 (regression dilution; ``ground_truth.json``
documents the proxy and its reliability). An exact sBG per segment and an exact PH in an *integer*
covariate cannot hold together (a finite mixture of geometrics is not a beta mixture), so the exact
truth is stated for the latent covariate.

**Drivers of satisfaction (linear latent model, exact weights).** A survey response *r* from customer *i*
about department *d* in month *m* has latent attribute ratings

.. math:: A_{rj} = s_i + a_{dj}(m) + \\delta_{\\text{agent},j} + u_{rj}, \\qquad u_r \\sim N(0, \\Sigma_u)

(:math:`\\Sigma_u` equicorrelated; with the shared :math:`s_i` the observed ratings correlate about 0.4,
a halo as in real surveys) and latent overall satisfaction :math:`y_r = \\sum_j w_{dj} A_{rj} + e_r` with
:math:`\\sum_j w_{dj} = 1`, :math:`e_r \\sim N(0, \\sigma_e^2)`. Observed ratings are the latent values
rounded and clipped to 1..5 (most answers 4-5). ``ground_truth.json`` records the weights :math:`w_{dj}`
and the population LMG/Shapley decomposition of :math:`R^2` of *y* on *A* (Lindeman, Merenda & Gold 1980;
Grömping 2006), computed exactly from the latent covariance of the department's responses, and its
ranking. NPS (0-10) is a noisy increasing function of *y*, CES (1-7, low = easy) a noisy decreasing
function of the ``ease`` attribute.

**Operations (KPI trends).** Tickets arrive while the customer is active as a Poisson process whose
rate depends on segment, department volume trend and a seasonal factor (December peak, summer dip).
First response and resolution times are log-normal with department medians that trend log-linearly
(some improve, some are flat, some deteriorate), first-contact resolution is logistic in time, and one
team and one representative are notably worse than their peers. About half of the resolved tickets get
a survey response; Sales also surveys new customers at sign-up; Marketing is small (a handful of
responses per month) so small-sample warnings are exercised.

**Counterfactual (issue 15).** ``--shift-satisfaction 0.3`` (or ``--shift-attribute ease=0.5``, from
``--shift-from``, default 2025-11-01) writes the same company with every customer's latent satisfaction
shifted from that day on: the churn hazard is multiplied by exp(-1.2 x shift) (the remaining part of the same
exponential lifetime draw is stretched), and the answers from that day on are rated on the shifted latent
attributes. No random draw is added, removed or reordered (tickets, answers, purchases and revenue are the
factual company's); without a shift the output is exactly the factual company. ``ground_truth.json``
``counterfactual`` records the shift and, for the customers active the day before it, who is still a customer
1-12 months later in both companies (realised, and expected from their true hazards) with their revenue
(:class:`Counterfactual`; checked in ``tests/test_counterfactual.py``).

**Comment themes no rating question asks about** (:data:`UNASKED_THEMES`). A mobile app broken by a release
(2026-01-12 until the fix on 2026-04-13, every department and segment) and a price increase for small businesses
(from 2025-11-03, permanent): in its window, each response with a comment mentions the problem with probability
0.08 (a sentence of :data:`helpers.demo_text.UNASKED_COMMENTS` appended to its comment) and its latent overall
rating y is lowered by 0.9 (app) or 0.6 (price) points, so its CSAT and NPS are recomputed from the lowered y with
the response's own noise; ratings, CES and whether there is a comment do not change. ``ground_truth.json``
(``unasked_themes``) records the windows and the realised effects on the mentioning responses (mean CSAT and NPS
change, detractor shares before/after, the odds ratio adjusted for the ratings). These draws come from a stream of
their own, ``default_rng([seed, k, VOICE_STREAM])``, so every other column is exactly as without them; the
windows and rates were chosen so that the demo objectives' statuses (``tests/test_objectives_demo.py``) do not
move.

**Closing the loop** (:data:`FOLLOW_UP`). ``responses.followed_up_at`` is when an unhappy customer (NPS 0-6 or CSAT
1) was contacted: per department with probability ``contact_rate`` (0.60 Marketing to 0.93 Customer Service), after
a log-normal delay with a department median of 20-70 hours; the rest, and every other answer, stay empty. Drawn
from ``default_rng([seed, k, FOLLOW_UP_STREAM])`` (17), two draws per answer, so every other column is exactly as
without it; ``ground_truth.json`` (``follow_up``) records the parameters and the true share contacted within 24,
48 and 72 hours per department.

**Determinism.** Customers are generated in fixed chunks of :data:`CHUNK_SIZE`; chunk *k* draws from
``numpy.random.default_rng([seed, k])``, so the same ``--customers``/``--seed`` gives byte-identical
files and memory stays bounded (1M customers stream through ``pyarrow.parquet.ParquetWriter``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import special

from helpers.demo_text import (FIRST_NAMES, HTML_SPECIAL_COMMENTS, LAST_NAMES, UNASKED_BACKGROUND,
                                UNASKED_COMMENTS, comment_catalogue)
from helpers.errors import KitError
from helpers.kpis import NPS_DETRACTOR_MAX
from helpers.schema import STANDARD_ATTRIBUTES

START = dt.date(2023, 11, 1)
END = dt.date(2026, 10, 31)
N_MONTHS = 36
DAYS_PER_MONTH = 30.4375
CHUNK_SIZE = 50_000
ATTRIBUTES = tuple(f"attr_{a}" for a in STANDARD_ATTRIBUTES)
N_ATTR = len(ATTRIBUTES)

MONTH_START_DAYS = np.array(
    [((dt.date(2023 + (10 + m) // 12, (10 + m) % 12 + 1, 1)) - START).days for m in range(N_MONTHS + 1)])
END_DAY = int(MONTH_START_DAYS[-1])  # first day after the period (2026-11-01), as days since START
CALENDAR_MONTH = np.array([(10 + m) % 12 + 1 for m in range(N_MONTHS)])  # 1..12 per demo month

# ---------------------------------------------------------------------------------------------------
# parameters (the ground truth)
# ---------------------------------------------------------------------------------------------------
SEGMENTS = {
    #                 share  sBG alpha, beta  tickets per active month, revenue (median, log sd), purchases/month
    "consumer": dict(share=0.70, alpha=1.4, beta=12.0, ticket_rate=0.75, revenue=(35.0, 0.5), purchase_rate=0.6),
    "small_business": dict(share=0.22, alpha=1.8, beta=22.0, ticket_rate=1.4, revenue=(220.0, 0.6),
                           purchase_rate=1.5),
    "enterprise": dict(share=0.08, alpha=2.5, beta=45.0, ticket_rate=2.6, revenue=(2400.0, 0.7),
                       purchase_rate=4.0),
}
REGIONS = ("north", "south", "east", "west")
REGION_SHARES = (0.30, 0.25, 0.20, 0.25)

LOG_HR = -1.2            # b: log hazard ratio per latent CSAT point  -> HR = exp(-1.2) = 0.301
BASELINE_LOG_HAZARD = 2.18  # c: log monthly hazard at latent satisfaction 0 (so s ~ 4 for consumers)

SIGMA_U = 1.0           # sd of experience-specific attribute deviations
RHO_U = 0.15             # their equicorrelation
SIGMA_E = 0.45           # sd of overall-satisfaction noise beyond the attributes

# seasonality of ticket volume by calendar month (December peak, slower summer)
VOLUME_SEASON = np.array([1.05, 0.95, 1.00, 0.97, 0.95, 0.88, 0.82, 0.80, 1.00, 1.02, 1.10, 1.30])
# first-response time multiplier by calendar month (December backlog, summer holidays)
FRT_SEASON = np.array([1.05, 1.00, 0.97, 0.97, 0.98, 1.05, 1.12, 1.12, 1.00, 0.98, 1.05, 1.30])
# sign-ups by calendar month
SIGNUP_SEASON = np.array([1.25, 1.05, 1.00, 0.95, 0.95, 0.90, 0.85, 0.85, 1.10, 1.10, 1.05, 0.95])
COHORT_GROWTH = 0.012

CHANNELS = ("phone", "email", "chat", "web", "store")


@dataclass(frozen=True)
class Department:
    name: str
    slug: str
    volume_share: float           # share of ticket volume at the start
    volume_growth: float          # log growth of ticket volume per month
    teams: tuple[tuple[str, int], ...]   # (team name, representatives)
    weights: dict[str, float]     # true driver weights of latent CSAT (sum 1)
    attr_offset: dict[str, float]  # a_dj(0): department's attribute level relative to the customer
    attr_trend: dict[str, float]   # change of a_dj per month
    frt_hours: tuple[float, float]  # median first-response hours at 2023-11 and 2026-10 (log-linear)
    resolution_hours: tuple[float, float]  # median hours first response -> resolved (1 contact)
    fcr: tuple[float, float]      # first-contact resolution probability at start and end (logistic)
    response_rate: float          # share of resolved tickets that get a survey response
    channels: tuple[float, ...]   # probabilities over CHANNELS


def _w(speed, resolution, knowledge, courtesy, ease, value) -> dict[str, float]:
    return dict(zip(ATTRIBUTES, (speed, resolution, knowledge, courtesy, ease, value)))


DEPARTMENTS: tuple[Department, ...] = (
    Department("Customer Service", "customer_service", 0.30, 0.008,
               (("Front Desk", 10), ("Escalations", 6), ("Retention Desk", 5)),
               _w(0.24, 0.16, 0.08, 0.36, 0.11, 0.05), _w(-0.2, -0.1, 0.0, 0.2, 0.0, -0.2),
               _w(0.010, 0.006, 0.0, 0.004, 0.003, 0.0),
               (22.0, 9.0), (18.0, 12.0), (0.66, 0.78), 0.50, (0.50, 0.25, 0.20, 0.05, 0.0)),
    Department("Sales", "sales", 0.085, 0.004,
               (("New Business", 7), ("Account Management", 6)),
               _w(0.05, 0.11, 0.24, 0.16, 0.08, 0.36), _w(0.0, 0.0, 0.2, 0.3, 0.0, -0.3),
               _w(0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
               (8.0, 8.0), (10.0, 10.0), (0.80, 0.80), 0.45, (0.35, 0.30, 0.10, 0.10, 0.15)),
    Department("Marketing", "marketing", 0.008, 0.0,
               (("Campaigns", 4), ("Customer Insights", 4)),
               _w(0.05, 0.08, 0.16, 0.11, 0.36, 0.24), _w(0.0, -0.2, 0.0, 0.1, -0.1, -0.1),
               _w(0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
               (30.0, 38.0), (30.0, 36.0), (0.70, 0.68), 0.40, (0.05, 0.60, 0.05, 0.30, 0.0)),
    Department("Delivery", "delivery", 0.20, 0.010,
               (("Dispatch", 8), ("Last Mile", 9), ("Returns", 6)),
               _w(0.36, 0.24, 0.05, 0.11, 0.16, 0.08), _w(0.1, 0.0, 0.0, 0.0, 0.1, 0.0),
               _w(-0.016, -0.006, 0.0, 0.0, -0.004, 0.0),
               (12.0, 21.0), (20.0, 30.0), (0.74, 0.63), 0.50, (0.35, 0.25, 0.25, 0.15, 0.0)),
    Department("Billing", "billing", 0.15, 0.003,
               (("Invoicing", 7), ("Collections", 5)),
               _w(0.11, 0.36, 0.08, 0.05, 0.24, 0.16), _w(0.0, -0.1, 0.0, 0.0, -0.2, -0.3),
               _w(0.002, 0.003, 0.0, 0.0, 0.004, 0.0),
               (16.0, 13.0), (24.0, 20.0), (0.74, 0.78), 0.50, (0.40, 0.35, 0.15, 0.10, 0.0)),
    Department("Technical Support", "technical_support", 0.257, 0.012,
               (("Tier 1", 12), ("Tier 2", 8), ("Field Engineering", 5)),
               _w(0.16, 0.36, 0.24, 0.05, 0.11, 0.08), _w(-0.3, -0.3, 0.1, 0.0, -0.1, 0.0),
               _w(0.006, 0.012, 0.004, 0.0, 0.002, 0.0),
               (26.0, 14.0), (60.0, 40.0), (0.55, 0.66), 0.50, (0.40, 0.20, 0.35, 0.05, 0.0)),
)
DEPARTMENT_NAMES = tuple(d.name for d in DEPARTMENTS)
DEPARTMENT_SLUGS = tuple(d.slug for d in DEPARTMENTS)

# one team and one representative notably worse than peers (index into the department's teams / reps)
WORSE_TEAM = ("delivery", "Last Mile", dict(frt_multiplier=1.7, fcr_logit_shift=-0.5,
                                             attr_shift={"attr_speed": -0.5, "attr_resolution": -0.3}))
WORSE_AGENT = ("technical_support", "technical_support-rep004",
               dict(frt_multiplier=2.5, fcr_logit_shift=-0.9,
                    attr_shift={"attr_resolution": -0.8, "attr_knowledge": -0.7, "attr_courtesy": -0.4}))

SALES_ONBOARDING_RATE = 0.30   # share of new customers answering the Sales onboarding survey
SIGMA_LOG_FRT = 0.85
SIGMA_LOG_RESOLUTION = 1.0

MISSING = dict(attr=0.07, attr_value_extra=0.06, all_attrs=0.03, csat=0.015, nps=0.18, ces=0.35)
COMMENT_RATE = dict(negative=0.60, neutral=0.35, positive=0.28)
HTML_COMMENT_RATE = 0.004


@dataclass(frozen=True)
class UnaskedTheme:
    """A problem no rating question asks about (issue 13). From ``onset`` until the day before ``end`` (None:
    until the end of the demo), each response with a comment (not one of the HTML-special ones) from the
    ``segment`` (None: every segment) mentions it with probability ``mention_rate``: a sentence of
    :data:`helpers.demo_text.UNASKED_COMMENTS` is appended to the comment, and the response's latent overall
    rating y is shifted by ``latent_shift`` (CSAT and NPS are recomputed from the shifted y with the response's
    own noise draws; the attribute ratings, CES and whether there is a comment are unchanged). All of it is
    drawn from its own stream (``default_rng([seed, chunk, VOICE_STREAM])``), so every other column of the
    demo is exactly as without these themes."""

    name: str                 # the codebook theme (params/themes.yaml) that should find it
    label: str
    onset: dt.date
    end: dt.date | None
    segment: str | None
    mention_rate: float
    latent_shift: float
    story: str


UNASKED_THEMES: tuple[UnaskedTheme, ...] = (
    UnaskedTheme("mobile_app", "Mobile app broken after an update", dt.date(2026, 1, 12), dt.date(2026, 4, 13),
                 None, 0.08, -0.9,
                 "an app release on 2026-01-12 crashed at log-in for some customers until the fix on 2026-04-13"),
    UnaskedTheme("price_increase", "Price increase for small businesses", dt.date(2025, 11, 3), None,
                 "small_business", 0.08, -0.6,
                 "the small-business subscription fee went up on 2025-11-03 and stays up"),
)
VOICE_STREAM = 13  # third entropy word of the unasked themes' random stream (chunk streams are [seed, k])


@dataclass(frozen=True)
class FollowUp:
    """How a department closes the loop with an unhappy customer (responses.followed_up_at): an unhappy answer
    (NPS 0-6 or CSAT 1, the voice report's rule) is followed up with probability ``contact_rate``, after a
    log-normal delay in hours with median ``median_hours`` and log-sd :data:`FOLLOW_UP_SIGMA`, counted from the
    start of the response day; a contact that would fall after the demo's end is not (yet) made. Other answers
    are never followed up. The true share contacted within h hours is ``contact_rate * Phi((log h - log
    median_hours) / FOLLOW_UP_SIGMA)`` (:func:`follow_up_within`)."""

    contact_rate: float
    median_hours: float


FOLLOW_UP = {  # by department slug: most unhappy customers are called back within 1-3 days, some never
    "customer_service": FollowUp(0.93, 20.0), "sales": FollowUp(0.85, 30.0), "marketing": FollowUp(0.60, 70.0),
    "delivery": FollowUp(0.75, 52.0), "billing": FollowUp(0.88, 34.0), "technical_support": FollowUp(0.80, 44.0),
}
FOLLOW_UP_SIGMA = 0.6
FOLLOW_UP_UNHAPPY = dict(nps_max=NPS_DETRACTOR_MAX, csat_max=1)  # as helpers.voice_report.contact_kpi's defaults
FOLLOW_UP_STREAM = 17  # third entropy word of the follow-up stream: default_rng([seed, chunk, 17])


def follow_up_within(department_slug: str, hours: float) -> float:
    """The true probability that an unhappy answer in ``department_slug`` is followed up within ``hours``."""
    from scipy import stats

    f = FOLLOW_UP[department_slug]
    return float(f.contact_rate * stats.norm.cdf((np.log(hours) - np.log(f.median_hours)) / FOLLOW_UP_SIGMA))


class DemoError(KitError):
    """Bad arguments for the demo generator."""


# ---------------------------------------------------------------------------------------------------
# arrow schemas of the written tables
# ---------------------------------------------------------------------------------------------------
TS = pa.timestamp("s")
SCHEMAS = {
    "customers": pa.schema([("customer_id", pa.string()), ("signup_date", pa.date32()),
                            ("end_date", pa.date32()), ("segment", pa.string()), ("region", pa.string()),
                            ("monthly_revenue", pa.float64()), ("purchases", pa.int64())]),
    "responses": pa.schema([("response_id", pa.string()), ("customer_id", pa.string()),
                            ("response_date", pa.date32()), ("department", pa.string()),
                            ("channel", pa.string()), ("csat", pa.int8()), ("nps", pa.int8()),
                            ("ces", pa.int8()), *[(a, pa.int8()) for a in ATTRIBUTES],
                            ("comment", pa.string()), ("followed_up_at", TS)]),
    "tickets": pa.schema([("ticket_id", pa.string()), ("customer_id", pa.string()),
                          ("department", pa.string()), ("team", pa.string()), ("agent_id", pa.string()),
                          ("channel", pa.string()), ("created_at", TS), ("first_response_at", TS),
                          ("resolved_at", TS), ("contacts_to_resolve", pa.int8()), ("reopened", pa.bool_())]),
    "org": pa.schema([("person_id", pa.string()), ("name", pa.string()), ("role", pa.string()),
                      ("department", pa.string()), ("team", pa.string()), ("manager_id", pa.string())]),
    "customer_truth": pa.schema([("customer_id", pa.string()), ("segment", pa.string()),
                                 ("theta", pa.float64()), ("monthly_hazard", pa.float64()),
                                 ("latent_csat", pa.float64()), ("n_responses", pa.int32()),
                                 ("mean_csat", pa.float64())]),
}
EPOCH_DAYS = (START - dt.date(1970, 1, 1)).days


# ---------------------------------------------------------------------------------------------------
# organisation
# ---------------------------------------------------------------------------------------------------
@dataclass
class Org:
    table: pa.Table
    rep_ids: np.ndarray          # object array of person ids, grouped by department
    rep_team: np.ndarray         # team name per rep
    rep_start: np.ndarray        # first rep index per department
    rep_count: np.ndarray        # reps per department
    rep_frt_mult: np.ndarray
    rep_fcr_shift: np.ndarray
    rep_attr_shift: np.ndarray   # (n_reps, N_ATTR)


def build_org(seed: int) -> Org:
    """The organisation: per department a director, one manager per team and its representatives."""
    rng = np.random.default_rng([seed, 10_000_019])
    pairs = [f"{f} {l}" for f, l in itertools.product(FIRST_NAMES, LAST_NAMES)]
    n_people = sum(1 + len(d.teams) + sum(n for _, n in d.teams) for d in DEPARTMENTS)
    names = iter(np.array(pairs, dtype=object)[rng.choice(len(pairs), size=n_people, replace=False)])
    rows = []
    rep_ids, rep_team, rep_start, rep_count, frt, fcr, attr = [], [], [], [], [], [], []
    attr_index = {a: j for j, a in enumerate(ATTRIBUTES)}
    for d in DEPARTMENTS:
        director = f"{d.slug}-dir"
        rows.append((director, next(names), "director", d.name, None, None))
        rep_start.append(len(rep_ids))
        k_rep = 0
        for k, (team, n_reps) in enumerate(d.teams, start=1):
            manager = f"{d.slug}-mgr{k}"
            rows.append((manager, next(names), "manager", d.name, team, director))
            for _ in range(n_reps):
                k_rep += 1
                pid = f"{d.slug}-rep{k_rep:03d}"
                rows.append((pid, next(names), "representative", d.name, team, manager))
                shift = np.zeros(N_ATTR)
                m_frt, s_fcr = float(np.exp(rng.normal(0, 0.12))), float(rng.normal(0, 0.12))
                for slug, who, eff in (WORSE_TEAM, WORSE_AGENT):
                    if slug == d.slug and who in (team, pid):
                        m_frt *= eff["frt_multiplier"]
                        s_fcr += eff["fcr_logit_shift"]
                        for a, v in eff["attr_shift"].items():
                            shift[attr_index[a]] += v
                rep_ids.append(pid)
                rep_team.append(team)
                frt.append(m_frt)
                fcr.append(s_fcr)
                attr.append(shift)
        rep_count.append(len(rep_ids) - rep_start[-1])
    cols = list(zip(*rows))
    table = pa.table({name: pa.array(list(col), type=SCHEMAS["org"].field(name).type)
                      for name, col in zip(SCHEMAS["org"].names, cols)}, schema=SCHEMAS["org"])
    return Org(table, np.array(rep_ids, dtype=object), np.array(rep_team, dtype=object),
               np.array(rep_start), np.array(rep_count), np.array(frt), np.array(fcr), np.array(attr))


# ---------------------------------------------------------------------------------------------------
# model curves
# ---------------------------------------------------------------------------------------------------
def _loglinear(start: float, end: float) -> np.ndarray:
    """Value per demo month moving log-linearly from ``start`` (month 0) to ``end`` (month 35)."""
    return start * (end / start) ** (np.arange(N_MONTHS) / (N_MONTHS - 1))


def _logistic_path(start: float, end: float) -> np.ndarray:
    lo, hi = special.logit(start), special.logit(end)
    return special.expit(lo + (hi - lo) * np.arange(N_MONTHS) / (N_MONTHS - 1))


def volume_intensity() -> np.ndarray:
    """(department, month) relative ticket intensity: share x growth x seasonality."""
    m = np.arange(N_MONTHS)
    out = np.array([d.volume_share * np.exp(d.volume_growth * m) for d in DEPARTMENTS])
    return out * VOLUME_SEASON[CALENDAR_MONTH - 1][None, :]


def cohort_probabilities() -> np.ndarray:
    w = np.exp(COHORT_GROWTH * np.arange(N_MONTHS)) * SIGNUP_SEASON[CALENDAR_MONTH - 1]
    return w / w.sum()


def sbg_survival(alpha: float, beta: float, t: np.ndarray) -> np.ndarray:
    """sBG survival S(t) = B(alpha, beta + t) / B(alpha, beta) (Fader & Hardie 2007, eq. 4)."""
    t = np.asarray(t, dtype=float)
    return np.exp(special.betaln(alpha, beta + t) - special.betaln(alpha, beta))


MOMENT_WIDTH = 1 + N_ATTR + N_ATTR * N_ATTR


def population_driver_covariance(moments: np.ndarray, d: int) -> np.ndarray:
    """Covariance of (A_1..A_6, y) in department ``d`` under the latent model.

    With A = s + G + u (s the customer's latent level, G the department/month/agent offsets, u ~ N(0,
    Sigma_u) independent) and y = w'A + e: Cov(A) = Var(s) 11' + Cov(G) + Sigma_u (s and G treated as
    independent), Cov(A, y) = Cov(A) w, Var(y) = w' Cov(A) w + sigma_e^2. Var(s) is pooled over all
    responses and Cov(G) is the department's own; Sigma_u, w and sigma_e are the model's constants, so
    the result hardly depends on the seed even for a small department.
    """
    n = moments[d, 0]
    mean_g = moments[d, 1:1 + N_ATTR] / n
    cov_g = moments[d, 1 + N_ATTR:].reshape(N_ATTR, N_ATTR) / n - np.outer(mean_g, mean_g)
    ns, s1, s2 = moments[-1, :3]
    var_s = s2 / ns - (s1 / ns) ** 2
    cov_u = SIGMA_U ** 2 * (RHO_U * np.ones((N_ATTR, N_ATTR)) + (1 - RHO_U) * np.eye(N_ATTR))
    cov_a = var_s * np.ones((N_ATTR, N_ATTR)) + cov_g + cov_u
    w = np.array([DEPARTMENTS[d].weights[a] for a in ATTRIBUTES])
    out = np.empty((N_ATTR + 1, N_ATTR + 1))
    out[:N_ATTR, :N_ATTR] = cov_a
    out[:N_ATTR, N_ATTR] = out[N_ATTR, :N_ATTR] = cov_a @ w
    out[N_ATTR, N_ATTR] = w @ cov_a @ w + SIGMA_E ** 2
    return out


def lmg_importance(cov: np.ndarray) -> np.ndarray:
    """Exact LMG/Shapley decomposition of R^2 of the last variable of ``cov`` on the others.

    R^2(S) = c_S' C_SS^{-1} c_S / var(y) for every subset S; the LMG share of predictor j is the average
    over orderings of the R^2 increase when j enters (Lindeman, Merenda & Gold 1980; Grömping 2006,
    J. Stat. Software 17(1)), i.e. sum over S not containing j of |S|!(p-|S|-1)!/p! [R^2(S+j) - R^2(S)].
    """
    p = cov.shape[0] - 1
    cxx, cxy, vy = cov[:p, :p], cov[:p, p], cov[p, p]
    r2 = np.zeros(1 << p)
    for mask in range(1, 1 << p):
        idx = [j for j in range(p) if mask >> j & 1]
        c = cxy[idx]
        r2[mask] = c @ np.linalg.solve(cxx[np.ix_(idx, idx)], c) / vy
    fact = [1.0]
    for k in range(1, p + 1):
        fact.append(fact[-1] * k)
    out = np.zeros(p)
    for mask in range(1 << p):
        size = bin(mask).count("1")
        for j in range(p):
            if not mask >> j & 1:
                out[j] += fact[size] * fact[p - size - 1] / fact[p] * (r2[mask | 1 << j] - r2[mask])
    return out


# ---------------------------------------------------------------------------------------------------
# helpers for vectorised arrow columns
# ---------------------------------------------------------------------------------------------------
def _ids(prefix: str, start: int, n: int, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(start, start + n, dtype=np.int64)), pa.string()),
                          width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _choice_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each i draw a category from the distribution ``probs[rows[i]]`` (vectorised)."""
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    u = rng.random(len(rows))
    return (u[:, None] > cum[rows]).sum(axis=1)


def _labels(names, codes: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """String column ``names[codes]`` built in Arrow (fast ``take``), empty where ``missing``."""
    return pa.array(list(names), type=pa.string()).take(pa.array(codes, mask=missing))


def _masked_int(values: np.ndarray, missing: np.ndarray, dtype=pa.int8()) -> pa.Array:
    return pa.array(values, type=dtype, mask=missing)


def _dates(days: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    arr = pa.array((days + EPOCH_DAYS).astype(np.int32), type=pa.int32(), mask=missing)
    return arr.cast(pa.date32())


def _timestamps(days: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    secs = np.floor(days * 86400.0).astype(np.int64) + EPOCH_DAYS * 86400
    return pa.array(secs, type=pa.int64(), mask=missing).cast(TS)


# ---------------------------------------------------------------------------------------------------
# the counterfactual company (issue 15): the same seed with satisfaction shifted from a date on
# ---------------------------------------------------------------------------------------------------
DEFAULT_SHIFT_FROM = dt.date(2025, 11, 1)  # 12 months before the end: a 12-month horizon is observed


def attribute_csat_weight(attribute: str) -> float:
    """The shift of a customer's latent satisfaction per point of ``attribute``: its true driver weight
    averaged over departments by their share of survey answers after tickets (volume share x response
    rate). Raising the attribute by d in every answer raises a department's latent overall rating by
    w_{d,a} d; the customer's satisfaction (the centre of their overall ratings) by about this average."""
    share = np.array([d.volume_share * d.response_rate for d in DEPARTMENTS])
    w = np.array([d.weights[attribute] for d in DEPARTMENTS])
    return float(share @ w / share.sum())


@dataclass(frozen=True)
class Counterfactual:
    """The demo company in which, from ``day`` (days since START) on, every customer's latent satisfaction is
    ``latent_shift`` CSAT points higher: their churn hazard from that day is multiplied by
    exp(LOG_HR * latent_shift) (the remaining lifetime of the same exponential draw is divided by it, so who
    would have stayed still stays), and every survey answer dated on or after it has its latent attributes
    raised by ``delta`` (all attributes for a satisfaction shift, which raises the latent overall rating by
    ``delta``; one ``attribute`` otherwise, which raises it by its department's weight times ``delta``).

    Nothing else changes and no random draw is added, removed or reordered: tickets, answers, purchases,
    revenue are those of the factual company (tickets and answers drawn over the factual lifetimes; a
    customer who stays longer raises no tickets in the extra months, and with a negative shift the
    tickets and answers after the earlier end are dropped)."""

    kind: str                 # "satisfaction" or "attribute"
    delta: float
    attribute: str | None
    latent_shift: float
    day: int

    @property
    def hazard_ratio(self) -> float:
        return float(np.exp(LOG_HR * self.latent_shift))

    def shift_ratings(self, A: np.ndarray, r_day: np.ndarray) -> np.ndarray:
        """Latent attribute ratings (answers x attributes) with the shift added from ``day`` on."""
        after = r_day >= self.day
        if not after.any() or self.delta == 0:
            return A
        A = A.copy()
        if self.attribute is None:
            A[after] += self.delta
        else:
            A[after, ATTRIBUTES.index(self.attribute)] += self.delta
        return A


def make_counterfactual(shift_satisfaction: float | None = None, shift_attribute: object = None,
                        shift_from: object = None) -> Counterfactual | None:
    """Validate the counterfactual options: ``shift_satisfaction`` (CSAT points, e.g. 0.3) or
    ``shift_attribute`` (``"ease=0.5"`` or ``("attr_ease", 0.5)``), from ``shift_from`` (a date; default
    2025-11-01). None when neither is given."""
    if shift_satisfaction is None and shift_attribute is None:
        if shift_from is not None:
            raise DemoError("--shift-from needs --shift-satisfaction or --shift-attribute")
        return None
    if shift_satisfaction is not None and shift_attribute is not None:
        raise DemoError("give either --shift-satisfaction or --shift-attribute, not both")
    day_date = DEFAULT_SHIFT_FROM
    if shift_from is not None:
        try:
            day_date = dt.date.fromisoformat(str(shift_from))
        except ValueError:
            raise DemoError(f"--shift-from {str(shift_from)[:40]!r} is not a date (YYYY-MM-DD)") from None
    if not START < day_date <= END:
        raise DemoError(f"--shift-from {day_date} is outside the demo period ({START} to {END}); the shift "
                        "must start after the first day")
    if shift_satisfaction is not None:
        kind, attribute, raw = "satisfaction", None, shift_satisfaction
    else:
        kind = "attribute"
        if isinstance(shift_attribute, str):
            name, sep, raw = shift_attribute.partition("=")
            if not sep:
                raise DemoError(f"--shift-attribute {shift_attribute[:40]!r} is not NAME=POINTS, e.g. ease=0.5")
        else:
            name, raw = shift_attribute
        name = str(name).strip()
        attribute = name if name.startswith("attr_") else f"attr_{name}"
        if attribute not in ATTRIBUTES:
            raise DemoError(f"--shift-attribute: unknown attribute {name[:40]!r}; the attributes are "
                            f"{', '.join(a.removeprefix('attr_') for a in ATTRIBUTES)}")
    try:
        delta = float(raw)
    except (TypeError, ValueError):
        raise DemoError(f"the shift {str(raw)[:40]!r} is not a number of points") from None
    if not np.isfinite(delta) or abs(delta) > 2:
        raise DemoError(f"the shift {delta!r} must be a number of points between -2 and 2")
    latent = delta if attribute is None else delta * attribute_csat_weight(attribute)
    return Counterfactual(kind, delta, attribute, float(latent), (day_date - START).days)


def _counterfactual_chunk(cf: Counterfactual, customers: pa.Table, tickets: pa.Table, responses: pa.Table,
                          signup: np.ndarray, tau: np.ndarray, lam: np.ndarray, revenue: np.ndarray,
                          t_owner: np.ndarray, t_day: np.ndarray, r_cust: np.ndarray, r_day: np.ndarray):
    """One chunk's counterfactual end dates (and, for a negative shift, its tickets and answers cut at the
    earlier ends), and the sums of :func:`_counterfactual_truth`: among the customers active the day before
    the shift, per month h = 1..12 after it, who is still a customer in the factual and the counterfactual
    company (realised, from the same draws) and the expected numbers given each customer's hazard, with
    their monthly revenue (before the 1% of revenues the data leave blank)."""
    t_s = np.maximum(cf.day - signup, 0) / DAYS_PER_MONTH  # months from signup to the shift
    shifted = tau >= t_s                                   # still a customer on the shift day
    tau_cf = np.where(shifted, t_s + (tau - t_s) / cf.hazard_ratio, tau)
    end_f = signup + np.floor(np.minimum(tau, 1e4) * DAYS_PER_MONTH).astype(np.int64)
    end_cf = signup + np.floor(np.minimum(tau_cf, 1e4) * DAYS_PER_MONTH).astype(np.int64)
    churned_cf = end_cf < END_DAY
    stop_cf = np.where(churned_cf, end_cf + 1, END_DAY)
    i_end = customers.schema.get_field_index("end_date")
    customers = customers.set_column(i_end, customers.schema.field(i_end), _dates(end_cf, ~churned_cf))
    keep_t, keep_r = t_day < stop_cf[t_owner], r_day < stop_cf[r_cust]
    if not keep_t.all():
        tickets = tickets.filter(pa.array(keep_t))
    if not keep_r.all():
        responses = responses.filter(pa.array(keep_r))
    active = (signup < cf.day) & shifted
    h = np.arange(1, 13)
    thresholds = cf.day - 1 + h * DAYS_PER_MONTH          # kept after h months of the as-of date
    months = np.floor(h * DAYS_PER_MONTH) / DAYS_PER_MONTH  # the exact remaining time needed (day floors)
    m, lam_a = revenue[active], lam[active]
    kept_f = end_f[active][:, None] > thresholds[None, :]
    kept_cf = end_cf[active][:, None] > thresholds[None, :]
    p_f = np.exp(-np.outer(lam_a, months))
    p_cf = np.exp(-np.outer(lam_a * cf.hazard_ratio, months))
    sums = np.vstack([kept_f.sum(axis=0), kept_cf.sum(axis=0), m @ kept_f, m @ kept_cf,
                      p_f.sum(axis=0), p_cf.sum(axis=0), m @ p_f, m @ p_cf])
    return (customers, tickets, responses), {"n_active": int(active.sum()), "sums": sums}


def _counterfactual_truth(cf: Counterfactual, n_active: int, sums: np.ndarray,
                          annual_discount_rate: float = 0.10) -> dict:
    """The ``counterfactual`` section of ground_truth.json (see :class:`Counterfactual`)."""
    names = ("kept_factual", "kept_counterfactual", "revenue_factual", "revenue_counterfactual",
             "expected_kept_factual", "expected_kept_counterfactual", "expected_revenue_factual",
             "expected_revenue_counterfactual")
    by_month = {name: np.round(row, 4).tolist() for name, row in zip(names, sums)}
    disc = (1 + annual_discount_rate) ** (-np.arange(1, 13) / 12)
    as_of = START + dt.timedelta(days=cf.day - 1)
    end_12 = as_of + dt.timedelta(days=365)
    return {
        "kind": cf.kind, "attribute": cf.attribute, "delta": cf.delta,
        "attribute_csat_weight": (attribute_csat_weight(cf.attribute) if cf.attribute else None),
        "latent_csat_shift": cf.latent_shift, "hazard_ratio_of_shift": cf.hazard_ratio,
        "shift_from": (START + dt.timedelta(days=cf.day)).isoformat(), "as_of": as_of.isoformat(),
        "model": ("from shift_from on, every customer's latent satisfaction is latent_csat_shift higher: the "
                  "churn hazard is multiplied by hazard_ratio_of_shift (the remaining lifetime of the same "
                  "exponential draw divided by it) and the latent attributes of every answer dated on or after "
                  "shift_from are raised by delta (all attributes for kind 'satisfaction'; the one attribute "
                  "otherwise, whose latent_csat_shift = delta x attribute_csat_weight, its driver weight "
                  "averaged over departments by answer volume). Every random draw is the factual company's: "
                  "tickets, answers, purchases and revenue are unchanged (drawn over the factual lifetimes)."),
        "customers_active_at_as_of": n_active,
        "by_month": {"months_after_as_of": list(range(1, 13)), **by_month,
                     "definition": ("customers active on as_of still customers h months later (end_date > "
                                    "as_of + h x 30.4375 days), and the sum of their monthly_revenue (true "
                                    "values, including the 1% left blank in the data); expected_*: given each "
                                    "customer's true hazard")},
        "horizon_12_months": {
            "observed_in_data": end_12 <= END,
            "annual_discount_rate": annual_discount_rate,
            "realised_extra_kept": float(sums[1, -1] - sums[0, -1]),
            "expected_extra_kept": float(sums[5, -1] - sums[4, -1]),
            "realised_extra_revenue": float((sums[3] - sums[2]) @ disc),
            "expected_extra_revenue": float((sums[7] - sums[6]) @ disc),
            "revenue_definition": "monthly revenue received at the end of each month a customer is still "
                                  "there, discounted at annual_discount_rate (as helpers.impact.what_if)",
        },
    }


# ---------------------------------------------------------------------------------------------------
# one chunk of customers and everything they did
# ---------------------------------------------------------------------------------------------------
@dataclass
class ChunkStats:
    n_responses: int
    n_tickets: int
    latent_moments: np.ndarray   # see _generate_chunk: per department n, sum G, sum G G'; last row s
    unasked: dict | None = None  # per unasked theme: effect sums and the affected rows (see _unasked_themes)
    counterfactual: dict | None = None  # issue 15: see _counterfactual_chunk


def _generate_chunk(seed: int, k: int, first: int, n: int, org: Org, offsets: tuple[int, int],
                    comments: pa.Array, counterfactual: Counterfactual | None = None) -> tuple[dict[str, pa.Table], ChunkStats]:
    rng = np.random.default_rng([seed, k])
    seg_names = tuple(SEGMENTS)
    seg_par = {key: np.array([SEGMENTS[s][key] for s in seg_names]) for key in
               ("share", "alpha", "beta", "ticket_rate", "purchase_rate")}

    # --- customers -------------------------------------------------------------------------------
    seg = rng.choice(len(seg_names), size=n, p=seg_par["share"] / seg_par["share"].sum())
    cohort = rng.choice(N_MONTHS, size=n, p=cohort_probabilities())
    month_len = np.diff(MONTH_START_DAYS)
    signup = MONTH_START_DAYS[cohort] + np.floor(rng.random(n) * month_len[cohort]).astype(np.int64)
    theta = rng.beta(seg_par["alpha"][seg], seg_par["beta"][seg])
    lam = -np.log1p(-theta)
    tau = rng.exponential(1.0, n) / lam                      # lifetime in months
    life_days = np.floor(np.minimum(tau, 1e4) * DAYS_PER_MONTH).astype(np.int64)
    end_day = signup + life_days
    churned = end_day < END_DAY
    stop = np.where(churned, end_day + 1, END_DAY).astype(float)  # active window [signup, stop)
    latent = (BASELINE_LOG_HAZARD - np.log(lam)) / -LOG_HR
    active_months = (stop - signup) / DAYS_PER_MONTH
    region = rng.choice(len(REGIONS), size=n, p=REGION_SHARES)
    rev_med = np.array([SEGMENTS[s]["revenue"][0] for s in seg_names])[seg]
    rev_sd = np.array([SEGMENTS[s]["revenue"][1] for s in seg_names])[seg]
    revenue = np.round(rev_med * np.exp(rev_sd * rng.standard_normal(n)), 2)
    purchases = rng.poisson(seg_par["purchase_rate"][seg] * np.maximum(active_months, 0.2))
    customer_ids = _ids("C", first + 1, n, 7)
    region_arr = _labels(REGIONS, region, rng.random(n) < 0.02)
    customers = pa.table([customer_ids, _dates(signup), _dates(end_day, ~churned),
                          _labels(seg_names, seg), region_arr,
                          pa.array(revenue, mask=rng.random(n) < 0.01), pa.array(purchases, type=pa.int64())],
                         schema=SCHEMAS["customers"])

    # --- tickets (thinned Poisson process over the active window) ---------------------------------
    intensity = volume_intensity()
    imax = intensity.sum(axis=0).max()
    n_cand = rng.poisson(seg_par["ticket_rate"][seg] * active_months * imax / intensity[:, 0].sum())
    owner = np.repeat(np.arange(n), n_cand)
    t = signup[owner] + rng.random(len(owner)) * (stop[owner] - signup[owner])
    month = np.clip(np.searchsorted(MONTH_START_DAYS, t, side="right") - 1, 0, N_MONTHS - 1)
    dept = _choice_rows(rng, (intensity / intensity.sum(axis=0))[:, :].T, month)
    keep = rng.random(len(owner)) < intensity.sum(axis=0)[month] / imax
    order = np.lexsort((t[keep], owner[keep]))
    owner, t, month, dept = (x[keep][order] for x in (owner, t, month, dept))
    nt = len(owner)
    rep = org.rep_start[dept] + np.floor(rng.random(nt) * org.rep_count[dept]).astype(np.int64)
    chan_probs = np.array([d.channels for d in DEPARTMENTS])
    channel = _choice_rows(rng, chan_probs, dept)
    frt_med = np.array([_loglinear(*d.frt_hours) for d in DEPARTMENTS])
    res_med = np.array([_loglinear(*d.resolution_hours) for d in DEPARTMENTS])
    fcr_p = np.array([_logistic_path(*d.fcr) for d in DEPARTMENTS])
    frt_h = (frt_med[dept, month] * FRT_SEASON[CALENDAR_MONTH[month] - 1] * org.rep_frt_mult[rep]
             * np.exp(SIGMA_LOG_FRT * rng.standard_normal(nt)))
    p_fcr = special.expit(special.logit(fcr_p[dept, month]) + org.rep_fcr_shift[rep])
    fcr = rng.random(nt) < p_fcr
    contacts = np.where(fcr, 1, 2 + rng.poisson(0.6, nt))
    res_h = res_med[dept, month] * contacts ** 0.8 * np.exp(SIGMA_LOG_RESOLUTION * rng.standard_normal(nt))
    first_resp = t + frt_h / 24.0
    resolved = first_resp + res_h / 24.0
    no_first = first_resp >= END_DAY
    unresolved = resolved >= END_DAY
    reopened = rng.random(nt) < np.where(contacts > 1, 0.10, 0.03)
    ticket_id0, response_id0 = offsets
    tickets = pa.table([
        _ids("T", ticket_id0 + 1, nt, 8), customer_ids.take(pa.array(owner)),
        _labels(DEPARTMENT_NAMES, dept),
        _labels(org.rep_team, rep), _labels(org.rep_ids, rep),
        _labels(CHANNELS, channel),
        _timestamps(t), _timestamps(np.minimum(first_resp, END_DAY), no_first),
        _timestamps(np.minimum(resolved, END_DAY), unresolved),
        _masked_int(contacts, unresolved), pa.array(reopened, mask=unresolved)],
        schema=SCHEMAS["tickets"])

    # --- survey responses: after resolved tickets, and Sales onboarding surveys -------------------
    resp_rate = np.array([d.response_rate for d in DEPARTMENTS])
    r_tk = np.flatnonzero(~unresolved & (rng.random(nt) < resp_rate[dept]))
    r_day_tk = np.floor(resolved[r_tk] + rng.exponential(1.5, len(r_tk)))
    onboard = np.flatnonzero(rng.random(n) < SALES_ONBOARDING_RATE)
    r_day_on = np.floor(signup[onboard] + rng.exponential(7.0, len(onboard)))
    sales = DEPARTMENT_SLUGS.index("sales")
    r_cust = np.concatenate([owner[r_tk], onboard])
    r_day = np.concatenate([r_day_tk, r_day_on])
    r_dept = np.concatenate([dept[r_tk], np.full(len(onboard), sales)])
    r_rep = np.concatenate([rep[r_tk], np.full(len(onboard), -1)])
    r_chan = np.concatenate([channel[r_tk], np.where(rng.random(len(onboard)) < 0.5, 1, 3)])
    ok = (r_day < END_DAY) & (r_day < stop[r_cust])
    order = np.lexsort((r_day[ok], r_cust[ok]))
    r_cust, r_day, r_dept, r_rep, r_chan = (x[ok][order] for x in (r_cust, r_day, r_dept, r_rep, r_chan))
    nr = len(r_cust)
    r_month = np.clip(np.searchsorted(MONTH_START_DAYS, r_day, side="right") - 1, 0, N_MONTHS - 1)

    offset0 = np.array([[d.attr_offset[a] for a in ATTRIBUTES] for d in DEPARTMENTS])
    trend = np.array([[d.attr_trend[a] for a in ATTRIBUTES] for d in DEPARTMENTS])
    weights = np.array([[d.weights[a] for a in ATTRIBUTES] for d in DEPARTMENTS])
    cov_u = SIGMA_U ** 2 * (RHO_U * np.ones((N_ATTR, N_ATTR)) + (1 - RHO_U) * np.eye(N_ATTR))
    u = rng.standard_normal((nr, N_ATTR)) @ np.linalg.cholesky(cov_u).T
    agent_shift = np.where(r_rep[:, None] >= 0, org.rep_attr_shift[np.maximum(r_rep, 0)], 0.0)
    A = latent[r_cust][:, None] + offset0[r_dept] + trend[r_dept] * r_month[:, None] + agent_shift + u
    if counterfactual is not None:  # issue 15: answers from the shift day on (adds no draw)
        A = counterfactual.shift_ratings(A, r_day)
    y = (A * weights[r_dept]).sum(axis=1) + SIGMA_E * rng.standard_normal(nr)
    csat = np.clip(np.rint(y), 1, 5).astype(np.int8)
    attrs = np.clip(np.rint(A), 1, 5).astype(np.int8)
    nps_noise = rng.standard_normal(nr)
    nps = np.clip(np.rint(2.3 * y - 2.0 + 1.1 * nps_noise), 0, 10).astype(np.int8)
    ease = ATTRIBUTES.index("attr_ease")
    ces = np.clip(np.rint(7.6 - 1.25 * A[:, ease] + 0.8 * rng.standard_normal(nr)), 1, 7).astype(np.int8)

    miss_attr = rng.random((nr, N_ATTR)) < MISSING["attr"]
    miss_attr[:, ATTRIBUTES.index("attr_value")] |= rng.random(nr) < MISSING["attr_value_extra"]
    miss_attr |= (rng.random(nr) < MISSING["all_attrs"])[:, None]
    miss_csat = rng.random(nr) < MISSING["csat"]
    miss_nps = rng.random(nr) < MISSING["nps"]
    miss_ces = rng.random(nr) < MISSING["ces"]

    # comments: tone from CSAT, topic from the attribute furthest from the customer's own level
    tone = np.where(miss_csat, 1, np.where(csat <= 2, 0, np.where(csat == 3, 1, 2)))
    dev = u + agent_shift
    topic = np.where(tone == 2, dev.argmax(axis=1), dev.argmin(axis=1))
    n_var = 4
    idx = ((tone * N_ATTR + topic) * len(DEPARTMENTS) + r_dept) * n_var + rng.integers(0, n_var, nr)
    html = rng.random(nr) < HTML_COMMENT_RATE
    n_base = len(comments) - len(HTML_SPECIAL_COMMENTS)
    idx = np.where(html, n_base + rng.integers(0, len(HTML_SPECIAL_COMMENTS), nr), idx)
    rate = np.array([COMMENT_RATE["negative"], COMMENT_RATE["neutral"], COMMENT_RATE["positive"]])
    has_comment = html | (rng.random(nr) < rate[tone])
    comment = comments.take(pa.array(idx, mask=~has_comment))
    csat, nps, comment, unasked = _unasked_themes(seed, k, r_day, seg[r_cust], seg_names, has_comment & ~html,
                                                  y, nps_noise, csat, nps, comment, attrs,
                                                  miss_csat, miss_nps, miss_attr)

    followed_up = _follow_up(seed, k, r_dept, r_day, csat, nps, miss_csat, miss_nps)

    responses = pa.table([
        _ids("R", response_id0 + 1, nr, 8), customer_ids.take(pa.array(r_cust)), _dates(r_day),
        _labels(DEPARTMENT_NAMES, r_dept),
        _labels(CHANNELS, r_chan),
        _masked_int(csat, miss_csat), _masked_int(nps, miss_nps), _masked_int(ces, miss_ces),
        *[_masked_int(attrs[:, j], miss_attr[:, j]) for j in range(N_ATTR)], comment,
        _timestamps(np.nan_to_num(followed_up, nan=0.0), np.isnan(followed_up))],
        schema=SCHEMAS["responses"])

    # --- per-customer truth and latent moments for the drivers' ground truth ----------------------
    n_resp = np.bincount(r_cust[~miss_csat], minlength=n)
    sum_csat = np.bincount(r_cust[~miss_csat], weights=csat[~miss_csat].astype(float), minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_csat = np.where(n_resp > 0, sum_csat / np.maximum(n_resp, 1), np.nan)
    truth = pa.table([customer_ids, _labels(seg_names, seg),
                      pa.array(theta), pa.array(lam), pa.array(latent), pa.array(n_resp.astype(np.int32)),
                      pa.array(mean_csat, mask=n_resp == 0)], schema=SCHEMAS["customer_truth"])
    # moments of the department/month/agent part G of the latent attributes (per department) and of
    # the customers' latent satisfaction over all responses (pooled); see population_driver_covariance
    G = offset0[r_dept] + trend[r_dept] * r_month[:, None] + agent_shift
    moments = np.zeros((len(DEPARTMENTS) + 1, MOMENT_WIDTH))
    for d in range(len(DEPARTMENTS)):
        gd = G[r_dept == d]
        moments[d, 0] = len(gd)
        moments[d, 1:1 + N_ATTR] = gd.sum(axis=0)
        moments[d, 1 + N_ATTR:] = (gd.T @ gd).ravel()
    s_resp = latent[r_cust]
    moments[-1, :3] = (nr, s_resp.sum(), (s_resp ** 2).sum())
    cf_stats = None
    if counterfactual is not None:  # issue 15: the counterfactual end dates, from the same draws
        (customers, tickets, responses), cf_stats = _counterfactual_chunk(
            counterfactual, customers, tickets, responses, signup, tau, lam, revenue, owner, t, r_cust, r_day)
    return ({"customers": customers, "tickets": tickets, "responses": responses, "customer_truth": truth},
            ChunkStats(nr, nt, moments, unasked, counterfactual=cf_stats))


def _follow_up(seed, k, r_dept, r_day, csat, nps, miss_csat, miss_nps) -> np.ndarray:
    """Days since START at which each answer was followed up (NaN: never), by :data:`FOLLOW_UP` from its own
    stream ``default_rng([seed, k, FOLLOW_UP_STREAM])`` (two draws per answer, whoever is unhappy, so no other
    column moves and a counterfactual shift changes only who is unhappy)."""
    frng = np.random.default_rng([seed, k, FOLLOW_UP_STREAM])
    nr = len(r_day)
    u, z = frng.random(nr), frng.standard_normal(nr)
    rate = np.array([FOLLOW_UP[d.slug].contact_rate for d in DEPARTMENTS])[r_dept]
    median = np.array([FOLLOW_UP[d.slug].median_hours for d in DEPARTMENTS])[r_dept]
    unhappy = ((~miss_nps & (nps <= FOLLOW_UP_UNHAPPY["nps_max"]))
               | (~miss_csat & (csat <= FOLLOW_UP_UNHAPPY["csat_max"])))
    when = r_day + median * np.exp(FOLLOW_UP_SIGMA * z) / 24.0
    return np.where(unhappy & (u < rate) & (when < END_DAY), when, np.nan)


def _follow_up_truth() -> dict:
    """The ``follow_up`` section of ground_truth.json (see :class:`FollowUp`)."""
    return {
        "column": "responses.followed_up_at",
        "unhappy_rule": f"NPS 0-{FOLLOW_UP_UNHAPPY['nps_max']} or CSAT <= {FOLLOW_UP_UNHAPPY['csat_max']} (answered)",
        "model": ("an unhappy answer is followed up with probability contact_rate, after a log-normal delay "
                  "(median_hours, log-sd delay_log_sd) from the start of the response day; contacts after the "
                  "demo's end are not made (empty); other answers are never followed up"),
        "delay_log_sd": FOLLOW_UP_SIGMA,
        "by_department": {d.name: {"contact_rate": FOLLOW_UP[d.slug].contact_rate,
                                   "median_hours": FOLLOW_UP[d.slug].median_hours,
                                   "within_hours": {str(h): round(follow_up_within(d.slug, h), 6)
                                                    for h in (24, 48, 72)}}
                          for d in DEPARTMENTS},
    }


def _unasked_themes(seed, k, r_day, r_seg, seg_names, can_mention, y, nps_noise, csat, nps, comment, attrs,
                    miss_csat, miss_nps, miss_attr):
    """Apply :data:`UNASKED_THEMES` to one chunk's responses; returns the new csat, nps, comment and, per theme,
    what the ground truth needs: the affected rows' CSAT/NPS before and after and their attribute ratings."""
    vrng = np.random.default_rng([seed, k, VOICE_STREAM])
    nr = len(y)
    taken = np.zeros(nr, dtype=bool)
    shift = np.zeros(nr)
    texts, text_idx = [], np.full(nr, -1)
    out = {}
    for th in UNASKED_THEMES:
        u, variant = vrng.random(nr), vrng.integers(0, len(UNASKED_COMMENTS[th.name]), nr)
        on = (th.onset - START).days
        off = (th.end - START).days if th.end is not None else END_DAY
        eligible = can_mention & ~taken & (r_day >= on) & (r_day < off)
        if th.segment is not None:
            eligible &= r_seg == seg_names.index(th.segment)
        hit = eligible & (u < th.mention_rate)
        taken |= hit
        shift[hit] = th.latent_shift
        text_idx[hit] = len(texts) + variant[hit]
        texts.extend(UNASKED_COMMENTS[th.name])
        out[th.name] = hit
    y_new = y + shift
    csat_new = np.clip(np.rint(y_new), 1, 5).astype(np.int8)
    nps_new = np.clip(np.rint(2.3 * y_new - 2.0 + 1.1 * nps_noise), 0, 10).astype(np.int8)
    extra = pa.array(texts, type=pa.string()).take(pa.array(np.maximum(text_idx, 0), mask=text_idx < 0))
    joined = pc.binary_join_element_wise(comment, extra, " ")
    comment = pc.coalesce(joined, comment)
    stats = {}
    for name, hit in out.items():
        # background: comments that mention the subject without the problem (same scores with and without)
        bg = pc.is_in(comment, value_set=pa.array(list(UNASKED_BACKGROUND.get(name, ())), type=pa.string()))
        bg = np.asarray(bg.fill_null(False)) & ~hit
        rows = hit | bg
        c_ok, n_ok = rows & ~miss_csat, rows & ~miss_nps
        complete = n_ok & ~miss_attr.any(axis=1)
        stats[name] = {"n_mentions": int(hit.sum()), "n_background": int(bg.sum()),
                       "csat_affected": hit[c_ok], "csat_before": csat[c_ok].astype(float),
                       "csat_after": csat_new[c_ok].astype(float),
                       "nps_affected": hit[n_ok], "nps_before": nps[n_ok].astype(float),
                       "nps_after": nps_new[n_ok].astype(float),
                       "logit_affected": hit[complete], "logit_x": attrs[complete].astype(float),
                       "det_before": nps[complete] <= 6, "det_after": nps_new[complete] <= 6}
    return csat_new, nps_new, comment, stats


# ---------------------------------------------------------------------------------------------------
# ground truth
# ---------------------------------------------------------------------------------------------------
def _kpi_trends() -> dict:
    out = {}
    intensity = volume_intensity()
    for i, d in enumerate(DEPARTMENTS):
        def direction(start, end, higher_is_better, tol=0.03):
            rel = (end - start) / abs(start) if start else 0.0
            if abs(rel) < tol:
                return "flat"
            return "improving" if (rel > 0) == higher_is_better else "deteriorating"
        csat_shift = sum(d.weights[a] * d.attr_trend[a] for a in ATTRIBUTES)
        out[d.name] = {
            "ticket_volume": {
                "share_at_start": d.volume_share, "log_growth_per_month": d.volume_growth,
                "seasonality_by_calendar_month": dict(zip(range(1, 13), VOLUME_SEASON.tolist())),
                "relative_intensity_by_month": (intensity[i] / intensity[i, 0]).round(4).tolist(),
            },
            "first_response_hours": {
                "distribution": "lognormal", "sigma_log": SIGMA_LOG_FRT,
                "median_start": d.frt_hours[0], "median_end": d.frt_hours[1],
                "log_slope_per_month": float(np.log(d.frt_hours[1] / d.frt_hours[0]) / (N_MONTHS - 1)),
                "seasonality_by_calendar_month": dict(zip(range(1, 13), FRT_SEASON.tolist())),
                "mean_over_median": float(np.exp(SIGMA_LOG_FRT ** 2 / 2)),
                "direction": direction(d.frt_hours[0], d.frt_hours[1], higher_is_better=False),
                "note": "medians before the seasonal factor and the representatives' multipliers "
                        "(log-normal, sd 0.12; see 'notable' for the worse team and agent)",
            },
            "resolution_hours": {
                "distribution": "lognormal (hours from first response to resolution, times contacts^0.8)",
                "sigma_log": SIGMA_LOG_RESOLUTION,
                "median_start": d.resolution_hours[0], "median_end": d.resolution_hours[1],
                "direction": direction(*d.resolution_hours, higher_is_better=False),
            },
            "fcr": {"model": "logistic in month", "start": d.fcr[0], "end": d.fcr[1],
                    "direction": direction(*d.fcr, higher_is_better=True, tol=0.01)},
            "csat": {"latent_shift_per_month": float(csat_shift),
                     "latent_shift_over_period": float(csat_shift * (N_MONTHS - 1)),
                     "direction": ("flat" if abs(csat_shift * (N_MONTHS - 1)) < 0.05 else
                                   "improving" if csat_shift > 0 else "deteriorating")},
            "nps": {"model": "nps = round(2.3 * y - 2.0 + N(0, 1.1^2)) clipped to 0..10, y = the response's "
                             "latent overall rating (csat = round(y) clipped to 1..5)",
                    "direction": ("flat" if abs(csat_shift * (N_MONTHS - 1)) < 0.05 else
                                  "improving" if csat_shift > 0 else "deteriorating")},
            "response_rate": d.response_rate,
        }
    return out


def _ground_truth(n_customers: int, seed: int, moments: np.ndarray, counts: dict, proxy: dict) -> dict:
    drivers = {}
    for i, d in enumerate(DEPARTMENTS):
        n = moments[i, 0]
        entry = {"weights": dict(d.weights),
                 "ranking": sorted(ATTRIBUTES, key=lambda a: -d.weights[a]),
                 "ranking_source": "weights (department has no responses)"}
        if n > N_ATTR + 2:
            lmg = lmg_importance(population_driver_covariance(moments, i))
            entry.update({
                "relative_importance": dict(zip(ATTRIBUTES, (lmg / lmg.sum()).round(6).tolist())),
                "lmg_r2": dict(zip(ATTRIBUTES, lmg.round(6).tolist())),
                "latent_r2": round(float(lmg.sum()), 6),
                "ranking": [ATTRIBUTES[j] for j in np.argsort(-lmg, kind="stable")],
                "ranking_source": "population LMG/Shapley shares of the latent model (exact, from its "
                                  "covariance; observed integer ratings shift shares by ~0.01-0.03)",
                "n_responses": int(n),
            })
        drivers[d.name] = entry
    return {
        "seed": seed, "n_customers": n_customers, "start": START.isoformat(), "end": END.isoformat(),
        "departments": list(DEPARTMENT_NAMES),
        "department_slugs": dict(zip(DEPARTMENT_NAMES, DEPARTMENT_SLUGS)),
        "segments": {s: {"share": p["share"]} for s, p in SEGMENTS.items()},
        "counts": counts,
        "drivers": {
            "outcome": "csat", "attributes": list(ATTRIBUTES),
            "model": ("latent y = sum_j w_j * A_j + N(0, %.2f^2); A_j = s_customer + dept offset(month) + "
                      "agent effect + N(0, Sigma_u); observed = round/clip to 1..5; weights sum to 1" % SIGMA_E),
            "by_department": drivers,
        },
        "churn": {
            "period": "month", "days_per_period": DAYS_PER_MONTH,
            "tenure_definition": "(end_date - signup_date) in days / 30.4375; end_date empty = censored "
                                 "at " + END.isoformat(),
            "sbg": {s: {"alpha": p["alpha"], "beta": p["beta"]} for s, p in SEGMENTS.items()},
            "hazard_ratio_per_csat_point": float(np.exp(LOG_HR)),
            "log_hazard_ratio_per_csat_point": LOG_HR,
            "baseline_log_hazard_per_month": BASELINE_LOG_HAZARD,
            "covariate": ("latent_csat in customer_truth.parquet: the customer's latent satisfaction on the "
                          "CSAT scale (centre of their latent overall rating); continuous-time hazard per "
                          "month = exp(%.2f + %.2f * latent_csat) exactly, no other covariate, no frailty"
                          % (BASELINE_LOG_HAZARD, LOG_HR)),
            "customer_truth_file": "customer_truth.parquet",
            "observable_proxy": proxy,
        },
        "kpi_trends": _kpi_trends(),
        "notable": {
            "small_department": "Marketing",
            "worse_team": {"department": "Delivery", "team": WORSE_TEAM[1], **WORSE_TEAM[2]},
            "worse_agent": {"department": "Technical Support", "person_id": WORSE_AGENT[1], **WORSE_AGENT[2]},
        },
    }


def _adjusted_odds_ratio(X: np.ndarray, before: np.ndarray, after: np.ndarray) -> float | None:
    """Conditional odds ratio of being a detractor with vs without the problem, adjusted for the ratings ``X``:
    a logistic regression (statsmodels) of the stacked outcomes (without: flag 0, with: flag 1) on the flag and
    ``X``. None when there are too few rows to fit it."""
    import statsmodels.api as sm

    if len(before) < 30 or not 0 < before.sum() + after.sum() < 2 * len(before):
        return None
    flag = np.r_[np.zeros(len(before)), np.ones(len(after))]
    design = sm.add_constant(np.column_stack([flag, np.vstack([X, X])]))
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.Logit(np.r_[before, after].astype(float), design).fit(disp=0, maxiter=200)
    except (np.linalg.LinAlgError, ValueError):  # pragma: no cover - tiny demos
        return None
    return round(float(np.exp(fit.params[1])), 4)


def _unasked_truth(parts: dict[str, list]) -> dict:
    """The ground truth of :data:`UNASKED_THEMES`: parameters and the realised effects.

    Both outcomes of every affected response are drawn (without and with the problem), so its effects are known
    exactly: ``csat_mean_change`` is the mean of (CSAT with - CSAT without) over the affected responses with an
    answered CSAT, ``nps_mean_change`` the same for NPS, and the detractor shares before/after.
    ``detractor_odds_ratio_adjusted`` is the conditional odds ratio of being a detractor with vs without the
    problem adjusted for the observed attribute ratings (:func:`_adjusted_odds_ratio`; the odds ratio is not
    collapsible, so the adjusted one is the one a model with the ratings estimates).

    ``per_mention``: the same over every response whose comment mentions the subject, i.e. the affected ones
    plus the background (:data:`helpers.demo_text.UNASKED_BACKGROUND`, comments that mention the app or the
    price without the problem and so have the same scores with and without): what a codebook theme, which finds
    both, measures.
    """
    out = {}
    for th in UNASKED_THEMES:
        chunks = parts.get(th.name, [])

        def cat(key, chunks=chunks):
            return np.concatenate([c[key] for c in chunks]) if chunks else np.zeros(0)

        def effect(c_sel, n_sel, l_sel):
            cb, ca = cat("csat_before")[c_sel], cat("csat_after")[c_sel]
            nb, na = cat("nps_before")[n_sel], cat("nps_after")[n_sel]
            X = (np.concatenate([c["logit_x"] for c in chunks]) if chunks else np.zeros((0, N_ATTR)))[l_sel]
            db, da = cat("det_before")[l_sel].astype(bool), cat("det_after")[l_sel].astype(bool)

            def mean(x):
                return round(float(np.mean(x)), 4) if len(x) else None

            return {"csat_mean_change": mean(ca - cb), "n_csat": int(len(cb)),
                    "csat_top2_before": mean(cb >= 4), "csat_top2_after": mean(ca >= 4),
                    "nps_mean_change": mean(na - nb), "n_nps": int(len(nb)),
                    "detractor_share_before": mean(nb <= 6), "detractor_share_after": mean(na <= 6),
                    "detractor_odds_ratio_adjusted": _adjusted_odds_ratio(X, db, da), "n_odds": int(len(db))}

        ca, na, la = (cat(k).astype(bool) for k in ("csat_affected", "nps_affected", "logit_affected"))
        out[th.name] = {
            "label": th.label, "codebook_theme": th.name, "asked_by_a_rating_question": False,
            "story": th.story, "onset": th.onset.isoformat(),
            "end": (th.end - dt.timedelta(days=1)).isoformat() if th.end else None,
            "onset_month": th.onset.strftime("%Y-%m"),
            "end_month": (th.end - dt.timedelta(days=1)).strftime("%Y-%m") if th.end else None,
            "segment": th.segment, "departments": "all",
            "mention_rate": th.mention_rate,
            "mention_rule": ("each response with a comment in the window (and segment) mentions it with this "
                             "probability; the sentence is appended to the comment it already had"),
            "latent_shift": th.latent_shift,
            "n_mentions": int(sum(c["n_mentions"] for c in chunks)),
            "n_background_mentions": int(sum(c["n_background"] for c in chunks)),
            "background_comments": list(UNASKED_BACKGROUND.get(th.name, ())),
            "effect": {"population": "responses affected by the problem (all mention it in their comment)",
                       **effect(ca, na, la)},
            "per_mention": {"population": "every response whose comment mentions the subject (affected plus "
                                          "background); what a codebook theme measures",
                            **effect(np.ones(len(ca), bool), np.ones(len(na), bool), np.ones(len(la), bool))},
        }
    return out


def generate_demo(out: str | os.PathLike[str], n_customers: int = 20_000, seed: int = 42, *,
                  shift_satisfaction: float | None = None, shift_attribute: object = None,
                  shift_from: object = None) -> Path:
    """Generate the demo data set into ``out``; return the path of ``ground_truth.json``.

    ``shift_satisfaction`` (CSAT points) or ``shift_attribute`` (``"ease=0.5"``) from ``shift_from`` (default
    2025-11-01): the counterfactual company of the same seed (:class:`Counterfactual`; its effects are in
    ground_truth.json under ``counterfactual``). Without them the output is exactly the factual company."""
    if int(n_customers) != n_customers or n_customers < 1:
        raise DemoError(f"--customers must be a positive integer, got {n_customers!r}")
    if int(seed) != seed or seed < 0:
        raise DemoError(f"--seed must be a non-negative integer, got {seed!r}")
    counterfactual = make_counterfactual(shift_satisfaction, shift_attribute, shift_from)
    cf_active, cf_sums = 0, np.zeros((8, 12))
    n_customers, seed = int(n_customers), int(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    org = build_org(seed)
    comments = pa.array(comment_catalogue(DEPARTMENT_SLUGS, STANDARD_ATTRIBUTES) + list(HTML_SPECIAL_COMMENTS),
                        type=pa.string())
    names = ("customers", "responses", "tickets", "customer_truth")
    tmp = {t: out / f".{t}.parquet.tmp" for t in names}
    writers = {t: pq.ParquetWriter(tmp[t], SCHEMAS[t]) for t in names}
    moments = np.zeros((len(DEPARTMENTS) + 1, MOMENT_WIDTH))
    n_resp = n_tick = 0
    # regression-dilution bookkeeping for the observable proxy (customers with >= 1 answered CSAT)
    proxy_sums = np.zeros(6)  # n, sum s, sum s^2, sum m, sum m^2, sum s*m
    unasked: dict[str, list] = {th.name: [] for th in UNASKED_THEMES}
    try:
        for k, first in enumerate(range(0, n_customers, CHUNK_SIZE)):
            n = min(CHUNK_SIZE, n_customers - first)
            tables, stats = _generate_chunk(seed, k, first, n, org, (n_tick, n_resp), comments,
                                            counterfactual=counterfactual)
            if stats.counterfactual is not None:
                cf_active += stats.counterfactual["n_active"]
                cf_sums += stats.counterfactual["sums"]
            for t in names:
                writers[t].write_table(tables[t])
            moments += stats.latent_moments
            for name, part in (stats.unasked or {}).items():
                unasked[name].append(part)
            n_resp += stats.n_responses
            n_tick += stats.n_tickets
            tr = tables["customer_truth"]
            m = tr["mean_csat"].to_numpy(zero_copy_only=False)
            s = tr["latent_csat"].to_numpy()
            ok = ~np.isnan(m)
            s, m = s[ok], m[ok]
            proxy_sums += [len(s), s.sum(), (s * s).sum(), m.sum(), (m * m).sum(), (s * m).sum()]
    finally:
        for w in writers.values():
            w.close()
    for t in names:
        os.replace(tmp[t], out / f"{t}.parquet")
    pq.write_table(org.table, out / "org.parquet")

    n_, s1, s2, m1, m2, sm = proxy_sums
    var_s, var_m = s2 / n_ - (s1 / n_) ** 2, m2 / n_ - (m1 / n_) ** 2
    cov_sm = sm / n_ - s1 * m1 / n_ ** 2
    proxy = {
        "column": "per-customer mean of observed responses.csat (customers with at least one answer)",
        "n_customers_with_answers": int(n_),
        "correlation_with_latent": round(float(cov_sm / np.sqrt(var_s * var_m)), 4),
        "calibration_slope_latent_on_mean": round(float(cov_sm / var_m), 4),
        "note": ("integer ratings measure latent_csat with error, so a Cox fit on the observed mean is "
                 "attenuated toward HR=1 (regression dilution); regression calibration (Rosner et al. 1990) "
                 "divides its log-HR by calibration_slope_latent_on_mean, which recovers the truth only "
                 "approximately (Cox is non-linear)"),
    }
    counts = {"customers": n_customers, "responses": n_resp, "tickets": n_tick, "org": org.table.num_rows}
    truth = _ground_truth(n_customers, seed, moments, counts, proxy)
    truth["unasked_themes"] = _unasked_truth(unasked)
    truth["follow_up"] = _follow_up_truth()
    if counterfactual is not None:  # issue 15; rows actually written (a negative shift drops some)
        truth["counterfactual"] = _counterfactual_truth(counterfactual, cf_active, cf_sums)
        for t in ("responses", "tickets"):
            truth["counts"][t] = pq.ParquetFile(out / f"{t}.parquet").metadata.num_rows
    path = out / "ground_truth.json"
    tmp_json = out / ".ground_truth.json.tmp"
    tmp_json.write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp_json, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/demo", help="output folder (created if missing)")
    parser.add_argument("--customers", type=int, default=20_000, help="number of customers (default 20000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--shift-satisfaction", type=float, default=None, metavar="POINTS",
                        help="counterfactual: every customer's latent satisfaction this many CSAT points higher "
                             "from --shift-from on (same draws otherwise)")
    parser.add_argument("--shift-attribute", default=None, metavar="NAME=POINTS",
                        help="counterfactual: one attribute's ratings raised, e.g. ease=0.5")
    parser.add_argument("--shift-from", default=None, metavar="YYYY-MM-DD",
                        help=f"first day of the counterfactual shift (default {DEFAULT_SHIFT_FROM})")
    args = parser.parse_args(argv)
    try:
        path = generate_demo(args.out, args.customers, args.seed, shift_satisfaction=args.shift_satisfaction,
                             shift_attribute=args.shift_attribute, shift_from=args.shift_from)
    except DemoError as exc:
        parser.error(str(exc))
    counts = json.loads(path.read_text())["counts"]
    print(f"wrote {counts['customers']} customers, {counts['responses']} responses, {counts['tickets']} "
          f"tickets, {counts['org']} people to {path.parent}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
