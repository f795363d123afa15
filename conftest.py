"""Fixtures shared by every test directory (real NATS, real Postgres, the bus).

Some tests skip themselves on a developer's machine that lacks root or a
peer no one here wrote (wireguard-go, wg, coturn) or a kernel feature. CI
installs all of them (``.ci/run``), so there, with ``CI`` set, a skip is a
failure: nothing is skipped silently where it should have run.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

pytest_plugins = ["zerogate.testing.fixtures"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport() -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where everything must run: {reason}"
    return report
