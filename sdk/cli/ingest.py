"""`featurestore ingest`: the registry's feature tables computed live from Kafka into the stores."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click


@click.command()
@click.option("--repo", type=click.Path(path_type=Path), default=Path("."), show_default=True)
@click.option("--tables", "-t", multiple=True, help="feature tables to ingest (default: all with a stream binding)")
@click.option("--profile", default=None, help="configuration profile (default: featurestore.yaml's, else local)")
@click.option("--samples", "-s", multiple=True, metavar="SAMPLE_TABLE",
              help="sample tables to produce (default: all whose sources stream, unless --tables is given)")
@click.option("--bounded", is_flag=True, help="stop at the offsets that are latest when the job starts")
@click.option(
    "--handover", type=click.DateTime(["%Y-%m-%d"]), default=None,
    help="continue a backfill whose --to was this day: warm windows from history, write from it on",
)
def ingest(
    repo: Path, tables: tuple[str, ...], samples: tuple[str, ...], profile: str | None, bounded: bool,
    handover: dt.datetime | None,
) -> None:
    """Submit the streaming job of the applied registry version and follow it (Ctrl-C cancels it)."""
    from featurestore.config import load_config
    from featurestore.time_semantics import to_millis
    from ingestion.job import submit
    from registry.store import Registry

    config = load_config(repo, profile=profile)
    version = Registry.for_repo(repo, profile=profile).get()
    handover_ms = None if handover is None else to_millis(handover.replace(tzinfo=dt.UTC), what="--handover")
    job = submit(config, version.definitions, list(tables) or None, bounded=bounded, handover_ms=handover_ms,
                 samples=list(samples) or None)
    names = ", ".join(plan.table for plan in job.plans)
    click.echo(f"registry version {version.id}: ingesting {names} (Flink job {job.job_id})")
    click.echo(f"  versions -> {config.versioned_store}; latest -> {config.online_cache}")
    click.echo(f"  every version -> the offline log in {config.offline_log.warehouse}")
    if job.samples:
        prefix = config.kafka.samples_topic_prefix if config.kafka is not None else "samples."
        topics = ", ".join(f"{prefix}{name}" for name in job.samples)
        click.echo(f"  samples of {', '.join(job.samples)} -> the offline log's sample tables and Kafka ({topics})")
    if handover is not None:
        click.echo(f"  hand-over at {handover:%Y-%m-%d} UTC: windows warmed from {config.history}, writes from then on")
    try:
        job.wait()
    except KeyboardInterrupt:
        click.echo("cancelling the job; the last checkpoint is kept under " + config.flink.checkpoint_dir)
        job.cancel()
        raise SystemExit(130) from None
    click.echo("the job finished (bounded input consumed)")
