"""Real-time samples: the label join's rows, with their features as of the sample time, written
to an Iceberg sample table and a Kafka samples topic.

The compiled label join (:mod:`registry.sample_compiler`) feeds a vectorized Python UDF,
:class:`WriteSamples`, with rows of base columns, label, ``sample_ms``, ``sample_seq`` and
``label_ms``. For each batch it

1. keeps the first row per ``sample_seq`` (an impression clicked twice joins twice; a restarted
   job replays rows it wrote: those it remembers are dropped here, the rest by readers, who
   dedupe by ``sample_seq``);
2. waits until the feature groups of the same job that the sample table reads have written every
   version at or before the batch's newest sample time (their sinks report the watermark at which
   their operator emitted each version: ``ingestion.progress``), so a sample never sees a
   feature one version early; after ``settle_timeout_s`` it reads what is stored and counts the
   rows as *unsettled* (a source that stopped moving its watermark; a log line says which
   groups were behind). Tables that are not in the job are read as stored;
3. reads each feature table's values as of ``sample_ms`` from the versioned store (one multi-key
   ``get_as_of`` per table, the sample table's ``as_of`` rule and each table's TTL), the same
   rule the point-in-time export applies to the offline log;
4. appends the samples to the Iceberg sample table (:mod:`featurestore.offline.samples`) and produces each as
   a JSON object to the Kafka topic ``samples.<name>`` (the prefix is the profile's
   ``kafka.samples_topic_prefix``; keyed by the join key) for online
   learning, before the function returns: Flink's checkpoint waits for it (at-least-once).

This module imports PyFlink only in :func:`write_udf`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from featurestore.config import OfflineLogConfig
from featurestore.errors import StoreError
from featurestore.offline import samples as stored
from featurestore.offline.samples import SAMPLE_TIME, WRITTEN_AT
from featurestore.schema import TableSchema
from featurestore.types import arrow_type
from registry import rules
from registry.compiler import group_name
from registry.models import Definitions
from registry.sample_compiler import SAMPLE_MS, SAMPLE_SEQ, SamplePlan

from ingestion.progress import SAMPLES_GROUP, ProgressWriter, read_progress

logger = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class FeatureRead:
    """The features a sample table reads from one feature table."""

    table: str
    schema: TableSchema
    features: tuple[str, ...]
    wait_for: tuple[tuple[str, str], ...]  # (table, group) sinks of this job to wait for


@dataclass(frozen=True)
class SampleSinkSpec:
    """Everything a Python worker needs to finish and write one sample table's rows (picklable)."""

    name: str
    input_schema: pa.Schema  # the label join's columns, in the order the UDF receives them
    join_key: str
    reads: tuple[FeatureRead, ...]
    strict: bool
    retain_ms: int  # how long (event time) a sample's seq is remembered for dedupe
    versioned_store: str
    offline_log: OfflineLogConfig | None
    kafka_bootstrap: str | None
    progress_dir: str | None
    topic: str = ""
    settle_timeout_s: float = SETTLE_TIMEOUT_S
    write_start_ms: int | None = None  # samples outside [start, end) are not written
    write_end_ms: int | None = None
    parallelism: int | None = None  # the job's: how many instances report (ingestion.progress)

    def output_schema(self) -> pa.Schema:
        return output_schema(self.input_schema, self.reads)


def topic_name(sample_table: str, prefix: str = "samples.") -> str:
    return rules.topic_name(f"{prefix}{sample_table}")


def output_schema(input_schema: pa.Schema, reads: Sequence[FeatureRead]) -> pa.Schema:
    """A written sample: the label join's columns, the features (by name, in the sample table's
    order), ``sample_time`` and ``written_at``."""
    fields = list(input_schema)
    for read in reads:
        fields += [pa.field(f, arrow_type(read.schema.feature(f).dtype)) for f in read.features]
    fields += [pa.field(SAMPLE_TIME, pa.timestamp("us", tz="UTC")), pa.field(WRITTEN_AT, pa.timestamp("us", tz="UTC"))]
    return pa.schema(fields)


def sink_spec(
    definitions: Definitions,
    plan: SamplePlan,
    *,
    running: Mapping[str, Sequence[str]],
    versioned_store: str,
    offline_log: OfflineLogConfig | None,
    kafka_bootstrap: str | None,
    progress_dir: str | None,
    topic_prefix: str = "samples.",
    settle_timeout_s: float = SETTLE_TIMEOUT_S,
    write_start_ms: int | None = None,
    write_end_ms: int | None = None,
    parallelism: int | None = None,
) -> SampleSinkSpec:
    """The sink of ``plan``; ``running``: the feature tables of the job and their groups' names."""
    table = definitions.sample_table(plan.name)
    by_table: dict[str, list[str]] = {}
    for ref in table.features:
        table_name, feature = rules.split_ref(ref)
        by_table.setdefault(table_name, []).append(feature)
    reads = []
    for table_name, features in by_table.items():
        feature_table = definitions.feature_table(table_name)
        groups = {group_name(feature_table.feature(f).window_ms) for f in features}
        wait_for = tuple((table_name, g) for g in sorted(groups) if g in running.get(table_name, ()))
        reads.append(FeatureRead(table_name, definitions.table_schema(table_name), tuple(features), wait_for))
    lateness = max(definitions.source(table.base_source).allowed_lateness_ms,
                   definitions.source(table.label_source).allowed_lateness_ms)
    return SampleSinkSpec(
        name=plan.name,
        input_schema=plan.arrow_schema,
        join_key=table.join_key,
        reads=tuple(reads),
        strict=table.as_of == "strict",
        retain_ms=table.window_ms + lateness + 3_600_000,
        versioned_store=versioned_store,
        offline_log=offline_log,
        kafka_bootstrap=kafka_bootstrap,
        progress_dir=progress_dir,
        topic=topic_name(plan.name, topic_prefix),
        settle_timeout_s=settle_timeout_s,
        write_start_ms=write_start_ms,
        write_end_ms=write_end_ms,
        parallelism=parallelism,
    )


# ---------------------------------------------------------------------------------------------- the steps


class SeenSamples:
    """The ``sample_seq`` of samples written lately, forgotten ``retain_ms`` (event time) after the
    newest sample time seen: a second join row of one sample comes at most a window plus the
    allowed lateness after it."""

    def __init__(self, retain_ms: int) -> None:
        self.retain_ms = retain_ms
        self._seen: dict[int, int] = {}
        self._newest: int | None = None

    def keep_new(self, batch: pa.Table) -> pa.Table:
        seqs = batch.column(SAMPLE_SEQ).to_pylist()
        times = batch.column(SAMPLE_MS).to_pylist()
        keep = []
        for i, (seq, t) in enumerate(zip(seqs, times, strict=True)):
            if seq not in self._seen:
                self._seen[seq] = t
                keep.append(i)
        newest = max(times, default=None)
        if newest is not None and (self._newest is None or newest > self._newest):
            self._newest = newest
            horizon = newest - self.retain_ms
            if len(self._seen) > 1024:
                self._seen = {s: t for s, t in self._seen.items() if t >= horizon}
        return batch if len(keep) == batch.num_rows else batch.take(pa.array(keep, pa.int64()))


def wait_for_features(spec: SampleSinkSpec, needed_ms: int, *, poll_s: float = 0.05) -> list[str]:
    """Wait until every group in ``spec.reads[*].wait_for`` has written through ``needed_ms``;
    returns the groups still behind after ``spec.settle_timeout_s`` (empty: settled)."""
    groups = [g for read in spec.reads for g in read.wait_for]
    if not groups or spec.progress_dir is None:
        return []
    deadline = time.monotonic() + spec.settle_timeout_s
    while True:
        marks = read_progress(spec.progress_dir).watermark_ms  # a closed group is complete
        behind = [g for g in groups if (mark := marks.get(g)) is None or mark < needed_ms]
        if not behind or time.monotonic() >= deadline:
            return [".".join(g) for g in behind]
        time.sleep(poll_s)


def attach_features(spec: SampleSinkSpec, store: Any, batch: pa.Table) -> pa.Table:
    """``batch`` with each read's features as of ``sample_ms`` from the versioned store."""
    times = batch.column(SAMPLE_MS).to_pylist()
    for read in spec.reads:
        keys = batch.select(list(read.schema.key_names))
        values = store.get_as_of(read.table, keys, times, list(read.features), strict=spec.strict)
        for feature in read.features:
            batch = batch.append_column(read.schema.feature(feature).name, values.column(feature))
    return batch


def finish(spec: SampleSinkSpec, batch: pa.Table, *, written_at_us: int | None = None) -> pa.Table:
    """The written layout (:func:`output_schema`): ``sample_time`` and ``written_at`` added."""
    now = written_at_us if written_at_us is not None else time.time_ns() // 1000
    schema = spec.output_schema()
    sample_time = pc.multiply(batch.column(SAMPLE_MS), 1000).cast(pa.timestamp("us", tz="UTC"))
    batch = batch.append_column(SAMPLE_TIME, sample_time)
    batch = batch.append_column(WRITTEN_AT, pa.repeat(pa.scalar(now, pa.int64()), batch.num_rows)
                                .cast(pa.timestamp("us", tz="UTC")))
    return batch.select(schema.names).cast(schema)


def in_range(spec: SampleSinkSpec, batch: pa.Table) -> pa.Table:
    mask = None
    times = batch.column(SAMPLE_MS)
    if spec.write_start_ms is not None:
        mask = pc.greater_equal(times, spec.write_start_ms)
    if spec.write_end_ms is not None:
        upper = pc.less(times, spec.write_end_ms)
        mask = upper if mask is None else pc.and_(mask, upper)
    return batch if mask is None else batch.filter(mask)


def ensure_table(spec: SampleSinkSpec) -> None:
    """Create the spec's Iceberg sample table (in the driver, before the job starts)."""
    if spec.offline_log is not None:
        stored.ensure_table(spec.offline_log, spec.name, spec.output_schema())


# ---------------------------------------------------------------------------------------------- Kafka


def to_json_records(spec: SampleSinkSpec, batch: pa.Table) -> list[tuple[bytes, bytes]]:
    """(key, value) per sample: the join key's text and the sample as a JSON object (times in ms)."""
    records = []
    columns = [c for c in batch.column_names if c not in (SAMPLE_TIME, WRITTEN_AT)]
    for row in batch.select(columns).to_pylist():
        key = row[spec.join_key]
        records.append((b"" if key is None else str(key).encode(), json.dumps(row, default=str).encode()))
    return records


def write_udf(spec: SampleSinkSpec) -> Any:
    """The vectorized UDF finishing and writing ``spec``'s samples; returns 1 per input row."""
    import pandas as pd
    from pyflink.table import DataTypes
    from pyflink.table.udf import FunctionContext, ScalarFunction, udf

    class WriteSamples(ScalarFunction):  # type: ignore[misc]
        def __init__(self, spec: SampleSinkSpec) -> None:
            self.spec = spec
            self._store: Any = None
            self._producer: Any = None
            self._progress: ProgressWriter | None = None
            self._seen = SeenSamples(spec.retain_ms)
            self._unsettled = 0

        def open(self, function_context: FunctionContext) -> None:
            from featurestore.storage.versioned import open_versioned_store

            self._store = open_versioned_store(self.spec.versioned_store)
            if self.spec.kafka_bootstrap:
                from confluent_kafka import Producer

                self._producer = Producer({"bootstrap.servers": self.spec.kafka_bootstrap,
                                           "enable.idempotence": True, "linger.ms": 5})
            if self.spec.progress_dir is not None:
                self._progress = ProgressWriter(
                    self.spec.progress_dir, self.spec.name, SAMPLES_GROUP, parallelism=self.spec.parallelism
                )

        def eval(self, *columns: pd.Series) -> pd.Series:
            rows = len(columns[0])
            schema = self.spec.input_schema
            arrays = [pa.Array.from_pandas(c).cast(f.type) for c, f in zip(columns, schema, strict=True)]
            batch = in_range(self.spec, self._seen.keep_new(pa.Table.from_arrays(arrays, schema=schema)))
            if batch.num_rows:
                needed = int(pc.max(batch.column(SAMPLE_MS)).as_py())
                if self.spec.strict:
                    needed -= 1
                behind = wait_for_features(self.spec, needed)
                if behind:
                    self._unsettled += batch.num_rows
                    logger.warning("samples of %s at %d: feature groups %s had not written through it after "
                                   "%.0f s; read as stored", self.spec.name, needed, ", ".join(behind),
                                   self.spec.settle_timeout_s)
                done = finish(self.spec, attach_features(self.spec, self._store, batch))
                if self.spec.offline_log is not None:
                    stored.append(self.spec.offline_log, self.spec.name, done)
                if self._producer is not None:
                    self._produce(done)
                if self._progress is not None:
                    self._progress.add(done.num_rows, needed)
            return pd.Series([1] * rows, dtype="int64")

        def _produce(self, batch: pa.Table) -> None:
            errors: list[str] = []

            def report(error: Any, _message: Any) -> None:
                if error is not None:
                    errors.append(str(error))

            for key, value in to_json_records(self.spec, batch):
                while True:
                    try:
                        self._producer.produce(self.spec.topic, value=value, key=key, on_delivery=report)
                        break
                    except BufferError:
                        self._producer.poll(0.1)
            left = self._producer.flush(30)
            if errors or left:
                raise StoreError(f"samples of {self.spec.name!r}: {left} not delivered to Kafka topic "
                                 f"{self.spec.topic!r}; {errors[:1]}")

        def close(self) -> None:
            if self._unsettled:
                logger.warning("%d samples of %s were written before their features settled",
                               self._unsettled, self.spec.name)
            if self._progress is not None:
                self._progress.close()
            if self._store is not None:
                self._store.close()
                self._store = None

    return udf(WriteSamples(spec), result_type=DataTypes.BIGINT(), func_type="pandas")
