"""`featurestore demo`: the main job on the local profile, no servers."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="where the demo writes its repo, stores, history and exports (replaced on each run)",
)
@click.option("--days", type=int, default=30, show_default=True, help="days of history to generate")
@click.option("--impressions-per-day", type=int, default=4_000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--profile", default="local", show_default=True,
              help="local: no servers; cluster: HBase, Redis, HDFS (featurestore services up), the run's data "
                   "under a prefix of its own")
def demo(output: Path, days: int, impressions_per_day: int, seed: int, profile: str) -> None:
    """Generate CTR logs, register examples/ctr, compute, store, export point-in-time, train, serve."""
    from sdk.demo import run_demo

    run_demo(output.resolve(), profile=profile, days=days, impressions_per_day=impressions_per_day, seed=seed)
