"""`featurestore ingest`: the registry's feature tables computed live from Kafka into the stores."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click


@click.group(invoke_without_command=True)
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
@click.pass_context
def ingest(
    ctx: click.Context, repo: Path, tables: tuple[str, ...], samples: tuple[str, ...], profile: str | None,
    bounded: bool, handover: dt.datetime | None,
) -> None:
    """Submit the streaming job of the applied registry version and follow it (Ctrl-C cancels it).

    `featurestore ingest status` shows what the running job is doing."""
    if ctx.invoked_subcommand is not None:
        return
    import shutil
    import time

    from featurestore.config import STATE_DIR, load_config
    from featurestore.time_semantics import to_millis
    from ingestion.job import submit
    from ingestion.status import JobRecord, consumer_groups
    from registry.store import Registry

    config = load_config(repo, profile=profile)
    version = Registry.for_repo(repo, profile=profile).get()
    handover_ms = None if handover is None else to_millis(handover.replace(tzinfo=dt.UTC), what="--handover")
    jobs = repo / STATE_DIR / "jobs"
    for old in jobs.glob("progress-*"):  # what earlier runs reported
        shutil.rmtree(old, ignore_errors=True)
    progress = jobs / f"progress-{int(time.time() * 1000)}"
    progress.mkdir(parents=True)
    job = submit(config, version.definitions, list(tables) or None, bounded=bounded, handover_ms=handover_ms,
                 samples=list(samples) or None, progress_dir=str(progress))
    JobRecord(
        job_id=job.job_id, started_ms=int(time.time() * 1000), tables=tuple(p.table for p in job.plans),
        samples=job.samples,
        consumer_groups=consumer_groups(version.definitions, [p.table for p in job.plans], job.samples),
        progress_dir=str(progress), checkpoint_dir=config.flink.checkpoint_dir,
    ).save(repo)
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


@ingest.command("status")
@click.option("--repo", type=click.Path(path_type=Path), default=Path("."), show_default=True)
@click.option("--profile", default=None, help="configuration profile (default: featurestore.yaml's, else local)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def status(repo: Path, profile: str | None, as_json: bool) -> None:
    """Rows and samples written, freshness, consumer lag, checkpoint age and dead letters of the
    job `featurestore ingest` last started in this repo."""
    import json

    from featurestore.config import load_config
    from ingestion.status import JobRecord, ingest_status

    config = load_config(repo, profile=profile)
    found = ingest_status(config, JobRecord.load(repo))
    if as_json:
        click.echo(json.dumps(found.as_dict()))
        return
    click.echo(f"Flink job {found.job_id}, running {found.running_s:,.0f} s, {found.open_sinks} sinks open")
    for table, rows in sorted(found.rows_by_table.items()):
        click.echo(f"  {table}: {rows:,} versions written")
    for table, rows in sorted(found.samples_by_table.items()):
        click.echo(f"  {table}: {rows:,} samples written")
    freshness = "nothing written yet" if found.freshness_s is None else f"{found.freshness_s:,.1f} s behind now"
    click.echo(f"  freshness: newest version written is {freshness}")
    for name, lag in sorted(found.consumer_lag.items()):
        click.echo(f"  consumer lag {name}: {'unknown' if lag is None else f'{lag:,} records'}")
    for sink, error in sorted(found.write_errors.items()):
        click.echo(f"  retrying writes of {sink}: {error}")
    age = "no checkpoint yet" if found.checkpoint_age_s is None else f"{found.checkpoint_age_s:,.1f} s ago"
    click.echo(f"  last checkpoint: {age}")
    if found.dead_letters:
        for name, n in sorted(found.dead_letters.items()):
            click.echo(f"  dead letters {name}: {n:,}")
    else:
        click.echo("  dead letters: none")
