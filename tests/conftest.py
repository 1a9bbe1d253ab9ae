"""Shared pytest fixtures.

``chromium``: one headless Chromium (:class:`browser_check.Chromium`) per test session for the browser tests;
skips them when Chromium is not installed.

``demo_dir``: the demo data the engine tests read: ``SATISFACTION_KIT_DATA`` when it holds the tables, else
``small_demo``.

``small_demo``: the Path of a small demo data set (2,000 customers, seed 7) generated once per test
session by :func:`helpers.demo.generate_demo` into a temporary folder. Treat it as read-only.
"""
from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium for the browser tests (skipped when not installed: ``make browser``)."""
    from browser_check import Chromium, find_chromium

    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium is not installed (run `make browser`: apt-get install chromium)")
    with Chromium(binary) as browser:
        yield browser


@pytest.fixture(scope="session")
def demo_dir(request) -> Path:
    """``SATISFACTION_KIT_DATA`` when it holds the demo tables (a developer's generated demo), else ``small_demo``."""
    env = os.environ.get("SATISFACTION_KIT_DATA")
    if env and (Path(env) / "customers.parquet").exists():
        return Path(env)
    return request.getfixturevalue("small_demo")
