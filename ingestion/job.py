"""The ingestion job: the registry's feature tables, compiled for their Kafka binding (live) or
their history replay (backfill), running on Flink, writing every version to the versioned store,
the latest to the online cache and every version to the offline log.

One job for all tables: per feature table the compiled plan's source declarations, and per window
group ``INSERT INTO <blackhole> SELECT <write UDF>(<group columns>) FROM (<group query>)``
(:mod:`ingestion.store_sink`). Live and backfill jobs differ only in the source of the plan and
in an optional :class:`WriteRange` (a backfill writes the versions of its days only; the weeks
before them are replayed to warm the windows). Flink configuration comes from the profile's
``flink`` section: local MiniCluster or a remote cluster, parallelism, checkpoints (RocksDB
state, at-least-once sinks), restarts, and the Arrow batch / bundle sizes of the Python hand-off.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from featurestore.config import FlinkConfig, ProfileConfig
from featurestore.errors import ConfigError, TerminalError, ValidationError
from featurestore.schema import VERSION_MS
from featurestore.time_semantics import parse_duration_ms
from registry.compiler import WATERMARK, CompiledPlan, Handover, compile_table
from registry.flink_sql import q
from registry.models import Definitions, Source
from registry.replay_binding import ReplaySpec
from registry.sample_compiler import compile_samples

from ingestion.progress import Progress, read_progress, remove, wait_closed
from ingestion.runner import execute_inserts, table_environment

# How long a finished job's sink functions may take to close (commit their last offline batch).
CLOSE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class WriteRange:
    """The versions a job writes: ``start_ms <= version_ms < end_ms`` (None: unbounded)."""

    start_ms: int | None = None
    end_ms: int | None = None

    def where(self) -> str:
        parts = []
        if self.start_ms is not None:
            parts.append(f"{q(VERSION_MS)} >= {int(self.start_ms)}")
        if self.end_ms is not None:
            parts.append(f"{q(VERSION_MS)} < {int(self.end_ms)}")
        return " AND ".join(parts) or "TRUE"


def flink_options(flink: FlinkConfig) -> dict[str, str]:
    """Flink configuration of a job from the profile: checkpoints, the Python hand-off, the target."""
    checkpoint_dir = flink.checkpoint_dir if "://" in flink.checkpoint_dir else Path(flink.checkpoint_dir).as_uri()
    options = {
        "execution.checkpointing.interval": f"{parse_duration_ms(flink.checkpoint_interval)} ms",
        "execution.checkpointing.dir": checkpoint_dir,
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "state.backend.type": flink.state_backend,
        "python.executable": flink.python_executable or sys.executable,
        "python.client.executable": flink.python_executable or sys.executable,
        "python.fn-execution.arrow.batch.size": str(flink.arrow_batch_size),
        "python.fn-execution.bundle.size": str(flink.bundle_size),
        "python.fn-execution.bundle.time": str(_bundle_time_ms(flink)),
        # Flink's default with checkpoints is to restart forever: a sink that cannot write (a store
        # down for good, a table missing) would look like a job that hangs. Give up after a few.
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(flink.restart_attempts),
        "restart-strategy.fixed-delay.delay": f"{parse_duration_ms(flink.restart_delay)} ms",
    }
    if flink.mode == "local" and flink.managed_memory is not None:
        # A MiniCluster gets 128 MB of managed memory unless told: RocksDB's block cache and write
        # buffers for every stateful operator of the job come out of it (docs/compiler.md: the
        # plan alone at RocksDB, 348k clicks, 170.8 -> 141.5 s with 1 GB and object reuse)
        options["taskmanager.memory.managed.size"] = flink.managed_memory
    options.update(target_options(flink))
    options.update({key: _flink_value(value) for key, value in flink.options.items()})
    return options


def _flink_value(value: str | int | float | bool) -> str:
    """A profile's YAML value as Flink's configuration text (``true``, not ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _bundle_time_ms(flink: FlinkConfig) -> int:
    millis = parse_duration_ms(flink.bundle_time, what="flink.bundle_time")
    if millis <= 0:  # Flink refuses it only when the Python operators open, deep in a job's failure
        raise ConfigError(f"flink.bundle_time must be longer than 0, got {flink.bundle_time!r}", hint="e.g. 100ms")
    return millis


def target_options(flink: FlinkConfig) -> dict[str, str]:
    """Where a job runs: the session cluster at ``flink.address`` with ``mode: remote`` (none: the
    local MiniCluster)."""
    if flink.mode != "remote":
        return {}
    if not flink.address or ":" not in flink.address:
        raise ConfigError("flink.mode is remote but flink.address is not host:port of the JobManager's REST API")
    host, port = flink.address.rsplit(":", 1)
    return {"execution.target": "remote", "rest.address": host, "rest.port": port}


@dataclass
class IngestJob:
    """A submitted ingestion job: its plans, Flink's TableResult (``wait()`` for bounded runs) and
    the directory its sinks report their progress to (:mod:`ingestion.progress`)."""

    plans: list[CompiledPlan]
    result: Any
    progress_dir: str
    owns_progress_dir: bool = False  # made by submit(), removed once the job has ended
    samples: tuple[str, ...] = ()  # the sample tables the job produces

    @property
    def job_id(self) -> str:
        client = self.result.get_job_client()
        return str(client.get_job_id()) if client is not None else ""

    def progress(self) -> Progress:
        """What the sinks have written so far."""
        return read_progress(self.progress_dir)

    def wait(self, close_timeout_s: float = CLOSE_TIMEOUT_S) -> Progress:
        """Wait for a bounded job to end and its sinks to close (everything they wrote committed);
        the final progress. A failed job raises :class:`TerminalError` with its cause."""
        try:
            self.result.wait()
        except Exception as exc:  # Py4JJavaError: pages of Java and Python traces
            self._done(0.0)
            raise job_failure(exc) from exc
        return self._done(close_timeout_s)

    def wait_watching(self, on_progress: Callable[[Progress], None], poll_s: float = 1.0) -> Progress:
        """:meth:`wait`, calling ``on_progress`` with what the sinks have written every ``poll_s``
        seconds while the job runs (a progress display, a benchmark's timeline); the final progress."""
        outcome: list[Progress | BaseException] = []

        def wait() -> None:
            try:
                outcome.append(self.wait())
            except BaseException as exc:  # re-raised in the caller's thread
                outcome.append(exc)

        waiter = threading.Thread(target=wait, name="job-wait", daemon=True)
        waiter.start()
        while True:
            waiter.join(poll_s)
            if not waiter.is_alive():
                break
            on_progress(self.progress())
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]

    def cancel(self) -> None:
        client = self.result.get_job_client()
        if client is not None:
            client.cancel().result()
        self._done(10.0)

    def _done(self, close_timeout_s: float) -> Progress:
        progress = wait_closed(self.progress_dir, close_timeout_s) if close_timeout_s else self.progress()
        if self.owns_progress_dir:
            remove(self.progress_dir)
        return progress


_CAUSE = re.compile(r"((?:featurestore\.errors\.)?[A-Za-z]+Error: .+|hdfs-replay: .+)")


def job_failure(exc: BaseException) -> TerminalError:
    """A failed Flink job as one sentence: the last error a sink or the replay source raised (the
    innermost cause of Flink's trace), else the last error-like line, else the trace's last line."""
    lines = str(exc).splitlines()
    causes = [m.group(1).strip() for line in lines if (m := _CAUSE.search(line))]
    ours = [c for c in causes if c.startswith(("featurestore.errors.", "hdfs-replay:"))]
    reason = (ours or causes or lines or ["unknown error"])[-1].removeprefix("featurestore.errors.")
    return TerminalError(f"the Flink job failed: {reason}", hint="the Flink log (pyflink/log/) has the full trace")


def tables_with_binding(
    definitions: Definitions, binding: Literal["stream", "batch"], tables: Sequence[str] | None = None
) -> list[str]:
    """The feature tables to run: the named ones (each must have the binding) or all that have it."""
    names = list(tables) if tables else [t.name for t in definitions.feature_tables]
    what = "stream binding" if binding == "stream" else "batch binding (history)"
    chosen = []
    for name in names:
        table = definitions.feature_table(name)
        source = definitions.source(table.source)
        if (source.stream if binding == "stream" else source.batch) is None:
            if tables:
                raise ValidationError(f"feature table {name!r} reads source {table.source!r}, which has no {what}")
            continue
        chosen.append(name)
    if not chosen:
        raise ValidationError(f"no feature table to run: none has a source with a {what}")
    return chosen


def streamable_tables(definitions: Definitions, tables: Sequence[str] | None = None) -> list[str]:
    """The feature tables to ingest live: the named ones or all with a stream binding."""
    return tables_with_binding(definitions, "stream", tables)


@dataclass(frozen=True)
class History:
    """A backfill's input: the history of ``[replay_from_ms, end_ms)`` replayed (the warm-up
    before ``WriteRange.start_ms`` included), ``partitions`` replay partitions (None: the topic's).
    The rows from ``paced_from_ms`` on (None: all) can be paced, so history stands in for a live
    stream: ``events_per_second`` per replayed source, or ``speed_up`` times faster than they
    happened, in event time (each source from the end of its own warm-up)."""

    replay_from_ms: int
    end_ms: int
    partitions: int | None = None
    events_per_second: float | None = None
    speed_up: float | None = None
    paced_from_ms: int | None = None

    def replay_spec(self, key_fields: tuple[str, ...]) -> ReplaySpec:
        return ReplaySpec(
            key_fields=key_fields, start_ms=self.replay_from_ms, end_ms=self.end_ms, partitions=self.partitions,
            events_per_second=self.events_per_second, speed_up=self.speed_up, rate_from_ms=self.paced_from_ms,
        )


def submit(
    config: ProfileConfig,
    definitions: Definitions,
    tables: Sequence[str] | None = None,
    *,
    bounded: bool = False,
    history: History | None = None,
    write_range: WriteRange | None = None,
    jars: Sequence[str] | None = None,
    extra_options: dict[str, str] | None = None,
    progress_dir: str | None = None,
    handover_ms: int | None = None,
    samples: Sequence[str] | None = None,
) -> IngestJob:
    """Compile the tables and submit one job writing to the profile's stores.

    ``samples``: the sample tables the job produces too (:mod:`ingestion.samples`); by default
    every sample table whose sources have the job's binding when ``tables`` is None, else none.

    Live (``history`` None): the Kafka binding; ``bounded`` stops at the offsets that are latest
    when the job starts (tests, catch-up runs). Backfill: the replay of ``history`` from the
    profile's history root. ``write_range`` keeps the versions the job writes to a time range.
    ``progress_dir``: where the sinks report what they wrote (:mod:`ingestion.progress`); by
    default a temporary directory the job removes when it ends.
    ``handover_ms`` (live only): continue a backfill that wrote versions up to this time: the
    windows are warmed from the profile's history before it, Kafka is read from it on, and only
    versions at or after it are written (:class:`registry.compiler.Handover`).
    """
    if history is None and config.kafka is None:
        raise ConfigError(
            "the profile has no kafka section, so there is no stream to ingest",
            hint="use the cluster profile (featurestore services up) or set kafka.bootstrap_servers",
        )
    if handover_ms is not None and history is not None:
        raise ConfigError("a hand-over is a live job: give handover_ms or history, not both")
    options = {**flink_options(config.flink), **(extra_options or {})}

    def build(directory: str) -> IngestJob:
        return _submit(
            config, definitions, tables, options, directory, bounded, history, write_range, jars, handover_ms,
            sample_tables(definitions, "stream" if history is None else "batch", samples, default=tables is None),
        )

    if progress_dir is not None:
        return build(progress_dir)
    owned = tempfile.mkdtemp(prefix="featurestore-job-")
    try:
        job = build(owned)
    except BaseException:
        remove(owned)  # nothing ran: the directory goes with the error
        raise
    job.owns_progress_dir = True
    return job


def _submit(
    config: ProfileConfig,
    definitions: Definitions,
    tables: Sequence[str] | None,
    options: dict[str, str],
    progress_dir: str,
    bounded: bool,
    history: History | None,
    write_range: WriteRange | None,
    jars: Sequence[str] | None,
    handover_ms: int | None,
    samples: Sequence[str] = (),
) -> IngestJob:
    from ingestion.store_sink import SinkSpec, prepare_stores, write_udf  # loads PyFlink

    env = table_environment(jars, config.flink.parallelism, options)
    parallelism = int(options.get("parallelism.default", config.flink.parallelism))
    inserts: list[str] = []
    if handover_ms is not None:
        write_range = WriteRange(handover_ms, write_range.end_ms if write_range is not None else None)
    window = write_range or WriteRange()
    # The range's start is a filter in the plan: the warm-up's versions never reach Python. Its
    # end is the sink's (SinkSpec.write_end_ms), which reports the watermark of what it drops.
    where = WriteRange(window.start_ms).where()
    plans = []
    reported: set[str] = set()  # sources whose decode errors a plan already reports
    for name in tables_with_binding(definitions, "stream" if history is None else "batch", tables):
        feature_table = definitions.feature_table(name)
        plan = _compile(config, definitions, name, bounded=bounded, history=history, handover_ms=handover_ms)
        for ddl in plan.statements():
            env.execute_sql(ddl)
        if plan.raw_table is not None:  # a Kafka binding: its dead letters
            inserts += _dead_letters(env, config, definitions.source(feature_table.source), plan, reported)
        for group in plan.groups:
            columns = tuple(group.arrow_schema.names)
            spec = SinkSpec(
                schema=plan.schema,
                columns=columns,
                versioned_store=config.versioned_store if feature_table.online or feature_table.offline else None,
                online_cache=config.online_cache if feature_table.online and _reachable(config) else None,
                offline_log=config.offline_log if feature_table.offline else None,
                progress_dir=progress_dir,
                group=group.name,
                watermark=True,
                parallelism=parallelism,
                write_end_ms=window.end_ms,
            )
            if group is plan.groups[0]:
                prepare_stores(spec)
            function = f"__write_{name}_{group.name}"
            sink = f"__done_{name}_{group.name}"
            env.create_temporary_function(function, write_udf(spec))
            env.execute_sql(f"CREATE TEMPORARY TABLE {q(sink)} (n BIGINT) WITH ('connector' = 'blackhole')")
            arguments = ", ".join(q(c) for c in (*columns, WATERMARK))
            inserts.append(
                f"INSERT INTO {q(sink)} SELECT {q(function)}({arguments}) FROM (\n"
                f"{group.select_with_watermark}\n) WHERE {where}"
            )
        plans.append(plan)
    running = {plan.table: [g.name for g in plan.groups] for plan in plans}
    for name in samples:
        inserts.append(
            _samples(env, config, definitions, name, running, progress_dir, bounded, history, write_range, parallelism)
        )
    return IngestJob(plans, execute_inserts(env, inserts), progress_dir, samples=tuple(samples))


def sample_tables(
    definitions: Definitions, binding: Literal["stream", "batch"], names: Sequence[str] | None, *, default: bool
) -> list[str]:
    """The sample tables a job produces: ``names`` (each must have both sources bound), else, when
    ``default``, every sample table whose base and label sources have the binding."""
    def bound(source: str) -> bool:
        found = definitions.source(source)
        return (found.stream if binding == "stream" else found.batch) is not None

    if names is None:
        if not default:
            return []
        return [t.name for t in definitions.sample_tables if bound(t.base_source) and bound(t.label_source)]
    for name in names:
        table = definitions.sample_table(name)
        for source in (table.base_source, table.label_source):
            if not bound(source):
                raise ValidationError(f"sample table {name!r} reads source {source!r}, which has no {binding} binding")
    return list(names)


def _samples(
    env: Any,
    config: ProfileConfig,
    definitions: Definitions,
    name: str,
    running: dict[str, list[str]],
    progress_dir: str,
    bounded: bool,
    history: History | None,
    write_range: WriteRange | None,
    parallelism: int,
) -> str:
    """Declare sample table ``name``'s label join and its sink; returns the INSERT."""
    from featurestore.kafka_topics import create_topic

    from ingestion import samples

    if history is None:
        assert config.kafka is not None
        plan = compile_samples(definitions, name, "stream", kafka_bootstrap=config.kafka.bootstrap_servers,
                               bounded=bounded)
    else:
        replay = history.replay_spec((definitions.sample_table(name).join_key,))
        if write_range is not None and write_range.start_ms is not None and replay.start_ms is not None:
            # A sample's time is its base event's: the windows' warm-up before the range is no use
            # to the label join, which sees only events from the range's start on.
            replay = dataclasses.replace(replay, start_ms=max(replay.start_ms, write_range.start_ms))
        plan = compile_samples(definitions, name, "batch", history_root=config.history, replay=replay)
    for ddl in plan.statements():
        env.execute_sql(ddl)
    bootstrap = config.kafka.bootstrap_servers if config.kafka is not None else None
    window = write_range or WriteRange()
    spec = samples.sink_spec(
        definitions, plan, running=running, versioned_store=config.versioned_store,
        offline_log=config.offline_log, kafka_bootstrap=bootstrap, progress_dir=progress_dir,
        topic_prefix=config.kafka.samples_topic_prefix if config.kafka is not None else "samples.",
        write_start_ms=window.start_ms, write_end_ms=window.end_ms, parallelism=parallelism,
    )
    samples.ensure_table(spec)
    if bootstrap is not None:
        create_topic(bootstrap, spec.topic, exist_ok=True)
    function, sink = f"__write_samples_{name}", f"__samples_done_{name}"
    env.create_temporary_function(function, samples.write_udf(spec))
    env.execute_sql(f"CREATE TEMPORARY TABLE {q(sink)} (n BIGINT) WITH ('connector' = 'blackhole')")
    arguments = ", ".join(q(c) for c in plan.arrow_schema.names)
    return f"INSERT INTO {q(sink)} SELECT {q(function)}({arguments}) FROM (\n{plan.select}\n)"


def _dead_letters(
    env: Any, config: ProfileConfig, source: Source, plan: CompiledPlan, reported: set[str]
) -> list[str]:
    """Declare the plan's dead letters (docs/dead-letters.md): its late events and, for the first
    plan of each source, the records that do not decode, to ``<topic>.dead-letters`` and the
    Iceberg table; returns the INSERTs."""
    from ingestion import dead_letters

    assert config.kafka is not None and plan.raw_table is not None
    dead = dead_letters.dead_letter_plan(
        source,
        feature_table=plan.table,
        events_table=plan.events_table,
        raw=plan.raw_table,
        kafka_bootstrap=config.kafka.bootstrap_servers,
        decode_errors=source.name not in reported,
    )
    reported.add(source.name)
    dead_letters.ensure_topic(config.kafka.bootstrap_servers, dead.topic)
    if dead.function is not None:
        dead_letters.ensure_table(config.offline_log)
        env.create_temporary_function(dead.function, dead_letters.write_udf(config.offline_log))
    for ddl in dead.statements:
        env.execute_sql(ddl)
    return list(dead.inserts)


def _reachable(config: ProfileConfig) -> bool:
    """Whether the job's workers can write the profile's online cache: ``memory://`` is the memory
    of the process that opened it, which a Flink worker is not; readers of a local profile fall
    back to the versioned store (counted as cache misses) or warm the cache with the preloader."""
    return not config.online_cache.startswith("memory://")


def _compile(
    config: ProfileConfig,
    definitions: Definitions,
    name: str,
    *,
    bounded: bool,
    history: History | None,
    handover_ms: int | None,
) -> CompiledPlan:
    if history is None:
        assert config.kafka is not None  # submit checked
        bootstrap = config.kafka.bootstrap_servers
        handover = None if handover_ms is None else Handover(config.history, handover_ms)
        return compile_table(
            definitions, name, "stream", kafka_bootstrap=bootstrap, bounded=bounded, handover=handover
        )
    replay = history.replay_spec(tuple(definitions.table_schema(name).key_names))
    return compile_table(definitions, name, "batch", history_root=config.history, replay=replay)
