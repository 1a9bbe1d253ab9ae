"""engine.duckdb of params/report.yaml: the memory limit, threads and spill folder of every DuckDB connection the
kit opens (the dataset's, the DuckDB engine's), instead of DuckDB's defaults (80% of RAM, all cores, ``.tmp`` in
the working folder)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb
import pytest

from helpers.config import load_report_config
from helpers.data import load_dataset, load_report_dataset
from helpers.engine import EngineSettings, connect
from helpers.engine.duckdb_engine import SPILL_FOLDER, DuckDBEngine, duckdb_connection
from helpers.engine.settings import DuckDBSettings, process_duckdb_settings, use_duckdb_settings
from helpers.errors import ParamsError

ROOT = Path(__file__).resolve().parents[1]
DEMO = Path(os.environ.get("SATISFACTION_KIT_DATA", ROOT / "build" / "test-demo"))


@pytest.fixture(autouse=True)
def _process_defaults():
    """Each test starts and ends with the default DuckDB settings of the process."""
    use_duckdb_settings(None)
    yield
    use_duckdb_settings(None)


def _setting(con, name: str) -> str:
    return con.execute(f"SELECT current_setting('{name}')").fetchone()[0]


def _as_duckdb_shows(name: str, value) -> str:
    """What DuckDB itself reports for ``SET name = value`` (its own rounding of sizes)."""
    ref = duckdb.connect(":memory:")
    try:
        ref.execute(f"SET {name} = '{value}'")
        return _setting(ref, name)
    finally:
        ref.close()


def test_default_connection_has_the_kit_limit_not_duckdbs():
    con = duckdb_connection()
    try:
        assert _setting(con, "memory_limit") == _as_duckdb_shows("memory_limit", "768MB")
        default = duckdb.connect(":memory:")
        assert _setting(default, "memory_limit") != _setting(con, "memory_limit")  # DuckDB's own: 80% of RAM
        assert _setting(default, "temp_directory") == ".tmp"  # why the kit sets a spill folder
        default.close()
        spill = Path(_setting(con, "temp_directory"))
        assert spill.parent == Path(tempfile.gettempdir()) / SPILL_FOLDER
        assert spill.name.startswith(f"{os.getpid()}-")
    finally:
        con.close()


def test_report_yaml_setting_reaches_the_dataset_connection(tmp_path):
    cfg = tmp_path / "report.yaml"
    cfg.write_text("engine:\n  duckdb:\n    memory_limit: 300MB\n    threads: 1\n"
                   f"    temp_directory: {tmp_path / 'spill'}\n", encoding="utf-8")
    ds = load_report_dataset(str(DEMO), cfg, validate=False, emit_warnings=False)
    try:
        assert _setting(ds.con, "memory_limit") == _as_duckdb_shows("memory_limit", "300MB")
        assert int(_setting(ds.con, "threads")) == 1
        assert Path(_setting(ds.con, "temp_directory")).parent == tmp_path / "spill" / SPILL_FOLDER
        # a second connection of the same process (e.g. the changes of a run) gets it too
        again = load_dataset(DEMO, validate=False, emit_warnings=False)
        assert _setting(again.con, "memory_limit") == _as_duckdb_shows("memory_limit", "300MB")
        again.close()
    finally:
        ds.close()
    assert process_duckdb_settings().memory_limit == "300MB"
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    load_report_config(tmp_path / "empty.yaml")
    assert process_duckdb_settings().memory_limit == "768MB"  # another config: its (default) settings


def test_duckdb_engine_over_files_gets_the_engine_settings(tmp_path):
    settings = EngineSettings.model_validate({"duckdb": {"memory_limit": "256MB", "threads": 1}})
    engine = connect(settings, tables={"responses": str(DEMO / "responses.parquet")})
    try:
        assert _setting(engine.con, "memory_limit") == _as_duckdb_shows("memory_limit", "256MB")
        assert int(_setting(engine.con, "threads")) == 1
        assert engine.query("SELECT count(*) AS n FROM responses")["n"].iloc[0] > 0
    finally:
        engine.close()
    # explicit arguments win over the settings
    eng = DuckDBEngine(tables={}, memory_limit="128MB", settings=settings.duckdb)
    assert _setting(eng.con, "memory_limit") == _as_duckdb_shows("memory_limit", "128MB")
    assert int(_setting(eng.con, "threads")) == 1
    eng.close()


def test_past_the_limit_duckdb_spills_into_its_own_folder_and_removes_it(tmp_path):
    use_duckdb_settings(DuckDBSettings(memory_limit="40MB", threads=1, temp_directory=str(tmp_path)))
    con = duckdb_connection()
    spill = Path(_setting(con, "temp_directory"))
    assert spill.parent == tmp_path / SPILL_FOLDER
    # a grouping with more groups than fit in 40MB: DuckDB spills instead of failing or using more memory
    n = con.execute("SELECT count(*), sum(s) FROM (SELECT i % 2000000 AS k, sum(i) AS s FROM range(6000000) t(i) "
                    "GROUP BY 1)").fetchone()
    assert n == (2_000_000, sum(range(6_000_000)))
    assert spill.is_dir()  # it did spill, there
    con.close()
    assert not spill.exists()  # removed with the connection
    assert (tmp_path / SPILL_FOLDER).is_dir()


@pytest.mark.parametrize("bad", ["lots", "1 GBs", "-1GB", ""])
def test_bad_memory_limit_is_a_params_error_naming_the_key(tmp_path, bad):
    cfg = tmp_path / "report.yaml"
    cfg.write_text(f"engine:\n  duckdb:\n    memory_limit: '{bad}'\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="memory") as err:
        load_report_config(cfg)
    assert "engine.duckdb.memory_limit" in str(err.value)


def test_unknown_duckdb_key_is_refused(tmp_path):
    cfg = tmp_path / "report.yaml"
    cfg.write_text("engine:\n  duckdb:\n    memory: 1GB\n", encoding="utf-8")
    with pytest.raises(ParamsError, match="unknown key"):
        load_report_config(cfg)


def test_null_memory_limit_keeps_duckdbs_default():
    con = duckdb_connection(DuckDBSettings(memory_limit=None))
    default = duckdb.connect(":memory:")
    try:
        assert _setting(con, "memory_limit") == _setting(default, "memory_limit")
    finally:
        con.close()
        default.close()


def test_spill_folders_of_dead_processes_are_removed(tmp_path):
    """A killed process leaves its spill files (DuckDB removes them only when the connection closes): the next
    process that opens a connection with the same temp_directory removes them; a live process's stay."""
    import subprocess
    import sys

    from helpers.engine import duckdb_engine

    parent = tmp_path / SPILL_FOLDER
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = parent / f"{int(gone.stdout)}-1"
    (dead / "sub").mkdir(parents=True)
    (dead / "duckdb_temp_block-1.block").write_bytes(b"x" * 1000)
    alive = parent / f"{os.getppid()}-3"  # the test runner's parent: alive
    alive.mkdir()
    other = parent / "notes-1"  # not a spill folder
    other.mkdir()
    duckdb_engine._swept.discard(parent)
    con = duckdb_connection(DuckDBSettings(temp_directory=str(tmp_path)))
    con.close()
    assert not dead.exists()
    assert alive.is_dir() and other.is_dir()


def test_every_connection_the_kit_opens_has_the_process_memory_limit(monkeypatch):
    """Issue 14 (10M bench): the voice, KPI row path and selection connections were opened with DuckDB's default
    (80% of the machine per connection)."""
    import pandas as pd

    from helpers import selection, voice
    from helpers.engine.duckdb_engine import duckdb_connection

    reference = duckdb_connection().execute("SELECT current_setting('memory_limit')").fetchone()[0]
    default = __import__("duckdb").connect().execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert reference != default  # the kit's limit differs from DuckDB's default, so the check below can fail
    for con in (voice._connect(), selection.connection_of({"t": pd.DataFrame({"a": [1]})})):
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == reference
