"""``python -m helpers.reports run [options]``: render every report into ``reports/<run-id>/``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_CODES_HELP = """exit codes:
  0    every report was produced
  1    the run completed but one or more reports failed (each has an error page; see the last lines)
  2    invalid input: options, params files, notebooks or data (nothing was executed)
  3    environment fault: disk full, read-only or unwritable output folder, or another run holds the
       output folder's lock (--if-locked fail, or --lock-timeout ran out); the unfinished run is removed,
       latest is unchanged
  130  interrupted by SIGINT (Ctrl-C)
  143  terminated by SIGTERM
       (130/143: workers, kernels and the unfinished run folder are removed, latest is unchanged)
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m helpers.reports", description=__doc__, epilog=EXIT_CODES_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="render all reports into an immutable run folder", epilog=EXIT_CODES_HELP,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--params", type=Path, default=Path("params"), help="params folder (default: params/)")
    run.add_argument("--data", default=None, help="data folder or .duckdb file (default: report.yaml's data_source)")
    run.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: reports/)")
    run.add_argument("--only", nargs="+", metavar="DEPT", help="only these departments (slug or name)")
    run.add_argument("--as-of", dest="as_of", default=None, help="as-of date YYYY-MM-DD (default: last date in data)")
    run.add_argument("--workers", type=int, default=2, help="parallel worker processes (default: 2)")
    run.add_argument("--dry-run", action="store_true", help="validate params, notebooks and data; execute nothing")
    run.add_argument("--notebooks", type=Path, default=None, help="report notebooks folder (default: notebooks/reports)")
    run.add_argument("--keep", type=int, default=None, metavar="N",
                     help="keep only the newest N complete runs (by start time; N >= 1)")
    run.add_argument("--no-company", dest="company_reports", action="store_false",
                     help="skip the company-wide reports (drivers, retention)")
    run.add_argument("--cold-kernels", dest="warm_kernels", action="store_false",
                     help="start every kernel from scratch instead of forking warm ones")
    run.add_argument("--kernel", dest="kernel_name", default=None, help="Jupyter kernel (default: the notebook's)")
    run.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell (default: 1800)")
    run.add_argument("--run-id", default=None, help="run folder name (default: UTC timestamp, made unique)")
    run.add_argument("--if-locked", dest="if_locked", choices=("fail", "wait"), default="fail",
                     help="another run is writing into --out: fail at once with exit code 3 (default) "
                          "or wait for it to finish (at most --lock-timeout seconds)")
    run.add_argument("--lock-timeout", dest="lock_timeout", type=float, default=3600.0, metavar="SECONDS",
                     help="with --if-locked wait: give up after this many seconds with exit code 3, naming "
                          "the run that holds the folder (default: 3600)")
    rep = sub.add_parser("reproduce", help="re-execute a finished run from its manifest.json into a new folder",
                         epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("run_dir", type=Path, help="reports/<run-id>")
    rep.add_argument("--out", type=Path, default=None, help="where the new run folder goes (default: next to it)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from helpers.errors import KitError
    from helpers.reports import (EXIT_ENVIRONMENT, EXIT_INVALID_INPUT, RunEnvironmentError, RunInterrupted,
                                 console_text, environment_fault)
    from helpers.reports.runner import RunOptions, run_reports
    try:
        if args.command == "run":
            opts = RunOptions(params=args.params, data=args.data, out=args.out, only=args.only, as_of=args.as_of,
                              workers=args.workers, dry_run=args.dry_run, notebooks=args.notebooks,
                              keep=args.keep, warm_kernels=args.warm_kernels, timeout=args.timeout,
                              kernel_name=args.kernel_name, company_reports=args.company_reports,
                              run_id=args.run_id, if_locked=args.if_locked, lock_timeout=args.lock_timeout)
            try:
                result = run_reports(opts)
            except KitError as exc:
                print(console_text(f"error: {exc}"), file=sys.stderr)
                return EXIT_INVALID_INPUT
            return result.exit_code
        if args.command == "reproduce":
            from helpers.reports.runner import reproduce_run
            try:
                return reproduce_run(args.run_dir, args.out).exit_code
            except (KitError, KeyError, FileNotFoundError, NotADirectoryError) as exc:
                print(console_text(f"error: cannot reproduce {args.run_dir}: {exc}"), file=sys.stderr)
                return EXIT_INVALID_INPUT
        return EXIT_INVALID_INPUT
    except RunEnvironmentError as exc:
        print(console_text(f"error: {exc}"), file=sys.stderr)
        return EXIT_ENVIRONMENT
    except OSError as exc:  # a fault outside the run's own clean-up (e.g. reproduce): still one line
        fault = environment_fault(exc)
        if fault is None:
            raise
        print(console_text(f"error: {fault[1]}: {exc}"), file=sys.stderr)
        return EXIT_ENVIRONMENT
    except RunInterrupted as exc:
        print(console_text(getattr(exc, "detail", "") or f"interrupted ({exc})"), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted (SIGINT)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
