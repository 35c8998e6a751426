"""`featurestore services up|down|status`: the real local services (Redis, HBase, HDFS, Kafka, and
on request a Flink session cluster)."""

from __future__ import annotations

import sys

import click

from featurestore.services.manager import OPTIONAL_SERVICE_NAMES, SERVICE_NAMES

SERVICE_CHOICE = click.Choice([*SERVICE_NAMES, *OPTIONAL_SERVICE_NAMES])


@click.group()
def services() -> None:
    """Run the real services locally on 127.0.0.1 (state under .services/, downloads under .cache/)."""


@services.command()
@click.argument("names", nargs=-1, type=SERVICE_CHOICE)
@click.option("--timeout", type=float, default=None, help="Seconds each service may take to become healthy.")
def up(names: tuple[str, ...], timeout: float | None) -> None:
    """Install on first use and start NAMES (default: all but the optional flink-cluster and
    hbase-cluster); healthy ones are left alone."""
    from featurestore.services import manager

    report = manager.up(list(names) or None, timeout=timeout)
    click.echo(manager.format_report(report))


@services.command()
def down() -> None:
    """Stop every service process started from this checkout (SIGTERM, then SIGKILL)."""
    from featurestore.services import manager

    stopped = manager.down()
    click.echo("\n".join(f"stopped {p}" for p in stopped) if stopped else "nothing of ours was running")


@services.command()
@click.argument("names", nargs=-1, type=SERVICE_CHOICE)
def status(names: tuple[str, ...]) -> None:
    """Check NAMES (default: all) with a real protocol round trip; exit 1 if any is unhealthy."""
    from featurestore.services import manager

    statuses = manager.status(list(names) or None)
    click.echo(manager.format_status(statuses))
    if not all(s.healthy for s in statuses):
        sys.exit(1)
