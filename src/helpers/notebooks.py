"""Notebook hygiene: notebooks are committed without outputs or execution counts.

The one exception is a cell whose source starts with ``# NBVAL_CHECK_OUTPUT`` and whose metadata has
``keep_output: true``: nbval compares its stored output with a fresh run on the seeded test data (``make
test``), so it keeps its output and an execution count (nbval ignores stored outputs of "unrun" cells).
nbstripout cannot keep one cell's count, hence this small equivalent, used by the pre-commit hook::

    python -m helpers.notebooks strip notebooks/**/*.ipynb   # rewrite in place
    python -m helpers.notebooks check notebooks/**/*.ipynb   # exit 1 and name the cells if not clean
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def is_checked_cell(cell) -> bool:
    """A cell whose output nbval checks: marked in its source and in its metadata."""
    return (cell.cell_type == "code" and cell.source.lstrip().startswith(CHECK_MARK)
            and bool(cell.metadata.get("keep_output")))


def strip_notebook(nb):
    """Remove outputs and execution counts (in place) except on checked cells; returns ``nb``."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        if is_checked_cell(cell):
            cell.execution_count = cell.execution_count or 1
            for out in cell.outputs:
                if "execution_count" in out:
                    out["execution_count"] = cell.execution_count
            continue
        cell.outputs = []
        cell.execution_count = None
    return nb


def hygiene_problems(nb) -> list[str]:
    """What a committed notebook must not have: outputs or counts outside checked cells."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or is_checked_cell(cell):
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
