"""Iterate an exported training set as Arrow record batches, prefetching ahead of the consumer.

The unit of work is a Parquet row group, fetched by byte range (``RangeSource.read_range``):
a file larger than the cache is still prefetched piece by piece, and a reader of the same bytes
without prefetching (``prefetch=False``) issues exactly the same reads, one at a time, when the
consumer asks. With prefetching, a planner thread walks the files in order (footers a few files
ahead, then row groups) and hands reads to a pool of ``workers`` threads while the bytes fetched
or in flight and not yet consumed stay under ``cache_bytes``; a consumed row group is decoded
and dropped, which frees room for the next one.

Counters (:class:`PreloadStats`): a row group the consumer asks for is a *hit* when the
prefetcher had already issued its read (``ready`` counts the hits whose bytes had fully arrived),
a *miss* when the consumer had to read it itself. ``wait_s`` is the time the consumer spent
blocked on bytes (misses and hits still in flight), the figure that says whether training
waited on storage.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import ValidationError
from featurestore.preload.source import RangeSource, open_source

FOOTER_READ = 64 * 1024  # bytes read from a file's end to find its footer in one request
FOOTERS_AHEAD = 2  # files whose footers the planner fetches ahead of the one it plans
NumpyBatch = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True)
class _Footer:
    size: int
    tail_offset: int
    tail: bytes
    metadata: pq.FileMetaData


@dataclass(frozen=True)
class _Unit:
    file: int
    row_group: int
    offset: int
    length: int


@dataclass(frozen=True)
class PreloadStats:
    """What one pass over the training set did (see the module docstring for the definitions)."""

    units: int  # row groups consumed
    hits: int
    ready: int
    misses: int
    bytes_read: int  # from storage, footers included
    wait_s: float  # consumer blocked on bytes
    decode_s: float  # consumer decoding row groups
    peak_cache_bytes: int
    extra_reads: int  # reads outside the prefetched ranges (should be 0)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.units if self.units else 0.0

    @property
    def ready_rate(self) -> float:
        return self.ready / self.units if self.units else 0.0


class _RangeFile(io.RawIOBase):
    """A read-only file of ``size`` bytes of which some ranges are held in memory; reads
    outside them go to ``fallback`` (counted by the caller)."""

    def __init__(self, size: int, segments: Sequence[tuple[int, bytes]], fallback: Callable[[int, int], bytes]):
        super().__init__()
        self._size = size
        self._segments = [(start, memoryview(data)) for start, data in segments]
        self._fallback = fallback
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        start, self._pos = self._pos, max(self._pos, end)
        if end <= start:
            return b""
        for seg_start, data in self._segments:
            if seg_start <= start and end <= seg_start + len(data):
                return bytes(data[start - seg_start : end - seg_start])
        return self._fallback(start, end - start)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_footer(source: RangeSource, path: str) -> _Footer:
    size = source.size(path)
    if size < 12:
        raise ValidationError(f"{path} is not a Parquet file ({size} bytes)")
    take = min(size, FOOTER_READ)
    tail = source.read_range(path, size - take, take)
    if tail[-4:] != b"PAR1":
        raise ValidationError(f"{path} is not a Parquet file (no PAR1 magic at its end)")
    need = int.from_bytes(tail[-8:-4], "little") + 8
    if need > take:
        take = need
        tail = source.read_range(path, size - take, take)

    def refuse(offset: int, length: int) -> bytes:
        return source.read_range(path, offset, length)

    handle = _RangeFile(size, [(size - take, tail)], refuse)
    metadata = pq.ParquetFile(pa.PythonFile(handle, mode="r")).metadata
    return _Footer(size, size - take, tail, metadata)


def _row_group_range(metadata: pq.FileMetaData, index: int) -> tuple[int, int]:
    """(offset, length) of the bytes holding every column chunk of one row group."""
    group = metadata.row_group(index)
    start, end = None, 0
    for c in range(group.num_columns):
        column = group.column(c)
        first = column.data_page_offset
        if column.has_dictionary_page and column.dictionary_page_offset:
            first = min(first, column.dictionary_page_offset)
        start = first if start is None else min(start, first)
        end = max(end, first + column.total_compressed_size)
    if start is None:
        return 0, 0
    return start, end - start


class _Pass:
    """One pass (epoch) over the files: the planner, the fetch pool and the counters."""

    def __init__(self, reader: TrainingSetReader) -> None:
        self.reader = reader
        self.source = reader.source
        self.cond = threading.Condition()
        self.footers: dict[int, Future[_Footer]] = {}
        self.fetches: dict[tuple[int, int], Future[bytes]] = {}
        self.taken: set[tuple[int, int]] = set()
        self.reserved = 0
        self.stop = threading.Event()
        self.counts = {"units": 0, "hits": 0, "ready": 0, "misses": 0, "bytes": 0, "peak": 0, "extra": 0}
        self.wait_s = 0.0
        self.decode_s = 0.0
        self.pool: ThreadPoolExecutor | None = None
        self.planner: threading.Thread | None = None
        if reader.prefetch:
            self.pool = ThreadPoolExecutor(reader.workers, thread_name_prefix="fs-preload")
            self.planner = threading.Thread(target=self._plan, name="fs-preload-planner", daemon=True)
            self.planner.start()

    # -- reads, counted -----------------------------------------------------------------------
    def _read(self, path: str, offset: int, length: int) -> bytes:
        data = self.source.read_range(path, offset, length)
        with self.cond:
            self.counts["bytes"] += len(data)
        return data

    def _footer_job(self, index: int) -> _Footer:
        footer = _read_footer(self.source, self.reader.files[index])
        with self.cond:
            self.counts["bytes"] += len(footer.tail)
        return footer

    # -- the planner (prefetch only) ----------------------------------------------------------
    def _submit_footer(self, index: int) -> None:
        assert self.pool is not None
        with self.cond:
            if index < len(self.reader.files) and index not in self.footers:
                self.footers[index] = self.pool.submit(self._footer_job, index)

    def _plan(self) -> None:
        assert self.pool is not None
        files = self.reader.files
        try:
            for i in range(len(files)):
                for ahead in range(i, i + FOOTERS_AHEAD + 1):
                    self._submit_footer(ahead)
                metadata = self.footers[i].result().metadata
                tail_offset = self.footers[i].result().tail_offset
                for g in range(metadata.num_row_groups):
                    offset, length = _row_group_range(metadata, g)
                    if offset >= tail_offset:  # already in memory with the footer
                        continue
                    limit = self.reader.cache_bytes - length
                    with self.cond:
                        while not self.stop.is_set() and self.reserved and self.reserved > limit:
                            self.cond.wait(0.1)
                        if self.stop.is_set():
                            return
                        if (i, g) in self.taken:
                            continue
                        self.reserved += length
                        self.counts["peak"] = max(self.counts["peak"], self.reserved)
                        self.fetches[(i, g)] = self.pool.submit(self._read, files[i], offset, length)
        except Exception:  # the consumer meets the same error when it reads that footer itself
            return

    # -- the consumer -------------------------------------------------------------------------
    def footer(self, index: int) -> _Footer:
        with self.cond:
            future = self.footers.get(index)
        start = time.perf_counter()
        footer = self._footer_job(index) if future is None else future.result()
        self.wait_s += time.perf_counter() - start
        return footer

    def unit_bytes(self, unit: _Unit, footer: _Footer) -> tuple[bytes, bool]:
        """The bytes of a row group and whether they hold room in the cache."""
        key = (unit.file, unit.row_group)
        if unit.offset >= footer.tail_offset:  # a small file: read whole with its footer
            with self.cond:
                self.counts["units"] += 1
                self.counts["hits"] += 1
                self.counts["ready"] += 1
            at = unit.offset - footer.tail_offset
            return footer.tail[at : at + unit.length], False
        with self.cond:
            future = self.fetches.pop(key, None)
            if future is None:
                self.taken.add(key)
            self.counts["units"] += 1
            self.counts["hits" if future is not None else "misses"] += 1
            if future is not None and future.done():
                self.counts["ready"] += 1
        start = time.perf_counter()
        try:
            if future is None:
                return self._read(self.reader.files[unit.file], unit.offset, unit.length), False
            return future.result(), True
        finally:
            self.wait_s += time.perf_counter() - start

    def release(self, unit: _Unit) -> None:
        with self.cond:
            self.reserved -= unit.length
            self.cond.notify_all()

    def fallback(self, path: str) -> Callable[[int, int], bytes]:
        def read(offset: int, length: int) -> bytes:
            with self.cond:
                self.counts["extra"] += 1
            return self._read(path, offset, length)

        return read

    def close(self) -> None:
        self.stop.set()
        with self.cond:
            self.cond.notify_all()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.planner is not None:
            self.planner.join(5)

    def stats(self) -> PreloadStats:
        with self.cond:
            c = dict(self.counts)
        return PreloadStats(
            c["units"], c["hits"], c["ready"], c["misses"], c["bytes"], self.wait_s, self.decode_s, c["peak"],
            c["extra"],
        )


class TrainingSetReader:
    """The record batches of a training set's Parquet files, in file and row-group order.

    ``files`` is a directory (every ``*.parquet`` under it), one file, or a list of files, local
    or ``hdfs://``. Each ``iter()`` is one pass (epoch); :meth:`stats` describes the last one.
    ``source`` replaces the file system (the benchmark wraps one to inject latency).
    """

    def __init__(
        self,
        files: str | Sequence[str],
        *,
        source: RangeSource | None = None,
        columns: Sequence[str] | None = None,
        prefetch: bool = True,
        cache_bytes: int = 256 << 20,
        workers: int = 4,
        batch_rows: int | None = None,
    ) -> None:
        if cache_bytes < 1 or workers < 1:
            raise ValidationError("cache_bytes and workers must be positive")
        first = files if isinstance(files, str) else (files[0] if files else "")
        self.source: RangeSource = source or open_source(first)
        if isinstance(files, str):
            listed = [files] if files.endswith(".parquet") else self.source.list_files(files)
            self.files = [f for f in listed if f.endswith(".parquet")]
        else:
            self.files = list(files)
        if not self.files:
            raise ValidationError(f"no Parquet files in {files!r}")
        self.columns = None if columns is None else list(columns)
        self.prefetch = prefetch
        self.cache_bytes = cache_bytes
        self.workers = workers
        self.batch_rows = batch_rows
        self._last: _Pass | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        run = _Pass(self)
        self._last = run
        try:
            for i, path in enumerate(self.files):
                footer = run.footer(i)
                for g in range(footer.metadata.num_row_groups):
                    offset, length = _row_group_range(footer.metadata, g)
                    unit = _Unit(i, g, offset, length)
                    data, prefetched = run.unit_bytes(unit, footer)
                    start = time.perf_counter()
                    handle = _RangeFile(
                        footer.size, [(offset, data), (footer.tail_offset, footer.tail)], run.fallback(path)
                    )
                    table = pq.ParquetFile(pa.PythonFile(handle, mode="r"), metadata=footer.metadata).read_row_group(
                        g, columns=self.columns
                    )
                    del data, handle
                    if prefetched:
                        run.release(unit)
                    run.decode_s += time.perf_counter() - start
                    yield from table.to_batches(max_chunksize=self.batch_rows)
        finally:
            run.close()

    def stats(self) -> PreloadStats:
        """Counters of the current or last pass."""
        if self._last is None:
            return PreloadStats(0, 0, 0, 0, 0, 0.0, 0.0, 0, 0)
        return self._last.stats()

    def numpy(self, batch_size: int | None = None, *, drop_last: bool = False) -> Iterator[NumpyBatch]:
        """One pass as dicts of numpy arrays (``batch_size`` rows each when given)."""
        return numpy_batches(self, batch_size, drop_last=drop_last)


def _to_numpy(batch: pa.RecordBatch | pa.Table) -> NumpyBatch:
    return {name: batch.column(i).to_numpy(zero_copy_only=False) for i, name in enumerate(batch.schema.names)}


def numpy_batches(
    batches: Iterable[pa.RecordBatch], batch_size: int | None = None, *, drop_last: bool = False
) -> Iterator[NumpyBatch]:
    """Record batches as dicts of numpy arrays, re-cut to ``batch_size`` rows when given."""
    if batch_size is None:
        for batch in batches:
            yield _to_numpy(batch)
        return
    if batch_size < 1:
        raise ValidationError("batch_size must be positive")
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows < batch_size:
            continue
        table = pa.Table.from_batches(pending).combine_chunks()
        start = 0
        while rows - start >= batch_size:
            yield _to_numpy(table.slice(start, batch_size))
            start += batch_size
        pending = table.slice(start).to_batches() if start < rows else []
        rows -= start
    if rows and not drop_last:
        yield _to_numpy(pa.Table.from_batches(pending))


class TorchStyleIterable:
    """A re-iterable of dicts of numpy arrays, shaped like ``torch.utils.data.IterableDataset``
    (each ``iter()`` is one epoch of ``batch_size``-row batches); torch itself is not imported.
    Use it as ``DataLoader(TorchStyleIterable(reader, 1024), batch_size=None)``."""

    def __init__(self, reader: TrainingSetReader, batch_size: int, *, drop_last: bool = False) -> None:
        self.reader = reader
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[NumpyBatch]:
        return numpy_batches(self.reader, self.batch_size, drop_last=self.drop_last)
