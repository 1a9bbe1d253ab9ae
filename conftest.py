"""Repository-wide pytest hooks (unit-test fixtures live in tests/conftest.py).

``make test`` sets ``SATISFACTION_KIT_DATA`` so the notebooks under nbval read the small seeded test data;
unit tests must not inherit that override (they test the configured defaults), so it is removed for them.
(``make test`` also uses ``--dist loadfile``: nbval's cells of one notebook must run in order in one kernel,
so one file's items go to one worker.)
"""
import pytest

from helpers.config import DATA_ENV


@pytest.fixture(autouse=True)
def _no_data_override_in_unit_tests(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
