"""Online-path benchmark: Redis latest reads, HBase as-of reads, batch put throughput.

    .venv/bin/python bench/online.py [--quick] [--redis URI] [--hbase URI]

Measures, through the real storage classes (Arrow results included):

* latest, 1 key x 50 features, through Redis (target p99 < 1 ms): the full result (value, time
  and status per feature) and the values alone (``values_only=True``), interleaved with a bare
  PING round trip on a raw socket, the floor any read stands on (``redis_ping_*``)
* latest, 100 keys x 50 features, through Redis (target p99 < 3 ms); and 100 keys x 10 of the
  50 features (no target)
* as-of, 1 key x 50 features, from HBase (target p99 < 10 ms); the embedded store alongside
* newer-wins writes into Redis, 2k keys x 5 features per batch (``redis_write_cells_per_s``, no
  target: what a window group's sink does per batch in the streaming job)
* batch put throughput into HBase and the embedded store (target >= 50k cells/s each), with
  version times grouped by window end (10 per batch), as aggregations emit them; HBase is also
  measured with a distinct version time per row (event-time versions, as the streaming job
  writes them: a timestamp per cell, through HBase's Thrift2 ``putMultiple``), and as 10k
  versions x 3 features with distinct times (``hbase_put_distinct_ts_3feat_cells_per_s``)

The reads run after ``gc.freeze()``, as in ``featurestore serve``. p50/p99 over >= 10k requests
(``--quick``: 1k, under a minute). Prints a table, saves bench/results/online.json and prints
the same JSON object as the last line. A service that is not reachable is reported as null with
the reason, not as a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import random
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.latency import timed, timed_side_by_side
from featurestore.errors import FeatureStoreError
from featurestore.schema import Field, TableSchema
from featurestore.services import ports
from featurestore.storage.online import open_online_cache
from featurestore.storage.versioned import VersionedStore, open_versioned_store
from featurestore.types import ValueType

RESULTS = Path(__file__).resolve().parent / "results" / "online.json"
T0 = 1_700_000_000_000
N_FEATURES = 50


def make_schema(name: str, n_features: int) -> TableSchema:
    features = tuple(
        Field(f"f{i:02d}", ValueType.DOUBLE if i % 2 else ValueType.INT64) for i in range(n_features)
    )
    return TableSchema(name, (Field("user_id", ValueType.INT64),), features, ttl_ms=30 * 86_400_000)


def make_batch(schema: TableSchema, keys: range, times: list[int], seq0: int = 0) -> pa.Table:
    """One row per (key, time): every feature written."""
    rows = [(k, t) for t in times for k in keys]
    columns: dict[str, Any] = {
        "user_id": [k for k, _ in rows],
        "version_ms": [t for _, t in rows],
        "seq": list(range(seq0, seq0 + len(rows))),
    }
    for i, f in enumerate(schema.features):
        if f.dtype is ValueType.DOUBLE:
            columns[f.name] = [k * 0.5 + i for k, _ in rows]
        else:
            columns[f.name] = [k + i for k, _ in rows]
    return pa.table(columns, schema=schema.arrow_schema())


def put_throughput(store: VersionedStore, schema: TableSchema, rows: int, batch_rows: int, per_batch_ts: int) -> float:
    """Cells/s writing ``rows`` rows x 10 features in batches with ``per_batch_ts`` version times."""
    narrow = TableSchema(schema.name, schema.keys, schema.features[:10], schema.ttl_ms)
    keys_per_ts = max(1, batch_rows // per_batch_ts)
    batches = []
    for b in range(rows // batch_rows):
        times = [T0 + 60_000 * (b * per_batch_ts + j) for j in range(per_batch_ts)]
        batches.append(make_batch(narrow, range(keys_per_ts), times, seq0=b * batch_rows))
    cells = 0
    start = time.perf_counter()
    for batch in batches:
        cells += store.put(schema.name, batch)
    return cells / (time.perf_counter() - start)


def distinct_ts_throughput(store: VersionedStore, versions: int, n_features: int) -> float:
    """Cells/s of one batch of ``versions`` rows over 1k keys, each at its own version time (the
    streaming job's event times); median of 3 batches (the table is created, then dropped)."""
    schema = make_schema(f"bench_{uuid.uuid4().hex[:8]}", n_features)
    store.ensure_table(schema)
    try:
        rates = []
        for b in range(3):
            rows = range(b * versions, (b + 1) * versions)
            columns: dict[str, Any] = {"user_id": [i % 1_000 for i in rows], "version_ms": [T0 + 7 * i for i in rows],
                                       "seq": list(rows)}
            for j, f in enumerate(schema.features):
                columns[f.name] = [i * 0.5 + j if f.dtype is ValueType.DOUBLE else i + j for i in rows]
            batch = pa.table(columns, schema=schema.arrow_schema())
            start = time.perf_counter()
            cells = store.put(schema.name, batch)
            rates.append(cells / (time.perf_counter() - start))
        return sorted(rates)[1]
    finally:
        store.drop_table(schema.name)


def write_throughput(cache: Any, batches: int, keys_per_batch: int = 2_000, n_features: int = 5) -> float:
    """Cells/s landing in the online cache: ``batches`` batches of ``keys_per_batch`` keys x
    ``n_features`` features, each batch at a newer version time (a window group's sink, as the
    streaming job writes it); the table is created, then dropped."""
    schema = make_schema(f"bench_write_{uuid.uuid4().hex[:8]}", n_features)
    cache.ensure_table(schema)
    try:
        work = [make_batch(schema, range(keys_per_batch), [T0 + b], seq0=b * keys_per_batch) for b in range(batches)]
        start = time.perf_counter()
        cells = sum(cache.write(schema.name, batch) for batch in work)
        return float(cells / (time.perf_counter() - start))
    finally:
        cache.drop_table(schema.name)


def _pinger(uri: str, stack: contextlib.ExitStack) -> Callable[[], None]:
    """One PING round trip to the Redis at ``uri`` on a raw socket (closed with ``stack``)."""
    parts = urlsplit(uri)
    sock = stack.enter_context(socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def ping() -> None:
        sock.sendall(b"PING\r\n")
        if sock.recv(64) != b"+PONG\r\n":
            raise RuntimeError("Redis did not answer PING with PONG")

    return ping


def bench_redis(uri: str, n: int, out: dict[str, Any], table: list[tuple[str, str, str]]) -> None:
    cache = open_online_cache(f"{uri}?prefix=fsbench{uuid.uuid4().hex[:6]}")
    schema = make_schema("bench_latest", N_FEATURES)
    stack = contextlib.ExitStack()
    try:
        cache.ensure_table(schema)
        for lo in range(0, 10_000, 1_000):
            cache.write(schema.name, make_batch(schema, range(lo, lo + 1_000), [T0]))
        rng = random.Random(1)
        one = [[rng.randrange(10_000)] for _ in range(n)]
        hundred = [[rng.randrange(10_000) for _ in range(100)] for _ in range(n)]
        now = T0 + 1_000
        gc.freeze()  # as `featurestore serve` does once started (sdk/cli/serve.py)
        # the full read (value, time, status per feature: 151 columns), the values alone (51) and a
        # bare PING round trip (the floor: no read, no Python above a socket), interleaved request
        # by request so all three see the same machine
        ping = _pinger(uri, stack)
        three = timed_side_by_side(n, lambda i: cache.get(schema.name, one[i], now_ms=now),
                                   lambda i: cache.get(schema.name, one[i], now_ms=now, values_only=True),
                                   lambda i: ping())
        table.append(("redis latest 1 key x 50 feat", three[0].record(out, "redis_1key"), "p99 < 1 ms"))
        table.append(("  the same, values only", three[1].record(out, "redis_1key_values"), "p99 < 1 ms"))
        table.append(("  a bare PING on a socket, beside them", three[2].record(out, "redis_ping"), ""))
        both = timed_side_by_side(n, lambda i: cache.get(schema.name, hundred[i], now_ms=now),
                                  lambda i: cache.get(schema.name, hundred[i], now_ms=now, values_only=True))
        table.append(("redis latest 100 keys x 50 feat", both[0].record(out, "redis_100key"), "p99 < 3 ms"))
        table.append(("  the same, values only", both[1].record(out, "redis_100key_values"), "p99 < 3 ms"))
        some = list(schema.feature_names[::5])
        latency = timed(n, lambda i: cache.get(schema.name, hundred[i], some, now_ms=now))
        table.append(("redis latest 100 keys x 10 feat", latency.record(out, "redis_100key_10feat"), ""))
        gc.unfreeze()
        out["redis_write_cells_per_s"] = round(write_throughput(cache, 10 if n < 10_000 else 50))
        table.append(("redis newer-wins writes, 2k keys x 5 feat", f"{out['redis_write_cells_per_s']:,} cells/s", ""))
    except (FeatureStoreError, OSError) as exc:
        out.update(redis_1key_p99_ms=None, redis_100key_p99_ms=None, redis_error=str(exc).splitlines()[0])
        table.append(("redis", "unavailable", str(exc).splitlines()[0]))
    finally:
        with contextlib.suppress(FeatureStoreError):
            cache.drop_table(schema.name)
        cache.close()
        stack.close()


def bench_versioned(
    label: str, store: VersionedStore, n: int, put_rows: int, out: dict[str, Any], table: list[tuple[str, str, str]]
) -> None:
    schema = make_schema(f"bench_{uuid.uuid4().hex[:8]}", N_FEATURES)
    try:
        store.ensure_table(schema)
        rate = put_throughput(store, schema, put_rows, 5_000, 10)
        out[f"{label}_put_cells_per_s"] = round(rate)
        table.append((f"{label} batch put (10 ts/batch)", f"{rate:,.0f} cells/s", ">= 50k cells/s"))
        if label == "hbase":
            rate = put_throughput(store, schema, put_rows // 10, 1_000, 1_000)
            out["hbase_put_distinct_ts_cells_per_s"] = round(rate)
            table.append(("hbase batch put (1 ts/row)", f"{rate:,.0f} cells/s", ">= 50k cells/s"))
            rate = distinct_ts_throughput(store, 10_000, 3)
            out["hbase_put_distinct_ts_3feat_cells_per_s"] = round(rate)
            table.append(("hbase 10k versions x 3 feat, 1 ts/row", f"{rate:,.0f} cells/s", ">= 50k cells/s"))
        history = 1_000
        for v in range(10):
            store.put(schema.name, make_batch(schema, range(history), [T0 + 3_600_000 * v], seq0=v * history))
        rng = random.Random(2)
        queries = [([rng.randrange(history)], T0 + rng.randrange(10 * 3_600_000)) for _ in range(n)]
        latency = timed(n, lambda i: store.get_as_of(schema.name, queries[i][0], queries[i][1]))
        target = "p99 < 10 ms" if label == "hbase" else ""
        table.append((f"{label} as-of 1 key x 50 feat", latency.record(out, f"{label}_asof"), target))
    except FeatureStoreError as exc:
        out.update({f"{label}_put_cells_per_s": None, f"{label}_asof_p99_ms": None,
                    f"{label}_error": str(exc).splitlines()[0]})
        table.append((label, "unavailable", str(exc).splitlines()[0]))
    finally:
        with contextlib.suppress(FeatureStoreError):
            store.drop_table(schema.name)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k requests per measure; under a minute")
    parser.add_argument("--redis", default=ports.REDIS_URI)
    parser.add_argument("--hbase", default=ports.HBASE_URI)
    args = parser.parse_args()
    n = 1_000 if args.quick else 10_000
    put_rows = 20_000 if args.quick else 100_000
    out: dict[str, Any] = {"requests_per_measure": n, "quick": args.quick}
    rows: list[tuple[str, str, str]] = []
    started = time.perf_counter()
    bench_redis(args.redis, n, out, rows)
    try:
        hbase = open_versioned_store(f"{args.hbase}?prefix=fsbench")
        bench_versioned("hbase", hbase, n, put_rows, out, rows)
    except FeatureStoreError as exc:
        out.update(hbase_put_cells_per_s=None, hbase_asof_p99_ms=None, hbase_error=str(exc).splitlines()[0])
    tmp = tempfile.mkdtemp(prefix="fsbench-")
    try:
        bench_versioned("embedded", open_versioned_store(f"embedded://{tmp}"), n, put_rows, out, rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out["seconds"] = round(time.perf_counter() - started, 1)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'result':<34} target")
    for name, result, target in rows:
        print(f"{name:<{width}}  {result:<34} {target}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
