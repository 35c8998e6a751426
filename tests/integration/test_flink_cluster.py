"""The Flink standalone session cluster (JobManager + 2 TaskManagers) runs a PyFlink job with a
Python UDF, submitted remotely, and `status` shows it."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.csv as pacsv

from featurestore.services import manager
from featurestore.services.flink import TASK_MANAGERS, flink_python_jar, overview
from featurestore.services.ports import FLINK_REST_PORT, HOST


def test_a_python_job_runs_on_the_session_cluster(services: object, tmp_path: Path) -> None:
    report = manager.up(["flink-cluster"])
    try:
        assert {s.name for s in manager.status()} >= {"flink-cluster"}
        before = overview()
        assert before["taskmanagers"] == TASK_MANAGERS
        from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment
        from pyflink.table.udf import udf

        env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
        config = env.get_config()
        config.set("execution.target", "remote")
        config.set("rest.address", HOST)
        config.set("rest.port", str(FLINK_REST_PORT))
        config.set("parallelism.default", "2")
        config.set("pipeline.jars", flink_python_jar().as_uri())
        env.execute_sql(
            "CREATE TABLE src (k BIGINT) WITH ('connector'='datagen','number-of-rows'='500',"
            "'fields.k.kind'='sequence','fields.k.start'='1','fields.k.end'='500')"
        )
        out = tmp_path / "out"
        env.execute_sql(
            f"CREATE TABLE dst (k BIGINT, d BIGINT) WITH ('connector'='filesystem','path'='{out}','format'='csv')"
        )

        @udf(result_type=DataTypes.BIGINT())  # type: ignore[misc]
        def double(x: int) -> int:
            return x * 2

        env.create_temporary_function("double_it", double)
        env.execute_sql("INSERT INTO dst SELECT k, double_it(k) FROM src").wait()
        rows = [
            r
            for f in sorted(os.listdir(out))
            for r in pacsv.read_csv(out / f, read_options=pacsv.ReadOptions(column_names=["k", "d"])).to_pylist()
        ]
        assert sorted(r["k"] for r in rows) == list(range(1, 501))
        assert all(r["d"] == 2 * r["k"] for r in rows)
        after = overview()
        assert after["jobs-finished"] == before["jobs-finished"] + 1  # ran on the cluster, not a MiniCluster
    finally:
        manager.down(only_started_by=report)
