"""Running a source's replay on its own: the ``hdfs-replay`` table into JSON files and back.

The replay's declaration (options, metadata columns, :class:`ReplaySpec`) is the batch binding
of every compiled plan and lives in :mod:`registry.replay_binding`; this module runs it alone,
for tests and benchmarks of the source's order and watermarks. :func:`replay_ddl` gives the
CREATE TABLE text; :func:`read_replay` runs the table into JSON files and reads them back with
pyarrow (``collect()`` is far too slow for bulk). docs/backfill.md has the design and options.
PyFlink is imported inside the functions, never at import time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
from featurestore.errors import TerminalError, ValidationError
from ingestion.runner import plan_and_submit, table_environment
from registry import flink_sql
from registry.flink_sql import q
from registry.models import Source
from registry.replay_binding import (
    CONNECTOR,
    DEFAULT_MAX_LATENESS_MS,
    PARTITION_COLUMN,
    POSITION_COLUMN,
    ReplaySpec,
    replay_declaration,
    replay_options,
)

WATERMARK_COLUMN = "__wm_ms"
ROW_BITS = 32
__all__ = [
    "CONNECTOR",
    "DEFAULT_MAX_LATENESS_MS",
    "ReplaySpec",
    "read_replay",
    "replay_ddl",
    "replay_declaration",
    "replay_options",
]

_ARROW_TYPES = {
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
}


def replay_ddl(
    source: Source, *, table: str, history_root: str, spec: ReplaySpec, marker_windows: Mapping[int, str] | None = None
) -> list[str]:
    """CREATE TEMPORARY TABLE statements: the replay as ``table`` (and one per expiry-marker window)."""
    declaration = replay_declaration(source, history_root=history_root, spec=spec)
    return flink_sql.source_tables(source, declaration, events_table=table, marker_tables=dict(marker_windows or {}))


def _arrow_schema(source: Source) -> pa.Schema:
    fields = []
    for column in source.columns.values():
        avro: Any = column.avro
        if isinstance(avro, list):
            avro = next(t for t in avro if t != "null")
        if isinstance(avro, dict):
            avro = avro.get("type")
        if avro not in _ARROW_TYPES:
            raise ValidationError(f"column {column.name!r}: Avro type {avro!r} cannot be read back from the replay")
        fields.append(pa.field(column.name, _ARROW_TYPES[avro]))
    return pa.schema(fields)


def sink_ddl(source: Source, *, table: str, path: str, options: Mapping[str, str] | None = None) -> str:
    """A JSON filesystem sink for the replay's rows: the source columns, partition, position and
    the watermark (epoch ms, -1 before the first) each row saw. ``options``: more sink options
    (e.g. ``sink.rolling-policy.rollover-interval``)."""
    columns = [
        *flink_sql.source_columns(source),
        f"{q(PARTITION_COLUMN)} INT",
        f"{q(POSITION_COLUMN)} BIGINT",
        f"{q(WATERMARK_COLUMN)} BIGINT",
    ]
    body = ",\n  ".join(columns)
    path = flink_sql.check_config_path(path, "replay output path")
    settings = {"connector": "filesystem", "path": path, "format": "json", **(options or {})}
    for key, value in settings.items():
        if "'" in key or "'" in value:
            raise ValidationError(f"sink option {key!r} = {value!r} contains a quote")
    listed = ",\n  ".join(f"'{k}' = '{v}'" for k, v in settings.items())
    return f"CREATE TEMPORARY TABLE {q(table)} (\n  {body}\n) WITH (\n  {listed}\n)"


def insert_sql(source: Source, *, replay_table: str, sink_table: str) -> str:
    """INSERT the replay into the sink, with the watermark each row saw (``CURRENT_WATERMARK``)."""
    names = ", ".join(q(c) for c in source.columns)
    rt = q(flink_sql.ROWTIME)
    # epoch ms of a TIMESTAMP_LTZ(3): whole seconds (as BIGINT: ms overflow INT) plus the millisecond part
    wm = f"CAST(CURRENT_WATERMARK({rt}) AS TIMESTAMP(3))"
    seconds = f"CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', {wm}) AS BIGINT)"
    watermark = f"COALESCE({seconds} * 1000 + MOD(EXTRACT(MILLISECOND FROM {wm}), 1000), -1)"
    return (
        f"INSERT INTO {q(sink_table)} SELECT {names}, {q(PARTITION_COLUMN)}, {q(POSITION_COLUMN)}, "
        f"{watermark} FROM {q(replay_table)}"
    )


def read_output(source: Source, directory: str | os.PathLike[str]) -> pa.Table:
    """The rows a replay wrote under ``directory``, in the order each sink subtask wrote them
    (files sorted by subtask then part counter), with ``__file`` and ``__row`` split from ``__position``."""
    schema = pa.schema(
        [
            *_arrow_schema(source),
            pa.field(PARTITION_COLUMN, pa.int32()),
            pa.field(POSITION_COLUMN, pa.int64()),
            pa.field(WATERMARK_COLUMN, pa.int64()),
        ]
    )

    def order(path: Path) -> tuple[int, int, str]:
        parts = path.name.rsplit("-", 2)  # part-<uuid>-<subtask>-<counter>[.ext]
        try:
            return int(parts[-2]), int(parts[-1].split(".")[0]), path.name
        except (IndexError, ValueError):
            return 0, 0, path.name

    root = Path(os.fspath(directory).removeprefix("file://"))
    files = sorted((p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))), key=order)
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    tables = [pajson.read_json(p, parse_options=options) for p in files if p.stat().st_size > 0]
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    position = table[POSITION_COLUMN]
    table = table.append_column("__file", pc.shift_right(position, ROW_BITS))
    return table.append_column("__row", pc.bit_wise_and(position, (1 << ROW_BITS) - 1))


def read_replay(
    source: Source,
    *,
    history_root: str,
    spec: ReplaySpec,
    work_dir: str | os.PathLike[str] | None = None,
    jars: Sequence[str] | None = None,
    parallelism: int = 1,
    options: Mapping[str, str] | None = None,
) -> pa.Table:
    """Replay ``source``'s history with Flink into JSON files under ``work_dir`` and read them back.

    ``jars`` default to the replay connector (built if needed). ``options``: more Flink
    configuration (checkpointing, restore path, ...).
    """
    from featurestore.services.replay_jar import replay_jar_url

    out = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="featurestore-replay-"))
    env = table_environment(list(jars) if jars is not None else [replay_jar_url()], parallelism, options or {})
    for ddl in replay_ddl(source, table="replay_events", history_root=history_root, spec=spec):
        env.execute_sql(ddl)
    sink_dir = (out / "rows").resolve()
    env.execute_sql(sink_ddl(source, table="replay_rows", path=str(sink_dir)))
    try:
        plan_and_submit(env, insert_sql(source, replay_table="replay_events", sink_table="replay_rows")).wait()
    except Exception as exc:  # Py4JJavaError: keep the connector's own sentence, drop the Java trace
        raise replay_failure(exc) from exc
    return read_output(source, sink_dir)


def replay_failure(exc: BaseException) -> TerminalError:
    """A failed replay job as a TerminalError carrying the connector's message (``hdfs-replay: ...``)."""
    text = str(exc)
    reasons = [line.split("hdfs-replay:", 1)[1].strip() for line in text.splitlines() if "hdfs-replay:" in line]
    reason = reasons[0] if reasons else (text.splitlines() or ["unknown error"])[0]
    return TerminalError(f"the replay job failed: {reason}", hint="the Flink log (pyflink/log/) has the full trace")
