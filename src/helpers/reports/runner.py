"""Run every report: validate params, load data once, execute notebooks in parallel, write an immutable run folder.

Stages (``run_reports``):

1. **Plan** (nothing executed yet): read ``params/report.yaml`` (:func:`helpers.config.load_report_config`) and
   every ``params/departments/*.yaml`` (:func:`helpers.objectives.load_objectives`); the reports are those of the
   registry (:data:`helpers.reports.registry.REPORTS`); check each notebook has one ``parameters`` cell declaring
   every parameter we pass, and that its kernel exists. One bad file -> a
   :class:`~helpers.errors.ParamsError`/:class:`ReportRunError` naming it, before minutes are spent.
2. **Data, once**: :func:`helpers.data.load_dataset` validates the data; ``Dataset.snapshot(by_reference=True)``
   writes ``data.duckdb`` into the run folder: for a folder of Parquet files only views (read, type, as-of cut)
   over the source files and each file's size, modification time and content hash, no rows (a few hundred KB
   whatever the data's size); a copy of the tables for other sources. Every notebook gets
   ``data_source=<that snapshot>`` and loads it without re-validating (a referenced file that changed since is
   refused); ``reproduce`` re-hashes the referenced files and refuses when one changed.
3. **Execute** in ``--workers`` worker processes (forked once, papermill and nbconvert imported once): papermill's
   Python API with a warm kernel per report (:mod:`helpers.reports.warm_kernels`: a fresh process forked from a
   server that has already imported the scientific stack; the inline matplotlib backend forced, whatever
   ``MPLBACKEND`` says; the executed notebook written once when it ends, :mod:`helpers.reports.papermill_engine`),
   then the page protocol check (:func:`helpers.reports.registry.check_summary`,
   :func:`~helpers.reports.registry.charts_problem`) and HTML export in the same worker, with what changed since
   the previous complete run (:mod:`helpers.reports.changes`) at the top of department pages.
   A failing report gets an error page and keeps its executed notebook; the others go on.
4. **Publish**: ``index.html`` (the portal, :func:`write_index`) and ``manifest.json``; the temporary folder
   ``reports/.tmp-<run-id>`` is renamed to ``reports/<run-id>`` in one step, then ``reports/latest`` is switched
   (``os.replace`` of a symlink); ``--keep N`` removes older complete runs.

Faults (README "Exit codes"): options are checked before anything runs; a lock on ``out/.lock`` keeps two runs
out of one output folder (``--if-locked wait|fail``), and the run that holds it removes ``.tmp-*`` folders left
by a killed run at once. SIGINT/SIGTERM stop workers, kernels and the fork server, remove the temporary folder and
exit 130/143; after SIGKILL every helper process notices its parent is gone and exits within seconds
(:func:`helpers.reports.die_with_parent`). Disk full / read-only output gives a one-line error, removes the
partial output and exits 3. ``latest`` is switched only after a complete run, so it always points at one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import errno as _errno
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path


from helpers.errors import KitError, ParamsError
from helpers.reports import (STATUS_KEYS, ReportRunError, RunEnvironmentError, RunInterrupted, atomic_write_text,
                             console_text, die_with_parent, ensure_inside, environment_fault, safe_slug,
                             unique_slugs)

from helpers.reports import registry  # noqa: E402 - the reports a run renders (one place)
from helpers.reports.changes import company_kpis as company_kpis_of, look_first, previous_run, run_changes  # noqa: E402
from helpers.reports.registry import COMMON_PARAMETERS  # noqa: E402,F401
PACKAGES = ("satisfaction-kit", "pandas", "numpy", "scipy", "statsmodels", "matplotlib", "seaborn", "duckdb",
            "pyarrow", "pydantic", "papermill", "nbconvert", "nbclient", "ipykernel", "jupyter_client")
MANIFEST_VERSION = 1
log = logging.getLogger("helpers.reports")


@dataclasses.dataclass
class RunOptions:
    params: Path = Path("params")
    data: str | None = None          # folder of table files or .duckdb; None = what report.yaml says
    out: Path = Path("reports")
    only: list[str] | None = None    # department slugs or names
    as_of: str | None = None
    workers: int = 2
    dry_run: bool = False
    notebooks: Path | None = None    # default <repo>/notebooks/reports
    keep: int | None = None
    warm_kernels: bool = True
    timeout: int | None = 1800       # seconds per cell
    kernel_name: str | None = None   # default: the notebook's kernelspec
    company_reports: bool = True
    run_id: str | None = None
    progress: bool | None = None     # None: a progress bar when stderr is a terminal
    if_locked: str = "fail"          # another run holds out/.lock: "fail" at once or "wait" for it
    lock_timeout: float = 3600.0     # with if_locked="wait": seconds to wait before giving up (exit 3)


@dataclasses.dataclass
class ReportJob:
    name: str                 # unique slug within the run (file stem of every output)
    kind: str                 # "department" | "company"
    title: str
    department: str           # display name ("" for company-wide)
    notebook: str             # absolute path of the input notebook
    parameters: dict
    html: str = ""            # paths relative to the run folder
    executed_notebook: str = ""
    log: str = ""
    summary: str = ""
    shares: tuple[str, ...] = ()  # run-wide results the page computes if first (registry.ReportSpec.shares)
    cost: float = 1.0         # relative time when no previous run says (registry.ReportSpec.cost)


@dataclasses.dataclass
class DataInfo:
    source: str
    fingerprint: str
    snapshot: str
    first_date: str
    last_date: str
    warnings: list[str]
    rows: dict[str, int]
    as_of: str = ""  # the run's as-of date: --as-of, else the last complete month of the data (data cut there)
    excluded: list[dict] = dataclasses.field(default_factory=list)  # rows/values dated after it (DateFinding)
    departments: list[str] = dataclasses.field(default_factory=list)  # department names found in the data
    storage: str = ""  # the snapshot: "reference" (views over the source files) or "copy" (tables)
    references: dict = dataclasses.field(default_factory=dict)  # per table: path, size, mtime_ns, blake2b


# ------------------------------------------------------------------------------------------------- helpers

def _repo_root() -> Path:
    try:
        from helpers.config import repo_root
        return repo_root()
    except Exception:  # noqa: BLE001 - config not importable: fall back to the source tree
        return Path(__file__).resolve().parents[3]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    from importlib import metadata
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def new_run_id(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.UTC)
    return now.strftime("%Y-%m-%dT%H%M%SZ")


def notebook_parameters(path: Path) -> dict[str, object]:
    """The names (and default source) declared in the notebook's single ``parameters`` cell."""
    import nbformat
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # noqa: BLE001
        raise ReportRunError(f"{path}: not a readable notebook ({type(exc).__name__}: {exc})") from None
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ReportRunError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    import ast
    try:
        tree = ast.parse(cells[0].source)
    except SyntaxError as exc:
        raise ReportRunError(f"{path}: the parameters cell is not valid Python ({exc.msg}, line {exc.lineno})")
    names: dict[str, object] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        for t in targets:
            if isinstance(t, ast.Name):
                names[t.id] = ast.unparse(node.value) if getattr(node, "value", None) is not None else None
    names["__kernel__"] = nb.metadata.get("kernelspec", {}).get("name", "")
    return names


def _load_department_file(path: Path, lint: list[str] | None = None,
                          sizes: dict[Path, int] | None = None) -> str:
    """Validate a department params file; returns the department's display name. The file's SMART-lint
    warnings (helpers.objectives) are appended to ``lint``; its number of objectives goes into ``sizes``."""
    try:
        from helpers.objectives import load_objectives
    except ImportError:
        load_objectives = None
    if load_objectives is not None:
        plan = load_objectives(path)  # raises ObjectiveError (a ParamsError) naming file, id and field
        if lint is not None:
            lint.extend(str(w) for w in getattr(plan, "warnings", ()) or ())
        if sizes is not None:
            sizes[path] = len(getattr(plan, "objectives", ()) or ())
        return getattr(plan, "department", "") or path.stem.replace("_", " ").title()
    from helpers.params_yaml import load_params_yaml
    doc = load_params_yaml(path)  # bounded, no anchors/aliases; ParamsError naming file and line
    if not isinstance(doc, dict):
        raise ParamsError(path, "expected a mapping with the department's objectives")
    if sizes is not None and isinstance(doc.get("objectives"), list):
        sizes[path] = len(doc["objectives"])
    return str(doc.get("department") or path.stem.replace("_", " ").title())


# ------------------------------------------------------------------------------------------------- plan

def load_report_settings(params: Path):
    path = Path(params) / "report.yaml"
    if not path.is_file():
        raise ParamsError(path, "missing; every run needs params/report.yaml (see the README)")
    from helpers.config import load_report_config
    return path, load_report_config(path)


def department_files(dept_dir: Path) -> list[Path]:
    """The department params files (``*.yaml``/``*.yml``, any case), one per department: two files whose names
    give the same department (``marketing.yaml`` and ``marketing.yml``) are a :class:`ParamsError` naming both,
    not two reports writing the same files."""
    files = sorted(p for p in dept_dir.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file()) \
        if dept_dir.is_dir() else []
    by_slug: dict[str, list[Path]] = {}
    for f in files:
        by_slug.setdefault(safe_slug(f.stem), []).append(f)
    clashes = [fs for fs in by_slug.values() if len(fs) > 1]
    if clashes:
        listed = "; ".join(" and ".join(f.name for f in fs) for fs in clashes)
        raise ParamsError(dept_dir, f"more than one params file for the same department: {listed}; keep one "
                                    "file per department (a department's report is made from exactly one)")
    return files


def plan_reports(opts: RunOptions, cfg, config_path: Path, as_of: str, run_id: str,
                 data_source: str, run_dir: Path, catalog: dict | None = None,
                 registry_specs: tuple | None = None) -> list[ReportJob]:
    """Every report of the run with its exact papermill parameters; validates params and notebooks.

    The reports are those of :data:`helpers.reports.registry.REPORTS` (or ``registry_specs``): a department
    report once per department params file, a company-wide report once. ``catalog["departments"]`` receives
    ``[(slug, display name)]`` of every department params file (also those --only leaves out)."""
    nb_dir = Path(opts.notebooks) if opts.notebooks else _repo_root() / "notebooks" / "reports"
    dept_dir = Path(opts.params) / "departments"
    files = department_files(dept_dir)
    departments = []
    errors: list[KitError] = []
    lint: list[str] = []
    sizes: dict[Path, int] = {}  # objectives per department file: a department page's time grows with them
    for f in files:
        try:
            departments.append((f, _load_department_file(f, lint, sizes)))
        except KitError as exc:
            errors.append(exc)
    for warning in lint:  # SMART lint: printed here, and shown again in each department's report
        print(console_text(f"objectives warning: {warning}"), file=sys.stderr, flush=True)
    if len(errors) == 1:
        raise errors[0]
    if errors:  # every bad file at once, so one edit-run cycle fixes them all
        raise ParamsError(dept_dir, "invalid department params:\n  " + "\n  ".join(map(str, errors)))
    by_name: dict[str, list[Path]] = {}
    for f, display in departments:
        by_name.setdefault(display.strip().lower(), []).append(f)
    same = [(display, by_name[display.strip().lower()]) for _f, display in departments
            if len(by_name[display.strip().lower()]) > 1]
    if same:
        display, fs = same[0]
        raise ParamsError(dept_dir, f"{' and '.join(f.name for f in fs)} both declare department {display!r}; "
                                    "keep one file per department")
    if catalog is not None:
        catalog["departments"] = [(safe_slug(f.stem), display) for f, display in departments]
    if opts.only:
        wanted = {w.lower() for w in opts.only} | {safe_slug(w) for w in opts.only}
        chosen = [(f, n) for f, n in departments if f.stem.lower() in wanted or n.lower() in wanted
                  or safe_slug(n) in wanted]
        known = ", ".join(f.stem for f, _ in departments) or "none"
        missing = [w for w in opts.only if not any(w.lower() in (f.stem.lower(), n.lower()) or safe_slug(w) in
                                                   (f.stem, safe_slug(n)) for f, n in departments)]
        if missing:
            raise ParamsError(dept_dir, f"--only {', '.join(missing)}: no such department; known: {known}")
        departments = chosen
    if not departments and not opts.company_reports:
        raise ParamsError(dept_dir, "no department params files (*.yaml) and no company-wide reports to run")
    jobs: list[ReportJob] = []
    slugs = unique_slugs([f.stem for f, _ in departments])
    known_sizes = [sizes[f] for f, _ in departments if sizes.get(f)]
    mean_size = sum(known_sizes) / len(known_sizes) if known_sizes else 0.0
    common = {"data_source": data_source, "report_config": str(Path(config_path).resolve()),
              "as_of": as_of, "run_id": run_id}
    specs = registry.reports(specs=registry_specs)
    for spec in specs:  # every registered report, in registry order (departments first in the default one)
        nb = nb_dir / spec.notebook
        if spec.kind == "department":
            if not departments:
                continue
            if not nb.is_file():
                raise ReportRunError(f"{nb}: the {spec.name} report notebook is missing (--notebooks DIR to "
                                     "choose)")
            for f, display in departments:
                slug = slugs[f.stem]
                params = dict(common, **registry.parameter_values(spec, cfg, department=safe_slug(f.stem),
                                                                  params_file=str(f.resolve())))
                size = sizes.get(f) or mean_size
                jobs.append(ReportJob(name=f"{spec.name}_{slug}", kind="department",
                                      title=spec.title.format(department=display), department=display,
                                      notebook=str(nb.resolve()), parameters=params, shares=spec.shares,
                                      cost=spec.cost * (size / mean_size if mean_size and size else 1.0)))
        elif opts.company_reports:
            if not nb.is_file():
                raise ReportRunError(f"{nb}: the company-wide report notebook {spec.notebook} is missing")
            jobs.append(ReportJob(name=spec.name, kind="company", title=spec.title, department="",
                                  notebook=str(nb.resolve()),
                                  parameters=dict(common, **registry.parameter_values(spec, cfg)),
                                  shares=spec.shares, cost=spec.cost))
    declared_cache: dict[str, dict] = {}
    for job in jobs:
        declared = declared_cache.setdefault(job.notebook, notebook_parameters(Path(job.notebook)))
        job.summary = f"summaries/{job.name}.summary.json"
        job.parameters["summary_path"] = str(run_dir / job.summary)
        unknown = [k for k in job.parameters if k not in declared]
        if unknown:
            raise ReportRunError(f"{job.notebook}: its parameters cell does not declare {', '.join(unknown)}; "
                                 f"declared: {', '.join(k for k in declared if not k.startswith('__'))}")
        job.html = f"{job.name}.html"
        job.executed_notebook = f"notebooks/{job.name}.ipynb"
        job.log = f"logs/{job.name}.log"
        for rel in (job.html, job.executed_notebook, job.log, job.summary):
            ensure_inside(run_dir / rel, run_dir)
        job.parameters["__kernel__"] = opts.kernel_name or declared.get("__kernel__") or "python3"
    _check_kernels({j.parameters["__kernel__"] for j in jobs})
    return jobs


def _check_kernels(names: set[str]) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    ksm = KernelSpecManager()
    for name in names:
        try:
            ksm.get_kernel_spec(name)
        except NoSuchKernel:
            raise ReportRunError(f"Jupyter kernel {name!r} is not installed; run `make install` (it registers "
                                 f"the kit's kernel) or pass --kernel NAME") from None


# ------------------------------------------------------------------------------------------------- data

def prepare_data(source: str, cfg, run_dir: Path | None, as_of: str | None = None) -> DataInfo:
    """Load and validate the data once, cut at the run's as-of date (``as_of``, else the last complete month
    of the data: rows dated later are left out and listed in the warnings); snapshot it into
    ``run_dir/data.duckdb`` (not in a dry run), always by reference (views plus each referenced file's size,
    modification time and content hash; no rows are copied): Parquet files of a folder are referenced where they
    are; other sources (CSV folders, export profiles, a DuckDB file) have their validated tables stored once per
    data in the output folder's run store ``<out>/.data/<key>/<table>.parquet`` (shared by its runs; a second
    run on the same CSV folder reads the entry instead of parsing the files again) and the snapshot references
    those (:meth:`helpers.data.Dataset.snapshot`). :func:`prune_runs` removes entries no kept run uses."""
    import warnings as _warnings
    from helpers.data import LAST_COMPLETE_MONTH, RUN_STORE, load_dataset, snapshot_meta
    store = run_dir.parent / RUN_STORE if run_dir is not None else None
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        ds = load_dataset(source, column_mapping=getattr(cfg, "column_mapping", None) or None,
                          min_responses=getattr(cfg, "min_responses", 30), as_of=as_of or LAST_COMPLETE_MONTH,
                          store=store)
    try:
        from helpers.params_check import check_params_for_run  # params vs data, every mismatch at once (issue 12)
        params_warnings = check_params_for_run(cfg, ds, dry_run=run_dir is None)
        first, last = ds.date_range()
        rows = {t: int(ds.count(t)) for t in getattr(ds, "tables", ("customers", "responses", "tickets", "org"))}
        snapshot, meta = "", {}
        if run_dir is not None:
            snapshot = str(ds.snapshot(run_dir / "data.duckdb", by_reference=True, store=store))
            meta = snapshot_meta(snapshot)
        by_reference = (meta.get("storage") or "copy") == "reference"
        return DataInfo(source=str(source), fingerprint=ds.fingerprint, snapshot=snapshot,
                        first_date=str(first.date()), last_date=str(last.date()), warnings=list(ds.warnings) + params_warnings,
                        rows=rows, as_of=as_of or str(ds.as_of.date()),
                        excluded=[f.to_dict() for f in ds.excluded], departments=list(ds.departments),
                        storage=("reference" if by_reference else "copy") if snapshot else "",
                        references=json.loads(meta.get("references") or "{}") if by_reference else {})
    finally:
        ds.close()


# ------------------------------------------------------------------------------------------------- execution (worker)

_WORKER: dict = {}
_KERNEL_MANAGERS: "weakref.WeakSet" = weakref.WeakSet()  # this worker's kernels, killed when it is stopped


def _kernel_manager_class(socket_path: str | None):
    """The kernel manager class papermill uses (cached per worker): warm (forked by the server at
    ``socket_path``) or jupyter_client's own ``AsyncKernelManager``; either way every instance is recorded so
    that a stopped worker can kill its kernel (:func:`_worker_stop`)."""
    key = socket_path or ""
    if _WORKER.get("socket") != key or "km" not in _WORKER:
        if socket_path:
            from helpers.reports.warm_kernels import fork_kernel_manager_class
            base = fork_kernel_manager_class(socket_path)
        else:
            from jupyter_client.manager import AsyncKernelManager as base

        class TrackedKernelManager(base):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                _KERNEL_MANAGERS.add(self)

        TrackedKernelManager.__name__ = base.__name__
        _WORKER["socket"], _WORKER["km"] = key, TrackedKernelManager
    return _WORKER["km"]


def _kill_kernels() -> None:
    """SIGKILL this worker's kernel processes (each runs in its own session: kill the whole group)."""
    for km in list(_KERNEL_MANAGERS):
        process = getattr(getattr(km, "provisioner", None), "process", None)
        pid = getattr(process, "pid", None)
        if not pid:
            continue
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _worker_stop(signum, _frame) -> None:
    """SIGTERM in a worker (from the runner, or from the kernel when the runner died): kill its kernel, exit."""
    _kill_kernels()
    os._exit(128 + signum)


def _worker_init(runner_pid: int, lock_fd: int | None = None) -> None:
    """Runs first in every pool worker: Ctrl-C is the runner's to handle; SIGTERM kills the worker's kernel and
    ends it; the worker ends with the runner (even after SIGKILL); it holds no copy of the fork server's
    stdin pipe (so the server sees EOF as soon as the runner is gone) nor of the output folder's lock (a flock
    lives as long as any process holds the descriptor: a lingering worker must not keep the next run out)."""
    if lock_fd is not None:
        try:
            os.close(lock_fd)
        except OSError:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_stop)
    warm = sys.modules.get("helpers.reports.warm_kernels")
    if warm is not None:
        for server in list(warm.RUNNING):
            server.close_inherited_pipes()
        warm.RUNNING.clear()
    die_with_parent(signal.SIGTERM, parent=runner_pid)


def _warm_export() -> None:
    """In a worker: build the HTML exporter and templates before its first report (helpers.reports.export)."""
    try:
        from helpers.reports import export
        export.warm_up()
    except Exception:  # noqa: BLE001 - only a head start: the first report builds them otherwise
        pass


def _noop(_index: int = 0) -> int:
    return os.getpid()


# what every report kernel gets in its environment, whatever the scheduler's (a headless server often sets
# MPLBACKEND=Agg, under which plt.show() draws nothing and every chart vanished from the pages)
KERNEL_ENVIRONMENT = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
# ... and what they get unless the operator set it: the most rows a report reads into pandas when an engine query
# failed and a section falls back to rows (helpers.data.FRAME_ROW_LIMIT_ENV): that section is then left out with
# a message instead of the kernel taking the machine's memory (at 10M customers one such fallback reached 15 GB)
KERNEL_DEFAULTS = {"SATISFACTION_KIT_MAX_FRAME_ROWS": "2000000"}
# ... and on their command line: no IPython history. nbclient keeps a kernel's history in memory only for kernels
# named python/python3; the kit's kernel (satisfaction-kit) wrote every cell of every report into the user's
# ~/.ipython history.sqlite (tens of MB after some runs; one SQLite file written by parallel kernels)
KERNEL_ARGUMENTS = ("--HistoryManager.hist_file=:memory:",)


def company_kpis_with_notes(snapshot: str, as_of: str, config=None) -> tuple[list[dict], list[str]]:
    """In a pool worker: the index's company KPIs (:func:`helpers.reports.changes.company_kpis`) and the notes on
    what was left out. The worker reads rows into pandas under the kernels' limit
    (:data:`KERNEL_DEFAULTS`) unless the operator set one: a KPI whose engine query failed is then left out
    with a note instead of the worker reading a large table."""
    from helpers.data import FRAME_ROW_LIMIT_ENV  # noqa: PLC0415

    notes: list[str] = []
    saved = os.environ.get(FRAME_ROW_LIMIT_ENV)
    if saved is None and FRAME_ROW_LIMIT_ENV in KERNEL_DEFAULTS:
        os.environ[FRAME_ROW_LIMIT_ENV] = KERNEL_DEFAULTS[FRAME_ROW_LIMIT_ENV]
    try:
        return company_kpis_of(snapshot, as_of, config=config, notes=notes), notes
    finally:
        if saved is None:
            os.environ.pop(FRAME_ROW_LIMIT_ENV, None)


@contextlib.contextmanager
def kernel_environment():
    """Set :data:`KERNEL_ENVIRONMENT` in this process while a kernel (or the warm-kernel server that forks
    them) is started from it, then restore what was there: kernels inherit the environment of the process
    that starts them."""
    saved = {k: os.environ.get(k) for k in (*KERNEL_ENVIRONMENT, *KERNEL_DEFAULTS)}
    os.environ.update(KERNEL_ENVIRONMENT)
    for key, value in KERNEL_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _kernel_start_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a kernel that died or never answered before its first cell (nbclient / the warm kernel
    client raise ``RuntimeError("Kernel died before replying to kernel_info")`` / ``"Kernel didn't respond"``)."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("before replying to kernel_info" in text
                                               or "Kernel didn't respond" in text)


def execute_report(job: ReportJob, run_dir: str, context: dict) -> dict:
    """Execute one notebook with papermill and write its HTML (or error page). Never raises."""
    import papermill as pm
    from helpers.reports import export
    from helpers.reports.papermill_engine import ENGINE_NAME
    t0 = time.perf_counter()
    run_dir_p = Path(run_dir)
    out_nb = run_dir_p / job.executed_notebook
    log_path = run_dir_p / job.log
    html_path = run_dir_p / job.html
    for p in (out_nb, log_path):
        p.parent.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in job.parameters.items() if not k.startswith("__")}
    result = {"name": job.name, "status": "ok", "error": None}
    executed = None  # the executed notebook (papermill also wrote it to out_nb)
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    pm_logger = logging.getLogger("papermill")
    pm_logger.addHandler(handler)
    pm_logger.setLevel(logging.INFO)
    pm_logger.propagate = False
    # the kernel process inherits this worker's stdout/stderr: send them to the report's log while it runs
    saved_fds = (os.dup(1), os.dup(2))
    sys.stdout.flush()
    sys.stderr.flush()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    try:
        with open(log_path, "a", encoding="utf-8") as stream_log:
            stream_log.write(f"report {job.name}: {job.notebook}\nparameters: {json.dumps(params)}\n")
            stream_log.flush()
            extra = {"extra_arguments": list(KERNEL_ARGUMENTS)}
            km_class = _kernel_manager_class(context.get("fork_socket"))
            if km_class is not None:
                extra["kernel_manager_class"] = km_class
            try:
                for attempt in (1, 2):
                    try:
                        with kernel_environment():  # the inline backend, whatever MPLBACKEND the scheduler set
                            executed = pm.execute_notebook(
                                job.notebook, str(out_nb), parameters=params, engine_name=ENGINE_NAME,
                                kernel_name=job.parameters["__kernel__"], progress_bar=False, log_output=True,
                                stdout_file=stream_log, stderr_file=stream_log, cwd=context["cwd"],
                                execution_timeout=context.get("timeout"), **extra)
                        break
                    except RuntimeError as exc:
                        # a kernel that died before answering kernel_info ran no cell: start one fresh kernel
                        # (a cold one, not forked) once, so a transient start-up failure (e.g. a port another
                        # process took in between) does not fail the report; a second failure is reported
                        if attempt == 2 or not _kernel_start_failure(exc):
                            raise
                        stream_log.write(f"kernel start-up failed ({exc}); retrying once with a fresh kernel\n")
                        stream_log.flush()
                        extra.pop("kernel_manager_class", None)
            except pm.PapermillExecutionError as exc:
                if environment_fault(exc):  # e.g. the notebook could not write its summary: disk full
                    raise
                result.update(status="failed", error={"name": exc.ename, "message": exc.evalue,
                                                      "cell_index": exc.cell_index, "kind": "error"})
            except Exception as exc:  # noqa: BLE001 - kernel died, timeout, bad notebook: isolate it
                if environment_fault(exc):
                    raise
                result.update(status="failed", error={"name": type(exc).__name__, "message": str(exc)[:2000],
                                                      "cell_index": None, "kind": _failure_kind(exc)})
                stream_log.write(traceback.format_exc())
        summary = _read_summary(run_dir_p / job.summary)
        page_ctx = dict(title=summary.get("title") or job.title, department=job.department,
                        as_of=context["as_of"], run_id=context["run_id"], company=context["company"],
                        notebook=os.path.relpath(job.notebook, context["cwd"]))
        html = ""
        if result["status"] == "ok":
            # the page protocol: a valid summary written by the notebook's last step, and every chart it
            # meant to show on the page
            summary, problem = registry.check_summary(run_dir_p / job.summary)
            if problem is None:
                changes = None
                if job.kind == "department" and "previous" in context:  # (not in a reproduction)
                    from helpers.reports.changes import changes_for_report
                    changes = changes_for_report(job.name, summary, context.get("previous"))
                    result["changes"] = changes.to_dict()
                nb = executed if executed is not None else export.read_notebook(out_nb)
                html = export.render_report(nb, freshness=context["freshness"],
                                            fingerprint=context["fingerprint"],
                                            warnings=summary.get("warnings", []), changes=changes, **page_ctx)
                problem = registry.charts_problem(summary, html)
            if problem is not None:
                where = "page protocol check after the last cell (the notebook itself ran without error)"
                result.update(status="failed", error={"name": "Page protocol", "message": problem,
                                                      "cell_index": None, "kind": "protocol", "where": where})
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(f"page protocol: {problem}\n")
        if result["status"] != "ok":
            details = {}
            err = result["error"]
            if out_nb.exists():
                try:
                    details = export.failure_details(export.read_notebook(out_nb), err, context.get("timeout"))
                except Exception:  # noqa: BLE001
                    details = {}
            html = export.render_error(
                executed_notebook=job.executed_notebook, log=job.log, log_tail=_tail(log_path),
                error_name=details.get("error_name", err["name"]),
                error_message=details.get("error_message", err["message"]),
                where=details.get("where", err.get("where") or "before the first cell ran (kernel start-up)"),
                failing_source=details.get("failing_source", ""), traceback=details.get("traceback", ""),
                **page_ctx)
            if details.get("where"):
                result["error"].update(where=details["where"], name=details["error_name"],
                                       message=details["error_message"])
        atomic_write_text(html_path, html)
        result["summary"] = summary
        result["title"] = page_ctx["title"]
    except Exception as exc:  # noqa: BLE001 - the export itself failed: still isolate
        fault = environment_fault(exc)
        if fault:  # disk full / read-only: not this report's fault; the runner stops the run (exit 3)
            result.update(status="environment", error={
                "name": type(exc).__name__, "message": str(exc)[:2000], "errno": fault[0],
                "filename": str(getattr(exc, "filename", "") or ""), "where": "writing the report's files"})
            result["seconds"] = round(time.perf_counter() - t0, 3)
            return result
        result.update(status="failed", error={"name": type(exc).__name__, "message": str(exc)[:2000],
                                              "where": "HTML export"})
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(traceback.format_exc())
        try:
            atomic_write_text(html_path, export.render_error(
                title=job.title, department=job.department, as_of=context["as_of"], run_id=context["run_id"],
                company=context["company"], notebook=job.notebook, executed_notebook=job.executed_notebook,
                log=job.log, log_tail=_tail(log_path), error_name=type(exc).__name__, error_message=str(exc),
                where="HTML export"))
        except Exception:  # noqa: BLE001
            pass
    finally:
        pm_logger.removeHandler(handler)
        handler.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_fds[0], 1)
        os.dup2(saved_fds[1], 2)
        for fd in saved_fds:
            os.close(fd)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result


def _failure_kind(exc: BaseException) -> str:
    """How papermill stopped: "dead kernel" (nbclient's DeadKernelError), "timeout" (CellTimeoutError) or
    "other" (the kernel did not start, a bad notebook...)."""
    names = {c.__name__ for c in type(exc).__mro__}
    if "DeadKernelError" in names:
        return "dead kernel"
    if "CellTimeoutError" in names:
        return "timeout"
    return "other"


def _read_summary(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


# ------------------------------------------------------------------------------------------------- scheduling

def previous_timings(out: Path) -> dict[str, float]:
    """Seconds per report name in the newest complete run in ``out`` ({} when there is none)."""
    for run in list_runs(out):
        try:
            man = json.loads((run["path"] / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return {r["name"]: float(r["seconds"]) for r in man.get("reports", []) if r.get("seconds")}
    return {}


def schedule_order(jobs: list[ReportJob], timings: dict[str, float]) -> list[ReportJob]:
    """The order the workers take the reports in: the pages that compute the run's shared results first, then
    the longest first.

    1. Longest first (LPT scheduling: the run ends sooner when the long pages do not start last). A report's
       time is its seconds in the previous run; one that run did not have is estimated by its ``cost`` (relative
       page time, :class:`helpers.reports.registry.ReportSpec`) times the previous run's average page (times
       1 in a first run), ties in plan order.
    2. Then, walking that order, a report is moved to the front when it computes a shared result (its
       ``shares``) that no report already moved computes. Every page needing a shared result computes it if it
       is the first, while the others wait for it (a lock in the run folder); started together, the producers
       of different results each compute their own in parallel, and the pages after them find the results
       ready instead of idling a worker (measured: about 0.9 s of a 19 s demo run)."""
    known = [t for t in timings.values() if t > 0]
    scale = sum(known) / len(known) if known else 1.0

    def estimate(job: ReportJob) -> float:
        seconds = timings.get(job.name)
        return seconds if seconds and seconds > 0 else job.cost * scale

    indexed = sorted(enumerate(jobs), key=lambda ij: (-estimate(ij[1]), ij[0]))
    longest_first = [j for _, j in indexed]
    first: list[ReportJob] = []
    covered: set[str] = set()
    for job in longest_first:
        new = set(job.shares) - covered
        if new:
            first.append(job)
            covered |= new
    return first + [j for j in longest_first if not any(j is f for f in first)]


# ------------------------------------------------------------------------------------------------- reproduce

def rerun_parameters(manifest: dict, report: dict, run_dir: str | os.PathLike) -> dict:
    """The papermill parameters of ``report`` for re-executing it in ``run_dir`` (which must hold a copy of the
    run's ``data.duckdb``): exactly the recorded ones, with the temporary run folder of the original execution
    replaced by ``run_dir`` (snapshot path, summary path)."""
    old = manifest["run_dir_at_execution"]
    out = {}
    for key, value in report["parameters"].items():
        if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
            value = str(Path(run_dir) / os.path.relpath(value, old))
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------------- publish

def list_runs(out: Path) -> list[dict]:
    """Complete runs in ``out`` (folders with a manifest), newest first."""
    runs = []
    if not out.is_dir():
        return runs
    for d in out.iterdir():
        if d.name.startswith(".") or d.is_symlink() or not d.is_dir():
            continue
        m = d / "manifest.json"
        if m.is_file():
            try:
                man = json.loads(m.read_text(encoding="utf-8"))
            except ValueError:
                continue
            runs.append({"run_id": d.name, "as_of": man.get("as_of", ""), "path": d,
                         "started_at": str(man.get("started_at", "")), "finished_at": str(man.get("finished_at", "")),
                         "failed": sum(1 for r in man.get("reports", []) if r.get("status") != "ok")})
    # by when they ran (the manifest's UTC timestamps), not by name: --run-id names need not sort by time
    runs.sort(key=lambda r: (r["started_at"], r["finished_at"], r["run_id"]), reverse=True)
    return runs


def switch_latest(out: Path, run_id: str) -> str:
    """Point ``out/latest`` at ``out/<run_id>`` atomically (symlink; a redirect page where symlinks fail)."""
    link = out / "latest"
    tmp = out / f".latest.{os.getpid()}.tmp"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(run_id, tmp, target_is_directory=True)
        if link.exists() and not link.is_symlink():
            raise OSError("reports/latest exists and is not a symlink")
        os.replace(tmp, link)
        return "symlink"
    except OSError:
        if tmp.is_symlink():
            tmp.unlink()
        atomic_write_text(out / "LATEST", run_id + "\n")
        atomic_write_text(out / "latest.html", f'<!DOCTYPE html><meta charset="utf-8"><meta http-equiv="refresh" '
                                               f'content="0; url={run_id}/index.html"><title>Latest reports</title>'
                                               f'<a href="{run_id}/index.html">Latest reports: {run_id}</a>')
        return "file"


def prune_runs(out: Path, keep: int, protect: str) -> list[str]:
    """Delete complete runs older than the newest ``keep`` (by start time, :func:`list_runs`; never ``protect``),
    then the run store's entries (``out/.data``) that no remaining run folder references (:func:`_prune_store`).
    ``.tmp-*`` folders of killed runs are removed at the start of the next run (:func:`remove_stale_runs`).
    Only called while holding ``out/.lock``: no other run is writing or reading a new entry meanwhile."""
    if keep is None:
        return []
    if keep < 1:
        raise ParamsError("--keep", f"{keep}: keep at least the newest run (N >= 1)")
    removed = []
    for run in list_runs(out)[keep:]:
        if run["run_id"] == protect:
            continue
        target = ensure_inside(run["path"], out)
        shutil.rmtree(target)
        removed.append(run["run_id"])
    _prune_store(out)
    return removed


def _prune_store(out: Path) -> list[str]:
    """Remove the entries of ``out``'s run store that no folder of ``out`` (complete runs, reproductions, a run
    under way) references in its ``data.duckdb`` (or, when that cannot be read, its manifest), and the temporary
    folders of writes a killed run left; the keys removed. When a run's references cannot be read at all,
    nothing is removed (an entry it may use is never taken away)."""
    from helpers.data import RUN_STORE, snapshot_meta, store_entries
    store = out / RUN_STORE
    if not store.is_dir():
        return []
    used: set[str] = set()
    for folder in out.iterdir():
        if folder.name == RUN_STORE or folder.is_symlink() or not folder.is_dir():
            continue
        snapshot, manifest = folder / "data.duckdb", folder / "manifest.json"
        if not snapshot.exists() and not manifest.exists():
            continue
        meta = snapshot_meta(snapshot)
        if meta:
            refs = json.loads(meta.get("references") or "{}")
            used.add(meta.get("store") or "")
        else:
            try:
                refs = dict(json.loads(manifest.read_text(encoding="utf-8"))["data"].get("references") or {})
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return []  # a run whose data we cannot tell: keep every entry
        # by the entry's name (the key), whatever spelling of the output folder the run used (relative,
        # through a symlink): keeping an entry too many is harmless, removing one a run reads is not
        used.update(Path(str(ref.get("path", ""))).parent.name for ref in refs.values())
    removed = []
    for leftover in store.iterdir():
        if leftover.name.startswith(".tmp-") and leftover.is_dir():
            shutil.rmtree(ensure_inside(leftover, out), ignore_errors=True)
    for key in store_entries(store):
        if key not in used:
            shutil.rmtree(ensure_inside(store / key, out))
            removed.append(key)
    return removed


def write_index(run_dir: Path, manifest: dict, company: str, previous: list[dict]) -> None:
    """The portal ``index.html``: company roll-up (objectives by status, headline KPIs with their change),
    what changed since the previous run, departments ordered by attention needed, failed reports in plain
    words, the company-wide reports, and previous runs with their roll-up.

    ``previous``: earlier complete runs, newest first (:func:`list_runs` entries: ``run_id``, ``as_of``,
    ``failed`` and, when known, ``path``)."""
    from helpers.formatting import NA, fmt_interval, fmt_number, shorten
    from helpers.reports.changes import ROLLUP_ORDER, attention_key, kpi_change, rollup
    from helpers.reports.export import render_page

    def badges_of(raw: dict, main: bool = False) -> list[tuple[str, int]]:
        # statuses with objectives (``main``: the three main statuses always, as the company roll-up)
        out = [(k, int(raw.get(k, 0) or 0)) for k in ROLLUP_ORDER
               if (main and k in STATUS_KEYS) or int(raw.get(k, 0) or 0) > 0]
        return out + [(str(k), int(v)) for k, v in raw.items() if k not in ROLLUP_ORDER and int(v) > 0]

    def failure_text(r: dict) -> str:
        e = r.get("error") or {}
        message = str(e.get("message") or e.get("name") or "unknown error")
        where = str(e.get("where") or "")
        return shorten(message, 240).strip("'\"") + (f" ({where})" if where else "")

    departments, company_reports, failures, status_changes = [], [], [], []
    for r in manifest["reports"]:
        raw = r.get("status_counts") or {}
        changes = r.get("changes") or {}
        row = {"title": r.get("title") or r["name"], "department": r.get("department_name", ""),
               "html": r["html"], "status": r["status"], "badges": badges_of(raw),
               "has_objectives": bool(raw), "headline": r.get("headline") or "",
               "look_first": r.get("look_first") or "", "changes": changes.get("headline", ""),
               "label": r.get("department_name") or r.get("title") or r["name"],
               "failure": failure_text(r) if r["status"] != "ok" else ""}
        if r["status"] != "ok":
            failures.append(row)
        for change in changes.get("status_changes", []) or []:
            status_changes.append(dict(change, department=row["label"], html=r["html"]))
        if r.get("kind") == "department":
            departments.append((attention_key(r), row))
        else:
            company_reports.append(row)
    departments = [row for _key, row in sorted(departments, key=lambda kr: kr[0])]
    totals = rollup(manifest)
    n_objectives = sum(totals.values())
    worst = [row["label"] for row in departments if row["status"] == "ok"
             and any(k in ("off track", "missed") and n for k, n in row["badges"])]
    if n_objectives:
        bad = totals.get("off track", 0) + totals.get("missed", 0)
        headline = (f"{fmt_number(bad)} of {fmt_number(n_objectives)} objectives are off track or missed"
                    + (f", in {', '.join(worst[:4])}{' and others' if len(worst) > 4 else ''}." if worst else ".")
                    if bad else f"None of the {fmt_number(n_objectives)} objectives is off track or missed.")
    else:
        headline = "No department report gave objective statuses in this run."
    # the company's headline KPIs, with their change vs the month before and since the previous run
    prev_kpis = {}
    if previous:
        try:
            prev_manifest = json.loads((Path(previous[0]["path"]) / "manifest.json").read_text(encoding="utf-8")) \
                if previous[0].get("path") else {}
        except (OSError, ValueError):
            prev_manifest = {}
        prev_kpis = {k.get("kpi"): k for k in prev_manifest.get("company_kpis", []) or []}
    kpi_cards = []
    for k in manifest.get("company_kpis", []) or []:
        unit = k.get("unit") or ""
        pct = unit == "%"
        value = k.get("value")
        decimals = 0 if value is not None and abs(value) >= 100 else 1
        card = {"label": k.get("label") or k.get("kpi"), "period": k.get("period", ""),
                "value": (fmt_number(value, 0, signed=True) if unit == "points"  # NPS reads "+21", as on the pages
                          else fmt_number(value, decimals) + ("%" if pct else "")) if value is not None else NA,
                "interval": f"95% CI {fmt_interval(k.get('ci_low'), k.get('ci_high'), percent=pct, share=False)}, "
                            f"n = {fmt_number(k.get('n'))}",
                "change": "", "direction": "", "since_run": ""}
        if k.get("change") is not None:
            points = "points" if unit in ("%", "points") else unit
            diff = fmt_number(k["change"], 1, signed=True)
            if k.get("change_significant"):
                card["change"] = f"{diff} {points} vs {k.get('previous_period', 'the month before')} (significant)"
                card["direction"] = "up" if k["change"] > 0 else "down"
            else:
                card["change"] = (f"{diff} {points} vs {k.get('previous_period', 'the month before')}: within "
                                  "the noise")
        if k.get("kpi") in prev_kpis:
            since = kpi_change(prev_kpis[k["kpi"]], k)
            card["since_run"] = ("Unchanged since the last run (same period, same data)."
                                 if since.verdict == "unchanged" else "Since the last run: " + since.sentence())
        kpi_cards.append(card)
    previous_rows = []
    for p in previous:
        counts = {}
        if p.get("path"):
            try:
                counts = rollup(json.loads((Path(p["path"]) / "manifest.json").read_text(encoding="utf-8")))
            except (OSError, ValueError):
                counts = {}
        previous_rows.append({"run_id": p["run_id"], "as_of": p.get("as_of", ""), "failed": p.get("failed", 0),
                              "badges": badges_of(counts) if counts else []})
    html = render_page("index.html.j2", company=company, as_of=manifest["as_of"],
                       freshness=manifest["data"].get("last_date", ""), run_id=manifest["run_id"],
                       run_date=manifest["started_at"][:16].replace("T", " ") + " UTC",
                       n_reports=len(manifest["reports"]), departments=departments,
                       company_reports=company_reports, failures=failures,
                       n_ok=len(manifest["reports"]) - len(failures), totals=badges_of(totals, main=True),
                       headline=headline, kpi_cards=kpi_cards, status_changes=status_changes,
                       run_changes=manifest.get("changes") or {},
                       fingerprint=manifest["data"]["fingerprint"][:16], previous=previous_rows,
                       warnings=(list(manifest.get("warnings", [])) + list(manifest["data"].get("warnings", [])))[:20])
    atomic_write_text(run_dir / "index.html", html)


# ------------------------------------------------------------------------------------------------- run

@dataclasses.dataclass
class RunResult:
    run_id: str
    run_dir: Path | None
    manifest: dict
    failures: list[str]

    @property
    def exit_code(self) -> int:
        from helpers.reports import EXIT_OK, EXIT_REPORT_FAILED
        return EXIT_REPORT_FAILED if self.failures else EXIT_OK


RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,79}"


def validate_options(opts: RunOptions) -> None:
    """Check every option before anything runs (:class:`ParamsError`/:class:`ReportRunError`, exit code 2)."""
    if opts.run_id is not None and not re.fullmatch(RUN_ID_PATTERN, opts.run_id):
        raise ReportRunError(f"--run-id {opts.run_id!r}: use letters, digits, '-' and '_' only (at most 80)")
    if opts.keep is not None and (isinstance(opts.keep, bool) or int(opts.keep) < 1):
        raise ParamsError("--keep", f"{opts.keep}: keep at least the newest run (N >= 1)")
    if opts.workers is not None and int(opts.workers) < 1:
        raise ParamsError("--workers", f"{opts.workers}: at least 1 worker process")
    if opts.timeout is not None and opts.timeout <= 0:
        raise ParamsError("--timeout", f"{opts.timeout}: seconds per cell must be > 0")
    if opts.if_locked not in ("wait", "fail"):
        raise ParamsError("--if-locked", f"{opts.if_locked!r}: expected 'wait' or 'fail'")
    if opts.lock_timeout is None or isinstance(opts.lock_timeout, bool) or not opts.lock_timeout > 0:
        raise ParamsError("--lock-timeout", f"{opts.lock_timeout}: seconds to wait for the other run must be > 0")
    if opts.as_of:
        try:
            _dt.date.fromisoformat(opts.as_of)
        except ValueError:
            raise ParamsError("--as-of", f"{opts.as_of!r} is not an ISO date (YYYY-MM-DD)") from None


class OutputLock:
    """An exclusive ``fcntl.flock`` on ``out/.lock`` held for the whole run (released by the OS if the process
    dies, even by SIGKILL). The file says who holds it (pid, run id) for the message of the run that waits."""

    def __init__(self, out: Path):
        self.out = out
        self.path = out / ".lock"
        self.fd: int | None = None

    def holder(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            return f"pid {info.get('pid', '?')}, run {info.get('run_id', '?')}, started {info.get('started_at', '?')}"
        except (OSError, ValueError):
            return "pid unknown"

    def acquire(self, if_locked: str, echo: Callable[[str], None], timeout: float = 3600.0,
                poll: float = 0.25) -> None:
        """Take the lock; when another run holds it, fail at once (``if_locked="fail"``) or wait at most
        ``timeout`` seconds for it, then fail naming the other run (:class:`RunEnvironmentError`, exit 3)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock (documented)
            return
        self.out.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if if_locked != "wait":
                    raise RunEnvironmentError(
                        f"{self.out}: another report run is writing there ({self.holder()}); wait for it to "
                        "finish, or pass --if-locked wait to queue behind it") from None
                echo(f"waiting for the other run in {self.out} to finish ({self.holder()}; at most "
                     f"{timeout:g} s, --lock-timeout) ...")
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise RunEnvironmentError(
                                f"{self.out}: another report run still holds the output folder after "
                                f"{timeout:g} s ({self.holder()}); gave up waiting (--lock-timeout); nothing "
                                "was written. Check whether that run is stuck, or raise --lock-timeout") from None
                        time.sleep(min(poll, left))
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def record(self, run_id: str, started: str) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps({"pid": os.getpid(), "run_id": run_id, "started_at": started}).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def remove_stale_runs(out: Path) -> list[str]:
    """Remove what a killed run left in ``out`` (``.tmp-<run>`` folders, ``.latest.*.tmp`` links). Only called
    while holding ``out/.lock``: then no other run can be writing there."""
    removed = []
    if not out.is_dir():
        return removed
    for leftover in out.iterdir():
        if leftover.name.startswith(".tmp-") and leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(ensure_inside(leftover, out))
            removed.append(leftover.name)
        elif leftover.name.startswith(".latest.") and leftover.name.endswith(".tmp"):
            leftover.unlink()
            removed.append(leftover.name)
    return removed


def unique_run_id(out: Path, wanted: str | None, started: _dt.datetime) -> str:
    """``wanted`` (``--run-id``: must be new, runs are immutable) or the UTC start time; a second run started in
    the same second gets ``-2``, ``-3``... (only called while holding the lock, so the choice is final)."""
    if wanted:
        if (out / wanted).exists():
            raise ReportRunError(f"{out / wanted} already exists: runs are immutable; choose another --run-id")
        return wanted
    base = new_run_id(started)
    run_id, k = base, 2
    while (out / run_id).exists() or (out / f".tmp-{run_id}").exists():
        run_id, k = f"{base}-{k}", k + 1
    return run_id


class _SignalGuard:
    """While a run executes, SIGINT and SIGTERM raise :class:`RunInterrupted` (once) in the main thread, so the
    runner can stop its workers, kernels and fork server and remove its temporary folder. ``disarm()`` before
    steps that must not be cut in half (cleanup, the final rename)."""

    def __init__(self):
        self.saved: dict = {}
        self.armed = False
        self.received: int | None = None

    def _handle(self, signum, _frame):
        if self.received is None:
            self.received = signum
        if self.armed:
            self.armed = False
            raise RunInterrupted(signum)

    def disarm(self) -> None:
        self.armed = False

    def __enter__(self) -> "_SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)
        self.armed = True
        return self

    def __exit__(self, *exc) -> None:
        self.armed = False
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


@dataclasses.dataclass
class _RunState:
    """What a run has started so far, for the clean-up after a fault or a signal."""
    started: _dt.datetime
    t0: float
    out: Path
    run_id: str = ""
    guard: _SignalGuard | None = None
    server: object = None
    pool: object = None
    tmp_dir: Path | None = None
    published: Path | None = None   # out/<run_id> after the rename, until latest points at it
    bar: object = None
    lock: OutputLock | None = None


def _stop_workers(pool, grace: float = 5.0) -> None:
    """SIGTERM every pool worker (each kills its kernel, :func:`_worker_stop`), SIGKILL what is left."""
    procs = [p for p in list((getattr(pool, "_processes", None) or {}).values()) if p is not None]
    for p in procs:
        try:
            if p.is_alive():
                p.terminate()
        except (OSError, ValueError, AssertionError):
            pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(1.0)
        except (OSError, ValueError, AssertionError):
            pass
    try:
        pool.shutdown(wait=False, cancel_futures=True)
    except Exception:  # noqa: BLE001
        pass


def _rmtree(path: Path, attempts: int = 5) -> None:
    """Remove ``path``; retries briefly in case a dying kernel still writes into it."""
    for i in range(attempts):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.2 * (i + 1))


def _clean_up(state: _RunState) -> None:
    """Stop workers, kernels and the fork server; remove the unfinished run folder."""
    if state.bar is not None:
        try:
            state.bar.close()
        except Exception:  # noqa: BLE001
            pass
    if state.pool is not None:
        _stop_workers(state.pool)
        state.pool = None
    if state.server is not None:
        state.server.stop(timeout=5.0)
        state.server = None
    for folder in (state.tmp_dir, state.published):
        if folder is not None and folder.exists():
            _rmtree(folder)


def _latest_target(out: Path) -> str:
    try:
        return os.readlink(out / "latest")
    except OSError:
        try:
            return (out / "LATEST").read_text(encoding="utf-8").strip() or "nothing"
        except OSError:
            return "nothing"


def _environment_message(exc: BaseException, fault: tuple[int, str], state: _RunState) -> str:
    code, reason = fault
    name = _errno.errorcode.get(code, str(code))
    where = ""
    inner: BaseException | None = exc
    while inner is not None and not where:
        where = str(getattr(inner, "filename", "") or "")
        inner = inner.__cause__ or inner.__context__
    space = code in (_errno.ENOSPC, getattr(_errno, "EDQUOT", -1))
    at = f" at {where}" if where else ""
    unfinished = f"; the unfinished run {state.run_id} was removed" if state.run_id else ""
    latest = f"; {state.out / 'latest'} still points at {_latest_target(state.out)}"
    inside = not where or Path(where).resolve() == state.out or state.out in Path(where).resolve().parents
    if inside:
        fix = ("free space (or choose another --out) and run again" if space
               else "make it writable or choose another --out")
        return f"{reason} ({name}){at}: the output folder {state.out} cannot take the reports; {fix}{unfinished}{latest}"
    fix = "free space there and run again" if space else "check its permissions (or the folder it is in)"
    return f"{reason} ({name}){at}: {fix}{unfinished}{latest}"


def skip_unused_format_grammar() -> None:
    """Leave out ``rfc3987_syntax`` in this process (and the workers it forks).

    jsonschema, imported by nbformat (papermill, nbconvert), imports ``rfc3987_syntax`` when it is installed, to
    check the "iri" string formats, and that builds a Lark grammar at import: about 1 s per process (measured:
    ``import nbformat`` 1.09 s with it, 0.13 s without), on the run's critical path before any report starts.
    No notebook schema uses a string format (nbformat v4 schemas have no ``"format"``), and jsonschema imports it
    inside ``suppress(ImportError)``, so validation is unchanged. A no-op when it is already imported."""
    sys.modules.setdefault("rfc3987_syntax", None)


def _console_echo(echo: Callable[[str], None] | None) -> Callable[[str], None]:
    """``echo`` (default: a line on stderr) for messages that quote department names, file names and data
    values: terminal control characters are removed first (:func:`helpers.reports.console_text`)."""
    target = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    return lambda msg: target(console_text(msg))


def run_reports(opts: RunOptions, *, data_preparer: Callable[..., DataInfo] = prepare_data,
                echo: Callable[[str], None] | None = None) -> RunResult:
    """The whole run (see the module docstring).

    Raises ``KitError`` subclasses for bad options/params/data (exit code 2), :class:`RunEnvironmentError` for
    disk full / read-only output / a locked output folder (exit 3) and :class:`RunInterrupted` for SIGINT/SIGTERM
    (exit 130/143); in the last two cases nothing of the run is left behind and ``latest`` is unchanged.
    """
    echo = _console_echo(echo)
    skip_unused_format_grammar()
    validate_options(opts)
    state = _RunState(started=_dt.datetime.now(_dt.UTC), t0=time.perf_counter(), out=Path(opts.out).resolve())
    if opts.dry_run:  # writes nothing: no lock
        state.run_id = opts.run_id or new_run_id(state.started)
        return _run(opts, state, data_preparer, echo)
    state.run_id = opts.run_id or new_run_id(state.started)  # provisional until the lock is held
    with _faults_handled(state):
        return _run(opts, state, data_preparer, echo)


@contextlib.contextmanager
def _faults_handled(state: _RunState):
    """Around a run that writes into ``state.out``: SIGINT/SIGTERM become :class:`RunInterrupted` (one-line
    message, exit 130/143), disk full / read-only output become :class:`RunEnvironmentError` (exit 3); either way
    the run's workers, kernels and unfinished folder are removed first, and the output lock is always released."""
    with _SignalGuard() as guard:
        state.guard = guard
        try:
            yield
        except BaseException as exc:
            guard.disarm()
            _clean_up(state)
            if isinstance(exc, (RunInterrupted, KeyboardInterrupt)):
                interrupted = exc if isinstance(exc, RunInterrupted) else RunInterrupted(signal.SIGINT)
                interrupted.detail = (
                    f"interrupted ({signal.Signals(interrupted.signum).name}): run {state.run_id or '-'} stopped, its "
                    f"workers, kernels and unfinished folder removed; {state.out / 'latest'} still points at "
                    f"{_latest_target(state.out)}")
                if interrupted is exc:
                    raise
                raise interrupted from None
            fault = environment_fault(exc) if isinstance(exc, Exception) else None
            if fault is not None:
                raise RunEnvironmentError(_environment_message(exc, fault, state)) from exc
            raise
        finally:
            if state.lock is not None:
                state.lock.release()


def _lock_output(opts: RunOptions, state: _RunState, jobs: list[ReportJob], echo: Callable[[str], None]) -> str:
    """Take ``out/.lock`` (or wait for it / fail, ``--if-locked``), choose the final run id, remove what a
    killed run left behind. Jobs planned under a provisional run id are moved to the final one."""
    state.lock = OutputLock(state.out)
    state.lock.acquire(opts.if_locked, echo, timeout=float(opts.lock_timeout))
    provisional = state.run_id
    state.run_id = unique_run_id(state.out, opts.run_id, state.started)
    state.lock.record(state.run_id, state.started.isoformat(timespec="seconds"))
    stale = remove_stale_runs(state.out)
    if stale:
        echo(f"removed what an interrupted run left in {state.out}: {', '.join(stale)}")
    if state.run_id != provisional:
        old, new = str(state.out / f".tmp-{provisional}"), str(state.out / f".tmp-{state.run_id}")
        for job in jobs:
            for key, value in job.parameters.items():
                if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
                    job.parameters[key] = new + value[len(old):]
            job.parameters["run_id"] = state.run_id
    return state.run_id


def _run(opts: RunOptions, state: _RunState, data_preparer: Callable[..., DataInfo],
         echo: Callable[[str], None]) -> RunResult:
    """The stages of :func:`run_reports`; every process and folder it starts is recorded in ``state``."""
    started = state.started
    t0 = state.t0
    out = state.out
    run_id = state.run_id
    # the warm-kernel server starts first: its preload of the scientific stack (the longest step before the first
    # report can start) overlaps with planning, the lock and the data load in this process. Bad input found by
    # the plan stops it again (run_reports' clean-up); it writes nothing into the output folder.
    server = None
    kernel_mode = "cold"
    if not opts.dry_run and opts.warm_kernels and hasattr(os, "fork"):
        from helpers.reports.warm_kernels import ForkServer
        with kernel_environment():  # the server preloads matplotlib: it must pick the inline backend
            server = state.server = ForkServer().start()
        kernel_mode = "warm (forked from a preloaded server)"
    config_path, cfg = load_report_settings(Path(opts.params))
    if opts.data:
        source = str(Path(opts.data).resolve())
    else:
        from helpers.config import resolve_data_source
        source = str(resolve_data_source(cfg))
    # the folder the notebooks write to (renamed to out/<run_id> when complete)
    final_dir = out / run_id
    if opts.run_id and final_dir.exists():  # an automatic run id is made unique once the lock is held
        raise ReportRunError(f"{final_dir} already exists: runs are immutable; choose another --run-id")
    tmp_dir = out / f".tmp-{run_id}"
    catalog: dict = {}
    # plan first (params + notebooks), with the snapshot path the notebooks will get: bad input stops the run
    # before the output folder is touched
    jobs = plan_reports(opts, cfg, config_path, opts.as_of or "", run_id,
                        str(tmp_dir / "data.duckdb"), tmp_dir, catalog)
    echo(f"planned {len(jobs)} reports: " + ", ".join(j.name for j in jobs))
    if opts.dry_run:
        info = data_preparer(source, cfg, None, opts.as_of or None)
        echo(f"data OK: {source} (fingerprint {info.fingerprint[:16]}, {info.rows})")
        for j in jobs:
            j.parameters["as_of"] = opts.as_of or info.as_of or info.last_date
            echo(f"  {j.name}: {Path(j.notebook).name} {json.dumps({k: v for k, v in j.parameters.items() if not k.startswith('__')})}")
        echo("dry run: params, notebooks, kernels and data are valid; nothing executed")
        return RunResult(run_id, None, {"dry_run": True, "reports": [dataclasses.asdict(j) for j in jobs]}, [])

    # the output folder's lock (one run at a time); then the run id is final (unique, even within one second)
    run_id = _lock_output(opts, state, jobs, echo)
    final_dir, tmp_dir = out / run_id, out / f".tmp-{run_id}"

    # workers and the warm-kernel server start before the data is loaded, so they overlap with it
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    import papermill  # noqa: F401 - imported once here, inherited by the forked workers
    import nbconvert  # noqa: F401
    from helpers.reports import export as _export  # noqa: F401
    from helpers.reports import papermill_engine as _engine  # noqa: F401
    state.tmp_dir = tmp_dir
    tmp_dir.mkdir(parents=True, exist_ok=False)
    for sub in ("notebooks", "logs", "summaries"):
        (tmp_dir / sub).mkdir()
    workers = max(1, min(int(opts.workers or 1), len(jobs)))
    pool = state.pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"),
                                            initializer=_worker_init,
                                            initargs=(os.getpid(), state.lock.fd if state.lock else None))
    results: dict[str, dict] = {}
    run_warnings: list[str] = []
    bar = None
    try:
        list(pool.map(_noop, range(workers)))  # fork all workers now (before duckdb threads exist)
        for _ in range(workers):  # not waited for: the workers compile the page templates while the data load
            pool.submit(_warm_export)
        info = data_preparer(source, cfg, tmp_dir, opts.as_of or None)
        as_of = opts.as_of or info.as_of or info.last_date
        for j in jobs:
            j.parameters["as_of"] = as_of
            j.parameters["data_source"] = info.snapshot or j.parameters["data_source"]
        no_data, unreported = check_departments(jobs, catalog.get("departments", []), info.departments)
        if unreported:
            run_warnings.append(f"Departments in the data without a params file (no report): "
                                f"{', '.join(unreported)}. Add params/departments/<slug>.yaml to report on them.")
            echo(f"warning: {run_warnings[-1]}")
        for j in no_data:  # a clear failure page, without executing the notebook
            results[j.name] = _no_data_failure(j, tmp_dir, info.departments, cfg, as_of, run_id)
        if server is not None:
            try:
                server.wait_ready()
            except RuntimeError as exc:  # e.g. a preload crashed: cold kernels still work
                echo(f"warning: {exc}; using cold kernels")
                server.stop()
                server, kernel_mode = None, "cold (warm-kernel server failed to start)"
                state.server = None
        previous = previous_run(out, exclude=run_id)  # what this run compares itself with ("what changed")
        context = {"cwd": str(_repo_root()), "as_of": as_of, "run_id": run_id, "previous": previous,
                   "company": getattr(cfg, "company", ""), "freshness": f"{info.first_date} to {info.last_date}",
                   "fingerprint": info.fingerprint, "timeout": opts.timeout,
                   "fork_socket": server.socket_path if server is not None else None}
        futures = {pool.submit(execute_report, j, str(tmp_dir), context): j
                   for j in schedule_order([j for j in jobs if j.name not in results], previous_timings(out))}
        # the index's headline company KPIs, computed by the first worker that is free (not on the critical path)
        kpis_future = pool.submit(company_kpis_with_notes, info.snapshot, as_of, cfg) if info.snapshot else None
        try:
            from tqdm import tqdm
            bar = state.bar = tqdm(total=len(jobs), initial=len(results), desc="reports", unit="report", disable=(
                None if opts.progress is None else not opts.progress), file=sys.stderr)
        except ImportError:  # pragma: no cover
            bar = None
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died
                if environment_fault(exc):
                    raise  # e.g. the log could not be created: disk full
                res = {"name": job.name, "status": "failed", "seconds": None,
                       "error": {"name": type(exc).__name__, "message": str(exc)}}
            if res["status"] == "environment":  # disk full / read-only while writing this report: stop the run
                err = res["error"]
                raise OSError(err["errno"], err["message"], err.get("filename") or None)
            results[job.name] = res
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{job.name}: {res['status']}")
        if bar is not None:
            bar.close()
            state.bar = None
        company_kpis = []
        if kpis_future is not None:
            try:
                company_kpis, kpi_notes = kpis_future.result()
                run_warnings.extend(kpi_notes)  # a KPI left out says why on the index
            except Exception as exc:  # noqa: BLE001 - the index then shows no KPI cards; the reports are unaffected
                if environment_fault(exc):
                    raise
                run_warnings.append(f"The company's headline KPIs could not be computed ({type(exc).__name__}: "
                                    f"{str(exc)[:200]})")
    except BaseException:
        raise  # run_reports stops the workers, kernels and fork server and removes the temporary folder
    pool.shutdown(wait=True)
    state.pool = None
    if server is not None:
        server.stop()
        state.server = None

    finished = _dt.datetime.now(_dt.UTC)
    reports = []
    for j in jobs:
        res = results[j.name]
        if not (tmp_dir / j.html).exists():  # the worker died before writing any page: still link something
            from helpers.reports.export import render_error
            err = res.get("error") or {}
            atomic_write_text(tmp_dir / j.html, render_error(
                title=j.title, department=j.department, as_of=as_of, run_id=run_id,
                company=getattr(cfg, "company", ""), notebook=j.notebook, executed_notebook=j.executed_notebook,
                log=j.log, log_tail=_tail(tmp_dir / j.log), error_name=str(err.get("name", "Error")),
                error_message=str(err.get("message", "")), where="the worker process running it"))
        params = {k: v for k, v in j.parameters.items() if not k.startswith("__")}
        reports.append({
            "name": j.name, "kind": j.kind, "title": res.get("title") or j.title,
            "department": j.parameters.get("department", "") if j.kind == "department" else "",
            "department_name": j.department,
            "notebook": os.path.relpath(j.notebook, _repo_root()), "notebook_sha256": _sha256(Path(j.notebook)),
            "kernel": j.parameters["__kernel__"], "parameters": params, "html": j.html,
            "executed_notebook": j.executed_notebook, "log": j.log, "summary": j.summary,
            "status": res["status"], "seconds": res.get("seconds"), "error": res.get("error"),
            "status_counts": (res.get("summary") or {}).get("status_counts", {}) if res["status"] == "ok" else {},
            "headline": (res.get("summary") or {}).get("headline", "") if res["status"] == "ok" else "",
            "look_first": look_first(res.get("summary") or {}) if res["status"] == "ok" else "",
            "changes": res.get("changes"),
        })
    param_files = sorted(Path(opts.params).rglob("*.y*ml"))
    manifest = {
        "manifest_version": MANIFEST_VERSION, "run_id": run_id, "as_of": as_of,
        "started_at": started.isoformat(timespec="seconds"), "finished_at": finished.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 3),
        "status": "complete" if all(r["status"] == "ok" for r in reports) else "complete with failures",
        "run_dir_at_execution": str(tmp_dir),
        "data": {"source": info.source, "fingerprint": info.fingerprint, "snapshot": "data.duckdb",
                 "storage": info.storage, "references": info.references,
                 "first_date": info.first_date, "last_date": info.last_date, "rows": info.rows,
                 "warnings": info.warnings, "departments": list(info.departments)},
        "warnings": run_warnings,
        "params": {"dir": str(Path(opts.params).resolve()), "report_config": str(Path(config_path).resolve()),
                   "files_sha256": {str(p): _sha256(p) for p in param_files}},
        "options": {"workers": workers, "only": opts.only, "as_of": opts.as_of, "kernels": kernel_mode,
                    "timeout": opts.timeout, "notebooks": str(opts.notebooks or "")},
        "command": sys.argv, "packages": package_versions(), "platform": platform.platform(),
        "reports": reports, "company_kpis": company_kpis,
        "changes": run_changes(previous, reports, company_kpis),
    }
    atomic_write_text(tmp_dir / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
    write_index(tmp_dir, manifest, getattr(cfg, "company", ""),
                [{k: r[k] for k in ("run_id", "as_of", "failed", "path")} for r in list_runs(out)])
    if state.guard is not None:
        state.guard.disarm()  # a signal now no longer cuts the run in half: it is published, then we exit
    os.replace(tmp_dir, final_dir)  # the run appears complete, in one step
    state.tmp_dir, state.published = None, final_dir
    latest = switch_latest(out, run_id)
    state.published = None  # latest points at it: complete, whatever happens next
    removed = prune_runs(out, opts.keep, protect=run_id) if opts.keep else []
    failures = [r["name"] for r in reports if r["status"] != "ok"]
    echo(f"run {run_id}: {len(reports) - len(failures)}/{len(reports)} reports in {manifest['seconds']:.1f} s "
         f"-> {final_dir}/index.html (latest: {latest})")
    if removed:
        echo(f"removed old runs (--keep {opts.keep}): {', '.join(removed)}")
    for r in reports:
        if r["status"] != "ok":
            e = r["error"] or {}
            echo(f"FAILED {r['name']}: {e.get('name')}: {str(e.get('message', ''))[:300]} "
                 f"[{e.get('where', '')}] see {final_dir / r['html']} and {final_dir / r['log']}")
    if state.guard is not None and state.guard.received:
        echo(f"{signal.Signals(state.guard.received).name} arrived while the run was being published; "
             "it was completed first")
    return RunResult(run_id, final_dir, manifest, failures)


def check_departments(jobs: list[ReportJob], params_departments: list[tuple[str, str]],
                      data_departments: list[str]) -> tuple[list[ReportJob], list[str]]:
    """``(department jobs whose department has no rows in the data, data departments no params file
    reports on)``. A department matches by slug of its file name or of its display name (``customer_service``
    = "Customer Service"). Nothing is checked when the data lists no departments."""
    if not data_departments:
        return [], []

    def slug(name: str) -> str:
        try:
            return safe_slug(str(name))
        except ReportRunError:
            return ""

    in_data = {slug(d) for d in data_departments} - {""}
    no_data = [j for j in jobs if j.kind == "department"
               and not ({j.parameters.get("department", ""), slug(j.department)} & in_data)]
    known = {s for pair in params_departments for s in (pair[0], slug(pair[1]))} - {""}
    known |= {s for j in jobs if j.kind == "department" for s in (j.parameters.get("department", ""),
                                                                  slug(j.department))}
    unreported = [d for d in data_departments if slug(d) not in known]
    return no_data, unreported


def _no_data_failure(job: ReportJob, run_dir: Path, data_departments: list[str], cfg, as_of: str,
                     run_id: str) -> dict:
    """The failure page (and log) of a department that has no rows in the data; its notebook is not run."""
    from helpers.formatting import shorten
    from helpers.reports.export import render_error
    shown = ", ".join(shorten(d, 40) for d in data_departments[:20])
    more = f" and {len(data_departments) - 20} more" if len(data_departments) > 20 else ""
    message = f"department {shorten(job.department)} has no rows in the data; departments in the data: {shown}{more}"
    where = "the runner's data check, before execution (the notebook was not run)"
    atomic_write_text(run_dir / job.log, f"report {job.name}: not executed\n{message}\n")
    job.executed_notebook = ""
    atomic_write_text(run_dir / job.html, render_error(
        title=job.title, department=job.department, as_of=as_of, run_id=run_id,
        company=getattr(cfg, "company", ""), notebook=os.path.relpath(job.notebook, _repo_root()),
        executed_notebook="", log=job.log, log_tail=message, error_name="No data for this department",
        error_message=message, where=where))
    return {"name": job.name, "status": "failed", "seconds": 0.0, "title": job.title,
            "error": {"name": "NoDataForDepartment", "message": message, "where": where, "kind": "no data"}}


def reproduce_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                  echo: Callable[[str], None] | None = None) -> RunResult:
    """Re-execute every report of a finished run from its ``manifest.json`` into a new run folder.

    Uses the run's own ``data.duckdb`` snapshot and the exact recorded papermill parameters
    (:func:`rerun_parameters`), cold kernels, one report after another. Differences that would make the result
    differ are reported, not hidden: a notebook or params file whose SHA-256 changed since the run, or other
    package versions. The new run's manifest says which run it reproduces.

    A snapshot by reference (views over the source's Parquet files) is only as good as those files: every file's
    bytes are hashed again first, and when one is gone or changed the reproduction is refused
    (:class:`ReportRunError`, exit code 2) naming each file, before anything is written; a file that was only
    touched or copied (same bytes) is fine. A reproduction never silently reads other data than the run did. Holds ``out/.lock`` like a run
    (and fails at once when another run holds it); faults and signals remove the unfinished folder.
    """
    echo = _console_echo(echo)
    run_dir = Path(run_dir).resolve()
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    check_referenced_data(run_dir, manifest)
    out = Path(out).resolve() if out else run_dir.parent
    state = _RunState(started=_dt.datetime.now(_dt.UTC), t0=time.perf_counter(), out=out)
    with _faults_handled(state):
        state.lock = OutputLock(out)
        state.lock.acquire("fail", echo)
        state.run_id = unique_run_id(out, None, state.started)
        state.run_id = f"{manifest['run_id']}-repro-{state.run_id}"
        state.lock.record(state.run_id, state.started.isoformat(timespec="seconds"))
        remove_stale_runs(out)
        state.tmp_dir = out / f".tmp-{state.run_id}"
        result = _reproduce(run_dir, manifest, out, state.started, state.run_id, echo)
        state.tmp_dir = None
        return result


def check_referenced_data(run_dir: Path, manifest: dict) -> None:
    """Raise :class:`ReportRunError` naming every file a run's snapshot by reference points to that is gone or
    whose bytes changed since the run (:func:`helpers.data.reference_changes` with ``content=True``); nothing
    for a snapshot that holds its own copy of the data."""
    from helpers.data import reference_changes, snapshot_meta
    snapshot = run_dir / "data.duckdb"
    meta = snapshot_meta(snapshot)
    if not meta:
        raise ReportRunError(f"{snapshot}: the run's data snapshot is missing or unreadable; a reproduction needs it")
    if meta.get("storage") != "reference":
        return
    changes = reference_changes(json.loads(meta.get("references") or "{}"), content=True)
    if changes:
        stored = (f" (the validated tables of {meta.get('source', 'the source')}, kept in the output folder's run "
                  f"store, entry {meta['store']})") if meta.get("store") else ""
        raise ReportRunError(
            f"run {manifest.get('run_id', run_dir.name)} read its data by reference{stored} (fingerprint "
            f"{str(meta.get('fingerprint', ''))[:16]}), and that data changed since: " + "; ".join(changes)
            + ". A reproduction must read the data the run validated: "
            + ("the run store's files are the kit's own, so start a new run on the source (it stores its tables "
               "again)" if stored else "restore those files (same bytes), or start a new run on the current data")
            + f" (python -m helpers.reports run --as-of {manifest.get('as_of', '')})")


def _reproduce(run_dir: Path, manifest: dict, out: Path, started: _dt.datetime, new_id: str,
               echo: Callable[[str], None]) -> RunResult:
    tmp_dir = out / f".tmp-{new_id}"
    for sub in ("notebooks", "logs", "summaries"):
        (tmp_dir / sub).mkdir(parents=True)
    shutil.copy2(run_dir / "data.duckdb", tmp_dir / "data.duckdb")
    from helpers.data import RUN_STORE, adopt_store_entry  # noqa: PLC0415

    # into another output folder: the run store entry the snapshot reads comes along (that folder's --keep
    # must not take it away from this reproduction)
    adopted = adopt_store_entry(tmp_dir / "data.duckdb", out / RUN_STORE)
    if adopted:
        echo(f"the run's stored tables (run store entry {adopted}) are now also in {out / RUN_STORE}")
    drift = []
    for path, digest in manifest.get("params", {}).get("files_sha256", {}).items():
        if not Path(path).is_file() or _sha256(Path(path)) != digest:
            drift.append(f"params file changed since the run: {path}")
    now_versions = package_versions()
    for name, version in manifest.get("packages", {}).items():
        if now_versions.get(name) != version:
            drift.append(f"package {name}: run {version}, now {now_versions.get(name)}")
    context = {"cwd": str(_repo_root()), "as_of": manifest["as_of"], "run_id": new_id,
               "company": "", "freshness": f"{manifest['data']['first_date']} to {manifest['data']['last_date']}",
               "fingerprint": manifest["data"]["fingerprint"], "timeout": manifest["options"].get("timeout")}
    reports = []
    for r in manifest["reports"]:
        nb = Path(r["notebook"]) if Path(r["notebook"]).is_absolute() else _repo_root() / r["notebook"]
        if _sha256(nb) != r["notebook_sha256"]:
            drift.append(f"notebook changed since the run: {r['notebook']}")
        params = rerun_parameters(manifest, r, tmp_dir)
        job = ReportJob(name=r["name"], kind=r["kind"], title=r["title"], department=r["department_name"],
                        notebook=str(nb), parameters=dict(params, __kernel__=r["kernel"]), html=r["html"],
                        executed_notebook=r["executed_notebook"], log=r["log"], summary=r["summary"])
        res = execute_report(job, str(tmp_dir), context)
        reports.append(dict(r, parameters=params, status=res["status"], seconds=res.get("seconds"),
                            error=res.get("error"),
                            status_counts=(res.get("summary") or {}).get("status_counts", {})))
        echo(f"{r['name']}: {res['status']} ({res.get('seconds')} s; original run: {r['status']})")
    new_manifest = dict(manifest, run_id=new_id, reproduces=manifest["run_id"], reports=reports,
                        started_at=started.isoformat(timespec="seconds"),
                        finished_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                        run_dir_at_execution=str(tmp_dir), packages=now_versions, drift=drift,
                        command=sys.argv)
    atomic_write_text(tmp_dir / "manifest.json", json.dumps(new_manifest, indent=2, default=str) + "\n")
    write_index(tmp_dir, new_manifest, "", [])
    final_dir = out / new_id
    os.replace(tmp_dir, final_dir)
    for d in drift:
        echo(f"warning: {d}")
    failures = [r["name"] for r in reports if r["status"] != "ok"]
    echo(f"reproduced {manifest['run_id']} -> {final_dir}")
    return RunResult(new_id, final_dir, new_manifest, failures)
