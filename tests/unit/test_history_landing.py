"""Landing users' event files as a source's history: `fs.history.land` and `featurestore logs land`.

On local disk with the CTR example's sources; the same landing onto HDFS and replayed by a backfill
is in tests/integration/test_backfill_job.py.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import fastavro
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from featurestore.errors import NotFoundError, ValidationError
from sdk.cli import main
from sdk.store import FeatureStore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ctr"
HOUR = 3_600_000
T0 = 1_790_000_000_000 // HOUR * HOUR  # an hour boundary


@pytest.fixture
def fs(tmp_path: Path) -> FeatureStore:
    repo = tmp_path / "ctr"
    shutil.copytree(EXAMPLE, repo)
    store = FeatureStore(repo, "local")
    store.registry.apply()
    return store


def _clicks(n: int = 6, start: int = T0) -> pa.Table:
    return pa.table({
        "impression_id": [f"i{k}" for k in range(n)],
        "user_id": [f"u{k % 2}" for k in range(n)],
        "item_id": ["7"] * n,  # digits, but the schema says string
        "ts": [start + k * HOUR // 2 for k in range(n)],  # two per hour
        "dwell_ms": list(range(n)),
        "category": ["news"] * n,
    })


def test_landed_events_read_back_as_they_were_one_folder_per_hour(fs: FeatureStore) -> None:
    landed = fs.history.land("clicks", _clicks())
    assert landed.rows == 6 and len(landed.paths) == 3
    assert (landed.first_event_ms, landed.last_event_ms) == (T0, T0 + 5 * HOUR // 2)
    assert all(p.endswith("/part-00000.avro") for p in landed.paths)
    assert fs.history.files("clicks") == landed.paths
    back = fs.history.read("clicks")
    assert back.to_pylist() == _clicks().to_pylist()


def test_the_landing_time_column_places_late_events_in_later_hours_and_is_not_kept(fs: FeatureStore) -> None:
    logged_at = ["2026-09-21T14:00:00.010Z", "2026-09-21T21:00:00+02:00"]  # T0 + 10 ms, T0 + 5 h
    assert pa.array(logged_at).cast(pa.timestamp("ms", "UTC")).cast(pa.int64()).to_pylist() == [T0 + 10, T0 + 5 * HOUR]
    clicks = _clicks(2).append_column("logged_at", pa.array(logged_at))
    landed = fs.history.land("clicks", clicks, landing_column="logged_at")
    hours = [p.split("hour=")[1][:2] for p in landed.paths]
    logged = dt.datetime.fromtimestamp(T0 / 1000, tz=dt.UTC)
    assert hours == [f"{logged.hour:02d}", f"{(logged.hour + 5) % 24:02d}"]
    assert landed.ignored_columns == ["logged_at"]
    assert "logged_at" not in fs.history.read("clicks").column_names


def test_a_second_landing_into_the_same_hours_adds_files_and_one_under_the_same_name_is_refused(
    fs: FeatureStore,
) -> None:
    first = fs.history.land("clicks", _clicks(2), name="monday")
    second = fs.history.land("clicks", _clicks(2), name="tuesday")
    assert set(first.paths).isdisjoint(second.paths)
    assert fs.history.read("clicks").num_rows == 4
    with pytest.raises(ValidationError, match="exist already") as refused:
        fs.history.land("clicks", _clicks(1), name="monday")
    assert "monday-00000.avro" in str(refused.value)
    assert fs.history.read("clicks").num_rows == 4  # nothing written
    again = fs.history.land("clicks", _clicks(2), name="monday", replace=True)
    assert again.paths == first.paths and fs.history.read("clicks").num_rows == 4


def test_columns_are_cast_to_the_schema_and_missing_nullable_ones_take_their_default(fs: FeatureStore) -> None:
    impressions = pa.table({
        "impression_id": ["a", "b"],
        "user_id": ["u1", "u2"],
        "item_id": ["x", "y"],
        "ts": pa.array([T0, T0 + 1], pa.timestamp("ms", "Asia/Shanghai")),  # zoned: the same instants
        "position": pa.array([1, 2], pa.int64()),  # int in the schema
        "device": ["ios", "web"],
        "bid_price": pa.array([1, 2], pa.int32()),  # double in the schema
    })
    landed = fs.history.land("impressions", impressions)
    assert landed.defaulted_columns == ["page"]
    back = fs.history.read("impressions")
    assert back["ts"].to_pylist() == [T0, T0 + 1]
    assert back["bid_price"].to_pylist() == [1.0, 2.0] and back["page"].to_pylist() == [None, None]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop_columns(["user_id", "dwell_ms"]), "no column user_id, dwell_ms for source clicks"),
        (lambda t: t.set_column(4, "dwell_ms", pa.array(["1", "2", "x", "4", "5", "6"])), "column dwell_ms: row 3"),
        (lambda t: t.set_column(1, "user_id", pa.array(["u", "u", None, "u", "u", "u"])), "the first in row 3"),
        (lambda t: t.set_column(3, "ts", pa.array([dt.datetime(2026, 1, 1)] * 6)), "without a time zone"),
        (lambda t: t.set_column(3, "ts", pa.array(["2026-01-01T08:00:00"] * 6)), "with a zone"),
        (lambda t: t.set_column(3, "ts", pa.array([1.5] * 6)), "column ts: double values are not times"),
        (lambda t: t.append_column("logged_at", pa.array([1, None, 3, 4, 5, 6])), "logged_at: 1 null value(s), "
         "the first in row 2"),
    ],
)
def test_events_the_schema_cannot_hold_are_refused_naming_the_column_and_nothing_is_written(
    fs: FeatureStore, change: object, message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        fs.history.land("clicks", change(_clicks()), where="clicks.parquet", landing_column="logged_at"
                        if "logged_at" in message else None)  # type: ignore[operator]
    assert message in str(refused.value) and str(refused.value).startswith("clicks.parquet")
    assert fs.history.files("clicks") == []


def test_a_source_without_history_or_unknown_is_a_clear_error(fs: FeatureStore) -> None:
    with pytest.raises(NotFoundError, match="click"):
        fs.history.land("clickz", _clicks())


def test_parquet_sources_land_parquet_with_the_schema_types(tmp_path: Path) -> None:
    repo = tmp_path / "ctr"
    shutil.copytree(EXAMPLE, repo)
    sources = repo / "sources.yaml"
    sources.write_text(sources.read_text().replace("hour={hour}/*.avro\", format: avro", "hour={hour}/*.parquet\", "
                                                                                        "format: parquet"))
    store = FeatureStore(repo, "local")
    store.registry.apply()
    landed = store.history.land("clicks", _clicks().set_column(4, "dwell_ms", pa.array(range(6), pa.int8())))
    assert all(p.endswith("/part-00000.parquet") for p in landed.paths)
    written = pq.read_table(landed.paths[0])
    assert written.schema.field("dwell_ms").type == pa.int64() and written.schema.field("ts").type == pa.int64()


# ------------------------------------------------------------------------------------------- the CLI


def _cli(fs: FeatureStore, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args[:2], "--repo", str(fs.repo), "--profile", "local", *args[2:]])
    return result.exit_code, result.output


def test_logs_land_takes_parquet_avro_csv_and_json_lines_files_then_lists_them(
    fs: FeatureStore, tmp_path: Path
) -> None:
    parquet, avro, csv, jsonl = (tmp_path / f"clicks.{ext}" for ext in ("parquet", "avro", "csv", "jsonl"))
    pq.write_table(_clicks(2), parquet)
    with avro.open("wb") as out:
        schema = json.loads((EXAMPLE / "schemas" / "clicks.avsc").read_text())
        fastavro.writer(out, fastavro.parse_schema(schema), _clicks(2, T0 + 2 * HOUR).to_pylist())
    pa_csv.write_csv(_clicks(2, T0 + 4 * HOUR), csv)  # item_id "7" must stay a string
    rows = _clicks(2, T0 + 6 * HOUR).to_pylist()
    for row in rows:
        row["ts"] = dt.datetime.fromtimestamp(row["ts"] / 1000, tz=dt.UTC).isoformat()  # ISO with a zone
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for n, path in enumerate((parquet, avro, csv, jsonl)):
        code, output = _cli(fs, "logs", "land", "clicks", str(path), "--name", f"batch{n}")
        assert code == 0 and "landed 2 clicks events in 1 avro files" in output, output
    back = fs.history.read("clicks")
    assert back.num_rows == 8 and set(back["item_id"].to_pylist()) == {"7"}
    assert sorted(back["ts"].to_pylist()) == sorted(
        t for k in (0, 2, 4, 6) for t in _clicks(2, T0 + k * HOUR)["ts"].to_pylist()
    )
    code, output = _cli(fs, "logs", "list", "clicks")
    assert code == 0 and "clicks: 4 avro files" in output, output


def test_logs_land_checks_every_file_before_writing_any(fs: FeatureStore, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.csv"
    pq.write_table(_clicks(), good)
    bad.write_text("impression_id,user_id,item_id,ts,dwell_ms,category\ni,u,7,1790000000000,lots,news\n")
    code, output = _cli(fs, "logs", "land", "clicks", str(good), str(bad))
    assert code == 1 and f"{bad}: column dwell_ms: row 1: 'lots'" in output, output
    assert fs.history.files("clicks") == []
    code, output = _cli(fs, "logs", "land", "clicks", str(good))
    assert code == 0 and all(p.endswith("/good-00000.avro") for p in fs.history.files("clicks")), output
    code, output = _cli(fs, "logs", "land", "clicks", str(good))
    assert code == 1 and "exist already" in output and "--replace them" in output
    assert _cli(fs, "logs", "land", "clicks", str(good), "--replace")[0] == 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("clicks.txt", "x", "cannot tell the format"),
        ("clicks.jsonl", '{"a": 1}\n[1]\n', "line 2: not a JSON object"),
        ("clicks.avro", "not avro", "cannot read"),
        ("clicks.parquet", "PAR1 truncated", "cannot read"),
    ],
)
def test_an_unreadable_file_names_itself(fs: FeatureStore, tmp_path: Path, name: str, content: str,
                                         message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    code, output = _cli(fs, "logs", "land", "clicks", str(path))
    assert code == 1 and message in output and str(path) in output, output
