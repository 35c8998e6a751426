"""Staging directories for :mod:`featurestore.offline.staging`: durable, atomically visible files.

Chosen by URI scheme: a local path or ``file://`` (:class:`LocalStagingDir`), ``hdfs://`` or
``viewfs://`` (:class:`HdfsStagingDir`, through hdfs-native: no JVM). ``put`` returns once the
file is durable and visible under its name with all of its bytes; files whose name starts with a
dot are temporary (an unfinished ``put``) and never listed as staged.

Durability on HDFS. Closing an HDFS file waits for the name node to complete its last block,
which takes a datanode's block report: ~0.5 s a file on the local services (the client's first
``complete`` call is refused and retried after a pause). ``put`` therefore returns after
``hsync`` (the bytes are on the datanodes' disks, like a WAL's sync) and the rename, and closes
the file in the background. A reader first makes sure a file is closed: its own closes are
awaited, any other file goes through lease recovery (``recover_lease``), which closes the file of
a writer that died at the length it synced, all of the Parquet file, or fences a live one (whose
close then fails harmlessly: its bytes were synced). Reading a file that is still open would
return no bytes, hence this rule.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from featurestore.errors import NotFoundError, ServiceUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

_LEASE_RECOVERY_S = 120.0  # a file not closed by lease recovery within this is an HDFS problem
_MAX_OPEN_FILES = 64  # HDFS files synced but not yet closed; put waits beyond this


@dataclass(frozen=True)
class Entry:
    name: str
    mtime_ms: int


class StagingDir(Protocol):
    def put(self, name: str, data: bytes) -> None:
        """Write a whole file under ``name``; on return it is durable and visible in full."""

    def visible(self) -> list[Entry]:
        """Files put, sorted by name (temporary files excluded)."""

    def temporary(self) -> list[Entry]:
        """Temporary files of unfinished (or dead) puts."""

    def read(self, name: str) -> bytes | None:
        """The file's bytes, or ``None`` when it no longer exists."""

    def delete(self, name: str) -> None:
        """Remove a file; no error when it is gone."""

    def close(self) -> None:
        """Finish background work (HDFS closes)."""


def tmp_name(name: str) -> str:
    return f".{name}.{uuid.uuid4().hex[:8]}.tmp"


class LocalStagingDir:
    """A local directory: write to a temporary name, fsync, rename, fsync the directory."""

    def __init__(self, path: str) -> None:
        self.root = Path(path)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        tmp = self.root / tmp_name(name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.root / name)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)

    def _entries(self, hidden: bool) -> list[Entry]:
        out = []
        with os.scandir(self.root) as it:
            for entry in it:
                if entry.name.startswith(".") == hidden and entry.is_file():
                    with contextlib.suppress(FileNotFoundError):
                        out.append(Entry(entry.name, int(entry.stat().st_mtime * 1000)))
        return sorted(out, key=lambda e: e.name)

    def visible(self) -> list[Entry]:
        return self._entries(hidden=False)

    def temporary(self) -> list[Entry]:
        return self._entries(hidden=True)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / name).unlink()

    def close(self) -> None:
        pass


class HdfsStagingDir:
    """An HDFS directory through hdfs-native; failures are :class:`ServiceUnavailableError`."""

    def __init__(self, uri: str) -> None:
        import hdfs_native

        parsed = urlparse(uri)
        self.url = f"{parsed.scheme}://{parsed.netloc}"
        self.root = parsed.path.rstrip("/") or "/"
        self._client = hdfs_native.Client(self.url)
        self._closer = ThreadPoolExecutor(max_workers=8, thread_name_prefix="staging-close")
        self._open_slots = threading.BoundedSemaphore(_MAX_OPEN_FILES)
        self._closing: dict[str, Future[None]] = {}
        self._lock = threading.Lock()
        self._call("mkdirs", lambda: self._client.mkdirs(self.root, create_parent=True))

    def _path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except FileNotFoundError:
            raise
        except (ConnectionError, OSError, RuntimeError) as exc:
            raise ServiceUnavailableError("hdfs", self.url, f"{what} under {self.root} failed: {exc}") from exc

    def put(self, name: str, data: bytes) -> None:
        tmp = self._path(tmp_name(name))
        self._open_slots.acquire()
        writer: Any = None
        try:
            writer = self._call("create", lambda: self._client.create(tmp))
            self._call("write", lambda: writer.write(data))
            self._call("hsync", writer.hsync)
            self._call("rename", lambda: self._client.rename(tmp, self._path(name), False))
        except BaseException:
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()
            self._open_slots.release()
            raise
        future = self._closer.submit(self._close_file, name, writer)
        with self._lock:
            self._closing[name] = future

    def _close_file(self, name: str, writer: Any) -> None:
        try:
            writer.close()
        except Exception as exc:  # fenced by another appender's lease recovery: the bytes were synced
            log.info("staged file %s%s: close failed (%s); lease recovery closes it", self.url, self._path(name), exc)
        finally:
            self._open_slots.release()

    def _ensure_closed(self, name: str) -> None:
        with self._lock:
            future = self._closing.pop(name, None)
        if future is not None:
            future.result()  # our own close; it logs its failures and never raises
        deadline = time.monotonic() + _LEASE_RECOVERY_S
        while not self._call("recover lease", lambda: self._client.recover_lease(self._path(name))):
            if time.monotonic() >= deadline:
                raise ServiceUnavailableError(
                    "hdfs",
                    self.url,
                    f"lease recovery of {self._path(name)} did not finish in {_LEASE_RECOVERY_S:.0f} s",
                )
            time.sleep(0.2)

    def _entries(self, hidden: bool) -> list[Entry]:
        def listing() -> list[Entry]:
            out = []
            for status in self._client.list_status(self.root, False):
                name = status.path.rsplit("/", 1)[-1]
                if not status.isdir and name.startswith(".") == hidden:
                    out.append(Entry(name, int(status.modification_time)))
            return sorted(out, key=lambda e: e.name)

        result: list[Entry] = self._call("list", listing)
        return result

    def visible(self) -> list[Entry]:
        return self._entries(hidden=False)

    def temporary(self) -> list[Entry]:
        return self._entries(hidden=True)

    def read(self, name: str) -> bytes | None:
        def read() -> bytes:
            with self._client.read(self._path(name)) as reader:
                return bytes(reader.read())

        try:
            self._ensure_closed(name)
            data: bytes = self._call("read", read)
        except FileNotFoundError:
            return None
        return data

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call("delete", lambda: self._client.delete(self._path(name), False))

    def close(self) -> None:
        self._closer.shutdown(wait=True)


def open_staging_dir(uri: str) -> StagingDir:
    """The staging directory at a local path, ``file://``, ``hdfs://`` or ``viewfs://`` URI."""
    scheme = urlparse(uri).scheme
    if scheme in ("hdfs", "viewfs"):
        return HdfsStagingDir(uri)
    if scheme in ("", "file"):
        return LocalStagingDir(urlparse(uri).path if scheme == "file" else uri)
    raise NotFoundError(
        f"no staging directory for scheme {scheme!r} in {uri}", hint="use a local path, file:// or hdfs://"
    )
