"""Benchmark of the corrected satisfaction -> churn link (helpers.churn_link) on 1,000,000 customers.

Prints seconds and peak memory, and ratios against baselines measured in the same run; exit code 1 when a
target is missed.

Data: a synthetic company written to a temporary folder (Parquet): 1,000,000 customers in three segments,
latent satisfaction X, 1 + Poisson(4) ratings each (about 5,000,000 rows: X + noise, rounded and clipped to
1-5, like the demo), exponential churn with hazard exp(c - 1.2 X) censored at 36 months (durations in days).

1. The whole corrected link: per-customer count, mean and within-customer sum of squares of the ratings by
   DuckDB SQL over the Parquet file (only one row per customer comes back to Python), then
   ``fit_churn_link`` (calibration + naive and corrected Cox, 200 bootstrap resamples that redo calibration and
   Cox; the Cox fits run on the default seeded sample of 200,000 customers, the calibration statistics on
   everyone). Target: at most 120 s. Peak RSS printed.
2. Baselines in the same run: the same per-customer statistics by pandas ``groupby`` over all response rows
   (ratio printed, peak memory of that path too), and one statsmodels ``PHReg(ties="efron")`` fit against one
   ``cox_efron`` fit on the same 200,000 customers (target: at least 3x faster, same coefficients to 1e-6).

Usage: .venv/bin/python bench/bench_impact.py [--customers 1000000] [--n-boot 200] [--keep DIR]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(folder: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    seg = rng.choice(3, size=n, p=[0.7, 0.22, 0.08])
    x = 4.0 + np.array([0.0, 0.1, 0.2])[seg] + 0.8 * rng.standard_normal(n)
    hazard = np.exp(2.18 - 1.2 * x)
    t = rng.exponential(1 / hazard)
    c = rng.uniform(0, 36, n)
    duration = np.floor(np.minimum(t, c) * 30.4375) / 30.4375
    customers = pa.table({"customer_id": np.arange(n, dtype=np.int64), "duration": duration,
                          "event": (t <= c).astype(np.int64),
                          "segment": pa.array(np.array(["consumer", "small_business", "enterprise"])[seg])})
    pq.write_table(customers, folder / "customers.parquet")
    writer = None
    for start in range(0, n, 250_000):  # responses in chunks: memory follows the chunk
        stop = min(n, start + 250_000)
        k = 1 + rng.poisson(4.0, stop - start)
        cid = np.repeat(np.arange(start, stop, dtype=np.int64), k)
        csat = np.clip(np.rint(x[cid] + 0.7 * rng.standard_normal(len(cid))), 1, 5).astype(np.int8)
        tab = pa.table({"customer_id": cid, "csat": csat})
        writer = writer or pq.ParquetWriter(folder / "responses.parquet", tab.schema)
        writer.write_table(tab)
    writer.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--keep", default=None, help="folder to keep the generated data in")
    args = ap.parse_args(argv)
    import duckdb

    from helpers import churn_link as CL

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-impact-"))
    folder.mkdir(parents=True, exist_ok=True)
    ok = True
    try:
        t0 = time.perf_counter()
        if not (folder / "responses.parquet").exists():
            make_data(folder, args.customers)
        print(f"data: {args.customers:,} customers, "
              f"{pq.ParquetFile(folder / 'responses.parquet').metadata.num_rows:,} ratings "
              f"({time.perf_counter() - t0:.1f} s to generate)")
        rss_before = peak_rss_mib()

        # 1. the whole corrected link
        t0 = time.perf_counter()
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        con.execute(f"CREATE VIEW responses AS SELECT * FROM read_parquet('{folder / 'responses.parquet'}')")
        summary = CL.rating_summary_sql(con)
        t_sql = time.perf_counter() - t0
        customers = pd.read_parquet(folder / "customers.parquet")
        res = CL.fit_churn_link(customers, summary, ["segment"], n_boot=args.n_boot, seed=1)
        t_link = time.perf_counter() - t0
        rss_link = peak_rss_mib()
        hr, lo, hi = res.hazard_ratio("corrected")
        hrn, lon, hin = res.hazard_ratio("naive")
        print(f"1. corrected link, {args.n_boot} bootstrap resamples: {t_link:.1f} s (SQL summary {t_sql:.1f} s), "
              f"peak RSS {rss_link:.0f} MiB (before: {rss_before:.0f} MiB); target <= 120 s: "
              f"{'ok' if t_link <= 120 else 'MISSED'}")
        print(f"   naive HR {hrn:.3f} ({lon:.3f}-{hin:.3f}), corrected {hr:.3f} ({lo:.3f}-{hi:.3f}); "
              f"truth per latent point {np.exp(-1.2):.3f}; reliability of one rating "
              f"{res.reliability.iloc[0]['reliability']:.2f}; {' '.join(res.notes)}")
        ok &= t_link <= 120

        # 2a. baseline: pandas groupby over every response row
        t0 = time.perf_counter()
        responses = pd.read_parquet(folder / "responses.parquet")
        py = CL.rating_summary(responses)
        t_pd = time.perf_counter() - t0
        same = np.allclose(py["mean_rating"].to_numpy(), summary["mean_rating"].to_numpy()) and \
            np.allclose(py["within_ss"].to_numpy(), summary["within_ss"].to_numpy())
        print(f"2a. per-customer statistics: DuckDB SQL {t_sql:.1f} s vs pandas groupby {t_pd:.1f} s "
              f"(incl. reading {len(responses):,} rows) -> {t_pd / t_sql:.1f}x; same values: {same}; "
              f"peak RSS after pandas path {peak_rss_mib():.0f} MiB")
        ok &= bool(same)
        del responses, py

        # 2b. baseline: one statsmodels PHReg fit vs one cox_efron fit on the sample the link used
        from statsmodels.duration.hazard_regression import PHReg
        sample = customers.sample(n=min(200_000, len(customers)), random_state=0).merge(summary, on="customer_id")
        X = np.column_stack([sample["mean_rating"], sample["segment"] == "enterprise",
                             sample["segment"] == "small_business"]).astype(float)
        t0 = time.perf_counter()
        ref = PHReg(sample["duration"].to_numpy(), X, status=sample["event"].to_numpy(), ties="efron").fit(disp=False)
        t_ph = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit = CL.cox_efron(sample["duration"], sample["event"], X)
        t_ce = time.perf_counter() - t0
        same = np.allclose(fit.coef, ref.params, atol=1e-6)
        print(f"2b. one Cox fit on {len(sample):,} customers: statsmodels PHReg {t_ph:.2f} s, cox_efron {t_ce:.2f} s "
              f"-> {t_ph / t_ce:.1f}x faster (target >= 3x), same coefficients: {same}")
        ok &= same and t_ph / t_ce >= 3
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print("all targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
