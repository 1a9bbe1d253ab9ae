"""Benchmark: objective evaluation for every demo department, with the calibration backtest (issue 10).

Prints, measured in the same run:

1. the evaluation of all departments' objectives with the calendar-aware forecast and P(met)
   (``helpers.objectives.evaluate_objectives``) against the earlier simple rule (a straight line by OLS and
   its 80% interval; a copy of that rule is kept below as ``simple_rule``), seconds and ratio;
2. the backtest of every department's forecasts (``helpers.objectives_backtest.backtest_objectives``):
   seconds, coverage of the 80% intervals (new model and simple rule) and the reliability table;
3. the forecast fits' two likelihood paths (``helpers.objectives_forecast.FIT_PATH``): evaluation + backtest of
   every department with the plain statsmodels path (``MLEModel.loglike``, scipy's finite differences) against
   the default compiled-filter path, CPU seconds in total and in the fits, ratio, and whether the evaluation and
   backtest tables are identical;
4. the department report's own work (``prepare_department_report`` + its calibration statement) against the
   same step of the code before issue 10 (``git archive <baseline commit> src`` run in a subprocess), seconds,
   ratio (target: at most 1.5) and peak memory.

    .venv/bin/python bench/bench_objectives.py [--data data/demo] [--as-of 2026-10-31] [--baseline 37fb9bd]
    .venv/bin/python bench/bench_objectives.py --fits-only     # section 3 alone
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from helpers import objectives_forecast  # noqa: E402
from helpers.data import load_dataset  # noqa: E402
from helpers.objectives import KpiSource, evaluate_objectives, load_department, metric_registry  # noqa: E402
from helpers.objectives_backtest import backtest_objectives, combine  # noqa: E402
from helpers.objectives_status import (expected_progress, forecast_at, forecast_path, meets,  # noqa: E402
                                       month_start, period_end, period_start)

DEPARTMENTS = ("customer_service", "sales", "marketing", "delivery", "billing", "technical_support")


# --------------------------------------------------------------------------- the earlier simple rule (baseline)
def simple_status(*, target, direction, deadline, as_of, current, current_low, current_high, forecast) -> str:
    """The status rule before issue 10 (copied): achieved when the current 95% CI is past the target; else by
    the 80% interval of the straight-line forecast at the deadline (on track / off track / at risk)."""
    if current is None or not np.isfinite(current) or forecast is None or not np.isfinite(forecast.value):
        return "no data"
    if pd.Timestamp(as_of) >= pd.Timestamp(deadline):
        if forecast.method != "observed":
            return "no data"
        return "achieved" if meets(forecast.value, target, direction) else "missed"
    good_side_low = current_low if direction == "raise" else current_high
    if good_side_low is not None and np.isfinite(good_side_low) and meets(good_side_low, target, direction):
        return "achieved"
    worst, best = (forecast.low, forecast.high) if direction == "raise" else (forecast.high, forecast.low)
    if meets(worst, target, direction):
        return "on track"
    if not meets(best, target, direction):
        return "off track"
    return "at risk"


def simple_rule(plan, dataset, as_of) -> pd.DataFrame:
    """Evaluate a plan the way the kit did before issue 10: last complete month, straight-line forecast of the
    deadline's month (24 months, OLS), baseline pooled, period-over-period test."""
    metrics = metric_registry()
    source = KpiSource(dataset, plan.department)
    as_of = pd.Timestamp(as_of)
    rows = []
    for o in plan.objectives:
        info = metrics[o.metric]
        status = "no data"
        try:
            s = source.series(o.metric, dict(o.filters), None, as_of, o.frequency)
            s = s[s["period"].map(lambda p, f=o.frequency: period_end(p, f)) <= as_of]
            if not s.empty:
                last = s.iloc[-1]
                if o.baseline.value is None and o.frequency == "month":
                    source.estimate(o.metric, dict(o.filters), o.baseline.start, o.baseline.end)
                f = forecast_at(s, o.deadline, as_of, level=0.8, window=24, bounds=info.bounds, freq=o.frequency)
                if f is not None:
                    forecast_path(s, o.deadline, as_of, level=0.8, window=24, bounds=info.bounds, freq=o.frequency)
                status = simple_status(target=o.target, direction=o.direction, deadline=o.deadline, as_of=as_of,
                                       current=float(last["value"]), current_low=float(last["ci_low"]),
                                       current_high=float(last["ci_high"]), forecast=f)
                if len(s) >= 2:
                    prev, cur = s["period"].iloc[-2], s["period"].iloc[-1]
                    try:
                        source.compare(o.metric, dict(o.filters), (prev, period_end(prev, o.frequency)),
                                       (cur, min(period_end(cur, o.frequency), as_of)))
                    except ValueError:
                        pass
        except ValueError:
            status = "no data"
        expected_progress(o.start, o.deadline, as_of)
        rows.append({"id": o.id, "status": status, "month": month_start(as_of), "start": period_start(as_of)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the fits' likelihood paths
def fit_paths(plans, ds, as_of: str, origins: int) -> dict:
    """Evaluation + backtest of every plan with each ``FIT_PATH`` (fit cache emptied before each): CPU seconds in
    total and inside ``_fit_model``, number of fits, and the tables to compare."""
    fit = objectives_forecast._fit_model
    spent = {"cpu": 0.0, "fits": 0}

    def timed_fit(*args, **kwargs):
        t = time.process_time()
        try:
            return fit(*args, **kwargs)
        finally:
            spent["cpu"] += time.process_time() - t
            spent["fits"] += 1

    saved = objectives_forecast.FIT_PATH
    out = {}
    objectives_forecast._fit_model = timed_fit
    try:
        for path in ("statsmodels", "filter"):
            objectives_forecast.FIT_PATH = path
            objectives_forecast._fit_cache.clear()
            spent.update(cpu=0.0, fits=0)
            t0 = time.process_time()
            ev = {d: evaluate_objectives(p, ds, as_of, min_responses=30) for d, p in plans.items()}
            bt = combine([backtest_objectives(e, origins=origins) for e in ev.values()])
            out[path] = {"cpu": time.process_time() - t0, "fit_cpu": spent["cpu"], "fits": spent["fits"],
                         "table": pd.concat(e.table for e in ev.values()), "backtest": bt}
    finally:
        objectives_forecast._fit_model = fit
        objectives_forecast.FIT_PATH = saved
        objectives_forecast._fit_cache.clear()
    return out


def _same(a: pd.DataFrame, b: pd.DataFrame) -> str:
    try:
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)
        return "identical"
    except AssertionError:
        try:
            pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), rtol=1e-6)
            return "equal within 1e-6"
        except AssertionError as exc:
            return "DIFFERENT: " + str(exc).splitlines()[0]


def print_fit_paths(plans, ds, args) -> None:
    paths = fit_paths(plans, ds, args.as_of, args.origins)
    ref, fast = paths["statsmodels"], paths["filter"]
    print(f"forecast fits, evaluation + backtest ({args.origins} origins) of all departments (CPU seconds)")
    for name, run in (("statsmodels path (before)", ref), ("compiled-filter path", fast)):
        print(f"  {name:26s} {run['cpu']:7.2f} s, of which {run['fits']} fits {run['fit_cpu']:6.2f} s")
    print(f"  ratio: fits {ref['fit_cpu'] / fast['fit_cpu']:4.2f}x faster, evaluation + backtest "
          f"{ref['cpu'] / fast['cpu']:4.2f}x faster")
    print(f"  evaluation table {_same(ref['table'], fast['table'])}; backtest forecasts "
          f"{_same(ref['backtest'].forecasts, fast['backtest'].forecasts)}, events "
          f"{_same(ref['backtest'].events, fast['backtest'].events)}")


# --------------------------------------------------------------------------- the department report step
REPORT_STEP = """
import json, resource, sys, time
from helpers.objectives_report import prepare_department_report
t1, c1 = time.perf_counter(), time.process_time()
r = prepare_department_report({dept!r}, data_source={data!r}, as_of={as_of!r})
if hasattr(r, "calibration_markdown"):
    r.calibration_markdown()
t2, c2 = time.perf_counter(), time.process_time()
# VmHWM of this process (ru_maxrss would keep the forking parent's peak across exec)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
peak = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"report": t2 - t1, "cpu": c2 - c1, "peak_mb": peak,
                  "evaluated": getattr(r, "evaluation", None) is not None,
                  "problem": (list(getattr(r, "problems", [])) or [""])[0][:160]}}))
"""


def report_step(src: Path, dept: str, data: str, as_of: str) -> dict:
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(Path.home())}
    out = subprocess.run([sys.executable, "-c", REPORT_STEP.format(dept=dept, data=data, as_of=as_of)], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


NOTEBOOK_RUN = """
import sys, time, papermill
t0 = time.perf_counter()
papermill.execute_notebook({nb!r}, {out!r}, parameters={{"department": {dept!r}, "data_source": {data!r},
                           "as_of": {as_of!r}}}, cwd={cwd!r}, progress_bar=False, kernel_name="python3")
print(time.perf_counter() - t0)
"""


def notebook_run(root: Path, dept: str, data: str, as_of: str, out: Path) -> float:
    """Wall seconds of the whole department report notebook (papermill; the kernel imports ``root/src``)."""
    env = {"PYTHONPATH": str(root / "src"), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "MPLBACKEND": "Agg", "HOME": str(Path.home())}
    code = NOTEBOOK_RUN.format(nb=str(root / "notebooks" / "reports" / "department_report.ipynb"), out=str(out),
                               dept=dept, data=data, as_of=as_of, cwd=str(ROOT))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    return float(run.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "demo"))
    ap.add_argument("--as-of", default="2026-10-31")
    ap.add_argument("--baseline", default="37fb9bd", help="commit whose src/ is the 'before' department report")
    ap.add_argument("--origins", type=int, default=6, help="backtest origins per objective")
    ap.add_argument("--notebooks", nargs="*", default=["customer_service", "delivery"],
                    help="departments whose whole report notebook is timed before/now")
    ap.add_argument("--fits-only", action="store_true", help="only the fits' likelihood paths (section 3)")
    args = ap.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"{args.data} not found: generate it with .venv/bin/python -m helpers.demo --out data/demo "
                 "--customers 20000 --seed 42")
    ds = load_dataset(args.data, emit_warnings=False)
    plans = {d: load_department(d, ROOT / "params" / "departments") for d in DEPARTMENTS}
    n_obj = sum(len(p.objectives) for p in plans.values())

    if args.fits_only:  # the KPI series once, so both paths time the same work
        for p in plans.values():
            evaluate_objectives(p, ds, args.as_of, min_responses=30)
        print_fit_paths(plans, ds, args)
        return
    t0 = time.process_time()
    old = {d: simple_rule(p, ds, args.as_of) for d, p in plans.items()}
    t_old = time.process_time() - t0
    t0 = time.process_time()
    new = {d: evaluate_objectives(p, ds, args.as_of, min_responses=30) for d, p in plans.items()}
    t_new = time.process_time() - t0
    print(f"objective evaluation, {len(plans)} departments, {n_obj} objectives, as of {args.as_of} (CPU seconds)")
    print(f"  simple rule (before)      {t_old:7.2f} s")
    print(f"  calendar-aware + P(met)   {t_new:7.2f} s   ratio {t_new / t_old:5.1f}x")
    counts_old = pd.concat(old.values())["status"].value_counts().to_dict()
    counts_new = pd.concat(e.table for e in new.values())["status"].value_counts().to_dict()
    print(f"  statuses before: {counts_old}")
    print(f"  statuses now:    {counts_new}")

    t0 = time.process_time()
    bt = combine([backtest_objectives(e, origins=args.origins) for e in new.values()])
    t_bt = time.process_time() - t0
    print(f"backtest, {args.origins} origins per objective: {bt.n} forecasts in {t_bt:.2f} s "
          f"(evaluation + backtest {t_new + t_bt:.2f} s, {(t_new + t_bt) / t_old:.1f}x the simple rule)")
    print(f"  80% interval coverage: new {bt.coverage():.1%}, simple rule {bt.coverage(column='covered_simple'):.1%}")
    by = bt.coverage(by="horizon")
    print("  by horizon: " + ", ".join(f"{int(h)}: {c:.0%}" for h, c in zip(by["horizon"], by["coverage"])))
    metric_of = {o.id: o.metric for p in plans.values() for o in p.objectives}
    bt.forecasts["kpi"] = bt.forecasts["series"].map(metric_of)
    by = bt.coverage(by="kpi")
    print("  by KPI: " + ", ".join(f"{k}: {c:.0%} (n={n})" for k, c, n in zip(by["kpi"], by["coverage"],
                                                                              by["forecasts"])))
    pit = bt.forecasts["pit"].astype(float)
    print(f"  PIT (uniform when calibrated): mean {pit.mean():.2f}, share in the middle half "
          f"{pit.between(0.25, 0.75).mean():.0%} (50% when calibrated; more: intervals too wide)")
    print("  reliability:")
    print(bt.reliability().round(3).to_string(index=False))

    print_fit_paths(plans, ds, args)

    with tempfile.TemporaryDirectory(prefix="bench-objectives-") as tmp:
        archive = subprocess.run(["git", "archive", args.baseline, "src"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        notebooks = subprocess.run(["git", "archive", args.baseline, "notebooks/reports"], cwd=ROOT,
                                   capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=notebooks, check=True)
        print(f"department report step (prepare + calibration statement), before = {args.baseline}")
        print("  (CPU seconds of the process: the machine is shared, wall time varies with the load)")
        total = {"before": [0.0, 0.0], "now": [0.0, 0.0]}
        for d in DEPARTMENTS:
            before = report_step(Path(tmp) / "src", d, args.data, args.as_of)
            after = report_step(ROOT / "src", d, args.data, args.as_of)
            for key, run in (("before", before), ("now", after)):
                if not run.get("evaluated", True):  # e.g. the old code refuses today's params or data
                    print(f"  WARNING {d} {key}: no objectives evaluated, so its time is not comparable "
                          f"({run.get('problem', '')})")
            for key, run in (("before", before), ("now", after)):
                total[key][0] += run["cpu"]
                total[key][1] += run["report"]
            print(f"  {d:18s} before {before['cpu']:6.2f} s  now {after['cpu']:6.2f} s CPU  "
                  f"ratio {after['cpu'] / before['cpu']:4.2f}x  (wall {before['report']:.1f} -> "
                  f"{after['report']:.1f} s)  peak {after['peak_mb']:4.0f} MB (before {before['peak_mb']:.0f} MB)")
        print(f"  all departments   before {total['before'][0]:6.2f} s  now {total['now'][0]:6.2f} s CPU  "
              f"ratio {total['now'][0] / total['before'][0]:4.2f}x (wall {total['before'][1]:.1f} -> "
              f"{total['now'][1]:.1f} s); the whole report adds drivers and retention, unchanged")
        print("whole department report notebook (papermill, wall seconds; before/now alternated, best of 2)")
        for d in args.notebooks:
            runs = {"before": [], "now": []}
            for _ in range(2):
                runs["before"].append(notebook_run(Path(tmp), d, args.data, args.as_of, Path(tmp) / "before.ipynb"))
                runs["now"].append(notebook_run(ROOT, d, args.data, args.as_of, Path(tmp) / "now.ipynb"))
            b, n = min(runs["before"]), min(runs["now"])
            print(f"  {d:18s} before {b:6.1f} s  now {n:6.1f} s  ratio {n / b:4.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
