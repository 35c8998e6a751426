from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.config import OfflineLogConfig
from featurestore.errors import TimeSemanticsError, ValidationError
from featurestore.offline import OfflineLog
from featurestore.pit import ExportOptions, FeatureSource, Manifest, export, get_historical_features, reproduce
from featurestore.pit import engine as engine_module
from featurestore.schema import WRITTEN, Field, TableSchema, write_set
from featurestore.types import ValueType

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pyiceberg.*")  # pyparsing 3.3 vs pyiceberg 0.8

UTC = dt.UTC
USER = TableSchema(
    "user", (Field("user_id", ValueType.INT64),),
    (Field("clicks", ValueType.INT64), Field("ctr", ValueType.DOUBLE)), ttl_ms=100,
)
ITEM = TableSchema("item", (Field("item_id", ValueType.STRING),), (Field("clicks", ValueType.INT64),))


def user_versions(rows: list[tuple[int, int, int, int | None, float | None]]) -> pa.Table:
    """Versions in the log layout; here a None means "not written" (left out of ``_written``)."""
    return pa.Table.from_pylist(
        [{"user_id": u, "version_ms": t, "seq": s, "clicks": c, "ctr": r,
          WRITTEN: write_set(n for n, value in (("clicks", c), ("ctr", r)) if value is not None)}
         for u, t, s, c, r in rows],
        schema=USER.arrow_schema().append(pa.field(WRITTEN, pa.string())),
    )


USER_VERSIONS = user_versions([(1, 10, 1, 1, 0.1), (1, 20, 2, None, 0.2), (1, 20, 3, 3, None), (2, 50, 4, 7, None)])
ITEM_VERSIONS = pa.Table.from_pylist(
    [{"item_id": "a", "version_ms": 5, "seq": 1, "clicks": 100}], schema=ITEM.arrow_schema()
)


def ts(*millis: int, unit: str = "ms") -> pa.Array:
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    return pa.array([epoch + dt.timedelta(milliseconds=m) for m in millis], pa.timestamp(unit, tz="UTC"))


def samples(millis: list[int], uids: list[int]) -> pa.Table:
    return pa.table({"uid": pa.array(uids, pa.int64()), "event_time": ts(*millis), "label": list(range(len(uids)))})


def user_source(versions: Any = USER_VERSIONS, **kw: Any) -> FeatureSource:
    return FeatureSource(USER, versions, join_keys={"user_id": "uid"}, **kw)


def test_point_in_time_values_ttl_ties_and_order() -> None:
    s = samples([20, 19, 120, 49, 50, 110, 5], [1, 1, 1, 2, 3, 1, 1])
    out = get_historical_features(s, ["user:clicks", "user:ctr"], [user_source()])
    assert out.column_names == ["uid", "event_time", "label", "clicks", "ctr"]
    assert out.select(["uid", "event_time", "label"]).equals(s)  # sample columns and order kept
    assert out.column("clicks").to_pylist() == [3, 1, None, None, None, 3, None]
    #                     tie: seq 3 wins ^   ^ ttl: 120-20 = 100 old -> expired
    assert out.column("ctr").to_pylist() == [0.2, 0.1, None, None, None, 0.2, None]  # unwritten hides nothing
    strict = get_historical_features(s, ["user:clicks"], [user_source()], options=ExportOptions(strict=True))
    assert strict.column("clicks").to_pylist() == [1, 1, None, None, None, 3, None]


def test_several_tables_key_mapping_and_name_collisions() -> None:
    s = samples([20, 6], [1, 1]).append_column("item_id", pa.array(["a", "b"]))
    out = get_historical_features(
        s, ["user:clicks", "item:clicks"], [user_source(), FeatureSource(ITEM, ITEM_VERSIONS)]
    )
    assert out.column_names[-2:] == ["user__clicks", "item__clicks"]
    assert out.column("item__clicks").to_pylist() == [100, None]
    star = get_historical_features(s, ["user:*"], [user_source()])
    assert star.column_names[-2:] == ["clicks", "ctr"]


def test_unsorted_samples_over_many_chunks_keep_their_order() -> None:
    millis = [(i * 37) % 200 for i in range(50)]
    s = samples(millis, [1 + i % 3 for i in range(50)])
    one = get_historical_features(s, ["user:clicks"], [user_source()])
    many = get_historical_features(s, ["user:clicks"], [user_source()], options=ExportOptions(chunk_rows=7))
    assert one.equals(many)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_event_time_units_and_int_millis(unit: str) -> None:
    at = 20_000 if unit == "s" else 20
    s = pa.table({"uid": pa.array([1], pa.int64()), "event_time": ts(at, unit=unit)})
    out = get_historical_features(s, ["user:clicks"], [user_source(user_versions([(1, at, 1, 5, None)]))])
    assert out.column("clicks").to_pylist() == [5]
    ints = pa.table({"uid": pa.array([1], pa.int32()), "t": pa.array([20], pa.int64())})
    out = get_historical_features(ints, ["user:clicks"], [user_source(user_versions([(1, 20, 1, 5, None)]))],
                                  event_time="t")
    assert out.column("clicks").to_pylist() == [5]


def test_bad_samples_and_refs_name_what_is_wrong(tmp_path: Path) -> None:
    good = samples([20], [1])
    with pytest.raises(TimeSemanticsError, match="event_time"):
        naive = good.set_column(1, "event_time", pa.array([dt.datetime(1970, 1, 1)], pa.timestamp("ms")))
        get_historical_features(naive, ["user:clicks"], [user_source()])
    with pytest.raises(ValidationError, match="when"):
        get_historical_features(good, ["user:clicks"], [user_source()], event_time="when")
    with pytest.raises(ValidationError, match="uid"):
        get_historical_features(good.drop_columns(["uid"]), ["user:clicks"], [user_source()])
    with pytest.raises(ValidationError, match=r"uid.*string.*int64"):
        get_historical_features(good.set_column(0, "uid", pa.array(["1"])), ["user:clicks"], [user_source()])
    with pytest.raises(ValidationError, match="user:nope"):
        get_historical_features(good, ["user:nope"], [user_source()])
    with pytest.raises(ValidationError, match="ghost:clicks"):
        get_historical_features(good, ["ghost:clicks"], [user_source()])
    with pytest.raises(ValidationError, match="clicks"):
        get_historical_features(good, ["clicks"], [user_source()])
    with pytest.raises(TimeSemanticsError, match="epoch milliseconds"):
        get_historical_features(good.set_column(1, "event_time", pa.array([-1], pa.int64())), ["user:clicks"],
                                [user_source()])
    # Parquet sample files that disagree on the zone
    pq.write_table(good, tmp_path / "a.parquet")
    other = good.set_column(1, "event_time", good.column("event_time").cast(pa.timestamp("ms", tz="Asia/Shanghai")))
    pq.write_table(other, tmp_path / "b.parquet")
    with pytest.raises(TimeSemanticsError, match="event_time"):
        get_historical_features(tmp_path, ["user:clicks"], [user_source()])


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "avro"])
def test_export_formats_from_parquet_inputs(tmp_path: Path, fmt: str) -> None:
    pq.write_table(samples([20, 110], [1, 1]), tmp_path / "samples.parquet")
    pq.write_table(USER_VERSIONS, tmp_path / "user.parquet")
    target = tmp_path / "out" / f"train.{fmt}"
    manifest = export(tmp_path / "samples.parquet", ["user:clicks"], [user_source(tmp_path / "user.parquet")],
                      output=target, format=fmt, registry_version="v3")
    assert manifest.row_count == 2 and manifest.output["format"] == fmt
    if fmt == "parquet":
        rows = pq.read_table(target).to_pylist()
    elif fmt == "arrow":
        rows = pa.ipc.open_file(target).read_all().to_pylist()
    else:
        with open(target, "rb") as f:
            rows = list(fastavro.reader(f))
    assert [r["clicks"] for r in rows] == [3, 3]
    assert Manifest.read(f"{target.resolve()}.manifest.json") == manifest
    again = reproduce(manifest, output=tmp_path / f"again.{fmt}")  # all inputs were files
    assert again.row_count == 2


def test_failed_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = engine_module._assemble

    def flaky(*args: Any) -> pa.Table:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return real(*args)

    monkeypatch.setattr(engine_module, "_assemble", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        export(samples([20, 30, 40], [1, 1, 1]), ["user:clicks"], [user_source()], output=tmp_path / "x.parquet",
               options=ExportOptions(batch_rows=1))
    assert list(tmp_path.iterdir()) == []


def test_export_from_the_log_is_reproducible_after_more_appends(tmp_path: Path) -> None:
    log = OfflineLog(OfflineLogConfig(catalog_uri=f"sqlite:///{tmp_path}/c.db", warehouse=str(tmp_path / "wh")))
    table = log.ensure_table(USER)
    table.append(USER_VERSIONS, batch_id="b0")
    s = samples([20, 60, 110], [1, 2, 1])
    pq.write_table(s, tmp_path / "samples.parquet")
    first = export(tmp_path / "samples.parquet", ["user:clicks", "user:ctr"], [user_source(table)],
                   output=tmp_path / "train.parquet", registry_version="reg-42")
    assert first.snapshot_ids == {"user": table.current_snapshot_id()}
    assert first.registry_version == "reg-42"
    table.append(user_versions([(1, 19, 9, 99, 9.9), (2, 55, 10, 77, 7.7), (1, 20, 11, 111, None)]), batch_id="b1")
    latest = get_historical_features(s, ["user:clicks"], [user_source(table)])
    assert latest.column("clicks").to_pylist() == [111, 77, 111]  # the new versions are visible now
    again = reproduce(tmp_path / "train.parquet.manifest.json", output=tmp_path / "again.parquet")
    assert pq.read_table(tmp_path / "again.parquet").equals(pq.read_table(tmp_path / "train.parquet"))
    assert again.snapshot_ids == first.snapshot_ids
    # to an Iceberg table, renamed into place on success
    manifest = export(s, ["user:clicks"], [user_source(table)], output="exports.train", format="iceberg", log=log)
    assert manifest.row_count == 3
    rows = log.catalog.load_table("exports.train").scan().to_arrow()
    assert sorted(rows.column("clicks").to_pylist()) == [77, 111, 111]
    with pytest.raises(ValidationError, match="already exists"):
        export(s, ["user:clicks"], [user_source(table)], output="exports.train", format="iceberg", log=log)
    with pytest.raises(ValidationError, match="in memory"):
        reproduce(manifest, output=tmp_path / "nope.parquet")


@pytest.mark.parametrize("nulls", [False, True])
def test_equal_times_highest_seq_wins_whatever_the_row_order(nulls: bool) -> None:
    rows = [(1, 20, 3, 30, 0.3), (1, 20, 9, 90, 0.9), (1, 20, 5, 50, None if nulls else 0.5), (1, 10, 99, 1, 0.1)]
    out = get_historical_features(samples([20, 25], [1, 1]), ["user:clicks", "user:ctr"],
                                  [user_source(user_versions(rows * 50))])  # duplicates: as re-delivered
    assert out.column("clicks").to_pylist() == [90, 90]
    assert out.column("ctr").to_pylist() == [0.9, 0.9]


def test_explicit_null_hides_older_value_absent_column_does_not(tmp_path: Path) -> None:
    """Batches of the new convention through the offline log: a batch writes the columns it has."""
    log = OfflineLog(OfflineLogConfig(catalog_uri=f"sqlite:///{tmp_path}/c.db", warehouse=str(tmp_path / "wh")))
    table = log.ensure_table(USER)
    table.append(pa.table({"user_id": [1, 2], "version_ms": [10, 10], "seq": [1, 2], "clicks": [1, 2],
                           "ctr": [0.1, 0.2]}))
    table.append(pa.table({"user_id": [1], "version_ms": [20], "seq": [3], "ctr": pa.array([None], pa.float64())}))
    table.append(pa.table({"user_id": [2], "version_ms": [20], "seq": [4], "clicks": pa.array([None], pa.int64())}))
    table.append(pa.table({"user_id": [1, 2], "version_ms": [30, 30], "seq": [5, 6], "ctr": [0.3, None]}))
    s = samples([15, 20, 30, 15, 20, 30, 20], [1, 1, 1, 2, 2, 2, 1])
    out = get_historical_features(s, ["user:clicks", "user:ctr"], [user_source(table)])
    assert out.column("clicks").to_pylist() == [1, 1, 1, 2, None, None, 1]
    assert out.column("ctr").to_pylist() == [0.1, None, 0.3, 0.2, 0.2, None, None]
    strict = get_historical_features(s, ["user:ctr"], [user_source(table)], options=ExportOptions(strict=True))
    assert strict.column("ctr").to_pylist() == [0.1, 0.1, None, 0.2, 0.2, 0.2, 0.1]
    # the same versions as one Arrow table without _written: every row writes every feature
    flat = table.scan().drop_columns([WRITTEN])
    out = get_historical_features(s, ["user:clicks"], [user_source(flat)])
    assert out.column("clicks").to_pylist() == [1, None, None, 2, None, None, None]


def test_ttl_applies_to_a_null_version() -> None:
    versions = pa.table({"user_id": [1, 1], "version_ms": [10, 50], "seq": [1, 2],
                         "clicks": pa.array([5, None], pa.int64()), "ctr": pa.array([0.5, 0.6])})
    out = get_historical_features(samples([49, 50, 109, 149, 150], [1] * 5), ["user:clicks"],
                                  [user_source(versions)])  # ttl 100
    assert out.column("clicks").to_pylist() == [5, None, None, None, None]


def test_write_groups_share_one_asof_per_write_set() -> None:
    schema = TableSchema("t", (Field("k", ValueType.INT64),),
                         tuple(Field(n, ValueType.INT64) for n in ("a", "b", "c", "d")))
    groups = engine_module.write_groups(schema, ["a", "b", "c", "d"], ["a,b", "c", "a,b,c"])
    assert groups == [(("a", "b"), ("a,b", "a,b,c")), (("c",), ("c", "a,b,c"))]  # d: never written
    assert engine_module.write_groups(schema, ["a", "d"], [None]) == [(("a", "d"), None)]
    assert engine_module.write_groups(schema, ["a", "c"], [None, "c"]) == [(("a",), (None,)), (("c",), None)]
