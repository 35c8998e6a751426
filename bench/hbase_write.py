"""HBase write throughput: versions batches through ``HBaseStore.put``, and where the time goes.

    .venv/bin/python bench/hbase_write.py [--quick] [--rows N] [--hbase URI]

Data (numpy, seeded): N version rows (default 500k; ``--quick``: 100k, under a minute) of one
feature table keyed by ``user_id``, Zipf-distributed over 50k users (a few users own most
versions, as in click logs), with event times in order and 1% of rows repeating the (key,
version_ms) of an earlier row with a higher seq (a replayed event: the batch dedupe has work).
The rows are cut into 10k-row Arrow batches that alternate between two write groups, as window
groups send them: ``clicks`` (int64) + ``ctr`` (double, 5% null), and ``last_item`` (string,
unicode, some empty, 3% null) + ``active`` (bool).

Measured, in one run, into a fresh table (dropped at the end):

* ``rows_per_s`` / ``cells_per_s``: every batch through ``put``, wall clock;
* ``python_s``: the same puts through a second store whose Thrift2 connection pool discards each
  ``putMultiple`` instead of sending it (the Python side alone: checking, encoding, dedupe,
  serialising);
* ``waiting_s`` = total - ``python_s``: what the server round trips add on top of it.

Prints a table and, as the last line, a JSON object (also saved to bench/results/hbase_write.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from featurestore.schema import Field, TableSchema
from featurestore.services import ports
from featurestore.storage.hbase import HBaseStore
from featurestore.types import ValueType

RESULTS = Path(__file__).resolve().parent / "results" / "hbase_write.json"
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000
USERS = 50_000
BATCH_ROWS = 10_000
GROUPS = (("clicks", "ctr"), ("last_item", "active"))
ITEMS = [f"item-{i}" for i in range(400)] + [f"été-{i}" for i in range(50)] + [f"商品{i}" for i in range(49)] + [""]


def make_schema() -> TableSchema:
    features = (
        Field("clicks", ValueType.INT64),
        Field("ctr", ValueType.DOUBLE),
        Field("last_item", ValueType.STRING),
        Field("active", ValueType.BOOL),
    )
    return TableSchema(f"bench_{uuid.uuid4().hex[:8]}", (Field("user_id", ValueType.INT64),), features,
                       ttl_ms=30 * DAY)


def make_batches(schema: TableSchema, rows: int, seed: int = 7) -> list[pa.Table]:
    rng = np.random.default_rng(seed)
    user = (rng.zipf(1.3, rows) - 1) % USERS
    version_ms = START + np.sort(rng.integers(0, DAY, rows))
    replayed = np.flatnonzero(rng.random(rows) < 0.01)
    earlier = np.maximum(replayed - rng.integers(1, 50, replayed.size), 0)
    user[replayed], version_ms[replayed] = user[earlier], version_ms[earlier]
    columns: dict[str, pa.Array] = {
        "user_id": pa.array(user, pa.int64()),
        "version_ms": pa.array(version_ms, pa.int64()),
        "seq": pa.array(np.arange(rows), pa.int64()),
        "clicks": pa.array(rng.poisson(3, rows), pa.int64()),
        "ctr": pa.array(rng.random(rows), pa.float64(), mask=rng.random(rows) < 0.05),
        "last_item": pa.array(ITEMS, pa.string()).take(pa.array(rng.integers(0, len(ITEMS), rows))),
        "active": pa.array(rng.random(rows) < 0.7, pa.bool_()),
    }
    columns["last_item"] = pa.array(columns["last_item"].to_pylist(), pa.string(), mask=rng.random(rows) < 0.03)
    table = pa.table(columns)
    fields = schema.arrow_schema()
    batches = []
    for b, lo in enumerate(range(0, rows, BATCH_ROWS)):
        names = ["user_id", "version_ms", "seq", *GROUPS[b % len(GROUPS)]]
        batches.append(table.slice(lo, BATCH_ROWS).select(names).cast(pa.schema([fields.field(n) for n in names])))
    return batches


def put_all(store: HBaseStore, table: str, batches: list[pa.Table]) -> tuple[int, float]:
    cells = 0
    start = time.perf_counter()
    for batch in batches:
        cells += store.put(table, batch)
    return cells, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k version rows; under a minute")
    parser.add_argument("--rows", type=int, help="version rows (default 500k, --quick 100k)")
    parser.add_argument("--hbase", default=ports.HBASE_URI)
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 500_000)
    schema = make_schema()
    batches = make_batches(schema, rows)
    store = HBaseStore.from_uri(f"{args.hbase}?prefix=fsbench")
    dry = HBaseStore.from_uri(f"{args.hbase}?prefix=fsbench")
    # The Python side alone: a pool that discards what it is given (a benchmark-only stub).
    dry._thrift2.put_multiple = lambda *_args, **_kwargs: None
    try:
        store.ensure_table(schema)
        store.put(schema.name, batches[0])  # warm up: connections, the Thrift module
        dry.put(schema.name, batches[0])
        _, python_s = put_all(dry, schema.name, batches)
        cells, total_s = put_all(store, schema.name, batches)
    finally:
        store.drop_table(schema.name)
        store.close()
        dry.close()
    out: dict[str, Any] = {
        "quick": args.quick,
        "rows": rows,
        "cells": cells,
        "batch_rows": BATCH_ROWS,
        "rows_per_s": round(rows / total_s),
        "cells_per_s": round(cells / total_s),
        "seconds": round(total_s, 2),
        "python_s": round(python_s, 2),
        "waiting_s": round(max(0.0, total_s - python_s), 2),
        "python_rows_per_s": round(rows / python_s),
    }
    print(f"{rows:,} version rows, {cells:,} cells, {len(batches)} batches of {BATCH_ROWS:,} rows")
    print(f"{'put, wall clock':<24} {total_s:6.2f} s  {out['rows_per_s']:>9,} rows/s  {out['cells_per_s']:>9,} cells/s")
    print(f"{'python side (dry run)':<24} {python_s:6.2f} s  {out['python_rows_per_s']:>9,} rows/s")
    print(f"{'waiting on the server':<24} {out['waiting_s']:6.2f} s")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
