"""The `featurestore` command. Each group of commands lives in a module of its own."""

from __future__ import annotations

import sys

import click

from featurestore.errors import FeatureStoreError


class _Main(click.Group):
    """Turns FeatureStoreError into a readable message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except FeatureStoreError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=_Main)
@click.version_option(package_name="featurestore")
def main() -> None:
    """A stream-batch unified feature store."""


def _register() -> None:
    # Command modules are imported here, not at the top, so each stays importable on its own.
    from sdk.cli import backfill, demo, ingest, logs, registry, serve, services
    from sdk.cli.export import export

    main.add_command(services.services)
    main.add_command(registry.plan)
    main.add_command(registry.apply)
    main.add_command(registry.registry_group)
    main.add_command(demo.demo)
    main.add_command(serve.serve)
    main.add_command(ingest.ingest)
    main.add_command(backfill.backfill)
    main.add_command(logs.logs)
    main.add_command(export)


_register()
