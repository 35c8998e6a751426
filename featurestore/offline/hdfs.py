"""HDFS for the offline log without a JVM: pyiceberg and DuckDB read and write ``hdfs://`` through
hdfs-native (the client :mod:`featurestore.fs` uses), not through libhdfs.

pyiceberg's :class:`~pyiceberg.io.pyarrow.PyArrowFileIO` opens ``hdfs://`` and ``viewfs://`` with
pyarrow's ``HadoopFileSystem``, which loads libjvm and libhdfs. :class:`HdfsNativeFileIO` keeps
everything of it (paths, buffering, local files, S3, ...) except that file system: for those two
schemes it returns ``pyarrow.fs.PyFileSystem(FSSpecHandler(<hdfs-native fsspec file system>))``.
pyiceberg 0.8.1 hands that file system the path of a location without scheme and authority
(``PyArrowFileIO.parse_location``: ``hdfs://nn:8020/a/b`` -> ``/a/b``), which is what hdfs-native
expects; the authority selects the file system (one per ``scheme://host:port``). The catalog
selects this class with its ``py-io-impl`` property (:class:`featurestore.offline.log.OfflineLog`),
so every table, scan and commit of the log uses it, on HDFS and on local disk alike.

:func:`register_duckdb` lets a DuckDB connection read ``hdfs://`` Parquet files the same way
(DuckDB's fsspec bridge), so point-in-time joins stream the log's data files from HDFS with
projection and filter pushdown instead of materialising a scan in memory.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pyiceberg.io.pyarrow import PyArrowFileIO

from featurestore.errors import NotInstalledError

if TYPE_CHECKING:
    import duckdb
    from pyarrow.fs import FileSystem

HDFS_SCHEMES = ("hdfs", "viewfs")
FILE_IO_IMPL = "featurestore.offline.hdfs.HdfsNativeFileIO"


def fsspec_filesystem(scheme: str, netloc: str | None, *, shared_reads: bool = False) -> Any:
    """hdfs-native's fsspec file system for ``scheme://netloc`` (fsspec caches one per process);
    ``shared_reads``: its files opened for reading are :class:`SharedReader` s (DuckDB's threads)."""
    try:
        from hdfs_native.fsspec import HdfsFileSystem, ViewfsFileSystem
    except ImportError:  # pragma: no cover - hdfs-native is in requirements.lock
        raise NotInstalledError("hdfs:// needs hdfs-native", hint="pip install hdfs-native") from None
    parsed = urlparse(f"{scheme}://{netloc or ''}")
    cls = HdfsFileSystem if scheme == "hdfs" else ViewfsFileSystem
    return (_with_shared_reads(cls) if shared_reads else cls)(host=parsed.hostname, port=parsed.port)


class HdfsNativeFileIO(PyArrowFileIO):
    """pyiceberg's PyArrow FileIO with ``hdfs://`` and ``viewfs://`` served by hdfs-native."""

    def _initialize_fs(self, scheme: str, netloc: str | None = None) -> FileSystem:
        if scheme in HDFS_SCHEMES:
            from pyarrow.fs import FSSpecHandler, PyFileSystem

            return PyFileSystem(FSSpecHandler(fsspec_filesystem(scheme, netloc)))
        return super()._initialize_fs(scheme, netloc)


# Which hdfs authority this module registered on each DuckDB connection. DuckDB keys an fsspec
# file system by protocol name only and hdfs-native's ignores the authority of a path, so one
# connection can read from one name node; a second one falls back to Arrow (the caller's choice).
_registered: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, str] = weakref.WeakKeyDictionary()
_registered_lock = threading.Lock()


def register_duckdb(con: duckdb.DuckDBPyConnection, uris: list[str]) -> bool:
    """Make ``con`` able to read ``uris`` (all ``hdfs://`` or ``viewfs://``); False when it cannot
    (several name nodes, or the protocol already registered on ``con`` by someone else)."""
    authorities = {(urlparse(u).scheme, urlparse(u).netloc) for u in uris}
    if len(authorities) != 1:
        return False
    ((scheme, netloc),) = authorities
    if scheme not in HDFS_SCHEMES:
        return False
    key = f"{scheme}://{netloc}"
    with _registered_lock:
        known = _registered.get(con)
        if known is not None:
            return known == key
        if con.filesystem_is_registered(scheme):
            return False
        con.register_filesystem(fsspec_filesystem(scheme, netloc, shared_reads=True))
        _registered[con] = key
    return True


class SharedReader:
    """An hdfs-native file that several threads may read at once, as DuckDB's threads do.

    hdfs-native's reader keeps one position in a Rust object that ``seek`` and ``read`` borrow
    mutably: two threads at once fail with ``RuntimeError: Already borrowed``, and one thread's
    seek would move the other's read. Here every thread keeps its own position and each read is
    a positional ``read_range``, which leaves the reader's own position alone."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self._size = len(reader)
        self._position = threading.local()

    def tell(self) -> int:
        return int(getattr(self._position, "value", 0))

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.tell(), 2: self._size}[whence]
        self._position.value = max(0, base + offset)
        return self.tell()

    def read(self, size: int = -1) -> bytes:
        start = self.tell()
        length = self._size - start if size is None or size < 0 else min(size, self._size - start)
        data = self._reader.read_range(start, length) if length > 0 else b""
        self._position.value = start + len(data)
        return bytes(data)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer)[: len(data)] = data
        return len(data)

    @property
    def size(self) -> int:
        return self._size

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> SharedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.cache
def _with_shared_reads(base: type) -> type:
    """``base`` (an hdfs-native fsspec file system class) opening files for reading as
    :class:`SharedReader` s; one class per base, so fsspec's instance cache keeps working."""

    class SharedReads(base):  # type: ignore[misc]
        def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
            opened = super()._open(path, mode, **kwargs)
            return SharedReader(opened) if mode == "rb" and hasattr(opened, "read_range") else opened

    return SharedReads
