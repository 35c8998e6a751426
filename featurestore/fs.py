"""A small file system interface, chosen by URI scheme: a local path / ``file://`` or ``hdfs://``.

Only what the event logs and exports need: write a whole file atomically, read it, list under a
directory, delete. HDFS goes through hdfs-native (no JVM).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from featurestore.errors import NotFoundError, ServiceUnavailableError


class FileSystem(Protocol):
    def write_bytes(self, path: str, data: bytes) -> None:
        """Write a whole file; readers see the old file or the new one, never a part."""

    def read_bytes(self, path: str) -> bytes: ...

    def list_files(self, directory: str) -> list[str]:
        """Every file under ``directory``, recursively, sorted; empty if it does not exist."""

    def delete(self, path: str) -> None:
        """Delete a file or a directory tree; no error if it does not exist."""


class LocalFileSystem:
    def write_bytes(self, path: str, data: bytes) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def read_bytes(self, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no file {path}") from None

    def list_files(self, directory: str) -> list[str]:
        root = Path(directory)
        if not root.exists():
            return []
        return sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))

    def delete(self, path: str) -> None:
        target = Path(path)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


class HdfsFileSystem:
    """``hdfs://host:port/path`` through hdfs-native; paths passed in are full URIs."""

    def __init__(self, authority: str) -> None:
        import hdfs_native

        self.url = f"hdfs://{authority}"
        self._client = hdfs_native.Client(self.url)

    def _path(self, uri: str) -> str:
        return urlparse(uri).path or "/"

    def _call(self, what: str, fn: object, *args: object) -> object:
        try:
            return fn(*args)  # type: ignore[operator]
        except FileNotFoundError:
            raise NotFoundError(f"no file {args[0]} on {self.url}") from None
        except (ConnectionError, OSError, RuntimeError) as exc:
            raise ServiceUnavailableError("hdfs", self.url, f"{what} failed: {exc}") from exc

    def write_bytes(self, path: str, data: bytes) -> None:
        target = self._path(path)
        parent = target.rsplit("/", 1)[0] or "/"
        tmp = f"{parent}/.{target.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
        self._call("mkdirs", lambda p: self._client.mkdirs(p, create_parent=True), parent)

        def write(p: str) -> None:
            with self._client.create(p) as writer:
                writer.write(data)

        self._call("write", write, tmp)
        self._call("rename", lambda a: self._client.rename(a, target, overwrite=True), tmp)

    def read_bytes(self, path: str) -> bytes:
        def read(p: str) -> bytes:
            with self._client.read(p) as reader:
                return bytes(reader.read())

        return self._call("read", read, self._path(path))  # type: ignore[return-value]

    def list_files(self, directory: str) -> list[str]:
        def listing(p: str) -> list[str]:
            try:
                return sorted(
                    f"{self.url}{s.path}"
                    for s in self._client.list_status(p, recursive=True)
                    if not s.isdir and not s.path.rsplit("/", 1)[-1].startswith(".")
                )
            except FileNotFoundError:
                return []

        return self._call("list", listing, self._path(directory))  # type: ignore[return-value]

    def delete(self, path: str) -> None:
        def remove(p: str) -> None:
            with contextlib.suppress(FileNotFoundError):
                self._client.delete(p, recursive=True)

        self._call("delete", remove, self._path(path))


def open_fs(uri: str) -> FileSystem:
    """The file system a path or URI lives on."""
    parsed = urlparse(uri)
    if parsed.scheme == "hdfs":
        return HdfsFileSystem(parsed.netloc)
    if parsed.scheme in ("", "file"):
        return LocalFileSystem()
    raise NotFoundError(
        f"no file system for scheme {parsed.scheme!r} in {uri}", hint="use a local path, file:// or hdfs://"
    )


def local_path(uri: str) -> str:
    """``file:///a/b`` or ``/a/b`` -> ``/a/b``."""
    parsed = urlparse(uri)
    return parsed.path if parsed.scheme == "file" else uri
