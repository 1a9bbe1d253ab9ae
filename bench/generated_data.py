"""Generate-once demo data for the benchmarks (not a benchmark itself: ``make bench`` runs ``bench_*.py``).

``generated_demo(customers, seed)`` returns ``build/bench-engine-<customers>`` (seed 42) or
``build/bench-engine-<customers>-seed<seed>``, generating it with the demo generator's streaming mode
(``python -m helpers.demo``: fixed chunks through ``pyarrow.parquet.ParquetWriter``, bounded memory) only when
it is missing or does not match: ``ground_truth.json`` (written last, so a killed generation leaves none) must
name the same number of customers and seed, and every table file must hold the rows it records.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("customers", "responses", "tickets", "org")


def default_folder(customers: int, seed: int = 42) -> Path:
    """Where the benchmarks keep ``customers`` generated customers (shared by bench_engine and bench_scale)."""
    return ROOT / "build" / (f"bench-engine-{customers}" + ("" if seed == 42 else f"-seed{seed}"))


def matches(folder: Path, customers: int, seed: int = 42) -> bool:
    """Whether ``folder`` holds a complete generation of ``customers`` customers with ``seed``."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    try:
        truth = json.loads((Path(folder) / "ground_truth.json").read_text())
        if int(truth["n_customers"]) != customers or int(truth["seed"]) != seed:
            return False
        return all(pq.ParquetFile(Path(folder) / f"{t}.parquet").metadata.num_rows == int(truth["counts"][t])
                   for t in TABLES)
    except (OSError, KeyError, ValueError, TypeError):
        return False
    except Exception:  # noqa: BLE001 - a truncated Parquet file (pyarrow's ArrowInvalid): generate again
        return False


def generated_demo(customers: int, seed: int = 42, folder: Path | None = None, *, nice: int = 0,
                   quiet: bool = False) -> Path:
    """``folder`` (default :func:`default_folder`) with the demo data of ``customers`` customers and ``seed``,
    generated now only when it is missing or does not match (:func:`matches`). ``nice``: the generator's
    niceness (the machine is shared)."""
    folder = Path(folder) if folder is not None else default_folder(customers, seed)
    if matches(folder, customers, seed):
        return folder
    cmd = [sys.executable, "-m", "helpers.demo", "--out", str(folder), "--customers", str(customers),
           "--seed", str(seed)]
    if nice:
        cmd = ["nice", "-n", str(int(nice)), *cmd]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    if not matches(folder, customers, seed):
        raise RuntimeError(f"generating {customers:,} customers into {folder} did not give matching files")
    if not quiet:
        print(f"generated {customers:,} customers into {folder} in {time.perf_counter() - t:.0f} s")
    return folder
