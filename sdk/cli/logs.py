"""`featurestore logs`: land event files as a source's history (what a backfill replays), list it."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from pathlib import Path, PurePosixPath

import click

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _when(ms: int | None) -> str:
    return "-" if ms is None else dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _default_name(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", PurePosixPath(path).stem)[:100] or "part"


@click.group()
def logs() -> None:
    """Sources' history: the event files a backfill replays."""


@logs.command()
@click.argument("source")
@click.argument("files", nargs=-1, required=True)
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True)
@click.option("--profile", default=None, help="configuration profile (default: featurestore.yaml's, else local)")
@click.option("--format", "fmt", type=click.Choice(["parquet", "avro", "csv", "jsonl"]), default=None,
              help="the input files' format (default: from each file's extension)")
@click.option("--landing-time", "landing_column", default=None, metavar="COLUMN",
              help="column saying when each event was logged, which hour's folder it lands in (default: event time)")
@click.option("--name", default=None, help="name the landed files start with (default: the first input's name)")
@click.option("--replace", is_flag=True, help="rewrite files of an earlier landing under the same name")
def land(
    source: str, files: tuple[str, ...], repo: Path, profile: str | None, fmt: str | None,
    landing_column: str | None, name: str | None, replace: bool,
) -> None:
    """Land event FILES (local paths or hdfs:// URIs) in SOURCE's batch layout.

    Every file is checked against the source's Avro schema (columns, types, nulls, zoned times)
    before anything is written; the files land together, as one landing, in the source's batch
    format, one folder per hour of landing time."""
    from featurestore.errors import ValidationError
    from featurestore.event_files import read_events
    from featurestore.eventlog import AlreadyLanded
    from sdk.history import CheckedEvents, string_columns
    from sdk.store import FeatureStore

    fs = FeatureStore(repo, profile)
    found, batch = fs.history.binding(source)
    checked = []
    for path in files:
        events = read_events(path, fmt, csv_types=string_columns(found))
        checked.append(fs.history.check(source, events, landing_column=landing_column, where=path))
        click.echo(f"  {path}: {events.num_rows:,} events")
    name = name or _default_name(files[0])
    try:
        landed = fs.history.land(source, CheckedEvents.concat(checked), name=name, replace=replace)
    except AlreadyLanded as exc:
        raise ValidationError(
            exc.message, hint=f"files named {name!r} were landed before: give another --name, or --replace them"
        ) from None
    click.echo(f"landed {landed.rows:,} {source} events in {len(landed.paths)} {batch.format} files: "
               f"{fs.history.root}/{batch.path}")
    click.echo(f"  event time {_when(landed.first_event_ms)} .. {_when(landed.last_event_ms)} UTC")
    if landed.ignored_columns:
        click.echo(f"  not in the schema, not landed: {', '.join(landed.ignored_columns)}")
    if landed.defaulted_columns:
        click.echo(f"  not in the files, landed as their default: {', '.join(landed.defaulted_columns)}")


@logs.command(name="list")
@click.argument("sources", nargs=-1)
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True)
@click.option("--profile", default=None, help="configuration profile (default: featurestore.yaml's, else local)")
def list_(sources: tuple[str, ...], repo: Path, profile: str | None) -> None:
    """The history files of SOURCES (default: every source with a batch binding), by day."""
    from sdk.store import FeatureStore

    fs = FeatureStore(repo, profile)
    definitions = fs.registry.definitions()
    names = list(sources) or [s.name for s in definitions.sources if s.batch is not None]
    click.echo(f"history root: {fs.history.root}")
    for name in names:
        _, batch = fs.history.binding(name)
        paths = fs.history.files(name)
        per_day = Counter(m.group(0) for p in paths if (m := _DATE.search(p[len(fs.history.root):])))
        click.echo(f"{name}: {len(paths)} {batch.format} files in {batch.path}")
        for day, count in sorted(per_day.items()):
            click.echo(f"  {day}  {count} files")
