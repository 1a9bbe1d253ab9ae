"""One loader of config + dataset for every report notebook (the report layer's single entry to the data).

>>> inputs = load_report_inputs(data_source, report_config, as_of=as_of)
>>> inputs.config.outcome, inputs.dataset.responses, inputs.min_responses, inputs.data_label

* ``report_config``: a path to ``report.yaml``; relative paths are taken from the working directory when the file
  exists there, else from the repository root (:func:`helpers.config.repo_root`).
* ``data_source``: a folder of table files, a ``.duckdb`` file or a run's snapshot (``""`` = the config's
  ``data_source``, or ``SATISFACTION_KIT_DATA``); relative paths from the repository root. A run's snapshot is
  read without validating again (it was validated when written), anything else is validated and column-mapped
  (:func:`helpers.data.load_report_dataset`).
* One ``min_responses`` rule for every page: :attr:`ReportInputs.min_responses` is the config's value (default
  30); :func:`driver_min_responses` adds the driver analysis' 10 answers per attribute.

Errors are the kit's (:class:`helpers.errors.ParamsError`, :class:`helpers.errors.DataContractError`), each
naming the file and what is expected; the notebooks turn them into a note at the top of the page.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ReportInputs", "date_parameter_problem", "driver_min_responses", "load_report_inputs",
           "resolve_config_path"]


@dataclass
class ReportInputs:
    """What a report needs before it analyses anything."""

    config: object  # helpers.config.ReportConfig
    config_path: Path
    dataset: object  # helpers.data.Dataset
    snapshot: bool  # the dataset is a run's snapshot (data.duckdb in the run folder)

    @property
    def min_responses(self) -> int:
        """The one ``min_responses`` rule: report.yaml's ``min_responses`` (default 30)."""
        return int(getattr(self.config, "min_responses", 30) or 30)

    @property
    def currency(self) -> str:
        """ISO code of the money in the data (report.yaml ``currency``; "" when the config has none)."""
        return str(getattr(self.config, "currency", "") or "")

    @property
    def data_label(self) -> str:
        """The data's name for readers (the folder or file name, never the machine path)."""
        return data_name(getattr(self.dataset, "origin", "") or getattr(self.dataset, "source", ""))

    @property
    def run_folder(self) -> Path | None:
        """The run folder when the data is a run's snapshot (where shared per-run results are kept)."""
        return Path(self.dataset.source).resolve().parent if self.snapshot else None


def data_name(source: object) -> str:
    """``/srv/exports/acme_2026.duckdb`` -> ``"acme_2026"``; ``.../data/demo`` -> ``"demo"``: the name of a data
    location, without the machine's path (pages must not show paths)."""
    text = str(source or "").rstrip("/\\")
    if not text:
        return ""
    name = Path(text).name
    for suffix in (".duckdb", ".parquet", ".csv"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def resolve_config_path(report_config: str | os.PathLike = "params/report.yaml") -> Path:
    from helpers.config import repo_root

    p = Path(report_config or "params/report.yaml")
    if not p.is_absolute() and not p.exists():
        p = repo_root() / p
    return p


def load_report_inputs(data_source: str | os.PathLike = "", report_config: str | os.PathLike = "params/report.yaml",
                       *, as_of: object = None, emit_warnings: bool = False) -> ReportInputs:
    """Config + dataset for one report (see the module docstring). ``as_of``: cut the data at that date
    (:func:`helpers.data.load_dataset`); None/"" = as the data come (a run's snapshot is cut already)."""
    from helpers.config import load_report_config, repo_root, resolve_data_source
    from helpers.data import is_snapshot, load_report_dataset

    cfg_path = resolve_config_path(report_config)
    cfg = load_report_config(cfg_path)
    source = Path(data_source) if str(data_source or "") else resolve_data_source(cfg)
    if not source.is_absolute():
        source = repo_root() / source
    snapshot = is_snapshot(source)
    dataset = load_report_dataset(str(source), cfg_path, validate=not snapshot, emit_warnings=emit_warnings,
                                  as_of=as_of or None)
    return ReportInputs(config=cfg, config_path=cfg_path, dataset=dataset, snapshot=snapshot)


def date_parameter_problem(**dates: object) -> str | None:
    """The first of the report's date parameters (``name=value``, in the order given; ``""``/None = unset) that
    is not a date, as one sentence for the page ("period_end '2026-13-01' is not an ISO date (YYYY-MM-DD)"), or
    None when every one reads as a date (:class:`pandas.Timestamp`). The drivers and voice pages check their
    ``as_of``, ``period_end`` and ``period_start`` with it before loading anything."""
    import pandas as pd  # noqa: PLC0415

    from helpers.formatting import shorten  # noqa: PLC0415

    for name, value in dates.items():
        if value is None or (isinstance(value, str) and not value):
            continue
        try:
            pd.Timestamp(value)
        except (ValueError, TypeError):
            return f"{name} {shorten(value)} is not an ISO date (YYYY-MM-DD)"
    return None


def driver_min_responses(min_responses: int, n_drivers: int) -> int:
    """Fewest usable responses for a driver analysis: ``min_responses`` and at least 10 per attribute."""
    return max(int(min_responses), 10 * int(n_drivers))
