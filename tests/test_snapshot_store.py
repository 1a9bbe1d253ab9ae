"""The run store (issue 14): a source that cannot be referenced in place (a CSV folder, export profiles) has its
validated tables stored once per data in ``<out>/.data/<key>/<table>.parquet``; every run's ``data.duckdb``
references those files like a Parquet source's (no copy per run), a second run on the same data reuses the entry
without parsing the CSV files again, ``--keep`` removes entries no kept run uses, and a reproduction refuses a
stored file that changed.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import helpers.data as data_module
from helpers.config import ReportConfig
from helpers.data import RUN_STORE, load_dataset, read_store_entry, snapshot_meta, store_entries
from helpers.reports import ReportRunError
from helpers.reports import runner
from helpers.reports.__main__ import main as cli_main
from reports_support import FIXTURE_NOTEBOOKS, snapshot_base_tables, write_params

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SET = ROOT / "params" / "sources" / "samples.yaml"
TABLES = ("customers", "responses", "tickets", "org")


def _load(source, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(source, **kw)


@pytest.fixture(scope="module")
def csv_source(tmp_path_factory, demo_dir) -> Path:
    """The demo's tables as CSV files (written by DuckDB's COPY)."""
    folder = tmp_path_factory.mktemp("csv_demo")
    con = duckdb.connect()
    for t in TABLES:
        con.execute(f"COPY (SELECT * FROM read_parquet('{demo_dir / (t + '.parquet')}')) TO '{folder / (t + '.csv')}' "
                    "(HEADER)")
    con.close()
    return folder


@pytest.fixture
def csv_data(csv_source, tmp_path) -> Path:
    """A private copy of the CSV folder (tests change its files)."""
    return Path(shutil.copytree(csv_source, tmp_path / "csv"))


def _run(tmp_path: Path, data: Path, out: Path, run_id: str):
    params = tmp_path / "params"
    if not params.exists():
        write_params(tmp_path, {"sales": "Sales"})
    opts = runner.RunOptions(params=params, data=str(data), out=out, notebooks=FIXTURE_NOTEBOOKS, workers=1,
                             company_reports=False, progress=False, run_id=run_id)
    result = runner.run_reports(opts, echo=lambda m: None)
    assert result.exit_code == 0, result.failures
    return result


_base_tables = snapshot_base_tables


def _stored_key(result) -> str:
    keys = {Path(ref["path"]).parent.name for ref in result.manifest["data"]["references"].values()}
    assert len(keys) == 1
    return keys.pop()


@pytest.mark.slow
def test_csv_runs_share_one_store_entry_and_keep_removes_the_orphan(tmp_path, csv_data, monkeypatch):
    out = tmp_path / "reports"
    store = out / RUN_STORE
    first = _run(tmp_path, csv_data, out, "r1")
    data = first.manifest["data"]
    assert data["storage"] == "reference"
    [key] = store_entries(store)
    assert set(data["references"]) == set(TABLES)
    for table, ref in data["references"].items():
        stored = store / key / f"{table}.parquet"
        assert Path(ref["path"]) == stored and ref["size"] == stored.stat().st_size
    assert _base_tables(first.run_dir / "data.duckdb") == ["_kit_meta"]  # views only: no copy in the run
    assert snapshot_meta(first.run_dir / "data.duckdb")["store"] == key
    stamps = {p.name: p.stat().st_mtime_ns for p in (store / key).iterdir()}

    # the same data again: the entry is reused, the CSV files are not parsed again, nothing is written
    parsed = []
    open_folder = data_module._open_folder
    monkeypatch.setattr(data_module, "_open_folder", lambda *a, **k: parsed.append(a) or open_folder(*a, **k))
    second = _run(tmp_path, csv_data, out, "r2")
    assert parsed == []
    assert store_entries(store) == [key]
    assert {p.name: p.stat().st_mtime_ns for p in (store / key).iterdir()} == stamps
    assert second.manifest["data"]["references"] == data["references"]
    assert second.manifest["data"]["fingerprint"] == data["fingerprint"]
    assert second.manifest["data"]["warnings"] == data["warnings"]
    assert _base_tables(second.run_dir / "data.duckdb") == ["_kit_meta"]
    monkeypatch.undo()

    # changed data: a new entry; --keep 1 then removes the runs and the entry only they used
    lines = (csv_data / "responses.csv").read_text().splitlines(keepends=True)
    (csv_data / "responses.csv").write_text("".join(lines[:-1]))
    third = _run(tmp_path, csv_data, out, "r3")
    new_key = _stored_key(third)
    assert new_key != key and sorted(store_entries(store)) == sorted([key, new_key])
    assert third.manifest["data"]["fingerprint"] != data["fingerprint"]
    assert sorted(runner.prune_runs(out, 1, protect="r3")) == ["r1", "r2"]
    assert store_entries(store) == [new_key]
    snap = _load(third.run_dir / "data.duckdb", validate=False)
    try:
        assert snap.storage == "reference" and snap.count("responses") == second.manifest["data"]["rows"]["responses"] - 1
    finally:
        snap.close()


@pytest.mark.slow
def test_reproduce_refuses_a_tampered_store_file_and_the_next_run_replaces_it(tmp_path, csv_data, capsys):
    out = tmp_path / "reports"
    first = _run(tmp_path, csv_data, out, "r1")
    runner.check_referenced_data(first.run_dir, first.manifest)  # intact: reproducible
    key = _stored_key(first)
    stored = out / RUN_STORE / key / "responses.parquet"
    st = stored.stat()
    raw = bytearray(stored.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size; the modification time put back: only the bytes tell
    stored.write_bytes(bytes(raw))
    os.utime(stored, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ReportRunError, match=r"run store, entry " + key + r".*responses\.parquet changed "
                                             r"\(same size, other content"):
        runner.check_referenced_data(first.run_dir, first.manifest)
    before = sorted(p.name for p in out.iterdir())
    assert cli_main(["reproduce", str(first.run_dir)]) == 2
    err = capsys.readouterr().err
    assert "cannot reproduce" in err and "responses.parquet changed" in err and "run store" in err
    assert "start a new run on the source" in err
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written
    # a new run on the same data does not trust the damaged entry: it stores the tables again
    assert read_store_entry(out / RUN_STORE, key) is None
    second = _run(tmp_path, csv_data, out, "r2")
    assert _stored_key(second) == key and read_store_entry(out / RUN_STORE, key) is not None
    assert second.manifest["data"]["rows"] == first.manifest["data"]["rows"]


@pytest.mark.slow
def test_report_numbers_equal_the_copy_path(tmp_path, csv_data, monkeypatch):
    """The department page's summary (CSAT with its interval and n, objective status) from the stored data is
    the one the old copy-into-every-run path gave."""
    stored = _run(tmp_path, csv_data, tmp_path / "stored", "s1")
    snapshot = data_module.Dataset.snapshot
    monkeypatch.setattr(data_module.Dataset, "snapshot",
                        lambda self, path, by_reference=False, store=None: snapshot(self, path,
                                                                                    by_reference=by_reference))
    copied = _run(tmp_path, csv_data, tmp_path / "copied", "c1")
    assert copied.manifest["data"]["storage"] == "copy" and stored.manifest["data"]["storage"] == "reference"
    assert sorted(_base_tables(copied.run_dir / "data.duckdb")) == sorted(["_kit_meta", *TABLES])
    summaries = []
    for result in (stored, copied):
        summary = json.loads((result.run_dir / "summaries" / "department_sales.summary.json").read_text())
        summaries.append({k: summary[k] for k in ("kpis", "objectives", "status_counts", "headline", "warnings")})
    assert summaries[0]["kpis"][0]["n"] > 0
    assert summaries[0] == summaries[1]
    for key in ("fingerprint", "rows", "warnings", "first_date", "last_date", "departments"):
        assert stored.manifest["data"][key] == copied.manifest["data"][key]


def test_export_profile_run_stores_once_and_reads_like_a_copy(tmp_path):
    out = tmp_path / "reports"
    first = runner.prepare_data(str(SAMPLE_SET), ReportConfig(), out / "r1")
    assert first.storage == "reference"
    [key] = store_entries(out / RUN_STORE)
    assert {Path(r["path"]).parent for r in first.references.values()} == {out / RUN_STORE / key}
    second = runner.prepare_data(str(SAMPLE_SET), ReportConfig(), out / "r2")
    assert store_entries(out / RUN_STORE) == [key] and second.references == first.references
    assert second.fingerprint == first.fingerprint and second.warnings == first.warnings
    assert _base_tables(Path(second.snapshot)) == ["_kit_meta"]
    # the same tables, warnings and cut as a copy of the validated data
    ds = _load(SAMPLE_SET, as_of=first.as_of)
    copy = ds.snapshot(tmp_path / "copy.duckdb")
    ds.close()
    ref, cop = _load(second.snapshot, validate=False), _load(copy, validate=False)
    try:
        assert ref.storage == "reference" and cop.storage == "copy" and ref.tables == cop.tables
        for t in ref.tables:
            pd.testing.assert_frame_equal(ref.frame(t), cop.frame(t))
        assert ref.excluded == cop.excluded and ref.dimensions == cop.dimensions
    finally:
        ref.close()
        cop.close()


def test_a_stored_csv_load_is_the_parsed_one(csv_data, tmp_path):
    """load_dataset(store=) reads an intact entry instead of the CSV files: same tables, warnings, problems,
    cut; a changed CSV file (another fingerprint) or another column mapping is parsed, not read from the store."""
    store = tmp_path / RUN_STORE
    parsed = _load(csv_data, as_of="2025-03-31")
    assert parsed.excluded and parsed.warnings  # the cut and the soft warnings must have something to compare
    parsed.snapshot(tmp_path / "run" / "data.duckdb", by_reference=True, store=store)
    again = _load(csv_data, as_of="2025-03-31", store=store)
    try:
        assert again.store_key == store_entries(store)[0]
        assert again.warnings == parsed.warnings and again.excluded == parsed.excluded
        assert [p.to_dict() for p in again.problems] == [p.to_dict() for p in parsed.problems]
        assert again.fingerprint == parsed.fingerprint and again.absent_columns == parsed.absent_columns
        assert again.files == parsed.files and again.cutoff == parsed.cutoff
        for t in parsed.tables:
            pd.testing.assert_frame_equal(again.frame(t), parsed.frame(t))
        # another as-of date on the same entry: the cut is made again
        later = _load(csv_data, store=store)
        assert later.store_key == again.store_key and later.count("responses") > again.count("responses")
        later.close()
    finally:
        again.close()
        parsed.close()
    mapped = _load(csv_data, store=store, column_mapping={"org": {"team": "team"}})
    assert mapped.store_key == ""  # another mapping: another key, parsed from the CSV files
    mapped.close()


def test_a_relative_parquet_folder_is_referenced_not_copied(demo_dir, tmp_path, monkeypatch):
    folder = Path(shutil.copytree(demo_dir, tmp_path / "demo"))
    monkeypatch.chdir(tmp_path)
    ds = _load("demo")
    snap = ds.snapshot(tmp_path / "rel.duckdb", by_reference=True)
    n = ds.count("responses")
    ds.close()
    meta = snapshot_meta(snap)
    assert meta["storage"] == "reference" and meta["store"] == ""
    assert json.loads(meta["references"])["responses"]["path"] == str(folder / "responses.parquet")
    monkeypatch.chdir(ROOT)  # the reader's folder does not matter
    again = _load(snap, validate=False)
    try:
        assert again.storage == "reference" and again.count("responses") == n
    finally:
        again.close()


def test_prune_keeps_entries_a_run_under_way_or_an_unreadable_run_may_use(tmp_path, csv_data):
    out = tmp_path / "reports"
    under_way = out / ".tmp-r9"
    info = runner.prepare_data(str(csv_data), ReportConfig(), under_way)
    [key] = store_entries(out / RUN_STORE)
    assert runner.prune_runs(out, 1, protect="") == []
    assert store_entries(out / RUN_STORE) == [key]  # the run under way reads it
    broken = out / "r0"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    shutil.rmtree(under_way)
    (out / RUN_STORE / ".tmp-abc-1").mkdir()  # a write a killed run left
    runner.prune_runs(out, 1, protect="")
    assert store_entries(out / RUN_STORE) == [key]  # r0's data cannot be told: nothing removed
    shutil.rmtree(broken)
    runner.prune_runs(out, 1, protect="")
    assert store_entries(out / RUN_STORE) == [] and not (out / RUN_STORE / ".tmp-abc-1").exists()
    assert info.storage == "reference"


@pytest.mark.slow
def test_a_reproduction_into_another_folder_keeps_its_data_when_the_original_folder_prunes(tmp_path, csv_data,
                                                                                          capsys):
    """Regression: a reproduction into another output folder copied the run's snapshot, which read the original
    folder's run store; once that folder's --keep pruned the entry (no run of *its* used it any more), the
    reproduction's data were gone. Now the reproduction's folder gets the entry (hard links) and its snapshot
    reads it there."""
    out, elsewhere = tmp_path / "reports", tmp_path / "elsewhere"
    first = _run(tmp_path, csv_data, out, "r1")
    key = _stored_key(first)
    assert cli_main(["reproduce", str(first.run_dir), "--out", str(elsewhere)]) in (0, 1)
    assert f"run store entry {key}" in capsys.readouterr().err
    repro = next(p for p in elsewhere.iterdir() if p.name.startswith("r1-repro-"))
    meta = snapshot_meta(repro / "data.duckdb")
    assert meta["store"] == key
    assert {Path(r["path"]).parent for r in json.loads(meta["references"]).values()} == {elsewhere / RUN_STORE / key}
    assert read_store_entry(elsewhere / RUN_STORE, key) is not None  # a complete, intact entry of its own
    # the original folder prunes its run (and with it the entry): the reproduction still has its data
    shutil.rmtree(first.run_dir)
    runner._prune_store(out)
    assert store_entries(out / RUN_STORE) == []
    manifest = json.loads((repro / "manifest.json").read_text())
    runner.check_referenced_data(repro, manifest)  # nothing changed or gone
    snap = _load(repro / "data.duckdb", validate=False)
    try:
        assert snap.storage == "reference"
        assert snap.count("responses") == first.manifest["data"]["rows"]["responses"]
    finally:
        snap.close()
    assert runner._prune_store(elsewhere) == []  # the new folder keeps the entry its reproduction reads
    assert store_entries(elsewhere / RUN_STORE) == [key]
