"""A snapshot remembers where its data came from, so reports never show a run folder's temporary path."""
from helpers.data import load_dataset


def test_snapshot_keeps_the_original_source(small_demo, tmp_path):
    ds = load_dataset(small_demo)
    assert ds.origin == ds.source == str(small_demo)
    first = ds.snapshot(tmp_path / ".tmp-run" / "data.duckdb")
    again = load_dataset(first, validate=False)
    assert again.source == str(first)
    assert again.origin == str(small_demo)
    assert again.fingerprint == ds.fingerprint
    second = again.snapshot(tmp_path / "copy.duckdb")
    assert load_dataset(second, validate=False).origin == str(small_demo)
