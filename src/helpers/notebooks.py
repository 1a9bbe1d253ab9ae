"""Notebook hygiene: notebooks are committed without outputs or execution counts (reports are built, not
committed). The pre-commit hook runs this small nbstripout equivalent::

    python -m helpers.notebooks strip notebooks/**/*.ipynb   # rewrite in place
    python -m helpers.notebooks check notebooks/**/*.ipynb   # exit 1 and name the cells if not clean
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat


def strip_notebook(nb):
    """Remove outputs, execution counts and execution timing metadata (in place); returns ``nb``."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        cell.outputs = []
        cell.execution_count = None
    return nb


def hygiene_problems(nb) -> list[str]:
    """What a committed notebook must not have: outputs or execution counts."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.outputs:
            problems.append(f"cell {i} has committed outputs")
        if cell.execution_count is not None:
            problems.append(f"cell {i} has an execution count")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.notebooks", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["strip", "check"])
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    status = 0
    for path in args.paths:
        nb = nbformat.read(path, as_version=4)
        if args.command == "strip":
            before = nbformat.writes(nb)
            after = nbformat.writes(strip_notebook(nb))
            if after != before:
                path.write_text(after + ("" if after.endswith("\n") else "\n"), encoding="utf-8")
                print(f"stripped {path}")
        else:
            for problem in hygiene_problems(nb):
                print(f"{path}: {problem}")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
