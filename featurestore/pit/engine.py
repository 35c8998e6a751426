"""The point-in-time engine: samples ASOF-joined to feature tables with DuckDB, chunked.

For each sample at time T and each requested feature, the value is the one
:func:`featurestore.time_semantics.pick_version` picks from that feature's versions for the
sample's key: the rows that write the feature (``_written``, :mod:`featurestore.schema`), an
explicit null being a value like any other (see :mod:`featurestore.pit.query` for how the SQL
gets there). The output is every
sample column, in order, every row, in sample order, then one column per feature (null where
nothing is visible), named after the feature, or ``table__feature`` when the name is taken.

Memory. DuckDB runs with ``memory_limit`` (spilling to ``spill_dir``), and the samples are
processed in chunks of about ``chunk_rows`` by event-time range: a chunk ``[lo, hi]`` only reads
versions in ``(lo - ttl, hi]``. When the samples are in time order the chunks are streamed to the
output in order; otherwise each chunk's result goes to a temporary Parquet file and one final
sort by row number restores the sample order.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from featurestore.errors import NotFoundError, ValidationError
from featurestore.pit.manifest import ContentHasher, Manifest, schema_from_dict, schema_to_dict
from featurestore.pit.query import TablePart, chunk_query, parquet_stats, q, table_stats
from featurestore.pit.samples import ROW_ID, TIME, Samples, SamplesInput, load_samples
from featurestore.pit.sources import (
    BoundSource,
    FeatureRef,
    FeatureSource,
    VersionsInput,
    bind,
    check_join_keys,
    parse_refs,
)
from featurestore.pit.writers import MemorySink, Sink, open_sink
from featurestore.schema import WRITTEN, TableSchema, parse_write_set
from featurestore.types import arrow_type

if TYPE_CHECKING:
    from featurestore.offline.log import OfflineLog, OfflineTable

_SAMPLES_VIEW = "__fs_samples"


@dataclass(frozen=True)
class ExportOptions:
    strict: bool = False  # True: a sample at T sees versions with ts < T only
    memory_limit: str = "2GB"  # DuckDB memory_limit
    chunk_rows: int = 2_000_000  # samples per chunk (by event-time range)
    threads: int | None = None  # DuckDB threads (default: all cores)
    spill_dir: str | None = None  # where DuckDB spills and chunk results go (default: system temp)
    batch_rows: int = 131_072  # rows per output batch

    def __post_init__(self) -> None:
        if self.chunk_rows < 1 or self.batch_rows < 1:
            raise ValidationError("chunk_rows and batch_rows must be positive", location="options")


@dataclass(frozen=True)
class JoinPlan:
    """What a join runs: the samples, one :class:`TablePart` per write group of each table, the
    bound sources (registered on the DuckDB connection), the output schema and the refs."""

    samples: Samples
    parts: tuple[TablePart, ...]
    bound: tuple[BoundSource, ...]
    schema: pa.Schema  # of the output
    refs: tuple[FeatureRef, ...]


def _output_names(refs: Sequence[FeatureRef], sample_columns: Sequence[str]) -> dict[FeatureRef, str]:
    taken = set(sample_columns)
    counts: dict[str, int] = {}
    for ref in refs:
        counts[ref.feature] = counts.get(ref.feature, 0) + 1
    names = {}
    for ref in refs:
        name = ref.feature if counts[ref.feature] == 1 and ref.feature not in taken else f"{ref.table}__{ref.feature}"
        if name in taken:
            raise ValidationError(f"output column {name!r} is also a sample column", location=str(ref))
        taken.add(name)
        names[ref] = name
    return names


def _connect(options: ExportOptions, spill_dir: str) -> duckdb.DuckDBPyConnection:
    config: dict[str, Any] = {
        "memory_limit": options.memory_limit,
        "temp_directory": spill_dir,
        "preserve_insertion_order": False,
    }
    if options.threads is not None:
        config["threads"] = options.threads
    return duckdb.connect(config=config)


def _plan(
    con: duckdb.DuckDBPyConnection,
    samples: Samples,
    features: Sequence[str],
    sources: Sequence[FeatureSource],
) -> JoinPlan:
    refs = parse_refs(features, sources)
    names = _output_names(refs, samples.columns)
    sample_schema = samples.table.schema
    used = [s for s in sources if any(r.table == s.schema.name for r in refs)]
    parts, bound = [], []
    key_columns: set[str] = set()
    for i, source in enumerate(used):
        check_join_keys(source, sample_schema)
        wanted = [r.feature for r in refs if r.table == source.schema.name]
        b = bind(con, source, f"__fs_v{i}", wanted)
        stats = (parquet_stats(b.files) if b.files else None) or table_stats(con, b.view)
        keys = tuple((k, source.sample_key(k)) for k in source.schema.key_names)
        key_columns.update(col for _, col in keys)
        write_sets = _write_sets(con, b) if stats.rows else []
        for j, (group, written) in enumerate(write_groups(source.schema, wanted, write_sets)):
            feats = tuple((f, names[FeatureRef(source.schema.name, f)]) for f in group)
            parts.append(TablePart(f"t{i}_{j}", b.view, keys, feats, source.schema.ttl_ms, stats, written))
        bound.append(b)
    con.register(_SAMPLES_VIEW, samples.table.select([*sorted(key_columns), TIME, ROW_ID]))
    fields = [sample_schema.field(c) for c in samples.columns]
    by_table = {s.schema.name: s.schema for s in used}
    fields += [pa.field(names[r], arrow_type(by_table[r.table].feature(r.feature).dtype)) for r in refs]
    return JoinPlan(samples, tuple(parts), tuple(bound), pa.schema(fields), tuple(refs))


def _write_sets(con: duckdb.DuckDBPyConnection, bound: BoundSource) -> list[str | None]:
    """The distinct ``_written`` values of a bound source (``[None]``: no such column)."""
    if not bound.has_written:
        return [None]
    rows = con.execute(f"SELECT DISTINCT {q(WRITTEN)} FROM {q(bound.view)}").fetchall()
    return sorted((row[0] for row in rows), key=lambda v: (v is not None, v or ""))


def write_groups(
    schema: TableSchema, features: Sequence[str], write_sets: Sequence[str | None]
) -> list[tuple[tuple[str, ...], tuple[str | None, ...] | None]]:
    """The requested features grouped by the rows that write them: ``(features, written)`` per
    group, ``written`` being the ``_written`` values of those rows, or None when every row writes
    the group. Features no row writes are in no group (the output has them null)."""
    writes = [parse_write_set(w, schema) for w in write_sets]
    groups: dict[tuple[int, ...], list[str]] = {}
    for feature in features:
        by = tuple(i for i, names in enumerate(writes) if feature in names)
        if by:
            groups.setdefault(by, []).append(feature)
    everything = tuple(range(len(writes)))
    return [
        (tuple(group), None if by == everything else tuple(write_sets[i] for i in by))
        for by, group in groups.items()
    ]


def _chunks(times: np.ndarray[Any, np.dtype[np.int64]], chunk_rows: int) -> list[tuple[int, int]]:
    """Event-time ranges ``[lo, hi]`` holding about ``chunk_rows`` samples each."""
    if not len(times):
        return []
    ordered = np.sort(times)
    count = math.ceil(len(ordered) / chunk_rows)
    edges = sorted({int(ordered[i * len(ordered) // count]) for i in range(count)})
    highs = [e - 1 for e in edges[1:]] + [int(ordered[-1])]
    return list(zip(edges, highs, strict=True))


def _assemble(plan: JoinPlan, result: pa.RecordBatch, sample_table: pa.Table) -> pa.Table:
    rows = result.column(0)
    columns = sample_table.take(rows).columns
    # the query groups features by table; the output keeps the requested order: match by name
    for field in list(plan.schema)[len(plan.samples.columns):]:
        at = result.schema.get_field_index(field.name)
        if at < 0:  # a feature no version writes
            columns.append(pa.chunked_array([pa.nulls(result.num_rows, field.type)], field.type))
            continue
        columns.append(pa.chunked_array([result.column(at).cast(field.type)], field.type))
    return pa.Table.from_arrays(columns, schema=plan.schema)


def _result_batches(
    con: duckdb.DuckDBPyConnection, plan: JoinPlan, options: ExportOptions, spill: str
) -> Iterator[Any]:
    times = plan.samples.times()
    chunks = _chunks(times, options.chunk_rows)
    in_order = len(chunks) <= 1 or bool(np.all(times[1:] >= times[:-1]))
    if in_order:
        for lo, hi in chunks:
            sql = chunk_query(_SAMPLES_VIEW, plan.parts, lo=lo, hi=hi, strict=options.strict)
            yield from con.sql(sql).to_arrow_reader(options.batch_rows)
        return
    files = []
    for i, (lo, hi) in enumerate(chunks):
        sql = chunk_query(_SAMPLES_VIEW, plan.parts, lo=lo, hi=hi, strict=options.strict, order=False)
        path = str(Path(spill) / f"chunk_{i:05d}.parquet")
        con.execute(f"COPY ({sql}) TO {_literal(path)} (FORMAT parquet)")
        files.append(path)
    listing = "[" + ", ".join(_literal(f) for f in files) + "]"
    yield from con.sql(f"SELECT * FROM read_parquet({listing}) ORDER BY {q(ROW_ID)}").to_arrow_reader(
        options.batch_rows
    )


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


#: Runs a plan: row id (column 0, in sample order) and the feature columns, in record batches.
#: The default is DuckDB (:func:`_result_batches`); ``ingestion.flink_export.FlinkJoin`` runs it
#: on Flink.
Join = Callable[[duckdb.DuckDBPyConnection, JoinPlan, ExportOptions, str], Iterator[Any]]


def _run(
    samples: Samples,
    features: Sequence[str],
    sources: Sequence[FeatureSource],
    options: ExportOptions,
    make_sink: Callable[[pa.Schema], Sink],
    *,
    content_hash: bool = False,
    join: Join | None = None,
) -> tuple[JoinPlan, int, dict[str, str] | None]:
    with tempfile.TemporaryDirectory(prefix="fs-pit-", dir=options.spill_dir) as spill:
        con = _connect(options, spill)
        try:
            plan = _plan(con, samples, features, sources)
            sample_table = samples.table.select(list(samples.columns)).combine_chunks()
            hasher = ContentHasher(plan.schema) if content_hash else None
            sink = make_sink(plan.schema)
            rows = 0
            try:
                for batch in (join or _result_batches)(con, plan, options, spill):
                    assembled = _assemble(plan, batch, sample_table)
                    if hasher is not None:
                        hasher.update(assembled)
                    for out in assembled.to_batches():
                        sink.write(out)
                        rows += out.num_rows
                if rows != samples.num_rows:  # the join must keep every sample exactly once
                    raise AssertionError(f"export produced {rows} rows for {samples.num_rows} samples")
            except BaseException:
                sink.abort()
                raise
            finally:
                if hasher is not None:
                    hasher.close()
            sink.commit()
        finally:
            con.close()
    return plan, rows, None if hasher is None else hasher.digest()


def get_historical_features(
    samples: SamplesInput,
    features: Sequence[str],
    sources: Sequence[FeatureSource],
    *,
    event_time: str = "event_time",
    options: ExportOptions | None = None,
    join: Join | None = None,
) -> pa.Table:
    """The samples with the requested features as of each sample's event time, in memory.
    ``join``: another engine for the join (default DuckDB)."""
    holder: list[MemorySink] = []

    def make_sink(schema: pa.Schema) -> Sink:
        holder.append(MemorySink(schema))
        return holder[0]

    _run(load_samples(samples, event_time), features, sources, options or ExportOptions(), make_sink, join=join)
    return holder[0].table()


def export(
    samples: SamplesInput,
    features: Sequence[str],
    sources: Sequence[FeatureSource],
    *,
    output: str | Path,
    format: str = "parquet",
    event_time: str = "event_time",
    options: ExportOptions | None = None,
    registry_version: str = "",
    log: OfflineLog | None = None,
    manifest_path: str | Path | None = None,
    join: Join | None = None,
) -> Manifest:
    """Write the point-in-time join to ``output`` and its manifest (default ``<output>.manifest.json``).

    ``format`` is parquet, arrow (IPC file), avro or iceberg (``output`` is then a table
    identifier in ``log``'s catalog). ``join``: another engine for the join (default DuckDB;
    ``ingestion.flink_export.FlinkJoin``); the engines give the same rows, so the manifest does
    not depend on it.
    """
    opts = options or ExportOptions()
    loaded = load_samples(samples, event_time)
    plan, rows, digest = _run(
        loaded, features, sources, opts, lambda schema: open_sink(format, output, schema, log=log), content_hash=True,
        join=join,
    )
    target = str(Path(output).resolve()) if format != "iceberg" else str(output)
    manifest = Manifest(
        registry_version=registry_version,
        created_at=dt.datetime.now(dt.UTC).isoformat(),
        features=[str(r) for r in plan.refs],
        event_time=event_time,
        samples={"paths": list(loaded.paths) if loaded.paths else None, "rows": loaded.num_rows},
        tables=[
            {"schema": schema_to_dict(b.source.schema), "join_keys": dict(b.source.join_keys), "source": b.record}
            for b in plan.bound
        ],
        options=asdict(opts),
        output={"target": target, "format": format},
        row_count=rows,
        content_hash=digest,
    )
    if manifest_path is None and format != "iceberg":
        manifest_path = f"{target}.manifest.json"
    if manifest_path is not None:
        manifest.write(manifest_path)
    return manifest


def reproduce(
    manifest: Manifest | str | Path,
    *,
    output: str | Path,
    format: str | None = None,
    samples: SamplesInput | None = None,
    versions: Mapping[str, VersionsInput] | None = None,
    log: OfflineLog | None = None,
    manifest_path: str | Path | None = None,
) -> Manifest:
    """Run an export again from its manifest: same samples, same snapshots, same options.

    Samples and versions that were in memory (not files, not the offline log) cannot be read
    back from the manifest: pass them as ``samples`` and ``versions={table: ...}``.
    """
    m = manifest if isinstance(manifest, Manifest) else Manifest.read(manifest)
    where = "manifest" if isinstance(manifest, Manifest) else str(manifest)
    if samples is None:
        if not m.samples.get("paths"):
            raise ValidationError("the samples of this export were in memory; pass samples=...", location=where)
        samples = list(m.samples["paths"])
        for path in samples:
            if not Path(path).exists():
                raise NotFoundError(f"{where}: the samples file {path} read by this export is gone")
    sources = []
    overrides = dict(versions or {})
    for entry in m.tables:
        schema = schema_from_dict(entry["schema"])
        record = entry["source"]
        snapshot_id = None
        source_versions: VersionsInput
        if schema.name in overrides:
            source_versions = overrides[schema.name]
        elif (record["kind"] == "iceberg" and record["snapshot_id"] is None) or (
            record["kind"] == "arrow" and record.get("rows") == 0
        ):
            # an offline-log table that had no snapshot yet (or no versions): read nothing, not today's rows
            source_versions = schema.arrow_schema().empty_table()
        elif record["kind"] == "iceberg":
            snapshot_id = record["snapshot_id"]
            source_versions = _logged_table(record, schema, snapshot_id, where)
        elif record["kind"] == "parquet":
            source_versions = list(record["paths"])
        else:
            raise ValidationError(
                f"the versions of {schema.name!r} were in memory; pass versions={{'{schema.name}': ...}}",
                location=where,
            )
        sources.append(FeatureSource(schema, source_versions, snapshot_id, dict(entry["join_keys"])))
    try:
        options = ExportOptions(**m.options)
    except TypeError as exc:
        raise ValidationError(f"options the engine does not know: {exc}", location=where) from None
    return export(
        samples,
        m.features,
        sources,
        output=output,
        format=format or m.output["format"],
        event_time=m.event_time,
        options=options,
        registry_version=m.registry_version,
        log=log,
        manifest_path=manifest_path,
    )


def _logged_table(record: Mapping[str, Any], schema: TableSchema, snapshot_id: int | None, where: str) -> OfflineTable:
    """The offline-log table an export read, checked to still hold the snapshot it read."""
    from featurestore.config import OfflineLogConfig
    from featurestore.offline.log import OfflineLog

    uri = record["catalog_uri"]
    table_name = f"offline log table {record.get('identifier', schema.name)!r}"
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        raise NotFoundError(f"{where}: the Iceberg catalog of the {table_name} is gone ({uri})")
    config = OfflineLogConfig(catalog_uri=uri, warehouse=record["warehouse"], namespace=record["namespace"])
    hint = "an export whose versions were dropped or expired cannot be reproduced"
    try:
        table = OfflineLog(config).table(schema)
    except NotFoundError:
        raise NotFoundError(f"{where}: the {table_name} is gone from {uri}", hint=hint) from None
    try:
        if snapshot_id is not None:
            table.data_files(snapshot_id=snapshot_id)  # raises NotFoundError when the snapshot is gone
    except NotFoundError:
        raise NotFoundError(f"{where}: the {table_name} no longer has snapshot {snapshot_id}", hint=hint) from None
    return table
