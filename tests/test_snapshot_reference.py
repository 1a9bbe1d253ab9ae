"""Snapshots by reference (issue 14): a run's ``data.duckdb`` holds views over the source's Parquet files and each
file's immutable reference (path, size, mtime, BLAKE2b), not a copy of the rows; reading it refuses changed files.
"""
from __future__ import annotations

import os
import shutil
import warnings

import duckdb
import pandas as pd
import pytest

from helpers.data import load_dataset, reference_changes, snapshot_meta
from helpers.errors import DataContractError
from reports_support import snapshot_base_tables

AS_OF = "2025-03-31"  # inside the small demo's range: the cut leaves rows out and empties later events


def _load(source, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_dataset(source, **kw)


@pytest.fixture
def demo(small_demo, tmp_path):
    """A private copy of the small demo (these tests change its files)."""
    folder = tmp_path / "demo"
    shutil.copytree(small_demo, folder)
    return folder


_base_tables = snapshot_base_tables


def test_reference_snapshot_holds_no_rows_and_reads_the_same_cut_data(demo, tmp_path):
    ds = _load(demo, as_of=AS_OF)
    assert ds.excluded, "the as-of date must cut something for this test to mean anything"
    ref = ds.snapshot(tmp_path / "run" / "data.duckdb", by_reference=True)
    copy = ds.snapshot(tmp_path / "copy" / "data.duckdb")
    assert _base_tables(ref) == ["_kit_meta"]  # views only: no table copy
    assert sorted(_base_tables(copy)) == sorted(["_kit_meta", *ds.tables])
    assert ref.stat().st_size < 1_000_000 and ref.stat().st_size < copy.stat().st_size
    meta = snapshot_meta(ref)
    assert meta["storage"] == "reference" and snapshot_meta(copy)["storage"] == "copy"
    snap = _load(ref, validate=False)
    try:
        assert snap.storage == "reference" and snap.fingerprint == ds.fingerprint
        assert set(snap.file_references) == set(ds.tables)
        assert snap.file_references["responses"]["path"] == str((demo / "responses.parquet").resolve())
        for t in ds.tables:  # exactly the validated, column-mapped, as-of-cut rows, same dtypes and order
            pd.testing.assert_frame_equal(snap.frame(t), ds.frame(t))
        assert snap.responses["response_date"].max() <= pd.Timestamp(AS_OF)
        assert snap.excluded == ds.excluded and snap.warnings == ds.warnings
        assert snap.cutoff == ds.cutoff and snap.as_of == ds.as_of and snap.origin == str(demo)
    finally:
        snap.close()
        ds.close()


def test_changed_or_missing_source_files_are_refused(demo, tmp_path):
    ds = _load(demo)
    snap = ds.snapshot(tmp_path / "data.duckdb", by_reference=True)
    ds.close()
    os.utime(demo / "org.parquet")  # touched, same bytes: still the validated data
    _load(snap, validate=False).close()
    org = pd.read_parquet(demo / "org.parquet")
    org.iloc[1:].to_parquet(demo / "org.parquet")  # one row fewer
    with pytest.raises(DataContractError, match=r"changed since it was validated.*org\.parquet changed \(size"):
        _load(snap, validate=False)
    (demo / "org.parquet").unlink()
    with pytest.raises(DataContractError, match=r"org\.parquet is gone"):
        _load(snap, validate=False)


def test_reference_changes_compares_content_when_asked(tmp_path):
    f = tmp_path / "t.parquet"
    f.write_bytes(b"abcdef")
    refs = {}
    from helpers.data import _hash_files
    _hash_files({"t": f}, None, refs)
    assert reference_changes(refs) == [] and reference_changes(refs, content=True) == []
    st = f.stat()
    f.write_bytes(b"abcdeX")  # same size; the modification time put back: only the bytes tell
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert reference_changes(refs) == []
    assert "other content" in reference_changes(refs, content=True)[0]


def test_fingerprint_is_unchanged_by_recording_references(demo):
    """The per-file hashes are taken in the same read; the fingerprint (cache keys, manifests) stays the same."""
    import hashlib
    import json
    ds = _load(demo)
    h = hashlib.blake2b(digest_size=16)
    for name in ds.tables:
        p = demo / f"{name}.parquet"
        h.update(f"{name}\0.parquet\0".encode())
        h.update(p.read_bytes())
    h.update(json.dumps({}, sort_keys=True).encode())
    assert ds.fingerprint == h.hexdigest()
    assert ds.file_references["tickets"]["blake2b"] == hashlib.blake2b(
        (demo / "tickets.parquet").read_bytes(), digest_size=16).hexdigest()
    ds.close()


def test_sources_that_cannot_be_referenced_are_copied(demo, tmp_path):
    csv = tmp_path / "csv"
    csv.mkdir()
    for name in ("customers", "responses", "tickets", "org"):
        pd.read_parquet(demo / f"{name}.parquet").to_csv(csv / f"{name}.csv", index=False)
    ds = _load(csv)
    snap = ds.snapshot(tmp_path / "csv.duckdb", by_reference=True)
    assert snapshot_meta(snap)["storage"] == "copy" and "responses" in _base_tables(snap)
    again = _load(snap, validate=False)
    assert again.count("responses") == ds.count("responses")
    # a snapshot of a snapshot is a copy too (its views could not keep their names)
    ref = _load(demo).snapshot(tmp_path / "ref.duckdb", by_reference=True)
    second = _load(ref, validate=False).snapshot(tmp_path / "second.duckdb", by_reference=True)
    assert snapshot_meta(second)["storage"] == "copy"
    assert _load(second, validate=False).origin == str(demo)
    again.close()
    ds.close()


def test_a_source_given_by_a_relative_path_is_referenced_by_its_absolute_path(demo, tmp_path, monkeypatch):
    """Views over a relative path would read whatever the reader's working folder holds: the files are read (and
    referenced) through their absolute path, so the snapshot reads the same files from any folder."""
    monkeypatch.chdir(demo.parent)
    ds = _load(demo.name)
    snap = ds.snapshot(tmp_path / "rel.duckdb", by_reference=True)
    ds.close()
    assert snapshot_meta(snap)["storage"] == "reference"
    monkeypatch.chdir(tmp_path)
    again = _load(snap, validate=False)
    assert again.count("responses") > 0
    again.close()
