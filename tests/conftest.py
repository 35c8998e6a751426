"""Test tiers: `unit` (no servers) and `integration` (the real services).

Tests under tests/integration/ are marked `integration` automatically; the rest `unit`. The
real services are started once per test session, by the `services` fixture, only when an
integration test is collected, and stopped afterwards if this session started them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def services(pytestconfig: pytest.Config) -> Iterator[object]:
    """Start every real service once (idempotent) and stop, afterwards, what this session started.

    Prints, past pytest's capture, how long downloads took and each service took to be healthy.
    Set FEATURESTORE_KEEP_SERVICES=1 to leave them running for the next run.
    """
    from featurestore.services import manager

    report = manager.up()
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            for line in manager.format_report(report).splitlines():
                reporter.write_line(line)
    yield manager
    if os.environ.get("FEATURESTORE_KEEP_SERVICES") != "1":
        manager.down(only_started_by=report)
