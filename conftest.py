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


def _start_kernel_with_retries(start):
    """nbval starts each notebook's kernel once, and a kernel that dies at start-up (a TCP port another process
    took between jupyter_client choosing it and the kernel binding it, under parallel load) fails every cell of
    that notebook. Retry the start-up: a kernel that dies three times in a row is a real failure."""
    import functools

    @functools.wraps(start)
    def start_with_retries(*args, **kwargs):
        for attempt in range(3):
            try:
                return start(*args, **kwargs)
            except RuntimeError:
                if attempt == 2:
                    raise
    return start_with_retries


try:
    import nbval.kernel as _nbval_kernel
except ImportError:  # nbval is only in the test extra
    _nbval_kernel = None
if _nbval_kernel is not None and not hasattr(_nbval_kernel.start_new_kernel, "__wrapped__"):
    _nbval_kernel.start_new_kernel = _start_kernel_with_retries(_nbval_kernel.start_new_kernel)
