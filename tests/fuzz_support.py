"""Hostile but contract-valid inputs for the report fuzz harness (``tests/test_fuzz_reports.py``).

Data: a small seeded demo (:func:`helpers.demo.generate_demo`) perturbed by a :class:`DataSpec` (rows dated
after the data, constant / all-missing / skewed ratings, 1 to 20 attribute columns, a department with a
single response, months without any data, no churn or all churned, one segment). Every variant still meets
the data contract (``data/README.md``): the harness tests the reports, not the loader's checks.

Params: department objective files (:class:`ObjectiveSpec`: deadlines anywhere, targets at the metric's
bounds, baselines as numbers or periods anywhere, filters), ``report.yaml`` settings and as-of dates
anywhere in and around the data, as Hypothesis strategies.

Reports: :func:`run_notebook` replays a report notebook's code cells in order in a fresh namespace (the
parameters cell first, then the injected parameters, as papermill does), with ``display`` rendering every
object's HTML/Markdown and ``plt.show`` drawing each figure on the Agg canvas as the inline backend would,
so the harness follows the notebooks as they change.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks" / "reports"
TABLES = ("customers", "responses", "tickets", "org")
BASE_SEEDS = (3, 11)
BASE_CUSTOMERS = 240
DEPARTMENTS = ("Billing", "Customer Service", "Delivery", "Marketing", "Sales", "Technical Support")
STANDARD_ATTRIBUTES = ("attr_speed", "attr_resolution", "attr_knowledge", "attr_courtesy", "attr_ease",
                       "attr_value")
RATINGS = ("csat", "nps", "ces", *STANDARD_ATTRIBUTES)
RATING_RANGE = {"csat": (1, 5), "nps": (0, 10), "ces": (1, 7)}
HOSTILE_DEPARTMENT = "Billing & <Collections> *Ünïcode* [x](javascript:y)"  # Billing renamed (DataSpec.renamed)
FUTURE_DAYS = (1, 40, 400, 27_000)  # after the last date: inside "today", after today, next year, year 2100


def rating_range(column: str) -> tuple[int, int]:
    return RATING_RANGE.get(column, (1, 5))


# ----------------------------------------------------------------------------------------------- base data

@functools.lru_cache(maxsize=None)
def base_tables(seed: int) -> dict[str, pd.DataFrame]:
    """The demo's four tables (``BASE_CUSTOMERS`` customers, ``seed``), read once per process."""
    from helpers.demo import generate_demo

    folder = Path(tempfile.mkdtemp(prefix="fuzz-base-"))
    try:
        generate_demo(folder, n_customers=BASE_CUSTOMERS, seed=seed)
        return {t: pd.read_parquet(folder / f"{t}.parquet") for t in TABLES}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def base_date_range(seed: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last day with a response or a ticket in the unperturbed base data."""
    t = base_tables(seed)
    days = pd.concat([pd.to_datetime(t["responses"]["response_date"]),
                      pd.to_datetime(t["tickets"]["created_at"]).dt.normalize()])
    return days.min(), days.max()


# ----------------------------------------------------------------------------------------------- data spec

@dataclasses.dataclass(frozen=True)
class DataSpec:
    """How to make the base demo hostile. Every field's default leaves the data as generated."""

    seed: int = BASE_SEEDS[0]
    n_drivers: int = 6                      # attr_* columns: above the contract's six, noise attributes
    future_responses: int = 0               # responses moved after the data's last day ...
    future_tickets: int = 0                 # ... and tickets (all their timestamps shifted together)
    future_days: int = 40                   # ... by this many days after the last day
    constant: tuple[str, ...] = ()          # ratings set to one value in every row
    all_missing: tuple[str, ...] = ()       # ratings left empty in every row
    skewed: tuple[str, ...] = ()            # ratings at their top value in 98% of the rows
    thin_department: str | None = None      # keep exactly one response (and one ticket) of this department
    gap: tuple[int, int] | None = None      # (first month offset, months): no responses or tickets then
    churn: str = "as generated"             # "none": nobody left; "all": every customer left
    one_segment: bool = False               # every customer in the same segment
    keep_responses: int | None = None       # keep only this many responses (a tiny survey)
    future_signups: int = 0                 # customers who sign up after the data's last day
    unresolved_tickets: bool = False        # no ticket has a first response, a resolution or contacts yet
    instant_tickets: bool = False           # every ticket answered and resolved at once, in one contact, never reopened
    no_revenue: str | None = None           # "missing": no monthly_revenue at all; "zero": every revenue 0
    one_cohort: bool = False                # every customer signed up on the same (the earliest) day
    renamed: bool = False                   # Billing, its teams, segments and channels get hostile names
    history_days: int | None = None         # keep only the responses and tickets of the data's last N days
    shift_years: int = 0                    # every date moved by N years (+2: the whole data set after today)


def _as_day(values) -> pd.Series:
    return pd.to_datetime(pd.Series(values)).dt.normalize()


def _dates_out(series: pd.Series) -> pd.Series:
    """Back to the contract's date cells (``datetime.date`` or missing), as the demo writes them."""
    out = pd.to_datetime(series)
    return pd.Series([d.date() if pd.notna(d) else None for d in out], index=series.index, dtype=object)


def build_tables(spec: DataSpec) -> dict[str, pd.DataFrame]:
    """The base demo perturbed as ``spec`` says (contract-valid)."""
    base = base_tables(spec.seed)
    t = {k: v.copy() for k, v in base.items()}
    rng = np.random.default_rng(1000 + spec.seed)
    resp, tick, cust = t["responses"], t["tickets"], t["customers"]
    first, last = base_date_range(spec.seed)

    # more attribute columns: independent noise attributes (drivers that barely matter); the six standard
    # attributes are contract columns, so fewer drivers come from report.yaml's `drivers` (ReportSettings)
    attrs = [c for c in resp.columns if c.startswith("attr_")]
    for k in range(len(attrs), spec.n_drivers):
        noise = rng.integers(1, 6, size=len(resp)).astype(float)
        noise[rng.random(len(resp)) < 0.1] = np.nan
        resp[f"attr_noise{k - len(attrs) + 1}"] = noise

    for col in spec.constant:
        if col in resp.columns:
            resp[col] = float(rating_range(col)[1] if col != "ces" else rating_range(col)[0])
    for col in spec.skewed:
        if col in resp.columns:
            lo, hi = rating_range(col)
            values = np.full(len(resp), float(hi))
            low = rng.random(len(resp)) < 0.02
            values[low] = float(lo)
            resp[col] = values
    for col in spec.all_missing:
        if col in resp.columns:
            resp[col] = np.nan

    if spec.gap is not None:
        offset, months = spec.gap
        g0 = first.to_period("M").to_timestamp() + pd.DateOffset(months=offset)
        g1 = g0 + pd.DateOffset(months=months)
        rd = _as_day(resp["response_date"])
        resp = resp[~((rd >= g0) & (rd < g1)).to_numpy()]
        tc = pd.to_datetime(tick["created_at"])
        tick = tick[~((tc >= g0) & (tc < g1)).to_numpy()]

    if spec.thin_department is not None:
        in_dept = (resp["department"] == spec.thin_department).to_numpy()
        keep = np.flatnonzero(in_dept)[:1]
        resp = resp[~in_dept | np.isin(np.arange(len(resp)), keep)]
        in_dept = (tick["department"] == spec.thin_department).to_numpy()
        keep = np.flatnonzero(in_dept)[:1]
        tick = tick[~in_dept | np.isin(np.arange(len(tick)), keep)]

    if spec.history_days is not None:
        since = last - pd.Timedelta(days=spec.history_days - 1)
        resp = resp[(_as_day(resp["response_date"]) >= since).to_numpy()]
        tick = tick[(pd.to_datetime(tick["created_at"]) >= since).to_numpy()]

    if spec.keep_responses is not None and spec.keep_responses < len(resp):
        resp = resp.iloc[np.sort(rng.choice(len(resp), size=spec.keep_responses, replace=False))]

    # the contract wants at least one row per table: an emptied table keeps the data's last row
    if resp.empty:
        resp = t["responses"].iloc[[-1]]
    if tick.empty:
        tick = t["tickets"].iloc[[-1]]
    resp = resp.reset_index(drop=True)
    tick = tick.reset_index(drop=True)
    future = last + pd.Timedelta(days=spec.future_days)
    if spec.future_responses and len(resp):
        rows = rng.choice(len(resp), size=min(spec.future_responses, len(resp)), replace=False)
        dates = _as_day(resp["response_date"])
        dates.iloc[rows] = future
        resp["response_date"] = _dates_out(dates)
    if spec.future_tickets and len(tick):
        rows = rng.choice(len(tick), size=min(spec.future_tickets, len(tick)), replace=False)
        created = pd.to_datetime(tick["created_at"])
        shift = (future + pd.Timedelta(hours=9)) - created.iloc[rows]
        for col in ("created_at", "first_response_at", "resolved_at"):
            values = pd.to_datetime(tick[col])
            values.iloc[rows] = values.iloc[rows] + shift.to_numpy()
            tick[col] = values

    if spec.unresolved_tickets:
        for col in ("first_response_at", "resolved_at"):
            tick[col] = pd.NaT
        tick["contacts_to_resolve"] = np.nan
        tick["reopened"] = None

    if spec.instant_tickets:
        tick["first_response_at"] = tick["created_at"]
        tick["resolved_at"] = tick["created_at"]
        tick["contacts_to_resolve"] = 1.0
        tick["reopened"] = False
    if spec.no_revenue == "missing":
        cust["monthly_revenue"] = np.nan
    elif spec.no_revenue == "zero":
        cust["monthly_revenue"] = 0.0
    if spec.one_cohort:  # the earliest signup day: every end_date stays on or after it
        cust["signup_date"] = _dates_out(pd.Series(pd.to_datetime(cust["signup_date"]).min(), index=cust.index))
    if spec.renamed:
        for frame in (resp, tick, t["org"]):
            frame["department"] = frame["department"].replace("Billing", HOSTILE_DEPARTMENT)
        for frame in (tick, t["org"]):
            frame["team"] = frame["team"].map(lambda v: v if pd.isna(v) else f"{v} <team> & *co*")
        cust["segment"] = cust["segment"].map(lambda v: f"{v} [seg](javascript:x) `ü`")
        for frame in (resp, tick):
            frame["channel"] = frame["channel"].map(lambda v: v if pd.isna(v) else f"{v} | ' \" #")

    signup = pd.to_datetime(cust["signup_date"])
    if spec.churn == "none":
        cust["end_date"] = None
    elif spec.churn == "all":
        span = (last - signup).dt.days.clip(lower=0).to_numpy()
        end = signup + pd.to_timedelta(np.floor(rng.random(len(cust)) * (span + 1)), unit="D")
        cust["end_date"] = _dates_out(end)
    if spec.one_segment:
        cust["segment"] = "consumer"
    if spec.future_signups:
        rows = rng.choice(len(cust), size=min(spec.future_signups, len(cust)), replace=False)
        signup = pd.to_datetime(cust["signup_date"])
        signup.iloc[rows] = future
        cust["signup_date"] = _dates_out(signup)
        ends = pd.to_datetime(cust["end_date"])
        ends.iloc[rows] = pd.NaT
        cust["end_date"] = _dates_out(ends)

    if spec.shift_years:
        offset = pd.DateOffset(years=spec.shift_years)
        resp["response_date"] = _dates_out(_as_day(resp["response_date"]) + offset)
        for col in ("created_at", "first_response_at", "resolved_at"):
            tick[col] = pd.to_datetime(tick[col]) + offset
        for col in ("signup_date", "end_date"):
            cust[col] = _dates_out(pd.to_datetime(cust[col]) + offset)

    t.update(responses=resp, tickets=tick, customers=cust)
    return t


DATED_BY = {"customers": "signup_date", "responses": "response_date", "tickets": "created_at"}


def must_load(tables: dict[str, pd.DataFrame], today: object = None) -> bool:
    """Whether the kit has to accept these tables at load. Rows dated after the default as-of (the data's last
    complete month, never after today) are left out; a table with no row left is refused ("too little history").
    Sufficient condition checked here: every dated table has a row on or before the end of the month before
    both the data's last month and today (the kit's cut-off is never earlier)."""
    today = pd.Timestamp(today if today is not None else pd.Timestamp.today()).normalize()
    days = pd.concat([_as_day(tables["responses"]["response_date"]),
                      pd.to_datetime(tables["tickets"]["created_at"]).dt.normalize()])
    cutoff = min(days.max(), today).to_period("M").to_timestamp() - pd.Timedelta(days=1)
    return all((pd.to_datetime(tables[t][c]) <= cutoff).any() for t, c in DATED_BY.items())


def write_data(spec: DataSpec, folder: Path) -> Path:
    """Write the perturbed tables as Parquet files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in build_tables(spec).items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


# ----------------------------------------------------------------------------------------------- params

METRIC_BOUNDS = {"csat": (0, 100), "nps": (-100, 100), "ces": (1, 7), "fcr": (0, 100), "reopen_rate": (0, 100),
                 "retention_rate": (0, 100), "churn_rate": (0, 100), "first_response_hours": (0, 500),
                 "resolution_hours": (0, 2000), "first_response_hours_mean": (0, 500),
                 "resolution_hours_mean": (0, 2000), "ticket_volume": (0, 5000), "response_count": (0, 5000)}
METRICS = tuple(METRIC_BOUNDS)
LOWER_IS_BETTER = {"ces", "reopen_rate", "first_response_hours", "resolution_hours", "first_response_hours_mean",
                   "resolution_hours_mean", "ticket_volume", "churn_rate"}  # helpers.objectives.metric_registry()


@dataclasses.dataclass(frozen=True)
class ObjectiveSpec:
    metric: str = "csat"
    target: float = 80.0
    baseline: float | tuple[str, str] = 70.0      # a number or a period (start, end)
    start: str = "2026-01-01"
    deadline: str = "2026-12-31"
    direction: str | None = None
    frequency: str | None = None
    filters: tuple[tuple[str, str], ...] = ()
    parent: bool = False                          # child of the previous objective
    hostile_text: bool = False                    # title, note and owner name full of Markdown/HTML syntax

    def document(self, index: int, slug: str) -> dict:
        doc = {"id": f"o{index}", "title": f"Objective {index} on {self.metric}", "metric": self.metric,
               "baseline": (float(self.baseline) if not isinstance(self.baseline, tuple)
                            else {"start": self.baseline[0], "end": self.baseline[1]}),
               "target": float(self.target), "start": self.start, "deadline": self.deadline,
               "owner": {"person": f"{slug}-dir", "role": "director"}}
        if self.direction:
            doc["direction"] = self.direction
        if self.frequency:
            doc["frequency"] = self.frequency
        if self.filters:
            doc["filters"] = dict(self.filters)
        if self.parent and index > 1:
            doc["parent"] = f"o{index - 1}"
            doc["owner"] = {"name": "A Manager", "role": "manager"}
        if self.hostile_text:
            doc["title"] = f"[click](javascript:alert({index})) <b>{self.metric}</b> *a* `b` | c | \\ {{d}}"
            doc["note"] = "![x](http://host/x.png) <script>alert(1)</script> & 50% of 'them'"
            doc["owner"] = {"name": "O'Brien <img src=x> **Jo**", "role": doc["owner"]["role"]}
        return doc


def department_document(department: str, objectives: tuple[ObjectiveSpec, ...], slug: str | None = None) -> dict:
    """A department params file; ``slug`` names the org's people (``<slug>-dir``)."""
    slug = slug or department.lower().replace(" ", "_")
    return {"department": department, "people": {"director": f"{slug}-dir"},
            "objectives": [o.document(i + 1, slug) for i, o in enumerate(objectives)]}


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    outcome: str = "csat"
    drivers: tuple[str, ...] = ()
    min_responses: int = 30

    def write(self, folder: Path) -> Path:
        """``folder/report.yaml``: the repository's file with these settings."""
        folder.mkdir(parents=True, exist_ok=True)
        doc = yaml.safe_load((REPO / "params" / "report.yaml").read_text())
        doc.update(outcome=self.outcome, drivers=list(self.drivers), min_responses=self.min_responses)
        path = folder / "report.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path


# ----------------------------------------------------------------------------------------------- strategies

def _iso(day: pd.Timestamp) -> str:
    return f"{pd.Timestamp(day):%Y-%m-%d}"


HOSTILITIES = ("future rows", "drivers", "constant", "all missing", "skewed", "thin department", "gap", "churn",
               "one segment", "tiny survey", "future signups", "unresolved tickets", "instant tickets", "no revenue",
               "one cohort", "hostile names", "short history", "shifted dates")


@st.composite
def data_specs(draw, max_drivers: int = 20) -> DataSpec:
    """A base seed and up to three hostilities (Hypothesis shrinks towards fewer and milder ones)."""
    chosen = set(draw(st.lists(st.sampled_from(HOSTILITIES), max_size=3, unique=True)))
    ratings = st.lists(st.sampled_from(RATINGS), min_size=1, max_size=2, unique=True).map(tuple)
    spec = {"seed": draw(st.sampled_from(BASE_SEEDS))}
    if "future rows" in chosen:
        spec.update(future_responses=draw(st.sampled_from((0, 1, 3))), future_tickets=draw(st.sampled_from((0, 1))),
                    future_days=draw(st.sampled_from(FUTURE_DAYS)))
    if "drivers" in chosen:
        spec["n_drivers"] = draw(st.integers(len(STANDARD_ATTRIBUTES) + 1, max_drivers))
    for name, field in (("constant", "constant"), ("all missing", "all_missing"), ("skewed", "skewed")):
        if name in chosen:
            spec[field] = draw(ratings)
    if "thin department" in chosen:
        spec["thin_department"] = draw(st.sampled_from(DEPARTMENTS))
    if "gap" in chosen:
        spec["gap"] = draw(st.tuples(st.integers(0, 38), st.integers(1, 14)))
    if "churn" in chosen:
        spec["churn"] = draw(st.sampled_from(("none", "all")))
    if "one segment" in chosen:
        spec["one_segment"] = True
    if "tiny survey" in chosen:
        spec["keep_responses"] = draw(st.sampled_from((1, 5, 40)))
    if "future signups" in chosen:
        spec["future_signups"] = 2
    if "unresolved tickets" in chosen:
        spec["unresolved_tickets"] = True
    if "instant tickets" in chosen:
        spec["instant_tickets"] = True
    if "no revenue" in chosen:
        spec["no_revenue"] = draw(st.sampled_from(("missing", "zero")))
    if "one cohort" in chosen:
        spec["one_cohort"] = True
    if "hostile names" in chosen:
        spec["renamed"] = True
    if "short history" in chosen:
        spec["history_days"] = draw(st.sampled_from((1, 20, 45, 100)))
    if "shifted dates" in chosen:
        spec["shift_years"] = draw(st.sampled_from((-5, 2)))
    return DataSpec(**spec)


def as_of_dates(seed: int = BASE_SEEDS[0]):
    """As-of dates anywhere in and around the data ("" = the notebook's default), and a few that are not dates."""
    first, last = base_date_range(seed)
    days = int((last - first).days)
    return st.one_of(
        st.just(""),
        st.sampled_from([_iso(first - pd.Timedelta(days=400)), _iso(first - pd.Timedelta(days=1)), _iso(first),
                         _iso(last), _iso(last + pd.Timedelta(days=1)), _iso(last + pd.Timedelta(days=45)),
                         _iso(last + pd.Timedelta(days=500)), "2099-12-31"]),
        st.integers(-30, days + 30).map(lambda d: _iso(first + pd.Timedelta(days=d))),
        st.sampled_from(("2026-02-30", "soon")),  # a notebook run directly gets its parameter unchecked
    )


def _dates_around_data():
    return st.integers(-800, 1900).map(lambda d: pd.Timestamp("2024-01-01") + pd.Timedelta(days=d))


@st.composite
def objective_specs(draw) -> ObjectiveSpec:
    """An objective anywhere in time with a target at (or next to) its metric's bounds; the baseline is a number
    on the side the direction improves from, a period anywhere, or (rarely) any number at all."""
    metric = draw(st.sampled_from(METRICS))
    lo, hi = METRIC_BOUNDS[metric]
    target = draw(st.sampled_from((lo, hi, lo + (hi - lo) * 0.01, hi - (hi - lo) * 0.01))
                  | st.floats(lo, hi, allow_nan=False).map(lambda v: round(v, 1)))
    direction = draw(st.none() | st.sampled_from(("raise", "lower")))
    raises = direction == "raise" if direction else metric not in LOWER_IS_BETTER
    kind = draw(st.sampled_from(("number", "period", "number", "any number")))
    if kind == "number":
        gap = draw(st.sampled_from((0.3, 0.05, 1.0))) * (hi - lo)
        baseline = round(target - gap if raises else target + gap, 1)
    elif kind == "any number":
        baseline = draw(st.floats(lo, hi, allow_nan=False).map(lambda v: round(v, 1)))
    else:
        b0 = draw(_dates_around_data())
        baseline = (_iso(b0), _iso(b0 + pd.Timedelta(days=draw(st.integers(0, 500)))))
    start = draw(_dates_around_data())
    deadline = start + pd.Timedelta(days=draw(st.integers(1, 900)))
    filters = draw(st.sampled_from(((), (), (("channel", "phone"),), (("channel", "carrier pigeon"),),
                                    (("segment", "enterprise"),), (("region", "north"),),
                                    (("team", "Front Desk"),), (("agent", "billing-rep001"),))))
    return ObjectiveSpec(metric=metric, target=target, baseline=baseline, start=_iso(start),
                         deadline=_iso(deadline), direction=direction,
                         frequency=draw(st.none() | st.sampled_from(("month", "quarter"))), filters=filters,
                         parent=draw(st.booleans()), hostile_text=draw(st.booleans()))


def report_settings():
    """report.yaml settings; ``drivers`` () = every attr_* column of the data, else 1 to 5 of them."""
    return st.builds(ReportSettings,
                     outcome=st.sampled_from(("csat", "csat", "nps", "ces", "attr_speed")),
                     drivers=st.sampled_from(((), ()) + tuple(STANDARD_ATTRIBUTES[:k] for k in range(1, 6))),
                     min_responses=st.sampled_from((1, 30, 30, 400)))


# ----------------------------------------------------------------------------------------------- notebooks

def notebook_cells(name: str) -> list[tuple[str, bool]]:
    """``(source, is_parameters_cell)`` of every code cell of ``notebooks/reports/<name>.ipynb``, in order."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    return [("".join(c["source"]), "parameters" in c.get("metadata", {}).get("tags", []))
            for c in nb["cells"] if c["cell_type"] == "code"]


def _render(obj) -> None:
    """What the notebook's HTML export needs from a displayed object: its rich representation."""
    for method in ("_repr_html_", "_repr_markdown_"):
        fn = getattr(obj, method, None)
        if fn is not None:
            fn()
            return
    repr(obj)


def _display(*objs, **_kwargs) -> None:
    for obj in objs:
        _render(obj)


def _show(*_args, **_kwargs) -> None:
    """``plt.show`` as the inline backend does it: draw each open figure to PNG (tight bbox), then close."""
    import matplotlib.pyplot as plt

    for number in plt.get_fignums():
        plt.figure(number).savefig(io.BytesIO(), format="png", dpi=30, bbox_inches="tight")
    plt.close("all")


@contextlib.contextmanager
def notebook_display():
    """Patch ``IPython.display.display`` and ``plt.show`` for an in-process notebook replay (Agg backend)."""
    import IPython.display
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    saved = IPython.display.display, plt.show
    IPython.display.display = _display
    plt.show = _show
    try:
        yield
    finally:
        IPython.display.display, plt.show = saved
        plt.close("all")


def run_notebook(name: str, parameters: dict) -> dict:
    """Execute the report notebook's code cells in order, ``parameters`` injected after the parameters cell
    (as papermill does). Returns the namespace; exceptions propagate unchanged."""
    namespace: dict = {"__name__": "__main__"}
    with notebook_display():
        for index, (source, is_parameters) in enumerate(notebook_cells(name)):
            exec(compile(source, f"<{name}.ipynb code cell {index + 1}>", "exec"), namespace)  # noqa: S102
            if is_parameters:
                unknown = set(parameters) - set(namespace)
                assert not unknown, f"{name}: parameters cell does not declare {sorted(unknown)}"
                namespace.update(parameters)
    return namespace


# ----------------------------------------------------------------------------------------------- strictness

class InternalError(AssertionError):
    """A non-kit exception that a report would have turned into a message (``except ValueError``): the
    harness makes it fail the example instead, with the original as ``__cause__``."""


def _strict(fn, cap_boot: int | None = None):
    from helpers.errors import KitError

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if cap_boot is not None and kwargs.get("n_boot", 0) > cap_boot:
            kwargs["n_boot"] = cap_boot
        try:
            return fn(*args, **kwargs)
        except KitError:
            raise
        except Exception as exc:
            raise InternalError(f"{fn.__module__}.{fn.__name__} raised {type(exc).__name__}: {exc}") from exc
    return wrapper


@contextlib.contextmanager
def strict_and_small(n_boot: int = 20):
    """While active: the functions whose errors the department report catches broadly (``except ValueError``)
    raise :class:`InternalError` for anything that is not a kit error, and the bootstraps the notebooks do not
    expose as parameters draw at most ``n_boot`` replicates (the harness tests behaviour, not precision)."""
    import helpers.drivers_analysis as drivers_analysis
    import helpers.retention as retention
    import helpers.retention_report as retention_report

    patches = [(drivers_analysis, "analyze_drivers", _strict(drivers_analysis.analyze_drivers, n_boot)),
               (drivers_analysis, "select_responses", _strict(drivers_analysis.select_responses)),
               (retention, "customer_durations", _strict(retention.customer_durations)),
               (retention, "kaplan_meier", _strict(retention.kaplan_meier)),
               (retention_report, "prepare_retention_report",
                functools.partial(retention_report.prepare_retention_report, n_boot=n_boot))]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    try:
        for module, name, replacement in patches:
            setattr(module, name, replacement)
        yield
    finally:
        for module, name, original in saved:
            setattr(module, name, original)
