"""`featurestore backfill`: feature tables computed from history for a range of days."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click


def _fmt_ms(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


@click.command()
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True)
@click.option("--tables", "-t", multiple=True, help="feature tables to backfill (default: all with history)")
@click.option("--from", "start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="first day (UTC)")
@click.option("--to", "end", required=True, type=click.DateTime(["%Y-%m-%d"]), help="day after the last (UTC)")
@click.option("--profile", default=None, help="configuration profile (default: featurestore.yaml's, else local)")
@click.option("--partitions", type=int, default=None, help="replay partitions (default: the Kafka topic's)")
@click.option("--samples", "-s", multiple=True, metavar="SAMPLE_TABLE",
              help="also produce these sample tables' samples of the range, features attached as of each")
@click.option("--events-per-second", type=click.FloatRange(min=0, min_open=True), default=None,
              help="replay the range (not the warm-up) at most this fast per source")
@click.option("--speed-up", type=click.FloatRange(min=0, min_open=True), default=None,
              help="replay the range N times faster than it happened, in event time (live-like)")
@click.option("--pace-from", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]), default=None,
              help="pace only from this UTC time on (default --from): catch up at full speed, then play live-like")
def backfill(
    repo: Path, tables: tuple[str, ...], start: dt.datetime, end: dt.datetime, profile: str | None,
    partitions: int | None, samples: tuple[str, ...], events_per_second: float | None, speed_up: float | None,
    pace_from: dt.datetime | None,
) -> None:
    """Replay history through the live job's plan and write the versions of [--from, --to).

    The replay starts one longest window before --from, so long windows are full on the first
    day; rerunning a range rewrites the same versions (idempotent)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from backfill.run import BackfillProgress, plan_backfill, run_backfill
    from featurestore.config import load_config
    from featurestore.time_semantics import format_duration
    from registry.store import Registry

    config = load_config(repo, profile=profile)
    version = Registry.for_repo(repo, profile=profile).get()
    plan = plan_backfill(version.definitions, list(tables) or None, start.date(), end.date())
    click.echo(f"registry version {version.id}: backfilling {', '.join(plan.tables)}")
    click.echo(
        f"  writes versions of [{_fmt_ms(plan.start_ms)}, {_fmt_ms(plan.end_ms)}) UTC; replays history from "
        f"{_fmt_ms(plan.replay_from_ms)} ({format_duration(plan.warmup_ms)} warm-up for the longest window)"
    )
    click.echo(f"  history: {config.history}; versions -> {config.versioned_store}, {config.online_cache}, "
               f"offline log in {config.offline_log.warehouse}")
    with Progress(
        TextColumn("[bold]backfill"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task("backfill", total=1.0, detail="warming up windows")

        def show(p: BackfillProgress) -> None:
            if p.position_ms is None:
                bar.update(task, detail=f"warming up windows ({p.versions:,} versions)")
                return
            rate = p.versions / p.elapsed_s if p.elapsed_s else 0.0
            eta = f", ETA {p.eta_s:.0f}s" if p.eta_s is not None else ""
            bar.update(task, completed=p.fraction or 0.0,
                       detail=f"at {_fmt_ms(p.position_ms)}, {p.versions:,} versions, {rate:,.0f}/s{eta}")

        result = run_backfill(config, version.definitions, plan, partitions=partitions, on_progress=show,
                              samples=samples, events_per_second=events_per_second, speed_up=speed_up,
                              pace_from=None if pace_from is None else pace_from.replace(tzinfo=dt.UTC))
        bar.update(task, completed=1.0)
    click.echo(f"done in {result.seconds:.1f}s: {result.versions:,} versions written "
               f"({', '.join(f'{t} {n:,}' for t, n in sorted(result.versions_by_table.items()))})")
    for name, rows in sorted(result.samples_by_table.items()):
        click.echo(f"  {rows:,} samples of {name} -> the offline log's sample table (featurestore export "
                   f"--training-set reads them)")
