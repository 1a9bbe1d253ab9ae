"""Report kernels read at most SATISFACTION_KIT_MAX_FRAME_ROWS rows into pandas (a fallback after an engine
query failed), with a clear error above it instead of running out of memory."""
from __future__ import annotations

import os

import pytest

from helpers.data import FRAME_ROW_LIMIT_ENV, load_dataset
from helpers.errors import KitError
from helpers.reports.runner import KERNEL_DEFAULTS, kernel_environment


@pytest.fixture(scope="module")
def dataset(demo_dir):
    return load_dataset(demo_dir)


def test_frame_above_the_limit_is_a_clear_error(dataset, monkeypatch):
    tickets = dataset.con.execute("SELECT count(*) FROM tickets").fetchone()[0]
    billing = dataset.con.execute("SELECT count(*) FROM tickets WHERE department = 'Billing'").fetchone()[0]
    monkeypatch.setenv(FRAME_ROW_LIMIT_ENV, str(tickets - 1))
    with pytest.raises(KitError, match=rf"tickets: {tickets:,} rows are more than this process reads into memory"):
        dataset.frame("tickets")
    assert len(dataset.frame("tickets", department="Billing")) == billing  # under the limit: read
    monkeypatch.setenv(FRAME_ROW_LIMIT_ENV, str(billing - 1))
    with pytest.raises(KitError, match=rf"tickets of 'Billing': {billing:,} rows"):
        dataset.frame("tickets", department="Billing")
    for unlimited in ("0", "", "many"):
        monkeypatch.setenv(FRAME_ROW_LIMIT_ENV, unlimited)
        assert len(dataset.frame("tickets")) == tickets


def test_report_kernels_get_the_limit_unless_the_operator_set_one(monkeypatch):
    monkeypatch.delenv(FRAME_ROW_LIMIT_ENV, raising=False)
    with kernel_environment():
        assert os.environ[FRAME_ROW_LIMIT_ENV] == KERNEL_DEFAULTS[FRAME_ROW_LIMIT_ENV]
    assert FRAME_ROW_LIMIT_ENV not in os.environ
    monkeypatch.setenv(FRAME_ROW_LIMIT_ENV, "123")
    with kernel_environment():
        assert os.environ[FRAME_ROW_LIMIT_ENV] == "123"
    assert os.environ[FRAME_ROW_LIMIT_ENV] == "123"
