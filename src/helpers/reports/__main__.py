"""``python -m helpers.reports run [options]``: render every report into ``reports/<run-id>/``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m helpers.reports", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="render all reports into an immutable run folder")
    run.add_argument("--params", type=Path, default=Path("params"), help="params folder (default: params/)")
    run.add_argument("--data", default=None, help="data folder or .duckdb file (default: report.yaml's data_source)")
    run.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: reports/)")
    run.add_argument("--only", nargs="+", metavar="DEPT", help="only these departments (slug or name)")
    run.add_argument("--as-of", dest="as_of", default=None, help="as-of date YYYY-MM-DD (default: last date in data)")
    run.add_argument("--workers", type=int, default=2, help="parallel worker processes (default: 2)")
    run.add_argument("--dry-run", action="store_true", help="validate params, notebooks and data; execute nothing")
    run.add_argument("--notebooks", type=Path, default=None, help="report notebooks folder (default: notebooks/reports)")
    run.add_argument("--keep", type=int, default=None, metavar="N", help="keep only the newest N complete runs")
    run.add_argument("--no-company", dest="company_reports", action="store_false",
                     help="skip the company-wide reports (drivers, retention)")
    run.add_argument("--cold-kernels", dest="warm_kernels", action="store_false",
                     help="start every kernel from scratch instead of forking warm ones")
    run.add_argument("--kernel", dest="kernel_name", default=None, help="Jupyter kernel (default: the notebook's)")
    run.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell (default: 1800)")
    run.add_argument("--run-id", default=None, help="run folder name (default: UTC timestamp)")
    rep = sub.add_parser("reproduce", help="re-execute a finished run from its manifest.json into a new folder")
    rep.add_argument("run_dir", type=Path, help="reports/<run-id>")
    rep.add_argument("--out", type=Path, default=None, help="where the new run folder goes (default: next to it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from helpers.errors import KitError
    from helpers.reports.runner import RunOptions, run_reports
    if args.command == "run":
        opts = RunOptions(params=args.params, data=args.data, out=args.out, only=args.only, as_of=args.as_of,
                          workers=args.workers, dry_run=args.dry_run, notebooks=args.notebooks, keep=args.keep,
                          warm_kernels=args.warm_kernels, timeout=args.timeout, kernel_name=args.kernel_name,
                          company_reports=args.company_reports, run_id=args.run_id)
        try:
            result = run_reports(opts)
        except KitError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return result.exit_code
    if args.command == "reproduce":
        from helpers.reports.runner import reproduce_run
        try:
            return reproduce_run(args.run_dir, args.out).exit_code
        except (KitError, OSError, KeyError) as exc:
            print(f"error: cannot reproduce {args.run_dir}: {exc}", file=sys.stderr)
            return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
