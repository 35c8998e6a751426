"""Byte-range reads of files, chosen by URI scheme: a local path / ``file://`` or ``hdfs://``.

The training-set reader fetches Parquet footers and row groups by byte range, so a file larger
than the cache is still prefetched piece by piece. HDFS goes through hdfs-native (no JVM);
failures raise :class:`~featurestore.errors.ServiceUnavailableError` naming ``hdfs``.
"""

from __future__ import annotations

import os
from typing import Protocol
from urllib.parse import urlparse

from featurestore.errors import NotFoundError, ServiceUnavailableError
from featurestore.fs import local_path, open_fs


class RangeSource(Protocol):
    """What the training-set reader needs from a file system."""

    def list_files(self, directory: str) -> list[str]:
        """Every file under ``directory``, recursively, sorted."""

    def size(self, path: str) -> int: ...

    def read_range(self, path: str, offset: int, length: int) -> bytes: ...


class LocalSource:
    def list_files(self, directory: str) -> list[str]:
        return open_fs(directory).list_files(local_path(directory))

    def size(self, path: str) -> int:
        try:
            return os.path.getsize(local_path(path))
        except FileNotFoundError:
            raise NotFoundError(f"no file {path}") from None

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        with open(local_path(path), "rb") as handle:
            handle.seek(offset)
            return handle.read(length)


class HdfsSource:
    """``hdfs://host:port/path``; paths passed in are full URIs."""

    def __init__(self, authority: str) -> None:
        import hdfs_native

        self.url = f"hdfs://{authority}"
        self._client = hdfs_native.Client(self.url)

    def _fail(self, what: str, path: str, exc: Exception) -> Exception:
        if isinstance(exc, FileNotFoundError):
            return NotFoundError(f"no file {path} on {self.url}")
        return ServiceUnavailableError("hdfs", self.url, f"{what} {path} failed: {exc}")

    def list_files(self, directory: str) -> list[str]:
        return open_fs(directory).list_files(directory)

    def size(self, path: str) -> int:
        try:
            return int(self._client.get_file_info(urlparse(path).path).length)
        except (OSError, RuntimeError) as exc:
            raise self._fail("stat", path, exc) from exc

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        try:
            with self._client.read(urlparse(path).path) as reader:
                return bytes(reader.read_range(offset, length))
        except (OSError, RuntimeError) as exc:
            raise self._fail("read", path, exc) from exc


def open_source(uri: str) -> RangeSource:
    """The byte-range source a path or URI lives on."""
    parsed = urlparse(uri)
    if parsed.scheme == "hdfs":
        return HdfsSource(parsed.netloc)
    if parsed.scheme in ("", "file"):
        return LocalSource()
    raise NotFoundError(f"no file system for scheme {parsed.scheme!r} in {uri}", hint="use a local path or hdfs://")
