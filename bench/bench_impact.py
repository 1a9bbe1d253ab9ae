"""Benchmark of the corrected satisfaction -> churn link (helpers.churn_link) on 1,000,000 customers.

Prints seconds and peak memory, and ratios against baselines measured in the same run; exit code 1 when a
target is missed.

Data: a synthetic company written to a temporary folder (Parquet): 1,000,000 customers in three segments who
sign up over 36 months, latent satisfaction X, exponential churn with hazard exp(2.18 - 1.2 X) per month
(the demo's law), 1 + Poisson(4) answers each while active (about 5,000,000 rows): attributes a, b = X + noise,
CSAT = 0.6 a + 0.4 b + noise, all rounded and clipped to 1-5 like the demo (so the corrected HR is near, not
at, 0.30: see helpers.churn_link).

1. The corrected link: per-customer count, mean and within-customer sum of squares of CSAT by DuckDB SQL over
   the Parquet file (one row per customer comes back to Python), durations from the customers table, then
   ``fit_churn_link`` (calibration + naive and corrected Cox, 200 bootstrap resamples that redo calibration
   and Cox; the Cox fits run on the default seeded sample of 200,000 customers). Target: at most 120 s.
2. Baselines in the same run: the same per-customer statistics by pandas ``groupby`` over all response rows
   (ratio printed, and the peak memory of that path), and one statsmodels ``PHReg(ties="efron")`` fit against
   one ``cox_efron`` fit on the same 200,000 customers (target: at least 3x faster, same coefficients).
3. The whole chain ``what_if`` (+0.5 on attribute a, 12 months): the regression's per-customer
   cross-products by DuckDB SQL, then every link (regression, calibration, Cox, baseline, survival and revenue
   of every active customer) redone in each of 200 customer resamples. Target: at most 120 s including the
   SQL summaries. Then ``revenue_at_risk`` (links 2-4, everyone below the median raised to it), same target.
   Peak RSS printed after each step.

4. ``--coverage R``: interval coverage by simulation at larger sizes than the unit tests afford (R
   replications of tests/test_impact.py's synthetic data: the link with 1,000 customers and the chain with
   3,000, 200 bootstrap resamples each); prints the share of intervals holding the truth (target: 0.93-0.97
   for R >= 200; reported, not enforced, since it takes long).

Usage: .venv/bin/python bench/bench_impact.py [--customers 1000000] [--n-boot 200] [--keep DIR] [--coverage R]
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


DAYS = 30.4375


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_data(folder: Path, n: int, seed: int = 0) -> None:
    """customers.parquet (contract columns) and responses.parquet (customer_id, response_date, csat,
    attr_a, attr_b; integer ratings rounded and clipped to 1-5)."""
    rng = np.random.default_rng(seed)
    seg = rng.choice(3, size=n, p=[0.7, 0.22, 0.08])
    x = 4.0 + np.array([0.0, 0.1, 0.2])[seg] + 0.8 * rng.standard_normal(n)
    hazard = np.exp(2.18 - 1.2 * x)
    start = np.floor(rng.uniform(0, 36 * DAYS, n)).astype(np.int64)
    end = start + np.floor(np.minimum(rng.exponential(1 / hazard), 1e4) * DAYS).astype(np.int64)
    end_of_data = int(36 * DAYS)
    churned = end < end_of_data
    origin = np.datetime64("2023-01-01")
    customers = pa.table({"customer_id": np.arange(n, dtype=np.int64),
                          "signup_date": pa.array(origin + start.astype("timedelta64[D]")),
                          "end_date": pa.array(origin + end.astype("timedelta64[D]"), mask=~churned),
                          "segment": pa.array(np.array(["consumer", "small_business", "enterprise"])[seg]),
                          "monthly_revenue": np.round(np.array([35.0, 220.0, 2400.0])[seg]
                                                      * np.exp(0.5 * rng.standard_normal(n)), 2)})
    pq.write_table(customers, folder / "customers.parquet")
    stop = np.minimum(end, end_of_data)
    writer = None
    for lo in range(0, n, 250_000):  # responses in chunks: memory follows the chunk
        hi = min(n, lo + 250_000)
        k = 1 + rng.poisson(4.0, hi - lo)
        cid = np.repeat(np.arange(lo, hi, dtype=np.int64), k)
        day = start[cid] + np.floor(rng.random(len(cid)) * (stop[cid] - start[cid])).astype(np.int64)
        a = x[cid] + 0.8 * rng.standard_normal(len(cid))
        b = x[cid] + 0.8 * rng.standard_normal(len(cid))
        y = 0.6 * a + 0.4 * b + 0.45 * rng.standard_normal(len(cid))
        tab = pa.table({"customer_id": cid, "response_date": pa.array(origin + day.astype("timedelta64[D]")),
                        **{name: np.clip(np.rint(v), 1, 5).astype(np.int8)
                           for name, v in (("csat", y), ("attr_a", a), ("attr_b", b))}})
        writer = writer or pq.ParquetWriter(folder / "responses.parquet", tab.schema)
        writer.write_table(tab)
    writer.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--keep", default=None, help="folder to keep the generated data in")
    ap.add_argument("--coverage", type=int, default=0, help="replications of the coverage simulation (0 = skip)")
    args = ap.parse_args(argv)
    if args.coverage:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        import test_impact as T
        t0 = time.perf_counter()
        link = T.coverage(reps=args.coverage, n=1000, n_boot=200)
        print(f"4. coverage of the corrected link's 95% interval: {link:.3f} ({args.coverage} replications, "
              f"{time.perf_counter() - t0:.0f} s)", flush=True)
        t0 = time.perf_counter()
        chain = T.chain_coverage(reps=args.coverage, n=3000, n_boot=200)
        print(f"   coverage of the chain's 95% intervals: customers kept {chain['kept']:.3f}, revenue "
              f"{chain['revenue']:.3f} ({time.perf_counter() - t0:.0f} s)")
        return 0
    import duckdb

    from helpers import churn_link as CL
    from helpers import impact as I
    from helpers.retention import customer_durations

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
        frame = customer_durations(customers)
        res = CL.fit_churn_link(frame, summary, ["segment"], n_boot=args.n_boot, seed=1)
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

        # 3. the whole chain: attribute -> CSAT -> hazard -> kept -> revenue, every link in each resample
        t0 = time.perf_counter()
        attrs = ["attr_a", "attr_b"]
        cps = I.driver_crossproducts_sql(con, attrs)
        t_cp = time.perf_counter() - t0
        chain = I.what_if(customers, None, "attr_a", 0.5, n_boot=args.n_boot, seed=1, ratings=summary,
                          crossproducts=cps, attributes=attrs)
        t_chain = time.perf_counter() - t0 + t_sql
        allrow = chain.table.set_index("segment").loc["all"]
        print(f"3. whole chain (+0.5 on attr_a, 12 months, {args.n_boot} resamples of every link): {t_chain:.1f} s "
              f"(SQL summaries {t_sql + t_cp:.1f} s), peak RSS {peak_rss_mib():.0f} MiB; target <= 120 s: "
              f"{'ok' if t_chain <= 120 else 'MISSED'}")
        print(f"   {allrow['extra_kept']:+,.0f} customers kept ({allrow['extra_kept_low']:+,.0f} to "
              f"{allrow['extra_kept_high']:+,.0f}) of {allrow['customers']:,.0f} active")
        ok &= t_chain <= 120
        t0 = time.perf_counter()
        risk = I.revenue_at_risk(customers, None, n_boot=args.n_boot, seed=1, ratings=summary)
        t_risk = time.perf_counter() - t0 + t_sql
        allrow = risk.table.set_index("segment").loc["all"]
        print(f"   revenue at risk (everyone below the median raised to it, by segment): {t_risk:.1f} s, peak RSS "
              f"{peak_rss_mib():.0f} MiB; target <= 120 s: {'ok' if t_risk <= 120 else 'MISSED'}; "
              f"{allrow['revenue_at_risk']:,.0f} ({allrow['revenue_at_risk_low']:,.0f} to "
              f"{allrow['revenue_at_risk_high']:,.0f})")
        ok &= t_risk <= 120

        # 2a. baseline: pandas groupby over every response row
        t0 = time.perf_counter()
        responses = pd.read_parquet(folder / "responses.parquet")
        py = CL.rating_summary(responses[["customer_id", "csat"]])
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
        sample = frame.sample(n=min(200_000, len(frame)), random_state=0).merge(summary, on="customer_id")
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
