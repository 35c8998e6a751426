"""Preload benchmark: one epoch over an exported training set, with and without prefetching.

    .venv/bin/python bench/preload.py [--quick] [--hdfs URI] [--latency-ms 20] [--keep]

Writes a training set of Parquet files (20 float32 features + an int8 label, ~1 MB row groups,
uncompressed: random floats do not compress) to HDFS: >= 2 GB, ``--quick`` ~200 MB. Then reads
one epoch four ways through :class:`featurestore.preload.training.TrainingSetReader`, with the
same byte-range reads each way:

* HDFS as is, without and with prefetching;
* HDFS behind this benchmark's storage wrapper that adds ``--latency-ms`` (20) to every read,
  like a remote or busy cluster, without and with prefetching.

The consumer converts each record batch to numpy and computes a column mean (a light training
step). Reported per run: seconds, MB/s, the time the consumer waited for bytes, hit rate (row
groups whose read the prefetcher had issued before the consumer asked) and ready rate (of those,
already in memory). Targets: >= 5x faster with prefetching under latency; hit rate >= 95%.
Prints a table, saves bench/results/preload.json and prints the same JSON object as the last line.
Without HDFS the files go to local disk (``storage: local`` in the JSON).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from featurestore.errors import FeatureStoreError
from featurestore.fs import open_fs
from featurestore.preload.source import RangeSource, open_source
from featurestore.preload.training import TrainingSetReader
from featurestore.services import ports

RESULTS = Path(__file__).resolve().parent / "results" / "preload.json"
FEATURES = 20
ROW_GROUP_ROWS = 12_288  # ~1 MB per row group: many small reads, as with many small files
GROUPS_PER_FILE = 16


class LatencySource:
    """A RangeSource that sleeps ``delay_s`` before every read (the benchmark's storage wrapper)."""

    def __init__(self, inner: RangeSource, delay_s: float) -> None:
        self.inner = inner
        self.delay_s = delay_s

    def list_files(self, directory: str) -> list[str]:
        return self.inner.list_files(directory)

    def size(self, path: str) -> int:
        return self.inner.size(path)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        time.sleep(self.delay_s)
        return self.inner.read_range(path, offset, length)


def file_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    rows = ROW_GROUP_ROWS * GROUPS_PER_FILE
    columns: dict[str, Any] = {f"x{i:02d}": rng.random(rows, dtype=np.float32) for i in range(FEATURES)}
    columns["label"] = (rng.random(rows) < 0.05).astype(np.int8)
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink, row_group_size=ROW_GROUP_ROWS, compression="none")
    return sink.getvalue()


def write_dataset(root: str, target_bytes: int) -> tuple[int, int]:
    fs = open_fs(root)
    written, files = 0, 0
    while written < target_bytes:
        data = file_bytes(files)
        fs.write_bytes(f"{root}/part-{files:05d}.parquet", data)
        written += len(data)
        files += 1
    return written, files


def epoch(root: str, source: RangeSource, prefetch: bool, args: argparse.Namespace) -> dict[str, Any]:
    reader = TrainingSetReader(root, source=source, prefetch=prefetch, cache_bytes=args.cache_mb << 20,
                               workers=args.workers)
    start = time.perf_counter()
    rows, total = 0, 0.0
    for batch in reader.numpy():
        rows += len(batch["label"])
        total += float(batch["x00"].mean())
    seconds = time.perf_counter() - start
    s = reader.stats()
    return {"seconds": round(seconds, 2), "rows": rows, "mb_per_s": round(s.bytes_read / seconds / 1e6, 1),
            "wait_s": round(s.wait_s, 2), "decode_s": round(s.decode_s, 2), "hit_rate": round(s.hit_rate, 4),
            "ready_rate": round(s.ready_rate, 4), "row_groups": s.units, "bytes_read": s.bytes_read,
            "peak_cache_mb": round(s.peak_cache_bytes / 2**20, 1), "extra_reads": s.extra_reads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~200 MB instead of >= 2 GB (under a minute)")
    parser.add_argument("--hdfs", default=ports.HDFS_URI, help="HDFS to use ('' for local disk)")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=8, help="prefetch threads")
    parser.add_argument("--cache-mb", type=int, default=128, help="bound of the prefetch cache")
    parser.add_argument("--keep", action="store_true", help="leave the dataset in place")
    args = parser.parse_args()
    target = (200 if args.quick else 2_100) * 10**6
    out: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                           "latency_ms": args.latency_ms, "workers": args.workers, "cache_mb": args.cache_mb}
    local_tmp = None
    root = f"{args.hdfs}/tmp/fsbench-preload-{uuid.uuid4().hex[:8]}" if args.hdfs else ""
    started = time.perf_counter()
    try:
        if root:
            try:
                written, files = write_dataset(root, target)
                out["storage"] = "hdfs"
            except FeatureStoreError as exc:
                out["hdfs_error"] = str(exc).splitlines()[0]
                root = ""
        if not root:
            local_tmp = tempfile.mkdtemp(prefix="fsbench-preload-")
            root = local_tmp
            written, files = write_dataset(root, target)
            out["storage"] = "local"
        out.update(dataset_bytes=written, files=files, row_group_rows=ROW_GROUP_ROWS,
                   write_seconds=round(time.perf_counter() - started, 1))
        base = open_source(root)
        slow = LatencySource(base, args.latency_ms / 1000)
        runs = {
            "as_is_plain": epoch(root, base, False, args),
            "as_is_preload": epoch(root, base, True, args),
            "latency_plain": epoch(root, slow, False, args),
            "latency_preload": epoch(root, slow, True, args),
        }
    finally:
        if not args.keep:
            if local_tmp is not None:
                open_fs(local_tmp).delete(local_tmp)
            elif root:
                open_fs(root).delete(root)
    out["runs"] = runs
    out["speedup_as_is"] = round(runs["as_is_plain"]["seconds"] / runs["as_is_preload"]["seconds"], 2)
    out["speedup_with_latency"] = round(runs["latency_plain"]["seconds"] / runs["latency_preload"]["seconds"], 2)
    out["hit_rate"] = runs["latency_preload"]["hit_rate"]
    out["ready_rate"] = runs["latency_preload"]["ready_rate"]
    out["hit_rate_as_is"] = runs["as_is_preload"]["hit_rate"]
    out["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    out["seconds"] = round(time.perf_counter() - started, 1)
    groups = runs["as_is_plain"]["row_groups"]
    print(f"{written / 1e6:,.0f} MB in {files} files on {out['storage']}, {groups} row groups")
    print(f"{'run':<16} {'s':>7} {'MB/s':>7} {'wait s':>7} {'hit':>6} {'ready':>6} {'peak MB':>8}")
    for name, r in runs.items():
        print(f"{name:<16} {r['seconds']:>7} {r['mb_per_s']:>7} {r['wait_s']:>7} {r['hit_rate']:>6} "
              f"{r['ready_rate']:>6} {r['peak_cache_mb']:>8}")
    print(f"speedup as is: {out['speedup_as_is']}x; with {args.latency_ms:g} ms per read: "
          f"{out['speedup_with_latency']}x (target >= 5x); hit rate {out['hit_rate']:.1%} (target >= 95%)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
