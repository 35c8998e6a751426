"""`featurestore demo --profile cluster` (`make demo-cluster`): the whole flow on the real services.

History on HDFS, versions in HBase, the latest in Redis, the Iceberg log's warehouse on HDFS, the
run's data under a prefix of its own; every step runs and the figures hold as on the local
profile (labels equal the oracle's, the point-in-time AUC is above chance and below the leaky one,
an as_of lookup equals the export's row).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from rich.console import Console

from featurestore.config import load_config
from featurestore.fs import open_fs
from featurestore.storage.online import open_online_cache
from featurestore.storage.versioned import open_versioned_store
from registry import load_repo
from sdk.demo import run_demo

pytestmark = pytest.mark.integration


def test_the_demo_runs_every_step_on_the_cluster_profile(services: object, tmp_path: Path) -> None:
    output = tmp_path / "out"
    try:
        report = run_demo(output, profile="cluster", days=8, impressions_per_day=1_500, console=Console(quiet=True))
        config = load_config(output / "repo", profile="cluster")
        assert config.versioned_store.startswith("hbase://") and "prefix=demo" in config.versioned_store
        assert config.history.startswith("hdfs://") and config.offline_log.warehouse.startswith("hdfs://")
        assert [title.split(".")[0] for title, _, _ in report.steps] == [str(i) for i in range(1, 11)]
        assert report.figures["versions_written"] > 0 and report.figures["today_samples"] > 0
        assert report.figures["samples_matching_oracle"] == 1.0
        assert 0.5 < report.figures["auc_point_in_time"] < report.figures["auc_leaky"]
        assert report.figures["as_of_matches_export"] is True
        serve = next(notes for title, _, notes in report.steps if title.startswith("10."))
        assert "from the online cache" in serve and config.online_cache in serve
    finally:
        _remove_run(output / "repo")


def _remove_run(repo: Path) -> None:
    """The run's HBase tables, Redis keys and HDFS directory."""
    if not (repo / "featurestore.yaml").exists():
        return
    config = load_config(repo, profile="cluster")
    definitions = load_repo(repo)
    names = [t.name for t in definitions.feature_tables]
    store, cache = open_versioned_store(config.versioned_store), open_online_cache(config.online_cache)
    try:
        for name in names:
            store.drop_table(name)
            cache.drop_table(name)
    finally:
        store.close()
        cache.close()
    if config.kafka is not None:  # the samples topics of the run
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": config.kafka.bootstrap_servers})
        topics = [f"{config.kafka.samples_topic_prefix}{t.name}" for t in definitions.sample_tables]
        for future in admin.delete_topics(topics, operation_timeout=30).values():
            with contextlib.suppress(KafkaException):  # a topic the run did not create
                future.result()
    for path in (config.history, config.offline_log.warehouse):  # each ends with the run's own folder
        assert path.rstrip("/").rsplit("/", 1)[-1].startswith("demo"), path
        open_fs(path).delete(path)
