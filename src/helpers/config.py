"""Run-wide settings from ``params/report.yaml``: where the data is, how its columns map onto the
data contract (``data/README.md``), and the analysis defaults shared by every report.

>>> cfg = load_report_config()              # params/report.yaml of the repo
>>> resolve_data_source(cfg)                # Path of the data folder or .duckdb file
>>> uses_demo_data()                        # True when data_source is "demo"

Every problem (malformed YAML, wrong type, unknown key, a column mapping that names an unknown table or
contract column, a data path that leaves the repository) raises :class:`helpers.errors.ParamsError` naming
the file and the field.

Paths: ``data_source: demo`` means ``<repo>/data/demo``; a relative path is taken relative to the
repository root and must stay inside it (write an absolute path to use data elsewhere, so that data outside
the repository is always an explicit choice); URLs are refused (the kit reads local files only).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from helpers.engine.settings import EngineSettings, use_duckdb_settings
from helpers.errors import ParamsError
from helpers.formatting import shorten
from helpers.params_yaml import load_params_yaml
from helpers.schema import ATTRIBUTE_PREFIX, TABLES

DEMO = "demo"
DEFAULT_CONFIG = "params/report.yaml"
DATA_ENV = "SATISFACTION_KIT_DATA"
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def repo_root() -> Path:
    """The repository root: the folder holding ``pyproject.toml`` above this package (src layout).

    ``SATISFACTION_KIT_ROOT`` overrides it (e.g. an installed, non-editable kit run from a project folder).
    """
    env = os.environ.get("SATISFACTION_KIT_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "helpers").is_dir():
            return parent
    return Path.cwd().resolve()


def is_contract_column(table: str, column: str) -> bool:
    """Whether ``column`` is a column of the contract table ``table`` (``attr_*`` counts for responses)."""
    spec = TABLES[table]
    return column in spec.column_names or bool(
        spec.extra_prefix and column.startswith(spec.extra_prefix) and len(column) > len(spec.extra_prefix))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetentionConfig(_Strict):
    """Which customer table the retention analysis runs on, and how to read duration and churn from it.

    Either ``duration_column`` (time as a customer, in ``duration_unit``; e.g. a telecom export's tenure in
    months) or ``start_column`` (+ ``end_column``: churned customers have an end date) must be given.
    ``event_column`` is the churn flag; its values listed in ``churn_values`` mean churned (compared as
    lower-case text, so ``Yes``/``yes``/``TRUE``/``1`` all match). Without an event column a customer has
    churned when ``end_column`` is set.
    """

    file: str | None = None  # None: the dataset's customers table (after the column mapping)
    id_column: str = "customer_id"
    start_column: str | None = "signup_date"
    end_column: str | None = "end_date"
    duration_column: str | None = None
    duration_unit: Literal["day", "week", "month", "year"] = "month"
    event_column: str | None = None
    churn_values: list[str] = Field(default_factory=lambda: ["yes", "true", "1", "churned"])
    segment_column: str | None = "segment"

    @field_validator("churn_values", mode="before")
    @classmethod
    def _texts(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            out: list[str] = []
            for x in v:
                # YAML 1.1 reads an unquoted Yes/No/On as a boolean: keep the words it may have been
                texts = (["true", "yes"] if x else ["false", "no"]) if isinstance(x, bool) else [str(x).lower()]
                out += [t for t in texts if t not in out]
            return out
        return v

    @model_validator(mode="after")
    def _duration_or_dates(self) -> RetentionConfig:
        if not self.duration_column and not self.start_column:
            raise ValueError("give duration_column (tenure) or start_column (+ end_column)")
        if not self.event_column and not self.end_column:
            raise ValueError("give event_column (churn flag) or end_column (end date = churned)")
        if self.duration_column and not self.event_column and not self.start_column:
            raise ValueError("a duration_column needs an event_column saying who churned")
        if not self.churn_values:
            raise ValueError("churn_values must list at least one value meaning 'churned'")
        return self


class ReportConfig(_Strict):
    """The contents of ``params/report.yaml`` (see the comments in that file)."""

    company: str = "Example Company"
    data_source: str = DEMO
    column_mapping: dict[str, dict[str, str]] = Field(default_factory=dict)
    min_responses: int = Field(30, ge=1)
    currency: str = "EUR"  # ISO 4217 code of the money in the data (monthly_revenue, CLV on the pages)
    outcome: str = "csat"
    drivers: list[str] = Field(default_factory=list)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    engine: EngineSettings = Field(default_factory=EngineSettings)  # where aggregates are computed (DuckDB/Spark)
    show_customer_ids: bool = False  # department pages may list customer/response ids (follow-up list); never company pages

    @field_validator("data_source")
    @classmethod
    def _source(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty: write 'demo' or a path to a data folder or .duckdb file")
        if _URL.match(v.strip()):
            raise ValueError("URLs are not read; download the files and give a local path")
        if "\x00" in v:
            raise ValueError("contains a NUL character")
        return v.strip()

    @field_validator("column_mapping")
    @classmethod
    def _mapping(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for table, columns in v.items():
            if table not in TABLES:
                raise ValueError(f"unknown table {shorten(table)}; the tables are {', '.join(TABLES)}")
            targets: dict[str, str] = {}
            for theirs, ours in columns.items():
                if not is_contract_column(table, ours):
                    raise ValueError(
                        f"{table}: {shorten(theirs)} is mapped to {shorten(ours)}, which is not a column of the {table} "
                        f"contract; the columns are {', '.join(TABLES[table].column_names)}"
                        + (f" (and {ATTRIBUTE_PREFIX}* ratings)" if TABLES[table].extra_prefix else ""))
                if ours in targets:
                    raise ValueError(f"{table}: {shorten(targets[ours])} and {shorten(theirs)} are both mapped to {shorten(ours)}")
                targets[ours] = theirs
        return v

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        code = v.strip().upper()
        if not (len(code) == 3 and code.isascii() and code.isalpha()):
            raise ValueError(f"{shorten(v)} is not an ISO 4217 currency code; write three letters such as EUR, USD, GBP")
        return code

    @field_validator("outcome")
    @classmethod
    def _outcome(cls, v: str) -> str:
        if v not in ("csat", "nps", "ces") and not is_contract_column("responses", v):
            raise ValueError(f"{shorten(v)} is not a rating column; use csat, nps, ces or an {ATTRIBUTE_PREFIX}* column")
        return v

    @field_validator("drivers")
    @classmethod
    def _drivers(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if not d.startswith(ATTRIBUTE_PREFIX)]
        if bad:
            raise ValueError(f"drivers must be {ATTRIBUTE_PREFIX}* columns of responses, got {shorten(bad)}")
        if len(set(v)) != len(v):
            raise ValueError("drivers lists a column twice")
        return v


def _field_name(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) if loc else ""


def load_report_config(path: str | os.PathLike[str] = DEFAULT_CONFIG) -> ReportConfig:
    """Read and validate ``params/report.yaml`` (relative paths are taken from the repository root).

    A missing file raises :class:`ParamsError`; an empty file gives the defaults.
    """
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = repo_root() / p
    if not p.is_file():
        raise ParamsError(path, "file not found (copy params/report.yaml from the kit and edit it)")
    raw = load_params_yaml(p)  # bounded size, no anchors/aliases; ParamsError naming file and line
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(p, f"expected a mapping of settings (key: value), got {type(raw).__name__}")
    try:
        cfg = ReportConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = _field_name(err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = sorted(_allowed_keys(err["loc"]))
            msg = f"unknown key; the known keys here are {', '.join(allowed)}"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict):
                msg += f" (got {shorten(err['input'])})"
        more = len(exc.errors()) - 1
        if more:
            msg += f" (+{more} more problem{'s' if more > 1 else ''})"
        raise ParamsError(p, msg, field=field or None) from None
    _remember_path(cfg, p)
    use_duckdb_settings(cfg.engine.duckdb)  # this process's DuckDB connections: memory limit, threads, spill folder
    return cfg


_CONFIG_PATHS: dict[int, Path] = {}


def _remember_path(cfg: ReportConfig, path: Path) -> None:
    import weakref

    key = id(cfg)
    _CONFIG_PATHS[key] = Path(path).resolve()
    weakref.finalize(cfg, _CONFIG_PATHS.pop, key, None)


def config_path(cfg: object) -> Path | None:
    """The file a :class:`ReportConfig` was read from by :func:`load_report_config` (None for one built in
    code): its folder is the params folder (``departments/`` next to it), e.g. for the params checks of
    :mod:`helpers.params_check`."""
    return _CONFIG_PATHS.get(id(cfg)) if isinstance(cfg, ReportConfig) else None


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = ReportConfig
    for part in loc[:-1]:
        info = model.model_fields.get(str(part))
        ann = getattr(info, "annotation", None)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
    return list(model.model_fields)


def _safe_path(value: str, *, path: object, field: str) -> Path:
    """Resolve a path from params: relative to the repo root and inside it; absolute paths as written."""
    if _URL.match(value):
        raise ParamsError(path, "URLs are not read; give a local path", field=field)
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return Path(os.path.normpath(p))
    root = repo_root()
    full = Path(os.path.normpath(root / p))
    if full != root and root not in full.parents:
        raise ParamsError(path, f"relative path {shorten(value)} leaves the repository ({root}); write an absolute "
                                "path to use data outside it", field=field)
    return full


def resolve_data_source(cfg: ReportConfig | str | os.PathLike[str] | None = None) -> Path:
    """The data location a config points at: ``"demo"`` -> ``<repo>/data/demo``; relative paths from the
    repository root (they must stay inside it); absolute paths as given. The path need not exist yet.

    ``cfg`` is a :class:`ReportConfig`, a path of a report.yaml, or None (``params/report.yaml``).
    The environment variable ``SATISFACTION_KIT_DATA`` (a folder or .duckdb file), when set, wins over the
    config: ``make test`` points every notebook at its small seeded test data this way.
    """
    override = os.environ.get(DATA_ENV)
    if override:
        return Path(override).expanduser().resolve()
    if cfg is None or not isinstance(cfg, ReportConfig):
        path = cfg if cfg is not None else DEFAULT_CONFIG
        cfg = load_report_config(path)
    else:
        path = DEFAULT_CONFIG
    if cfg.data_source == DEMO:
        return repo_root() / "data" / "demo"
    return _safe_path(cfg.data_source, path=path, field="data_source")


def resolve_retention_file(cfg: ReportConfig, path: object = DEFAULT_CONFIG) -> Path | None:
    """The separate customer file of the retention section (None = the dataset's customers table)."""
    if cfg.retention.file is None:
        return None
    return _safe_path(cfg.retention.file, path=path, field="retention.file")


def uses_demo_data(path: str | os.PathLike[str] = DEFAULT_CONFIG) -> bool:
    """True when the report config's ``data_source`` is ``demo`` (``make reports`` then generates it).

    A missing report.yaml counts as the demo (the defaults); a broken one raises :class:`ParamsError`.
    """
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = repo_root() / p
    if not p.exists():
        return True
    return load_report_config(p).data_source == DEMO
