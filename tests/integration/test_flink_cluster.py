"""The Flink standalone session cluster (JobManager + 2 TaskManagers) runs a PyFlink job with a
Python UDF, submitted remotely, and `status` shows it."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.csv as pacsv

from featurestore.services import manager
from featurestore.services.flink import TASK_MANAGERS, overview
from featurestore.services.ports import FLINK_REST_PORT, HOST

ROOT = Path(__file__).resolve().parents[2]


def test_a_python_job_runs_on_the_session_cluster(services: object, tmp_path: Path) -> None:
    report = manager.up(["flink-cluster"])
    try:
        assert {s.name for s in manager.status()} >= {"flink-cluster"}
        before = overview()
        assert before["taskmanagers"] == TASK_MANAGERS
        from pyflink.table import DataTypes
        from pyflink.table.udf import udf

        from ingestion.runner import table_environment

        remote = {"execution.target": "remote", "rest.address": HOST, "rest.port": str(FLINK_REST_PORT)}
        env = table_environment([], 2, remote)
        env.execute_sql(
            "CREATE TABLE src (k BIGINT) WITH ('connector'='datagen','number-of-rows'='500',"
            "'fields.k.kind'='sequence','fields.k.start'='1','fields.k.end'='500')"
        )
        out = tmp_path / "out"
        env.execute_sql(
            f"CREATE TABLE dst (k BIGINT, d BIGINT, pid BIGINT) "
            f"WITH ('connector'='filesystem','path'='{out}','format'='csv')"
        )

        @udf(result_type=DataTypes.BIGINT())  # type: ignore[misc]
        def double(x: int) -> int:
            return x * 2

        @udf(result_type=DataTypes.BIGINT())  # type: ignore[misc]
        def worker_pid(x: int) -> int:
            """The worker's pid, negated when it imports the project from this checkout rather
            than from the code shipped with the job (python.files)."""
            import os

            import ingestion

            shipped = not ingestion.__file__.startswith(str(ROOT))
            return os.getpid() if shipped else -os.getpid()

        env.create_temporary_function("double_it", double)
        env.create_temporary_function("worker_pid", worker_pid)
        env.execute_sql("INSERT INTO dst SELECT k, double_it(k), worker_pid(k) FROM src").wait()
        rows = [
            r
            for f in sorted(os.listdir(out))
            for r in pacsv.read_csv(out / f, read_options=pacsv.ReadOptions(column_names=["k", "d", "pid"])).to_pylist()
        ]
        assert sorted(r["k"] for r in rows) == list(range(1, 501))
        assert all(r["d"] == 2 * r["k"] for r in rows)
        # the Python function ran in the TaskManagers' Python workers, not in this process
        # (loopback), on the code shipped with the job
        pids = {r["pid"] for r in rows}
        assert all(pid > 0 for pid in pids), "the workers imported the checkout, not the shipped code"
        assert os.getpid() not in pids
        after = overview()
        assert after["jobs-finished"] == before["jobs-finished"] + 1  # ran on the cluster, not a MiniCluster
    finally:
        manager.down(only_started_by=report)
