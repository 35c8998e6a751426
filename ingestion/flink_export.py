"""The point-in-time join as a Flink batch job: ``featurestore export --engine flink``.

The same join as the DuckDB engine (:mod:`featurestore.pit.query`), planned the same way
(:class:`featurestore.pit.engine.JoinPlan`: feature refs, write groups, output names), run as one
Flink job over the Parquet files of the feature log, so it scales out with the cluster: the
samples and each table's versions are one stream, partitioned by the entity key and sorted by
time, and a sample takes, per write group, the newest version before it.

Per feature table the job computes, over ``samples UNION ALL versions``::

    LAST_VALUE(x) OVER (PARTITION BY <key> ORDER BY t, tag, seq ROWS UNBOUNDED PRECEDING)

where ``t`` is the version time or the sample time, ``tag`` orders a sample after the versions
of its own time (inclusive: ``version_ms <= T``) or before them (strict: ``< T``), and ``seq``
breaks ties between versions of one time, the highest winning, as ``pick_version`` does.
``LAST_VALUE`` skips nulls, and a version's row is the only one that sets a group's columns, so
``LAST_VALUE(version_ms of group g)`` is the version the sample sees. A feature's value needs one
more column, because an explicit null is a value that hides older ones: ``LAST_VALUE(f IS NULL)``
says whether that version's value is null, and ``LAST_VALUE(f)`` is its value otherwise. The TTL
is applied last: visible iff ``version_ms > T - ttl``. Flink sorts each partition once per table
(batch execution mode), with no per-sample probing.

Each table's result (row id + its features) is written as Parquet by Flink and read back here,
sorted by row id; :func:`featurestore.pit.engine` assembles the sample columns and writes the
output as for DuckDB. Inputs: the log's data files of the snapshot the export reads (local or
``hdfs://``), Parquet files as given, and anything else (versions in memory) written to Parquet
first. The job runs on the local MiniCluster, or on a cluster when ``flink_options`` say
``execution.target: remote`` (the samples and the work directory must then be on storage the
cluster reads: pass ``work_dir`` on ``hdfs://``).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from featurestore.config import FlinkConfig
from featurestore.errors import ConfigError, ValidationError
from featurestore.fs import FileSystem, open_fs
from featurestore.pit.engine import ExportOptions, JoinPlan
from featurestore.pit.query import TablePart, written_condition
from featurestore.pit.samples import ROW_ID, TIME
from featurestore.pit.sources import BoundSource
from featurestore.schema import SEQ, VERSION_MS, WRITTEN
from featurestore.types import flink_sql_type, from_arrow

#: Engine name for :func:`featurestore.pit.engine.export`'s ``join`` and the CLI's ``--engine``.
ENGINE = "flink"


@dataclass
class FlinkJoin:
    """The ``join`` argument of :func:`featurestore.pit.engine.export`: runs the plan on Flink.

    ``options``: Flink configuration on top of the defaults (``ingestion.job.flink_options`` of
    a profile sends the job to its cluster); ``parallelism``: of the job; ``work_dir``: where the
    samples, copied versions and results go (default: the export's spill directory).
    ``seconds`` is the job's wall time once it ran."""

    options: Mapping[str, str] | None = None
    parallelism: int = 2
    work_dir: str | None = None
    seconds: float = 0.0

    def __call__(
        self, con: duckdb.DuckDBPyConnection, plan: JoinPlan, options: ExportOptions, spill: str
    ) -> Iterator[Any]:
        work = f"{(self.work_dir or spill).rstrip('/')}/flink-{uuid.uuid4().hex[:12]}"
        fs = open_fs(work)
        try:
            statements, outputs = _statements(con, plan, options.strict, work, fs)
            started = time.perf_counter()
            if statements:
                _run(statements, self.parallelism, self.options or {})
            self.seconds = time.perf_counter() - started
            yield from _results(plan, outputs, options.batch_rows, fs)
        finally:
            fs.delete(work)


def for_profile(flink: FlinkConfig) -> FlinkJoin:
    """The join for a profile's Flink: its parallelism, and its cluster when ``mode: remote``."""
    from ingestion.job import target_options

    python = flink.python_executable or sys.executable
    options = {"python.executable": python, "python.client.executable": python, **target_options(flink)}
    return FlinkJoin(options=options, parallelism=flink.parallelism)


def _run(statements: Sequence[str], parallelism: int, options: Mapping[str, str]) -> None:
    from featurestore.services.manager import flink_jars, hadoop_jars, parquet_jars

    from ingestion.runner import execute_inserts, hadoop_on_gateway, table_environment

    jars = [*flink_jars(), *parquet_jars()]
    # a cluster has Hadoop on its classpath (HADOOP_CLASSPATH, docs/cluster.md); a local job runs
    # in the gateway
    if options.get("execution.target") != "remote" and not hadoop_on_gateway():
        remote = [s for s in statements if "'path' = 'hdfs://" in s]
        if remote:
            raise ConfigError(
                "the Flink gateway of this process started without Hadoop on its classpath, which reading "
                "hdfs:// needs (an earlier Flink job started it)",
                hint="run the export in a new process, or set HADOOP_CLASSPATH before the first Flink job",
            )
        jars += [Path(j).as_uri() for j in hadoop_jars()]  # Parquet's own dependency, for local files
    ddl = [s for s in statements if not s.startswith("INSERT")]
    inserts = [s for s in statements if s.startswith("INSERT")]
    env = table_environment(jars, parallelism, {"execution.runtime-mode": "batch", **options})
    for statement in ddl:
        env.execute_sql(statement)
    execute_inserts(env, inserts).wait()


def _flink_type(field: pa.Field, where: str) -> str:
    value_type = from_arrow(field.type)
    if value_type is None:
        raise ValidationError(f"column {field.name!r} of type {field.type} is not supported by the flink engine",
                              location=where)
    return flink_sql_type(value_type)


def q(name: str) -> str:
    """A quoted Flink SQL identifier (any name: sample columns are the user's)."""
    return "`" + name.replace("`", "``") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _uri(path: str) -> str:
    return path if "://" in path else Path(path).resolve().as_uri()


def _parquet_table(name: str, columns: Sequence[tuple[str, str]], path: str) -> str:
    body = ", ".join(f"{q(c)} {t}" for c, t in columns)
    return (f"CREATE TEMPORARY TABLE {q(name)} ({body}) WITH ("
            f"'connector' = 'filesystem', 'path' = {_literal(_uri(path))}, 'format' = 'parquet')")


def _write_parquet(fs: FileSystem, path: str, table: pa.Table) -> None:
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    fs.write_bytes(path, buffer.getvalue().to_pybytes())


def _version_files(
    con: duckdb.DuckDBPyConnection, bound: BoundSource, work: str, fs: FileSystem, index: int
) -> list[str]:
    """Parquet files holding exactly the versions ``bound`` reads."""
    if bound.files:
        return list(bound.files)
    record = bound.record
    if record.get("kind") == "iceberg" and record.get("snapshot_id") is not None:
        files: list[str] = bound.source.versions.data_files(snapshot_id=record["snapshot_id"])  # type: ignore[union-attr]
        return files
    path = f"{work}/versions_{index}.parquet"  # in memory, or an empty log: written out once
    _write_parquet(fs, path, con.sql(f'SELECT * FROM "{bound.view}"').to_arrow_table())
    return [path]


def _statements(
    con: duckdb.DuckDBPyConnection, plan: JoinPlan, strict: bool, work: str, fs: FileSystem
) -> tuple[list[str], list[tuple[str, tuple[TablePart, ...]]]]:
    """The job's statements, and per table the directory of its result and its parts."""
    by_view: dict[str, list[TablePart]] = {}
    for part in plan.parts:
        by_view.setdefault(part.view, []).append(part)
    if not by_view:
        return [], []
    sample_keys = sorted({col for p in plan.parts for _, col in p.keys})
    samples_file = f"{work}/samples.parquet"
    samples = plan.samples.table.select([*sample_keys, TIME, ROW_ID])
    _write_parquet(fs, samples_file, samples)
    sample_columns = [(f.name, _flink_type(f, "samples")) for f in samples.schema]
    statements = [_parquet_table("__fs_samples", sample_columns, samples_file)]
    outputs = []
    for index, bound in enumerate(b for b in plan.bound if b.view in by_view):
        parts = tuple(by_view[bound.view])
        schema = bound.source.schema
        arrow = schema.arrow_schema()
        features = sorted({f for p in parts for f, _ in p.features})
        where = f"versions of {schema.name}"
        columns = [(c, _flink_type(arrow.field(c), where)) for c in (*schema.key_names, VERSION_MS, SEQ, *features)]
        columns.append((WRITTEN, "STRING"))
        files = _version_files(con, bound, work, fs, index)
        names = [f"__fs_v{index}_{n}" for n in range(len(files))]
        statements += [_parquet_table(name, columns, path) for name, path in zip(names, files, strict=True)]
        types = dict(columns)
        out_dir = f"{work}/result_{index}"
        outputs.append((out_dir, parts))
        out_columns = [(ROW_ID, "BIGINT"), *((out, types[f]) for p in parts for f, out in p.features)]
        statements.append(_parquet_table(f"__fs_out{index}", out_columns, out_dir))
        statements.append(_insert(f"__fs_out{index}", parts, names, types, strict))
    return statements, outputs


def _written_condition(part: TablePart) -> str:
    return "TRUE" if part.written is None else written_condition(part.written, quote=q)


def _insert(
    sink: str, parts: Sequence[TablePart], sources: Sequence[str], types: Mapping[str, str], strict: bool
) -> str:
    """``INSERT INTO sink``: the samples of one table, each with the features it sees."""
    keys = parts[0].keys  # (table key, sample column): every part of a table shares them
    key_names = [k for k, _ in keys]
    # one row shape for samples and versions: keys, t, tag, seq, row id, then per part its version
    # time and per feature its value and whether the value is null
    tag = -1 if strict else 1
    sample_cols = [f"CAST({q(col)} AS {types[key]}) AS {q(key)}" for key, col in keys]
    sample_cols += [f"{TIME} AS __t", f"{tag} AS __tag", "CAST(0 AS BIGINT) AS __seq", f"{ROW_ID} AS __row"]
    version_cols = [q(k) for k in key_names]
    version_cols += [f"{VERSION_MS} AS __t", "0 AS __tag", f"{SEQ} AS __seq", "CAST(NULL AS BIGINT) AS __row"]
    picked = ["__row", "__t"]
    outer = [f"__row AS {q(ROW_ID)}"]
    for j, part in enumerate(parts):
        in_part = _written_condition(part)
        sample_cols.append(f"CAST(NULL AS BIGINT) AS __v{j}")
        version_cols.append(f"CASE WHEN {in_part} THEN {VERSION_MS} END AS __v{j}")
        picked.append(f"LAST_VALUE(__v{j}) OVER w AS __v{j}")
        visible = "TRUE" if part.ttl_ms is None else f"__v{j} > __t - {int(part.ttl_ms)}"
        for i, (feature, out) in enumerate(part.features):
            value, isnull = f"__f{j}_{i}", f"__n{j}_{i}"
            sample_cols += [f"CAST(NULL AS {types[feature]}) AS {value}", f"CAST(NULL AS BOOLEAN) AS {isnull}"]
            version_cols += [f"CASE WHEN {in_part} THEN {q(feature)} END AS {value}",
                             f"CASE WHEN {in_part} THEN {q(feature)} IS NULL END AS {isnull}"]
            picked += [f"LAST_VALUE({value}) OVER w AS {value}", f"LAST_VALUE({isnull}) OVER w AS {isnull}"]
            outer.append(f"CASE WHEN {isnull} = FALSE AND {visible} THEN {value} END AS {q(out)}")
    versions = " UNION ALL ".join(f"SELECT {', '.join(version_cols)} FROM {q(s)}" for s in sources)
    union = f"SELECT {', '.join(sample_cols)} FROM __fs_samples UNION ALL {versions}"
    partition = ", ".join(q(k) for k in key_names)
    window = f"PARTITION BY {partition} ORDER BY __t, __tag, __seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    inner = f"SELECT {', '.join(picked)} FROM ({union}) WINDOW w AS ({window})"
    return f"INSERT INTO {q(sink)} SELECT {', '.join(outer)} FROM ({inner}) WHERE __row IS NOT NULL"


def _read_result(fs: FileSystem, directory: str, expected: int) -> pa.Table:
    """The Parquet files Flink wrote to ``directory`` (its in-progress files start with a dot)."""
    files = [f for f in fs.list_files(directory) if not f.rsplit("/", 1)[-1].startswith((".", "_"))]
    tables = [pq.read_table(pa.BufferReader(fs.read_bytes(f))) for f in files]
    table = pa.concat_tables(tables) if tables else pa.table({ROW_ID: pa.array([], pa.int64())})
    if table.num_rows != expected:  # the join must keep every sample exactly once
        raise AssertionError(f"the flink job produced {table.num_rows} rows for {expected} samples in {directory}")
    return table.take(pc.sort_indices(table.column(ROW_ID)))


def _results(
    plan: JoinPlan, outputs: Sequence[tuple[str, tuple[TablePart, ...]]], batch_rows: int, fs: FileSystem
) -> Iterator[Any]:
    """Row id (in sample order) and every feature column, in batches."""
    rows = plan.samples.table.column(ROW_ID).combine_chunks()
    order = pc.sort_indices(rows)
    columns: dict[str, pa.ChunkedArray] = {ROW_ID: rows.take(order)}
    for directory, _parts in outputs:
        table = _read_result(fs, directory, plan.samples.num_rows)
        if not np.array_equal(table.column(ROW_ID).to_numpy(), columns[ROW_ID].to_numpy()):
            raise AssertionError(f"the flink job's rows in {directory} are not the samples'")
        for name in table.column_names[1:]:
            columns[name] = table.column(name)
    result = pa.table(columns)
    yield from result.to_batches(max_chunksize=batch_rows)
