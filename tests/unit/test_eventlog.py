"""Landing events in a batch layout and reading them back, on local disk."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from featurestore import eventlog
from featurestore.datagen import CtrLogSpec, generate
from featurestore.errors import ValidationError

CLICK_AVRO = {
    "type": "record",
    "name": "click",
    "fields": [
        {"name": "impression_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {"name": "item_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "dwell_ms", "type": "long"},
        {"name": "category", "type": "string"},
    ],
}
LAYOUT = "events/clicks/dt={date}/hour={hour}/*.avro"


@pytest.mark.parametrize("fmt", ["avro", "parquet"])
def test_land_then_read_gives_every_event_back(tmp_path: Path, fmt: str) -> None:
    clicks = generate(CtrLogSpec(days=2, users=50, items=50, impressions_per_day=4_000)).clicks
    layout = LAYOUT.replace(".avro", f".{fmt}")
    paths = eventlog.land(
        clicks, str(tmp_path), layout, fmt=fmt, avro_schema=CLICK_AVRO, landing_column="arrival_ms", rows_per_file=10
    )
    assert paths and all("/dt=2026-10-0" in p and "/hour=" in p for p in paths)
    back = eventlog.read(str(tmp_path), layout, fmt=fmt, with_position=True)
    assert back.num_rows == clicks.num_rows
    assert sorted(back["impression_id"].to_pylist()) == sorted(clicks["impression_id"].to_pylist())
    assert pc.max(back["_row"]).as_py() == 9
    # idempotent: landing again rewrites the same files
    again = eventlog.land(
        clicks, str(tmp_path), layout, fmt=fmt, avro_schema=CLICK_AVRO, landing_column="arrival_ms", rows_per_file=10
    )
    assert again == paths
    assert eventlog.read(str(tmp_path), layout, fmt=fmt).num_rows == clicks.num_rows


def test_files_are_laid_out_by_landing_time_so_late_events_sit_in_later_hours(tmp_path: Path) -> None:
    clicks = generate(CtrLogSpec(days=1, users=50, items=50, impressions_per_day=20_000, late_fraction=0.05)).clicks
    eventlog.land(clicks, str(tmp_path), LAYOUT, fmt="avro", avro_schema=CLICK_AVRO, landing_column="arrival_ms")
    first = eventlog.files(str(tmp_path), LAYOUT)[0]
    hour = int(first.split("hour=")[1][:2])
    rows = eventlog.read(str(tmp_path), LAYOUT.replace("hour={hour}", f"hour={hour:02d}"), fmt="avro")
    assert rows.num_rows > 0


def test_unknown_format_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="format"):
        eventlog.land(generate(CtrLogSpec(days=1)).clicks, str(tmp_path), LAYOUT, fmt="csv", landing_column="ts")


def test_event_times_come_back_as_epoch_millis(tmp_path: Path) -> None:
    clicks = generate(CtrLogSpec(days=1, users=20, items=20, impressions_per_day=2_000)).clicks
    eventlog.land(clicks, str(tmp_path), LAYOUT, fmt="avro", avro_schema=CLICK_AVRO, landing_column="arrival_ms")
    back = eventlog.read(str(tmp_path), LAYOUT, fmt="avro")
    assert back.schema.field("ts").type == "int64"
    assert sorted(back["ts"].to_pylist()) == sorted(clicks["ts"].to_pylist())


@pytest.mark.parametrize("layout", ["events/clicks/dt={date}/*.avro", "events/clicks/dt={date}/clicks.avro"])
def test_a_layout_without_hours_lands_a_whole_day_in_its_folder_and_loses_nothing(tmp_path: Path, layout: str) -> None:
    clicks = generate(CtrLogSpec(days=2, users=50, items=50, impressions_per_day=4_000)).clicks
    paths = eventlog.land(clicks, str(tmp_path), layout, fmt="avro", avro_schema=CLICK_AVRO,
                          landing_column="arrival_ms", rows_per_file=50)
    assert len(set(paths)) == len(paths)
    assert {p.split("dt=")[1][:10] for p in paths} >= {"2026-10-01", "2026-10-02"}
    back = eventlog.read(str(tmp_path), layout, fmt="avro")
    assert sorted(back["impression_id"].to_pylist()) == sorted(clicks["impression_id"].to_pylist())


def test_avro_timestamps_come_back_in_the_unit_their_schema_gives(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "E", "fields": [
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "seen_us", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        {"name": "n", "type": "long"},
    ]}
    events = pa.table({"ts": [1_700_000_000_123, 1_700_000_000_456], "seen_us": [1_700_000_000_123_457, None],
                       "n": [1, 2]})
    eventlog.land(events, str(tmp_path), "e/dt={date}/*.avro", fmt="avro", avro_schema=schema, landing_column="ts")
    back = eventlog.read(str(tmp_path), "e/dt={date}/*.avro", fmt="avro")
    assert back.to_pydict() == events.to_pydict()  # micros stay micros, to the microsecond
