"""StagedAppender on local disk: durable adds, one commit per flush, exactly once across appenders."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from featurestore.config import OfflineLogConfig
from featurestore.errors import StoreError, ValidationError
from featurestore.offline import OfflineLog, OfflineTable
from featurestore.offline.log import BATCH_IDS_PROPERTY
from featurestore.offline.staging import (
    STAGED_PROPERTY,
    StagedAppender,
    decode_names,
    default_staging_dir,
    encode_names,
)
from featurestore.schema import WRITTEN, Field, TableSchema
from featurestore.types import ValueType

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pyiceberg.*")  # pyparsing 3.3 vs pyiceberg 0.8

DAY = 86_400_000
T0 = 1_700_000_000_000
SCHEMA = TableSchema(
    "user_stats",
    (Field("user_id", ValueType.INT64),),
    (Field("clicks", ValueType.INT64), Field("ctr", ValueType.DOUBLE)),
)


@pytest.fixture
def config(tmp_path: Path) -> OfflineLogConfig:
    return OfflineLogConfig(catalog_uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=str(tmp_path / "wh"))


@pytest.fixture
def table(config: OfflineLogConfig) -> OfflineTable:
    return OfflineLog(config).ensure_table(SCHEMA)


def batch(first_seq: int, rows: int = 100, *, features: tuple[str, ...] = ("clicks", "ctr")) -> pa.Table:
    """Versions with seqs first_seq.. (unique across a test when first_seq ranges do not overlap)."""
    seqs = list(range(first_seq, first_seq + rows))
    columns: dict[str, pa.Array] = {
        "user_id": pa.array([s % 7 for s in seqs], pa.int64()),
        "version_ms": pa.array([T0 + s * 1000 for s in seqs], pa.int64()),
        "seq": pa.array(seqs, pa.int64()),
    }
    if "clicks" in features:
        columns["clicks"] = pa.array(seqs, pa.int64())
    if "ctr" in features:
        columns["ctr"] = pa.array([None if s % 5 == 0 else s / 10 for s in seqs], pa.float64())
    return pa.table(columns)


def staged_files(appender: StagedAppender) -> list[str]:
    return sorted(os.listdir(appender.staging_dir))


def seqs_in_log(config: OfflineLogConfig) -> list[int]:
    return sorted(OfflineLog(config).table(SCHEMA).scan().column("seq").to_pylist())


def test_adds_are_durable_files_and_one_flush_is_one_commit(table: OfflineTable, config: OfflineLogConfig) -> None:
    with StagedAppender(table, background=False) as appender:
        assert appender.staging_dir == default_staging_dir(table)
        assert "_staging" in appender.staging_dir and "/features/user_stats" in appender.staging_dir
        names = [appender.add(batch(i * 100)) for i in range(20)]
        assert all(n is not None for n in names)
        assert staged_files(appender) == sorted(n for n in names if n is not None)  # on disk before any commit
        assert table.scan().num_rows == 0 and appender.pending() == 20
        result = appender.flush()
        assert (result.commits, result.files, result.rows, result.dropped) == (1, 20, 2000, 0)
        assert staged_files(appender) == [] and appender.pending() == 0
        assert appender.flush().commits == 0  # nothing left
    assert seqs_in_log(config) == list(range(2000))
    log_table = OfflineLog(config).table(SCHEMA)
    (snapshot,) = log_table.snapshots()
    assert snapshot.summary is not None
    assert decode_names(str(snapshot.summary.get(STAGED_PROPERTY))) == decode_names(encode_names(names))  # type: ignore[arg-type]
    scanned = log_table.scan(dedupe=True)
    assert scanned.column(WRITTEN).unique().to_pylist() == ["clicks,ctr"]
    assert scanned.column("ctr").null_count == 400  # explicit nulls kept


def test_written_follows_each_batch_columns(table: OfflineTable, config: OfflineLogConfig) -> None:
    with StagedAppender(table, background=False) as appender:
        appender.add(batch(0, features=("clicks",)))
        appender.add(batch(100, features=("ctr",)))
    rows = OfflineLog(config).table(SCHEMA).scan(dedupe=True).to_pylist()
    assert {r[WRITTEN] for r in rows if r["seq"] < 100} == {"clicks"}
    assert {r[WRITTEN] for r in rows if r["seq"] >= 100} == {"ctr"}
    assert all(r["ctr"] is None for r in rows if r["seq"] < 100)


def test_background_thread_commits_every_interval(table: OfflineTable, config: OfflineLogConfig) -> None:
    appender = StagedAppender(table, interval_s=0.05)
    try:
        for i in range(5):
            appender.add(batch(i * 100))
        deadline = time.monotonic() + 60
        while appender.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert appender.pending() == 0
        assert seqs_in_log(config) == list(range(500))
        assert appender.stats().commits >= 1 and appender.stats().committed_rows == 500
    finally:
        appender.close()


def test_threads_adding_to_one_appender_and_appenders_sharing_a_directory_lose_nothing_and_double_nothing(
    table: OfflineTable, config: OfflineLogConfig
) -> None:
    """Two appenders on one directory, each fed by 4 threads, committing in the background and
    adopting each other's files at once (orphan_after_s=0): every batch lands exactly once."""
    appenders = [StagedAppender(table, interval_s=0.02, orphan_after_s=0.0) for _ in range(2)]
    errors: list[BaseException] = []

    def feed(appender: StagedAppender, thread: int) -> None:
        try:
            for j in range(10):
                appender.add(batch((thread * 10 + j) * 50, rows=50))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=feed, args=(appenders[t % 2], t)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for appender in appenders:
        appender.close()
    assert errors == []
    assert seqs_in_log(config) == list(range(8 * 10 * 50))  # no loss, no duplicate, without dedupe
    assert os.listdir(appenders[0].staging_dir) == []
    stats = [a.stats() for a in appenders]
    assert sum(s.committed_files for s in stats) == 80
    assert sum(s.staged_files for s in stats) == 80


def _process_appender(config: OfflineLogConfig, worker: int, batches: int) -> None:
    table = OfflineLog(config).table(SCHEMA)
    with StagedAppender(table, interval_s=0.05, orphan_after_s=0.0) as appender:
        for j in range(batches):
            appender.add(batch((worker * batches + j) * 50, rows=50), batch_id=f"w{worker}/{j}")


def test_appenders_in_several_processes_share_a_directory(table: OfflineTable, config: OfflineLogConfig) -> None:
    """Like the sink's Python workers: separate processes, one table, one staging directory."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_process_appender, args=(config, w, 10)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0, 0]
    assert seqs_in_log(config) == list(range(2 * 10 * 50))
    assert os.listdir(default_staging_dir(table)) == []
    assert {f"w{w}/{j}" for w in range(2) for j in range(10)} <= OfflineLog(config).table(SCHEMA).batch_ids()


def test_a_new_appender_commits_what_a_crashed_one_left_staged(table: OfflineTable, config: OfflineLogConfig) -> None:
    crashed = StagedAppender(table, background=False)
    for i in range(3):
        crashed.add(batch(i * 100))
    # The crash: no flush, no close. A put that died half-way leaves a hidden temporary file.
    torn = Path(crashed.staging_dir) / ".0123456789abcdef-0000000099.parquet.1234abcd.tmp"
    torn.write_bytes(b"PAR1 half a file")
    old = Path(crashed.staging_dir) / ".0123456789abcdef-0000000098.parquet.1234abcd.tmp"
    old.write_bytes(b"PAR1")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    del crashed

    successor = StagedAppender(table, background=False)  # recovers in its constructor
    assert seqs_in_log(config) == list(range(300))
    assert successor.stats().committed_files == 3 and successor.pending() == 0
    assert sorted(os.listdir(successor.staging_dir)) == [torn.name]  # a fresh torn file stays; an old one goes
    successor.close()


def test_a_crash_between_commit_and_delete_does_not_commit_twice(
    table: OfflineTable, config: OfflineLogConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = StagedAppender(table, background=False)
    first.add(batch(0))
    first.add(batch(100))
    monkeypatch.setattr(first._staging, "delete", lambda name: None)  # dies before deleting
    first.flush()
    assert len(os.listdir(first.staging_dir)) == 2
    successor = StagedAppender(table, background=False)
    assert successor.stats().dropped_files == 2 and successor.stats().committed_files == 0
    assert os.listdir(successor.staging_dir) == []
    assert seqs_in_log(config) == list(range(200))  # once, not twice
    successor.close()


def test_batch_ids_are_idempotent_across_add_commit_and_appenders(
    table: OfflineTable, config: OfflineLogConfig
) -> None:
    table.append(batch(0), batch_id="job/0")  # a per-batch append with an id
    with StagedAppender(table, background=False) as appender:
        assert appender.add(batch(0), batch_id="job/0") is None  # already in the log
        assert appender.add(batch(100), batch_id="job/1") is not None
        assert appender.add(batch(100), batch_id="job/1") is None  # already staged here
        other = StagedAppender(table, background=False, recover=False)  # recover would take both files
        assert other.add(batch(100), batch_id="job/1") is not None  # not committed yet: staged twice
        other.add(batch(200), batch_id="job/2")
        result = other.flush()
        assert (result.files, result.dropped) == (2, 0)
        assert appender.flush().dropped == 1  # job/1 went in with the other appender's commit
        other.close()
    log_table = OfflineLog(config).table(SCHEMA)
    assert seqs_in_log(config) == list(range(300))
    assert {"job/0", "job/1", "job/2"} <= log_table.batch_ids()
    summaries = [s.summary for s in log_table.snapshots() if s.summary is not None]
    assert any(BATCH_IDS_PROPERTY in s.additional_properties for s in summaries)
    assert log_table.append(batch(200), batch_id="job/2").skipped  # append sees staged batch ids


def test_flush_failure_keeps_the_files_and_a_later_flush_commits_them(
    table: OfflineTable, config: OfflineLogConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    appender = StagedAppender(table, background=False)
    appender.add(batch(0))
    real_commit = appender.table.commit

    def down(prepare: object) -> int | None:
        raise StoreError("catalog down")

    monkeypatch.setattr(appender.table, "commit", down)
    with pytest.raises(StoreError, match="catalog down"):
        appender.flush()
    assert appender.pending() == 1 and len(os.listdir(appender.staging_dir)) == 1
    assert appender.stats().failed_commits == 1 and "catalog down" in (appender.stats().last_error or "")
    monkeypatch.setattr(appender.table, "commit", real_commit)
    appender.close()
    assert seqs_in_log(config) == list(range(100))


def test_close_flushes_and_then_refuses_adds(table: OfflineTable, config: OfflineLogConfig) -> None:
    appender = StagedAppender(table, interval_s=3600)  # the thread would not commit in time
    appender.add(batch(0))
    appender.close()
    appender.close()  # idempotent
    assert seqs_in_log(config) == list(range(100))
    with pytest.raises(StoreError, match="closed"):
        appender.add(batch(100))
    assert appender.add is not None and appender.flush().commits == 0


def test_bad_batches_fail_in_add_and_stage_nothing(table: OfflineTable) -> None:
    with StagedAppender(table, background=False) as appender:
        with pytest.raises(ValidationError, match="'seq' is missing"):
            appender.add(pa.table({"user_id": [1], "version_ms": [1]}))
        with pytest.raises(ValidationError, match="unknown columns"):
            appender.add(batch(0).append_column("oops", pa.array([1] * 100)))
        assert appender.add(batch(0).slice(0, 0)) is None  # empty: nothing to stage
        assert os.listdir(appender.staging_dir) == []


def test_files_staged_before_a_schema_change_commit_after_it(table: OfflineTable, config: OfflineLogConfig) -> None:
    crashed = StagedAppender(table, background=False)
    crashed.add(batch(0))
    del crashed
    wider = TableSchema(SCHEMA.name, SCHEMA.keys, (*SCHEMA.features, Field("score", ValueType.DOUBLE)))
    widened = OfflineLog(config).ensure_table(wider)
    with StagedAppender(widened, background=False) as appender:
        assert appender.stats().committed_files == 1
        appender.add(pa.table({"user_id": [1], "version_ms": [T0], "seq": [1000], "score": [0.5]}))
    rows = OfflineLog(config).table(wider).scan(dedupe=True).to_pylist()
    assert len(rows) == 101
    assert [r["score"] for r in rows if r["seq"] == 1000] == [0.5]
    assert {r[WRITTEN] for r in rows if r["seq"] < 1000} == {"clicks,ctr"}  # score: not written


def test_a_file_of_another_table_is_left_alone(table: OfflineTable, config: OfflineLogConfig) -> None:
    other = OfflineLog(config).ensure_table(TableSchema("other", SCHEMA.keys, SCHEMA.features))
    stray = StagedAppender(other, background=False, staging_dir=default_staging_dir(table))
    stray.add(batch(0))
    del stray
    with StagedAppender(table, background=False) as appender:
        appender.add(batch(100))
    assert seqs_in_log(config) == list(range(100, 200))
    assert len(os.listdir(default_staging_dir(table))) == 1  # still there, for a human to move


def test_staged_names_encode_as_runs_per_writer() -> None:
    names = [f"{'a' * 16}-{s:010d}.parquet" for s in (0, 1, 2, 5, 7, 8)] + [f"{'b' * 16}-0000000003.parquet"]
    encoded = encode_names(names)
    assert encoded == f"{'a' * 16}:0-2,5,7-8;{'b' * 16}:3"
    assert decode_names(encoded) == {"a" * 16: [(0, 2), (5, 5), (7, 8)], "b" * 16: [(3, 3)]}
    with pytest.raises(ValueError):
        encode_names(["not-a-staged-file.parquet"])
