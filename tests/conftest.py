"""Skips are for developers' machines, not for CI.

A test that needs a tool this machine lacks (Chromium, promtool, amtool) skips and says why,
so ``make test`` works anywhere. CI (``.ci/run``) installs those tools and runs with
``CI=true``: there a skip means a test did not run, so it is reported as a failure with the
skip's reason instead of passing quietly. Expected failures (xfail) are left alone.

Hooks and configuration only: the shared fixtures are in tests/support/fixtures.py, registered
here with ``pytest_plugins`` (pytest takes it only from a top-level conftest), and the helpers
tests import are in tests/support/ too, never in a conftest.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

# the helpers' asserts report their values as a test's do (before anything imports them)
pytest.register_assert_rewrite("tests.support")

pytest_plugins = ["tests.support.fixtures"]

UNDER_CI = "skipped under CI=true"


def _ci() -> bool:
    return os.environ.get("CI") == "true"


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """A skip's reason: pytest keeps it as (path, line, "Skipped: why")."""
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if _ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"{UNDER_CI}: {_reason(report)}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A skip (a skipif mark at setup, pytest.skip in the test) fails under CI=true."""
    report = yield
    _fail_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector
                               ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """A module that skips itself (importorskip, allow_module_level) fails under CI=true."""
    report = yield
    _fail_skip(report)
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    """Outside CI, name each skipped test and why (unless ``-rs`` already does)."""
    chars = config.option.reportchars
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped or "s" in chars or "a" in chars.lower():
        return
    terminalreporter.section("skipped (each fails under CI=true; .ci/run installs the tools)")
    for report in skipped:
        if not hasattr(report, "wasxfail"):
            terminalreporter.line(f"{report.nodeid}: {_reason(report)}")
