"""Benchmark of the demo generator: time, rows/s and peak memory, against a baseline measured in the same run.

    .venv/bin/python bench/bench_demo.py            # default size (20k customers) and 200k customers
    .venv/bin/python bench/bench_demo.py --million  # also 1M customers (about two minutes)

Each size runs in a fresh subprocess that reports its own peak RSS (``resource.getrusage``). The
baseline is the time to write the same number of rows of random numbers (eight float64 columns) to
Parquet with pyarrow, also in a fresh subprocess: the ratio says how much the generator costs above
merely writing that much data. Targets (exit status 1 when missed): default size in under 15 s and
at most 6x the baseline; peak RSS under 1.5 GiB at 200k and under 4 GiB at 1M customers.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GENERATE = """
import json, resource, time
from helpers.demo import generate_demo
t0 = time.perf_counter()
path = generate_demo({out!r}, {n}, seed=42)
dt = time.perf_counter() - t0
counts = json.loads(path.read_text())["counts"]
rows = counts["customers"] + counts["responses"] + counts["tickets"]
print(json.dumps({{"seconds": dt, "rows": rows, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

BASELINE = """
import json, resource, time
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
rows, chunk = {rows}, 500_000
rng = np.random.default_rng(0)
t0 = time.perf_counter()
schema = pa.schema([(f"x{{i}}", pa.float64()) for i in range(8)])
with pq.ParquetWriter({out!r}, schema) as w:
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        w.write_table(pa.table({{f"x{{i}}": rng.random(n) for i in range(8)}}, schema=schema))
print(json.dumps({{"seconds": time.perf_counter() - t0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--million", action="store_true", help="also run 1,000,000 customers")
    args = parser.parse_args()
    sizes = [20_000, 200_000] + ([1_000_000] if args.million else [])
    limits_rss = {20_000: 1024, 200_000: 1536, 1_000_000: 4096}
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            gen = _run(GENERATE.format(out=f"{tmp}/demo_{n}", n=n))
            base = _run(BASELINE.format(out=f"{tmp}/baseline_{n}.parquet", rows=gen["rows"]))
            ratio = gen["seconds"] / base["seconds"]
            print(f"{n:>9,} customers: {gen['rows']:>11,} rows in {gen['seconds']:6.2f} s "
                  f"({gen['rows'] / gen['seconds']:,.0f} rows/s); baseline (write same rows of random floats) "
                  f"{base['seconds']:.2f} s -> ratio {ratio:.1f}x; peak RSS {gen['peak_rss_mib']:,.0f} MiB "
                  f"(baseline {base['peak_rss_mib']:,.0f} MiB)")
            if gen["peak_rss_mib"] > limits_rss[n]:
                failures.append(f"{n} customers: peak RSS {gen['peak_rss_mib']:.0f} MiB > {limits_rss[n]} MiB")
            if n == 20_000 and (gen["seconds"] > 15 or ratio > 6):
                failures.append(f"default size: {gen['seconds']:.1f} s / ratio {ratio:.1f}x (targets 15 s, 6x)")
    for f in failures:
        print("TARGET MISSED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
