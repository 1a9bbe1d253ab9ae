"""The data contract: four tables, column by column (rendered in ``data/README.md``).

Types are logical: ``string``, ``integer``, ``float``, ``date`` (calendar day), ``timestamp``,
``boolean``. ``nullable=False`` means every row must have a value. ``min``/``max`` bound numbers
(inclusive); ``allowed`` lists the permitted values of a categorical column. ``references`` names a
foreign key as ``"table.column"``.

Only ``responses`` is required (``Table.required``): ``customers``, ``tickets`` and ``org`` are optional, and
nullable columns may be left out of a file (read as empty). The four tables and how they join::

    org (person_id) <── tickets.agent_id
    customers (customer_id) <── responses.customer_id, tickets.customer_id

Attribute ratings (the drivers of satisfaction) are the ``responses`` columns whose names start with
``attr_`` (``attr_speed``, ``attr_resolution``...); the standard six are listed here, and a user's data
may add more ``attr_*`` columns (each a 1-5 rating) without changing code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("director", "manager", "representative")
ATTRIBUTE_PREFIX = "attr_"
STANDARD_ATTRIBUTES = ("speed", "resolution", "knowledge", "courtesy", "ease", "value")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # string | integer | float | date | timestamp | boolean
    description: str
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[str, ...] | None = None
    unique: bool = False
    references: str | None = None  # "table.column"


@dataclass(frozen=True)
class Table:
    name: str
    key: str
    description: str
    columns: tuple[Column, ...]
    # pairs (earlier, later): the later timestamp/date must not come before the earlier one
    ordered: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    # column-name prefix for open-ended extra columns that are allowed (e.g. attr_ ratings)
    extra_prefix: str | None = None
    # the date a row happened (signup, answer, ticket opened): rows dated after the as-of date are left out;
    # the ``ordered`` columns after it (end_date, resolved_at...) are events that had not happened yet then
    dated_by: str | None = None
    # only ``responses`` is required (a survey-only start); without an optional table's file the table is absent
    # and the sections that need it say so
    required: bool = False

    @property
    def later_dates(self) -> tuple[str, ...]:
        """Date columns that must not come before ``dated_by`` (events later in the row's life)."""
        return tuple(later for earlier, later in self.ordered if earlier == self.dated_by)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


CUSTOMERS = Table(
    name="customers",
    key="customer_id",
    description="One row per customer (account). A customer has churned when end_date is set.",
    columns=(
        Column("customer_id", "string", "Customer identifier.", nullable=False, unique=True),
        Column("signup_date", "date", "First day as a customer; defines the monthly cohort.", nullable=False),
        Column("end_date", "date", "Last day as a customer (churn date); empty while still active."),
        Column("segment", "string", "Customer segment, e.g. consumer, small_business, enterprise.",
               nullable=False),
        Column("region", "string", "Sales region, e.g. north, south, east, west."),
        Column("monthly_revenue", "float", "Average monthly revenue (margin basis for CLV), >= 0.", min=0),
        Column("purchases", "integer", "Number of purchases/orders to date (repeat purchase rate), >= 0.",
               min=0),
    ),
    ordered=(("signup_date", "end_date"),),
    dated_by="signup_date",
)

RESPONSES = Table(
    name="responses",
    key="response_id",
    description="One row per survey response (transactional survey after a contact with a department).",
    columns=(
        Column("response_id", "string", "Response identifier.", nullable=False, unique=True),
        Column("customer_id", "string", "Who answered.", nullable=False, references="customers.customer_id"),
        Column("response_date", "date", "Day the survey was answered.", nullable=False),
        Column("department", "string", "Department the customer dealt with (as in org.department).",
               nullable=False),
        Column("channel", "string", "Contact channel, e.g. phone, email, chat, web, store."),
        Column("csat", "integer", "Overall satisfaction, 1 (very dissatisfied) to 5 (very satisfied); "
               "top-2-box (4-5) counts as satisfied.", min=1, max=5),
        Column("nps", "integer", "Likelihood to recommend, 0-10 (9-10 promoter, 7-8 passive, 0-6 detractor).",
               min=0, max=10),
        Column("ces", "integer", "Customer effort, 1 (very easy) to 7 (very difficult).", min=1, max=7),
        *(Column(f"{ATTRIBUTE_PREFIX}{a}", "integer", f"Attribute rating '{a}', 1 (poor) to 5 (excellent).",
                 min=1, max=5) for a in STANDARD_ATTRIBUTES),
        Column("comment", "string", "Free-text comment (customer's words; always HTML-escaped on output)."),
        Column("followed_up_at", "timestamp", "When the customer was contacted after this answer (closing the "
               "loop with an unhappy customer); empty if not contacted. Optional: without it the voice report "
               "says the follow-up KPI is not measured."),
    ),
    extra_prefix=ATTRIBUTE_PREFIX,
    dated_by="response_date",
    required=True,
)

TICKETS = Table(
    name="tickets",
    key="ticket_id",
    description="One row per support/service ticket (case).",
    columns=(
        Column("ticket_id", "string", "Ticket identifier.", nullable=False, unique=True),
        Column("customer_id", "string", "Customer who opened it.", nullable=False,
               references="customers.customer_id"),
        Column("department", "string", "Department that owns the ticket.", nullable=False),
        Column("team", "string", "Team within the department."),
        Column("agent_id", "string", "Representative who handled it.", references="org.person_id"),
        Column("channel", "string", "Contact channel, e.g. phone, email, chat, web."),
        Column("created_at", "timestamp", "When the ticket was opened.", nullable=False),
        Column("first_response_at", "timestamp", "First reply to the customer; empty if none yet."),
        Column("resolved_at", "timestamp", "When it was resolved; empty while open."),
        Column("contacts_to_resolve", "integer", "Customer contacts needed to resolve (1 = first-contact "
               "resolution), >= 1.", min=1),
        Column("reopened", "boolean", "Whether the ticket was reopened after resolution."),
    ),
    ordered=(("created_at", "first_response_at"), ("created_at", "resolved_at")),
    dated_by="created_at",
)

ORG = Table(
    name="org",
    key="person_id",
    description="The organisation: department -> team -> person, each with a role.",
    columns=(
        Column("person_id", "string", "Person identifier (agents in tickets.agent_id).", nullable=False,
               unique=True),
        Column("name", "string", "Display name (HTML-escaped on output).", nullable=False),
        Column("role", "string", "director, manager or representative.", nullable=False, allowed=ROLES),
        Column("department", "string", "Department name, as used in responses and tickets.", nullable=False),
        Column("team", "string", "Team name; empty for directors."),
        Column("manager_id", "string", "The person's manager (a person_id); empty for directors.",
               references="org.person_id"),
    ),
)

TABLES: dict[str, Table] = {t.name: t for t in (CUSTOMERS, RESPONSES, TICKETS, ORG)}


# --- helpers over the contract (types in DuckDB and pandas, the markdown of data/README.md) ---------------

DUCKDB_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "float": "DOUBLE", "date": "DATE",
                "timestamp": "TIMESTAMP", "boolean": "BOOLEAN"}
"""The DuckDB column type of each logical type (the tables of ``Dataset.con``)."""

PANDAS_DTYPES = {"string": "str", "integer": "float64", "float": "float64", "date": "datetime64[us]",
                 "timestamp": "datetime64[us]", "boolean": "boolean"}
"""The pandas dtype of each logical type in ``Dataset`` frames (numbers are float64 with NaN for missing)."""


def attribute_column(table: Table, name: str) -> Column | None:
    """The contract of an extra ``attr_*`` column of ``table`` (a 1-5 rating), or None if not allowed."""
    if table.extra_prefix and name.startswith(table.extra_prefix) and len(name) > len(table.extra_prefix):
        label = name[len(table.extra_prefix):]
        return Column(name, "integer", f"Attribute rating '{label}', 1 (poor) to 5 (excellent).", min=1, max=5)
    return None


def allowed_values_text(column: Column) -> str:
    """Plain-text rule of a column's values: ``1-5``, ``>= 0``, ``director, manager, representative``."""
    if column.allowed:
        return ", ".join(column.allowed)
    fmt = (lambda v: str(int(v)) if float(v).is_integer() else str(v))
    if column.min is not None and column.max is not None:
        return f"{fmt(column.min)}-{fmt(column.max)}"
    if column.min is not None:
        return f">= {fmt(column.min)}"
    if column.max is not None:
        return f"<= {fmt(column.max)}"
    notes = []
    if column.unique:
        notes.append("unique")
    if column.references:
        notes.append(f"a {column.references}")
    if column.dtype == "date":
        notes.append("YYYY-MM-DD")
    if column.dtype == "timestamp":
        notes.append("YYYY-MM-DD HH:MM[:SS]")
    if column.dtype == "boolean":
        notes.append("true/false (also yes/no, 1/0)")
    return "; ".join(notes) or "any"


def contract_markdown() -> str:
    """The contract as markdown tables, one per table (the generated part of ``data/README.md``)."""
    out: list[str] = []
    for table in TABLES.values():
        out.append(f"### `{table.name}`\n\n")
        out.append(f"{table.description} Key: `{table.key}`. " + (
            "**Required.**" if table.required else
            "Optional: without this file the table is absent and the sections that need it say so."))
        if table.ordered:
            pairs = ", ".join(f"`{b}` >= `{a}`" for a, b in table.ordered)
            out.append(f" Order rules: {pairs} (when both are set).")
        if table.extra_prefix:
            out.append(f" Extra `{table.extra_prefix}*` columns are allowed (each a 1-5 rating).")
        if table.dated_by:
            out.append(f" Dated by `{table.dated_by}`: rows after the as-of date are left out of a report")
            if table.later_dates:
                out.append(f"; a later {' or '.join(f'`{c}`' for c in table.later_dates)} reads as empty "
                           "(not yet happened then)")
            out.append(".")
        out.append(" Nullable columns may be left out of the file (read as empty).")
        out.append("\n\n| column | type | allowed values | nullable | meaning |\n|---|---|---|---|---|\n")
        for c in table.columns:
            extra = []
            if c.unique and (c.min is not None or c.allowed):
                extra.append("unique")
            if c.references and (c.min is not None or c.allowed or c.unique):
                extra.append(f"a {c.references}")
            rule = allowed_values_text(c) + ("; " + "; ".join(extra) if extra else "")
            out.append(f"| `{c.name}` | {c.dtype} | {rule} | {'yes' if c.nullable else 'no'} | "
                       f"{c.description.replace('|', '/')} |\n")
        out.append("\n")
    return "".join(out).rstrip() + "\n"


BEGIN_MARKER = "<!-- contract tables: generated by `python -m helpers.schema --write data/README.md` -->"
END_MARKER = "<!-- end of generated contract tables -->"


def with_contract_tables(readme_text: str) -> str:
    """``readme_text`` with the part between the markers replaced by :func:`contract_markdown`."""
    head, sep, rest = readme_text.partition(BEGIN_MARKER)
    _, sep2, tail = rest.partition(END_MARKER)
    if not sep or not sep2:
        raise ValueError(f"markers not found; put {BEGIN_MARKER!r} and {END_MARKER!r} around the tables")
    return f"{head}{BEGIN_MARKER}\n\n{contract_markdown()}\n{END_MARKER}{tail}"


def _main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m helpers.schema",
                                     description="Print the data contract as markdown, or update a README.")
    parser.add_argument("--write", metavar="README", help="rewrite the generated tables in this file")
    args = parser.parse_args(argv)
    if args.write:
        path = Path(args.write)
        path.write_text(with_contract_tables(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(contract_markdown(), end="")
    return 0


if __name__ == "__main__":  # python -m helpers.schema [--write data/README.md]
    raise SystemExit(_main())
