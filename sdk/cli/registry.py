"""`featurestore plan`, `featurestore apply` and `featurestore registry log|show|rollback`.

Exported as module-level click objects (``plan``, ``apply``, ``registry_group``) for
sdk/cli/__init__.py to register. Errors are FeatureStoreErrors; the main group prints them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from registry import Plan, Registry, Version, dump_yaml

_repo_option = click.option(
    "--repo", default=".", show_default=True, type=click.Path(file_okay=False, path_type=Path),
    help="the feature repo directory (holds featurestore.yaml)",
)
_profile_option = click.option("--profile", default=None, help="profile of featurestore.yaml (default: its own)")
_STYLE = {"added": "green", "changed": "yellow", "removed": "red"}


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _print_plan(console: Console, result: Plan) -> None:
    if result.unchanged:
        console.print(f"No changes. Project {result.project!r} is at version {result.current_version}.")
        return
    table = Table(title=f"Plan for project {result.project!r} (current version: {result.current_version or 'none'})")
    table.add_column("action")
    table.add_column("kind")
    table.add_column("name")
    table.add_column("what it means for stored data")
    for change in result.changes:
        style = _STYLE[change.action]
        table.add_row(f"[{style}]{change.action}[/]", change.kind, change.name, "\n".join(change.details) or "-")
    console.print(table)
    console.print(result.summary())
    if result.needs_backfill:
        console.print(f"[yellow]needs backfill:[/] {', '.join(result.needs_backfill)}")


@click.command("plan")
@_repo_option
@_profile_option
def plan(repo: Path, profile: str | None) -> None:
    """Validate the repo and show what apply would change."""
    _print_plan(_console(), Registry.for_repo(repo, profile=profile).plan(repo))


def _print_version(console: Console, version: Version, verb: str, *, changes: bool = True) -> None:
    if not version.created:
        console.print(f"No changes. Version {version.id} ({version.content_hash[:12]}) is current; nothing written.")
        return
    console.print(f"[green]{verb} version {version.id}[/] ({version.content_hash[:12]}, {_when(version.created_ms)})")
    for line in version.changes if changes else ():
        console.print(f"  {line}")


@click.command("apply")
@_repo_option
@_profile_option
def apply(repo: Path, profile: str | None) -> None:
    """Validate the repo and record it as a new registry version (nothing is written if invalid)."""
    console = _console()
    registry = Registry.for_repo(repo, profile=profile)
    result = registry.plan(repo)
    if not result.unchanged:
        _print_plan(console, result)
    _print_version(console, registry.apply(repo), "created", changes=False)


@click.group("registry")
def registry_group() -> None:
    """Registry versions: log, show, rollback."""


@registry_group.command("log")
@_repo_option
@_profile_option
def log(repo: Path, profile: str | None) -> None:
    """List the versions of the registry, oldest first."""
    console = _console()
    registry = Registry.for_repo(repo, profile=profile)
    versions = registry.log()
    if not versions:
        console.print(f"Project {registry.project!r} has no registry version yet: run apply.")
        return
    table = Table(title=f"Registry of project {registry.project!r}")
    for column in ("version", "created", "hash", "changes"):
        table.add_column(column)
    for version in versions:
        note = f"rollback to {version.rollback_of}; " if version.rollback_of is not None else ""
        summary = note + (f"{len(version.changes)} changes" if len(version.changes) != 1 else version.changes[0])
        table.add_row(str(version.id), _when(version.created_ms), version.content_hash[:12], summary)
    console.print(table)


@registry_group.command("show")
@click.argument("version", type=int, required=False)
@_repo_option
@_profile_option
def show(version: int | None, repo: Path, profile: str | None) -> None:
    """Print the definitions of a version (default: the current one) as YAML."""
    found = Registry.for_repo(repo, profile=profile).get(version)
    click.echo(f"# project {found.definitions.project}, registry version {found.id} ({found.content_hash[:12]})")
    click.echo(dump_yaml(found.definitions), nl=False)


@registry_group.command("rollback")
@click.argument("version", type=int)
@_repo_option
@_profile_option
def rollback(version: int, repo: Path, profile: str | None) -> None:
    """Make a new version equal to VERSION (the repo files are not touched)."""
    _print_version(_console(), Registry.for_repo(repo, profile=profile).rollback(version), f"rolled back to {version}:")
