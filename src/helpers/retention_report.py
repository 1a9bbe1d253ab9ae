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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import retention as R
from helpers.errors import KitError
from helpers.formatting import md_escape, shorten


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
        if self.frame is None:
            return "**The retention analysis could not run:** " + " ".join(md_escape(w) for w in self.warnings)
        sel = self.selected
        churned = int(sel["event"].sum())
        who = "customers (all segments)" if self.segment == "all" else md_escape(self.segment_label)
        lines = [f"**{len(sel):,} {who}** analysed as of {self._as_of_text()}; {churned:,} "
                 f"have left ({churned / max(len(sel), 1):.0%})."]
        fit = self.sbg.get(self.segment if self.segment != "all" else "all")
        if fit is not None:
            proj = fit.projection(12).iloc[-1]
            lines.append(f"Of a new cohort, **{proj['survival']:.0%}** are expected to still be customers after 12 "
                         f"months (95% CI {proj['ci_low']:.0%}-{proj['ci_high']:.0%}).")
        if self.hazards is not None and self.satisfaction_covariate:
            pct, lo, hi = self.hazards.hazard_change_per_unit(self.satisfaction_covariate)
            way = "lowers" if pct < 0 else "raises"
            lines.append(f"Each extra CSAT point (customer's mean rating) **{way} the monthly churn hazard by "
                         f"{abs(pct):.0f}%** (95% CI {abs(hi) if pct < 0 else lo:.0f}%-"
                         f"{abs(lo) if pct < 0 else hi:.0f}%), other factors held equal.")
        if self.rates is not None:
            fc = self.rates.table[self.rates.table["kind"] == "forecast"]["forecast"]
            lines.append(f"Keeping the forecast monthly retention ({fc.mean():.1%}) for a year retains about "
                         f"**{np.prod(fc.iloc[:12]):.0%}** of today's customers.")
        return "\n\n".join(lines)

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
        """Plain-language paragraph for stakeholders, with the uncertainty in it."""
        parts = []
        if self.survival is not None:
            parts.append(self.survival.summary())
        if self.hazards is not None:
            parts.append(self.hazards.summary())
        fit = self.sbg.get(self.segment if self.segment != "all" else "all")
        if fit is not None:
            parts.append(fit.summary(horizon=self.horizon))
        if self.sbg_check is not None:
            parts.append("Projection check on the oldest cohorts: " + self.sbg_check.summary())
        if self.rates is not None:
            parts.append(self.rates.summary())
        if self.value is not None and len(self.value):
            values = self.value.set_index("segment")
            key = self.segment if self.segment in values.index else "all"
            row = values.loc[key] if key in values.index else None  # no fit for it: nothing to value
            if row is not None and np.isfinite(row["clv"]):
                parts.append(f"At a {self.discount_rate:.0%} annual discount rate, a new customer ({key}) is worth "
                             f"about {row['clv']:,.0f} in revenue over their lifetime (95% CI {row['clv_low']:,.0f}-"
                             f"{row['clv_high']:,.0f}): {row['del']:.1f} discounted months of revenue.")
        if self.warnings:
            parts.append("Left out or limited: " + " ".join(self.warnings))
        return " ".join(parts)

    def summary_markdown(self) -> str:
        """:meth:`plain_summary` made inert for Markdown (segment names and messages come from the data)."""
        return md_escape(self.plain_summary())

    def status_counts(self) -> dict[str, int]:
        return {}


def _load_customers(data_source: str, report_config: str, as_of: str, report: RetentionReport):
    """Read settings and the customer table (plus responses when the dataset has them)."""
    from helpers.config import load_report_config, repo_root, resolve_data_source, resolve_retention_file
    from helpers.data import is_snapshot, load_dataset, load_retention_table

    root = repo_root()
    cfg_path = Path(report_config)
    if not cfg_path.is_absolute():
        cfg_path = root / cfg_path
    cfg = load_report_config(cfg_path)
    settings = cfg.retention
    responses = None
    last_date = None
    file = resolve_retention_file(cfg, cfg_path)
    if file is not None:
        if not file.exists():
            raise R.RetentionInputError(f"retention file {file} not found", table="retention.file")
        customers = load_retention_table(cfg, config_path=cfg_path)  # checks the configured columns exist
        report.source = str(file)
    else:
        source = Path(data_source) if data_source else resolve_data_source(cfg)
        if not source.is_absolute():
            source = root / source
        snapshot = is_snapshot(source)
        # the data as of the report date: later signups, answers and tickets left out, later churn censored
        ds = load_dataset(source, column_mapping=None if snapshot else (cfg.column_mapping or None),
                          validate=not snapshot, emit_warnings=False, as_of=as_of or None)
        try:
            customers, responses = ds.customers, ds.responses
            report.source = ds.origin
            report.warnings.extend(ds.excluded_messages())
            last_date = ds.date_range()[1]
            if not as_of:
                report.as_of = ds.default_as_of()
        finally:
            ds.close()
    if as_of:
        report.as_of = pd.Timestamp(as_of)
    report.data_end = None if last_date is None or pd.isna(last_date) else pd.Timestamp(last_date).normalize()
    return settings, customers, responses


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
        settings, customers, responses = _load_customers(data_source, report_config, as_of, report)
        frame = _survival_data(customers, settings, report)
    except KitError as exc:
        report.warnings.append(str(exc))
        return report
    seg_col = settings.segment_column if settings.segment_column in frame.columns else None
    if settings.segment_column and seg_col is None:
        report.warnings.append(f"segment column {shorten(settings.segment_column)} is not in the customer table; "
                               "no segments are compared.")
    report.segment_column = seg_col
    if seg_col is None and report.segment != "all":
        report.warnings.append(f"segment {shorten(report.segment)} asked for but there are no segments: showing all.")
        report.segment = "all"
    if seg_col is not None and report.segment != "all" and \
            report.segment not in set(frame[seg_col].astype(str)):
        known = sorted(frame[seg_col].astype(str).unique())
        report.warnings.append(f"segment {shorten(report.segment)} is not in column {shorten(seg_col)} (known: "
                               f"{', '.join(shorten(k, 40) for k in known[:12])}{' ...' if len(known) > 12 else ''}); "
                               "showing all customers.")
        report.segment = "all"
    report.frame = frame
    sel = report.selected

    _run(report, "cohort table", lambda: setattr(report, "cohorts", R.cohort_table(sel))
         if report.has_dates else None)
    _run(report, "survival curves", lambda: setattr(report, "survival", R.kaplan_meier(frame, group=seg_col)))
    _run(report, "satisfaction and churn", lambda: _hazards(report, frame, responses, seg_col, settings))
    _run(report, "sBG projections", lambda: _sbg_fits(report, frame, seg_col, n_boot))
    _run(report, "sBG holdout check", lambda: _sbg_holdout(report, sel, n_boot))
    _run(report, "retention-rate forecast", lambda: _rate_forecast(report, sel))
    _run(report, "lifetime value", lambda: _value(report, frame, seg_col, monthly_rate))
    return report


def _run(report: RetentionReport, what: str, step) -> None:
    try:
        step()
    except KitError as exc:
        report.warnings.append(f"{what}: {exc}")


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
        # the last day the data covers: answers/tickets (dataset) or the customers' own dates
        data_end = max(d for d in (report.data_end, signup.max(), ends.max()) if d is not None and not pd.isna(d))
        report.data_end = pd.Timestamp(data_end).normalize()
        if report.as_of is None:
            report.as_of = report.data_end
        report.observed_to = min(report.as_of, report.data_end)
        if report.observed_to < report.as_of:
            report.warnings.append(f"The data end on {report.data_end.date()}, before the as-of date "
                                   f"{report.as_of.date()}: customers without an end date are counted as customers "
                                   f"up to {report.data_end.date()} only (nothing is known after it).")
        later = signup > report.observed_to
        if later.all():
            first = signup.min()
            raise report.too_little_history(
                f"all {len(renamed):,} customers signed up later"
                + (f" (the first on {first.date()})" if not pd.isna(first) else ""))
        if later.any():
            renamed = renamed[~later]
            report.warnings.append(f"{int(later.sum()):,} customers who signed up after the as-of date "
                                   f"{report.observed_to.date()} are not counted.")
        frame = R.customer_durations(renamed, as_of=report.observed_to)
        report.has_dates = True
    if id_col != "customer_id":
        frame["customer_id"] = frame[id_col].astype(str)
    return frame


def _hazards(report, frame, responses, seg_col, settings) -> None:
    covs = []
    data = frame
    if responses is not None and len(responses) and "csat" in responses.columns:
        sat = R.customer_satisfaction(responses, as_of=report.observed_to)
        data = frame.merge(sat[["customer_id", "mean_csat"]], on="customer_id", how="left")
        if data["mean_csat"].notna().sum() >= 30:
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
            report.warnings.append(f"sBG for {name}: {why}.")


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


def _rate_forecast(report, sel) -> None:
    if not report.has_dates:
        return
    rates = R.monthly_retention_rates(sel, as_of=report.observed_to)
    need = report.holdout + 8
    if len(rates) < need:
        raise report.too_little_history(f"{len(rates)} full months with at least 20 customers, the forecast and "
                                        f"its {report.holdout}-month holdout check need {need}")
    report.rates = R.forecast_retention_rate(rates, horizon=report.horizon, holdout=report.holdout,
                                             label=report.segment_label)


def _value(report, frame, seg_col, monthly_rate) -> None:
    rows = []
    for name, fit in report.sbg.items():
        g = frame if name == "all" else frame[frame[seg_col].astype(str) == name]
        margin = float(g["monthly_revenue"].mean()) if "monthly_revenue" in g.columns else np.nan
        dl = fit.discounted_lifetime(monthly_rate)
        lo, hi = fit.discounted_lifetime_interval(monthly_rate) if len(fit.boot) else (np.nan, np.nan)
        rows.append({"segment": name, "customers": len(g), "alpha": fit.alpha, "beta": fit.beta,
                     "expected_months_in_horizon": fit.expected_lifetime(horizon=report.horizon),
                     "del": dl, "del_low": lo, "del_high": hi, "monthly_margin": margin,
                     "clv": margin * dl, "clv_low": margin * lo, "clv_high": margin * hi})
    report.value = pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# Tables as stakeholders read them (the result objects' .table stay tidy for analysts)
# ---------------------------------------------------------------------------------------------------

def format_p_value(p: float) -> str:
    """A p-value as readers expect it: "<0.001" below one in a thousand, otherwise three decimals."""
    if p is None or not np.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _interval(low: float, high: float, digits: int = 1) -> str:
    fmt = f"{{:,.{digits}f}}"
    lo = fmt.format(low) if np.isfinite(low) else "n/a"
    hi = fmt.format(high) if np.isfinite(high) else "not reached"
    return f"{lo} to {hi}"


def survival_display(medians: pd.DataFrame) -> pd.DataFrame:
    """Kaplan-Meier medians per segment with readable headers: customers, churned, median months and its
    95% interval, share still a customer at the last observed month."""
    rows = {}
    for _, r in medians.iterrows():
        rows[str(r.iloc[0])] = {
            "customers": f"{int(r['n']):,}", "churned": f"{int(r['events']):,}",
            "median months as a customer": f"{r['median']:.1f}" if np.isfinite(r["median"]) else "not reached",
            "95% CI": _interval(r["ci_low"], r["ci_high"]),
            "still a customer at the end": f"{r['survival_at_end']:.0%} after {r['last_time']:.0f} months"}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = medians.columns[0]
    return out


def hazard_display(cox) -> pd.DataFrame:
    """The Cox table with the chart's labels, hazard ratios with their 95% interval and readable p-values."""
    t = cox.table
    out = pd.DataFrame({
        "hazard ratio": [f"{v:.2f}" for v in t["hazard_ratio"]],
        "95% CI": [_interval(lo, hi, 2) for lo, hi in zip(t["ci_low"], t["ci_high"])],
        "change in monthly churn hazard": [f"{100 * (v - 1):+.0f}%" for v in t["hazard_ratio"]],
        "p-value": [format_p_value(p) for p in t["p_value"]],
    }, index=[cox.labels.get(c, c) for c in t.index])
    out.index.name = "factor"
    return out
