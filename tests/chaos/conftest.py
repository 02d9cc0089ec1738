"""Prints every chaos scenario's checker counts at the end of the run, passed or failed."""

from __future__ import annotations

import pytest

from tests.chaos.checker import REPORTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.write_sep("=", "chaos checker: results against the reference")
        for report in REPORTS:
            terminalreporter.write_line(report.render())
