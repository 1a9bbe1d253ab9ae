"""Shared pytest fixtures.

``small_demo``: the Path of a small demo data set (2,000 customers, seed 7) generated once per test
session by :func:`helpers.demo.generate_demo` into a temporary folder. Treat it as read-only.
"""
from __future__ import annotations

from pathlib import Path

import pytest

# the runner tests' stand-in notebooks are executed by those tests with their own parameters; nbval (which
# ``make test`` points at every .ipynb under tests/) must not run them bare
collect_ignore_glob = ["fixtures/*"]

SMALL_DEMO_CUSTOMERS = 2_000
SMALL_DEMO_SEED = 7


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> Path:
    """Folder with customers/responses/tickets/org .parquet + ground_truth.json (2,000 customers, seed 7)."""
    from helpers.demo import generate_demo

    out = tmp_path_factory.mktemp("small_demo")
    generate_demo(out, n_customers=SMALL_DEMO_CUSTOMERS, seed=SMALL_DEMO_SEED)
    return out
