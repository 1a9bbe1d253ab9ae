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


# --- every problem of a data set at once ------------------------------------------------------------------

class DataProblem:
    """One problem of the data, per table and column: the rule broken, how many rows, example row keys, the
    offending values and, when one fits, a suggested setting. ``severity`` is ``"error"`` (the data cannot be
    used until it is fixed) or ``"warning"`` (it loads; some results may be unreliable)."""

    __slots__ = ("table", "problem", "source", "column", "n_rows", "examples", "values", "expected",
                 "suggestion", "rule", "severity")

    def __init__(self, table: str, problem: str, *, source: str | None = None, column: str | None = None,
                 n_rows: int | None = None, examples: Sequence[object] | None = None,
                 values: Sequence[object] | None = None, expected: str | None = None, suggestion: str | None = None,
                 rule: str = "", severity: str = "error"):
        self.table, self.problem, self.source, self.column = table, problem, source, column
        self.n_rows, self.examples, self.values = n_rows, list(examples or []), list(values or [])
        self.expected, self.suggestion, self.rule, self.severity = expected, suggestion, rule, severity

    def message(self) -> str:
        """One line: ``table (file): column 'x' <problem> (<values>) in N rows e.g. <keys>; expected ...; <hint>``."""
        where = self.table + (f" ({self.source})" if self.source else "")
        what = (f"column {shorten(self.column)} " if self.column else "") + self.problem
        if self.values:
            shown = ", ".join(shorten(v, 40) for v in self.values[:5])
            what += f" ({shown}{', ...' if len(self.values) > 5 else ''})"
        rows = f" in {self.n_rows:,} row{'s' if self.n_rows != 1 else ''}" if self.n_rows is not None else ""
        msg = f"{where}: {what}{rows}{_format_examples(self.examples)}"
        if self.expected:
            msg += f"; expected {self.expected}"
        if self.suggestion:
            msg += f"; {self.suggestion}"
        return msg

    def to_dict(self) -> dict[str, object]:
        return {"table": self.table, "column": self.column, "rule": self.rule, "severity": self.severity,
                "problem": self.problem, "rows": self.n_rows, "examples": [str(e) for e in self.examples],
                "values": [str(v) for v in self.values], "expected": self.expected or "",
                "suggestion": self.suggestion or "", "source": self.source or "", "message": self.message()}

    @classmethod
    def from_dict(cls, d: dict) -> "DataProblem":
        """The inverse of :meth:`to_dict`."""
        return cls(str(d["table"]), str(d["problem"]), source=d.get("source") or None, column=d.get("column"),
                   n_rows=d.get("rows"), examples=d.get("examples"), values=d.get("values"),
                   expected=d.get("expected") or None, suggestion=d.get("suggestion") or None,
                   rule=str(d.get("rule", "")), severity=str(d.get("severity", "error")))

    def __repr__(self) -> str:
        return f"DataProblem({self.message()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataProblem) and self.to_dict() == other.to_dict()


class DataValidationError(DataContractError):
    """Every problem found in one pass over all tables (``.problems``, a list of :class:`DataProblem`).

    With one problem the message is that problem's line (as a plain :class:`DataContractError`); with more it
    is ``N problems in the data:`` followed by one numbered line per problem. ``table``, ``column``, ``n_rows``
    and ``examples`` are the first problem's, so code that handles a single contract error keeps working.
    :func:`helpers.data.data_quality_html` renders the problems as a page.
    """

    def __init__(self, problems: Sequence[DataProblem]):
        self.problems = [p for p in problems if p.severity == "error"] or list(problems)
        first = self.problems[0]
        self.table, self.source, self.column = first.table, first.source, first.column
        self.n_rows, self.examples, self.expected = first.n_rows, list(first.examples), first.expected
        if len(self.problems) == 1:
            msg = first.message()
        else:
            tables = sorted({p.table for p in self.problems})
            msg = (f"{len(self.problems)} problems in the data ({', '.join(tables)}); all of them:\n"
                   + "\n".join(f"  {i}. {p.message()}" for i, p in enumerate(self.problems, 1)))
        KitError.__init__(self, msg)


class MissingTableError(DataContractError, AttributeError):
    """A table the data set does not have (only ``responses`` is required). Also an ``AttributeError``, so
    ``getattr(dataset, "org", None)`` and ``hasattr(dataset, "tickets")`` answer as for an absent attribute."""

    def __init__(self, table: str, reason: str, *, source: str | None = None):
        self.table, self.source, self.column = table, source, None
        self.n_rows, self.examples, self.expected = None, [], None
        self.reason = reason
        where = table + (f" ({source})" if source else "")
        KitError.__init__(self, f"{where}: table not in the data; {reason}")
