"""Everything the ``satisfaction_drivers`` report notebook shows, prepared in one call, and the one driver
analysis per department that every page shows.

* :func:`prepare_drivers_report` loads config + data through the report layer's loader
  (:func:`helpers.reports.loader.load_report_inputs`), selects the responses (department, period) and runs the
  analyses of :mod:`helpers.drivers_analysis` on engine aggregates (the period's rating patterns with their
  counts; the response rows only when no engine can be opened or a query fails). The notebook only displays
  what the :class:`DriversReport` offers: findings (at most six sentences, each with its number and
  interval), reader tables (HTML through :func:`helpers.formatting.reader_table`) and charts
  (:func:`show_chart`). Input problems (an unknown department, too few responses...) never crash the page:
  they become ``warnings`` shown at the top.
* :func:`department_driver_analysis` is **the** driver analysis of one department: one period rule (the
  :data:`DEPARTMENT_MONTHS` months up to the as-of date), one seed (:data:`SEED`, split per department), one
  bootstrap count (:data:`DEPARTMENT_N_BOOT`) and one sample rule (:func:`helpers.reports.loader.
  driver_min_responses`). The drivers page's department comparison and the department page call it, so both
  show the same shares. It is computed from engine aggregates (the department's distinct rating patterns with
  their counts), not from the department's rows. Within a run (data from a run's snapshot) the result is cached
  in the run folder (``cache/drivers/<department>-<key>.pkl``, keyed by department, settings and the data's
  fingerprint; :func:`cached_once`: written atomically, under a file lock): whichever report computes it first
  writes it, the others wait for it and read it.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.drivers import DriverInputError
from helpers.drivers_analysis import (DriverAnalysis, SegmentDrivers, _label, analyze_drivers,
                                      analyze_drivers_from_patterns, headed_table, ordinal_check,
                                      ordinal_check_from_patterns, patterns_usable_rows, select_responses,
                                      share_text)
from helpers.engine import EngineError, open_report_engine
from helpers.engine.poisson_bootstrap import rating_patterns
from helpers.errors import KitError
from helpers.formatting import (NA, column_label, fmt_interval, fmt_number, fmt_p_value, html_escape, md_escape,
                                reader_table, shorten, slug)

SEED = 20261125  # fixed so a report run is reproducible
DEPARTMENT_N_BOOT = 200  # bootstrap re-samples of every per-department driver analysis (all pages)
DEPARTMENT_MONTHS = 12  # a department's driver analysis covers the months up to the as-of date
CACHE_VERSION = 2  # bump when DepartmentDrivers or the analysis changes: old cache files are then not read
# (2: computed from the engine's rating patterns, DepartmentDrivers.engine)


# ----------------------------------------------------------------------------------------------------------
# One driver analysis per department, shared by every page
# ----------------------------------------------------------------------------------------------------------
@dataclass
class DepartmentDrivers:
    """The driver analysis of one department (``analysis`` None with a ``message`` when it cannot be made)."""

    department: str
    period: tuple[str, str]
    outcome: str
    drivers: list[str]
    n_usable: int
    min_n: int
    analysis: DriverAnalysis | None = None
    message: str = ""
    settings: dict = field(default_factory=dict)
    engine: str = ""  # the engine whose rating patterns gave the analysis ("" = the rows in memory)

    @property
    def shares(self) -> pd.Series:
        """Share of explained variance per attribute (empty without an analysis)."""
        return pd.Series(dtype=float) if self.analysis is None else self.analysis.table["share"]


def department_window(as_of: object, months: int = DEPARTMENT_MONTHS) -> tuple[str, str]:
    """``(start, end)`` ISO dates of the ``months`` months up to ``as_of`` (inclusive)."""
    end = pd.Timestamp(as_of).normalize()
    start = end - pd.DateOffset(months=months) + pd.Timedelta(days=1)
    return f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}"


def department_seed(department: str, seed: int = SEED) -> np.random.SeedSequence:
    """The department's own random stream: independent across departments, the same on every page."""
    return np.random.SeedSequence([int(seed), zlib.crc32(slug(department).encode("utf-8"))])


def _usable_rows(data: pd.DataFrame, outcome: str, drivers: list[str]) -> int:
    """Complete rows for the analysis (an attribute nobody in the selection answered does not count against it,
    as in :func:`helpers.drivers_analysis.analyze_by_segment`)."""
    if data.empty or outcome not in data.columns:
        return 0
    answered = [d for d in drivers if d in data.columns and data[d].notna().any()]
    ok = data[outcome].notna()
    for d in answered:
        ok &= data[d].notna()
    return int(ok.sum())


def _resolve_department(names: list[str], department: str) -> str | None:
    for n in names:
        if n == department or slug(n) == slug(department):
            return n
    return None


def _cache_folder(dataset) -> Path | None:
    from helpers.data import is_snapshot

    source = Path(str(getattr(dataset, "source", "") or ""))
    try:
        if source.is_file() and is_snapshot(source):
            return source.resolve().parent / "cache" / "drivers"
    except OSError:
        return None
    return None


def cached_once(file: Path | None, settings: dict, kind: type, compute):
    """``compute()`` once per run: the result is stored in ``file`` (pickled, written atomically) and read back
    by every later call with the same ``settings`` (a result of type ``kind`` whose ``.settings`` equal them);
    while one process computes it, the others wait on a file lock next to it (``<file>.lock``) and then read
    it. ``file`` None: no cache, ``compute()``. An unreadable or stale file is recomputed, never shown; a
    read-only folder or an unpicklable result is returned without being stored."""
    import fcntl

    from helpers.reports import atomic_write_bytes

    if file is None:
        return compute()
    lock = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        lock = open(file.with_suffix(".lock"), "a")  # noqa: SIM115 - held until the result is written
        fcntl.flock(lock, fcntl.LOCK_EX)  # another page computes it: wait, then read
    except OSError:
        if lock is not None:
            lock.close()
        lock = None
    try:
        if file.is_file():
            try:
                with file.open("rb") as fh:
                    cached = pickle.load(fh)  # noqa: S301 - written by this function into the run's own folder
                if isinstance(cached, kind) and getattr(cached, "settings", None) == settings:
                    return cached
            except Exception:  # noqa: BLE001 - an unreadable cache file is recomputed, never shown
                pass
        result = compute()
        try:
            atomic_write_bytes(file, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, pickle.PicklingError, AttributeError, TypeError):
            pass  # a read-only run folder or an unpicklable part: the result is still returned
        return result
    finally:
        if lock is not None:
            lock.close()  # releases the flock


def department_driver_analysis(dataset, config, department: str, as_of: object = None, *,
                               period: tuple[str, str] | None = None, responses=None,
                               outcome: str = "", drivers: list[str] | None = None,
                               n_boot: int = DEPARTMENT_N_BOOT, seed: int = SEED,
                               cache: bool | str | Path = True, engine=None) -> DepartmentDrivers:
    """The one driver analysis of ``department`` (display name or slug) that every page shows.

    ``dataset``: a :class:`helpers.data.Dataset` (its ``responses``, ``fingerprint`` and ``source``);
    ``config``: the :class:`helpers.config.ReportConfig` (outcome, drivers, ``min_responses``); ``as_of``: the
    report date (None: the dataset's :meth:`default_as_of`). The period is the :data:`DEPARTMENT_MONTHS` months
    up to ``as_of`` unless ``period`` is given. The analysis comes from engine aggregates: the engine of the
    report config (``config.engine``, DuckDB by default, over the dataset) returns the department's distinct
    rating patterns with their counts (:func:`helpers.engine.poisson_bootstrap.rating_patterns`; memory follows
    the number of patterns, not of responses) and
    :func:`helpers.drivers_analysis.analyze_drivers_from_patterns` gives the same point estimates as
    :func:`helpers.drivers_analysis.analyze_drivers` on the rows (listwise deletion), with intervals from
    ``n_boot`` pattern re-samples (the row bootstrap's distribution) under the department's own seed
    (:func:`department_seed`); no ordinal check. ``engine``: an open engine to use (left open; None = open
    and close the config's through :func:`helpers.engine.open_report_engine`). Only when no engine can be
    reached, or its query fails, are the rows read (``responses``: a frame or a function returning one, e.g.
    the department's rows, called only then; None = the dataset's) and analysed in memory. Below
    :func:`helpers.reports.loader.driver_min_responses` usable responses there is no analysis and ``message``
    says why. ``cache``: True = the run folder's cache when the data is a run's snapshot; a folder = there;
    False = no cache."""
    from helpers.reports.loader import driver_min_responses

    outcome = outcome or getattr(config, "outcome", "csat") or "csat"
    drivers = list(drivers or getattr(config, "drivers", []) or []) or list(dataset.attributes)
    name = _resolve_department(list(dataset.departments), department) or str(department)
    if period is None:
        period = department_window(as_of if as_of is not None else dataset.default_as_of())
    min_n = driver_min_responses(getattr(config, "min_responses", 30) or 30, len(drivers))
    settings = {"version": CACHE_VERSION, "department": name, "period": list(period), "outcome": outcome,
                "drivers": drivers, "n_boot": int(n_boot), "seed": int(seed), "min_n": int(min_n),
                "ordinal": False, "data": str(getattr(dataset, "fingerprint", ""))}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()[:20]
    folder = (_cache_folder(dataset) if cache is True else Path(cache) if cache else None)
    file = folder / f"{slug(name) or 'department'}-{key}.pkl" if folder is not None else None

    def compute() -> DepartmentDrivers:
        result = DepartmentDrivers(department=name, period=(str(period[0]), str(period[1])), outcome=outcome,
                                   drivers=drivers, n_usable=0, min_n=min_n, settings=settings)
        own = engine is None
        eng = open_report_engine(dataset, config)[0] if own else engine
        try:
            if eng is not None:
                try:
                    _department_from_engine(result, eng, eng.columns("responses"), seed, n_boot)
                    return result
                except KitError:  # the engine failed (not the data: those problems are in result.message)
                    result.engine, result.n_usable, result.message = "", 0, ""
            rows = dataset.responses if responses is None else responses() if callable(responses) else responses
            _department_from_rows(result, rows, seed, n_boot)
            return result
        finally:
            if own and eng is not None:
                eng.close()

    return cached_once(file, settings, DepartmentDrivers, compute)


def _missing_message(missing: list[str]) -> str:
    return (f"the responses have no column {', '.join(column_label(c) for c in missing)}, "
            "so there is no driver analysis")


def _too_few_message(result: DepartmentDrivers) -> str:
    period = result.period
    return (f"too few answers for a driver analysis: {result.n_usable:,} complete responses between "
            f"{period[0]} and {period[1]}, at least {result.min_n:,} needed (the minimum number of responses in "
            "report.yaml, and 10 per attribute)")


def _department_from_engine(result: DepartmentDrivers, engine, columns: list[str], seed: int, n_boot: int) -> None:
    """The analysis from the engine's rating patterns of the department and period
    (:func:`helpers.engine.poisson_bootstrap.rating_patterns`, missing values kept; answer-sized) through
    :func:`helpers.drivers_analysis.analyze_drivers_from_patterns`: the same point estimates as the rows."""
    from helpers.engine.poisson_bootstrap import rating_patterns

    name, period, outcome, drivers = result.department, result.period, result.outcome, result.drivers
    missing = [c for c in [outcome, *drivers] if c not in columns]
    if missing:
        result.message = _missing_message(missing)
        return
    patterns = rating_patterns(engine, [outcome, *drivers], filters={"department": name}, start=period[0],
                               end=period[1])
    result.engine = engine.name
    result.n_usable = patterns_usable_rows(patterns, outcome, drivers)
    if result.n_usable < result.min_n:
        result.message = _too_few_message(result)
        return
    try:
        result.analysis = analyze_drivers_from_patterns(patterns, outcome, drivers, n_boot=n_boot,
                                                        seed=department_seed(name, seed),
                                                        label=f"{name}, {period[0]} to {period[1]}",
                                                        min_n=result.min_n)
    except KitError as exc:
        result.message = f"no driver analysis: {exc}"


def _department_from_rows(result: DepartmentDrivers, frame: pd.DataFrame, seed: int, n_boot: int) -> None:
    """The row path (no engine reachable): the department's responses in memory through
    :func:`helpers.drivers_analysis.analyze_drivers`."""
    name, period, outcome, drivers = result.department, result.period, result.outcome, result.drivers
    missing = [c for c in [outcome, *drivers] if c not in frame.columns]
    if missing:
        result.message = _missing_message(missing)
        return
    try:
        data = select_responses(frame, name, *period)
    except KitError:
        data = frame.iloc[0:0]
    result.n_usable = _usable_rows(data, outcome, drivers)
    if result.n_usable < result.min_n:
        result.message = _too_few_message(result)
        return
    try:
        result.analysis = analyze_drivers(data, outcome, drivers, n_boot=n_boot, seed=department_seed(name, seed),
                                          ordinal=False, label=f"{name}, {period[0]} to {period[1]}",
                                          min_n=result.min_n)
    except KitError as exc:
        result.message = f"no driver analysis: {exc}"


# ----------------------------------------------------------------------------------------------------------
# What satisfaction is worth (issue 15): one computation per run, shown by both company pages
# ----------------------------------------------------------------------------------------------------------
WORTH_N_BOOT = 200  # joint customer resamples of the satisfaction-value chain and of the churn link
WORTH_DELTA = 0.5  # the improvement priced on the drivers page: half a point of an attribute's ratings
WORTH_TOP = 3  # drivers priced
WORTH_HORIZON = 12  # months
WORTH_VERSION = 1  # bump when CompanyWorthPage or the chain changes: old cache files are then not read


@dataclass
class CompanyWorthPage:
    """What the company pages show of issue 15: ``drivers`` (the chain for the top drivers, a
    :class:`helpers.impact_report.WorthTable`), ``risk`` (revenue at risk per department and segment) and
    ``link`` (:class:`helpers.churn_link.ChurnLinkResult`: naive and corrected hazard ratio per CSAT point and
    the reliability of the mean rating). A part that cannot be estimated is None and its ``*_message`` says
    what is missing, in one line."""

    as_of: str
    currency: str
    n_boot: int = WORTH_N_BOOT
    delta: float = WORTH_DELTA
    horizon: int = WORTH_HORIZON
    drivers: object = None
    risk: object = None
    link: object = None
    chain_message: str = ""
    link_message: str = ""
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)
    sample: tuple | None = None  # (sample size, population) when the chain ran on a seeded sample (engine path)


def _worth_missing(customers: pd.DataFrame | None, responses: pd.DataFrame | None, has_customers: bool,
                   has_revenue: bool) -> tuple[str, str]:
    """(chain message, link message): what the data lack for the chain and for the churn link, or ""."""
    if not has_customers or customers is None or not len(customers):
        m = ("needs the customers table (signup and churn dates, monthly revenue), which the data do not have: "
             "add customers to the data folder")
        return m, m
    if responses is None or not len(responses) or "csat" not in responses.columns:
        m = "needs CSAT answers of the customers, which the data do not have"
        return m, m
    if not has_revenue:
        return ("needs each customer's monthly revenue, which the customers table does not have (the "
                "satisfaction-churn link below does not need it)"), ""
    return "", ""


def company_worth_analysis(customers: pd.DataFrame | None, responses: pd.DataFrame | None, as_of: object, *,
                           currency: str = "", drivers: list[str] | None = None, has_customers: bool = True,
                           has_revenue: bool = True, fingerprint: str = "", cache_folder: Path | None = None,
                           n_boot: int = WORTH_N_BOOT, seed: int = SEED, dataset=None,
                           config=None) -> CompanyWorthPage:
    """The chain for the top :data:`WORTH_TOP` drivers, revenue at risk (per department and segment; reference:
    the median customer's satisfaction) and the corrected satisfaction -> churn link, as of ``as_of`` (the
    day customers are followed up to), with ``n_boot`` joint customer resamples
    (:func:`helpers.impact_report.company_worth` with no objectives: one chain for drivers and risk;
    :func:`helpers.churn_link.fit_churn_link`). Both company pages call it; in a run the result is cached in
    the run folder (``cache/worth/``, keyed by the data's fingerprint, the date and the settings) and a page
    that finds the other computing it waits for it (a file lock), so the run computes it once.
    ``drivers``: the attributes to consider (None: every ``attr_*`` column). Never raises for data problems:
    a part that cannot be estimated is None with a one-line reason. ``dataset`` (a :class:`helpers.data.Dataset`,
    with the report ``config``): the engine path instead of the frames (:func:`_compute_worth_engine`: a seeded
    sample of customers, customers and revenue from aggregates)."""
    import time

    day = pd.Timestamp(as_of).normalize()
    settings = {"version": WORTH_VERSION, "as_of": f"{day:%Y-%m-%d}", "currency": str(currency or ""),
                "drivers": list(drivers or []), "n_boot": int(n_boot), "seed": int(seed), "delta": WORTH_DELTA,
                "top": WORTH_TOP, "horizon": WORTH_HORIZON, "data": str(fingerprint),
                "has": [bool(has_customers), bool(has_revenue)]}
    if dataset is not None:
        from helpers.engine.worth_sample import DEFAULT_SIZE  # noqa: PLC0415

        settings["sample"] = DEFAULT_SIZE
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()[:20]
    file = Path(cache_folder) / f"worth-{key}.pkl" if cache_folder is not None and fingerprint else None
    return cached_once(file, settings, CompanyWorthPage,
                       lambda: _compute_worth_engine(dataset, config, day, settings, has_customers, has_revenue,
                                                     time.perf_counter) if dataset is not None else
                       _compute_worth(customers, responses, day, settings, has_customers, has_revenue,
                                      time.perf_counter))


def _picklable(table):
    """The WorthTable without callable column formats (a lambda cannot go into the run's cache); the pages
    that show it give their own (e.g. :func:`dimension_label`)."""
    import dataclasses

    return dataclasses.replace(table, formats={k: v for k, v in table.formats.items() if not callable(v)})


def dimension_label(value) -> str:
    """'all' -> 'Company', 'department' -> 'Department' (the revenue-at-risk table's first column)."""
    return "Company" if value == "all" else column_label(value)


def _compute_worth(customers, responses, day, settings, has_customers, has_revenue, clock) -> CompanyWorthPage:
    from helpers import churn_link as CL
    from helpers import impact as I
    from helpers import impact_report as IR
    from helpers.retention import customer_durations

    start = clock()
    currency = I.resolve_currency(settings["currency"] or None)
    out = CompanyWorthPage(as_of=settings["as_of"], currency=currency, n_boot=settings["n_boot"],
                           settings=settings)
    out.chain_message, out.link_message = _worth_missing(customers, responses, has_customers, has_revenue)
    if not out.chain_message:
        attrs = [d for d in (settings["drivers"] or []) if d in responses.columns] or None
        try:
            cw = IR.company_worth([], customers, responses, drivers=None, attributes=attrs, delta=WORTH_DELTA,
                                  top=WORTH_TOP, as_of=day, horizon=WORTH_HORIZON, n_boot=settings["n_boot"],
                                  seed=settings["seed"] % (2 ** 32), currency=currency)
            out.drivers, out.risk = _picklable(cw.drivers), _picklable(cw.risk)
        except (KitError, np.linalg.LinAlgError) as exc:
            out.chain_message = f"cannot be estimated from these data: {exc}"
    if not out.link_message:
        try:
            r = responses[pd.to_datetime(responses["response_date"]) <= day]
            known = customers[pd.to_datetime(customers["signup_date"], errors="coerce") <= day]  # as of the day
            surv = customer_durations(known, as_of=day)
            covs = ("segment",) if "segment" in surv.columns and surv["segment"].nunique() > 1 else ()
            out.link = CL.fit_churn_link(surv, CL.rating_summary(r), covs, n_boot=settings["n_boot"],
                                         seed=settings["seed"] % (2 ** 32))
        except (KitError, np.linalg.LinAlgError) as exc:
            out.link_message = f"cannot be estimated from these data: {exc}"
    out.seconds = clock() - start
    return out


def _compute_worth_engine(dataset, config, day, settings, has_customers, has_revenue, clock) -> CompanyWorthPage:
    """:func:`_compute_worth` from the report's engine (:func:`helpers.engine.open_report_engine`): the chain and
    the churn link on one seeded sample of ``settings["sample"]`` customers (:mod:`helpers.engine.worth_sample`;
    stated in the notes), customers and revenue per department x segment from aggregates
    (:func:`helpers.impact_report.company_worth_engine`). Equal to the frames' result when the sample holds every
    customer; the frames only when the engine cannot be opened."""
    from helpers import churn_link as CL
    from helpers import impact as I
    from helpers import impact_report as IR
    from helpers.engine import open_report_engine
    from helpers.engine.worth_sample import worth_sample

    engine, note = open_report_engine(dataset, config)
    if engine is None:
        out = _compute_worth(dataset.customers if has_customers else None,
                             dataset.responses if dataset.has("responses") else None, day, settings, has_customers,
                             has_revenue, clock)
        if note and out.drivers is not None:
            out.drivers.notes.append(note)
        return out
    start = clock()
    out = CompanyWorthPage(as_of=settings["as_of"], currency=I.resolve_currency(settings["currency"] or None),
                           n_boot=settings["n_boot"], settings=settings)
    seed = settings["seed"] % (2 ** 32)
    try:
        columns = engine.columns("responses") if engine.has("responses") else []
        has_customers = has_customers and engine.has("customers")
        answered = int(engine.query("SELECT count(*) AS n FROM responses")["n"].iloc[0]) if columns else 0
        out.chain_message, out.link_message = _worth_missing(  # the same messages as the frames' path
            pd.DataFrame(index=[0]) if has_customers else None,
            pd.DataFrame(columns=columns, index=range(min(answered, 1))), has_customers, has_revenue)
        attrs = [d for d in (settings["drivers"] or []) if d in columns] or None
        sample = None
        if not (out.chain_message and out.link_message):
            try:
                sample = worth_sample(engine, settings["sample"], seed, day, attributes=attrs)
                out.sample = (sample.size, sample.population_size)
            except (KitError, np.linalg.LinAlgError) as exc:
                out.chain_message = out.chain_message or f"cannot be estimated from these data: {exc}"
                out.link_message = out.link_message or f"cannot be estimated from these data: {exc}"
        if not out.chain_message:
            try:
                cw = IR.company_worth_engine([], engine, drivers=None, attributes=attrs, delta=WORTH_DELTA,
                                             top=WORTH_TOP, as_of=day, horizon=WORTH_HORIZON,
                                             n_boot=settings["n_boot"], seed=seed, currency=out.currency,
                                             sample=sample)
                out.drivers, out.risk = _picklable(cw.drivers), _picklable(cw.risk)
            except (KitError, np.linalg.LinAlgError) as exc:
                out.chain_message = f"cannot be estimated from these data: {exc}"
        if not out.link_message:
            try:
                surv, ratings = IR.churn_link_inputs(sample)
                covs = ("segment",) if "segment" in surv.columns and surv["segment"].nunique() > 1 else ()
                out.link = CL.fit_churn_link(surv, ratings, covs, n_boot=settings["n_boot"], seed=seed)
                if not sample.covers_all:
                    out.link.notes.append(IR.link_sample_note(sample))
            except (KitError, np.linalg.LinAlgError) as exc:
                out.link_message = f"cannot be estimated from these data: {exc}"
    finally:
        engine.close()
    out.seconds = clock() - start
    return out


# ----------------------------------------------------------------------------------------------------------
# The drivers page
# ----------------------------------------------------------------------------------------------------------
@dataclass
class DriversReport:
    department: str
    outcome: str
    drivers: list[str]
    period: tuple[str, str]
    n_boot: int
    company: str = ""
    source: str = ""  # the data's name for readers (never a machine path)
    as_of: str = ""
    main: DriverAnalysis | None = None
    by_department: SegmentDrivers | None = None
    departments: dict[str, DepartmentDrivers] = field(default_factory=dict)
    differences: pd.DataFrame | None = None
    worth: CompanyWorthPage | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        """Plain text (escape it for Markdown with :func:`helpers.formatting.md_escape`)."""
        who = "all departments" if self.department.lower() == "all" else self.department
        return f"Drivers of {_label(self.outcome)}: {who}"

    @property
    def who(self) -> str:
        return "all departments" if self.department.lower() == "all" else self.department

    # ------------------------------------------------------------------ text
    def headline_markdown(self, notes: bool = True) -> str:
        """Period, outcome, attributes, the data's name and as-of date, and (``notes``) the notes; free text
        escaped. In a run the notes are the page's "Data notes" box (the summary's warnings): ``notes=False``."""
        lines = [f"**Responses from:** {md_escape(self.who)} · "
                 f"**Period:** {md_escape(self.period[0])} to {md_escape(self.period[1])} · "
                 f"**Outcome:** {md_escape(_label(self.outcome))} · "
                 f"**Attributes ({len(self.drivers)}):** {', '.join(md_escape(_label(d)) for d in self.drivers)}"]
        if self.source:
            lines.append(f"**Data:** {md_escape(self.source)}"
                         + (f", as of {md_escape(self.as_of)}" if self.as_of else ""))
        if self.main is not None and self.main.attrs.get("n_boot"):
            a = self.main.attrs
            text = f"**Intervals:** 95%, from {a['n_boot']:,} bootstrap re-samples of the responses"
            if a.get("n_boot_reason"):
                text += f" ({a.get('n_boot_requested', a['n_boot']):,} requested; " + md_escape(
                    a["n_boot_reason"].split(": ", 1)[-1]) + ")"
            lines.append(text + ".")
        if self.warnings and notes:
            lines.append("**Please note:**\n\n" + "\n".join(f"- {md_escape(w)}" for w in self.warnings))
        return "\n\n".join(lines)

    def findings(self) -> list[str]:
        """At most six findings, each one Markdown sentence with its number and interval (numbers rounded as in
        the tables below them)."""
        m = self.main
        if m is None:
            return []
        t = m.table
        top = t.index[0]
        out = [f"**{md_escape(_label(top))} matters most** for {md_escape(_label(self.outcome))}: "
               + _share_sentence(t, top) + " of what the attributes explain."]
        ff = m.fix_first
        if ff:
            out.append("**Fix first:** " + _join(f"{md_escape(_label(d))} ({_share_of(t, d)}; rated "
                                                 f"{fmt_number(t.loc[d, 'performance'], 2)})" for d in ff)
                       + f", which matter more than average and are rated below the attributes' average of "
                       f"{fmt_number(m.ipa.performance_cut, 2)}.")
        else:
            out.append("No attribute is both important and rated below average: protect the strongest ones.")
        r2 = f"{fmt_number(100 * m.r2, 0)}%"
        if m.r2_ci:
            d = _percent_decimals(m.r2_ci[0], m.r2_ci[1])
            r2 = f"{fmt_number(100 * m.r2, d)}% (95% CI {fmt_interval(m.r2_ci[0], m.r2_ci[1], d, percent=True)})"
        out.append(f"Together the {len(t)} attributes explain {r2} of the differences in "
                   f"{md_escape(_label(self.outcome))} between {m.n:,} responses; the rest depends on things the "
                   "survey does not ask about.")
        dep = self.department_finding()
        if dep:
            out.append(dep)
        over = [d for d in t.index if t.loc[d].get("quadrant") == "possible overkill"]
        if over:
            out.append("**Possible overkill:** " + _join(md_escape(_label(d)) + f" (rated "
                                                         f"{fmt_number(t.loc[d, 'performance'], 2)})" for d in over)
                       + " are rated well but matter less: do not add effort here first.")
        if m.ordinal is not None and len(out) < 6:
            dis = m.ordinal.disagreements
            o = m.ordinal.table.sort_values("ordinal_rank")
            first = o.index[0]
            out.append("A second model that treats the rating as ordered categories "
                       + ("gives the same order of attributes" if not dis else
                          "orders " + _join(md_escape(_label(d)) for d in dis) + " differently")
                       + f"; in it, one more point on {md_escape(_label(first))} multiplies the odds of a higher "
                       f"rating by {_odds_text(o.loc[first])}.")
        return out[:6]

    def findings_markdown(self) -> str:
        items = self.findings()
        if not items:
            return "*No driver analysis could be made for this selection (see the notes above).*"
        return "\n".join(f"- {s}" for s in items)

    def what_to_fix_markdown(self) -> str:
        """The findings (kept under its earlier name) plus where the ordinal model was fitted on a subsample."""
        text = self.findings_markdown()
        m = self.main
        if m is not None and m.ordinal is not None and m.ordinal.subsampled:
            text += (f"\n\n*The ordinal model was fitted on a seeded random subsample of {m.ordinal.n:,} of the "
                     f"{m.ordinal.n_available:,} complete responses.*")
        return text

    def headline(self) -> str:
        """One plain sentence for the index page."""
        if self.main is None:
            return "No driver analysis could be made (see the notes on the page)."
        t = self.main.table
        top = t.index[0]
        return (f"{_label(top)} matters most for {_label(self.outcome)} ({self.who}): "
                f"{_share_sentence(t, top)} of what the attributes explain.")

    def department_finding(self) -> str:
        """One sentence on how departments differ (their top drivers), or ""."""
        seg = self.by_department
        if seg is None or len(seg.results) < 2:
            return ""
        tops = {}
        for name, res in seg.results.items():
            tops.setdefault(res.table.index[0], []).append(name)
        n_diff = 0 if self.differences is None else len(self.differences)
        if len(tops) == 1:
            (attr, names), = tops.items()
            return (f"{md_escape(_label(attr))} is the top driver in every department analysed ({len(names)}); "
                    f"{n_diff} differences between departments are larger than chance.")
        biggest = ""
        if n_diff:
            r = self.differences.iloc[0]
            biggest = (f"; the largest: {md_escape(_label(r['driver']))} explains {fmt_number(r['difference'], 1)} "
                       f"points more of the variance in {md_escape(r['more'])} than in {md_escape(r['less'])} "
                       f"(95% CI {fmt_interval(r['ci_low'], r['ci_high'], 1)})")
        return (f"**Departments differ:** the top driver is " + _join(
            f"{md_escape(_label(a))} in {_join(md_escape(n) for n in names)}" for a, names in tops.items())
                + f" ({n_diff} differences larger than chance{biggest}).")

    def notes_markdown(self) -> str:
        """The main analysis' notes (left-out attributes, intervals at zero, re-samples) as Markdown; its warnings
        are the page's notes at the top (``warnings``), not repeated here."""
        if self.main is None:
            return ""
        return " ".join(self.main.notes())

    # ------------------------------------------------------------------ what improving a driver is worth
    def worth_markdown(self) -> str:
        """The section "What improving a driver is worth": what it is (for the whole company, how computed,
        an association), then one sentence per driver; or one line saying what is missing."""
        w = self.worth
        if w is None:
            return "*Not computed: the data could not be read (see the notes at the top).*"
        if w.drivers is None:
            return f"*What improving a driver is worth {md_escape(w.chain_message)}.*"
        intro = (f"The whole company as of {md_escape(w.as_of)}, the {len(w.drivers.table)} attributes worth most; "
                 f"amounts in {md_escape(_currency_name(w.currency))} over the next {w.horizon} months, discounted at "
                 f"10% a year. The 95% intervals come from {w.n_boot} re-samples of the customers that redo every "
                 f"link together (attribute → {md_escape(_label('csat'))} → risk of leaving, corrected for the "
                 "noise in ratings → revenue). **This is an association under stated assumptions** (the "
                 "attribute's regression slope is its effect on satisfaction, rating noise is random, proportional "
                 "hazards), **not the result of a controlled experiment**.")
        return intro

    def worth_sentences_markdown(self) -> str:
        w = self.worth
        if w is None or w.drivers is None:
            return ""
        text = w.drivers.markdown()
        notes = " ".join(w.drivers.notes).replace("monthly_revenue", "monthly revenue")
        return text + ("\n\n*" + md_escape(notes) + "*" if notes else "")

    def worth_table_html(self) -> str:
        w = self.worth
        if w is None or w.drivers is None:
            return ""
        import dataclasses

        labels = {**w.drivers.labels, "label": "Driver raised by " + _points_text(w.delta),
                  "kept_ci": f"More customers kept after {w.horizon} months (95% CI)",
                  "revenue_ci": f"More revenue over {w.horizon} months (95% CI)"}
        table = dataclasses.replace(w.drivers, labels=labels)
        return table.reader_table(caption=f"What raising a driver by {_points_text(w.delta)} is worth over "
                                          f"{w.horizon} months (whole company)")

    # ------------------------------------------------------------------ tables (HTML for readers)
    def drivers_table_html(self) -> str:
        return "" if self.main is None else self.main.reader_table_html()

    def departments_table_html(self) -> str:
        """One row per department: responses used, top driver with its share and interval, or why not."""
        if not self.departments:
            return ""
        rows = []
        for name, dd in sorted(self.departments.items()):
            a = dd.analysis
            if a is None:
                rows.append({"Department": name, "Responses": dd.n_usable, "Top driver": "too few answers",
                             "Share of explained variance": NA, "95% CI": NA})
                continue
            top = a.table.index[0]
            point, ci = share_text(a.table, top)
            rows.append({"Department": name, "Responses": dd.n_usable, "Top driver": _label(top),
                         "Share of explained variance": point, "95% CI": ci})
        return headed_table(pd.DataFrame(rows), formats={"Responses": "int"})

    def differences_table_html(self, max_rows: int = 12) -> str:
        if self.differences is None or not len(self.differences):
            return ""
        d = self.differences
        shown = pd.DataFrame({"Attribute": [_label(x) for x in d["driver"]], "Matters more in": d["more"],
                              "than in": d["less"],
                              "Difference (points of explained variance)": [fmt_number(v, 1) for v in d["difference"]],
                              "95% CI": [fmt_interval(lo, hi, 1) for lo, hi in zip(d["ci_low"], d["ci_high"])]})
        return headed_table(shown, max_rows=max_rows, formats={"Difference (points of explained variance)": "text"})

    def ordinal_table_html(self) -> str:
        return "" if self.main is None or self.main.ordinal is None else self.main.ordinal.reader_table_html()

    def model_table_html(self) -> str:
        """For analysts: importance in R² points with its interval, direction and VIF per attribute."""
        if self.main is None:
            return ""
        return self.main.analyst_table_html()

    # ------------------------------------------------------------------ charts (alt texts say what they show)
    def alt_drivers(self) -> str:
        t = self.main.table
        return (f"Horizontal bar chart of each attribute's share of the explained variance in {_label(self.outcome)}, "
                "with 95% intervals: " + "; ".join(f"{_label(d)} {_share_sentence(t, d)}" for d in t.index[:12]))

    def alt_ipa(self) -> str:
        t = self.main.ipa.table
        groups = [f"{q}: " + ", ".join(_label(d) for d in t.index[t["quadrant"] == q])
                  for q in ("fix first", "keep up", "low priority", "possible overkill") if (t["quadrant"] == q).any()]
        return ("Scatter plot of each attribute's importance (share of explained variance) against its mean rating, "
                "split at the averages into four groups. " + "; ".join(groups) + ".")

    def alt_departments(self) -> str:
        seg = self.by_department
        return ("Heatmap of each attribute's share of explained variance by department (rows) and attribute "
                "(columns). Top driver per department: " + "; ".join(
                    f"{name}: {_label(r.table.index[0])} {_share_sentence(r.table, r.table.index[0])}"
                    for name, r in seg.results.items()) + ".")

    def alt_ordinal(self) -> str:
        o = self.main.ordinal.table.sort_values("ordinal_rank")
        return ("Dot chart of the odds ratio of a higher overall rating per extra point on each attribute, with 95% "
                "intervals, from the ordinal model: " + "; ".join(f"{_label(d)} {_odds_text(o.loc[d])}"
                                                                  for d in o.index[:12]) + ".")

    # figures (sized for the page: about 60rem wide, text 10 px or more once scaled)
    def fig_drivers(self):
        return self.main.plot().figure  # sized for the number of attributes

    def fig_ipa(self):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8.5, 5.5))
        self.main.ipa.plot(ax=ax)
        return fig

    def fig_departments(self):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(9, 0.55 * len(self.by_department.results) + 2.2))
        self.by_department.plot(ax=ax)
        return fig

    def fig_ordinal(self):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(self.main.ordinal.table) + 1.6))
        self.main.ordinal.plot(ax=ax)
        return fig

    def figures(self) -> list:
        """``(name, figure)`` of every chart the page shows, in page order (for tests of sizes and text)."""
        out = []
        if self.main is not None:
            out.append(("drivers", self.fig_drivers()))
            if self.main.ipa is not None:
                out.append(("importance-performance", self.fig_ipa()))
        if self.by_department is not None and self.by_department.results:
            out.append(("departments", self.fig_departments()))
        if self.main is not None and self.main.ordinal is not None:
            out.append(("ordinal", self.fig_ordinal()))
        return out

    def expected_charts(self) -> int:
        """How many charts the page shows (the runner fails a page with fewer)."""
        n = 0
        if self.main is not None:
            n += 1 + (self.main.ipa is not None) + (self.main.ordinal is not None)
        if self.by_department is not None and self.by_department.results:
            n += 1
        return n


def _points_text(delta: float) -> str:
    a = abs(delta)
    return "half a point" if a == 0.5 else ("a point" if a == 1 else f"{a:g} points")


def _currency_name(code: str) -> str:
    """"euros (EUR)" for the sentence that states the currency; the code alone when it has no name here."""
    names = {"EUR": "euros", "USD": "US dollars", "GBP": "pounds sterling", "CHF": "Swiss francs",
             "SEK": "Swedish kronor", "JPY": "yen"}
    if not code:
        return "the data's currency"
    return f"{names[code]} ({code})" if code in names else code


def _percent_decimals(low: float, high: float) -> int:
    from helpers.formatting import interval_decimals
    return interval_decimals(100 * low, 100 * high)


def _share_sentence(t: pd.DataFrame, d: str) -> str:
    point, ci = share_text(t, d)
    return point + (f" (95% CI {ci})" if ci != NA else "")


def _share_of(t: pd.DataFrame, d: str) -> str:
    """"24% of importance, 95% CI 21% to 26%" (for a sentence already inside parentheses)."""
    point, ci = share_text(t, d)
    return f"{point} of importance" + (f", 95% CI {ci}" if ci != NA else "")


def _odds_text(row) -> str:
    d = max(2, _decimals_apart(row["or_low"], row["or_high"]))
    return f"{fmt_number(row['odds_ratio'], d)} (95% CI {fmt_interval(row['or_low'], row['or_high'], d)})"


def _decimals_apart(low, high) -> int:
    from helpers.formatting import interval_decimals
    return interval_decimals(low, high)


def _join(items) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def show_chart(fig, alt: str) -> None:
    """A chart on the page: :func:`helpers.charts.show_figure` (PNG with its alt text, any backend)."""
    from helpers.charts import show_figure

    show_figure(fig, alt=alt)


# ----------------------------------------------------------------------------------------------------------
# Preparing the page
# ----------------------------------------------------------------------------------------------------------
class _EngineResponses:
    """The responses as the engine's aggregates: column names, date range, responses per department in the
    period, and rating patterns (answer-sized; no response row is read into memory)."""

    def __init__(self, engine):
        self.engine = engine
        self.name = engine.name
        self.columns = list(engine.columns("responses"))

    def last_date(self):
        """The last response date (NaT when no response has one)."""
        if "response_date" not in self.columns:
            return pd.NaT
        out = self.engine.query("SELECT max(response_date) AS last FROM responses")
        return pd.Timestamp(out["last"].iloc[0]) if len(out) and not pd.isna(out["last"].iloc[0]) else pd.NaT

    def select(self, department: str, start: str, end: str) -> tuple[list[str], str]:
        """(departments with responses in the period, the selected department's name or "all"); the errors
        of :func:`helpers.drivers_analysis.select_responses`."""
        from helpers.engine.aggregates import where_sql

        counts = self.engine.query(f"SELECT department, count(*) AS n FROM responses "
                                   f"{where_sql(None, 'response_date', start, end)} GROUP BY department")
        if not int(counts["n"].sum()):
            raise DriverInputError(f"no responses for department 'all' between {start or 'the start'} "
                                   f"and {end or 'the end'}")
        names = sorted(str(n) for n in counts["department"] if not pd.isna(n))
        if department.lower() == "all":
            return names, department
        match = [n for n in names if n == department or slug(n) == slug(department)]
        if not match:
            raise DriverInputError(f"department {department!r} has no responses; departments in the data: "
                                   + ", ".join(names) + " (or 'all')")
        return names, match[0]

    def analyse_all(self, outcome: str, drivers: list[str], period, n_boot: int, seed: int,
                    min_n: int) -> DriverAnalysis:
        """The company's analysis from the period's rating patterns (all departments), with the ordinal check
        on the same patterns."""
        patterns = rating_patterns(self.engine, [outcome, *drivers], start=period[0], end=period[1])
        return analyze_drivers_from_patterns(patterns, outcome, drivers, n_boot=n_boot, seed=seed,
                                             label="all departments", min_n=min_n, ordinal=True)

    def ordinal(self, department: str, outcome: str, drivers: list[str], period, shapley_rank, seed):
        patterns = rating_patterns(self.engine, [outcome, *drivers], filters={"department": department},
                                   start=period[0], end=period[1])
        return ordinal_check_from_patterns(patterns, outcome, drivers, shapley_rank=shapley_rank, seed=seed)


class _RowResponses:
    """The responses as rows in memory (no engine could be opened, or its query failed): the former path."""

    name = ""

    def __init__(self, dataset):
        self.frame = dataset.responses
        self.columns = list(self.frame.columns)
        self.selected = None

    def last_date(self):
        if "response_date" not in self.frame.columns:
            return pd.NaT
        return pd.to_datetime(self.frame["response_date"]).max()

    def select(self, department: str, start: str, end: str) -> tuple[list[str], str]:
        in_period = select_responses(self.frame, "all", start, end)
        self.selected = select_responses(in_period, department)
        names = sorted(str(n) for n in pd.unique(in_period["department"].dropna()))
        return names, (department if department.lower() == "all" else str(self.selected["department"].iloc[0]))

    def analyse_all(self, outcome: str, drivers: list[str], period, n_boot: int, seed: int,
                    min_n: int) -> DriverAnalysis:
        return analyze_drivers(self.selected, outcome, drivers, n_boot=n_boot, seed=seed, label="all departments",
                               min_n=min_n)

    def ordinal(self, department: str, outcome: str, drivers: list[str], period, shapley_rank, seed):
        numeric = [d for d in drivers if pd.api.types.is_numeric_dtype(self.selected[d])]
        if not numeric:
            return None
        return ordinal_check(self.selected, outcome, numeric, shapley_rank=shapley_rank, seed=seed)


def prepare_drivers_report(department: str = "all", outcome: str = "", drivers: list | None = None,
                           period_start: str = "", period_end: str = "", n_boot: int = 500,
                           data_source: str = "", report_config: str = "params/report.yaml",
                           as_of: str = "", seed: int = SEED) -> DriversReport:
    """Load, select and analyse. ``outcome`` "" = the config's outcome; ``drivers`` [] = the config's drivers or
    else every ``attr_*`` column; for one ``department`` the main analysis is :func:`department_driver_analysis`
    (its :data:`DEPARTMENT_N_BOOT` re-samples; ``n_boot`` is for "all"); ``period_end`` "" = the as-of date (``as_of`` "" = the data's last complete
    month; ``as_of`` caps ``period_end``); ``period_start`` "" = :data:`DEPARTMENT_MONTHS` months before the
    period's end (the window of the department pages).

    Everything comes from engine aggregates (the config's engine through
    :func:`helpers.engine.open_report_engine`; DuckDB by default): the company's analysis, its
    importance-performance means and the ordinal check from the period's rating patterns
    (:func:`helpers.drivers_analysis.analyze_drivers_from_patterns` with ``ordinal=True``: the same point
    estimates as the rows, intervals from the pattern bootstrap, the ordinal model weighted by the patterns'
    counts), each department's from :func:`department_driver_analysis`. Only when no engine can be opened,
    or one of its queries fails, are the responses read as rows (the page then says so)."""
    from helpers.reports.loader import load_report_inputs

    report = DriversReport(department=department or "all", outcome=outcome, drivers=list(drivers or []),
                           period=(period_start, period_end), n_boot=int(n_boot))
    for name, value in (("as_of", as_of), ("period_end", period_end), ("period_start", period_start)):
        try:
            pd.Timestamp(value or "2000-01-01")
        except ValueError:
            report.warnings.append(f"{name} {shorten(value)} is not an ISO date (YYYY-MM-DD)")
            return report
    try:
        inputs = load_report_inputs(data_source, report_config)
    except KitError as exc:
        report.warnings.append(str(exc))
        return report
    cfg, ds = inputs.config, inputs.dataset
    report.company, report.source = cfg.company, inputs.data_label
    report.warnings.extend(ds.excluded_messages(future_only=True))  # future-dated rows left out (helpers.data)
    report.outcome = outcome or cfg.outcome
    report.drivers = list(drivers or cfg.drivers or ds.attributes)
    engine, note = open_report_engine(ds, cfg)  # one engine for every aggregate of the page
    if note:
        report.warnings.append(note)
    try:
        names = None
        before = (list(report.warnings), report.department)
        if engine is not None:
            try:
                names = _analyse_selection(report, ds, cfg, inputs, _EngineResponses(engine), engine, as_of,
                                           period_start, period_end, seed)
            except EngineError as exc:  # the engine failed (not the data): the rows in memory
                report.warnings[:], report.department, report.main = before[0], before[1], None
                report.warnings.append(f"The {engine.name} engine failed ({shorten(str(exc), 160)}); these "
                                       "figures were computed in memory.")
                names = None
        if names is None:
            names = _analyse_selection(report, ds, cfg, inputs, _RowResponses(ds), engine, as_of, period_start,
                                       period_end, seed)
        if names is False:
            return report
        # the company's value chain first: the retention page shares it and asks for it last, so in a run the
        # two company pages do not both wait for it (the first to ask computes it, the other reads the cache)
        report.worth = _page_worth(ds, cfg, report)
        # the departments: the same analysis as on each department page (shared, cached per run)
        results, sizes = {}, []
        analyses = {name: department_driver_analysis(ds, cfg, name, period=report.period, outcome=report.outcome,
                                                     drivers=report.drivers, seed=seed, engine=engine)
                    for name in names}
    finally:
        if engine is not None:
            engine.close()
    for name in names:
        dd = analyses[name]
        report.departments[name] = dd
        sizes.append({"department": name, "n": dd.n_usable, "analysed": dd.analysis is not None})
        if dd.analysis is not None:
            results[name] = dd.analysis
        else:
            report.warnings.append(f"{name}: {dd.message}")
    size_frame = pd.DataFrame(sizes, columns=["department", "n", "analysed"]).set_index("department")
    report.by_department = SegmentDrivers(segment="department", outcome=report.outcome, results=results,
                                          sizes=size_frame, warnings=[])
    report.differences = _differences(report.by_department, report.department)
    return report


def _analyse_selection(report: DriversReport, ds, cfg, inputs, source, engine, as_of: str, period_start: str,
                       period_end: str, seed: int):
    """Period, selection and main analysis of the page from ``source`` (:class:`_EngineResponses` or
    :class:`_RowResponses`). Returns the departments with responses in the period, or False when the page
    stops at a warning (a missing column, no dates, an empty selection)."""
    from helpers.reports.loader import driver_min_responses

    missing_cols = [c for c in [report.outcome, *report.drivers] if c not in source.columns]
    if missing_cols:
        report.warnings.append(f"responses has no column {missing_cols}; available ratings: "
                               + ", ".join(c for c in source.columns if c in ("csat", "nps", "ces")
                                           or c.startswith("attr_")))
        return False
    last = source.last_date()
    if pd.isna(last):
        report.warnings.append("no response has a date")
        return False
    try:
        default_end = pd.Timestamp(as_of) if as_of else (ds.as_of if ds.as_of is not None else ds.default_as_of())
    except KitError:
        default_end = last
    end = period_end or str(default_end.date())
    if as_of and pd.Timestamp(as_of) < pd.Timestamp(end):
        end = as_of
    report.as_of = str(pd.Timestamp(as_of or default_end).date())
    start = period_start or department_window(end)[0]
    report.period = (start, end)
    min_n = driver_min_responses(inputs.min_responses, len(report.drivers))
    try:
        names, report.department = source.select(report.department, start, end)
    except KitError as exc:
        if isinstance(exc, EngineError):
            raise
        report.warnings.append(str(exc))
        return False
    try:
        if report.department.lower() == "all":
            report.main = source.analyse_all(report.outcome, report.drivers, (start, end), report.n_boot, seed,
                                             min_n)
        else:  # one department: its one analysis (the one its page and the comparison below show), plus the check
            report.main = _department_main(ds, cfg, report, source, (start, end), seed, engine)
            if report.main is None:
                return False
        report.warnings.extend(report.main.warnings)
        if report.main.dropped:
            report.warnings.append("left out of the analysis: " + "; ".join(
                f"{_label(k)} ({v})" for k, v in report.main.dropped.items()))
    except EngineError:
        raise
    except KitError as exc:
        report.warnings.append(f"{report.department}: {exc}")
    return names


def _page_worth(ds, cfg, report: DriversReport) -> CompanyWorthPage:
    """The company's satisfaction-value chain for this page (:func:`company_worth_analysis`, shared with the
    retention page through the run's cache)."""
    try:
        last = ds.date_range()[1]
        day = min(pd.Timestamp(report.as_of), pd.Timestamp(last)) if not pd.isna(last) else pd.Timestamp(
            report.as_of)
    except (KitError, ValueError):
        day = pd.Timestamp(report.as_of)
    has_customers = ds.has("customers")
    folder = _cache_folder(ds)
    return company_worth_analysis(None, None, day, dataset=ds, config=cfg,
                                  currency=str(getattr(cfg, "currency", "") or ""),
                                  drivers=list(getattr(cfg, "drivers", []) or []) or None,
                                  has_customers=has_customers,
                                  has_revenue=has_customers and ds.has("customers", "monthly_revenue"),
                                  fingerprint=str(getattr(ds, "fingerprint", "") or ""),
                                  cache_folder=folder.parent / "worth" if folder is not None else None)


def _department_main(ds, cfg, report: DriversReport, source, period, seed, engine=None):
    """The drivers page of one department: the shared department analysis (same numbers as its page and the
    comparison), with the ordinal check fitted on the same responses (from ``source``: the engine's rating
    patterns with frequency weights, or the rows); None with a warning below the sample rule."""
    import copy

    dd = department_driver_analysis(ds, cfg, report.department, period=period, outcome=report.outcome,
                                    drivers=report.drivers, seed=seed, engine=engine)
    if dd.analysis is None:
        report.warnings.append(f"{report.department}: {dd.message}")
        return None
    main = copy.copy(dd.analysis)  # the shared result stays as cached
    main.label, main.warnings = report.department, list(dd.analysis.warnings)
    try:
        main.ordinal = source.ordinal(report.department, report.outcome, list(main.table.index), period,
                                      main.table["rank"], department_seed(report.department, seed))
    except EngineError:
        raise
    except (KitError, np.linalg.LinAlgError, ValueError) as exc:
        main.warnings.append(f"ordinal check not available: {exc}")
    return main


def _differences(seg: SegmentDrivers, department: str) -> pd.DataFrame:
    """Pairs of departments whose importance of an attribute differs by more than chance, largest first:
    driver, more (the department where it matters more), less, difference and its 95% interval in points of
    explained variance (R² x 100)."""
    rows = []
    names = sorted(seg.results)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if department.lower() not in ("all", a.lower(), b.lower()):
                continue
            try:
                c = seg.compare(a, b).reset_index()
            except KitError:
                continue
            for _, r in c[c["differs"]].iterrows():
                sign = 1 if r["difference"] > 0 else -1
                lo, hi = sorted((sign * 100 * r["ci_low"], sign * 100 * r["ci_high"]))
                rows.append({"driver": r["driver"], "more": a if sign > 0 else b, "less": b if sign > 0 else a,
                             "difference": abs(100 * r["difference"]), "ci_low": lo, "ci_high": hi})
    out = pd.DataFrame(rows, columns=["driver", "more", "less", "difference", "ci_low", "ci_high"])
    return out.sort_values("difference", ascending=False, kind="stable").reset_index(drop=True)


__all__ = ["CompanyWorthPage", "company_worth_analysis", "DEPARTMENT_MONTHS", "DEPARTMENT_N_BOOT", "SEED", "DepartmentDrivers", "DriversReport",
           "department_driver_analysis", "department_seed", "department_window", "prepare_drivers_report",
           "show_chart", "fmt_p_value", "html_escape"]
