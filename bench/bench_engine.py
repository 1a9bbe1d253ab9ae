"""Benchmark: the engine layer's aggregates on a large generated company, DuckDB vs Spark vs the row-level path.

Generates (once, with the demo generator's streaming mode) ``--customers`` customers (default 1,000,000: about
5M responses and 10M tickets) into ``--data`` and runs, each engine in a fresh process:

- **duckdb**: every aggregate of :mod:`helpers.engine` (KPI sums per month and department for seven KPIs,
  median resolution time with order-statistic intervals, Kaplan-Meier counts by segment and the curves from
  them, sBG counts by segment and the fit, a Cox sample of 50,000 customers, the drivers' cross-product
  matrices of the last 12 months per department with ``--n-boot`` Poisson-bootstrap replicates and the
  importances from them). Seconds per step and the peak resident memory of the process (VmHWM);
- **spark** (``--no-spark`` to skip): the same steps in local mode (``local[2]``); seconds only (a comparison,
  not a target; the JVM's memory is its own setting, ``spark.driver.memory``);
- **rows** (``--no-rows`` to skip): the row-level path the reports take today for the same answers (the
  tables as pandas frames; ``kpis.kpi_series`` in DuckDB over them is not counted as row-level, so the KPI step
  is left out; Kaplan-Meier, sBG and Cox on all customers, ``relative_importance`` with the row bootstrap per
  department): seconds and peak memory.

Printed: per step seconds and the ratios spark / duckdb and rows / duckdb, and the peak memory of duckdb and rows
with their ratio. The machine is shared: run the default size at most once.

    .venv/bin/python bench/bench_engine.py [--customers 1000000] [--n-boot 200] [--no-spark] [--no-rows]

Measured here (2026-11-30, 1,000,000 customers, 5.1M responses, 9.9M tickets; 2 cores shared with other jobs,
load average about 12): DuckDB 117 s in all at 899 MiB peak; the row-level path 4,190 MiB (4.7x); Spark
local[2] 945 s (8.1x DuckDB; 50 s to start). Per-row Poisson replicates of the drivers: DuckDB 78 s, Spark 461 s,
the kit's in-memory pattern bootstrap 11 s; the pattern path (``driver_patterns`` + ``moments_from_patterns``,
added after that run and timed alone on the same data: 0.2 s for 89,773 patterns + 1.4 s for 200 replicates and
the importances, 411 MiB peak) is the one to use in reports.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ATTRS = ["attr_speed", "attr_resolution", "attr_knowledge", "attr_courtesy", "attr_ease", "attr_value"]
TABLES = ("customers", "responses", "tickets")
KPI_METRICS = ("csat", "nps", "ces", "fcr", "reopen_rate", "ticket_volume", "resolution_hours_mean")


def _peak_mib() -> float:
    """This process's own peak resident memory (VmHWM)."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def _window(data: Path) -> tuple[str, str]:
    import pandas as pd  # noqa: PLC0415

    truth = json.loads((data / "ground_truth.json").read_text())
    end = pd.Timestamp(truth["end"])
    return str((end - pd.DateOffset(months=12) + pd.Timedelta(days=1)).date()), str(end.date())


def run_engine(kind: str, data: Path, n_boot: int, cox_size: int) -> dict:
    from helpers.engine import aggregates as A  # noqa: PLC0415
    from helpers.engine import poisson_bootstrap as P  # noqa: PLC0415

    tables = {t: str(data / f"{t}.parquet") for t in TABLES}
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    if kind == "duckdb":
        from helpers.engine import DuckDBEngine  # noqa: PLC0415
        engine = DuckDBEngine(tables=tables)
    else:
        from helpers.engine.spark_engine import SparkEngine  # noqa: PLC0415
        engine = SparkEngine(tables, master="local[2]", conf={"spark.driver.memory": "4g"})
    steps["start"] = time.perf_counter() - t0
    start, end = _window(data)

    def step(name, fn):
        t = time.perf_counter()
        out = fn()
        steps[name] = time.perf_counter() - t
        return out

    step("kpi sums (7 KPIs, month x department)",
         lambda: [A.kpi_aggregates(engine, m, freq="month", by="department") for m in KPI_METRICS])
    step("median resolution time + CI", lambda: A.kpi_series_from_aggregates(engine, "resolution_hours", "month",
                                                                                by="department"))
    step("Kaplan-Meier + log-rank by segment",
         lambda: A.kaplan_meier_from_counts(A.survival_counts(engine, by="segment"), group="segment"))
    counts = step("sBG counts by segment", lambda: A.sbg_counts(engine, by="segment"))
    step("sBG fit per segment (from counts)",
         lambda: [A.fit_sbg_from_counts(counts[counts["segment"] == s], n_boot=0) for s in counts["segment"].unique()])
    step(f"Cox sample ({cox_size:,} customers)", lambda: A.cox_sample(engine, cox_size, seed=1))
    moments = step(f"driver moments, 12 months, {n_boot} Poisson replicates",
                   lambda: P.driver_moments(engine, "csat", ATTRS, by="department", start=start, end=end,
                                            n_boot=n_boot, seed=1))
    step("driver importances from moments", lambda: P.driver_importance_from_moments(moments))
    step(f"driver patterns + {n_boot} pattern Poisson replicates", lambda: P.driver_importance_from_moments(
        P.moments_from_patterns(P.driver_patterns(engine, "csat", ATTRS, by="department", start=start, end=end),
                                n_boot=n_boot, seed=1)))
    engine.close()
    return {"steps": steps, "total": time.perf_counter() - t0, "peak_mib": _peak_mib(),
            "rows": int(moments.loc[moments["replicate"] == 0, "n"].sum())}


def run_rows(data: Path, n_boot: int, cox_size: int) -> dict:
    import pandas as pd  # noqa: PLC0415

    from helpers import retention as R  # noqa: PLC0415
    from helpers.drivers import relative_importance  # noqa: PLC0415

    steps: dict[str, float] = {}
    t0 = time.perf_counter()

    def step(name, fn):
        t = time.perf_counter()
        out = fn()
        steps[name] = time.perf_counter() - t
        return out

    frames = step("start", lambda: {t: pd.read_parquet(data / f"{t}.parquet") for t in TABLES})
    durations = step("Kaplan-Meier + log-rank by segment", lambda: R.customer_durations(frames["customers"]))
    t = time.perf_counter()
    R.kaplan_meier(durations, group="segment")
    steps["Kaplan-Meier + log-rank by segment"] += time.perf_counter() - t
    step("sBG fit per segment (from counts)", lambda: [
        R.fit_sbg_durations(g["lifetime_periods"], g["sbg_churned"], g["exposure_periods"], n_boot=0)
        for _, g in durations.groupby("segment")])
    start, end = _window(data)
    r = frames["responses"]
    days = pd.to_datetime(r["response_date"])
    r = r[(days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end))]
    step(f"driver moments, 12 months, {n_boot} Poisson replicates", lambda: [
        relative_importance(g, "csat", ATTRS, n_boot=n_boot, seed=1) for _, g in r.groupby("department")])
    return {"steps": steps, "total": time.perf_counter() - t0, "peak_mib": _peak_mib()}


def _child(kind: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--data", str(args.data), "--n-boot", str(args.n_boot),
           "--cox-size", str(args.cox_size)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        print(f"{kind} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, default=None, help="data folder (default build/bench-engine-<customers>)")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--cox-size", type=int, default=50_000)
    ap.add_argument("--no-spark", action="store_true")
    ap.add_argument("--no-rows", action="store_true")
    ap.add_argument("--child", choices=["duckdb", "spark", "rows"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.data is None:
        args.data = ROOT / "build" / f"bench-engine-{args.customers}"
    if args.child:
        out = run_rows(args.data, args.n_boot, args.cox_size) if args.child == "rows" else \
            run_engine(args.child, args.data, args.n_boot, args.cox_size)
        print(json.dumps(out))
        return 0
    from generated_data import generated_demo  # noqa: PLC0415 - bench/, shared with bench_scale.py

    generated_demo(args.customers, folder=args.data)  # generate once: reused when present and matching
    results = {"duckdb": _child("duckdb", args)}
    if not args.no_spark:
        from helpers.engine.spark_engine import spark_unavailable_reason  # noqa: PLC0415
        reason = spark_unavailable_reason()
        results["spark"] = {} if reason else _child("spark", args)
        if reason:
            print(f"spark skipped: {reason}")
    if not args.no_rows:
        results["rows"] = _child("rows", args)
    duck = results["duckdb"]
    if not duck:
        return 1
    print(f"\n{args.customers:,} customers; {duck['rows']:,} complete responses in the 12-month driver window; "
          f"n_boot = {args.n_boot}")
    print(f"{'step':<52} {'duckdb s':>9} {'spark s':>9} {'spark/duckdb':>13} {'rows s':>8} {'rows/duckdb':>12}")
    for name, sec in duck["steps"].items():
        sp = results.get("spark", {}).get("steps", {}).get(name)
        rw = results.get("rows", {}).get("steps", {}).get(name)
        print(f"{name:<52} {sec:9.2f} {sp if sp is not None else float('nan'):9.2f} "
              f"{(sp / sec) if sp is not None and sec > 0 else float('nan'):13.1f} "
              f"{rw if rw is not None else float('nan'):8.2f} {(rw / sec) if rw is not None and sec > 0 else float('nan'):12.1f}")
    print(f"{'total':<52} {duck['total']:9.2f} {results.get('spark', {}).get('total', float('nan')):9.2f} "
          f"{results.get('spark', {}).get('total', float('nan')) / duck['total']:13.1f} "
          f"{results.get('rows', {}).get('total', float('nan')):8.2f}")
    rows_peak = results.get("rows", {}).get("peak_mib")
    print(f"peak memory (VmHWM): duckdb process {duck['peak_mib']:.0f} MiB"
          + (f"; row-level process {rows_peak:.0f} MiB (rows / duckdb = {rows_peak / duck['peak_mib']:.1f}x)"
             if rows_peak else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
