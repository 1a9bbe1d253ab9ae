"""Customer-satisfaction analysis kit.

Modules, one concept each (data flows one way, see ../README.md):

- ``helpers.schema``     the data contract (four tables, column by column)
- ``helpers.config``     run-wide settings from ``params/report.yaml`` (data location, column mapping)
- ``helpers.data``       loading (CSV, Parquet, DuckDB) and validation at the boundary
- ``helpers.demo``       demo company data with known ground truth
- ``helpers.kpis``       KPIs with intervals, period-over-period tests, KPI series in DuckDB
- ``helpers.drivers``    relative importance of satisfaction drivers (Shapley/LMG, Johnson weights)
- ``helpers.retention``  cohorts, survival, Cox, shifted-beta-geometric, retention forecasts
- ``helpers.objectives`` SMART objectives from params, evaluation and status
- ``helpers.charts``     one function per chart, each drawing on a given matplotlib axis
- ``helpers.reports``    the report runner (papermill, HTML, index, manifest)
"""
from helpers.errors import DataContractError, KitError, ObjectiveError, ParamsError

__version__ = "0.1.0"
__all__ = ["DataContractError", "KitError", "ObjectiveError", "ParamsError", "__version__"]
