"""Benchmark of the report runner (`make bench`); prints ratios against baselines measured in the same run.

Targets (the issue "Report runner"), each checked here, exit code 1 when one is missed:

1. Whole run (every department + every company-wide report of the registry, ``helpers.reports.registry.REPORTS``:
   drivers, retention, voice of the customer) on the default demo data (20,000 customers, seed 42), started as an operator starts it (``python -m helpers.reports run`` into a fresh output folder,
   interpreter start-up included), at least 4x faster than the naive loop (the in-process runner's ratio is
   printed too): for each report in the run's manifest, the ``papermill``
   CLI with the same parameters, then ``jupyter nbconvert --to html --no-input``, one after another.
2. Cost per extra department well below one notebook's cold start: (time with all departments - time with
   one) / (departments - 1), against the ``papermill`` CLI running a notebook that only imports the stack
   (target: at most half of it).
3. At 1,000,000 responses and 5,000,000 tickets the run takes at most 3x its time on the default demo data.
   The large data set is the default demo with responses and tickets replicated under new ids (same
   customers and organisation, so every key still resolves); ``--skip-large`` leaves it out.

Also measured (``--parts cpu``, no target): the CPU time of each page's own work, less noisy than wall time on a
shared machine. Each report of the run's manifest is executed once more, one after another, each in a fresh
process that has first imported what a warm kernel has (``helpers.reports.warm_kernels.PRELOAD_MODULES``), on a
fresh copy of the run's snapshot (empty per-run caches, so the first page computes what the run shares): the
process CPU time (``time.process_time``) of its code cells, with ``display`` formatting the objects it is given.

Measured 2026-11-30 on this project's 2-core machine, quiet (target 1, ``--skip-large --parts 1``): the command line
18.2-18.3 s against the naive loop's 75-81 s: 4.41x, 4.37x and 4.12x in three runs (the naive loop varies most). The run
is CPU-bound: about 33 CPU-seconds in 18 s; what is left is the pages' own work (a third of it matplotlib drawing).

Usage: .venv/bin/python bench/bench_reports.py [--workers 2] [--customers 20000] [--skip-large] [--parts 1,2,3,cpu]
[--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def registered_notebooks() -> tuple[str, ...]:
    """Every report notebook of the registry (helpers.reports.registry.REPORTS): the bench runs what a run runs."""
    from helpers.reports.registry import REPORTS
    return tuple(spec.notebook for spec in REPORTS)


def assemble_notebooks(dest: Path) -> list[str]:
    """The real report notebooks; a fixture stand-in for any that does not exist yet (returned)."""
    dest.mkdir(parents=True, exist_ok=True)
    stand_ins = []
    for name in registered_notebooks():
        real = REPO / "notebooks" / "reports" / name
        src = real if real.exists() else REPO / "tests" / "fixtures" / "notebooks" / name
        if src != real:
            stand_ins.append(name)
        shutil.copy(src, dest / name)
    return stand_ins


def make_demo(dest: Path, customers: int, seed: int) -> Path:
    subprocess.run([sys.executable, "-m", "helpers.demo", "--out", str(dest), "--customers", str(customers),
                    "--seed", str(seed)], check=True, capture_output=True)
    return dest


def make_large(src: Path, dest: Path, responses: int, tickets: int) -> Path:
    """Replicate responses/tickets of ``src`` under new ids up to the requested row counts."""
    import duckdb
    dest.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    for table in ("customers", "org"):
        shutil.copy(src / f"{table}.parquet", dest / f"{table}.parquet")
    for table, key, target in (("responses", "response_id", responses), ("tickets", "ticket_id", tickets)):
        n = con.execute(f"SELECT count(*) FROM read_parquet('{src / table}.parquet')").fetchone()[0]
        copies = -(-target // n)
        con.execute(f"""
            COPY (
              SELECT t.* REPLACE (CASE WHEN r.k = 0 THEN t.{key} ELSE t.{key} || '-x' || r.k END AS {key})
              FROM read_parquet('{src / table}.parquet') AS t, range({copies}) AS r(k)
              ORDER BY k LIMIT {target}
            ) TO '{dest / table}.parquet' (FORMAT parquet)""")
    con.close()
    return dest


def run_ours(params: Path, data: Path, out: Path, notebooks: Path, workers: int, only=None,
             company=True) -> tuple[float, dict]:
    from helpers.reports.runner import RunOptions, run_reports
    t0 = time.perf_counter()
    result = run_reports(RunOptions(params=params, data=str(data), out=out, notebooks=notebooks, workers=workers,
                                    only=only, company_reports=company, progress=False),
                         echo=lambda m: print("   ", m, flush=True))
    seconds = time.perf_counter() - t0
    if result.failures:
        print(f"    (failed reports: {result.failures})")
    return seconds, result.manifest


def run_cli(params: Path, data: Path, out: Path, notebooks: Path, workers: int) -> tuple[float, dict]:
    """The run as an operator starts it: ``python -m helpers.reports run`` into a fresh output folder, timed from
    the process start (interpreter start-up, imports, planning, data load, reports, publishing)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "helpers.reports", "run", "--params", str(params), "--data",
                           str(data), "--out", str(out), "--notebooks", str(notebooks), "--workers", str(workers)],
                          cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"    (CLI exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:] })")
    manifest = json.loads((out / "latest" / "manifest.json").read_text()) if (out / "latest").exists() else {}
    return seconds, manifest


def run_naive(manifest: dict, work: Path) -> float:
    """papermill CLI + nbconvert CLI per report, sequentially, with the manifest's exact parameters."""
    from helpers.reports.runner import rerun_parameters
    work.mkdir(parents=True)
    (work / "summaries").mkdir()
    run_dir = Path(manifest["_run_dir"])
    shutil.copy(run_dir / "data.duckdb", work / "data.duckdb")
    t0 = time.perf_counter()
    for report in manifest["reports"]:
        params = rerun_parameters(manifest, report, work)
        pfile = work / f"{report['name']}.params.yaml"
        pfile.write_text(yaml.safe_dump(params))
        out_nb = work / f"{report['name']}.ipynb"
        subprocess.run([str(BIN / "papermill"), str(REPO / report["notebook"]) if not Path(report["notebook"]).is_absolute() else report["notebook"],
                        str(out_nb), "-f", str(pfile), "-k", report["kernel"], "--cwd", str(REPO)],
                       check=False, capture_output=True)
        subprocess.run([str(BIN / "jupyter"), "nbconvert", "--to", "html", "--no-input", str(out_nb)],
                       check=False, capture_output=True)
    return time.perf_counter() - t0


def exec_page(notebook: str, parameters: dict) -> dict:
    """Run the code cells of ``notebook`` in this process with ``parameters`` (after the parameters cell) and
    return the process CPU and wall seconds of those cells: the modules of a warm kernel imported first, the
    Agg backend, ``display`` replaced by one that formats each object as the kernel would (HTML, Markdown, PNG)."""
    import importlib

    os.environ["MPLBACKEND"] = "Agg"
    from helpers.reports.warm_kernels import PRELOAD_MODULES
    for name in PRELOAD_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - as the fork server: an optional module is skipped
            pass
    import IPython.display

    def display(*objs, raw=False, metadata=None, **_kwargs):
        for obj in objs:
            if raw:
                continue
            for method in ("_repr_html_", "_repr_markdown_", "_repr_png_"):
                if callable(getattr(obj, method, None)):
                    getattr(obj, method)()
                    break

    IPython.display.display = display
    nb = nbformat.read(notebook, as_version=4)
    namespace: dict = {"__name__": "__main__"}
    cpu, wall = time.process_time(), time.perf_counter()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "parameters" in cell.metadata.get("tags", []):
            exec(cell.source, namespace)  # noqa: S102 - the kit's own report notebooks
            namespace.update(parameters)
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        exec(compile(source, notebook, "exec"), namespace)  # noqa: S102
        namespace["display"] = display
    return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}


def page_cpu(manifest: dict, work: Path) -> dict[str, float]:
    """CPU seconds of each report's own work (module docstring), in the manifest's order."""
    from helpers.reports.runner import rerun_parameters
    work.mkdir(parents=True)
    (work / "summaries").mkdir()
    shutil.copy(Path(manifest["_run_dir"]) / "data.duckdb", work / "data.duckdb")
    out = {}
    for report in manifest["reports"]:
        params = rerun_parameters(manifest, report, work)
        notebook = report["notebook"] if Path(report["notebook"]).is_absolute() else str(REPO / report["notebook"])
        proc = subprocess.run([sys.executable, __file__, "--exec-page", notebook, json.dumps(params)], cwd=REPO,
                              capture_output=True, text=True)
        try:
            out[report["name"]] = json.loads(proc.stdout.strip().splitlines()[-1])["cpu"]
        except (IndexError, ValueError, KeyError):
            print(f"    ({report['name']} failed: {proc.stderr.strip().splitlines()[-1:]})")
            out[report["name"]] = float("nan")
    return out


def cold_start(work: Path) -> float:
    """papermill CLI on a notebook that only imports what every report imports (one notebook's fixed cost)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "satisfaction-kit", "display_name": "Python (satisfaction kit)",
                                 "language": "python"}
    p = nbformat.v4.new_code_cell('run_id = ""')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(
        "import pandas, numpy, scipy.stats, statsmodels.api, matplotlib.pyplot as plt, seaborn\n"
        "import helpers.data, helpers.kpis")]
    path = work / "cold.ipynb"
    nbformat.write(nb, str(path))
    t0 = time.perf_counter()
    subprocess.run([str(BIN / "papermill"), str(path), str(work / "cold.out.ipynb"), "--cwd", str(REPO)],
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--skip-large", action="store_true", help="leave out target 3 (large data)")
    ap.add_argument("--parts", default="1,2,3", help="which targets to measure, e.g. 1,3 (default: all)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    ap.add_argument("--exec-page", nargs=2, metavar=("NOTEBOOK", "PARAMETERS_JSON"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.exec_page:
        print(json.dumps(exec_page(args.exec_page[0], json.loads(args.exec_page[1]))))
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench_reports_")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    ok = True
    try:
        notebooks = work / "notebooks"
        stand_ins = assemble_notebooks(notebooks)
        if stand_ins:
            print(f"note: fixture stand-ins for notebooks not written yet: {', '.join(stand_ins)}")
        params = REPO / "params"
        departments = sorted(p.stem for p in (params / "departments").glob("*.yaml"))
        print(f"demo data: {args.customers} customers, seed {args.seed}; departments: {len(departments)}; "
              f"workers: {args.workers}; cpus: {os.cpu_count()}")
        data = make_demo(work / "demo", args.customers, args.seed)

        parts = {p.strip() for p in args.parts.split(",")}
        if args.skip_large:
            parts.discard("3")
        print("1. whole run (runner) ...", flush=True)
        t_ours, manifest = run_ours(params, data, work / "ours", notebooks, args.workers)
        manifest["_run_dir"] = str(work / "ours" / manifest["run_id"])
        print(f"   runner: {t_ours:.1f} s for {len(manifest['reports'])} reports")
        if "1" in parts:
            print("   command line (python -m helpers.reports run, fresh output folder) ...", flush=True)
            t_cli, _ = run_cli(params, data, work / "cli", notebooks, args.workers)
            print(f"   command line: {t_cli:.1f} s")
            print("   naive loop (papermill CLI + nbconvert CLI per report) ...", flush=True)
            t_naive = run_naive(manifest, work / "naive")
            ratio = t_naive / t_ours
            ratio_cli = t_naive / t_cli
            target1 = ratio_cli >= 4.0
            ok &= target1
            print(f"   naive: {t_naive:.1f} s; speed-up of the command line {ratio_cli:.2f}x (target >= 4x) "
                  f"{'OK' if target1 else 'MISSED'}; in-process runner {ratio:.2f}x")
            fixed = sum((r["seconds"] or 0) for r in manifest["reports"])
            print(f"   (sum of the runner's per-report seconds {fixed:.1f} s: the notebooks' own work; "
                  f"naive minus that = {t_naive - fixed:.1f} s of start-up and export overhead)")

        if "cpu" in parts:
            print("   CPU time of each page's own work (fresh process per page, warm-kernel imports done) ...",
                  flush=True)
            cpu = page_cpu(manifest, work / "cpu")
            print("   page CPU seconds: " + ", ".join(f"{n} {s:.2f}" for n, s in cpu.items())
                  + f"; total {sum(cpu.values()):.1f} s")

        if "2" in parts:
            print("2. cost per extra department ...", flush=True)
            t_one, _ = run_ours(params, data, work / "one", notebooks, args.workers, only=departments[:1],
                                company=False)
            t_all, _ = run_ours(params, data, work / "all", notebooks, args.workers, company=False)
            per_dept = (t_all - t_one) / max(1, len(departments) - 1)
            t_cold = cold_start(work)
            target2 = per_dept <= 0.5 * t_cold
            ok &= target2
            print(f"   one department {t_one:.1f} s, {len(departments)} departments {t_all:.1f} s -> "
                  f"{per_dept:.2f} s per extra department; notebook cold start {t_cold:.2f} s; "
                  f"ratio {per_dept / t_cold:.2f} (target <= 0.5) {'OK' if target2 else 'MISSED'}")

        if "3" in parts:
            print("3. 1,000,000 responses and 5,000,000 tickets ...", flush=True)
            large = make_large(data, work / "large", 1_000_000, 5_000_000)
            t_large, _ = run_ours(params, large, work / "ours_large", notebooks, args.workers)
            scale = t_large / t_ours
            target3 = scale <= 3.0
            ok &= target3
            print(f"   large run {t_large:.1f} s = {scale:.2f}x the default demo run (target <= 3x) "
                  f"{'OK' if target3 else 'MISSED'}")
        else:
            print("3. large data: not measured (--skip-large / --parts)")
        per_report = sorted(((r["seconds"] or 0), r["name"]) for r in manifest["reports"])
        print("   per-report seconds (runner, default demo): " + ", ".join(f"{n} {s:.1f}" for s, n in per_report))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("ALL TARGETS MET" if ok else "SOME TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
