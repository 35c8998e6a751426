"""The hdfs-replay source against a Python sort of the same files, on local disk and on HDFS.

The layouts are adversarial: rows shuffled inside files, many small files per landing hour that
overlap in event time, a batch of events landed hours late, Zipf-skewed keys plus one hot key.
Every check compares the emitted rows with the specification computed here in Python:
per partition, the order (event time, file index, row) over ``eventlog.read(..., with_position=True)``
and the partition ``featurestore.keys.partition_for(encode_key(key), P)``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from backfill.replay import ReplaySpec, read_output, read_replay
from featurestore import eventlog
from featurestore.datagen import CtrLogSpec, generate
from featurestore.environment import child_environment
from featurestore.errors import TerminalError
from featurestore.fs import open_fs
from featurestore.keys import encode_key, partition_for
from featurestore.services import ports
from featurestore.services.replay_jar import replay_jar
from registry.models import Source

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = "events/impressions/dt={date}/hour={hour}/*.avro"
HOUR_MS = 3_600_000
IMPRESSION_AVRO = {
    "type": "record",
    "name": "impression",
    "fields": [
        {"name": "impression_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {"name": "item_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "position", "type": "int"},
        {"name": "device", "type": "string"},
        {"name": "bid_price", "type": "double"},
        {"name": "top", "type": "boolean"},
        {"name": "dwell_hint", "type": ["null", "long"]},
    ],
}
SOURCE = Source(name="impressions", avro_schema=IMPRESSION_AVRO, event_time="ts", batch={"path": LAYOUT})
# the same history landed as Parquet (pyarrow's types: int64 ts, int32 position, a nullable int64)
PARQUET_LAYOUT = LAYOUT.replace(".avro", ".parquet")
PARQUET_SOURCE = SOURCE.model_copy(update={"batch": SOURCE.batch.model_copy(update={"path": PARQUET_LAYOUT,  # type: ignore[union-attr]
                                                                                     "format": "parquet"})})
LATE_BY_MS = int(2.5 * HOUR_MS)


def _events(rows_per_day: int, days: int = 2, seed: int = 11) -> pa.Table:
    """Impressions in arrival order, shuffled, with a hot key, event times to the minute (many
    equal ones, in one file and across files) and a batch landed 2.5 hours late."""
    table = generate(
        CtrLogSpec(days=days, users=300, items=200, impressions_per_day=rows_per_day, seed=seed)
    ).impressions
    rng = np.random.default_rng(seed)
    n = table.num_rows
    users = np.array(table["user_id"].to_pylist(), dtype=object)
    users[rng.random(n) < 0.2] = "hot-user"
    arrival = table["arrival_ms"].to_numpy().copy()
    ts = table["ts"].to_numpy() // 60_000 * 60_000  # to the minute: many ties, broken by (file, row)
    day0 = int(ts.min()) // 86_400_000 * 86_400_000
    late = ((ts - day0) // HOUR_MS == 26) & (rng.random(n) < 0.3)  # some of day 2's 02:00 hour
    arrival[late] = ts[late] + LATE_BY_MS
    position = table["position"].to_numpy()
    dwell = pa.array([None if i % 7 == 0 else int(i) for i in range(n)], pa.int64())
    table = pa.table(
        {
            "impression_id": table["impression_id"],
            "user_id": pa.array(users.tolist(), pa.string()),
            "item_id": table["item_id"],
            "ts": pa.array(ts),
            "position": table["position"],
            "device": table["device"],
            "bid_price": table["bid_price"],
            "top": pa.array(position == 1),
            "dwell_hint": dwell,
            "arrival_ms": pa.array(arrival),
            "late": pa.array(late),
        }
    )
    return table.take(pa.array(rng.permutation(n)))  # rows inside a file in no time order at all


def _land(root: str, events: pa.Table, rows_per_file: int = 400, fmt: str = "avro") -> None:
    eventlog.land(
        events,
        root,
        LAYOUT if fmt == "avro" else PARQUET_LAYOUT,
        fmt=fmt,
        avro_schema=IMPRESSION_AVRO,
        landing_column="arrival_ms",
        rows_per_file=rows_per_file,
    )


def _landing_start(path: str) -> int:
    date = path.split("/dt=")[1][:10]
    hour = int(path.split("/hour=")[1][:2])
    day = dt.datetime.fromisoformat(date).replace(tzinfo=dt.UTC)
    return int(day.timestamp() * 1000) + hour * HOUR_MS


def expected(root: str, spec: ReplaySpec, source: Source = SOURCE) -> pd.DataFrame:
    """The specification: every row in range, not beyond max-lateness, with its partition, in
    (partition, event time, file, row) order."""
    assert source.batch is not None
    layout = source.batch.path
    ref = eventlog.read(root, layout, fmt=source.batch.format, with_position=True).to_pandas()
    partitions = spec.partitions_for(source)
    ref["partition"] = [
        partition_for(encode_key(list(k)), partitions) for k in zip(*(ref[c] for c in spec.key_fields), strict=True)
    ]
    starts = [_landing_start(p) for p in eventlog.files(root, layout)]
    horizon = np.minimum.accumulate(np.array(starts[::-1]) - spec.max_lateness_ms)[::-1]
    ref["beyond"] = ref["ts"].to_numpy() < horizon[ref["_file"].to_numpy()]
    keep = np.ones(len(ref), dtype=bool)
    if spec.start_ms is not None:
        keep &= ref["ts"].to_numpy() >= spec.start_ms
    if spec.end_ms is not None:
        keep &= ref["ts"].to_numpy() < spec.end_ms
    ref = ref[keep]
    return ref.sort_values(["partition", "ts", "_file", "_row"], kind="stable").reset_index(drop=True)


def check_replay(out: pa.Table, ref: pd.DataFrame, spec: ReplaySpec) -> None:
    got = out.to_pandas()
    # every event exactly once
    assert got["impression_id"].is_unique
    assert len(got) == len(ref)
    assert set(got["impression_id"]) == set(ref["impression_id"])
    # partition ids equal Python's partition_for
    partitions = spec.partitions_for(SOURCE)
    want = [
        partition_for(encode_key(list(k)), partitions) for k in zip(*(got[c] for c in spec.key_fields), strict=True)
    ]
    assert got["__partition"].tolist() == want
    # per partition, the emitted order is the Python sort, positions included
    for partition, rows in got.groupby("__partition", sort=True):
        spec_rows = ref[ref["partition"] == partition]
        assert rows["impression_id"].tolist() == spec_rows["impression_id"].tolist(), f"partition {partition}"
        assert rows["__file"].tolist() == spec_rows["_file"].tolist()
        assert rows["__row"].tolist() == spec_rows["_row"].tolist()
        # the watermark each row saw is below its event time (slack = the 1 ms delay): none is late
        seen = rows["__wm_ms"].to_numpy()
        assert (seen < rows["ts"].to_numpy()).all()
    # values survive the trip: types, nulls, booleans, doubles
    merged = got.merge(ref, on="impression_id", suffixes=("", "_ref"))
    for column in ("user_id", "item_id", "ts", "position", "device", "bid_price", "top"):
        assert (merged[column] == merged[f"{column}_ref"]).all(), column
    assert merged["dwell_hint"].isna().equals(merged["dwell_hint_ref"].isna())


@pytest.fixture(scope="module")
def jar() -> str:
    return replay_jar().as_uri()


@pytest.fixture(scope="module")
def local_history(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("history"))
    _land(root, _events(6_000))
    return root


@pytest.fixture(scope="module")
def hdfs_history(services: object) -> Iterator[str]:
    root = f"{ports.HDFS_URI}/tests/replay-{uuid.uuid4().hex[:8]}"
    _land(root, _events(6_000))
    _land(root, _events(6_000), fmt="parquet")
    yield root
    open_fs(root).delete(root)


@pytest.mark.parametrize(("where", "fmt"), [("local", "avro"), ("hdfs", "avro"), ("hdfs", "parquet")])
def test_replay_is_ordered_partitioned_and_exactly_once(
    where: str, fmt: str, request: pytest.FixtureRequest, jar: str, tmp_path: Path
) -> None:
    root = request.getfixturevalue(f"{where}_history")
    source = SOURCE if fmt == "avro" else PARQUET_SOURCE
    spec = ReplaySpec(key_fields=("user_id",), partitions=5, max_lateness_ms=3 * HOUR_MS)
    ref = expected(root, spec, source)
    assert source.batch is not None
    assert len(eventlog.files(root, source.batch.path)) > 40  # many small, overlapping files
    assert not ref["beyond"].any()
    out = read_replay(source, history_root=root, spec=spec, work_dir=tmp_path, jars=[jar], parallelism=2)
    check_replay(out, ref, spec)


def test_parquet_timestamps_of_any_unit_replay_as_epoch_ms_and_a_missing_column_is_named(
    jar: str, tmp_path: Path
) -> None:
    """A Parquet timestamp column in ms, us or ns replays as the epoch ms the Avro history holds; a
    file without a declared column fails the job with the file and the column."""
    events = _events(500, days=1).drop_columns(["late"])
    ts_ms = events["ts"].to_numpy()
    spec = ReplaySpec(key_fields=("user_id",), partitions=2, max_lateness_ms=3 * HOUR_MS)
    for unit in ("ms", "us", "ns"):
        root = str(tmp_path / unit)
        scaled = pa.array(ts_ms * {"ms": 1, "us": 1_000, "ns": 1_000_000}[unit], pa.int64()).cast(pa.timestamp(unit))
        _land(root, events.set_column(events.schema.get_field_index("ts"), "ts", scaled), fmt="parquet")
        out = read_replay(PARQUET_SOURCE, history_root=root, spec=spec, work_dir=tmp_path / f"{unit}-work", jars=[jar])
        got = dict(zip(out["impression_id"].to_pylist(), out["ts"].to_pylist(), strict=True))
        assert got == dict(zip(events["impression_id"].to_pylist(), ts_ms.tolist(), strict=True)), unit
    root = str(tmp_path / "no-device")
    kept = [f["name"] for f in IMPRESSION_AVRO["fields"] if f["name"] != "device"]  # type: ignore[index]
    eventlog.land(events, root, PARQUET_LAYOUT, fmt="parquet", landing_column="arrival_ms", columns=kept)
    with pytest.raises(TerminalError, match=r"\.parquet has no field 'device'"):
        read_replay(PARQUET_SOURCE, history_root=root, spec=spec, work_dir=tmp_path / "bad-work", jars=[jar])


def test_time_range_and_a_two_column_key(local_history: str, jar: str, tmp_path: Path) -> None:
    ts = expected(local_history, ReplaySpec(key_fields=("user_id",)))["ts"]
    start, end = int(ts.quantile(0.3)), int(ts.quantile(0.6))
    spec = ReplaySpec(
        key_fields=("user_id", "position"), partitions=3, start_ms=start, end_ms=end, max_lateness_ms=3 * HOUR_MS
    )
    ref = expected(local_history, spec)
    assert 0 < len(ref) < len(ts)
    out = read_replay(SOURCE, history_root=local_history, spec=spec, work_dir=tmp_path, jars=[jar])
    check_replay(out, ref, spec)
    assert pc.min(out["ts"]).as_py() >= start and pc.max(out["ts"]).as_py() < end


@pytest.mark.parametrize("pace", ["events_per_second", "speed_up"])
def test_a_pace_from_a_time_holds_back_only_the_rows_after_it(
    pace: str, local_history: str, jar: str, tmp_path: Path
) -> None:
    # History played back like a live stream after a warm-up replayed at full speed: from the
    # 99th percentile on, 40 rows/s, or event time sped up so those rows span about 3 s. Paced
    # from the start, the replay would take 100x as long (minutes); it takes the paced rows' time
    # plus the job's start, never less (the limiter sleeps), and loses or repeats nothing.
    # Six partitions, a skewed key: while paced, a hand-over is a few rows, so partitions take
    # turns, and those that run out of rows finish while the busiest ones are still paced.
    spec = ReplaySpec(key_fields=("user_id",), partitions=6, max_lateness_ms=3 * HOUR_MS)
    ref = expected(local_history, spec)
    paced_from, newest, oldest = int(ref["ts"].quantile(0.99)), int(ref["ts"].max()), int(ref["ts"].min())
    if pace == "events_per_second":
        value = 40.0
        paced_s, everything_s = int((ref["ts"] >= paced_from).sum()) / value, len(ref) / value
    else:
        value = (newest - paced_from) / 1000 / 3
        paced_s, everything_s = (newest - paced_from) / 1000 / value, (newest - oldest) / 1000 / value
    assert everything_s > 3 * (paced_s + 30)
    started = time.monotonic()
    out = read_replay(
        SOURCE, history_root=local_history, work_dir=tmp_path, jars=[jar],
        spec=dataclasses.replace(spec, rate_from_ms=paced_from, **{pace: value}),
    )
    elapsed = time.monotonic() - started
    check_replay(out, ref, spec)
    assert paced_s * 0.9 <= elapsed < everything_s / 3, (paced_s, everything_s, elapsed)


def test_a_row_beyond_max_lateness_fails_the_job_by_default(local_history: str, jar: str, tmp_path: Path) -> None:
    spec = ReplaySpec(key_fields=("user_id",), partitions=2, max_lateness_ms=HOUR_MS)
    assert expected(local_history, spec)["beyond"].any()
    with pytest.raises(TerminalError, match="max-lateness-ms") as info:
        read_replay(SOURCE, history_root=local_history, spec=spec, work_dir=tmp_path, jars=[jar])
    assert "on-late" in str(info.value) and "below its file's horizon" in str(info.value)


def test_on_late_drop_drops_exactly_the_rows_beyond_the_bound(local_history: str, jar: str, tmp_path: Path) -> None:
    spec = ReplaySpec(key_fields=("user_id",), partitions=4, max_lateness_ms=HOUR_MS, on_late="drop")
    ref = expected(local_history, spec)
    beyond = ref[ref["beyond"]]
    assert len(beyond) > 0
    out = read_replay(SOURCE, history_root=local_history, spec=spec, work_dir=tmp_path, jars=[jar])
    check_replay(out, ref[~ref["beyond"]], spec)


# ------------------------------------------------------------------------------------------ kill/resume

_JOB = textwrap.dedent(
    """
    import sys, json
    sys.path.insert(0, {root!r})
    from backfill.replay import ReplaySpec, replay_ddl, sink_ddl, insert_sql
    from ingestion.runner import table_environment
    from tests.integration.test_backfill_replay import SOURCE
    options = json.loads(sys.argv[1])
    spec = ReplaySpec(**json.loads(sys.argv[2]))
    env = table_environment([{jar!r}], 2, options)
    for ddl in replay_ddl(SOURCE, table="replay_events", history_root={history!r}, spec=spec):
        env.execute_sql(ddl)
    rolling = {{"sink.rolling-policy.rollover-interval": "1 s", "sink.rolling-policy.check-interval": "1 s"}}
    env.execute_sql(sink_ddl(SOURCE, table="replay_rows", path={out!r}, options=rolling))
    env.execute_sql(insert_sql(SOURCE, replay_table="replay_events", sink_table="replay_rows")).wait()
    """
)


def _latest_checkpoint(directory: Path) -> Path | None:
    done = sorted(directory.glob("*/chk-*/_metadata"), key=lambda p: int(p.parent.name.split("-")[1]))
    return done[-1].parent if done else None


def _committed_rows(out: Path) -> int:
    """Rows in the sink's committed files (in-progress files are hidden: their names start with '.')."""
    return sum(p.read_bytes().count(b"\n") for p in out.rglob("part-*") if not p.name.startswith("."))


def test_a_killed_replay_resumes_from_its_checkpoint_without_loss_or_duplicates(
    local_history: str, jar: str, tmp_path: Path
) -> None:
    import json

    out = tmp_path / "rows"
    checkpoints = tmp_path / "checkpoints"
    script = tmp_path / "job.py"
    script.write_text(_JOB.format(root=str(ROOT), jar=jar, history=local_history, out=str(out)))
    spec = {"key_fields": ["user_id"], "partitions": 4, "max_lateness_ms": 3 * HOUR_MS}
    options = {
        "execution.checkpointing.interval": "300 ms",
        "execution.checkpointing.dir": checkpoints.as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "3",
    }
    total = len(expected(local_history, ReplaySpec(key_fields=("user_id",), partitions=4, max_lateness_ms=3 * HOUR_MS)))
    slow = {**spec, "events_per_second": total / 12}  # about 12 s: time to kill it in the middle
    env = child_environment(PYTHONPATH=str(ROOT))  # earlier tests' local jobs left worker variables
    first_log = tmp_path / "first.log"
    with first_log.open("wb") as log:
        first = subprocess.Popen(
            [sys.executable, str(script), json.dumps(options), json.dumps(slow)],
            env=env,
            start_new_session=True,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            latest = _latest_checkpoint(checkpoints)
            if latest is not None and int(latest.name.split("-")[1]) >= 3 and out.exists() and _committed_rows(out) > 0:
                break
            if first.poll() is not None:
                tail = first_log.read_text(errors="replace")[-3000:]
                pytest.fail(f"the first run ended (exit {first.returncode}) before it could be killed:\n{tail}")
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint with committed output within 120 s")
        os.killpg(first.pid, signal.SIGKILL)  # the driver and its gateway JVM (MiniCluster), mid-stream
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    before = _committed_rows(out)
    assert 0 < before < total, f"killed with {before} of {total} rows committed: not mid-stream"
    latest = _latest_checkpoint(checkpoints)
    assert latest is not None
    resume = {**options, "execution.state-recovery.path": latest.as_uri()}
    second = subprocess.run(
        [sys.executable, str(script), json.dumps(resume), json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    rows = read_output(SOURCE, out).to_pandas()
    ref = expected(local_history, ReplaySpec(key_fields=("user_id",), partitions=4, max_lateness_ms=3 * HOUR_MS))
    assert rows["impression_id"].is_unique, "an event was emitted twice"
    assert len(rows) == len(ref), "an event was lost"
    ordered = rows.sort_values(["__partition", "ts", "__file", "__row"], kind="stable")
    assert ordered["impression_id"].tolist() == ref["impression_id"].tolist()


@pytest.mark.parametrize("fmt", ["avro", "parquet"])
def test_a_corrupt_history_file_fails_the_replay_naming_the_file(fmt: str, jar: str, tmp_path: Path) -> None:
    """A history file cut short (a copy that did not finish): the job fails with the file's path,
    whichever format, and the message says where in it."""
    root = str(tmp_path / "history")
    source = SOURCE if fmt == "avro" else PARQUET_SOURCE
    assert source.batch is not None
    _land(root, _events(2_000, days=1).drop_columns(["late"]), rows_per_file=2_000, fmt=fmt)
    files = eventlog.files(root, source.batch.path)
    broken = Path(files[len(files) // 2])
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    spec = ReplaySpec(key_fields=("user_id",), partitions=2, max_lateness_ms=3 * HOUR_MS)
    with pytest.raises(TerminalError, match=f"cannot read history file .*{broken.name}"):
        read_replay(source, history_root=root, spec=spec, work_dir=tmp_path / "work", jars=[jar])


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("device", lambda d: pa.array([[x] for x in d.to_pylist()]),
         r"\.parquet: column 'device' is not a flat column"),
        ("position", lambda p: p.cast(pa.int32()).cast(pa.date32()),
         r"\.parquet: Parquet column 'position' of type .* is not supported for a replayed column"),
    ],
)
def test_a_parquet_column_the_replay_cannot_read_fails_naming_it(
    column: str, values: Callable[[pa.ChunkedArray], pa.Array], message: str, jar: str, tmp_path: Path
) -> None:
    events = _events(500, days=1).drop_columns(["late"])
    root = str(tmp_path / "history")
    _land(root, events.set_column(events.schema.get_field_index(column), column, values(events[column])), fmt="parquet")
    spec = ReplaySpec(key_fields=("user_id",), partitions=2, max_lateness_ms=3 * HOUR_MS)
    with pytest.raises(TerminalError, match=message):
        read_replay(PARQUET_SOURCE, history_root=root, spec=spec, work_dir=tmp_path / "work", jars=[jar])
