"""The sink of the ingestion job: each Arrow batch of versions written to the three stores.

PyFlink has no Python sink API, so each window group's query feeds a *vectorized* (pandas) Python
UDF, :class:`WriteVersions`, that writes the batch it receives synchronously, then returns the
row count to a ``blackhole`` table. Flink finishes in-flight Python bundles before a checkpoint
completes, so every version of a checkpointed position has been written: delivery is
at-least-once, and a replay after a restart rewrites versions that are already there:

* versioned store: puts at explicit event-time timestamps are idempotent;
* online cache: a write lands only when newer by (version time, seq), so a replay never regresses;
* offline log: each batch is staged durably as a Parquet file before the function returns, and
  one :class:`featurestore.offline.staging.StagedAppender` per feature table and process (shared
  by the table's window groups) commits the staged files to Iceberg every few seconds in one
  commit, instead of one contended commit per batch per group; a staged file is committed exactly
  once, even after a crash (the next appender commits what was left). A replayed batch may be
  staged twice; readers dedupe by version key (``OfflineTable.scan(dedupe=True)``; the
  point-in-time engine picks the same value from duplicates), so duplicates are never visible.

Arrow batch size and bundle size come from ``FlinkConfig`` (10k / 100k by default: the measured
sweet spot, see shared notes). This module imports PyFlink at import time: only the job runner
imports it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from featurestore.config import OfflineLogConfig
from featurestore.errors import NotFoundError, TransientError
from featurestore.schema import VERSION_MS, TableSchema
from featurestore.shared import Shared
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinkSpec:
    """Everything a Python worker needs to write one group's versions (picklable)."""

    schema: TableSchema
    columns: tuple[str, ...]  # the group's columns, in the order the UDF receives them
    versioned_store: str | None
    online_cache: str | None
    offline_log: OfflineLogConfig | None
    progress_dir: str | None = None  # where to report rows written (ingestion.progress)
    group: str = ""
    parallelism: int | None = None  # the job's: how many instances report (ingestion.progress)
    #: the UDF gets one more argument after ``columns``: the operator's watermark when it emitted
    #: the row (``registry.compiler.WATERMARK``), reported to the progress directory
    watermark: bool = False
    retry_s: float = 120.0  # how long a write retries an unreachable store before the job fails
    #: versions at or after this time are not written, but their watermark is reported: a bounded
    #: job's last versions (window expiries fired by the final watermark, after the write range)
    #: tell the job's sample sinks that the group has written everything before the range's end
    write_end_ms: int | None = None

    def arrow_schema(self) -> pa.Schema:
        full = self.schema.arrow_schema()
        return pa.schema([full.field(c).with_nullable(True) for c in self.columns])


class WriteVersions(ScalarFunction):  # type: ignore[misc]
    """Writes each batch of one group's versions to the configured stores; returns 1 per row."""

    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec
        self._store: Any = None
        self._online: Any = None
        self._offline: Any = None
        self._progress: Any = None

    def open(self, function_context: FunctionContext) -> None:
        from featurestore.offline.log import OfflineLog
        from featurestore.storage.online import open_online_cache
        from featurestore.storage.versioned import open_versioned_store

        # The tables exist: `prepare_stores` created them in the driver, once, before the job
        # started (many workers creating one table at the same time race in HBase and the catalog).
        spec = self.spec
        if spec.versioned_store:
            self._store = open_versioned_store(spec.versioned_store)
        if spec.online_cache:
            self._online = open_online_cache(spec.online_cache)
        if spec.offline_log is not None:
            from featurestore.offline.staging import StagedAppender

            table = OfflineLog(spec.offline_log).table(spec.schema)
            self._offline = _APPENDERS.acquire(_appender_key(table), lambda: StagedAppender(table))
        if spec.progress_dir is not None:
            from ingestion.progress import ProgressWriter

            self._progress = ProgressWriter(
                spec.progress_dir, spec.schema.name, spec.group, parallelism=spec.parallelism
            )

    def eval(self, *columns: pd.Series) -> pd.Series:
        watermark_ms = None
        if self.spec.watermark:
            watermark_ms = max_millis(columns[-1])
            columns = columns[:-1]
        batch = to_arrow(self.spec, columns)
        through = written_through(watermark_ms, pc.max(batch.column(VERSION_MS)).as_py()) if len(batch) else None
        if self.spec.write_end_ms is not None:
            batch = batch.filter(pc.less(batch.column(VERSION_MS), self.spec.write_end_ms))
        if batch.num_rows:
            if self._store is not None:
                self._retrying("versioned store", lambda: self._store.put(self.spec.schema.name, batch))
            if self._online is not None:
                self._retrying("online cache", lambda: self._write_online(batch))
            if self._offline is not None:
                self._offline.add(batch)
        if self._progress is not None and through is not None:
            newest = pc.max(batch.column(VERSION_MS)).as_py() if batch.num_rows else None
            self._progress.add(batch.num_rows, newest, through)
        return pd.Series([1] * len(columns[0]), dtype="int64")

    def _write_online(self, batch: pa.Table) -> None:
        try:
            self._online.write(self.spec.schema.name, batch)
        except NotFoundError:
            # The cache restarted empty (no persistence: it is a cache) and lost the table's
            # definition with the values, before this process had read it; the sink has the
            # definition: restore it and write, rather than fail the job into a restart for what a
            # cache is allowed to forget. (A restart after this process read it: every write
            # restores the definition if it is gone, see RedisCache._apply.)
            self._online.ensure_table(self.spec.schema)
            self._online.write(self.spec.schema.name, batch)

    def _retrying(self, store: str, write: Callable[[], object]) -> None:
        """``write()``, retried with a doubling backoff (0.5 s to 8 s) while the store is unreachable
        (a :class:`TransientError`: a server down or restarting), for up to ``spec.retry_s``; each
        failure is reported to the progress directory (``featurestore ingest status`` shows it).
        Writes are idempotent, so a batch written twice is no duplicate. After ``retry_s`` the
        error fails the job, which Flink restarts from its last checkpoint."""
        delay = 0.5
        deadline = time.monotonic() + self.spec.retry_s
        while True:
            try:
                write()
                if self._progress is not None and self._progress.error is not None:
                    self._progress.report_error(None)  # recovered
                return
            except TransientError as exc:
                if self._progress is not None:
                    self._progress.report_error(f"{store}: {exc}")
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning("writing %s to the %s failed, retrying in %.1f s: %s",
                               self.spec.schema.name, store, delay, exc)
                time.sleep(delay)
                delay = min(8.0, delay * 2)

    def close(self) -> None:
        try:
            if self._offline is not None:
                offline, self._offline = self._offline, None
                _APPENDERS.release(_appender_key(offline.table))  # the last group flushes and commits
        finally:
            if self._progress is not None:
                self._progress.close()
            for store in (self._store, self._online):
                if store is not None:
                    store.close()
            self._store = self._online = None


# One staged appender per offline table in this process, shared by the sink functions (one per
# window group) that write it; the last to close flushes and commits.
_APPENDERS: Any = Shared(close=lambda appender: appender.close())


def _appender_key(table: Any) -> tuple[str, str, str]:
    config = table.log.config
    return (config.catalog_uri, config.warehouse, table.schema.name)


def prepare_stores(spec: SinkSpec) -> None:
    """Create (or extend) the table in every store the spec writes to; run once, in the driver."""
    from featurestore.offline.log import OfflineLog
    from featurestore.storage.online import open_online_cache
    from featurestore.storage.versioned import open_versioned_store

    if spec.versioned_store:
        store = open_versioned_store(spec.versioned_store)
        store.ensure_table(spec.schema)
        store.close()
    if spec.online_cache:
        online = open_online_cache(spec.online_cache)
        online.ensure_table(spec.schema)
        online.close()
    if spec.offline_log is not None:
        OfflineLog(spec.offline_log).ensure_table(spec.schema)


def written_through(watermark_ms: int | None, newest_ms: int | None) -> int | None:
    """The time through which a group has emitted every version, from one batch: the operator's
    watermark carried by its rows, or one ms before its newest version, whichever is later.

    The second holds because a window group's operator (the incremental operator's timers, Flink's
    OVER on row time) emits versions in ascending time, and the sink gets them in that order; it
    matters when a burst of versions is the last for a while: their rows carry the watermark from
    *before* the advance that released them (null right after a restore), and no later row would
    report the new one."""
    candidates = [t for t in (watermark_ms, None if newest_ms is None else newest_ms - 1) if t is not None]
    return max(candidates, default=None)


def max_millis(timestamps: pd.Series) -> int | None:
    """The newest of a column of TIMESTAMP_LTZ values (pandas datetimes, NaT for null) in epoch ms."""
    array = pa.Array.from_pandas(timestamps)
    if not pa.types.is_timestamp(array.type):
        array = array.cast(pa.timestamp("ms", tz="UTC"))
    newest = pc.max(array.cast(pa.timestamp("ms", tz="UTC")).cast(pa.int64())).as_py()
    return None if newest is None else int(newest)


def to_arrow(spec: SinkSpec, columns: Sequence[pd.Series]) -> pa.Table:
    """The pandas columns PyFlink hands over as an Arrow table of the group's storage types.

    Integer columns with nulls arrive as floats with NaN; ``from_pandas`` turns NaN into null and
    the cast restores the integer type."""
    target = spec.arrow_schema()
    arrays = [pa.Array.from_pandas(column).cast(field.type) for column, field in zip(columns, target, strict=True)]
    return pa.Table.from_arrays(arrays, schema=target)


def write_udf(spec: SinkSpec) -> Any:
    """The vectorized UDF writing ``spec``'s group."""
    return udf(WriteVersions(spec), result_type=DataTypes.BIGINT(), func_type="pandas")
