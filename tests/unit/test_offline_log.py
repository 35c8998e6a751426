from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from featurestore.config import OfflineLogConfig
from featurestore.errors import NotFoundError, ValidationError
from featurestore.offline import BATCH_ID_PROPERTY, OfflineLog
from featurestore.schema import WRITTEN, Field, TableSchema
from featurestore.types import ValueType

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pyiceberg.*")  # pyparsing 3.3 vs pyiceberg 0.8

DAY = 86_400_000
SCHEMA = TableSchema(
    "user_stats",
    (Field("user_id", ValueType.INT64),),
    (Field("clicks", ValueType.INT64), Field("ctr", ValueType.DOUBLE), Field("tags", ValueType.STRING_LIST)),
    ttl_ms=7 * DAY,
)


@pytest.fixture
def log(tmp_path: Path) -> OfflineLog:
    return OfflineLog(OfflineLogConfig(catalog_uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=str(tmp_path / "wh")))


def versions(rows: list[tuple[int, int, int, int | None, float | None]]) -> pa.Table:
    return pa.table(
        {
            "user_id": [r[0] for r in rows],
            "version_ms": [r[1] for r in rows],
            "seq": [r[2] for r in rows],
            "clicks": [r[3] for r in rows],
            "ctr": [r[4] for r in rows],
        }
    )


def test_ensure_table_is_partitioned_by_day_of_version_time(log: OfflineLog) -> None:
    table = log.ensure_table(SCHEMA)
    iceberg = log.catalog.load_table(table.identifier)
    (field,) = iceberg.spec().fields
    assert field.name == "version_day" and str(field.transform) == "day"
    assert log.ensure_table(SCHEMA).identifier == table.identifier  # idempotent


def test_append_and_scan_round_trip_with_time_bounds_and_projection(log: OfflineLog) -> None:
    table = log.ensure_table(SCHEMA)
    assert table.current_snapshot_id() is None
    assert table.scan().num_rows == 0
    table.append(versions([(1, 0, 1, 5, 0.5), (1, DAY + 1, 2, None, 0.25), (2, 3 * DAY, 3, 9, None)]))
    full = table.scan(dedupe=True)
    assert full.column_names == ["user_id", "version_ms", "seq", "clicks", "ctr", "tags", WRITTEN]
    assert full.column("clicks").to_pylist() == [5, None, 9]  # the None: an explicit null
    assert full.column("tags").to_pylist() == [None, None, None]  # absent feature -> null, not written:
    assert full.column(WRITTEN).to_pylist() == ["clicks,ctr"] * 3
    bounded = table.scan(start_ms=DAY, end_ms=3 * DAY, features=["ctr"])
    assert bounded.column_names == ["user_id", "version_ms", "seq", "ctr", WRITTEN]
    assert bounded.to_pylist() == [{"user_id": 1, "version_ms": DAY + 1, "seq": 2, "ctr": 0.25, WRITTEN: "clicks,ctr"}]
    data_files = table.data_files(start_ms=DAY, end_ms=2 * DAY)
    assert len(data_files) == 1 and "version_day=1970-01-02" in data_files[0]  # partition pruning


def test_batch_id_makes_append_idempotent(log: OfflineLog) -> None:
    table = log.ensure_table(SCHEMA)
    batch = versions([(1, 10, 1, 1, None), (2, 20, 2, 2, None)])
    first = table.append(batch, batch_id="job-7/part-0")
    again = log.table(SCHEMA).append(batch, batch_id="job-7/part-0")  # a restarted writer
    assert not first.skipped and again.skipped and again.snapshot_id == first.snapshot_id
    assert table.scan().num_rows == 2
    assert "job-7/part-0" in table.batch_ids()
    snapshot = log.catalog.load_table(table.identifier).current_snapshot()
    assert snapshot is not None and snapshot.summary is not None
    assert snapshot.summary.get(BATCH_ID_PROPERTY) == "job-7/part-0"


def test_dedupe_on_read_drops_redelivered_versions(log: OfflineLog) -> None:
    table = log.ensure_table(SCHEMA)
    batch = versions([(1, 10, 1, 1, None), (1, 10, 2, 3, None)])
    table.append(batch)
    table.append(batch)  # no batch id: a duplicate lands
    assert table.scan().num_rows == 4
    assert table.scan(dedupe=True).select(["seq", "clicks"]).to_pylist() == [
        {"seq": 1, "clicks": 1},
        {"seq": 2, "clicks": 3},
    ]


def test_scan_at_snapshot_is_reproducible(log: OfflineLog) -> None:
    table = log.ensure_table(SCHEMA)
    table.append(versions([(1, 10, 1, 1, None)]))
    snapshot = table.current_snapshot_id()
    table.append(versions([(1, 20, 2, 2, None)]))
    assert table.scan(snapshot_id=snapshot).num_rows == 1
    assert table.scan().num_rows == 2
    con = duckdb.connect()
    relation = table.relation(con, snapshot_id=snapshot, features=["clicks"])
    assert relation.to_arrow_table().column("clicks").to_pylist() == [1]
    with pytest.raises(NotFoundError):
        table.scan(snapshot_id=12345)


def test_bad_batches_are_rejected_with_the_column(log: OfflineLog) -> None:
    table = log.ensure_table(SCHEMA)
    with pytest.raises(ValidationError, match="'seq' is missing"):
        table.append(pa.table({"user_id": [1], "version_ms": [1]}))
    with pytest.raises(ValidationError, match="unknown columns"):
        table.append(versions([(1, 1, 1, 1, None)]).append_column("oops", pa.array([1])))
    with pytest.raises(ValidationError, match="'version_ms' has 1 nulls"):
        table.append(pa.table({"user_id": [1], "version_ms": pa.array([None], pa.int64()), "seq": [1]}))
    with pytest.raises(ValidationError, match="clicks"):
        table.append(versions([(1, 1, 1, 1, None)]).set_column(3, "clicks", pa.array(["x"])))


def test_schema_evolution_adds_features_and_refuses_type_changes(log: OfflineLog) -> None:
    log.ensure_table(SCHEMA).append(versions([(1, 10, 1, 1, None)]))
    wider = TableSchema(SCHEMA.name, SCHEMA.keys, (*SCHEMA.features, Field("score", ValueType.DOUBLE)))
    table = log.ensure_table(wider)
    assert table.scan().column("score").to_pylist() == [None]
    changed = TableSchema(SCHEMA.name, SCHEMA.keys, (Field("clicks", ValueType.STRING),))
    with pytest.raises(ValidationError, match="clicks"):
        log.ensure_table(changed)
    with pytest.raises(NotFoundError):
        log.table(TableSchema("nope", SCHEMA.keys, SCHEMA.features))


def test_written_records_the_batch_columns_and_survives_a_copy(log: OfflineLog) -> None:
    table = log.ensure_table(SCHEMA)
    table.append(pa.table({"user_id": [1], "version_ms": [10], "seq": [1], "ctr": pa.array([None], pa.float64())}))
    table.append(pa.table({"user_id": [1], "version_ms": [20], "seq": [2]}))  # writes nothing
    assert table.scan(dedupe=True).column(WRITTEN).to_pylist() == ["ctr", ""]
    copy = log.ensure_table(TableSchema("user_stats_copy", SCHEMA.keys, SCHEMA.features))
    copy.append(table.scan())  # a _written column in the batch is kept, not recomputed
    assert copy.scan(dedupe=True).column(WRITTEN).to_pylist() == ["ctr", ""]


def test_rows_from_before_the_written_column_read_null(log: OfflineLog) -> None:
    """A log table created before ``_written`` existed: its rows write every feature (null)."""
    from featurestore.offline.log import _log_arrow_schema

    legacy = _log_arrow_schema(SCHEMA).remove(_log_arrow_schema(SCHEMA).get_field_index(WRITTEN))
    iceberg = log.catalog.create_table(log.identifier(SCHEMA.name), schema=legacy)
    rows = versions([(1, 10, 1, 1, None)]).append_column("tags", pa.nulls(1, pa.list_(pa.string())))
    iceberg.append(
        rows.add_column(3, "_version_time", pa.array([10_000], pa.timestamp("us", tz="UTC")))
        .select(legacy.names)
        .cast(legacy)
    )
    assert log.table(SCHEMA).scan().column(WRITTEN).to_pylist() == [None]  # not even a column yet
    con = duckdb.connect()
    assert log.table(SCHEMA).relation(con).to_arrow_table().column(WRITTEN).to_pylist() == [None]
    table = log.ensure_table(SCHEMA)  # adds the column
    table.append(versions([(1, 20, 2, 2, None)]).select(["user_id", "version_ms", "seq", "clicks"]))
    assert table.scan(dedupe=True).column(WRITTEN).to_pylist() == [None, "clicks"]
    assert set(table.relation(con).to_arrow_table().column(WRITTEN).to_pylist()) == {None, "clicks"}


def test_concurrent_writers_lose_no_batch(tmp_path: Path) -> None:
    """One writer per window group appends at the same time; every batch lands."""
    import threading

    from featurestore.config import OfflineLogConfig
    from featurestore.offline.log import OfflineLog
    from featurestore.schema import Field, TableSchema
    from featurestore.types import ValueType

    config = OfflineLogConfig(catalog_uri=f"sqlite:///{tmp_path}/c.db", warehouse=str(tmp_path / "w"))
    schema = TableSchema(
        "t", (Field("k", ValueType.STRING),), (Field("a", ValueType.INT64), Field("b", ValueType.INT64))
    )
    OfflineLog(config).ensure_table(schema)

    def write(writer: int) -> None:
        table = OfflineLog(config).table(schema)
        for j in range(8):
            column = "a" if writer % 2 else "b"
            table.append(
                pa.table(
                    {
                        "k": [f"k{writer}"],
                        "version_ms": pa.array([1_700_000_000_000 + j], pa.int64()),
                        "seq": pa.array([0], pa.int64()),
                        column: pa.array([j], pa.int64()),
                    }
                )
            )

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert OfflineLog(config).table(schema).scan().num_rows == 32


def test_dedupe_keeps_versions_of_different_write_sets(tmp_path: Path) -> None:
    """Two window groups write at the same (key, time, seq): both rows survive dedupe; an exact
    replay of one of them does not."""
    config = OfflineLogConfig(catalog_uri=f"sqlite:///{tmp_path}/c.db", warehouse=str(tmp_path / "w"))
    schema = TableSchema(
        "t", (Field("k", ValueType.STRING),), (Field("a", ValueType.INT64), Field("b", ValueType.INT64))
    )
    table = OfflineLog(config).ensure_table(schema)
    row = {"k": ["x"], "version_ms": pa.array([1_700_000_000_000], pa.int64()), "seq": pa.array([7], pa.int64())}
    table.append(pa.table({**row, "a": pa.array([1], pa.int64())}))
    table.append(pa.table({**row, "b": pa.array([2], pa.int64())}))
    table.append(pa.table({**row, "b": pa.array([2], pa.int64())}))  # replayed
    rows = table.scan(dedupe=True).to_pylist()
    assert sorted(r[WRITTEN] for r in rows) == ["a", "b"]
