"""Sample tables in the offline log's catalog: what real-time sample production wrote, for export.

One Iceberg table per sample table, ``<namespace>._samples_<name>`` (a leading underscore: no
feature table can have the name), partitioned by day of ``sample_time``. Rows are appended by
``ingestion.samples`` at least once; :func:`read` keeps the first written of each ``sample_seq``
(the base event's position in source order), so a replayed batch is never seen twice.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.config import OfflineLogConfig
from featurestore.errors import NotFoundError

SAMPLE_SEQ = "sample_seq"  # one sample per base event position (registry.sample_compiler's column)
SAMPLE_TIME = "sample_time"  # the sample's event time as a timestamp: the day partition
WRITTEN_AT = "written_at"


def identifier(config: OfflineLogConfig, name: str) -> str:
    return f"{config.namespace}._samples_{name}"


def ensure_table(config: OfflineLogConfig, name: str, schema: pa.Schema) -> None:
    """Create sample table ``name`` with ``schema`` unless it exists (add the columns it lacks if
    it does). Run once, in the driver: many workers creating one table at once race in the catalog."""
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
    from pyiceberg.transforms import DayTransform

    from featurestore.offline.log import OfflineLog

    catalog = OfflineLog(config).catalog
    ident = identifier(config, name)
    try:
        table = catalog.load_table(ident)
    except NoSuchTableError:
        try:
            with catalog.create_table_transaction(ident, schema=schema) as tx, tx.update_spec() as update:
                update.add_field(SAMPLE_TIME, DayTransform(), "sample_day")
        except TableAlreadyExistsError:
            pass
        return
    missing = [f for f in schema if f.name not in table.schema().as_arrow().names]
    if missing:
        with table.update_schema() as update:
            update.union_by_name(pa.schema(missing))


def append(config: OfflineLogConfig, name: str, batch: pa.Table) -> None:
    """Append samples; retries commits lost to concurrent writers until a deadline."""
    from featurestore.offline.log import OfflineLog, append_retrying

    catalog = OfflineLog(config).catalog
    ident = identifier(config, name)
    append_retrying(lambda: catalog.load_table(ident), batch, what=f"samples to {ident}")


def read(config: OfflineLogConfig, name: str, *, dedupe: bool = True) -> pa.Table:
    """The samples of sample table ``name``, in ``sample_seq`` order; ``dedupe`` keeps the first
    written of each ``sample_seq`` (delivery is at-least-once)."""
    from pyiceberg.exceptions import NoSuchTableError

    from featurestore.offline.log import OfflineLog

    try:
        table = OfflineLog(config).catalog.load_table(identifier(config, name))
    except NoSuchTableError:
        raise NotFoundError(
            f"the offline log has no samples of {name!r} ({identifier(config, name)})",
            hint="samples are written by featurestore ingest (and backfill --samples) for the sample table",
        ) from None
    data: pa.Table = table.scan().to_arrow()
    data = data.sort_by([(SAMPLE_SEQ, "ascending"), (WRITTEN_AT, "ascending")])
    if dedupe and data.num_rows:
        indexed = data.select([SAMPLE_SEQ]).append_column("__i", pa.array(range(data.num_rows), pa.int64()))
        first = indexed.group_by([SAMPLE_SEQ], use_threads=False).aggregate([("__i", "min")]).column("__i_min")
        data = data.take(pc.take(first, pc.sort_indices(first)))
    return data
