"""Errors that name the problem: which file, table, column, rows, and what was expected.

All are ``ValueError`` subclasses so callers that catch ``ValueError`` keep working. Raise them at the
boundary (loading, params), never deep inside a computation.
"""
from __future__ import annotations

from collections.abc import Sequence

from helpers.formatting import shorten


class KitError(ValueError):
    """Base class of the kit's input errors."""


def _format_examples(examples: Sequence[object] | None, limit: int = 5) -> str:
    if not examples:
        return ""
    shown = ", ".join(shorten(e, 60) for e in list(examples)[:limit])
    more = len(examples) - limit
    return f" e.g. {shown}" + (f" (+{more} more)" if more > 0 else "")


class DataContractError(KitError):
    """Input data breaks the data contract (see ``data/README.md``).

    The message names the table, the file, the column, how many rows and a few example row ids, and
    what was expected, e.g.::

        responses (data/demo/responses.csv): column 'nps' has 3 rows outside 0..10 e.g. 'R1', 'R7', 'R9';
        expected integers 0-10 (NPS likelihood to recommend)
    """

    def __init__(self, table: str, problem: str, *, source: str | None = None, column: str | None = None,
                 n_rows: int | None = None, examples: Sequence[object] | None = None,
                 expected: str | None = None):
        self.table, self.source, self.column = table, source, column
        self.n_rows, self.examples, self.expected = n_rows, list(examples or []), expected
        where = table + (f" ({source})" if source else "")
        what = (f"column {shorten(column)} " if column else "") + problem
        rows = f" in {n_rows} row{'s' if n_rows != 1 else ''}" if n_rows is not None else ""
        msg = f"{where}: {what}{rows}{_format_examples(self.examples)}"
        if expected:
            msg += f"; expected {expected}"
        super().__init__(msg)


class TableInputError(DataContractError):
    """Input to one analysis is unusable: the problem first, then the table (default ``customers``), column, rows
    and what was expected (the keyword form analyses raise from their argument checks)."""

    def __init__(self, problem: str, *, table: str = "customers", column: str | None = None,
                 n_rows: int | None = None, examples: Sequence[object] | None = None,
                 expected: str | None = None):
        super().__init__(table, problem, column=column, n_rows=n_rows, examples=examples, expected=expected)


class ParamsError(KitError):
    """A params file (``params/report.yaml`` or a department file) is malformed or inconsistent."""

    def __init__(self, path: object, problem: str, *, field: str | None = None):
        self.path, self.field = str(path), field
        super().__init__(f"{path}: " + (f"field {shorten(field)}: " if field else "") + problem)


class ObjectiveError(ParamsError):
    """An objective in ``params/departments/<name>.yaml`` is invalid; names the file, objective id and field."""

    def __init__(self, path: object, problem: str, *, objective_id: str | None = None,
                 field: str | None = None):
        self.objective_id = objective_id
        self.path, self.field = str(path), field
        where = f"{path}: objective {shorten(objective_id)}" if objective_id else f"{path}"
        KitError.__init__(self, where + (f", field {shorten(field)}" if field else "") + f": {problem}")
