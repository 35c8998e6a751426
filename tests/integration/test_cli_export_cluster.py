"""`featurestore export` and `--reproduce` on the cluster profile: the offline log's Iceberg
tables on the real HDFS (catalog in the repo), outputs as a local Parquet file and as an Iceberg
table in that warehouse."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from featurestore.fs import open_fs
from featurestore.services import ports
from sdk.cli import main
from tests.unit.test_sdk_online import C1D, DAY, NOW, USERS, make_repo, open_store, versions


def test_export_and_reproduce_from_an_offline_log_on_hdfs(services: object, tmp_path: Path) -> None:
    root = f"{ports.HDFS_URI}/tests/export-{uuid.uuid4().hex[:8]}"
    warehouse = f"{root}/warehouse"
    prefix = f"fst{uuid.uuid4().hex[:10]}"
    repo = make_repo(tmp_path)
    fs = open_store(repo, "cluster", offline_log={"warehouse": warehouse},
                    online_cache=f"{ports.REDIS_URI}?prefix={prefix}",
                    versioned_store=f"{ports.HBASE_URI}?prefix={prefix}")
    try:
        schema = fs.registry.definitions().table_schema(USERS)
        table = fs.stores.offline_log.ensure_table(schema)
        table.append(versions(schema, [{"user_id": "u1", "version_ms": NOW - DAY, "seq": 1, "user_clicks_1d": 2}]))
        samples = tmp_path / "samples.parquet"
        pq.write_table(pa.table({"user_id": ["u1", "u2"], "ts": pa.array([NOW, NOW], pa.timestamp("ms", tz="UTC"))}),
                       samples)
        runner = CliRunner(env={"FEATURESTORE_OFFLINE_LOG__WAREHOUSE": warehouse})

        def run(*args: str) -> str:
            result = runner.invoke(main, ["export", "--repo", str(repo), "--profile", "cluster", *args])
            assert result.exit_code == 0, result.output
            return result.output

        out = tmp_path / "train.parquet"
        text = run("--features", C1D, "--samples", str(samples), "--out", str(out))
        assert f"{USERS}@{table.current_snapshot_id()}" in text
        assert pq.read_table(out)["user_clicks_1d"].to_pylist() == [2, None]
        run("--features", C1D, "--samples", str(samples), "--out", "exports.train", "--format", "iceberg")

        table.append(versions(schema, [{"user_id": "u2", "version_ms": NOW - 1, "seq": 2, "user_clicks_1d": 7}]))
        assert "rows equal the original's" in run("--reproduce", f"{out}.manifest.json")
        assert pq.read_table(tmp_path / "train.reproduced.parquet").equals(pq.read_table(out))
        manifest = repo / ".featurestore" / "exports" / "exports.train.manifest.json"
        assert "rows equal the original's" in run("--reproduce", str(manifest))
        copy = fs.stores.offline_log.catalog.load_table("exports.train_reproduced").scan().to_arrow()
        assert sorted(copy["user_clicks_1d"].to_pylist(), key=str) == [2, None]
    finally:
        for name in fs.registry.definitions().table_schemas():
            fs.stores.versioned.drop_table(name)
            fs.stores.online_cache.drop_table(name)
        fs.close()
        open_fs(root).delete(root)
