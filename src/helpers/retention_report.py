"""Everything the retention report notebook shows, prepared in one call (the notebook stays thin).

Unlike :mod:`helpers.retention` (pure analysis on DataFrames), this module reads the run-wide settings
(``params/report.yaml``: data source, column mapping, the ``retention`` section) and the data, then runs
the analyses. Problems that stop one part of the report (too few customers, a model that does not
converge, a tenure-only export without dates) are collected in ``.warnings`` and that part is left out;
they never stop the whole report and never show up as NaN charts.

The as-of date may lie before, inside or after the data. Customers are followed up to ``observed_to``, the
earlier of the as-of date and the data's last day (nothing is known after it, so an as-of in 2099 does not
make still-active customers survive until 2099); customers who signed up later are not counted, and a churn
after it is censored there (the data layer already reads it as empty). An analysis without enough history
before that day says so ("too little history before <date>: ...") instead of failing.
Engine (issue 14): with the contract's ``signup_date``/``end_date`` the curves and log-rank test, the sBG fits
and holdout check, the monthly retention rates and the Cox model come from aggregates computed by the engine of
``report.yaml`` (``engine:``; DuckDB by default, Spark on request): events and numbers at risk per day, customer
counts per (segment, cohort, lifetime, churned, exposure), at-risk/churned per calendar month, and a seeded Cox
sample of at most :data:`COX_SAMPLE_SIZE` customers (everyone below it; the page states a sample). The numbers
equal the in-memory path (tests/test_retention_engine.py). A ``retention.file`` export or a tenure column keeps
the in-memory path. The cohort heatmap, the headline counts and the lifetime values' customer counts and average
revenue are exact engine aggregates too (:mod:`helpers.engine.retention_queries`); what satisfaction is worth
(the corrected churn link and revenue at risk) is the drivers page's computation on the engine
(:func:`helpers.drivers_report.company_worth_analysis` with ``dataset=``: a seeded customer sample, population
totals from aggregates, the sample stated; one computation per run for both pages). Nothing on the engine path
builds a whole-table frame, so memory follows the answer, not the data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers import retention as R
from helpers.engine import open_report_engine
from helpers.errors import KitError
from helpers.formatting import (NA, column_label, fmt_currency, fmt_interval, fmt_number, fmt_p_value, fmt_percent,
                                interval_decimals, md_escape, reader_table, shorten)
from helpers.retention import hazard_change_text, percent_interval, value_label


@dataclass
class RetentionReport:
    segment: str
    horizon: int
    holdout: int
    discount_rate: float
    as_of: pd.Timestamp | None = None
    data_end: pd.Timestamp | None = None  # the data's last day (responses, tickets, customers' dates)
    observed_to: pd.Timestamp | None = None  # customers are followed up to min(as_of, data_end)
    source: str = ""
    segment_column: str | None = None
    frame: pd.DataFrame | None = None
    has_dates: bool = False
    cohorts: R.CohortTable | None = None
    survival: R.KaplanMeierResult | None = None
    hazards: R.CoxResult | None = None
    satisfaction_covariate: str | None = None
    sbg: dict[str, R.SBGResult] = field(default_factory=dict)
    sbg_groups: R.SBGGroups | None = None
    sbg_check: R.HoldoutResult | None = None
    rates: R.RateForecast | None = None
    value: pd.DataFrame | None = None
    currency: str = ""  # ISO code from report.yaml (CLV)
    worth: object = None  # helpers.drivers_report.CompanyWorthPage: corrected churn link, revenue at risk
    worth_inputs: dict = field(default_factory=dict)  # what the data have for it (set when loading)
    engine_name: str = ""  # the engine that computed the curves, sBG counts and the Cox sample ("" = in memory)
    cox_population: int | None = None  # customers the Cox model could use ...
    cox_sample_size: int | None = None  # ... and how many it was fitted on (a seeded sample when fewer)
    n_customers: int | None = None  # customers of the chosen segment analysed (the headline) ...
    n_churned: int | None = None  # ... and how many of them have left
    last_signup: pd.Timestamp | None = None  # the latest signup counted, any segment (on or before observed_to)
    worth_sample: tuple[int, int] | None = None  # (sample, population) when the worth chain ran on a sample
    warnings: list[str] = field(default_factory=list)

    @property
    def selected(self) -> pd.DataFrame:
        """The customers of the chosen segment (all customers for ``segment="all"``)."""
        if self.frame is None:
            return pd.DataFrame()
        if self.segment == "all" or not self.segment_column:
            return self.frame
        return self.frame[self.frame[self.segment_column].astype(str) == self.segment]

    @property
    def segment_label(self) -> str:
        return "all customers" if self.segment == "all" else f"{self.segment} customers"

    def headline_markdown(self) -> str:
        """Who is analysed, as of when, and how many have left (free text escaped)."""
        if self.n_customers is None:
            return "**The retention analysis could not run:** " + " ".join(md_escape(w) for w in self.warnings)
        n, churned = self.n_customers, self.n_churned
        who = "customers (all segments)" if self.segment == "all" else md_escape(self.segment_label)
        text = (f"**{n:,} {who}** analysed as of {self._as_of_text()}; {churned:,} "
                f"have left ({fmt_percent(churned / max(n, 1), 0)}).")
        if self.source:
            text += f" Data: {md_escape(self.source)}."
        return text

    def findings(self) -> list[str]:
        """At most six findings for readers, each one sentence with its number and interval, rounded as in the
        tables below (Markdown; free text escaped)."""
        out = []
        fit = self.main_fit
        if fit is not None:
            proj = fit.projection(12).iloc[-1]
            point, ci = percent_interval(proj["survival"], proj["ci_low"], proj["ci_high"])
            out.append(f"Of a new cohort, **{point}** are expected to still be customers after 12 months"
                       + (f" (95% CI {ci})." if ci != NA else "."))
        if self.hazards is not None and self.satisfaction_covariate in self.hazards.table.index:
            hr, lo, hi = self.hazards.per_step(self.satisfaction_covariate)
            point, interval = hazard_change_text(hr, lo, hi)
            amount, way = point.rsplit(" ", 1)
            text = (f"Each extra CSAT point (customer's mean rating) **{'lowers' if way == 'lower' else 'raises'} "
                    f"the monthly churn hazard by {amount}** (95% CI {interval}), other factors held equal")
            link = self.link
            if link is not None:
                c_point, c_interval = hazard_change_text(*link.hazard_ratio("corrected"))
                text += (f"; corrected for the noise in single ratings, a point of true satisfaction goes with a "
                         f"{c_point} hazard (95% CI {c_interval})")
            out.append(text + ".")
        if self.survival is not None and len(self.survival.medians):
            out.append(self._survival_finding())
        if self.rates is not None:
            fc = self.rates.table[self.rates.table["kind"] == "forecast"]
            out.append(f"Monthly retention is forecast at **{fc['forecast'].mean():.1%}** on average over the next "
                       f"{len(fc)} months (95% prediction interval for a single month "
                       f"{fmt_interval(fc['pi_low'].min(), fc['pi_high'].max(), 1, percent=True)}); kept up for a "
                       f"year that keeps about {fmt_percent(float(np.prod(fc['forecast'].iloc[:12])), 0)} of "
                       "today's customers.")
        value = self.value_row()
        if value is not None:
            out.append(f"At a {fmt_percent(self.discount_rate, 0)} annual discount rate, a new customer"
                       f"{'' if value['segment'] == 'all' else ' (' + md_escape(value_label(value['segment'])) + ')'}"
                       f" is worth about **{self.money(value['clv'])}** in revenue over their lifetime (95% CI "
                       f"{self.money_interval(value['clv_low'], value['clv_high'])}).")
        risk = self.risk_row()
        if risk is not None and len(out) < 6:
            ci = self.money_interval(risk["revenue_at_risk_low"], risk["revenue_at_risk_high"])
            who = "" if risk["dimension"] == "all" else f" from {md_escape(value_label(risk['group']))} customers"
            out.append(f"**{self.money(risk['revenue_at_risk'])} of revenue over the next {self.worth.horizon} months"
                       f"{who} goes with dissatisfaction** (95% CI {ci}, "
                       f"{fmt_percent(risk['share_of_revenue'], 1)} of the expected revenue): what customers below the "
                       "median satisfaction would add if they were at it; an association, not an experiment.")
        if self.sbg_groups is not None and len(self.sbg_groups.fits) > 1 and len(out) < 6:
            out.append(md_escape(self.sbg_groups.summary(horizon=12).split(" Not fitted:")[0]))
        return out[:6]

    # ------------------------------------------------------------------ what satisfaction is worth (issue 15)
    @property
    def link(self):
        """The corrected satisfaction -> churn link (:class:`helpers.churn_link.ChurnLinkResult`) or None."""
        return None if self.worth is None else self.worth.link

    @property
    def risk(self):
        """Revenue at risk per department and segment (:class:`helpers.impact_report.WorthTable`) or None."""
        return None if self.worth is None else self.worth.risk

    def risk_row(self):
        """The revenue-at-risk row of the page's customers (the chosen segment's, else the company's), or None."""
        if self.risk is None:
            return None
        t = self.risk.table
        rows = t[(t["dimension"] == "segment") & (t["group"].astype(str) == self.segment)]
        if self.segment == "all" or not len(rows):
            rows = t[t["dimension"] == "all"]
        return rows.iloc[0] if len(rows) else None

    def churn_link_markdown(self) -> str:
        """What the corrected link is and what it says, or one line saying what is missing."""
        if self.worth is None:
            return "*The corrected satisfaction-churn link was not computed (see the notes at the top).*"
        link = self.link
        if link is None:
            return f"*The corrected satisfaction-churn link {md_escape(self.worth.link_message)}.*"
        return md_escape(_reader_text(link.summary()))

    def churn_link_table_html(self) -> str:
        """Naive and corrected hazard ratio per CSAT point and the reliability that links them, with intervals."""
        link = self.link
        if link is None:
            return ""
        rows = []
        for model, what in (("naive", "As observed: per point of a customer's mean CSAT"),
                            ("corrected", "Corrected for rating noise: per point of true satisfaction")):
            hr, lo, hi = link.hazard_ratio(model)
            point, interval = hazard_change_text(hr, lo, hi)
            d = max(2, interval_decimals(lo, hi))
            rows.append({"Churn hazard ratio": what, "Hazard ratio": fmt_number(hr, d),
                         "95% CI": fmt_interval(lo, hi, d), "Change in monthly churn risk": point,
                         "Change 95% CI": interval})
        rel = link.reliability.set_index("k").loc["all"]
        d = max(2, interval_decimals(rel["ci_low"], rel["ci_high"]))
        rows.append({"Churn hazard ratio": "Reliability of a customer's mean CSAT (1 = no noise)",
                     "Hazard ratio": fmt_number(rel["reliability"], d),
                     "95% CI": fmt_interval(rel["ci_low"], rel["ci_high"], d), "Change in monthly churn risk": NA,
                     "Change 95% CI": NA})
        shown = pd.DataFrame(rows).rename(columns={"Churn hazard ratio": "Link", "Hazard ratio": "Value"})
        return _table(shown, formats={c: "text" for c in shown.columns},
                      caption=f"Satisfaction and churn, {link.n_customers:,} customers with ratings, "
                              f"{link.n_events:,} of whom left ({link.n_boot} re-samples)"
                              + (f"; {self.worth_sample_text()}" if self.worth_sample else ""))

    def worth_sample_text(self) -> str:
        """The worth chain's sample as the page states it ("" when it read every customer)."""
        if not self.worth_sample:
            return ""
        size, population = self.worth_sample
        return (f"fitted on a seeded random sample of {size:,} of the {population:,} customers "
                f"({fmt_percent(size / population, 1)}); the intervals are those of the sample")

    def risk_markdown(self) -> str:
        """What revenue at risk is, with its reference, or one line saying what is missing."""
        if self.worth is None:
            return "*Revenue at risk was not computed (see the notes at the top).*"
        if self.risk is None:
            return f"*Revenue at risk {md_escape(self.worth.chain_message)}.*"
        r = self.risk.table[self.risk.table["dimension"] == "all"].iloc[0]
        ref = next((n for n in self.risk.notes if n.startswith("Reference:")), "")
        text = (f"If every customer below the median satisfaction were at it, the expected revenue of today's "
                f"customers over the next {self.worth.horizon} months (discounted at 10% a year) would be "
                f"**{self.money(r['revenue_at_risk'])} higher** (95% CI "
                f"{self.money_interval(r['revenue_at_risk_low'], r['revenue_at_risk_high'])}): the revenue at risk "
                f"from dissatisfaction. Per department (each customer's department with the most survey answers) "
                f"and per segment below; the parts are summed re-sample by re-sample, so the intervals agree. "
                f"{ref} Intervals from {self.worth.n_boot} re-samples of the customers that redo every link. "
                "This is an association under stated assumptions (rating noise is random and corrected for, "
                "proportional hazards), not the result of a controlled experiment.")
        return md_escape(_reader_text(text)).replace("\\*\\*", "**")

    def risk_notes_markdown(self) -> str:
        if self.risk is None:
            return ""
        notes = [n for n in self.risk.notes if not n.startswith("Reference:")]
        return "*" + md_escape(_reader_text(" ".join(notes))) + "*" if notes else ""

    def risk_table_html(self, dimension: str = "department") -> str:
        """Revenue at risk per ``dimension`` ("department": each customer's department with the most answers,
        or "segment"), then all customers, with intervals."""
        if self.risk is None:
            return ""
        t = self.risk.table
        t = t[t["dimension"].isin([dimension, "all"])].copy()
        t["group"] = [("all customers" if d == "all" else "customers without answers" if g == "no answers"
                       else value_label(g)) for d, g in zip(t["dimension"], t["group"])]
        labels = {**self.risk.labels, "group": column_label(dimension)}
        columns = [c for c in self.risk.columns if c != "dimension"]
        return reader_table(t, formats=self.risk.formats, labels=labels, columns=columns,
                            currency=self.risk.currency,
                            caption=f"{self.risk.title}, by {column_label(dimension).lower()}")

    def fig_churn_link(self):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(9, 3.2))
        self.link.plot(ax=ax)
        ax.set_title("Churn hazard ratio per CSAT point: as observed and corrected for rating noise")
        fig.tight_layout()
        return fig

    def alt_churn_link(self) -> str:
        hr_n, lo_n, hi_n = self.link.hazard_ratio("naive")
        hr_c, lo_c, hi_c = self.link.hazard_ratio("corrected")
        return (f"Dot chart of the churn hazard ratio per CSAT point with 95% intervals: as observed (a customer's "
                f"mean CSAT) {hr_n:.2f} ({lo_n:.2f} to {hi_n:.2f}); corrected for rating noise {hr_c:.2f} "
                f"({lo_c:.2f} to {hi_c:.2f}). Below 1: more satisfied customers leave more slowly.")

    def findings_markdown(self) -> str:
        items = self.findings()
        if not items:
            return "*No retention finding could be computed (see the notes at the top).*"
        return "\n".join(f"- {s}" for s in items)

    def headline(self) -> str:
        """One plain sentence for the index page."""
        fit = self.main_fit
        if fit is None:
            return "The retention projection could not be made (see the notes on the page)."
        proj = fit.projection(12).iloc[-1]
        point, ci = percent_interval(proj["survival"], proj["ci_low"], proj["ci_high"])
        return (f"{point} of a new cohort are expected to still be customers after 12 months"
                + (f" (95% CI {ci})." if ci != NA else "."))

    def _survival_finding(self) -> str:
        km = self.survival
        m = km.medians
        parts = []
        for _, row in m.iterrows():
            who = "customers" if km.group is None else f"{md_escape(value_label(row[km.group]))} customers"
            if np.isfinite(row["median"]):
                median, ci = R.months_and_interval(row["median"], row["ci_low"], row["ci_high"])
                parts.append(f"{who} after {median} months (95% CI {ci})")
            else:
                parts.append(f"{who}: not yet ({fmt_percent(row['survival_at_end'], 0)} still customers after "
                             f"{row['last_time']:.0f} months)")
        return "Half have left: " + "; ".join(parts) + "."

    @property
    def main_fit(self):
        return self.sbg.get(self.segment if self.segment != "all" else "all")

    def value_row(self):
        if self.value is None or not len(self.value):
            return None
        values = self.value.set_index("segment", drop=False)
        key = self.segment if self.segment in values.index else "all"
        row = values.loc[key] if key in values.index else None  # no fit for it: nothing to value
        return row if row is not None and np.isfinite(row["clv"]) else None

    def money(self, x) -> str:
        return fmt_currency(x, self.currency)

    def money_interval(self, low, high) -> str:
        return f"{fmt_currency(low, self.currency)} to {fmt_currency(high, self.currency)}"

    def _as_of_text(self) -> str:
        if self.as_of is None:
            return "the end of the data"
        text = self.as_of.date().isoformat()
        if self.observed_to is not None and self.observed_to < self.as_of:
            text += f" (the data end on {self.observed_to.date().isoformat()}: customers are followed up to then)"
        return text

    def too_little_history(self, detail: str) -> R.RetentionInputError:
        """The error of an analysis that the history before the as-of date cannot support."""
        day = self.observed_to if self.observed_to is not None else self.as_of
        when = f" before {day.date().isoformat()}" if day is not None else ""
        return R.RetentionInputError(f"too little history{when}: {detail}", table="customers")

    def plain_summary(self) -> str:
        """The findings as one plain paragraph (no Markdown), then what was left out."""
        import html
        import re
        # Markdown made plain: no bold markers, no backslash escapes, no HTML entities
        parts = [html.unescape(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", f.replace("**", ""))) for f in self.findings()]
        if self.warnings:
            parts.append("Left out or limited: " + " ".join(self.warnings))
        return " ".join(parts)

    def summary_markdown(self) -> str:
        """The findings as Markdown bullets (free text escaped)."""
        return self.findings_markdown()

    # ------------------------------------------------------------------ reader tables (HTML)
    def survival_table_html(self) -> str:
        return "" if self.survival is None else survival_table_html(self.survival)

    def hazard_table_html(self) -> str:
        if self.hazards is None:
            return ""
        return hazard_table_html(self.hazards, caption=self.cox_sample_text())

    def cox_sample_text(self) -> str:
        """The Cox model's sample as the page states it ("" when it was fitted on every customer)."""
        if self.cox_sample_size is None or self.cox_population is None or \
                self.cox_sample_size >= self.cox_population:
            return ""
        return (f"Fitted on a seeded random sample of {self.cox_sample_size:,} of the {self.cox_population:,} "
                f"customers ({fmt_percent(self.cox_sample_size / self.cox_population, 1)}); the intervals are "
                "those of the sample")

    def projection_table_html(self) -> str:
        fit = self.main_fit
        if fit is None:
            return ""
        proj = fit.projection(self.horizon)
        proj = proj[proj["t"] >= 1]
        texts = [percent_interval(s, lo, hi) for s, lo, hi in zip(proj["survival"], proj["ci_low"], proj["ci_high"])]
        shown = pd.DataFrame({"Months since signup": proj["t"].astype(int).to_numpy(),
                              "Still a customer": [a for a, _ in texts], "95% CI": [b for _, b in texts],
                              "Kept in that month": [fmt_percent(r, 1) for r in proj["retention"]]})
        return _table(shown, formats={"Months since signup": "int"})

    def segments_table_html(self) -> str:
        g = self.sbg_groups
        if g is None or g.table.empty or "survival_12" not in g.table.columns:
            return ""
        t = g.table
        texts = [percent_interval(a, b, c) for a, b, c in zip(t["survival_12"], t["survival_12_low"],
                                                             t["survival_12_high"])]
        shown = pd.DataFrame({column_label(g.by): [value_label(v) for v in t[g.by]],
                              "Customers": t["customers"].astype(int).to_numpy(),
                              "Still a customer after 12 months (projected)": [a for a, _ in texts],
                              "95% CI": [b for _, b in texts]})
        return _table(shown, formats={"Customers": "int"})

    def value_table_html(self) -> str:
        v = self.value
        if v is None or not len(v):
            return ""
        shown = pd.DataFrame({
            "Segment": ["all customers" if s == "all" else value_label(s) for s in v["segment"]],
            "Customers": v["customers"].astype(int).to_numpy(),
            f"Months as a customer in the first {self.horizon}": [fmt_number(x, 1) for x in
                                                                  v["expected_months_in_horizon"]],
            "Discounted lifetime (months)": [fmt_number(x, 1) for x in v["del"]],
            "95% CI (months)": [fmt_interval(a, b, 1) for a, b in zip(v["del_low"], v["del_high"])],
            "Average monthly revenue": [self.money(x) for x in v["monthly_margin"]],
            "Lifetime value": [self.money(x) for x in v["clv"]],
            "Lifetime value 95% CI": [self.money_interval(a, b) if np.isfinite(a) and np.isfinite(b) else NA
                                      for a, b in zip(v["clv_low"], v["clv_high"])]})
        return _table(shown, formats={"Customers": "int"})

    # ------------------------------------------------------------------ details for analysts
    def sbg_parameters_table_html(self) -> str:
        rows = []
        for name, fit in self.sbg.items():
            t = fit.table
            rows.append({"Segment": "all customers" if name == "all" else value_label(name),
                         "Customers": int(fit.n_customers),
                         "alpha": fmt_number(fit.alpha, 2),
                         "alpha 95% CI": fmt_interval(t.loc["alpha", "ci_low"], t.loc["alpha", "ci_high"], 2),
                         "beta": fmt_number(fit.beta, 2),
                         "beta 95% CI": fmt_interval(t.loc["beta", "ci_low"], t.loc["beta", "ci_high"], 2),
                         "Log-likelihood": fmt_number(fit.loglik, 1)})
        if not rows:
            return ""
        return _table(pd.DataFrame(rows), formats={c: "text" for c in ("alpha", "alpha 95% CI", "beta", "beta 95% CI",
                                                                       "Log-likelihood")})

    def model_comparison_table_html(self) -> str:
        if self.rates is None:
            return ""
        c = self.rates.candidates
        shown = pd.DataFrame({"Model": c["model"].astype(str).to_numpy(),
                              "Mean abs. % error on held-out months": [f"{fmt_number(x, 1)}%" for x in c["mape"]],
                              "Held-out months inside the 95% interval": [fmt_percent(x, 0) for x in c["coverage"]],
                              "Used": ["yes" if m == self.rates.model else "no" for m in c["model"]]})
        return _table(shown, formats={c: "text" for c in shown.columns})

    def cox_details_markdown(self) -> str:
        cox = self.hazards
        if cox is None:
            return ""
        text = (f"Cox model: {cox.n:,} customers, {cox.n_events:,} churn events, log partial likelihood "
                f"{fmt_number(cox.loglik, 1)}, concordance {fmt_number(cox.concordance, 2)} (Efron ties).")
        if len(cox.ph_test):
            text += " Proportional-hazards check (Schoenfeld residuals vs rank of time): " + "; ".join(
                f"{cox.reader_label(c)} {fmt_p_value(p, prefix=True)}" for c, p in cox.ph_test["p_value"].items()) + "."
        return md_escape(text)

    # ------------------------------------------------------------------ figures (sized for the page)
    def fig_cohorts(self):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(10, 6))
        self.cohorts.plot(ax=ax)
        return fig

    def fig_survival(self):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(9, 5))
        self.survival.plot(ax=ax)
        return fig

    def fig_hazards(self):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(9, 0.6 * len(self.hazards.table) + 2))
        self.hazards.plot(ax=ax)
        return fig

    def fig_sbg(self):
        import matplotlib.pyplot as plt
        panels = 2 if self.sbg_check is not None else 1
        fig, axes = plt.subplots(1, panels, figsize=(10.4 if panels == 2 else 8, 4.5), squeeze=False)
        self.main_fit.plot(ax=axes[0][0], horizon=self.horizon * 2)
        if self.sbg_check is not None:
            self.sbg_check.plot(ax=axes[0][1])
        fig.tight_layout()
        return fig

    def fig_segments(self):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(9, 4.5))
        self.sbg_groups.plot(ax=ax, horizon=self.horizon * 2)
        return fig

    def fig_rates(self):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(9, 4.5))
        self.rates.plot(ax=ax)
        return fig

    def figures(self) -> list:
        """``(name, figure)`` of every chart the page shows, in page order (for tests of sizes and text)."""
        wanted = [("cohorts", self.cohorts is not None, self.fig_cohorts),
                  ("survival", self.survival is not None, self.fig_survival),
                  ("hazards", self.hazards is not None, self.fig_hazards),
                  ("churn link", self.link is not None, self.fig_churn_link),
                  ("projection", self.main_fit is not None, self.fig_sbg),
                  ("segments", self.sbg_groups is not None and len(self.sbg_groups.fits) > 1, self.fig_segments),
                  ("rates", self.rates is not None, self.fig_rates)]
        return [(name, make()) for name, ok, make in wanted if ok]

    # ------------------------------------------------------------------ charts: alt texts and count
    def expected_charts(self) -> int:
        """How many charts the page shows (the runner fails a page with fewer)."""
        return sum([self.cohorts is not None, self.survival is not None, self.hazards is not None,
                    self.link is not None,
                    self.main_fit is not None, self.sbg_groups is not None and len(self.sbg_groups.fits) > 1,
                    self.rates is not None])

    def alt_cohorts(self) -> str:
        return ("Heatmap: rows are signup months, columns months since signup, colour the share still a customer. "
                + self.cohorts.summary())

    def alt_survival(self) -> str:
        return "Kaplan-Meier survival curves with 95% bands. " + self.survival.summary()

    def alt_hazards(self) -> str:
        return "Hazard ratios with 95% intervals on a log scale. " + self.hazards.summary()

    def alt_sbg(self) -> str:
        text = "Projected share of a new cohort still a customer by month, with its 95% band and the observed " \
               "shares. " + self.main_fit.summary(horizon=12)
        if self.sbg_check is not None:
            text += " Right: the held-out check. " + self.sbg_check.summary()
        return text

    def alt_segments(self) -> str:
        return "Projected share still a customer by segment, with 95% bands. " + self.sbg_groups.summary(horizon=12)

    def alt_rates(self) -> str:
        return "Monthly retention rate history, held-out check and forecast with its 95% band. " + self.rates.summary()

    def status_counts(self) -> dict[str, int]:
        """The company retention page judges no objectives: no status counts."""
        return {}


def _reader_text(text: str) -> str:
    """Library notes made readable: column names in words."""
    return (text.replace("monthly_revenue", "monthly revenue").replace("mean_csat", "mean CSAT")
            .replace("small_business", "small business"))


def _table(frame: pd.DataFrame, **kwargs) -> str:
    """A reader table whose column names are already reader headers (shown as written)."""
    return reader_table(frame, labels={c: str(c) for c in frame.columns}, **kwargs)


def _load_inputs(data_source: str, report_config: str, as_of: str, report: RetentionReport):
    """Read the settings and open the data: ``(settings, cfg, dataset or None, retention file or None)``, through
    the report layer's loader (:func:`helpers.reports.loader.load_report_inputs`) unless ``retention.file`` names
    a separate customer export. No table is read into pandas here."""
    from helpers.config import load_report_config, resolve_retention_file
    from helpers.reports.loader import data_name, load_report_inputs, resolve_config_path

    cfg_path = resolve_config_path(report_config)
    cfg = load_report_config(cfg_path)
    report.currency = str(getattr(cfg, "currency", "") or "")
    file = resolve_retention_file(cfg, cfg_path)
    ds = None
    last_date = None
    if file is not None:
        if not file.exists():
            raise R.RetentionInputError(f"retention file {file} not found", table="retention.file")
        report.source = data_name(file)
    else:
        # the data as of the report date: later signups, answers and tickets left out, later churn censored
        inputs = load_report_inputs(data_source, cfg_path, as_of=as_of or None)
        ds = inputs.dataset
        try:
            report.source = inputs.data_label
            report.worth_inputs = _worth_inputs(ds, cfg)
            report.warnings.extend(ds.excluded_messages())
            last_date = ds.date_range()[1]
            if not as_of:
                report.as_of = ds.default_as_of()
        except BaseException:
            ds.close()
            raise
    if as_of:
        report.as_of = pd.Timestamp(as_of)
    report.data_end = None if last_date is None or pd.isna(last_date) else pd.Timestamp(last_date).normalize()
    return cfg.retention, cfg, ds, (cfg, cfg_path, file)


def _load_rows(ds, file_info):
    """The customer table (and the answers when the dataset has them) as frames: the in-memory path."""
    from helpers.data import load_retention_table

    cfg, cfg_path, file = file_info
    if file is not None:
        return load_retention_table(cfg, config_path=cfg_path), None  # checks the configured columns exist
    return ds.customers, ds.responses


def _uses_contract_dates(settings) -> bool:
    """Whether the retention settings read the data contract's ``signup_date``/``end_date`` (what the engine's
    survival queries assume); a tenure or churn-flag layout keeps the in-memory path."""
    return (settings.duration_column is None and settings.event_column is None
            and settings.start_column == "signup_date" and settings.end_column == "end_date"
            and settings.id_column == "customer_id")


def _report_engine(report: RetentionReport, cfg, ds, settings):
    """The engine of ``report.yaml`` over the run's dataset (:func:`helpers.engine.open_report_engine`), or None
    for the in-memory path: a separate retention export, another retention layout, no customers table, or an
    engine that cannot be opened (its note goes to the page)."""
    if ds is None or not _uses_contract_dates(settings) or not ds.has("customers"):
        return None
    engine, note = open_report_engine(ds, cfg)
    if note:
        report.warnings.append(note)
    if engine is not None:
        report.engine_name = engine.name
    return engine


def prepare_retention_report(segment: str = "all", horizon: int = 12, holdout: int = 6,
                             discount_rate: float = 0.10, data_source: str = "",
                             report_config: str = "params/report.yaml", as_of: str = "",
                             n_boot: int = 200) -> RetentionReport:
    """Load data and settings and run every retention analysis for the report notebook.

    ``segment``: "all" or a value of the retention ``segment_column``; ``horizon``: months to project;
    ``holdout``: months held out to check the forecasts; ``discount_rate``: annual, for DERL/CLV.
    Invalid ``horizon``/``holdout``/``discount_rate`` raise :class:`helpers.retention.RetentionInputError`;
    data problems become ``.warnings``.
    """
    if not isinstance(horizon, (int, np.integer)) or horizon <= 0:
        raise R.RetentionInputError(f"horizon {shorten(horizon)} is not a positive number of months",
                                    table="parameters", expected="horizon >= 1")
    if not isinstance(holdout, (int, np.integer)) or holdout <= 0:
        raise R.RetentionInputError(f"holdout {shorten(holdout)} is not a positive number of months",
                                    table="parameters", expected="holdout >= 1")
    if as_of:
        try:
            pd.Timestamp(str(as_of))
        except ValueError:
            raise R.RetentionInputError(f"as_of {shorten(as_of)} is not a date", table="parameters",
                                        expected="an ISO date YYYY-MM-DD, or empty for the last complete month") \
                from None
    monthly_rate = R.monthly_discount_rate(discount_rate)
    report = RetentionReport(segment=segment or "all", horizon=int(horizon), holdout=int(holdout),
                             discount_rate=float(discount_rate))
    try:
        settings, cfg, ds, file_info = _load_inputs(data_source, report_config, as_of, report)
    except KitError as exc:
        report.warnings.append(str(exc))
        return report
    engine = None
    try:
        engine = _report_engine(report, cfg, ds, settings)
        if engine is not None:
            _engine_observation(report, engine, ds)
            _analyse(report, None, None, None, settings, engine, n_boot, monthly_rate, ds=ds)
        else:
            customers, responses = _load_rows(ds, file_info)
            frame = _survival_data(customers, settings, report)
            _analyse(report, frame, customers, responses, settings, None, n_boot, monthly_rate)
    except KitError as exc:
        report.warnings.append(str(exc))
    finally:
        if engine is not None:
            engine.close()
        if ds is not None:
            ds.close()
    return report


def _analyse(report: RetentionReport, frame, customers, responses, settings, engine, n_boot, monthly_rate,
             ds=None) -> None:
    """Every analysis of the page: from ``engine`` aggregates when there is one (the same numbers as the
    in-memory path, see tests/test_retention_engine*.py; ``frame``/``customers``/``responses`` are then None),
    else from ``frame`` (:func:`_survival_data`)."""
    from helpers.engine import retention_queries as Q

    columns = engine.columns("customers") if engine is not None else frame.columns
    seg_col = settings.segment_column if settings.segment_column in columns else None
    if settings.segment_column and seg_col is None:
        report.warnings.append(f"segment column {shorten(settings.segment_column)} is not in the customer table; "
                               "no segments are compared.")
    report.segment_column = seg_col
    if seg_col is None and report.segment != "all":
        report.warnings.append(f"segment {shorten(report.segment)} asked for but there are no segments: showing all.")
        report.segment = "all"
    counts = None
    if engine is not None:  # customers, churned and revenue per segment: the headline and lifetime values
        counts = Q.customer_counts(engine, report.observed_to, by=seg_col)
        known = set(counts[seg_col].astype(str)) if seg_col else set()
    else:
        known = set(frame[seg_col].astype(str)) if seg_col else set()
    if seg_col is not None and report.segment != "all" and report.segment not in known:
        known = sorted(known)
        report.warnings.append(f"segment {shorten(report.segment)} is not in column {shorten(seg_col)} (known: "
                               f"{', '.join(shorten(k, 40) for k in known[:12])}{' ...' if len(known) > 12 else ''}); "
                               "showing all customers.")
        report.segment = "all"
    report.frame = frame
    chosen = {seg_col: report.segment} if seg_col and report.segment != "all" else None
    if engine is None:
        sel = report.selected
        report.n_customers, report.n_churned = len(sel), int(sel["event"].sum())
        if report.has_dates:
            report.last_signup = pd.Timestamp(pd.to_datetime(frame["signup_date"]).max())
        _run(report, "cohort table", lambda: setattr(report, "cohorts", R.cohort_table(sel))
             if report.has_dates else None)
        _run(report, "survival curves", lambda: setattr(report, "survival", R.kaplan_meier(frame, group=seg_col)))
        _run(report, "satisfaction and churn", lambda: _hazards(report, frame, responses, seg_col))
        _run(report, "sBG projections", lambda: _sbg_fits(report, frame, seg_col, n_boot))
        _run(report, "sBG holdout check", lambda: _sbg_holdout(report, sel, n_boot))
        _run(report, "retention-rate forecast", lambda: _rate_forecast(report, sel))
        _run(report, "lifetime value", lambda: _value(report, _row_margins(frame, seg_col, report.sbg),
                                                      monthly_rate))
        _run(report, "what satisfaction is worth", lambda: _worth(report, customers, responses))
        return
    part = counts if chosen is None else counts[counts[seg_col].astype(str) == report.segment]
    report.n_customers, report.n_churned = int(part["customers"].sum()), int(part["churned"].sum())
    _run(report, "cohort table", lambda: _engine_cohorts(report, engine, chosen))
    _run(report, "survival curves", lambda: _engine_survival(report, engine, seg_col))
    _run(report, "satisfaction and churn", lambda: _engine_hazards(report, engine, seg_col))
    sbg = {}
    _run(report, "sBG projections", lambda: _engine_sbg_fits(report, engine, seg_col, n_boot, sbg))
    _run(report, "sBG holdout check", lambda: _engine_sbg_holdout(report, sbg.get("sbg"), seg_col, n_boot))
    _run(report, "retention-rate forecast", lambda: _rate_forecast(report, None, engine, chosen))
    _run(report, "lifetime value", lambda: _value(report, _count_margins(counts, seg_col, report.sbg), monthly_rate))
    # last: the drivers page computes this chain first and shares it through the run's cache, so when both
    # company pages run side by side this one has done its own work by the time it reads the chain
    _run(report, "what satisfaction is worth", lambda: _engine_worth(report, engine, ds))


def _run(report: RetentionReport, what: str, step) -> None:
    try:
        step()
    except KitError as exc:
        report.warnings.append(f"{what}: {exc}")


def _observation_window(report: RetentionReport, customers: int, first_signup, last_signup, last_end,
                        later: int) -> None:
    """``data_end``, ``observed_to`` (the earlier of the as-of date and the data's last day) and their notes, from
    the customers' first and last signup, last end date and how many signed up after ``observed_to`` (a
    function of it: ``later(observed_to)``). Raises when every customer signed up later."""
    days = [d for d in (report.data_end, last_signup, last_end) if d is not None and not pd.isna(d)]
    report.data_end = pd.Timestamp(max(days)).normalize()  # answers/tickets (dataset) or the customers' own dates
    if report.as_of is None:
        report.as_of = report.data_end
    report.observed_to = min(report.as_of, report.data_end)
    if report.observed_to < report.as_of:
        report.warnings.append(f"The data end on {report.data_end.date()}, before the as-of date "
                               f"{report.as_of.date()}: customers without an end date are counted as customers "
                               f"up to {report.data_end.date()} only (nothing is known after it).")
    n_later = later(report.observed_to)
    if n_later == customers:
        raise report.too_little_history(
            f"all {customers:,} customers signed up later"
            + (f" (the first on {pd.Timestamp(first_signup).date()})" if not pd.isna(first_signup) else ""))
    if n_later:
        report.warnings.append(f"{n_later:,} customers who signed up after the as-of date "
                               f"{report.observed_to.date()} are not counted.")


def _engine_observation(report: RetentionReport, engine, ds) -> None:
    """:func:`_survival_data` of the engine path: the customers' dates checked and the observation window set,
    from one query (no customer row read)."""
    from helpers.engine import retention_queries as Q

    d = Q.customer_dates(engine, cutoff=getattr(ds, "cutoff", None))
    if d["customers"] == 0:
        raise R.RetentionInputError("has no rows", table="customers", expected="at least one customer")
    if d["no_signup"]:
        raise R.RetentionInputError("has missing or unreadable start dates", table="customers",
                                    column="signup_date", n_rows=d["no_signup"], expected="a date on every row")
    if d["end_before_signup"]:
        raise R.RetentionInputError("has end dates before the start date (signup_date)", table="customers",
                                    column="end_date", n_rows=d["end_before_signup"], expected="end on or after start")

    def later(day):
        counted = Q.customer_counts(engine, day)
        return d["customers"] - int(counted["customers"].sum())

    _observation_window(report, d["customers"], d["first_signup"], d["last_signup"], d["last_end"], later)
    report.last_signup = min(d["last_signup"], report.observed_to)
    report.has_dates = True


def _survival_data(customers: pd.DataFrame, settings, report: RetentionReport) -> pd.DataFrame:
    id_col = settings.id_column
    if id_col not in customers.columns:
        raise R.RetentionInputError(f"has no id column {shorten(id_col)} (retention.id_column)", table="customers")
    if settings.duration_column:
        frame = R.survival_frame_from_settings(customers, settings, as_of=report.as_of)
        # tenure-only export: whole months survived; the observation window is unknown, so exposure is
        # taken as each customer's own tenure (censored) or the longest tenure seen (churned)
        dur = frame["duration"].to_numpy()
        ev = frame["event"].to_numpy()
        frame["lifetime_periods"] = np.where(ev == 1, np.maximum(1, np.ceil(dur - 1e-9)),
                                             np.floor(dur + 1e-9)).astype("int64")
        frame["sbg_churned"] = ev
        frame["exposure_periods"] = np.where(ev == 1, int(np.ceil(dur.max())), frame["lifetime_periods"])
        report.has_dates = False
        report.warnings.append("The customer table has a tenure column but no dates, so the cohort table, the "
                               "holdout check of the sBG and the calendar retention-rate forecast are left out.")
    else:
        renamed = customers.rename(columns={settings.start_column: "signup_date",
                                            settings.end_column: "end_date"})
        signup = pd.to_datetime(renamed["signup_date"], errors="coerce")
        ends = pd.to_datetime(renamed["end_date"], errors="coerce") if "end_date" in renamed.columns else signup
        _observation_window(report, len(renamed), signup.min(), signup.max(), ends.max(),
                            lambda day: int((signup > day).sum()))
        later = signup > report.observed_to
        if later.any():
            renamed = renamed[~later]
        frame = R.customer_durations(renamed, as_of=report.observed_to)
        report.has_dates = True
    if id_col != "customer_id":
        frame["customer_id"] = frame[id_col].astype(str)
    return frame


COX_SAMPLE_SIZE = 100_000  # customers the Cox model is fitted on at most (a seeded sample above it)
COX_SAMPLE_SEED = 20261125
SBG_MIN_CUSTOMERS = 30  # helpers.retention.fit_sbg_by's default: fewer customers, no segment fit


def _engine_cohorts(report, engine, chosen) -> None:
    """The cohort heatmap from the engine's customers per (signup month, days as a customer): the counts
    :func:`helpers.retention.cohort_table` takes from the rows, so the same table."""
    from helpers.engine import retention_queries as Q

    counts = Q.cohort_counts(engine, report.observed_to, filters=chosen)
    if counts.empty:
        return
    survived, exposure = Q.cohort_table_inputs(counts, report.observed_to)
    longest = R.whole_months([(report.observed_to - counts["first_signup"].min()).days / R.AVG_DAYS_PER_MONTH])[0]
    report.cohorts = R.cohort_table_from_counts(survived, exposure, int(longest))


def _engine_survival(report, engine, seg_col) -> None:
    """Kaplan-Meier curves (and the log-rank test) from the engine's events and numbers at risk per day."""
    from helpers.engine import aggregates as A

    counts = A.survival_counts(engine, by=seg_col, as_of=report.observed_to)
    report.survival = A.kaplan_meier_from_counts(counts, group=seg_col)


def _engine_hazards(report, engine, seg_col, sample_size: int | None = None) -> None:
    """The Cox model on the engine's seeded sample of at most ``sample_size`` customers (everyone when there are
    fewer), with each customer's mean CSAT up to the observed day; the page states the sample and population."""
    from helpers.engine import aggregates as A

    satisfaction = engine.has("responses") and "csat" in engine.columns("responses")
    data = A.cox_sample(engine, sample_size or COX_SAMPLE_SIZE, seed=COX_SAMPLE_SEED,
                        covariates=[seg_col] if seg_col else [],
                        satisfaction=satisfaction, as_of=report.observed_to)
    report.cox_population, report.cox_sample_size = int(data.attrs["population"]), int(data.attrs["size"])
    _fit_hazards(report, data, seg_col)


def _fit_hazards(report, data: pd.DataFrame, seg_col) -> None:
    """The Cox model of both paths on ``data`` (duration, event, the segment and, when there, each customer's
    ``mean_csat``): mean CSAT enters when at least 30 customers have one (a note when more than a tenth have
    none), the segment when it varies."""
    covs = []
    if "mean_csat" in data.columns and data["mean_csat"].notna().sum() >= 30:
        covs.append("mean_csat")
        report.satisfaction_covariate = "mean_csat"
        share = data["mean_csat"].notna().mean()
        if share < 0.9:
            report.warnings.append(f"{1 - share:.0%} of customers never answered a CSAT survey and are "
                                   "left out of the hazard-ratio model.")
    if seg_col and data[seg_col].nunique() > 1:  # a single segment has nothing to compare
        covs.append(seg_col)
    if not covs:
        report.warnings.append("no satisfaction data and no segments: no hazard-ratio model.")
        return
    report.hazards = R.fit_cox(data, "duration", "event", covs)
    report.hazards.labels["mean_csat"] = "each extra point of a customer's mean CSAT"


def _engine_sbg_fits(report, engine, seg_col, n_boot, keep: dict) -> None:
    """sBG fits (all customers, then each segment with the rule of :func:`helpers.retention.fit_sbg_by`) from
    the engine's customer counts per (segment, cohort, lifetime, churned, exposure)."""
    from helpers.engine import aggregates as A

    counts = A.sbg_counts(engine, by=seg_col, as_of=report.observed_to)
    keep["sbg"] = counts
    try:
        report.sbg["all"] = A.fit_sbg_from_counts(counts, n_boot=n_boot, label="all customers")
    except KitError as exc:
        report.warnings.append(f"sBG for all customers: {exc}")
    if not seg_col:
        return
    R._check_horizon(report.horizon)
    rows, fits, skipped = [], {}, {}
    groups = counts.assign(_g=counts[seg_col].astype(str)).groupby("_g", sort=True)
    for key, g in groups:
        size = int(g["customers"].sum())
        if size < SBG_MIN_CUSTOMERS:
            skipped[key] = f"{size} customers"
            continue
        try:
            fit = A.fit_sbg_from_counts(g, n_boot=n_boot, label=key)
        except KitError as exc:
            skipped[key] = str(exc).split(";")[0]
            continue
        fits[key] = fit
        tab = fit.table
        proj = fit.projection(report.horizon).iloc[-1]
        h = report.horizon
        rows.append({seg_col: key, "customers": size, "alpha": fit.alpha, "alpha_low": tab.loc["alpha", "ci_low"],
                     "alpha_high": tab.loc["alpha", "ci_high"], "beta": fit.beta,
                     "beta_low": tab.loc["beta", "ci_low"], "beta_high": tab.loc["beta", "ci_high"],
                     f"survival_{h}": proj["survival"], f"survival_{h}_low": proj["ci_low"],
                     f"survival_{h}_high": proj["ci_high"]})
    report.sbg_groups = R.SBGGroups(table=pd.DataFrame(rows), fits=fits, by=seg_col, skipped=skipped)
    report.sbg.update(fits)
    for name, why in skipped.items():
        report.warnings.append(f"sBG projection for {value_label(name)} customers: {why}.")


def _engine_sbg_holdout(report, counts, seg_col, n_boot) -> None:
    """The held-out check on the first three signup cohorts, from the engine's sBG counts (the survivor counts of
    :func:`helpers.retention.cohort_survivors` for those customers)."""
    from helpers.engine import aggregates as A

    if counts is None or not report.has_dates:
        return
    if report.segment != "all" and seg_col:
        counts = counts[counts[seg_col].astype(str) == report.segment]
    if counts.empty:
        return
    first = counts["cohort"].min()
    old = counts[counts["cohort"] <= first + 2]
    months = int(old["exposure_periods"].min())
    if months - report.holdout < 3:
        raise report.too_little_history(f"the oldest cohorts are followed for {months} months, too few for a "
                                        f"{report.holdout}-month holdout (needs {report.holdout + 3})")
    size = int(old["customers"].sum())
    if size < 30:  # the rule of helpers.retention.cohort_survivors
        raise R.RetentionInputError(f"cohort has only {size} customers", table="customers",
                                    expected="at least 30 for a stable sBG fit")
    surv = A.cohort_survivor_counts(old.assign(cohort=first))
    report.sbg_check = R.sbg_holdout(surv["survivors"].to_numpy(), holdout=report.holdout, n_boot=n_boot,
                                     label=f"cohorts {first}-{first + 2}")


def _hazards(report, frame, responses, seg_col) -> None:
    data = frame
    if responses is not None and len(responses) and "csat" in responses.columns:
        sat = R.customer_satisfaction(responses, as_of=report.observed_to)
        data = frame.merge(sat[["customer_id", "mean_csat"]], on="customer_id", how="left")
    _fit_hazards(report, data, seg_col)


def _worth_inputs(ds, cfg) -> dict:
    from helpers.drivers_report import _cache_folder

    folder = _cache_folder(ds)
    has_customers = ds.has("customers")
    return {"has_customers": has_customers,
            "has_revenue": has_customers and ds.has("customers", "monthly_revenue"),
            "fingerprint": str(getattr(ds, "fingerprint", "") or ""),
            "cache_folder": folder.parent / "worth" if folder is not None else None,
            "drivers": list(getattr(cfg, "drivers", []) or []) or None, "config": cfg}


def _worth(report, customers, responses) -> None:
    """The corrected churn link and revenue at risk (shared with the drivers page through the run's cache)."""
    from helpers.drivers_report import company_worth_analysis

    inputs = report.worth_inputs
    if not inputs:  # a separate retention export: no survey answers to link
        inputs = {"has_customers": True, "has_revenue": "monthly_revenue" in customers.columns}
    day = report.observed_to if report.observed_to is not None else report.as_of
    if day is None:
        return
    report.worth = company_worth_analysis(customers, responses, day, currency=report.currency, **inputs)


def _engine_worth(report, engine, ds) -> None:
    """:func:`_worth` from the report's engine: the drivers page's computation
    (:func:`helpers.drivers_report.company_worth_analysis` with ``dataset=``: the chain and the churn link on one
    seeded sample of customers, :mod:`helpers.engine.worth_sample`, with customers and revenue per department x
    segment from aggregates and the sampling error in the intervals; the sample stated in the notes; shared with
    the drivers page through the run's cache, so both pages show the same numbers)."""
    from helpers.drivers_report import company_worth_analysis

    day = report.observed_to if report.observed_to is not None else report.as_of
    if day is None or not report.worth_inputs:
        return
    report.worth = company_worth_analysis(None, None, day, currency=report.currency, dataset=ds,
                                          **report.worth_inputs)
    sample = report.worth.sample
    report.worth_sample = tuple(sample) if sample and sample[0] < sample[1] else None


def _sbg_fits(report, frame, seg_col, n_boot) -> None:
    try:
        report.sbg["all"] = R.fit_sbg_durations(frame["lifetime_periods"], frame["sbg_churned"],
                                                frame["exposure_periods"], n_boot=n_boot, label="all customers")
    except KitError as exc:
        report.warnings.append(f"sBG for all customers: {exc}")
    if seg_col:
        report.sbg_groups = R.fit_sbg_by(frame, seg_col, n_boot=n_boot, horizon=report.horizon)
        report.sbg.update(report.sbg_groups.fits)
        for name, why in report.sbg_groups.skipped.items():
            report.warnings.append(f"sBG projection for {value_label(name)} customers: {why}.")


def _sbg_holdout(report, sel, n_boot) -> None:
    if not report.has_dates:
        return
    first = sel["cohort"].min()
    old = sel[sel["cohort"] <= first + 2]  # the first three monthly cohorts: the longest-observed customers
    months = int(old["exposure_periods"].min())
    if months - report.holdout < 3:
        raise report.too_little_history(f"the oldest cohorts are followed for {months} months, too few for a "
                                        f"{report.holdout}-month holdout (needs {report.holdout + 3})")
    surv = R.cohort_survivors(old)
    report.sbg_check = R.sbg_holdout(surv.to_numpy(), holdout=report.holdout, n_boot=n_boot,
                                     label=f"cohorts {first}-{first + 2}")


def _rate_forecast(report, sel, engine=None, chosen=None) -> None:
    if not report.has_dates:
        return
    if engine is None:
        rates = R.monthly_retention_rates(sel, as_of=report.observed_to)
    else:  # the same table from one engine query (helpers.engine.aggregates.retention_rate_counts)
        from helpers.engine import aggregates as A

        rates = A.retention_rate_counts(engine, as_of=report.observed_to, filters=chosen)
    need = report.holdout + 8
    if len(rates) < need:
        raise report.too_little_history(f"{len(rates)} full months with at least 20 customers, the forecast and "
                                        f"its {report.holdout}-month holdout check need {need}")
    report.rates = R.forecast_retention_rate(rates, horizon=report.horizon, holdout=report.holdout,
                                             label=report.segment_label)


def _row_margins(frame, seg_col, fits) -> dict:
    """``{fit name: (customers, average monthly revenue)}`` from the rows ("all" = every customer)."""
    out = {}
    for name in fits:
        g = frame if name == "all" else frame[frame[seg_col].astype(str) == name]
        out[name] = (len(g), float(g["monthly_revenue"].mean()) if "monthly_revenue" in g.columns else np.nan)
    return out


def _count_margins(counts, seg_col, fits) -> dict:
    """:func:`_row_margins` from :func:`helpers.engine.retention_queries.customer_counts` per segment."""
    out = {}
    for name in fits:
        g = counts if name == "all" else counts[counts[seg_col].astype(str) == name]
        n_rev = int(g["revenue_n"].sum())
        out[name] = (int(g["customers"].sum()), float(g["revenue_total"].sum()) / n_rev if n_rev else np.nan)
    return out


def _value(report, margins: dict, monthly_rate) -> None:
    """Lifetime value per sBG fit: margin x discounted expected lifetime, with the fit's interval."""
    rows = []
    for name, fit in report.sbg.items():
        customers, margin = margins[name]
        dl = fit.discounted_lifetime(monthly_rate)
        lo, hi = fit.discounted_lifetime_interval(monthly_rate) if len(fit.boot) else (np.nan, np.nan)
        rows.append({"segment": name, "customers": customers, "alpha": fit.alpha, "beta": fit.beta,
                     "expected_months_in_horizon": fit.expected_lifetime(horizon=report.horizon),
                     "del": dl, "del_low": lo, "del_high": hi, "monthly_margin": margin,
                     "clv": margin * dl, "clv_low": margin * lo, "clv_high": margin * hi})
    report.value = pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# Tables as stakeholders read them (the result objects' .table stay tidy for analysts)
# ---------------------------------------------------------------------------------------------------

def survival_table_html(km: R.KaplanMeierResult) -> str:
    """Kaplan-Meier medians per segment for readers: customers, have left, median months as a customer and its
    95% interval (printed as the sentences print them: :func:`helpers.retention.fmt_months`), share still a
    customer at the last month observed."""
    rows = []
    for _, r in km.medians.iterrows():
        rows.append({"Segment": "all customers" if km.group is None else value_label(r[km.group]),
                     "Customers": int(r["n"]), "Have left": int(r["events"]),
                     "Median months as a customer": R.fmt_months(r["median"]) if np.isfinite(r["median"])
                     else "not reached",
                     "95% CI (months)": R.fmt_months_interval(r["ci_low"], r["ci_high"]),
                     "Still a customer at the end": f"{fmt_percent(r['survival_at_end'], 0)} after "
                                                    f"{r['last_time']:.0f} months"})
    return _table(pd.DataFrame(rows), formats={"Customers": "int", "Have left": "int"})


def hazard_table_html(cox: R.CoxResult, caption: str = "") -> str:
    """The Cox model for readers: each factor's change of the monthly churn risk with its interval in the same
    words as the sentences ("60% lower", "56% to 63% lower"), the hazard ratio with its interval, the p-value."""
    rows = []
    for cov in cox.table.index:
        hr, lo, hi = cox.per_step(cov)
        point, interval = hazard_change_text(hr, lo, hi)
        label = cox.reader_label(cov)
        rows.append({"Factor": label[0].upper() + label[1:], "Change in monthly churn risk": point,
                     "95% CI": interval, "Hazard ratio": fmt_number(hr, 2),
                     "Hazard ratio 95% CI": fmt_interval(lo, hi, max(2, interval_decimals(lo, hi))),
                     "p-value": fmt_p_value(cox.table.loc[cov, "p_value"])})
    return _table(pd.DataFrame(rows), formats={c: "text" for c in ("Hazard ratio", "Hazard ratio 95% CI")},
                  caption=caption)
