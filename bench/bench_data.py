"""Benchmark: load + validate the four tables at large size, against reading the same Parquet files with pandas.

Builds (with DuckDB, in a temporary folder) 1M customers, 5M responses, 10M tickets and an org of ~1,300 people
as Parquet files, then times, in the same run:

- baseline: ``pandas.read_parquet`` of the four files (no checks at all);
- ``load_dataset(folder)``: every contract check, foreign keys and soft warnings, in DuckDB;
- ``Dataset.snapshot`` and the reload ``load_dataset(snapshot, validate=False)``;
- a department KPI series (monthly mean CSAT per department) in DuckDB, and the same with pandas groupby.

Targets (exit status 1 when missed): load+validate at most 3x the pandas baseline (it checks everything and
builds no frames), the snapshot reload under 0.05x, the DuckDB KPI series faster than pandas on loaded frames.

    .venv/bin/python bench/bench_data.py [--scale 0.1]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import duckdb
import pandas as pd

from helpers.data import DataQualityWarning, load_dataset

TARGET_VALIDATE = 3.0
TARGET_RELOAD = 0.05


DEPTS = ["Customer Service", "Sales", "Marketing", "Delivery", "Billing", "Technical Support"]
SLUGS = ["customer_service", "sales", "marketing", "delivery", "billing", "technical_support"]


def create_org(con: duckdb.DuckDBPyConnection) -> None:
    """Tables ``depts`` (department, slug) and ``org`` in ``con``: per department a director, 10 managers (one
    team each) and 200 representatives spread over the teams (the benches' shared organisation chart)."""
    con.execute(f"CREATE TABLE depts AS SELECT unnest({DEPTS!r}) AS department, unnest({SLUGS!r}) AS slug")
    con.execute("""CREATE TABLE org AS
        SELECT slug || '-dir' AS person_id, 'Director ' || slug AS name, 'director' AS role, department,
               NULL::VARCHAR AS team, NULL::VARCHAR AS manager_id FROM depts
        UNION ALL SELECT slug || '-mgr' || k, 'Manager ' || k, 'manager', department, 'Team ' || k, slug || '-dir'
               FROM depts, range(1, 11) t(k)
        UNION ALL SELECT slug || '-rep' || lpad(CAST(r AS VARCHAR), 3, '0'), 'Rep ' || r, 'representative',
               department, 'Team ' || (r % 10 + 1), slug || '-mgr' || (r % 10 + 1) FROM depts, range(0, 200) t(r)""")


def build(folder: Path, scale: float) -> dict[str, int]:
    n_cust, n_resp, n_tick = int(1_000_000 * scale), int(5_000_000 * scale), int(10_000_000 * scale)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    create_org(con)
    p = lambda name: str(folder / f"{name}.parquet")  # noqa: E731
    con.execute(f"COPY org TO '{p('org')}' (FORMAT parquet)")
    con.execute(f"""COPY (SELECT 'C' || i AS customer_id,
            DATE '2023-11-01' + CAST(i % 1000 AS INTEGER) AS signup_date,
            CASE WHEN i % 5 = 0 THEN DATE '2023-11-01' + CAST(i % 1000 AS INTEGER) + 30 + CAST(i % 300 AS INTEGER) END AS end_date,
            ['consumer','small_business','enterprise'][i % 3 + 1] AS segment,
            ['north','south','east','west'][i % 4 + 1] AS region,
            (i % 500) / 3.0 AS monthly_revenue, i % 20 AS purchases
        FROM range({n_cust}) t(i)) TO '{p('customers')}' (FORMAT parquet)""")
    attrs = ", ".join(f"1 + (hash(i, {k}) % 5)::BIGINT AS attr_{a}" for k, a in
                      enumerate(["speed", "resolution", "knowledge", "courtesy", "ease", "value"]))
    con.execute(f"""COPY (SELECT 'R' || i AS response_id, 'C' || (hash(i) % {n_cust}) AS customer_id,
            DATE '2023-11-01' + CAST(hash(i, 'd') % 1095 AS INTEGER) AS response_date,
            {DEPTS}[i % 6 + 1] AS department, ['phone','email','chat','web'][i % 4 + 1] AS channel,
            CASE WHEN i % 10 = 0 THEN NULL ELSE 1 + (hash(i, 'c') % 5)::BIGINT END AS csat,
            (hash(i, 'n') % 11)::BIGINT AS nps, 1 + (hash(i, 'e') % 7)::BIGINT AS ces, {attrs},
            CASE WHEN i % 7 = 0 THEN 'comment ' || i END AS comment
        FROM range({n_resp}) t(i)) TO '{p('responses')}' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT 'T' || i AS ticket_id, 'C' || (hash(i) % {n_cust}) AS customer_id,
            d.department, 'Team ' || (i % 10 + 1) AS team,
            d.slug || '-rep' || lpad(CAST(i % 200 AS VARCHAR), 3, '0') AS agent_id,
            ['phone','email','chat','web'][i % 4 + 1] AS channel,
            TIMESTAMP '2023-11-01' + to_seconds(CAST(hash(i) % 94000000 AS BIGINT)) AS created_at,
            created_at + to_seconds(600 + i % 7200) AS first_response_at,
            CASE WHEN i % 20 = 0 THEN NULL ELSE created_at + to_seconds(3600 + i % 400000) END AS resolved_at,
            1 + i % 3 AS contacts_to_resolve, i % 11 = 0 AS reopened
        FROM range({n_tick}) t(i) JOIN depts d ON d.department = {DEPTS}[i % 6 + 1])
        TO '{p('tickets')}' (FORMAT parquet)""")
    con.close()
    return {"customers": n_cust, "responses": n_resp, "tickets": n_tick}


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full size (1M customers)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DataQualityWarning)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        sizes, t_build = timed(lambda: build(folder, args.scale))
        print(f"built {sizes} in {t_build:.1f}s "
              f"({sum(f.stat().st_size for f in folder.iterdir()) / 1e6:.0f} MB of Parquet)")

        frames, t_pandas = timed(lambda: {t: pd.read_parquet(folder / f"{t}.parquet")
                                          for t in ("customers", "responses", "tickets", "org")})
        ds, t_load = timed(lambda: load_dataset(folder))
        snap, t_snap = timed(lambda: ds.snapshot(Path(tmp) / "snapshot.duckdb"))
        again, t_reload = timed(lambda: load_dataset(snap, validate=False))
        sql = ("SELECT department, date_trunc('month', response_date) AS month, avg(csat) AS csat, count(*) AS n "
               "FROM responses GROUP BY ALL ORDER BY ALL")
        kpi_duck, t_kpi_duck = timed(lambda: again.con.execute(sql).df())
        r = frames["responses"]

        def pandas_kpi():
            month = pd.to_datetime(r["response_date"]).dt.to_period("M")
            return r.groupby(["department", month])["csat"].agg(["mean", "size"])

        kpi_pd, t_kpi_pd = timed(pandas_kpi)
        assert len(kpi_duck) == len(kpi_pd)
        _, t_frame = timed(lambda: again.responses)

    rows = [("pandas.read_parquet x4 (baseline)", t_pandas, 1.0),
            ("load_dataset + full validation", t_load, t_load / t_pandas),
            ("Dataset.snapshot", t_snap, t_snap / t_pandas),
            ("reload snapshot (validate=False)", t_reload, t_reload / t_pandas),
            ("responses frame from snapshot", t_frame, t_frame / t_pandas),
            ("KPI series pandas groupby", t_kpi_pd, 1.0),
            ("KPI series DuckDB", t_kpi_duck, t_kpi_duck / t_kpi_pd)]
    for name, t, ratio in rows:
        print(f"{name:<40} {t:8.2f}s   ratio {ratio:6.3f}")
    ok = True
    if t_load / t_pandas > TARGET_VALIDATE:
        print(f"MISSED: load+validate {t_load / t_pandas:.2f}x the pandas read (target <= {TARGET_VALIDATE}x)")
        ok = False
    if t_reload / t_pandas > TARGET_RELOAD:
        print(f"MISSED: snapshot reload {t_reload / t_pandas:.3f}x (target <= {TARGET_RELOAD}x)")
        ok = False
    if t_kpi_duck > t_kpi_pd:
        print("MISSED: the DuckDB KPI series is slower than pandas on loaded frames")
        ok = False
    print("all targets met" if ok else "targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
